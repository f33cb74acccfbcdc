"""Event objects, waits, alertable sleeps and the per-thread last error (SPEC S1, S6.3, S7).

Rules of this module:

* Events are manual-reset: ``WSASetEvent`` leaves them signalled until
  ``WSAResetEvent``; a wait never consumes a signal.
* One module lock guards the state of every event, so a wait-all checks all its
  events in one atomic look, as the Windows kernel does.
* A blocked wait is a wake-up callable registered on each event it waits for
  (and, for an alertable wait, on the thread's APC queue).  Setting an event calls
  them; nothing polls.  The same mechanism serves awaitable waits, whose wake-up
  hops to the waiting loop with ``call_soon_threadsafe``.
* Nothing here blocks a thread that runs an asyncio loop (SPEC S7.3): such a
  call fails at once with ``WSAEWOULDBLOCK`` and a logged explanation, since a
  blocked loop can never deliver the completion it would be waiting for.
  Zero-timeout polls are allowed everywhere.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Sequence

from . import apc
from .constants import (
    WAIT_IO_COMPLETION,
    WSA_INFINITE,
    WSA_MAXIMUM_WAIT_EVENTS,
    WSA_WAIT_EVENT_0,
    WSA_WAIT_FAILED,
    WSA_WAIT_TIMEOUT,
)
from .errors import WSAErr

__all__ = [
    "WSAEVENT",
    "SleepEx",
    "WSACloseEvent",
    "WSACreateEvent",
    "WSAGetLastError",
    "WSAResetEvent",
    "WSASetEvent",
    "WSASetLastError",
    "WSAWaitForMultipleEvents",
    "wait_for_events",
]

log = logging.getLogger("wsp_async.events")

_lock = threading.Lock()
#: The calling thread's last Winsock error (``.code``); the SPI wrapper writes it directly.
LAST_ERROR = threading.local()

Wake = Callable[[], object]


class WSAEVENT:
    """An event object: manual-reset from ``WSACreateEvent``; ``CreateEvent`` (S16.3) also
    makes auto-reset ones, which a satisfied wait resets, so each set releases one waiter.

    Thread-safe; awaitable from any loop with ``await ev.wait()``.
    """

    __slots__ = ("__weakref__", "_closed", "_signaled", "_waiters", "auto_reset")

    def __init__(self, auto_reset: bool = False, signaled: bool = False) -> None:
        self._signaled = signaled
        self._closed = False
        self._waiters: list[Wake] = []
        self.auto_reset = auto_reset

    def __repr__(self) -> str:
        state = "closed" if self._closed else ("signaled" if self._signaled else "nonsignaled")
        return f"<WSAEVENT {state} at {id(self):#x}>"

    @property
    def signaled(self) -> bool:
        return self._signaled

    @property
    def closed(self) -> bool:
        return self._closed

    def set(self) -> bool:
        """Signal the event and wake every waiter; ``False`` if it is closed."""
        with _lock:
            if self._closed:
                return False
            self._signaled = True
            if not self._waiters:
                return True
            waiters = self._waiters[:]
        for wake in waiters:
            wake()
        return True

    def reset(self) -> bool:
        with _lock:
            if self._closed:
                return False
            self._signaled = False
            return True

    def close(self) -> bool:
        with _lock:
            if self._closed:
                return False
            self._closed = True
            waiters, self._waiters = self._waiters, []
        for wake in waiters:
            wake()
        return True

    async def wait(self, timeout: float | None = None) -> bool:
        """Wait from a coroutine; ``True`` once signalled, ``False`` on timeout."""
        rc = await wait_for_events([self], timeout=timeout)
        return rc == WSA_WAIT_EVENT_0


def WSASetLastError(code: int) -> None:
    """Set the calling thread's last Winsock error."""
    LAST_ERROR.code = code if type(code) is int else int(code)


def WSAGetLastError() -> int:
    """The calling thread's last Winsock error, as set by the module-level functions."""
    return int(getattr(LAST_ERROR, "code", 0))


def WSACreateEvent() -> WSAEVENT:
    """A new manual-reset event, not signalled."""
    return WSAEVENT()


def _handle_call(h: object, action: Callable[[WSAEVENT], bool]) -> bool:
    if not isinstance(h, WSAEVENT) or not action(h):
        WSASetLastError(WSAErr.WSA_INVALID_HANDLE)
        return False
    return True


def WSASetEvent(hEvent: object) -> bool:
    """Signal ``hEvent``; ``False`` with ``WSA_INVALID_HANDLE`` if it is not an open event."""
    return _handle_call(hEvent, WSAEVENT.set)


def WSAResetEvent(hEvent: object) -> bool:
    """Reset ``hEvent`` to non-signalled."""
    return _handle_call(hEvent, WSAEVENT.reset)


def WSACloseEvent(hEvent: object) -> bool:
    """Close ``hEvent``; waits that include it fail with ``WSA_INVALID_HANDLE``."""
    return _handle_call(hEvent, WSAEVENT.close)


def refuse_on_loop_thread(what: str) -> bool:
    """S7.3: True (and the error recorded) when the caller runs an asyncio loop."""
    if not apc.on_loop_thread():
        return False
    log.warning(
        "%s would block a thread that runs an asyncio event loop; failing with "
        "WSAEWOULDBLOCK instead of deadlocking (use the awaitable wait)",
        what,
    )
    WSASetLastError(WSAErr.WSAEWOULDBLOCK)
    return True


def _deadline(milliseconds: int) -> float | None:
    if milliseconds == WSA_INFINITE:
        return None
    return time.monotonic() + milliseconds / 1000.0


def _remaining(deadline: float | None) -> float | None:
    if deadline is None:
        return None
    return max(0.0, deadline - time.monotonic())


def _check(events: Sequence[WSAEVENT], wait_all: bool) -> int | None:
    """Under ``_lock``: the wait's result if it is satisfied now, else ``None``."""
    if any(ev._closed for ev in events):
        return WSA_WAIT_FAILED
    if wait_all:
        if not all(ev._signaled for ev in events):
            return None
        for ev in events:
            if ev.auto_reset:
                ev._signaled = False  # the satisfied wait resets it (S16.3)
        return WSA_WAIT_EVENT_0
    for index, ev in enumerate(events):
        if ev._signaled:
            if ev.auto_reset:
                ev._signaled = False
            return WSA_WAIT_EVENT_0 + index
    return None


def _validate(cEvents: object, lphEvents: object) -> list[WSAEVENT] | None:
    if (
        not isinstance(cEvents, int)
        or isinstance(cEvents, bool)
        or not 0 < cEvents <= WSA_MAXIMUM_WAIT_EVENTS
    ):
        WSASetLastError(WSAErr.WSA_INVALID_PARAMETER)
        return None
    try:
        events = list(lphEvents[:cEvents])  # type: ignore[index]
    except Exception:
        WSASetLastError(WSAErr.WSA_INVALID_PARAMETER)
        return None
    if len(events) != cEvents:
        WSASetLastError(WSAErr.WSA_INVALID_PARAMETER)
        return None
    if not all(isinstance(ev, WSAEVENT) and not ev._closed for ev in events):
        WSASetLastError(WSAErr.WSA_INVALID_HANDLE)
        return None
    return events


def WSAWaitForMultipleEvents(
    cEvents: int,
    lphEvents: Sequence[WSAEVENT],
    fWaitAll: bool,
    dwTimeout: int,
    fAlertable: bool,
) -> int:
    """Wait until one (or all) of the events is signalled, the timeout passes, or APCs run.

    Returns ``WSA_WAIT_EVENT_0 + i`` (the lowest signalled index; ``WSA_WAIT_EVENT_0``
    for a satisfied wait-all), ``WSA_WAIT_TIMEOUT``, ``WSA_WAIT_IO_COMPLETION`` after an
    alertable wait ran the thread's queued APCs, or ``WSA_WAIT_FAILED`` with the
    reason in :func:`WSAGetLastError`.  APCs already queued when an alertable wait
    starts run first, and the wait returns ``WSA_WAIT_IO_COMPLETION`` even if an
    event is signalled too; the next wait sees the event.
    """
    events = _validate(cEvents, lphEvents)
    if events is None:
        return WSA_WAIT_FAILED
    if not isinstance(dwTimeout, int) or not 0 <= dwTimeout <= WSA_INFINITE:
        WSASetLastError(WSAErr.WSA_INVALID_PARAMETER)
        return WSA_WAIT_FAILED
    with _lock:
        result = _check(events, bool(fWaitAll))
    if result is not None and not fAlertable:
        return _finish(result)
    if dwTimeout != 0 and result is None and refuse_on_loop_thread("WSAWaitForMultipleEvents"):
        return WSA_WAIT_FAILED
    target = apc.thread_target() if fAlertable and not apc.on_loop_thread() else None
    if target is not None and target.pending() and target.drain():
        return WAIT_IO_COMPLETION
    if result is not None:
        return _finish(result)
    return _block(events, bool(fWaitAll), _deadline(dwTimeout), target)


def _finish(result: int) -> int:
    if result == WSA_WAIT_FAILED:
        WSASetLastError(WSAErr.WSA_INVALID_HANDLE)
    return result


def _block(
    events: Sequence[WSAEVENT],
    wait_all: bool,
    deadline: float | None,
    target: apc.ThreadTarget | None,
) -> int:
    woken = apc.Wakeup()
    wake = woken.set
    with _lock:
        for ev in events:
            ev._waiters.append(wake)
    if target is not None:
        target.add_waiter(wake)
    try:
        while True:
            # Clear before looking: a wake-up that lands after the looks below
            # leaves the flag set and the wait returns at once (no lost wake-up).
            woken.clear()
            if target is not None and target.pending() and target.drain():
                return WAIT_IO_COMPLETION
            with _lock:
                result = _check(events, wait_all)
            if result is not None:
                return _finish(result)
            remaining = _remaining(deadline)
            if remaining == 0.0:
                return WSA_WAIT_TIMEOUT
            woken.wait(remaining)
    finally:
        with _lock:
            for ev in events:
                try:
                    ev._waiters.remove(wake)
                except ValueError:
                    pass
        if target is not None:
            target.remove_waiter(wake)


def wait_alertably(done: Callable[[], bool], signal: apc.Wakeup) -> None:
    """Block until ``done()``, running the calling thread's APCs meanwhile (SPEC S6.3).

    This is how a blocking Winsock call waits: an APC queued to the blocked thread
    runs during the call, which then goes on waiting for its own result.
    ``signal`` is set by whatever makes ``done()`` true.  A thread that runs an
    asyncio loop gets its APCs from that loop instead, so it waits plainly.
    """
    if apc.on_loop_thread():
        while not done():
            signal.wait()
            signal.clear()
        return
    target = apc.thread_target()
    target.add_waiter(signal.set)
    try:
        while True:
            # Clear before looking (as _block does): no wake-up is lost.
            signal.clear()
            if done():
                return
            if target.pending():
                target.drain()
                continue
            signal.wait()
    finally:
        target.remove_waiter(signal.set)


def SleepEx(dwMilliseconds: int, bAlertable: bool) -> int:
    """Sleep; an alertable sleep returns ``WAIT_IO_COMPLETION`` as soon as it ran an APC.

    Returns 0 when the time ran out.  On a thread that runs an asyncio loop a
    non-zero sleep fails (SPEC S7.3): it returns ``WSA_WAIT_FAILED`` with
    ``WSAEWOULDBLOCK`` in :func:`WSAGetLastError`.
    """
    if not isinstance(dwMilliseconds, int) or not 0 <= dwMilliseconds <= WSA_INFINITE:
        WSASetLastError(WSAErr.WSA_INVALID_PARAMETER)
        return WSA_WAIT_FAILED
    if dwMilliseconds != 0 and refuse_on_loop_thread("SleepEx"):
        return WSA_WAIT_FAILED
    deadline = _deadline(dwMilliseconds)
    if not bAlertable or apc.on_loop_thread():
        if dwMilliseconds:
            threading.Event().wait(_remaining(deadline))
        return 0
    target = apc.thread_target()
    if target.pending() and target.drain():
        return WAIT_IO_COMPLETION
    woken = apc.Wakeup()
    target.add_waiter(woken.set)
    try:
        while True:
            woken.clear()  # before looking, as in _block
            if target.pending() and target.drain():
                return WAIT_IO_COMPLETION
            remaining = _remaining(deadline)
            if remaining == 0.0:
                return 0
            woken.wait(remaining)
    finally:
        target.remove_waiter(woken.set)


async def wait_for_events(
    events: Sequence[WSAEVENT], *, wait_all: bool = False, timeout: float | None = None
) -> int:
    """The awaitable ``WSAWaitForMultipleEvents``: usable from any event loop.

    Returns what the blocking call would (``WSA_WAIT_EVENT_0 + i``,
    ``WSA_WAIT_TIMEOUT``) and raises :class:`~wsp_async.errors.WSAError` for a bad
    or closed handle.  The loop is never blocked: each wake-up of the waited
    events is a ``call_soon_threadsafe`` onto it.
    """
    from .errors import WSAError

    checked = _validate(len(events), events)
    if checked is None:
        raise WSAError(WSAGetLastError())
    loop = asyncio.get_running_loop()
    future: asyncio.Future[int] = loop.create_future()

    def recheck() -> None:
        if future.done():
            return
        with _lock:
            result = _check(checked, wait_all)
        if result is not None:
            future.set_result(result)

    waiting_thread = threading.get_ident()

    def wake() -> None:
        try:
            # Set from the waiting loop's own thread (a completion on an embedded
            # provider): a plain call_soon, no self-pipe write.
            if threading.get_ident() == waiting_thread:
                loop.call_soon(recheck)
            else:
                loop.call_soon_threadsafe(recheck)
        except RuntimeError:  # the waiting loop is closed: nobody to tell
            pass

    with _lock:
        result = _check(checked, wait_all)
        if result is None:
            for ev in checked:
                ev._waiters.append(wake)
    try:
        if result is None:
            try:
                result = await asyncio.wait_for(asyncio.shield(future), timeout)
            except TimeoutError:
                result = WSA_WAIT_TIMEOUT
    finally:
        with _lock:
            for ev in checked:
                try:
                    ev._waiters.remove(wake)
                except ValueError:
                    pass
    if result == WSA_WAIT_FAILED:
        raise WSAError(WSAErr.WSA_INVALID_HANDLE)
    return result
