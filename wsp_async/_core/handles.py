"""Socket handles: unique in the process, as Windows handles are (SPEC S13.1).

Every provider draws its handles from one process-wide counter, so a handle
names at most one socket, ever: provider B given provider A's handle finds
nothing (``WSAENOTSOCK``) instead of acting on a socket of its own that happens
to carry the same number, and the process-wide functions of completion ports
can accept any provider's handle.  Windows hands out multiples of 4.

A handle is an ``int`` (a subclass of ``int`` is one too); anything else --
a float that compares equal to a handle, a string, an unhashable object --
names no socket (S9, ``WSAENOTSOCK``).
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable
from typing import Generic, TypeVar

from ..errors import WSAErr, WSAError

__all__ = ["HandleTable", "find_anywhere", "new_handle"]

T = TypeVar("T")

_handles = itertools.count(0x104, 4)  # next() on a count is atomic under the GIL

#: Every open item of every table, by handle: the process-wide functions (completion
#: ports, S13.1) accept any provider's socket.
_everywhere: dict[int, object] = {}


def new_handle() -> int:
    """A fresh process-unique handle (sockets and completion ports share the space)."""
    return next(_handles)


def find_anywhere(handle: object) -> object | None:
    """The open socket (of any provider) that ``handle`` names, or None."""
    if not isinstance(handle, int):
        return None
    return _everywhere.get(int(handle))


class HandleTable(Generic[T]):
    """One provider's open sockets by handle."""

    def __init__(self) -> None:
        self._items: dict[int, T] = {}
        self._lock = threading.Lock()
        self.closed = False
        #: ``find(s)``: the item of an exact ``int`` handle, or None (the hot path's lookup;
        #: :meth:`get` is the full check with the S9 code).
        self.find = self._items.get

    def add(self, make: Callable[[int], T]) -> T:
        """Make the item for a fresh handle and register it (``WSAENETDOWN`` once closed)."""
        with self._lock:
            if self.closed:
                raise WSAError(WSAErr.WSAENETDOWN, "the provider is closed")
            handle = next(_handles)
            item = make(handle)
            self._items[handle] = item
            _everywhere[handle] = item
        return item

    def get(self, s: object) -> T:
        """The item behind ``s``, or ``WSAENOTSOCK`` (S9)."""
        if type(s) is not int:
            if not isinstance(s, int):
                raise WSAError(WSAErr.WSAENOTSOCK, "a socket handle is an int")
            s = int(s)
        item = self._items.get(s)
        if item is None:
            raise WSAError(WSAErr.WSAENOTSOCK)
        return item

    def pop(self, s: object) -> T:
        item = self.get(s)
        with self._lock:
            if self._items.get(int(s)) is not item:  # type: ignore[call-overload]
                raise WSAError(WSAErr.WSAENOTSOCK)
            del self._items[int(s)]  # type: ignore[call-overload]
            _everywhere.pop(int(s), None)  # type: ignore[call-overload]
        return item

    def close(self) -> list[T]:
        """Refuse new handles; return every open item (the table is left empty)."""
        with self._lock:
            self.closed = True
            items = list(self._items.values())
            for handle in self._items:
                _everywhere.pop(handle, None)
            self._items.clear()
        return items

    def after_fork(self) -> list[T]:
        """:meth:`close` in a child made by fork, under a new lock (a thread now gone may
        have held the old one); the items are the caller's to forget, not to close."""
        self._lock = threading.Lock()
        return self.close()

    def items(self) -> list[T]:
        return list(self._items.values())

    def handles(self) -> list[int]:
        return list(self._items)
