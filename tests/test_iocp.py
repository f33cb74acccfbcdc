"""Completion ports (SPEC S13): packets, keys, waiters, close, notification modes.

Real sockets on 127.0.0.1 with plain-socket peers; both loops.
"""

from __future__ import annotations

import asyncio
import math
import threading

import wsp_async as w
from wsp_async import DWORD, INT, OVERLAPPED_ENTRY, WSABUF, WSAOVERLAPPED

from .conftest import Completions, connect, eventually, make_socket, recv_exact, run_in_loop, stall


class Box:
    def __init__(self, value: object = None) -> None:
        self.value = value


def send(p: w.Provider, s: int, data: bytes, ov: WSAOVERLAPPED, routine: object = None) -> tuple[int, int]:  # fmt: skip
    err = INT()
    rc = p.WSPSend(s, [WSABUF(len(data), data)], 1, None, 0, ov, routine, None, err)
    return rc, err.value


def gqcs(port: int, ms: int = 10_000) -> tuple[bool, int, object, object, int]:
    n, key, ov = DWORD(), Box(), Box()
    ok = w.GetQueuedCompletionStatus(port, n, key, ov, ms)
    return ok, n.value, key.value, ov.value, w.GetLastError()


def test_a_port_gets_one_packet_per_operation_with_its_key(provider, listener):  # type: ignore[no-untyped-def]
    # SPEC S13.1, S13.2: associate with a key; each started operation queues exactly one
    # packet, in the socket's completion order (posting order for a stream's sends).
    s, conn = connect(provider, listener)
    port = w.CreateIoCompletionPort(w.INVALID_HANDLE_VALUE, None, 0, 0)
    assert port
    assert w.CreateIoCompletionPort(s, port, "conn-1", 0) == port
    ovs = [WSAOVERLAPPED() for _ in range(20)]
    for i, ov in enumerate(ovs):
        assert send(provider, s, bytes([i]) * 10, ov)[0] in (0, w.SOCKET_ERROR)
    got = [gqcs(port) for _ in ovs]
    assert [g[3] for g in got] == ovs
    assert all(g[0] and g[1] == 10 and g[2] == "conn-1" for g in got)
    assert gqcs(port, 0)[0] is False and gqcs(port, 0)[4] == w.WAIT_TIMEOUT  # exactly one each
    assert recv_exact(conn, 200) == b"".join(bytes([i]) * 10 for i in range(20))
    assert w.CloseHandle(port)


def test_a_failed_operation_reports_its_win32_code(provider, listener):  # type: ignore[no-untyped-def]
    # SPEC S13.4, S16.2: False with the packet filled in, ERROR_OPERATION_ABORTED.
    s, _conn = connect(provider, listener)
    port = w.CreateIoCompletionPort(s, None, 7, 0)  # create and associate at once
    provider.inject(s, delay_drain=math.inf)
    ov = WSAOVERLAPPED()
    assert send(provider, s, b"x", ov) == (w.SOCKET_ERROR, w.WSA_IO_PENDING)
    assert provider.WSPCloseSocket(s, INT()) == 0
    ok, n, key, got, error = gqcs(port)
    assert (ok, n, key, got, error) == (False, 0, 7, ov, w.ERROR_OPERATION_ABORTED)
    assert ov.Internal == w.STATUS_CANCELLED
    w.CloseHandle(port)


def test_timeout_and_closing_a_port_release_waiters(provider):  # type: ignore[no-untyped-def]
    # SPEC S13.4, S13.8
    port = w.CreateIoCompletionPort(w.INVALID_HANDLE_VALUE, None, 0, 0)
    ok, _, _, ov, error = gqcs(port, 20)
    assert (ok, ov, error) == (False, None, w.WAIT_TIMEOUT)
    result: list[tuple[bool, int, object, object, int]] = []
    t = threading.Thread(target=lambda: result.append(gqcs(port, w.INFINITE)))
    t.start()
    assert eventually(lambda: bool(port_waiters(port)))
    assert w.CloseHandle(port)
    t.join(10)
    assert result and result[0][0] is False and result[0][4] == w.ERROR_ABANDONED_WAIT_0
    assert result[0][3] is None
    assert not w.PostQueuedCompletionStatus(port, 1, 2, None)  # closed: an invalid handle


def test_a_look_that_needs_no_wait_answers_as_the_wait_would(provider):  # type: ignore[no-untyped-def]
    # SPEC S13.4, S13.8: the one-call answer the Proactor's polls take (take_now) is the
    # wait's own -- a queued packet, WAIT_TIMEOUT for a poll of an empty port, nothing yet
    # for a wait (the caller then waits), ERROR_ABANDONED_WAIT_0 once closed.
    from wsp_async import iocp

    port = w.CreateIoCompletionPort(w.INVALID_HANDLE_VALUE, None, 0, 0)
    target = iocp.port_object(port)
    assert target is not None
    assert target.take_now(1, 0) == w.WAIT_TIMEOUT
    assert target.take_now(1, 50) is None
    assert w.PostQueuedCompletionStatus(port, 5, "a", None)
    assert w.PostQueuedCompletionStatus(port, 6, "b", None)
    assert target.take_now(1, 0) == [(5, "a", None, 0)]
    assert target.take_now(4, 50) == [(6, "b", None, 0)]
    assert w.CloseHandle(port)
    assert target.take_now(1, 0) == w.ERROR_ABANDONED_WAIT_0


def port_waiters(port: int) -> int:
    from wsp_async import iocp

    found = iocp.port_object(port)
    return 0 if found is None else found.waiting


def test_waiters_are_released_last_in_first_out(provider):  # type: ignore[no-untyped-def]
    # SPEC S13.6, S13.7: PostQueuedCompletionStatus, LIFO release.
    port = w.CreateIoCompletionPort(w.INVALID_HANDLE_VALUE, None, 0, 2)
    order: list[tuple[str, object]] = []
    lock = threading.Lock()

    def waiter(name: str) -> None:
        key = gqcs(port)[2]
        with lock:
            order.append((name, key))

    threads = []
    for name in ("first", "second", "third"):
        t = threading.Thread(target=waiter, args=(name,))
        t.start()
        threads.append(t)
        count = len(threads)
        assert eventually(lambda count=count: port_waiters(port) == count)
    for key in ("a", "b", "c"):
        assert w.PostQueuedCompletionStatus(port, 0, key, None)
        assert eventually(lambda k=key: any(o[1] == k for o in order))
    for t in threads:
        t.join(10)
    assert order == [("third", "a"), ("second", "b"), ("first", "c")]
    w.CloseHandle(port)


def test_ex_removes_several_packets_and_is_alertable(provider):  # type: ignore[no-untyped-def]
    # SPEC S13.5
    port = w.CreateIoCompletionPort(w.INVALID_HANDLE_VALUE, None, 0, 0)
    for i in range(5):
        assert w.PostQueuedCompletionStatus(port, i, f"k{i}", None)
    entries = [OVERLAPPED_ENTRY() for _ in range(3)]
    removed = DWORD()
    assert w.GetQueuedCompletionStatusEx(port, entries, 3, removed, 0, False)
    assert removed.value == 3 and [e.lpCompletionKey for e in entries] == ["k0", "k1", "k2"]
    assert w.GetQueuedCompletionStatusEx(port, entries, 3, removed, 0, False)
    assert removed.value == 2
    ran: list[int] = []
    tid = w.WSATHREADID.current()
    assert provider.WPUQueueApc(tid, ran.append, 1, INT()) == 0
    assert not w.GetQueuedCompletionStatusEx(port, entries, 3, removed, w.INFINITE, True)
    assert w.GetLastError() == w.WAIT_IO_COMPLETION and ran == [1]
    w.CloseHandle(port)


def test_skip_on_success_and_the_low_bit_of_hevent(provider, listener):  # type: ignore[no-untyped-def]
    # SPEC S13.2, S13.3
    s, conn = connect(provider, listener)
    port = w.CreateIoCompletionPort(s, None, "k", 0)
    assert w.SetFileCompletionNotificationModes(s, w.FILE_SKIP_COMPLETION_PORT_ON_SUCCESS)
    ov = WSAOVERLAPPED()
    assert send(provider, s, b"fits", ov) == (0, 0)  # completed at once: no packet
    assert gqcs(port, 0)[4] == w.WAIT_TIMEOUT
    provider.inject(s, delay_drain=math.inf)
    pending = WSAOVERLAPPED()
    assert send(provider, s, b"waits", pending) == (w.SOCKET_ERROR, w.WSA_IO_PENDING)
    ev = w.WSACreateEvent()
    quiet = WSAOVERLAPPED(hEvent=w.NoPortPacket(ev))
    assert send(provider, s, b"quiet", quiet) == (w.SOCKET_ERROR, w.WSA_IO_PENDING)
    provider.inject(s, delay_drain=None)
    ok, n, _, got, _ = gqcs(port)
    assert (ok, n, got) == (True, 5, pending)  # the pending one completes through the port
    assert w.WSAWaitForMultipleEvents(1, [ev], False, 10_000, False) == 0  # event still set
    assert not quiet.pending and gqcs(port, 0)[4] == w.WAIT_TIMEOUT  # but no packet
    assert recv_exact(conn, 14) == b"fitswaitsquiet"
    w.CloseHandle(port)


def test_routines_are_refused_and_a_second_association_fails(provider, listener):  # type: ignore[no-untyped-def]
    # SPEC S13.1, S13.2 (sock.c: test_WSARecv): nothing started, the routine never runs.
    s, _conn = connect(provider, listener)
    port = w.CreateIoCompletionPort(s, None, 0, 0)
    other = w.CreateIoCompletionPort(w.INVALID_HANDLE_VALUE, None, 0, 0)
    assert w.CreateIoCompletionPort(s, other, 0, 0) is None
    assert w.GetLastError() == w.ERROR_INVALID_PARAMETER
    calls = Completions()
    ov = WSAOVERLAPPED()
    assert send(provider, s, b"r", ov, calls) == (w.SOCKET_ERROR, w.WSAEINVAL)
    assert not ov.pending and calls.calls == []
    assert w.CreateIoCompletionPort(0xBAD0, port, 0, 0) is None
    assert w.GetLastError() == w.ERROR_INVALID_HANDLE
    w.CloseHandle(port)
    w.CloseHandle(other)


def test_any_providers_sockets_share_a_port_and_survive_their_threads(loop_kind, listener):  # type: ignore[no-untyped-def]
    # SPEC S13.1 (handles unique in the process), S13.2 (no cancel at thread exit).
    kind = loop_kind == "uvloop"
    with w.Provider(use_uvloop=kind) as a, w.Provider(use_uvloop=kind) as b:
        sa, conn_a = connect(a, listener)
        sb, conn_b = connect(b, listener)
        port = w.CreateIoCompletionPort(sa, None, "a", 0)
        assert w.CreateIoCompletionPort(sb, port, "b", 0) == port
        stall(a, sa, conn_a)
        a.inject(sa, delay_drain=math.inf)
        ov_a, ov_b = WSAOVERLAPPED(), WSAOVERLAPPED()
        t = threading.Thread(target=lambda: send(a, sa, b"from a", ov_a))
        t.start()
        t.join(10)  # the issuing thread is gone; a port's operation lives on
        assert ov_a.pending
        assert send(b, sb, b"from b", ov_b)[0] in (0, w.SOCKET_ERROR)
        a.inject(sa, delay_drain=None)
        got = {gqcs(port)[2], gqcs(port)[2]}
        assert got == {"a", "b"}
        assert ov_a.Internal == 0 and recv_exact(conn_a, 6) == b"from a"
        assert recv_exact(conn_b, 6) == b"from b"
        w.CloseHandle(port)


def test_wpu_complete_overlapped_request_uses_the_port(provider, listener):  # type: ignore[no-untyped-def]
    # SPEC S13.9
    s, _conn = connect(provider, listener)
    port = w.CreateIoCompletionPort(s, None, "lsp", 0)
    ov = WSAOVERLAPPED()
    assert provider.WPUCompleteOverlappedRequest(s, ov, 0, 42, INT()) == 0
    assert gqcs(port)[:4] == (True, 42, "lsp", ov)
    plain = make_socket(provider)
    ev = w.WSACreateEvent()
    ov2 = WSAOVERLAPPED(hEvent=ev)
    assert provider.WPUCompleteOverlappedRequest(plain, ov2, w.WSAECONNRESET, 0, INT()) == 0
    assert ev.signaled and ov2.Internal == w.STATUS_CONNECTION_RESET
    w.CloseHandle(port)


def test_waiting_on_the_io_loop_thread_is_refused(provider):  # type: ignore[no-untyped-def]
    # SPEC S13.7, S7.3: the thread that delivers completions may not wait for them.
    port = w.CreateIoCompletionPort(w.INVALID_HANDLE_VALUE, None, 0, 0)
    assert run_in_loop(provider.loop, lambda: (gqcs(port, 0)[0], w.GetLastError())) == (
        False,
        w.WSAEWOULDBLOCK,
    )
    w.CloseHandle(port)


async def test_a_thread_running_its_own_loop_may_wait_on_a_port() -> None:
    # SPEC S13.7: an asyncio loop that polls a port (not the provider's I/O loop).
    port = w.CreateIoCompletionPort(w.INVALID_HANDLE_VALUE, None, 0, 0)
    w.PostQueuedCompletionStatus(port, 3, "mine", None)
    assert gqcs(port, 0)[:3] == (True, 3, "mine")
    await asyncio.sleep(0)
    w.CloseHandle(port)


# --- cancellation (S15) ------------------------------------------------------------------


def test_cancel_io_ex_aborts_one_queued_operation_exactly_once(provider, listener):  # type: ignore[no-untyped-def]
    # SPEC S15.1, S2.4: cancelled from another thread; its bytes never go out.
    s, conn = connect(provider, listener)
    provider.inject(s, delay_drain=math.inf)
    keep, drop = WSAOVERLAPPED(hEvent=w.WSACreateEvent()), WSAOVERLAPPED(hEvent=w.WSACreateEvent())
    assert send(provider, s, b"keep", keep)[1] == w.WSA_IO_PENDING
    assert send(provider, s, b"drop", drop)[1] == w.WSA_IO_PENDING
    result: list[bool] = []
    t = threading.Thread(target=lambda: result.append(w.CancelIoEx(s, drop)))
    t.start()
    t.join(10)
    assert result == [True]
    # SPEC S15.2: the request is recorded; the abort arrives through the event.
    assert w.WSAWaitForMultipleEvents(1, [drop.hEvent], False, 10_000, False) == 0
    assert drop.Internal == w.STATUS_CANCELLED
    assert not w.CancelIoEx(s, drop) and w.GetLastError() == w.ERROR_NOT_FOUND
    provider.inject(s, delay_drain=None)
    assert w.WSAWaitForMultipleEvents(1, [keep.hEvent], False, 10_000, False) == 0
    assert send(provider, s, b"!", WSAOVERLAPPED())[0] in (0, w.SOCKET_ERROR)
    assert recv_exact(conn, 5) == b"keep!"


def test_cancel_io_ex_with_none_cancels_sends_and_receives_through_the_port(provider, listener):  # type: ignore[no-untyped-def]
    # SPEC S15.1, S13.2: each cancelled operation queues its one packet.
    s, _conn = connect(provider, listener)
    port = w.CreateIoCompletionPort(s, None, "k", 0)
    provider.inject(s, delay_drain=math.inf)
    sent = WSAOVERLAPPED()
    assert send(provider, s, b"x", sent)[1] == w.WSA_IO_PENDING
    buf = bytearray(8)
    received = WSAOVERLAPPED()
    err = INT()
    rc = provider.WSPRecv(s, [WSABUF(8, buf)], 1, None, DWORD(0), received, None, None, err)
    assert (rc, err.value) == (w.SOCKET_ERROR, w.WSA_IO_PENDING)
    assert w.CancelIoEx(s, None)
    packets = {gqcs(port)[3]: w.GetLastError() for _ in range(2)}
    assert packets == {sent: w.ERROR_OPERATION_ABORTED, received: w.ERROR_OPERATION_ABORTED}
    assert not w.CancelIoEx(s, None) and w.GetLastError() == w.ERROR_NOT_FOUND
    w.CloseHandle(port)


def test_an_operation_already_handed_on_completes_normally(provider, listener):  # type: ignore[no-untyped-def]
    # SPEC S15.1, S10.3's boundary: bytes given to the transport cannot be taken back.
    s, conn = connect(provider, listener)
    stall(provider, s, conn)
    big = b"h" * (8 << 20)
    ov = WSAOVERLAPPED(hEvent=w.WSACreateEvent())
    assert run_in_loop(provider.loop, lambda: send(provider, s, big, ov))[1] == w.WSA_IO_PENDING
    assert w.CancelIoEx(s, ov)  # found, but on its way: it is not cancelled
    assert recv_exact(conn, len(big)) == big
    assert w.WSAWaitForMultipleEvents(1, [ov.hEvent], False, 10_000, False) == 0
    assert ov.Internal == 0 and ov.InternalHigh == len(big)


def test_cancel_io_cancels_only_what_the_calling_thread_issued(provider, listener):  # type: ignore[no-untyped-def]
    # SPEC S15.1
    s, _conn = connect(provider, listener)
    provider.inject(s, delay_drain=math.inf)
    theirs, mine = WSAOVERLAPPED(), WSAOVERLAPPED()
    posted, release = threading.Event(), threading.Event()

    def other() -> None:
        send(provider, s, b"theirs", theirs)
        posted.set()
        release.wait(10)  # stays alive: its operation is not cancelled by its exit

    t = threading.Thread(target=other)
    t.start()
    assert posted.wait(10)
    assert send(provider, s, b"mine", mine)[1] == w.WSA_IO_PENDING
    assert w.CancelIo(s)
    assert eventually(lambda: not mine.pending)  # recorded, then done by the loop (S15.2)
    assert mine.Internal == w.STATUS_CANCELLED and theirs.pending
    release.set()
    t.join(10)
    assert eventually(lambda: not theirs.pending)  # its thread exited (S10.4)
    assert theirs.Internal == w.STATUS_CANCELLED


# --- the asyncio face ---------------------------------------------------------------------


async def test_a_coroutine_reads_a_ports_packets_without_a_thread() -> None:
    # SPEC S13 through the asyncio face: async for over the packets of real sends.
    from wsp_async import aio

    writers: list[asyncio.StreamWriter] = []
    server = await asyncio.start_server(lambda r, w_: writers.append(w_), "127.0.0.1", 0)
    sock = await aio.connect(*server.sockets[0].getsockname()[:2])
    port = w.CreateIoCompletionPort(sock.handle, None, "aio", 0)
    reader = aio.CompletionPortReader(port)
    ovs = [sock.send_overlapped(b"packet %d" % i) for i in range(5)]
    got = []
    async for entry in reader:
        got.append(entry)
        if len(got) == 5:
            break
    assert [e.lpOverlapped for e in got] == ovs
    assert all(e.lpCompletionKey == "aio" and e.Internal == 0 for e in got)
    waiting = asyncio.ensure_future(reader.get())
    await asyncio.sleep(0)
    assert w.CloseHandle(port)
    try:
        await asyncio.wait_for(waiting, 10)
    except w.WSAError as exc:
        assert exc.winerror == w.ERROR_ABANDONED_WAIT_0
    else:
        raise AssertionError("a closed port must end the wait")
    sock.close()
    server.close()
    for writer in writers:
        writer.close()
    await server.wait_closed()


async def test_a_cancelled_wait_gives_its_packet_back() -> None:
    # SPEC S2.4 through the port: a packet handed to a wait that is cancelled is not lost.
    from wsp_async import aio

    port = w.CreateIoCompletionPort(w.INVALID_HANDLE_VALUE, None, 0, 0)
    reader = aio.CompletionPortReader(port)
    waiting = asyncio.ensure_future(reader.get())
    await asyncio.sleep(0)
    assert w.PostQueuedCompletionStatus(port, 1, "once", None)
    waiting.cancel()  # the packet's delivery is on its way to a wait that is gone
    await asyncio.gather(waiting, return_exceptions=True)
    if waiting.cancelled():
        entry = await asyncio.wait_for(reader.get(), 10)
        assert entry.lpCompletionKey == "once"
    else:
        assert waiting.result().lpCompletionKey == "once"
    assert gqcs(port, 0)[4] == w.WAIT_TIMEOUT  # exactly once
    w.CloseHandle(port)
