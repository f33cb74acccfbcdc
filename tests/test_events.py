"""Event objects and waits (SPEC S1, S7, S7.3)."""

from __future__ import annotations

import asyncio
import threading

import pytest

import wsp_async as w
from wsp_async import (
    WSA_INFINITE,
    WSA_WAIT_EVENT_0,
    WSA_WAIT_FAILED,
    WSA_WAIT_TIMEOUT,
    WSACreateEvent,
    WSAGetLastError,
    WSAWaitForMultipleEvents,
)

from .conftest import eventually, loop_thread, run_in_loop


def test_new_event_is_nonsignaled_and_times_out() -> None:  # SPEC S1
    ev = WSACreateEvent()
    assert WSAWaitForMultipleEvents(1, [ev], False, 0, False) == WSA_WAIT_TIMEOUT
    assert WSAWaitForMultipleEvents(1, [ev], False, 20, False) == WSA_WAIT_TIMEOUT


def test_wait_any_returns_lowest_signaled_index() -> None:  # SPEC S1
    evs = [WSACreateEvent() for _ in range(5)]
    assert w.WSASetEvent(evs[3])
    assert w.WSASetEvent(evs[1])
    assert WSAWaitForMultipleEvents(5, evs, False, 0, False) == WSA_WAIT_EVENT_0 + 1


def test_wait_all_needs_every_event() -> None:  # SPEC S1
    evs = [WSACreateEvent() for _ in range(3)]
    w.WSASetEvent(evs[0])
    w.WSASetEvent(evs[2])
    assert WSAWaitForMultipleEvents(3, evs, True, 0, False) == WSA_WAIT_TIMEOUT
    w.WSASetEvent(evs[1])
    assert WSAWaitForMultipleEvents(3, evs, True, 0, False) == WSA_WAIT_EVENT_0


def test_events_are_manual_reset() -> None:  # SPEC S1
    ev = WSACreateEvent()
    w.WSASetEvent(ev)
    for _ in range(3):
        assert WSAWaitForMultipleEvents(1, [ev], False, WSA_INFINITE, False) == WSA_WAIT_EVENT_0
    assert w.WSAResetEvent(ev)
    assert WSAWaitForMultipleEvents(1, [ev], False, 0, False) == WSA_WAIT_TIMEOUT


def test_set_from_another_thread_wakes_an_infinite_wait() -> None:  # SPEC S1
    ev = WSACreateEvent()
    waiting = threading.Event()
    result: list[int] = []

    def waiter() -> None:
        waiting.set()
        result.append(WSAWaitForMultipleEvents(1, [ev], False, WSA_INFINITE, False))

    t = threading.Thread(target=waiter)
    t.start()
    assert waiting.wait(10)
    w.WSASetEvent(ev)
    t.join(10)
    assert result == [WSA_WAIT_EVENT_0]


def test_wait_all_wakes_only_when_the_last_event_is_set() -> None:  # SPEC S1
    evs = [WSACreateEvent() for _ in range(4)]
    done = threading.Event()
    result: list[int] = []

    def waiter() -> None:
        result.append(WSAWaitForMultipleEvents(4, evs, True, WSA_INFINITE, False))
        done.set()

    t = threading.Thread(target=waiter)
    t.start()
    for ev in evs[:3]:
        w.WSASetEvent(ev)
    assert not done.wait(0.05)
    w.WSASetEvent(evs[3])
    t.join(10)
    assert result == [WSA_WAIT_EVENT_0]


@pytest.mark.parametrize("count", [0, 65])
def test_event_count_limit(count: int) -> None:  # SPEC S1 (64-event limit)
    evs = [WSACreateEvent() for _ in range(count)]
    assert WSAWaitForMultipleEvents(count, evs, False, 0, False) == WSA_WAIT_FAILED
    assert WSAGetLastError() == w.WSA_INVALID_PARAMETER


def test_sixty_four_events_are_allowed() -> None:  # SPEC S1
    evs = [WSACreateEvent() for _ in range(64)]
    w.WSASetEvent(evs[63])
    assert WSAWaitForMultipleEvents(64, evs, False, 0, False) == WSA_WAIT_EVENT_0 + 63


def test_closed_or_foreign_handle_fails() -> None:  # SPEC S1
    ev = WSACreateEvent()
    assert w.WSACloseEvent(ev)
    assert WSAWaitForMultipleEvents(1, [ev], False, 0, False) == WSA_WAIT_FAILED
    assert WSAGetLastError() == w.WSA_INVALID_HANDLE
    assert not w.WSASetEvent(ev)
    assert not w.WSASetEvent("not an event")
    assert WSAGetLastError() == w.WSA_INVALID_HANDLE


def test_closing_an_event_fails_a_wait_in_progress() -> None:  # SPEC S1
    ev = WSACreateEvent()
    waiting = threading.Event()
    result: list[int] = []

    def waiter() -> None:
        waiting.set()
        result.append(WSAWaitForMultipleEvents(1, [ev], False, WSA_INFINITE, False))

    t = threading.Thread(target=waiter)
    t.start()
    assert waiting.wait(10)
    w.WSACloseEvent(ev)
    t.join(10)
    assert result == [WSA_WAIT_FAILED]


async def test_awaitable_wait_from_a_loop() -> None:  # SPEC S1, S7.3
    ev = WSACreateEvent()
    timer = threading.Timer(0.01, w.WSASetEvent, (ev,))
    timer.start()
    assert await ev.wait(timeout=10)
    assert await w.wait_for_events([WSACreateEvent(), ev]) == WSA_WAIT_EVENT_0 + 1


async def test_awaitable_wait_times_out() -> None:  # SPEC S7.3
    ev = WSACreateEvent()
    assert not await ev.wait(timeout=0.01)
    assert await w.wait_for_events([ev], timeout=0.01) == WSA_WAIT_TIMEOUT


async def test_awaitable_wait_all() -> None:  # SPEC S1
    evs = [WSACreateEvent() for _ in range(2)]
    task = asyncio.ensure_future(w.wait_for_events(evs, wait_all=True, timeout=10))
    w.WSASetEvent(evs[0])
    await asyncio.sleep(0)
    assert not task.done()
    w.WSASetEvent(evs[1])
    assert await task == WSA_WAIT_EVENT_0


async def test_awaitable_wait_on_closed_event_raises() -> None:  # SPEC S1
    ev = WSACreateEvent()
    w.WSACloseEvent(ev)
    with pytest.raises(w.WSAError) as info:
        await w.wait_for_events([ev])
    assert info.value.winerror == w.WSA_INVALID_HANDLE


async def test_blocking_wait_on_a_loop_thread_fails_instead_of_deadlocking() -> None:  # SPEC S7.3
    ev = WSACreateEvent()
    assert WSAWaitForMultipleEvents(1, [ev], False, WSA_INFINITE, False) == WSA_WAIT_FAILED
    assert WSAGetLastError() == w.WSAEWOULDBLOCK
    assert w.SleepEx(10, True) == WSA_WAIT_FAILED
    assert WSAGetLastError() == w.WSAEWOULDBLOCK
    # A poll never blocks, so it is allowed.
    assert WSAWaitForMultipleEvents(1, [ev], False, 0, False) == WSA_WAIT_TIMEOUT
    w.WSASetEvent(ev)
    assert WSAWaitForMultipleEvents(1, [ev], False, WSA_INFINITE, False) == WSA_WAIT_EVENT_0


def test_event_set_from_a_loop_wakes_a_thread(loop_kind: str) -> None:  # SPEC S7.1
    ev = WSACreateEvent()
    with loop_thread(loop_kind) as (loop, _):
        loop.call_soon_threadsafe(w.WSASetEvent, ev)
        assert WSAWaitForMultipleEvents(1, [ev], False, 10_000, False) == WSA_WAIT_EVENT_0
        assert run_in_loop(loop, lambda: w.WSAWaitForMultipleEvents(1, [ev], False, 0, False)) == 0


# --- Win32 events (S16.3) -------------------------------------------------------------------


def test_an_auto_reset_event_releases_one_waiter_per_set() -> None:
    # SPEC S16.3: the wait it satisfies resets it.
    ev = w.CreateEvent(None, False, False, None)
    assert ev is not None and ev.auto_reset
    released: list[int] = []
    lock = threading.Lock()

    def waiter(i: int) -> None:
        if w.WaitForSingleObject(ev, 10_000) == w.WAIT_OBJECT_0:
            with lock:
                released.append(i)

    threads = [threading.Thread(target=waiter, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for expected in (1, 2, 3):
        assert w.SetEvent(ev)
        assert eventually(lambda n=expected: len(released) == n)
        assert not ev.signaled  # consumed by the one wait it released
    for t in threads:
        t.join(10)
    assert sorted(released) == [0, 1, 2]


def test_a_manual_reset_event_and_the_wait_family() -> None:
    # SPEC S16.3
    ev = w.CreateEvent(None, True, True, None)
    other = w.CreateEvent(None, True, False, None)
    assert w.WaitForSingleObject(ev, 0) == w.WAIT_OBJECT_0 and ev.signaled  # not reset
    assert w.WaitForMultipleObjects(2, [other, ev], False, 0) == w.WAIT_OBJECT_0 + 1
    assert w.WaitForMultipleObjects(2, [other, ev], True, 0) == w.WAIT_TIMEOUT
    assert w.ResetEvent(ev) and w.WaitForSingleObject(ev, 0) == w.WAIT_TIMEOUT
    ran: list[int] = []
    w.queue_apc(w.WSATHREADID.current(), ran.append, 5)
    assert w.WaitForSingleObjectEx(ev, 10_000, True) == w.WAIT_IO_COMPLETION and ran == [5]
    assert w.CloseHandle(ev) and not w.SetEvent(ev)
    assert w.GetLastError() == w.ERROR_INVALID_HANDLE
    assert w.WaitForSingleObject(ev, 0) == w.WAIT_FAILED


def test_named_events_are_shared_in_the_process() -> None:
    # SPEC S16.3
    first = w.CreateEvent(None, True, False, "wsp-test-event")
    again = w.CreateEvent(None, True, False, "wsp-test-event")
    assert again is first and w.GetLastError() == 183  # ERROR_ALREADY_EXISTS
    assert w.SetEvent(first) and again is not None and again.signaled
