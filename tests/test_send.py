"""The overlapped send path against plain-socket peers (SPEC S2-S8), on both loops."""

from __future__ import annotations

import ctypes
import functools
import logging
import math
import socket
import threading
from typing import Any

import pytest

import wsp_async as w
from wsp_async import DWORD, INT, WSABUF, WSAOVERLAPPED, WSATHREADID

from .conftest import (
    Completions,
    connect,
    eventually,
    loop_held,
    make_socket,
    recv_all,
    recv_exact,
    run_in_loop,
    stall,
)


def send(p: w.Provider, s: int, chunks: list[bytes], ov=None, routine=None, tid=None, flags=0):  # type: ignore[no-untyped-def]
    err, sent = INT(), DWORD(12345)
    bufs = [WSABUF(len(c), c) for c in chunks]
    rc = p.WSPSend(s, bufs, len(bufs), sent, flags, ov, routine, tid, err)
    return rc, err.value, sent.value


# --- S2: the return protocol -----------------------------------------------------------


def test_send_on_loop_thread_completes_at_once_and_only_queues_routine(provider, listener):  # type: ignore[no-untyped-def]
    # SPEC S2.1, S6.2
    s, conn = connect(provider, listener)
    calls: list[tuple[int, int]] = []
    ov = WSAOVERLAPPED()

    def on_loop() -> tuple[int, int, int, list[tuple[int, int]]]:
        rc, err, sent = send(provider, s, [b"now"], ov, lambda e, n, o, f: calls.append((e, n)))
        return rc, err, sent, list(calls)

    rc, _err, sent, seen_inside = run_in_loop(provider.loop, on_loop)
    assert (rc, sent) == (0, 3)
    assert seen_inside == []  # the routine was queued, not run inside the call
    assert ov.Internal == 0 and ov.InternalHigh == 3
    assert recv_exact(conn, 3) == b"now"
    done = threading.Event()
    provider.loop.call_soon_threadsafe(done.set)
    assert done.wait(10)
    assert calls == [(0, 3)]


def test_foreign_send_that_must_wait_pends_and_leaves_count_untouched(provider, listener):  # type: ignore[no-untyped-def]
    # SPEC S2.2, S4.3: a send queued behind a stalled drain pends.
    s, conn = connect(provider, listener)
    provider.inject(s, delay_drain=math.inf)
    ev = w.WSACreateEvent()
    ov = WSAOVERLAPPED(hEvent=ev)
    rc, err, sent = send(provider, s, [b"a" * 1000, b"b" * 24], ov)
    assert (rc, err, sent) == (w.SOCKET_ERROR, w.WSA_IO_PENDING, 12345)
    provider.inject(s, delay_drain=None)
    assert w.WSAWaitForMultipleEvents(1, [ev], False, 10_000, False) == 0
    assert (ov.Internal, ov.InternalHigh) == (0, 1024)
    assert recv_exact(conn, 1024) == b"a" * 1000 + b"b" * 24


def test_foreign_send_that_fits_completes_at_once(provider, listener):  # type: ignore[no-untyped-def]
    # SPEC S2.1, S6.2 (issue 10, item 7; Windows completes a send that fits the send
    # buffer at once, whichever thread posts it): 0 and the count, routine only queued.
    s, conn = connect(provider, listener)
    calls = Completions()
    ov = WSAOVERLAPPED()
    rc, _err, sent = send(provider, s, [b"a" * 1000, b"b" * 24], ov, calls)
    assert (rc, sent) == (0, 1024)
    assert calls.calls == []  # queued, never run inside the call
    assert not ov.pending and (ov.Internal, ov.InternalHigh) == (0, 1024)
    assert calls.wait(1) and calls.calls[0][:2] == (0, 1024)
    assert recv_exact(conn, 1024) == b"a" * 1000 + b"b" * 24


def test_overlapped_send_may_omit_the_count(provider, listener):  # type: ignore[no-untyped-def]
    # SPEC S2.2
    s, conn = connect(provider, listener)
    ev = w.WSACreateEvent()
    ov = WSAOVERLAPPED(hEvent=ev)
    err = INT()
    rc = provider.WSPSend(s, [WSABUF(2, b"ok")], 1, None, 0, ov, None, None, err)
    assert rc == 0 or err.value == w.WSA_IO_PENDING
    assert w.WSAWaitForMultipleEvents(1, [ev], False, 10_000, False) == 0
    assert recv_exact(conn, 2) == b"ok"


def test_failed_call_never_completes(provider):  # type: ignore[no-untyped-def]
    # SPEC S2.3
    s = make_socket(provider)  # never connected
    ev = w.WSACreateEvent()
    calls = Completions()
    rc, err, _ = send(provider, s, [b"x"], WSAOVERLAPPED(hEvent=ev))
    assert (rc, err) == (w.SOCKET_ERROR, w.WSAENOTCONN)
    rc, err, _ = send(provider, s, [b"x"], WSAOVERLAPPED(), calls)
    assert (rc, err) == (w.SOCKET_ERROR, w.WSAENOTCONN)
    assert w.SleepEx(50, True) == 0  # nothing queued for us
    assert calls.calls == []
    assert w.WSAWaitForMultipleEvents(1, [ev], False, 0, False) == w.WSA_WAIT_TIMEOUT


def test_internal_is_status_pending_while_pending(provider, listener):  # type: ignore[no-untyped-def]
    # SPEC S2.5, S4.1
    s, conn = connect(provider, listener)
    stall(provider, s, conn)
    ovs = [WSAOVERLAPPED(hEvent=w.WSACreateEvent()) for _ in range(64)]
    for ov in ovs:
        send(provider, s, [b"z" * 65536], ov)
    last = ovs[-1]
    assert last.Internal == w.STATUS_PENDING  # 4 MiB cannot have left with nobody reading
    assert last.pending
    received = recv_exact(conn, 64 * 65536)
    assert len(received) == 64 * 65536
    for ov in ovs:
        assert w.WSAWaitForMultipleEvents(1, [ov.hEvent], False, 10_000, False) == 0
        assert (ov.Internal, ov.InternalHigh) == (0, 65536)


# --- S3: overlapped or not -----------------------------------------------------------


def test_overlapped_args_on_non_overlapped_socket_are_a_blocking_call(provider, listener):  # type: ignore[no-untyped-def]
    # SPEC S3.1, S3.3 (Wine's test_nonblocking_async_recv, run on Windows): the call
    # blocks until done, returns 0 and the count, and completes the structure and event.
    s, conn = connect(provider, listener, flags=0)
    ov = WSAOVERLAPPED(hEvent=w.WSACreateEvent())
    rc, _err, sent = send(provider, s, [b"x" * 100], ov)
    assert (rc, sent) == (0, 100)
    assert not ov.pending and (ov.Internal, ov.InternalHigh) == (0, 100)
    assert ov.hEvent.signaled
    calls = Completions()
    rc, _err, sent = send(provider, s, [b"y"], WSAOVERLAPPED(), calls)
    assert (rc, sent) == (0, 1)
    assert calls.wait(1) and calls.calls[0][:2] == (0, 1)
    assert recv_exact(conn, 101) == b"x" * 100 + b"y"


def test_no_overlapped_and_no_routine_is_a_blocking_send(provider, listener):  # type: ignore[no-untyped-def]
    # SPEC S3.2, S8.2
    s, conn = connect(provider, listener)
    rc, _err, sent = send(provider, s, [b"q" * 300_000])
    assert (rc, sent) == (0, 300_000)
    assert recv_exact(conn, 300_000) == b"q" * 300_000


def test_pending_overlapped_cannot_be_posted_again(provider, listener):  # type: ignore[no-untyped-def]
    # SPEC S3.4
    s, conn = connect(provider, listener)
    stall(provider, s, conn)
    ev = w.WSACreateEvent()
    filler = [WSAOVERLAPPED(hEvent=w.WSACreateEvent()) for _ in range(32)]
    for ov in filler:
        send(provider, s, [b"f" * 65536], ov)
    ov = WSAOVERLAPPED(hEvent=ev)
    rc, err, _ = send(provider, s, [b"first"], ov)
    assert err == w.WSA_IO_PENDING
    rc, err, _ = send(provider, s, [b"second"], ov)
    assert (rc, err) == (w.SOCKET_ERROR, w.WSAEINVAL)
    data = recv_exact(conn, 32 * 65536 + 5)
    assert data.endswith(b"first")
    assert w.WSAWaitForMultipleEvents(1, [ev], False, 10_000, False) == 0
    assert (ov.Internal, ov.InternalHigh) == (0, 5)


# --- S4: when a send is complete ------------------------------------------------------


def test_default_and_settable_send_buffer(provider, listener):  # type: ignore[no-untyped-def]
    # SPEC S4.1
    s, _conn = connect(provider, listener)
    err, value, length = INT(), DWORD(), DWORD()
    assert provider.WSPGetSockOpt(s, w.SOL_SOCKET, w.SO_SNDBUF, value, length, err) == 0
    assert (value.value, length.value) == (65536, 4)
    assert (
        provider.WSPSetSockOpt(s, w.SOL_SOCKET, w.SO_SNDBUF, (1000).to_bytes(4, "little"), 4, err)
        == 0
    )
    provider.WSPGetSockOpt(s, w.SOL_SOCKET, w.SO_SNDBUF, value, length, err)
    assert value.value == 1000
    assert provider.WSPSetSockOpt(s, w.SOL_SOCKET, w.SO_SNDBUF, -1, 4, err) == w.SOCKET_ERROR
    assert err.value == w.WSAEINVAL


def _transport_buffered(p: w.Provider, s: int) -> int:
    sock = p.socket_of(s)
    return int(run_in_loop(p.loop, sock.transport.get_write_buffer_size))


def test_zero_send_buffer_completes_only_when_nothing_is_left_in_user_space(provider, listener):  # type: ignore[no-untyped-def]
    # SPEC S4.2
    s, conn = connect(provider, listener)
    stall(provider, s, conn)
    err = INT()
    assert provider.WSPSetSockOpt(s, w.SOL_SOCKET, w.SO_SNDBUF, 0, 4, err) == 0
    ev = w.WSACreateEvent()
    ov = WSAOVERLAPPED(hEvent=ev)
    send(provider, s, [b"k" * (2 << 20)], ov)
    assert w.WSAWaitForMultipleEvents(1, [ev], False, 200, False) == w.WSA_WAIT_TIMEOUT
    assert _transport_buffered(provider, s) > 0  # bytes still in user space: not complete
    assert len(recv_exact(conn, 2 << 20)) == 2 << 20
    assert w.WSAWaitForMultipleEvents(1, [ev], False, 10_000, False) == 0
    assert _transport_buffered(provider, s) == 0


def test_provider_buffering_stays_within_sndbuf_plus_one_send(provider, listener):  # type: ignore[no-untyped-def]
    # SPEC S4.4, S5.2
    s, conn = connect(provider, listener)
    stall(provider, s, conn)
    size = 65536
    chunks = [bytes([i % 251]) * size for i in range(100)]
    ovs = [WSAOVERLAPPED(hEvent=w.WSACreateEvent()) for _ in chunks]
    for chunk, ov in zip(chunks, ovs, strict=True):
        send(provider, s, [chunk], ov)
    assert _transport_buffered(provider, s) <= 65536 + size
    sock = provider.socket_of(s)
    waiting = run_in_loop(provider.loop, lambda: list(sock.engine.sendq.waiting))
    assert waiting, "sends should queue behind the full send buffer"
    # Queued sends hold the caller's own objects: no copy of pending data.
    assert all(op.buffers[0] is chunks[ovs.index(op.overlapped)] for op in waiting)
    assert recv_exact(conn, 100 * size) == b"".join(chunks)


def test_success_reports_the_whole_length(provider, listener):  # type: ignore[no-untyped-def]
    # SPEC S4.3
    s, conn = connect(provider, listener)
    calls = Completions()
    send(provider, s, [b"12345", b"", b"678"], WSAOVERLAPPED(), calls)
    assert calls.wait(1)
    assert calls.calls[0][:2] == (0, 8)
    assert recv_exact(conn, 8) == b"12345678"


# --- S5: buffers and ordering -----------------------------------------------------------


def test_wsabuf_array_may_be_mutated_right_after_the_call(provider, listener):  # type: ignore[no-untyped-def]
    # SPEC S5.1
    s, conn = connect(provider, listener)
    stall(provider, s, conn)
    events = []
    expected = bytearray()
    for i in range(40):
        data = bytes([65 + i % 26]) * 50_000
        bufs = [WSABUF(len(data), data), WSABUF(3, b"end")]
        ev = w.WSACreateEvent()
        events.append(ev)
        provider.WSPSend(s, bufs, 2, None, 0, WSAOVERLAPPED(hEvent=ev), None, None, INT())
        bufs[0].buf = b"!" * 50_000  # mutate the WSABUF objects...
        bufs[1].len = 0
        bufs.clear()  # ...and the list itself
        expected += data + b"end"
    assert recv_exact(conn, len(expected)) == bytes(expected)


def test_count_selects_a_prefix_and_zero_length_entries_are_allowed(provider, listener):  # type: ignore[no-untyped-def]
    # SPEC S5.4
    s, conn = connect(provider, listener)
    bufs = [
        WSABUF(0, b""),
        WSABUF(2, b"ab"),
        WSABUF(0, bytearray()),
        WSABUF(2, b"cd"),
        WSABUF(2, b"XX"),
    ]
    err, sent = INT(), DWORD()
    assert provider.WSPSend(s, bufs, 4, sent, 0, None, None, None, err) == 0
    assert sent.value == 4
    assert recv_exact(conn, 4) == b"abcd"


def test_zero_byte_stream_send_completes_at_once_with_zero(provider, listener):  # type: ignore[no-untyped-def]
    # SPEC S5.4
    s, _conn = connect(provider, listener)

    def on_loop() -> tuple[int, int, int]:
        return send(provider, s, [], WSAOVERLAPPED(), lambda *a: None)

    rc, _err, sent = run_in_loop(provider.loop, on_loop)
    assert (rc, sent) == (0, 0)


def test_wsabuf_len_shorter_than_buf_sends_a_prefix(provider, listener):  # type: ignore[no-untyped-def]
    # SPEC S5.4
    s, conn = connect(provider, listener)
    err, sent = INT(), DWORD()
    assert (
        provider.WSPSend(s, [WSABUF(3, bytearray(b"abcdef"))], 1, sent, 0, None, None, None, err)
        == 0
    )
    assert sent.value == 3
    assert recv_exact(conn, 3) == b"abc"


def test_many_threads_scatter_gather_keep_order(provider, listener):  # type: ignore[no-untyped-def]
    # SPEC S5.3: posts from 4 threads, thousands of 3-WSABUF sends, byte-exact check.
    s, conn = connect(provider, listener)
    threads, per_thread = 4, 1500
    results: dict[int, list[int]] = {}
    received = bytearray()

    def reader() -> None:
        received.extend(recv_all(conn))

    rt = threading.Thread(target=reader)
    rt.start()

    def poster(t: int) -> None:
        calls = Completions()
        for seq in range(per_thread):
            bufs = _record(t, seq)
            rc = provider.WSPSend(s, bufs, 3, None, 0, WSAOVERLAPPED(), calls, None, INT())
            assert rc == 0 or w.WSAGetLastError() in (0, w.WSA_IO_PENDING) or True
        assert calls.wait(per_thread, 60)
        results[t] = [c[0] for c in calls.calls]

    workers = [threading.Thread(target=poster, args=(t,)) for t in range(threads)]
    for t in workers:
        t.start()
    for t in workers:
        t.join(90)
    err = INT()
    provider.WSPShutdown(s, w.SD_SEND, err)
    rt.join(30)
    assert all(codes == [0] * per_thread for codes in results.values())
    _assert_records_in_order(bytes(received), threads, per_thread)


def _record(poster: int, seq: int) -> list[WSABUF]:
    """One record of a poster's: a header (poster, sequence, length), a body, a newline."""
    body = bytes([poster]) * (seq % 97)
    header = poster.to_bytes(1, "big") + seq.to_bytes(4, "big") + len(body).to_bytes(2, "big")
    return [WSABUF(7, header), WSABUF(len(body), body), WSABUF(1, b"\n")]


def _assert_records_in_order(data: bytes, posters: int, per_poster: int) -> None:
    """Every record whole, each poster's records in its posting order, none missing."""
    pos, next_seq = 0, dict.fromkeys(range(posters), 0)
    while pos < len(data):
        t = data[pos]
        seq = int.from_bytes(data[pos + 1 : pos + 5], "big")
        n = int.from_bytes(data[pos + 5 : pos + 7], "big")
        assert seq == next_seq[t]
        assert data[pos + 7 : pos + 7 + n] == bytes([t]) * n
        assert data[pos + 7 + n : pos + 8 + n] == b"\n"
        next_seq[t] += 1
        pos += 8 + n
    assert next_seq == dict.fromkeys(range(posters), per_poster)


def test_the_loop_thread_and_other_threads_posting_at_once_leave_the_count_at_zero(  # type: ignore[no-untyped-def]
    provider, listener
):
    # SPEC S5.3, S2.4, S11 (the pending count): the loop thread counts its posts in a tally
    # of its own, without a lock, while other threads count theirs under it (issue 26).
    # Three plain threads and the loop thread post at once, each its own numbered
    # records; every send completes once, successfully, each poster's records arrive in
    # its order, and once all completed the count is nothing on every measure.
    s, conn = connect(provider, listener)
    threads, per_poster, chunk = 3, 1200, 40
    loop_poster = threads
    received = bytearray()
    rt = threading.Thread(target=lambda: received.extend(recv_all(conn)))
    rt.start()
    on_loop: list[int] = []
    loop_err = INT()

    def loop_routine(error: int, nbytes: int, ov: object, flags: int) -> None:
        on_loop.append(error)

    def post_chunk(first: int) -> None:
        for seq in range(first, min(first + chunk, per_poster)):
            provider.WSPSend(s, _record(loop_poster, seq), 3, None, 0, WSAOVERLAPPED(), loop_routine, None, loop_err)  # fmt: skip
        if first + chunk < per_poster:
            provider.loop.call_soon(post_chunk, first + chunk)  # interleaved with the others

    results: dict[int, list[int]] = {}

    def poster(t: int) -> None:
        calls, err = Completions(), INT()
        for seq in range(per_poster):
            provider.WSPSend(s, _record(t, seq), 3, None, 0, WSAOVERLAPPED(), calls, None, err)
        assert calls.wait(per_poster, 60)
        results[t] = [c[0] for c in calls.calls]

    workers = [threading.Thread(target=poster, args=(t,)) for t in range(threads)]
    for t in workers:
        t.start()
    provider.loop.call_soon_threadsafe(post_chunk, 0)
    for t in workers:
        t.join(90)
    all_ran = eventually(lambda: len(on_loop) == per_poster, 60)
    pending = provider.socket_of(s).engine.pending
    counted = (pending.count, pending.sends, pending.bytes)
    provider.WSPShutdown(s, w.SD_SEND, INT())
    rt.join(30)
    assert all_ran and on_loop == [0] * per_poster
    assert results == {t: [0] * per_poster for t in range(threads)}
    assert counted == (0, 0, 0)
    _assert_records_in_order(bytes(received), threads + 1, per_poster)


# --- S6: completion routines -------------------------------------------------------------


def test_routine_runs_on_the_named_thread_with_the_documented_arguments(provider, listener):  # type: ignore[no-untyped-def]
    # SPEC S6.1, S6.6
    s, conn = connect(provider, listener)
    calls = Completions()
    ready, go = threading.Event(), threading.Event()
    box: list[WSATHREADID] = []

    def alertable_thread() -> None:
        box.append(WSATHREADID.current())
        ready.set()
        calls.wait(1)
        go.set()

    t = threading.Thread(target=alertable_thread)
    t.start()
    assert ready.wait(10)
    ev = w.WSACreateEvent()
    ov = WSAOVERLAPPED(hEvent=ev)  # hEvent carries context: never set (S6.6)
    send(provider, s, [b"hello"], ov, calls, box[0])
    assert go.wait(20)
    t.join(10)
    error, n, got_ov, flags, ident = calls.calls[0]
    assert (error, n, got_ov, flags) == (0, 5, ov, 0)
    assert ident == box[0].ThreadHandle != threading.get_ident()
    assert w.WSAWaitForMultipleEvents(1, [ev], False, 0, False) == w.WSA_WAIT_TIMEOUT
    assert recv_exact(conn, 5) == b"hello"


def test_routines_of_one_socket_never_nest(provider, listener):  # type: ignore[no-untyped-def]
    # SPEC S6.4
    s, conn = connect(provider, listener)
    depth, max_depth, order = [0], [0], []

    def routine(error: int, n: int, ov: WSAOVERLAPPED, flags: int) -> None:
        depth[0] += 1
        max_depth[0] = max(max_depth[0], depth[0])
        order.append(ov.hEvent)
        w.SleepEx(0, True)  # an alertable wait inside a routine must not run the next one here
        depth[0] -= 1

    for i in range(20):
        send(provider, s, [b"n"], WSAOVERLAPPED(hEvent=i), routine)
    recv_exact(conn, 20)
    while len(order) < 20:
        assert w.SleepEx(10_000, True) == w.WAIT_IO_COMPLETION
    assert max_depth[0] == 1
    assert order == list(range(20))


def test_routine_may_post_again(provider, listener):  # type: ignore[no-untyped-def]
    # SPEC S6.5, S5.3
    s, conn = connect(provider, listener)
    done = threading.Event()
    count = [0]

    def routine(error: int, n: int, ov: WSAOVERLAPPED, flags: int) -> None:
        count[0] += 1
        if count[0] < 50:
            data = count[0].to_bytes(2, "big")
            provider.WSPSend(
                s, [WSABUF(2, data)], 1, None, 0, WSAOVERLAPPED(), routine, None, INT()
            )
        else:
            done.set()

    send(provider, s, [(0).to_bytes(2, "big")], WSAOVERLAPPED(), routine)
    while not done.is_set():
        w.SleepEx(10_000, True)
    data = recv_exact(conn, 100)
    assert [int.from_bytes(data[i : i + 2], "big") for i in range(0, 100, 2)] == list(range(50))


def test_routine_exception_is_reported_and_delivery_goes_on(provider, listener, caplog):  # type: ignore[no-untyped-def]
    # SPEC S6.7
    s, _conn = connect(provider, listener)
    calls = Completions()

    def bad(*args: object) -> None:
        raise RuntimeError("routine blew up")

    send(provider, s, [b"1"], WSAOVERLAPPED(), bad)
    send(provider, s, [b"2"], WSAOVERLAPPED(), calls)
    with caplog.at_level(logging.ERROR):
        assert calls.wait(1)
    assert any("routine blew up" in repr(r.exc_info) for r in caplog.records)


# --- S7: events and polling ----------------------------------------------------------------


def test_get_overlapped_result_polls_and_waits(provider, listener):  # type: ignore[no-untyped-def]
    # SPEC S7.2
    s, conn = connect(provider, listener)
    stall(provider, s, conn)
    ovs = [WSAOVERLAPPED() for _ in range(64)]
    for ov in ovs:
        send(provider, s, [b"p" * 65536], ov)
    err, n, flags = INT(), DWORD(), DWORD(7)
    assert provider.WSPGetOverlappedResult(s, ovs[-1], n, False, flags, err) is False
    assert err.value == w.WSA_IO_INCOMPLETE
    reader = threading.Thread(target=recv_exact, args=(conn, 64 * 65536))
    reader.start()
    assert provider.WSPGetOverlappedResult(s, ovs[-1], n, True, flags, err) is True
    assert (n.value, flags.value) == (65536, 0)
    reader.join(10)


def test_failed_operation_result_is_false_with_its_error(provider, listener):  # type: ignore[no-untyped-def]
    # SPEC S7.2, S10.3
    s, conn = connect(provider, listener)
    stall(provider, s, conn)
    ovs = [WSAOVERLAPPED() for _ in range(64)]
    for ov in ovs:
        send(provider, s, [b"p" * 65536], ov)
    err = INT()
    assert provider.WSPIoctl(s, w.SIO_FLUSH, None, 0, None, 0, DWORD(), None, None, None, err) == 0
    n = ctypes.c_ulong()
    assert provider.WSPGetOverlappedResult(s, ovs[-1], n, True, None, err) is False
    assert err.value == w.WSA_OPERATION_ABORTED


def test_event_is_set_on_error_too(provider, listener):  # type: ignore[no-untyped-def]
    # SPEC S7.1, S10.2
    s, conn = connect(provider, listener)
    stall(provider, s, conn)
    ovs = [WSAOVERLAPPED(hEvent=w.WSACreateEvent()) for _ in range(64)]
    for ov in ovs:
        send(provider, s, [b"e" * 65536], ov)
    assert provider.WSPCloseSocket(s, INT()) == 0
    assert w.WSAWaitForMultipleEvents(1, [ovs[-1].hEvent], False, 10_000, False) == 0
    assert ovs[-1].Internal == w.STATUS_CANCELLED


def test_waits_on_the_io_loop_thread_refuse_instead_of_deadlocking(provider, listener):  # type: ignore[no-untyped-def]
    # SPEC S7.3
    s, conn = connect(provider, listener)
    stall(provider, s, conn)
    ovs = [WSAOVERLAPPED() for _ in range(64)]
    for ov in ovs:
        send(provider, s, [b"w" * 65536], ov)

    def on_loop() -> tuple[bool, int]:
        err = INT()
        ok = provider.WSPGetOverlappedResult(s, ovs[-1], DWORD(), True, DWORD(), err)
        return ok, err.value

    assert run_in_loop(provider.loop, on_loop) == (False, w.WSAEWOULDBLOCK)


# --- S8: non-overlapped sends ----------------------------------------------------------------


def test_nonblocking_send_is_all_or_nothing_then_would_block(provider, listener):  # type: ignore[no-untyped-def]
    # SPEC S8.1: Windows never reports a short non-blocking send; a full buffer
    # refuses the whole send with WSAEWOULDBLOCK and takes nothing.
    s, conn = connect(provider, listener)
    stall(provider, s, conn)
    err = INT()
    assert provider.WSPIoctl(s, w.FIONBIO, 1, 4, None, 0, DWORD(), None, None, None, err) == 0
    total = 0
    for i in range(1000):
        rc, code, sent = send(provider, s, [bytes([i % 251]) * 100_000])
        if rc == w.SOCKET_ERROR:
            assert code == w.WSAEWOULDBLOCK
            break
        assert sent == 100_000
        total += 1
    else:
        pytest.fail("a stalled peer never made the send block")
    assert total >= 1
    # S4.4: bounded by SO_SNDBUF plus one send.
    assert _transport_buffered(provider, s) <= 65536 + 100_000
    expected = b"".join(bytes([i % 251]) * 100_000 for i in range(total))
    assert recv_exact(conn, len(expected)) == expected


def test_blocking_send_in_progress_elsewhere_is_refused(provider, listener):  # type: ignore[no-untyped-def]
    # SPEC S9 (WSAEINPROGRESS), S8.2
    s, conn = connect(provider, listener)
    stall(provider, s, conn)
    started = threading.Event()
    result: list[tuple[int, int, int]] = []

    def blocker() -> None:
        started.set()
        result.append(send(provider, s, [b"b" * (4 << 20)]))

    t = threading.Thread(target=blocker)
    t.start()
    assert started.wait(10)
    sock = provider.socket_of(s)
    assert eventually(lambda: sock.handoff.blocking_owner is not None)
    rc, err, _ = send(provider, s, [b"x"])
    assert (rc, err) == (w.SOCKET_ERROR, w.WSAEINPROGRESS)
    assert len(recv_exact(conn, 4 << 20)) == 4 << 20
    t.join(20)
    assert result == [(0, 0, 4 << 20)]


def test_socket_error_is_readable(provider):  # type: ignore[no-untyped-def]
    # SPEC S1 (SO_TYPE, SO_ERROR)
    s = make_socket(provider)
    err, value = INT(), DWORD()
    assert provider.WSPGetSockOpt(s, w.SOL_SOCKET, w.SO_TYPE, value, None, err) == 0
    assert value.value == w.SOCK_STREAM
    assert provider.WSPGetSockOpt(s, w.SOL_SOCKET, w.SO_ERROR, value, None, err) == 0
    assert value.value == 0


def test_plain_socket_peer_sees_tcp_nodelay_passthrough(provider, listener):  # type: ignore[no-untyped-def]
    # SPEC S1 (TCP_NODELAY)
    s, _conn = connect(provider, listener)
    err, value = INT(), DWORD()
    assert provider.WSPSetSockOpt(s, w.IPPROTO_TCP, w.TCP_NODELAY, 1, 4, err) == 0
    assert provider.WSPGetSockOpt(s, w.IPPROTO_TCP, w.TCP_NODELAY, value, None, err) == 0
    assert value.value != 0
    assert provider.socket_of(s).sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0


def test_blocking_and_overlapped_senders_interleave_whole_records(provider, listener):  # type: ignore[no-untyped-def]
    # SPEC S5.3, S8.2: blocking sends that go straight to the kernel when the socket
    # is idle never cut into, or overtake, overlapped sends queued by another thread.
    s, conn = connect(provider, listener)
    received = bytearray()
    reader = threading.Thread(target=lambda: received.extend(recv_all(conn)))
    reader.start()
    per_thread = 2000

    def record(t: int, seq: int) -> bytes:
        body = bytes([65 + t]) * (1 + seq % 300)
        return bytes([t]) + seq.to_bytes(4, "big") + len(body).to_bytes(2, "big") + body

    def blocking() -> None:
        for seq in range(per_thread):
            data = record(0, seq)
            assert (
                provider.WSPSend(
                    s, [WSABUF(len(data), data)], 1, DWORD(), 0, None, None, None, INT()
                )
                == 0
            )

    def overlapped() -> None:
        calls = Completions()
        for seq in range(per_thread):
            data = record(1, seq)
            provider.WSPSend(
                s,
                [WSABUF(7, data[:7]), WSABUF(len(data) - 7, data[7:])],
                2,
                None,
                0,
                WSAOVERLAPPED(),
                calls,
                None,
                INT(),
            )
        assert calls.wait(per_thread, 60)

    threads = [threading.Thread(target=blocking), threading.Thread(target=overlapped)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    provider.WSPShutdown(s, w.SD_SEND, INT())
    reader.join(30)
    data, pos, seen = bytes(received), 0, {0: 0, 1: 0}
    while pos < len(data):
        t, seq, n = (
            data[pos],
            int.from_bytes(data[pos + 1 : pos + 5], "big"),
            int.from_bytes(data[pos + 5 : pos + 7], "big"),
        )
        assert seq == seen[t] and data[pos + 7 : pos + 7 + n] == bytes([65 + t]) * n
        seen[t] += 1
        pos += 7 + n
    assert seen == {0: per_thread, 1: per_thread}


def test_a_gather_write_the_kernel_takes_in_part_loses_and_reorders_nothing(provider, listener):  # type: ignore[no-untyped-def]
    # SPEC S4.1, S4.4, S5.3, S2.4, S15.1: the sends posted after the first in one loop
    # iteration are offered to the kernel in one gather write.  It takes what fits its
    # buffers; the rest of the send it stopped in goes through the transport, and the
    # sends it did not reach wait their turn -- still withdrawable, so one of them
    # cancelled never goes out -- and every other byte arrives once, in order.
    s, conn = connect(provider, listener)
    stall(provider, s, conn)  # small kernel buffers: the kernel takes part of the burst
    sock = provider.socket_of(s)
    host = sock.sock
    offers: list[tuple[int, int]] = []

    class Recording:
        def __getattr__(self, name):  # type: ignore[no-untyped-def]
            return getattr(host, name)

        def sendmsg(self, buffers):  # type: ignore[no-untyped-def]
            taken = host.sendmsg(buffers)
            offers.append((sum(len(memoryview(b)) for b in buffers), taken))
            return taken

    # The first is small, so the transport holds nothing when the gather write comes.
    messages = [b"<" * 1024] + [i.to_bytes(4, "big") * 16384 for i in range(1, 32)]
    ovs = [WSAOVERLAPPED(hEvent=w.WSACreateEvent()) for _ in messages]

    def post_all() -> list[int]:
        err = INT()
        return [
            provider.WSPSend(s, [WSABUF(len(m), m)], 1, None, 0, ov, None, None, err)
            for m, ov in zip(messages, ovs, strict=True)
        ]

    sock.sock = Recording()
    try:
        assert run_in_loop(provider.loop, post_all)[0] == 0
        assert ovs[-1].pending and w.CancelIoEx(s, ovs[-1])  # not reached: withdrawn
        # The cancel is recorded (S15.2); once it is done, so is the gather write before it.
        assert w.WSAWaitForMultipleEvents(1, [ovs[-1].hEvent], False, 10_000, False) == 0
        assert offers and offers[0][1] < offers[0][0]  # the kernel took part of the offer
        kept = b"".join(messages[:-1])
        assert recv_exact(conn, len(kept)) == kept
        events = [ov.hEvent for ov in ovs]
        assert w.WSAWaitForMultipleEvents(len(events), events, True, 10_000, False) == 0
    finally:
        sock.sock = host
    assert [(ov.Internal, ov.InternalHigh) for ov in ovs[:-1]] == [
        (0, len(m)) for m in messages[:-1]
    ]
    assert ovs[-1].Internal == w.STATUS_CANCELLED
    err = INT()
    assert provider.WSPSend(s, [WSABUF(1, b"!")], 1, None, 0, WSAOVERLAPPED(), None, None, err) in (
        0,
        w.SOCKET_ERROR,
    )
    assert recv_exact(conn, 1) == b"!"  # nothing of the cancelled send came before it


def test_a_close_in_the_same_callback_aborts_the_sends_waiting_for_the_gather_write(
    provider, listener
):  # type: ignore[no-untyped-def]
    # SPEC S10.2, S2.4 (docs/semantics.md): on the loop thread the first send goes out at
    # once; the ones after it in the same callback pend for the end-of-iteration gather
    # write, so a close made before then aborts them: their bytes never go out, and each
    # completes exactly once.
    s, conn = connect(provider, listener)
    messages = [bytes([65 + i]) * 16384 for i in range(3)]
    ovs = [WSAOVERLAPPED(hEvent=w.WSACreateEvent()) for _ in messages]

    def post_then_close() -> list[tuple[int, int]]:
        out = []
        for m, ov in zip(messages, ovs, strict=True):
            err = INT()
            rc = provider.WSPSend(s, [WSABUF(len(m), m)], 1, None, 0, ov, None, None, err)
            out.append((rc, err.value if rc else 0))
        assert provider.WSPCloseSocket(s, INT()) == 0
        return out

    assert run_in_loop(provider.loop, post_then_close) == [
        (0, 0),
        (w.SOCKET_ERROR, w.WSA_IO_PENDING),
        (w.SOCKET_ERROR, w.WSA_IO_PENDING),
    ]
    events = [ov.hEvent for ov in ovs]
    assert w.WSAWaitForMultipleEvents(3, events, True, 10_000, False) == 0
    assert [ov.Internal for ov in ovs] == [0, w.STATUS_CANCELLED, w.STATUS_CANCELLED]
    assert recv_all(conn) == messages[0]  # then the graceful end: nothing of the others


@pytest.mark.parametrize("how", ["cancel", "flush"])
def test_a_send_another_thread_began_writing_is_never_cut(provider, listener, how):  # type: ignore[no-untyped-def]
    # SPEC S15.1, S10.3, S5.3: a send whose first bytes this thread wrote straight to the
    # kernel has started.  A CancelIoEx or SIO_FLUSH that reaches the loop while its rest
    # still waits there (the drain stalled) leaves it: it completes whole, and the peer
    # never sees a piece of it followed by later sends.
    s, conn = connect(provider, listener)
    stall(provider, s, conn)
    first = WSAOVERLAPPED(hEvent=w.WSACreateEvent())
    assert send(provider, s, [b"f" * 10], first)[0] in (0, w.SOCKET_ERROR)
    assert recv_exact(conn, 10) == b"f" * 10  # the loop wrote it: direct writes allowed now
    big = bytes(range(256)) * (1 << 14)  # 4 MiB: the kernel takes only a part at once
    ev = w.WSACreateEvent()
    ov = WSAOVERLAPPED(hEvent=ev)
    loop = provider.loop
    with loop_held(loop):
        # Runs once the loop is free, before the loop takes the rest of the send.
        loop.call_soon_threadsafe(functools.partial(provider.inject, s, delay_drain=math.inf))
        assert send(provider, s, [big], ov)[:2] == (w.SOCKET_ERROR, w.WSA_IO_PENDING)
        if how == "cancel":
            assert w.CancelIoEx(s, ov)  # recorded; reaches the loop after the rest
    if how == "flush":
        err = INT()
        assert (
            provider.WSPIoctl(s, w.SIO_FLUSH, None, 0, None, 0, DWORD(), None, None, None, err) == 0
        ), err.value
    provider.inject(s, delay_drain=None)
    assert send(provider, s, [b"tail"], WSAOVERLAPPED())[0] in (0, w.SOCKET_ERROR)
    received: list[bytes] = []
    reader = threading.Thread(target=lambda: received.append(recv_all(conn)))
    reader.start()
    assert w.WSAWaitForMultipleEvents(1, [ev], False, 20_000, False) == 0
    assert (ov.Internal, ov.InternalHigh) == (0, len(big))
    assert provider.WSPShutdown(s, w.SD_SEND, INT()) == 0
    reader.join(30)
    assert received == [big + b"tail"]


def test_blocking_sends_from_another_thread_racing_a_close_deliver_every_success(  # type: ignore[no-untyped-def]
    provider, listener
):
    # SPEC S8.2, S10.2, S2.4 (issue 24): a blocking send from another thread that fits is
    # copied into the emulated send buffer and returns (admission's STAGE), or writes
    # itself (DIRECT).  A close from a third thread racing them: every send that
    # returned its length reaches the peer, in order, before the end of the stream (a
    # graceful close sends what the buffer holds); every other one fails with a Winsock
    # code, nothing in between, and nothing arrives that no send reported.
    s, conn = connect(provider, listener)
    size, total = 100, 400
    returned: list[int] = []
    failed: list[int] = []
    halfway = threading.Event()

    def message(i: int) -> bytes:
        return i.to_bytes(4, "big") * (size // 4)

    def sender() -> None:
        for i in range(total):
            err, count = w.INT(), w.DWORD()
            rc = provider.WSPSend(s, [WSABUF(size, message(i))], 1, count, 0, None, None, None, err)
            if rc == 0:
                assert count.value == size
                returned.append(i)
            else:
                failed.append(err.value)
            if i == total // 4:
                halfway.set()

    def closer() -> None:
        assert halfway.wait(10)
        err = w.INT()
        assert provider.WSPCloseSocket(s, err) == 0, err.value

    threads = [threading.Thread(target=sender), threading.Thread(target=closer)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert not any(t.is_alive() for t in threads)
    assert returned == list(range(len(returned)))  # successes are a prefix: one thread's order
    assert set(failed) <= {w.WSAENOTSOCK, w.WSAEINTR, w.WSAECONNABORTED}, set(failed)
    assert len(returned) + len(failed) == total and len(returned) > total // 4
    data = recv_all(conn)
    assert data == b"".join(message(i) for i in returned)


def test_a_blocking_urgent_send_on_the_loop_thread_that_must_wait_is_refused_whole(  # type: ignore[no-untyped-def]
    provider, listener
):
    # SPEC S7.3, S2.3: the loop thread never waits.  A blocking MSG_OOB send goes alone on
    # an empty transport; one made there while the transport still holds bytes (a send
    # that completed at once, held within SO_SNDBUF) must wait, so it is refused with
    # WSAEWOULDBLOCK and starts nothing -- not failed with a pending status while its
    # byte went out later anyway.
    s, conn = connect(provider, listener)
    stall(provider, s, conn)
    adapter = provider.socket_of(s)

    def on_loop() -> tuple[int, int]:
        # The kernel's buffers full, then bytes the transport holds (what a send that
        # completed at once leaves when the kernel is full).
        filled = _fill_the_kernel(adapter)
        err = INT()
        ov = WSAOVERLAPPED()
        assert (
            provider.WSPSend(s, [WSABUF(1000, b"t" * 1000)], 1, None, 0, ov, None, None, err) == 0
        )
        assert not ov.pending and adapter.transport.get_write_buffer_size() == 1000
        rc = provider.WSPSend(s, [WSABUF(1, b"!")], 1, DWORD(), w.MSG_OOB, None, None, None, err)
        return rc, err.value, filled

    rc, code, filled = run_in_loop(provider.loop, on_loop)
    assert (rc, code) == (w.SOCKET_ERROR, w.WSAEWOULDBLOCK)
    assert recv_exact(conn, filled + 1000) == b"f" * filled + b"t" * 1000
    conn.settimeout(0.5)
    try:
        urgent = conn.recv(1, socket.MSG_OOB)
    except (BlockingIOError, OSError, TimeoutError):
        urgent = b""
    assert urgent == b""  # the refused urgent byte never went


def test_an_urgent_send_that_meets_a_full_kernel_buffer_keeps_its_mark(provider, listener):  # type: ignore[no-untyped-def]
    # SPEC S9 (MSG_OOB on a stream: urgent data), S5.3, S2.4: an urgent send whose turn
    # comes while the kernel's buffer is full (the transport empty) waits for room and then
    # goes as urgent data, its last byte the urgent one -- never as plain bytes (it did:
    # the kernel's EAGAIN sent the whole through the transport).  The send posted after it
    # waits behind it; every byte arrives once, in order; each send completes once, with
    # its whole count.
    s, conn = connect(provider, listener)
    stall(provider, s, conn)
    urgent = WSAOVERLAPPED(hEvent=w.WSACreateEvent())
    after = WSAOVERLAPPED(hEvent=w.WSACreateEvent())
    filled, rcs = run_in_loop(
        provider.loop, _urgent_behind_a_full_kernel, provider, s, urgent, after
    )
    # The urgent send is held within SO_SNDBUF: complete (S4.1), as any other; the one
    # after it waits for it.
    assert rcs[0] in (0, w.SOCKET_ERROR) and rcs[1] == w.SOCKET_ERROR and after.pending
    # Inline up to the urgent mark; the urgent byte apart (read before anything past the
    # mark: Linux forgets it then); then the rest, in order.
    assert recv_exact(conn, filled + 2) == b"f" * filled + b"ab"
    assert conn.recv(1, socket.MSG_OOB) == b"!"
    assert recv_exact(conn, 5) == b"after"
    events = [urgent.hEvent, after.hEvent]
    assert w.WSAWaitForMultipleEvents(2, events, True, 10_000, False) == 0
    assert [(ov.Internal, ov.InternalHigh) for ov in (urgent, after)] == [(0, 3), (0, 5)]


def test_a_close_while_an_urgent_rest_waits_for_room_ends_each_send_once(provider, listener):  # type: ignore[no-untyped-def]
    # SPEC S10.2, S2.4 (hostile): closed while the rest of an urgent send waits for room in
    # the kernel, the send already complete stays complete, the one behind it is aborted,
    # each exactly once, and no retry runs on the closed socket.
    s, conn = connect(provider, listener)
    stall(provider, s, conn)
    adapter = provider.socket_of(s)
    urgent = WSAOVERLAPPED(hEvent=w.WSACreateEvent())
    after = WSAOVERLAPPED(hEvent=w.WSACreateEvent())

    def on_loop() -> bool:
        _urgent_behind_a_full_kernel(provider, s, urgent, after)
        waiting = adapter.drain_timer is not None  # the urgent rest's retry
        assert provider.WSPCloseSocket(s, INT()) == 0
        return waiting and adapter.drain_timer is None

    assert run_in_loop(provider.loop, on_loop)
    events = [urgent.hEvent, after.hEvent]
    assert w.WSAWaitForMultipleEvents(2, events, True, 10_000, False) == 0
    assert (urgent.Internal, urgent.InternalHigh) == (0, 3)
    assert after.Internal == w.STATUS_CANCELLED


def _urgent_behind_a_full_kernel(
    provider: w.Provider, s: int, urgent: WSAOVERLAPPED, after: WSAOVERLAPPED
) -> tuple[int, list[int]]:
    """On the loop: the kernel's buffers filled straight through the host socket (the
    transport empty), then an urgent send of ``b"ab!"`` and a plain one of ``b"after"``
    posted; the bytes filled and the two return codes."""
    filled = _fill_the_kernel(provider.socket_of(s))
    err = INT()
    return filled, [
        provider.WSPSend(s, [WSABUF(3, b"ab!")], 1, None, w.MSG_OOB, urgent, None, None, err),
        provider.WSPSend(s, [WSABUF(5, b"after")], 1, None, 0, after, None, None, err),
    ]


def _fill_the_kernel(adapter: Any) -> int:
    """On the loop: ``b"f"`` bytes straight through the host socket until the kernel's
    buffers take no more (the transport left empty); how many went."""
    filled = 0
    while True:
        try:
            filled += adapter.sock.send(b"f" * 65536)
        except BlockingIOError:
            return filled


def test_wsp_send_takes_its_arguments_by_name_and_a_subclass_keeps_its_own(loop_kind, listener):  # type: ignore[no-untyped-def]
    # SPEC S2, S2.3: a provider's WSPSend is the send body behind the S2 wrapper (issue
    # 26), and still the ws2spi.h call: its arguments by name, lpErrno first among them
    # checked, and a layered provider's own WSPSend the one its callers reach.
    seen: list[int] = []

    class Layered(w.Provider):
        def WSPSend(self, s, *args, **named):  # type: ignore[no-untyped-def, override]
            seen.append(s)
            return super().WSPSend(s, *args, **named)

    for cls in (w.Provider, Layered):
        with cls(use_uvloop=(loop_kind == "uvloop")) as provider:
            s, conn = connect(provider, listener)
            err = INT()
            sent = DWORD()
            rc = provider.WSPSend(
                s=s, lpBuffers=[WSABUF(3, b"abc")], dwBufferCount=1,
                lpNumberOfBytesSent=sent, dwFlags=0, lpOverlapped=None,
                lpCompletionRoutine=None, lpThreadId=None, lpErrno=err,
            )  # fmt: skip
            assert (rc, sent.value, w.WSAGetLastError()) == (0, 3, 0)
            assert recv_exact(conn, 3) == b"abc"
            # Every name but lpErrno's: no box to write to -- WSAEFAULT by the return.
            assert provider.WSPSend(s=s, lpBuffers=[], dwBufferCount=0) == w.SOCKET_ERROR
            assert w.WSAGetLastError() == w.WSAEFAULT
            # Any one argument left out, the others named: WSAEFAULT, nothing sent (the
            # layered provider's own WSPSend is its own business).
            full = dict(
                s=s, lpBuffers=[WSABUF(4, b"lost")], dwBufferCount=1, lpNumberOfBytesSent=sent,
                dwFlags=0, lpOverlapped=WSAOVERLAPPED(), lpCompletionRoutine=lambda *a: None,
                lpThreadId=WSATHREADID.current(), lpErrno=err,
            )  # fmt: skip
            for name in full if cls is w.Provider else ():
                err.value = 0
                named = {k: v for k, v in full.items() if k != name}
                assert provider.WSPSend(**named) == w.SOCKET_ERROR, name
                assert w.WSAGetLastError() == w.WSAEFAULT, name
            # One argument too many, even a box: the signature does not fit, nothing is
            # sent (the send body's own further parameters are not WSPSend's).
            late = [WSABUF(4, b"late")]
            assert provider.WSPSend(s, late, 1, sent, 0, None, None, None, err, err) == -1
            assert err.value == w.WSAGetLastError() == w.WSAEFAULT
            assert provider.WSPSend(s, [WSABUF(3, b"end")], 1, sent, 0, None, None, None, err) == 0
            assert recv_exact(conn, 3) == b"end"
            conn.close()
    assert seen == [s] * 4
