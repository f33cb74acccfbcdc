"""Completion ports (SPEC S13): the completion mechanism Windows servers are built on.

How a port fits the emulator
----------------------------
A port is a queue of *packets* ``(bytes, key, overlapped, NTSTATUS)`` and a stack
of threads waiting for them.  Associating a socket with a port (``CreateIoCompletionPort``)
gives its adapter a :class:`PortLink`; every overlapped operation posted afterwards
carries that link, and the completion door (:mod:`wsp_async._completion.door`) queues
exactly one packet when the operation completes -- a port is one more delivery
target of the one door, not another path through the socket.  No packet when the
structure's ``hEvent`` has its low bit set (an ``int`` handle with bit 0 set, or an
event wrapped in :class:`NoPortPacket`), or, after
``SetFileCompletionNotificationModes(FILE_SKIP_COMPLETION_PORT_ON_SUCCESS)``, for an
operation that succeeded inside its call (it returned 0).

Waiters are released last in, first out, as Windows does (the thread that waited
last has the warmest cache).  ``NumberOfConcurrentThreads`` is kept and reported but
not enforced: Python threads share one interpreter lock, so limiting runnable
waiters buys nothing here (``docs/semantics.md``).

A port may be waited on from any thread, one that runs an asyncio loop included,
but not from a provider's own I/O loop thread: that thread delivers the completions
the wait is for (S7.3).  These functions are process-wide: they accept the socket
of any provider, since handles are unique in the process (S13.1).  Like kernel32,
they report failure through ``GetLastError()``.
"""

from __future__ import annotations

import itertools
import os
import threading
from typing import Any

from ._completion.ioloop import BORROWERS, IO_THREADS
from ._completion.port import OVERLAPPED_ENTRY, CompletionPort, PortLink
from ._core.handles import find_anywhere, new_handle
from .constants import (
    ERROR_INVALID_HANDLE,
    ERROR_INVALID_PARAMETER,
    FILE_SKIP_COMPLETION_PORT_ON_SUCCESS,
    FILE_SKIP_SET_EVENT_ON_HANDLE,
    INFINITE,
    INVALID_HANDLE_VALUE,
)
from .errors import WSAErr, WSAError
from .events import LAST_ERROR, WSAEVENT
from .ntstatus import win32_of
from .structs import NoPortPacket, is_box, store

__all__ = [
    "OVERLAPPED_ENTRY",
    "CloseHandle",
    "CompletionPort",
    "CreateIoCompletionPort",
    "GetLastError",
    "GetQueuedCompletionStatus",
    "GetQueuedCompletionStatusEx",
    "NoPortPacket",
    "PortLink",
    "PostQueuedCompletionStatus",
    "SetFileCompletionNotificationModes",
    "SetLastError",
    "port_object",
]


#: Open ports by handle (handles share the socket space: unique in the process).
_ports: dict[int, CompletionPort] = {}
_ports_lock = threading.Lock()


def _after_fork_in_child() -> None:
    """The ports a child made by fork inherited keep their packets and lose the waiting
    threads that stayed in the parent (:meth:`CompletionPort.after_fork`)."""
    global _ports_lock
    _ports_lock = threading.Lock()
    for port in list(_ports.values()):
        port.after_fork()


os.register_at_fork(after_in_child=_after_fork_in_child)


def SetLastError(code: int) -> None:
    LAST_ERROR.code = int(code)


def GetLastError() -> int:
    """The calling thread's last error (Winsock's ``WSAGetLastError`` is the same value)."""
    return int(getattr(LAST_ERROR, "code", 0))


def _fail(code: int) -> None:
    LAST_ERROR.code = code


def port_object(handle: object) -> CompletionPort | None:
    """The open port behind a handle (for tools and tests), or None."""
    return _ports.get(handle) if type(handle) is int else None


_port = port_object


def CreateIoCompletionPort(
    FileHandle: object,
    ExistingCompletionPort: object,
    CompletionKey: object,
    NumberOfConcurrentThreads: int,
) -> int | None:
    """Create a port, associate a socket with a port (and key), or both (S13.1)."""
    if not isinstance(NumberOfConcurrentThreads, int) or NumberOfConcurrentThreads < 0:
        _fail(ERROR_INVALID_PARAMETER)
        return None
    existing = None
    if ExistingCompletionPort not in (None, 0):
        existing = _port(ExistingCompletionPort)
        if existing is None or existing.closed:
            _fail(ERROR_INVALID_PARAMETER)
            return None
    if FileHandle == INVALID_HANDLE_VALUE:
        if existing is not None:
            _fail(ERROR_INVALID_PARAMETER)
            return None
        return _new_port(NumberOfConcurrentThreads).handle
    sock: Any = find_anywhere(FileHandle)
    if sock is None:
        _fail(ERROR_INVALID_HANDLE)
        return None
    port = existing if existing is not None else _new_port(NumberOfConcurrentThreads)
    if not sock.associate(PortLink(port, CompletionKey)):
        if existing is None:
            _forget(port)
        _fail(ERROR_INVALID_PARAMETER)  # a socket belongs to one port at most
        return None
    LAST_ERROR.code = 0
    return port.handle


def _new_port(concurrency: int) -> CompletionPort:
    port = CompletionPort(new_handle(), concurrency)
    with _ports_lock:
        _ports[port.handle] = port
    return port


def _forget(port: CompletionPort) -> None:
    with _ports_lock:
        _ports.pop(port.handle, None)


def CloseHandle(hObject: object) -> bool:
    """Close a completion port (its waiters return ERROR_ABANDONED_WAIT_0, S13.8), an
    event object (S16.3) or a socket: a socket handle is a kernel handle, and closing it
    is closesocket -- its pending operations complete aborted, their packets still come
    (sock.c: test_iocp closes sockets with CloseHandle)."""
    if isinstance(hObject, WSAEVENT):
        if not hObject.close():
            _fail(ERROR_INVALID_HANDLE)
            return False
        return True
    sock: Any = find_anywhere(hObject)
    if sock is not None and sock.closesocket is not None:
        try:
            sock.closesocket(sock.handle)
        except WSAError:
            _fail(ERROR_INVALID_HANDLE)  # closed meanwhile, or its provider is gone
            return False
        return True
    port = _port(hObject)
    if port is None:
        _fail(ERROR_INVALID_HANDLE)
        return False
    _forget(port)
    port.close()
    return True


def SetFileCompletionNotificationModes(FileHandle: object, Flags: int) -> bool:
    """FILE_SKIP_COMPLETION_PORT_ON_SUCCESS: no packet for an operation that returned 0."""
    sock: Any = find_anywhere(FileHandle)
    if sock is None:
        _fail(ERROR_INVALID_HANDLE)
        return False
    known = FILE_SKIP_COMPLETION_PORT_ON_SUCCESS | FILE_SKIP_SET_EVENT_ON_HANDLE
    if not isinstance(Flags, int) or Flags & ~known:
        _fail(ERROR_INVALID_PARAMETER)
        return False
    sock.skip_on_success = bool(Flags & FILE_SKIP_COMPLETION_PORT_ON_SUCCESS)
    return True


def PostQueuedCompletionStatus(
    CompletionPort: object,
    dwNumberOfBytesTransferred: int,
    dwCompletionKey: object,
    lpOverlapped: object,
) -> bool:
    """Queue a packet of the caller's (S13.6)."""
    port = _port(CompletionPort)
    if port is None or not isinstance(dwNumberOfBytesTransferred, int):
        _fail(ERROR_INVALID_HANDLE if port is None else ERROR_INVALID_PARAMETER)
        return False
    if not port.queue((dwNumberOfBytesTransferred, dwCompletionKey, lpOverlapped, 0)):
        _fail(ERROR_INVALID_HANDLE)
        return False
    return True


def _may_wait() -> bool:
    ident = threading.get_ident()
    lent = BORROWERS.get(ident) if BORROWERS else None
    if ident in IO_THREADS or (lent is not None and lent.driving):
        _fail(WSAErr.WSAEWOULDBLOCK)  # the thread that delivers completions may not wait (S7.3)
        return False
    return True


def _milliseconds(value: object) -> int | None:
    if isinstance(value, int) and 0 <= value <= INFINITE:
        return int(value)
    return None


def GetQueuedCompletionStatus(
    CompletionPort: object,
    lpNumberOfBytes: object,
    lpCompletionKey: object,
    lpOverlapped: object,
    dwMilliseconds: int,
) -> bool:
    """Remove one packet (S13.4): True for a successful operation; False with the packet
    filled in and its Win32 code in ``GetLastError()`` for a failed one; False with
    ``lpOverlapped.value is None`` and WAIT_TIMEOUT or ERROR_ABANDONED_WAIT_0 otherwise."""
    port = _port(CompletionPort)
    ms = _milliseconds(dwMilliseconds)
    if (
        port is None
        or ms is None
        or not all(map(is_box, (lpNumberOfBytes, lpCompletionKey, lpOverlapped)))
    ):
        _fail(ERROR_INVALID_HANDLE if port is None else ERROR_INVALID_PARAMETER)
        return False
    if not _may_wait():
        return False
    got = port.take(1, ms, alertable=False)
    if isinstance(got, int):
        store(lpOverlapped, None)
        _fail(got)
        return False
    nbytes, key, overlapped, status = got[0]
    store(lpNumberOfBytes, nbytes)
    store(lpCompletionKey, key)
    store(lpOverlapped, overlapped)
    if status:
        _fail(win32_of(status))
        return False
    return True  # the last error is left as it was, as kernel32 leaves it


def GetQueuedCompletionStatusEx(
    CompletionPort: object,
    lpCompletionPortEntries: object,
    ulCount: int,
    ulNumEntriesRemoved: object,
    dwMilliseconds: int,
    fAlertable: bool,
) -> bool:
    """Remove up to ``ulCount`` packets into ``OVERLAPPED_ENTRY`` records (S13.5)."""
    port = _port(CompletionPort)
    ms = _milliseconds(dwMilliseconds)
    entries: Any = lpCompletionPortEntries
    if (
        port is None
        or ms is None
        or not isinstance(ulCount, int)
        or ulCount < 1
        or not is_box(ulNumEntriesRemoved)
        or not isinstance(entries, list)
        or len(entries) < ulCount
        # map, not a generator: no Python frame per entry on every call of a worker
        or not all(map(isinstance, entries[:ulCount], itertools.repeat(OVERLAPPED_ENTRY)))
    ):
        _fail(ERROR_INVALID_HANDLE if port is None else ERROR_INVALID_PARAMETER)
        return False
    if not _may_wait():
        return False
    got = port.take(ulCount, ms, alertable=bool(fAlertable))
    if isinstance(got, int):
        store(ulNumEntriesRemoved, 0)
        _fail(got)
        return False
    for entry, (nbytes, key, overlapped, status) in zip(entries, got, strict=False):
        entry.lpCompletionKey = key
        entry.lpOverlapped = overlapped
        entry.Internal = status
        entry.dwNumberOfBytesTransferred = nbytes
    store(ulNumEntriesRemoved, len(got))
    return True  # the last error is left as it was
