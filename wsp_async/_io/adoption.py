"""The program's socket objects that a provider adopted (SPEC S16.1, S16.4).

Rules of this module:

* The emulated socket works on a *duplicate* of the adopted object's descriptor, never
  on the program's own number: whatever the program does with that number (close it,
  let the OS reuse it for a file), the provider never reads, writes or closes it
  (S16.4).  Both descriptors name one open socket, so bytes and state are shared.
* The program's ``close()`` of its object is ``closesocket`` of the handle (S10.2):
  pending operations complete aborted, exactly once, and the connection closes
  gracefully once what was buffered went out.  The object's class is swapped, once, for
  a subclass whose ``close`` does that (an object whose class cannot be swapped keeps
  its own ``close``; its handle then lives until ``WSPCloseSocket``).
* One object, one handle: adopting an object again gives its open handle back, and
  another provider's adoption of it is refused while that handle is open.

Nothing here touches a loop or a transport; the provider's close of the handle is a
callable the adoption carries.
"""

from __future__ import annotations

import socket as _pysocket
import threading
import weakref
from collections.abc import Callable
from typing import Any

import attrs

__all__ = ["Adoption", "adopted", "forget", "register"]


@attrs.define(eq=False)
class Adoption:
    """One adopted object: its handle, the provider it belongs to, how to close it."""

    handle: int
    owner: object
    #: closesocket of the handle (from any thread); the provider's, isolated there.
    close_handle: Callable[[], object]
    #: Whether the handle is still open.
    is_open: Callable[[], bool]


_lock = threading.Lock()
_adoptions: weakref.WeakKeyDictionary[_pysocket.socket, Adoption] = weakref.WeakKeyDictionary()
#: For each class of adopted object, its subclass whose ``close`` closes the handle too.
_watching: dict[type, type] = {}


def adopted(sock: _pysocket.socket) -> Adoption | None:
    """The open adoption of ``sock``, or None (a closed handle's is forgotten)."""
    with _lock:
        adoption = _adoptions.get(sock)
        if adoption is not None and not adoption.is_open():
            del _adoptions[sock]
            adoption = None
        return adoption


def register(sock: _pysocket.socket, adoption: Adoption) -> None:
    """Remember ``adoption`` and watch the object's ``close``."""
    with _lock:
        _adoptions[sock] = adoption
        cls = type(sock)
        if cls in _watching.values():
            return  # adopted before: already watched
        sub = _watching.get(cls)
        if sub is None:
            sub = _watching[cls] = _watching_class(cls)
    try:
        sock.__class__ = sub
    except TypeError:
        pass  # a layout we cannot extend: WSPCloseSocket stays the only close


def forget(sock: _pysocket.socket) -> Adoption | None:
    """Forget ``sock``'s adoption (its handle is closing); what it was."""
    with _lock:
        return _adoptions.pop(sock, None)


def _watching_class(cls: Any) -> type:
    def close(self: Any) -> None:
        cls.close(self)  # the program's number goes first: ours is another descriptor
        adoption = forget(self)
        if adoption is not None:
            adoption.close_handle()

    close.__doc__ = cls.close.__doc__
    return type(cls.__name__, (cls,), {"__slots__": (), "close": close, "__module__": cls.__module__, "__qualname__": cls.__qualname__})  # fmt: skip
