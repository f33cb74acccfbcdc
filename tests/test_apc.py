"""APC delivery: alertable waits, loop threads, FIFO, isolation, thread exit (SPEC S6)."""

from __future__ import annotations

import asyncio
import gc
import logging
import socket
import threading

import pytest

import wsp_async as w
from wsp_async import WAIT_IO_COMPLETION, WSATHREADID, queue_apc
from wsp_async.apc import thread_target

from .conftest import connect, loop_thread, new_loop, recv_exact


def _plain_thread(body):  # type: ignore[no-untyped-def]
    """Run ``body(tid, ready, go)`` in a new thread; returns (thread, tid, go)."""
    box: list[WSATHREADID] = []
    ready = threading.Event()
    go = threading.Event()

    def main() -> None:
        box.append(WSATHREADID.current())
        ready.set()
        body(box[0], go)

    t = threading.Thread(target=main, daemon=True)
    t.start()
    assert ready.wait(10)
    return t, box[0], go


def test_apc_never_runs_outside_an_alertable_wait() -> None:  # SPEC S6.3
    ran: list[str] = []
    observed: dict[str, object] = {}

    def body(tid: WSATHREADID, go: threading.Event) -> None:
        go.wait(10)
        observed["after_plain_sleep"] = (w.SleepEx(1, False), list(ran))
        ev = w.WSACreateEvent()
        observed["after_nonalertable_wait"] = (
            w.WSAWaitForMultipleEvents(1, [ev], False, 1, False),
            list(ran),
        )
        observed["alertable"] = (w.SleepEx(w.INFINITE, True), list(ran))

    t, tid, go = _plain_thread(body)
    assert queue_apc(tid, ran.append, "one")
    go.set()
    t.join(10)
    assert observed["after_plain_sleep"] == (0, [])
    assert observed["after_nonalertable_wait"] == (w.WSA_WAIT_TIMEOUT, [])
    assert observed["alertable"] == (WAIT_IO_COMPLETION, ["one"])


def test_queue_apc_never_runs_inline_even_for_the_calling_thread() -> None:  # SPEC S6.2
    ran: list[int] = []
    queue_apc(WSATHREADID.current(), ran.append, 1)
    assert ran == []
    assert w.SleepEx(0, True) == WAIT_IO_COMPLETION
    assert ran == [1]
    assert w.SleepEx(0, True) == 0


def test_apcs_run_in_fifo_order_and_all_in_one_wait() -> None:  # SPEC S6.3, S6.4
    ran: list[int] = []
    tid = WSATHREADID.current()
    for i in range(100):
        queue_apc(tid, ran.append, i)
    assert w.SleepEx(w.INFINITE, True) == WAIT_IO_COMPLETION
    assert ran == list(range(100))


def test_alertable_event_wait_runs_apcs_and_returns_io_completion() -> None:  # SPEC S6.3
    ran: list[int] = []
    result: list[int] = []

    def body(tid: WSATHREADID, go: threading.Event) -> None:
        ev = w.WSACreateEvent()
        go.set()
        result.append(w.WSAWaitForMultipleEvents(1, [ev], False, w.WSA_INFINITE, True))
        result.append(threading.get_ident())

    t, tid, go = _plain_thread(body)
    assert go.wait(10)
    queue_apc(tid, lambda: ran.append(threading.get_ident()))
    t.join(10)
    assert result[0] == WAIT_IO_COMPLETION
    assert ran == [result[1]]


def test_alertable_sleep_returns_early_when_an_apc_arrives() -> None:  # SPEC S1 (SleepEx)
    result: list[int] = []

    def body(tid: WSATHREADID, go: threading.Event) -> None:
        go.set()
        result.append(w.SleepEx(w.INFINITE, True))

    t, tid, go = _plain_thread(body)
    assert go.wait(10)
    queue_apc(tid, lambda: None)
    t.join(10)
    assert not t.is_alive()
    assert result == [WAIT_IO_COMPLETION]


def test_apc_exception_is_logged_and_later_apcs_run(
    caplog: pytest.LogCaptureFixture,
) -> None:  # SPEC S6.7
    ran: list[int] = []
    tid = WSATHREADID.current()

    def boom() -> None:
        raise ValueError("routine failed")

    queue_apc(tid, boom)
    queue_apc(tid, ran.append, 2)
    with caplog.at_level(logging.ERROR, logger="wsp_async.apc"):
        assert w.SleepEx(0, True) == WAIT_IO_COMPLETION
    assert ran == [2]
    assert any("routine failed" in str(r.exc_info[1]) for r in caplog.records if r.exc_info)


def test_loop_thread_receives_apcs_as_callbacks_on_its_thread(loop_kind: str) -> None:  # SPEC S6.3
    with loop_thread(loop_kind) as (loop, thread):
        tid_box: list[WSATHREADID] = []
        got = threading.Event()
        loop.call_soon_threadsafe(lambda: (tid_box.append(WSATHREADID.current()), got.set()))
        assert got.wait(10)
        seen: list[int] = []
        done = threading.Event()
        for i in range(50):
            queue_apc(tid_box[0], lambda i=i: seen.append((i, threading.get_ident())))
        queue_apc(tid_box[0], done.set)
        assert done.wait(10)
        assert [i for i, _ in seen] == list(range(50))
        assert {ident for _, ident in seen} == {thread.ident}


def test_a_refused_close_leaves_the_loop_threads_apcs_running(loop_kind: str) -> None:
    # SPEC S6.3, S10.4: closing a loop ends its APC target; a close that asyncio refuses
    # (a running loop's, asked from another thread) closed nothing, so the loop thread
    # still takes APCs.  The target once ended on the way out of the refused close.
    with loop_thread(loop_kind) as (loop, _thread):
        tid_box: list[WSATHREADID] = []
        got = threading.Event()
        loop.call_soon_threadsafe(lambda: (tid_box.append(WSATHREADID.current()), got.set()))
        assert got.wait(10)
        with pytest.raises(RuntimeError):
            loop.close()
        ran = threading.Event()
        queue_apc(tid_box[0], ran.set)
        assert ran.wait(10), "the APC was dropped: the loop's target had ended"


async def test_apc_from_the_loop_thread_is_a_later_callback() -> None:  # SPEC S6.2, S6.3
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[int] = loop.create_future()
    queue_apc(WSATHREADID.current(), fut.set_result, 5)
    assert not fut.done()
    assert await asyncio.wait_for(fut, 10) == 5


async def test_loop_apc_exception_goes_to_the_exception_handler() -> None:  # SPEC S6.7
    loop = asyncio.get_running_loop()
    contexts: list[dict[str, object]] = []
    loop.set_exception_handler(lambda _loop, ctx: contexts.append(ctx))
    fut: asyncio.Future[int] = loop.create_future()
    tid = WSATHREADID.current()

    def boom() -> None:
        raise KeyError("apc")

    queue_apc(tid, boom)
    queue_apc(tid, fut.set_result, 1)
    assert await asyncio.wait_for(fut, 10) == 1
    loop.set_exception_handler(None)
    assert len(contexts) == 1 and isinstance(contexts[0]["exception"], KeyError)


def test_thread_exit_fires_hook_and_drops_later_apcs() -> None:  # SPEC S10.4
    fired: list[object] = []
    hooked = threading.Event()

    def body(tid: WSATHREADID, go: threading.Event) -> None:
        assert tid.target is not None
        tid.target.add_exit_hook(fired.append)
        hooked.set()
        go.wait(10)

    t, tid, go = _plain_thread(body)
    assert hooked.wait(10)
    assert queue_apc(tid, lambda: None)  # queued, never run: the thread exits
    go.set()
    t.join(10)
    assert fired == [tid.target]
    assert tid.target is not None and not tid.target.alive
    assert not queue_apc(tid, lambda: None)


def test_loop_close_counts_as_thread_exit(loop_kind: str) -> None:  # SPEC S10.4
    loop = new_loop(loop_kind)
    fired: list[object] = []

    async def capture() -> WSATHREADID:
        return WSATHREADID.current()

    tid = loop.run_until_complete(capture())
    assert tid.target is not None
    tid.target.add_exit_hook(fired.append)
    loop.close()
    assert fired == [tid.target]
    assert not queue_apc(tid, lambda: None)


def test_threadid_of_loop_thread_differs_from_plain_target(loop_kind: str) -> None:  # SPEC S6.3
    with loop_thread(loop_kind) as (loop, _):
        box: list[WSATHREADID] = []
        done = threading.Event()
        loop.call_soon_threadsafe(lambda: (box.append(WSATHREADID.current()), done.set()))
        assert done.wait(10)
        assert getattr(box[0].target, "loop", None) is loop
    assert thread_target() is thread_target()


@pytest.mark.timeout(20)  # a wait that missed the routines would sit out its 60 s
def test_wait_until_wakes_when_routines_ran_not_only_on_completions(provider, listener):  # type: ignore[no-untyped-def]
    # SPEC S6.2 (routines run later, on their thread): a wait for "every routine ran" is
    # re-checked when routines ran, not only on the next completion -- of which there
    # may be none.  A wait that missed it would sit out its whole timeout (60 s, past
    # this test's own limit).
    s, conn = connect(provider, listener)
    ran: list[int] = []
    posted, inside = threading.Event(), threading.Event()

    def poster() -> None:
        for i in range(10):
            err = w.INT()
            rc = provider.WSPSend(
                s, [w.WSABUF(1, b"x")], 1, None, 0, w.WSAOVERLAPPED(),
                lambda e, n, ov, f, i=i: ran.append(i), None, err,
            )  # fmt: skip
            assert rc == 0 or err.value == w.WSA_IO_PENDING
        posted.set()
        assert inside.wait(10)  # the wait below has begun: its predicate was asked
        while len(ran) < 10:
            w.SleepEx(10_000, True)  # the routines run here, after their completions

    def every_routine_ran() -> bool:
        inside.set()
        return len(ran) == 10

    thread = threading.Thread(target=poster)
    thread.start()
    assert posted.wait(10)
    assert provider.wait_until(every_routine_ran, 60)
    thread.join(10)
    assert ran == list(range(10))
    assert recv_exact(conn, 10) == b"x" * 10


def test_a_program_closing_the_providers_loop_leaves_it_running(
    provider: w.Provider, listener: socket.socket
) -> None:
    # SPEC S6.2, S10.4: the provider's I/O loop is the provider's.  A program can find it
    # (anyio's tests close every loop the garbage collector knows of, a loop that on
    # Windows does not exist): its close() from another thread is ignored, and the loop
    # thread's routines still run.  It once raised "Cannot close a running event loop"
    # and, on the way out, ended the loop's APC target: every routine bound for the loop
    # thread after that was dropped.
    found = [obj for obj in gc.get_objects() if obj is provider.loop]
    assert found and isinstance(found[0], asyncio.AbstractEventLoop)
    found[0].close()  # from this thread: the provider's own loop stays
    assert provider.loop.is_running() and not provider.loop.is_closed()
    s, peer = connect(provider, listener)
    ran = threading.Event()
    results: list[tuple[int, int, int]] = []
    err = w.INT()

    def routine(error: int, count: int, _ov: object, _flags: int) -> None:
        results.append((error, count, threading.get_ident()))
        ran.set()

    def post_on_the_loop_thread() -> None:
        buffers = [w.WSABUF(5, b"after")]
        provider.WSPSend(s, buffers, 1, None, 0, w.WSAOVERLAPPED(), routine, None, err)

    provider.loop.call_soon_threadsafe(post_on_the_loop_thread)
    assert ran.wait(10), "the loop thread's routine never ran"
    assert results == [(0, 5, provider.io_loop.ident)]
    assert recv_exact(peer, 5) == b"after"
    provider.close()
    thread = provider.io_loop.thread
    assert thread is not None
    thread.join(10)
    assert provider.loop.is_closed()  # the provider's own thread still closes it
