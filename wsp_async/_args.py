"""Argument capture and error reporting shared by every SPI entry point.

Rules of this module: every ``WSP*`` method reports failure through :func:`fail`
(one place that turns an exception into a Winsock code in ``lpErrno``), reads a
``WSABUF`` array through :func:`capture` (S5.1, the S9 ``WSAEFAULT`` rows), and
reports "started, completes later" through :data:`PENDING` / :func:`io_pending`
(S2.2).  The tables map Winsock's numbers to the host's.
"""

from __future__ import annotations

import logging
import socket as _pysocket
from collections.abc import Callable
from typing import Any, TypeVar

from .constants import (
    AF_INET,
    AF_INET6,
    IPPROTO_TCP,
    IPPROTO_UDP,
    MSG_DONTROUTE,
    MSG_OOB,
    MSG_PARTIAL,
    MSG_PEEK,
    SO_KEEPALIVE,
    SO_RCVBUF,
    SO_REUSEADDR,
    SOCK_DGRAM,
    SOCK_STREAM,
    SOCKET_ERROR,
    SOL_SOCKET,
    TCP_NODELAY,
)
from .errors import WSAErr, WSAError, wsa_code_of
from .events import WSASetLastError
from .structs import WSABUF, store

log = logging.getLogger("wsp_async")

T = TypeVar("T")

FAMILIES = {AF_INET: _pysocket.AF_INET, AF_INET6: _pysocket.AF_INET6}
TYPES = {SOCK_STREAM: _pysocket.SOCK_STREAM, SOCK_DGRAM: _pysocket.SOCK_DGRAM}
PROTOCOLS = {SOCK_STREAM: (0, IPPROTO_TCP), SOCK_DGRAM: (0, IPPROTO_UDP)}
SEND_FLAGS = MSG_OOB | MSG_DONTROUTE | MSG_PARTIAL
RECV_FLAGS = MSG_OOB | MSG_PEEK | MSG_PARTIAL

#: Winsock socket options that pass straight through to the host socket.
PASSTHROUGH = {
    (SOL_SOCKET, SO_RCVBUF): (_pysocket.SOL_SOCKET, _pysocket.SO_RCVBUF),
    (SOL_SOCKET, SO_REUSEADDR): (_pysocket.SOL_SOCKET, _pysocket.SO_REUSEADDR),
    (SOL_SOCKET, SO_KEEPALIVE): (_pysocket.SOL_SOCKET, _pysocket.SO_KEEPALIVE),
    (IPPROTO_TCP, TCP_NODELAY): (_pysocket.IPPROTO_TCP, _pysocket.TCP_NODELAY),
}

BUFFER_TYPES = (bytes, bytearray)


#: What the internal send/receive paths return for "started, completes later" (S2.2):
#: cheaper than raising, on the path every pending operation takes.
PENDING = -2


def io_pending(lpErrno: object) -> int:
    """Report WSA_IO_PENDING (S2.2) and return SOCKET_ERROR."""
    try:
        lpErrno.value = WSAErr.WSA_IO_PENDING  # type: ignore[attr-defined]
    except Exception:
        pass
    WSASetLastError(WSAErr.WSA_IO_PENDING)
    return SOCKET_ERROR


def call_spi(path: Callable[..., int], lpErrno: object, *args: Any, **kwargs: Any) -> int:
    """Run an internal send/receive path under the S2 return protocol.

    The path returns 0 (completed at once), :data:`PENDING` (S2.2) or raises;
    this is the one place that turns those into what a ``WSP*`` call returns and
    writes into ``lpErrno``.
    """
    try:
        rc = path(*args, **kwargs)
    except BaseException as exc:
        fail(lpErrno, exc)
        return SOCKET_ERROR
    return io_pending(lpErrno) if rc == PENDING else rc


def fail(lpErrno: object, exc: BaseException) -> int:
    """Turn any exception into a Winsock code in ``lpErrno`` (no traceback leaves an SPI call)."""
    if isinstance(exc, WSAError):
        code = exc.winerror
    elif isinstance(exc, OSError):
        code = wsa_code_of(exc, WSAErr.WSAEINVAL)
    else:
        log.exception("unexpected error inside an SPI call", exc_info=exc)
        code = WSAErr.WSAEINVAL
    store(lpErrno, code)
    WSASetLastError(code)
    return code


def capture(lpBuffers: object, count: object, writable: bool) -> tuple[list[Any], int]:
    """Read the transient ``WSABUF`` array now (S5.1): the data buffers, and their total.

    Whole buffers are kept as they are (no view, no copy); a ``len`` shorter than
    its buffer becomes a memoryview slice.  Receives get writable byte views.
    Anything malformed is ``WSAEFAULT`` (S9).
    """
    if type(count) is not int or count < 0:
        raise WSAError(WSAErr.WSAEFAULT, "dwBufferCount is not a count")
    try:
        seq: Any = lpBuffers
        entries: Any = seq[:count] if count != len(seq) else seq
    except Exception:
        raise WSAError(WSAErr.WSAEFAULT, "lpBuffers is not a sequence of WSABUF") from None
    if len(entries) != count:
        raise WSAError(WSAErr.WSAEFAULT, "dwBufferCount is larger than lpBuffers")
    views: list[Any] = []
    total = 0
    for entry in entries:
        if type(entry) is not WSABUF:
            raise WSAError(WSAErr.WSAEFAULT, "lpBuffers holds something that is not a WSABUF")
        n = entry.len
        data = entry.buf
        if type(n) is not int or n < 0:
            raise WSAError(WSAErr.WSAEFAULT, "WSABUF.len is not a length")
        if not writable and type(data) in BUFFER_TYPES:
            size = len(data)
        else:
            try:
                view = memoryview(data)
            except TypeError:
                raise WSAError(WSAErr.WSAEFAULT, "WSABUF.buf is not bytes-like") from None
            if writable and view.readonly:
                raise WSAError(WSAErr.WSAEFAULT, "WSABUF.buf of a receive is read-only")
            if view.format != "B" or view.ndim != 1:
                view = view.cast("B")
            size = view.nbytes
            data = view
        if n > size:
            raise WSAError(WSAErr.WSAEFAULT, "WSABUF.buf is shorter than WSABUF.len")
        if n < size:
            data = memoryview(data)[:n]
        views.append(data)
        total += n
    return views, total


def skip(buffers: list[Any], n: int) -> list[Any]:
    """The buffers without their first ``n`` bytes (views, no copy)."""
    out: list[Any] = []
    for buf in buffers:
        size = memoryview(buf).nbytes
        if n >= size:
            n -= size
            continue
        out.append(memoryview(buf).cast("B")[n:] if n else buf)
        n = 0
    return out
