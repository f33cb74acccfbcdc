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

import collections
import threading
import time
from collections.abc import Callable
from typing import Any

import attrs

from . import apc
from ._completion.ioloop import IO_THREADS
from ._core.handles import find_anywhere, new_handle
from .constants import (
    ERROR_ABANDONED_WAIT_0,
    ERROR_INVALID_HANDLE,
    ERROR_INVALID_PARAMETER,
    FILE_SKIP_COMPLETION_PORT_ON_SUCCESS,
    FILE_SKIP_SET_EVENT_ON_HANDLE,
    INFINITE,
    INVALID_HANDLE_VALUE,
    WAIT_IO_COMPLETION,
    WAIT_TIMEOUT,
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

#: (bytes transferred, completion key, overlapped, NTSTATUS)
Packet = tuple[int, Any, Any, int]


@attrs.define(eq=False)
class OVERLAPPED_ENTRY:
    """One packet removed by ``GetQueuedCompletionStatusEx``."""

    lpCompletionKey: Any = 0
    lpOverlapped: Any = None
    Internal: int = 0
    dwNumberOfBytesTransferred: int = 0


@attrs.define(eq=False, slots=True)
class _Waiter:
    signal: threading.Event = attrs.field(factory=threading.Event)
    packet: Packet | None = None
    #: For a coroutine's wait: called (on the releasing thread, under the port's lock)
    #: instead of a thread's wake-up; it returns False, or raises, when it cannot deliver.
    notify: Callable[[_Waiter], object] | None = None
    #: For a coroutine's wait: True once its loop can never run the hand-over (closed).
    dead: Callable[[], bool] | None = None


class CompletionPort:
    """One port: packets in completion order, waiters released last in, first out."""

    def __init__(self, handle: int, concurrency: int) -> None:
        self.handle = handle
        #: ``NumberOfConcurrentThreads`` as given (0: the number of processors).
        self.concurrency = concurrency
        self._lock = threading.Lock()
        self._packets: collections.deque[Packet] = collections.deque()
        self._waiters: list[_Waiter] = []
        #: Coroutine waiters handed a packet whose loop has not taken it yet (see
        #: :meth:`delivered`): a loop that closes first gives the packet back.
        self._inflight: list[_Waiter] = []
        self.closed = False

    @property
    def waiting(self) -> int:
        """How many threads wait on the port now."""
        return len(self._waiters)

    def queue(self, packet: Packet, front: bool = False) -> bool:
        """Queue one packet; False when the port is closed (the packet is dropped, S13.8).

        The packet goes to the waiter that waited last (S13.7); a coroutine's waiter whose
        loop can no longer take it (closed under it) is skipped and forgotten, and the
        packet goes to the next waiter or stays queued: one dead waiter never fails the
        door nor loses a packet.  ``front`` puts it back at the head of the queue (a packet
        given back by a waiter that gave up: it came before the ones queued since).
        """
        with self._lock:
            if self.closed:
                return False
            if self._inflight:
                self._reclaim()
            waiters = self._waiters
            while waiters:
                waiter = waiters.pop()  # the last to wait is released first (S13.7)
                waiter.packet = packet
                if waiter.notify is None:
                    waiter.signal.set()
                    return True
                # Under the lock: a notify only schedules (call_soon_threadsafe), and a
                # waiter that withdraws meanwhile then sees its packet and gives it back.
                if _notified(waiter):
                    self._inflight.append(waiter)
                    return True
                waiter.packet = None
            if front:
                self._packets.appendleft(packet)
            else:
                self._packets.append(packet)
            return True

    def close(self) -> None:
        """CloseHandle: release every waiter (ERROR_ABANDONED_WAIT_0); drop what is queued."""
        with self._lock:
            self.closed = True
            waiters, self._waiters = self._waiters, []
            self._packets.clear()
        for waiter in waiters:
            if waiter.notify is None:
                waiter.signal.set()
            else:
                _notified(waiter)

    def take_or_wait(
        self, notify: Callable[[_Waiter], object], dead: Callable[[], bool]
    ) -> Packet | int | _Waiter:
        """For a coroutine: a packet now, ERROR_ABANDONED_WAIT_0, or a registered waiter
        whose ``notify`` is called once a packet (or the close) comes.  ``dead`` tells
        when the coroutine's loop can no longer take a packet handed to it."""
        with self._lock:
            if self.closed:
                return ERROR_ABANDONED_WAIT_0
            if self._inflight:
                self._reclaim()
            if self._packets:
                return self._packets.popleft()
            waiter = _Waiter(notify=notify, dead=dead)
            self._waiters.append(waiter)
            return waiter

    def delivered(self, waiter: _Waiter) -> None:
        """On the coroutine's loop: the packet handed to ``waiter`` is taken for good."""
        with self._lock:
            if waiter in self._inflight:
                self._inflight.remove(waiter)

    def withdraw(self, waiter: _Waiter) -> Packet | None:
        """A coroutine gave up waiting: its waiter leaves the stack (its packet, if one came)."""
        with self._lock:
            if waiter in self._waiters:
                self._waiters.remove(waiter)
            if waiter in self._inflight:
                self._inflight.remove(waiter)
            packet, waiter.packet = waiter.packet, None
            return packet

    def _reclaim(self) -> None:
        """With the lock: packets handed to coroutines whose loop closed before taking
        them go back to the head of the queue, in the order they were handed out."""
        for waiter in reversed(self._inflight):
            if waiter.dead is not None and waiter.dead() and waiter.packet is not None:
                self._packets.appendleft(waiter.packet)
                waiter.packet = None
        self._inflight = [waiter for waiter in self._inflight if waiter.packet is not None]

    def take(self, count: int, milliseconds: int, alertable: bool) -> list[Packet] | int:
        """Up to ``count`` packets, waiting up to ``milliseconds``; else a Win32 wait code.

        Returns ``WAIT_TIMEOUT``, ``ERROR_ABANDONED_WAIT_0`` (closed while waiting) or,
        alertable, ``WAIT_IO_COMPLETION`` when it ran APCs and no packet came (S13.5).
        """
        deadline = None if milliseconds == INFINITE else time.monotonic() + milliseconds / 1000
        with self._lock:
            if self.closed:
                return ERROR_ABANDONED_WAIT_0
            if self._inflight:
                self._reclaim()
            if self._packets:
                return self._pop(count)
            if deadline is not None and milliseconds == 0 and not alertable:
                return WAIT_TIMEOUT
            # Only a call that waits makes a waiter (an Event): a poll that finds a packet,
            # or none with no time to wait, is most calls of a loop that drains its port.
            waiter = _Waiter()
            self._waiters.append(waiter)
        target = apc.thread_target() if alertable and not apc.on_loop_thread() else None
        if target is not None:
            target.add_waiter(waiter.signal.set)
        try:
            while True:
                if target is not None and target.pending():
                    with self._lock:
                        got = self._settle(waiter, count)
                    if got is not None:
                        return got
                    target.drain()
                    return WAIT_IO_COMPLETION
                remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
                waiter.signal.wait(remaining)
                waiter.signal.clear()
                with self._lock:
                    if waiter.packet is not None or self.closed:
                        return self._settle(waiter, count)  # type: ignore[return-value]
                    if deadline is not None and time.monotonic() >= deadline:
                        self._settle(waiter, count)
                        return WAIT_TIMEOUT
        finally:
            if target is not None:
                target.remove_waiter(waiter.signal.set)

    def _settle(self, waiter: _Waiter, count: int) -> list[Packet] | int | None:
        """With the lock: the waiter's outcome, and its withdrawal from the stack."""
        if waiter in self._waiters:
            self._waiters.remove(waiter)
        if waiter.packet is not None:
            return [waiter.packet, *self._pop(count - 1)]
        if self.closed:
            return ERROR_ABANDONED_WAIT_0
        return None

    def _pop(self, count: int) -> list[Packet]:
        packets = self._packets
        return [packets.popleft() for _ in range(min(count, len(packets)))]


def _notified(waiter: _Waiter) -> bool:
    """Call a coroutine waiter's ``notify``; False when it could not take the wake-up (its
    loop is closed) -- the caller then hands the packet on."""
    try:
        return waiter.notify(waiter) is not False  # type: ignore[misc]
    except Exception:
        return False


@attrs.define(eq=False)
class PortLink:
    """A socket's association: its port and key, and its notification modes (S13.3)."""

    port: CompletionPort
    key: Any
    skip_on_success: bool = False


#: Open ports by handle (handles share the socket space: unique in the process).
_ports: dict[int, CompletionPort] = {}
_ports_lock = threading.Lock()


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
    if threading.get_ident() in IO_THREADS:
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
        or not all(isinstance(e, OVERLAPPED_ENTRY) for e in entries[:ulCount])
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
