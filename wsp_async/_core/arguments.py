"""Reading the caller's arguments: every malformed input becomes its S9 code, never a traceback.

Rules of this module:

* Each function takes what a caller passed to an SPI entry point and returns it
  in the shape the engine wants, or raises :class:`WSAError` with the code the
  S9 table gives for it.  Nothing here touches a socket.
* Python stands in for C pointers, so "a bad pointer" (``WSAEFAULT``) is: a
  structure that is not one (a subclass *is* one), a buffer that is not
  bytes-like, released, strided or shorter than its ``len``, an out-parameter
  without a writable ``.value``, a sockaddr that is not a well-formed tuple of
  the socket's family.
* The ``WSABUF`` array is read now (S5.1) and only as far as ``dwBufferCount``
  says, by index: a sequence whose ``len`` disagrees with its iteration cannot
  smuggle in more buffers.  The data buffers are kept, not copied (S5.2); a
  ``bytearray`` is held through a buffer export, so that resizing it while the
  provider owns it fails in the caller, as touching a locked buffer would.
"""

from __future__ import annotations

import socket as _pysocket
from typing import Any

from ..constants import AF_INET
from ..errors import WSAErr, WSAError
from ..structs import DWORD, INT, WSABUF, is_box

__all__ = [
    "BOXES",
    "capture",
    "check_box",
    "check_count_box",
    "integer",
    "option_int",
    "skip",
    "sockaddr",
]


#: The library's own boxes: known good, no probing needed on the hot path.
BOXES = (DWORD, INT)


def _fault(why: str) -> WSAError:
    return WSAError(WSAErr.WSAEFAULT, why)


def integer(value: object, why: str) -> int:
    """An ``int`` (or a subclass of it; ``bool`` too), else ``WSAEFAULT``."""
    if type(value) is int:
        return value
    if isinstance(value, int):
        return int(value)
    raise _fault(why)


def check_box(box: object, name: str, optional: bool = True) -> None:
    if box is None and optional:
        return
    if not is_box(box):
        raise _fault(f"{name} is not an out-parameter box")


def check_count_box(box: object, overlapped: bool) -> None:
    """``lpNumberOfBytes*``: may be ``None`` only on an overlapped call (S2.2)."""
    if box is None:
        if not overlapped:
            raise _fault("a non-overlapped call needs its count box")
        return
    if not is_box(box):
        raise _fault("the count is not an out-parameter box")


def _view(data: Any, writable: bool) -> memoryview:
    try:
        view = memoryview(data)
    except (TypeError, ValueError):
        raise _fault("WSABUF.buf is not a live bytes-like object") from None
    if writable and view.readonly:
        raise _fault("WSABUF.buf of a receive is read-only")
    if not view.c_contiguous:
        raise _fault("WSABUF.buf is not contiguous memory")
    if view.format != "B" or view.ndim != 1:
        view = view.cast("B")
    return view


def capture(lpBuffers: object, count: object, writable: bool) -> tuple[list[Any], int]:
    """Read the transient ``WSABUF`` array now (S5.1): the data buffers, and their total.

    ``bytes`` are kept as they are; everything else becomes a byte view of the
    caller's memory (no copy), cut to ``len`` when that is shorter.  (The common send,
    one ``WSABUF`` of a whole ``bytes``, is read by the send body itself.)
    """
    n_entries = count if type(count) is int else integer(count, "dwBufferCount is not a count")
    if n_entries < 0:
        raise _fault("dwBufferCount is negative")
    if type(lpBuffers) is list or type(lpBuffers) is tuple:
        if n_entries > len(lpBuffers):
            raise _fault("dwBufferCount is larger than lpBuffers")
        entries: Any = lpBuffers if n_entries == len(lpBuffers) else lpBuffers[:n_entries]
    else:
        try:
            entries = [lpBuffers[i] for i in range(n_entries)]  # type: ignore[index]
        except Exception:
            raise _fault("lpBuffers is not a sequence of dwBufferCount WSABUF") from None
    views: list[Any] = []
    total = 0
    for entry in entries:
        if type(entry) is not WSABUF and not isinstance(entry, WSABUF):
            raise _fault("lpBuffers holds something that is not a WSABUF")
        n = entry.len
        if type(n) is not int:
            n = integer(n, "WSABUF.len is not a length")
        if n < 0:
            raise _fault("WSABUF.len is negative")
        data = entry.buf
        if not writable and type(data) is bytes:
            size = len(data)
        else:
            data = _view(data, writable)
            size = data.nbytes
        if n > size:
            raise _fault("WSABUF.buf is shorter than WSABUF.len")
        if n < size:
            data = memoryview(data)[:n]
        views.append(data)
        total += n
    return views, total


def sockaddr(family: int, name: object) -> tuple[Any, ...]:
    """A sockaddr tuple of the socket's family with a numeric host and a 16-bit port."""
    if not isinstance(name, tuple):
        raise _fault("the address is not a sockaddr tuple")
    width = 2 if family == AF_INET else 4
    if not 2 <= len(name) <= width:
        raise _fault("the sockaddr tuple does not fit the socket's family")
    host, port, *rest = name
    if not isinstance(host, str) or not isinstance(port, int) or not 0 <= port <= 0xFFFF:
        raise _fault("a sockaddr is (numeric host, port 0-65535)")
    host_family = _pysocket.AF_INET if family == AF_INET else _pysocket.AF_INET6
    try:
        _pysocket.inet_pton(host_family, host.partition("%")[0])
    except (OSError, ValueError):
        raise _fault(f"{host!r} is not a numeric address of the socket's family") from None
    if not all(isinstance(x, int) and 0 <= x <= 0xFFFFFFFF for x in rest):
        raise _fault("flowinfo and scope_id are 32-bit numbers")
    return (host, int(port), *rest)


def option_int(optval: object) -> int:
    """An option value: an int (or a box of one), or 4 bytes little-endian."""
    value = getattr(optval, "value", optval)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, bytes | bytearray | memoryview):
        try:
            raw = bytes(value)
        except ValueError:
            raise _fault("optval is a released buffer") from None
        if len(raw) >= 4:
            return int.from_bytes(raw[:4], "little", signed=True)
    raise _fault("optval is not an int or 4 bytes")


def skip(buffers: list[Any], n: int) -> list[Any]:
    """The buffers without their first ``n`` bytes (views, no copy)."""
    out: list[Any] = []
    for buf in buffers:
        view = memoryview(buf).cast("B")
        if n >= view.nbytes:
            n -= view.nbytes
            continue
        out.append(view[n:] if n else buf)
        n = 0
    return out
