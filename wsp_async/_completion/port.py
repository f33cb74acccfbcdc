"""One completion port (SPEC S13): a queue of packets and a stack of waiting threads.

Packets are ``(bytes, key, overlapped, NTSTATUS)``.  Waiters are released last in, first
out, as Windows does; closing the port releases them (``ERROR_ABANDONED_WAIT_0``).  The
Win32 functions over ports are :mod:`wsp_async.iocp`; the door queues packets through
the :class:`PortLink` an associated socket carries.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import threading
import time
from collections.abc import Callable
from typing import Any

import attrs

from .. import apc
from ..constants import (
    ERROR_ABANDONED_WAIT_0,
    INFINITE,
    WAIT_IO_COMPLETION,
    WAIT_TIMEOUT,
)
from .fdwake import FdWakeup, thread_fd_wakeup
from .ioloop import BORROWERS, IoLoop

__all__ = ["OVERLAPPED_ENTRY", "CompletionPort", "Packet", "PortLink"]

#: (bytes transferred, completion key, overlapped, NTSTATUS)
Packet = tuple[int, Any, Any, int]


@attrs.define(eq=False)
class OVERLAPPED_ENTRY:
    """One packet removed by ``GetQueuedCompletionStatusEx``."""

    lpCompletionKey: Any = 0
    lpOverlapped: Any = None
    Internal: int = 0
    dwNumberOfBytesTransferred: int = 0


#: The ``signal`` of a coroutine's waiter: never set (its ``notify`` is called instead).
_NO_SIGNAL = apc.Wakeup()


@attrs.define(eq=False, slots=True)
class _Waiter:
    #: A thread's wake-up.  A coroutine's waiter (``notify``) has none of its own: making
    #: a wake-up (once an Event and its Condition) for each of the Proactor's waits was a
    #: third of them.
    signal: apc.Wakeup | FdWakeup = _NO_SIGNAL
    packet: Packet | None = None
    #: For a coroutine's wait: called (on the releasing thread, under the port's lock)
    #: instead of a thread's wake-up; it returns False, or raises, when it cannot deliver.
    notify: Callable[[_Waiter], object] | None = None
    #: For a coroutine's wait: True once its loop can never run the hand-over (closed).
    dead: Callable[[], bool] | None = None


def _signal() -> apc.Wakeup | FdWakeup:
    """A waiting thread's wake-up: a lock, or, on a thread that runs an event loop (a
    second Proactor's ``select``), a pipe waited for in ``select`` (:mod:`.fdwake`)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return apc.Wakeup()
    return thread_fd_wakeup()


class CompletionPort:
    """One port: packets in completion order, waiters released last in, first out.

    The paths every packet takes (queue, take) hold the lock through ``acquire`` and
    ``release``, not ``with``: on CPython 3.11 the statement costs about three times as
    much as the two calls (issue 26, ``benchmarks/README.md``)."""

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
        #: The last poll on a borrowing thread turned its loop and found packets
        #: (:meth:`_poll_driving`).
        self._just_turned = False

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
        lock = self._lock
        lock.acquire()
        try:
            if (self.closed or self._inflight) and self._closed_locked():
                return False
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
        finally:
            lock.release()

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
        lock = self._lock
        lock.acquire()
        try:
            if (self.closed or self._inflight) and self._closed_locked():
                return ERROR_ABANDONED_WAIT_0
            if self._packets:
                return self._packets.popleft()
            waiter = _Waiter(notify=notify, dead=dead)
            self._waiters.append(waiter)
            return waiter
        finally:
            lock.release()

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

    def after_fork(self) -> None:
        """In a child made by fork: no thread that waited here came along (the one that
        forked was not waiting), so their places in the stack go -- a packet given to one
        would be lost (S2.4) -- and the lock one of them may have held is a new one.  A
        coroutine's wait stays: its loop may be the forking thread's, which goes on in
        the child."""
        self._lock = threading.Lock()
        self._waiters = [waiter for waiter in self._waiters if waiter.notify is not None]
        self._just_turned = False

    def _closed_locked(self) -> bool:
        """With the lock: whether the port is closed; if not, packets handed to coroutines
        whose loop closed before taking them are queued again first (:meth:`_reclaim`).
        Asked only when ``closed`` or ``_inflight`` is set: on the hot paths neither is, and
        the two reads cost less than the call."""
        if self.closed:
            return True
        if self._inflight:
            self._reclaim()
        return False

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
        io = BORROWERS.get(threading.get_ident()) if BORROWERS else None
        if io is not None and not io.driving:
            return self._take_driving(io, count, milliseconds)
        deadline = None if milliseconds == INFINITE else time.monotonic() + milliseconds / 1000
        lock = self._lock
        lock.acquire()
        try:
            if (self.closed or self._inflight) and self._closed_locked():
                return ERROR_ABANDONED_WAIT_0
            if self._packets:
                return self._pop(count)
            if deadline is not None and milliseconds == 0 and not alertable:
                return WAIT_TIMEOUT
            # Only a call that waits makes a waiter (a signal): a poll that finds a packet,
            # or none with no time to wait, is most calls of a loop that drains its port.
            waiter = _Waiter(_signal())
            self._waiters.append(waiter)
        finally:
            lock.release()
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
                with self._lock:
                    if waiter.packet is not None or self.closed:
                        return self._settle(waiter, count)  # type: ignore[return-value]
                    if deadline is not None and time.monotonic() >= deadline:
                        self._settle(waiter, count)
                        return WAIT_TIMEOUT
        finally:
            if target is not None:
                target.remove_waiter(waiter.signal.set)

    def _take_driving(self, io: IoLoop, count: int, milliseconds: int) -> list[Packet] | int:
        """:meth:`take` on a thread a provider's loop is lent to (the Proactor's, while
        its loop runs): it runs that loop until a packet comes, so that the I/O of its
        own operations happens here and their packets need no other thread (S17.3).
        Packets queued by other threads end the run through the port's waiter."""
        found = self._look(count)
        if found is not None:
            return found
        if milliseconds == 0:
            return self._poll_driving(io, count)
        deadline = None if milliseconds == INFINITE else time.monotonic() + milliseconds / 1000

        def wake(_waiter: _Waiter) -> bool:
            io.wake_driver()
            return True

        while True:
            got = self.take_or_wait(wake, _alive)
            if not isinstance(got, _Waiter):
                return got if isinstance(got, int) else [got]
            waiter = got
            remaining = 1.0 if deadline is None else max(0.0, deadline - time.monotonic())
            self._just_turned = False
            try:
                io.drive(remaining, functools.partial(self._answered, waiter))
            except BaseException:
                # Interrupted (a KeyboardInterrupt in a callback of the loop): a packet it
                # was given stays for the next wait.  Asked here, not with sys.exc_info()
                # in a ``finally``, which also names an exception the *caller* is handling
                # -- a program running its loop in an ``except`` block got the packet back
                # and again from the next poll (S2.4).
                packet = self.withdraw(waiter)
                if packet is not None:
                    self.queue(packet, front=True)
                raise
            packet = self.withdraw(waiter)
            if packet is not None:
                return [packet] if count == 1 else [packet, *self._pop_locked(count - 1)]
            if self._shut():
                return ERROR_ABANDONED_WAIT_0
            if deadline is not None and time.monotonic() >= deadline:
                return WAIT_TIMEOUT

    def take_now(self, count: int, milliseconds: int) -> list[Packet] | int | None:
        """:meth:`take`'s answer when it needs no wait, in one call: what is queued (up to
        ``count``), or ``ERROR_ABANDONED_WAIT_0`` once closed; for a poll (``milliseconds``
        0) -- after one turn of a provider's loop lent to this thread -- ``WAIT_TIMEOUT``.
        None when nothing is queued and the caller may wait: it then calls :meth:`take`
        (not alertable).  The Proactor's port is read so three times in four (issue 23:
        its send's packet is queued inside the call, and it polls after each packet)."""
        found = self._look(count)
        if found is not None or milliseconds:
            return found
        io = BORROWERS.get(threading.get_ident()) if BORROWERS else None
        if io is None or io.driving:
            return WAIT_TIMEOUT
        return self._poll_driving(io, count)

    def _poll_driving(self, io: IoLoop, count: int) -> list[Packet] | int:
        """A poll on the thread ``io`` is lent to, its queue found empty: one turn of the
        loop that does not wait, then a look -- unless the poll before it turned the loop
        and found packets.  That turn took every event the kernel had ready; the Proactor
        polls again after each packet until one finds none, and a second turn at once
        would find nothing but cost a turn (one per round trip of an echo, issue 23).
        The next poll or wait turns the loop again, so no event waits longer than one
        iteration of the Proactor's loop."""
        if self._just_turned:
            self._just_turned = False
            return WAIT_TIMEOUT
        io.drive(0)
        found = self._look(count)
        if found is None:
            return WAIT_TIMEOUT
        self._just_turned = True
        return found

    def _answered(self, waiter: _Waiter) -> bool:
        """Whether a driving wait may end: the waiter has its packet, or the port closed."""
        return waiter.packet is not None or self._shut()

    def _shut(self) -> bool:
        """``closed``, read anew (another thread may have closed the port meanwhile)."""
        return self.closed

    def _look(self, count: int) -> list[Packet] | int | None:
        """Under the lock: ``ERROR_ABANDONED_WAIT_0`` once closed, else what is queued (up
        to ``count``), else None -- packets handed to coroutines whose loop closed first
        counted as queued again."""
        lock = self._lock
        lock.acquire()
        try:
            if (self.closed or self._inflight) and self._closed_locked():
                return ERROR_ABANDONED_WAIT_0
            return self._pop(count) if self._packets else None
        finally:
            lock.release()

    def _pop_locked(self, count: int) -> list[Packet]:
        lock = self._lock
        lock.acquire()
        try:
            return self._pop(count)
        finally:
            lock.release()

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
        if count == 1 and packets:
            return [packets.popleft()]
        return [packets.popleft() for _ in range(min(count, len(packets)))]


def _alive() -> bool:
    """The loop of a driving wait is the waiting thread's own: never dead under it."""
    return False


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
