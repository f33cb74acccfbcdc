"""Receives and datagrams against plain-socket peers (SPEC S11), on both loops."""

from __future__ import annotations

import socket
import threading

import pytest

import wsp_async as w
from wsp_async import DWORD, INT, WSABUF, WSAOVERLAPPED

from .conftest import Completions, connect, eventually, make_socket, run_in_loop, udp_peer


def recv(p, s, bufs, ov=None, routine=None, flags=0):  # type: ignore[no-untyped-def]
    err, n, fl = INT(), DWORD(777), DWORD(flags)
    rc = p.WSPRecv(s, bufs, len(bufs), n, fl, ov, routine, None, err)
    return rc, err.value, n.value, fl.value


def test_stream_receive_completes_with_available_bytes(provider, listener):  # type: ignore[no-untyped-def]
    # SPEC S11.1
    s, conn = connect(provider, listener)
    buf = bytearray(100)
    ev = w.WSACreateEvent()
    ov = WSAOVERLAPPED(hEvent=ev)
    rc, err, _n, _ = recv(provider, s, [WSABUF(100, buf)], ov)
    assert (rc, err) == (w.SOCKET_ERROR, w.WSA_IO_PENDING)
    conn.sendall(b"hello")
    assert w.WSAWaitForMultipleEvents(1, [ev], False, 10_000, False) == 0
    assert (ov.Internal, ov.InternalHigh) == (0, 5)
    assert bytes(buf[:5]) == b"hello"


def test_posted_receives_fill_in_posting_order_with_scatter(provider, listener):  # type: ignore[no-untyped-def]
    # SPEC S11.1
    s, conn = connect(provider, listener)
    calls = Completions()
    bufs = [(bytearray(3), bytearray(2)) for _ in range(4)]
    for a, b in bufs:
        recv(provider, s, [WSABUF(3, a), WSABUF(2, b)], WSAOVERLAPPED(), calls)
    conn.sendall(b"0123456789abcdefghij")
    assert calls.wait(4)
    assert [c[1] for c in calls.calls] == [5, 5, 5, 5]
    assert b"".join(bytes(a) + bytes(b) for a, b in bufs) == b"0123456789abcdefghij"


def test_graceful_close_completes_with_zero(provider, listener):  # type: ignore[no-untyped-def]
    # SPEC S11.1
    s, conn = connect(provider, listener)
    calls = Completions()
    recv(provider, s, [WSABUF(10, bytearray(10))], WSAOVERLAPPED(), calls)
    conn.shutdown(socket.SHUT_WR)
    assert calls.wait(1)
    assert calls.calls[0][:2] == (0, 0)
    # And later receives complete at once with 0.
    rc, _err, n, _ = recv(provider, s, [WSABUF(10, bytearray(10))])
    assert (rc, n) == (0, 0)


def test_blocking_receive_and_peek_and_fionread(provider, listener):  # type: ignore[no-untyped-def]
    # SPEC S11.1, S1 (FIONREAD, MSG_PEEK)
    s, conn = connect(provider, listener)
    conn.sendall(b"abcdef")
    buf = bytearray(4)
    rc, _err, n, _ = recv(provider, s, [WSABUF(4, buf)], flags=w.MSG_PEEK)
    assert (rc, n, bytes(buf)) == (0, 4, b"abcd")
    avail = DWORD()
    assert (
        provider.WSPIoctl(s, w.FIONREAD, None, 0, avail, 4, DWORD(), None, None, None, INT()) == 0
    )
    assert avail.value == 6
    rc, _err, n, _ = recv(provider, s, [WSABUF(4, buf)])
    assert (rc, n, bytes(buf)) == (0, 4, b"abcd")
    rc, _err, n, _ = recv(provider, s, [WSABUF(4, buf)])
    assert (rc, n, bytes(buf[:2])) == (0, 2, b"ef")


def test_receive_on_the_loop_thread_completes_at_once_when_data_is_there(provider, listener):  # type: ignore[no-untyped-def]
    # SPEC S11.1, S2.1
    s, conn = connect(provider, listener)
    conn.sendall(b"xyz")
    peek = bytearray(3)
    while recv(provider, s, [WSABUF(3, peek)], flags=w.MSG_PEEK)[2] < 3:  # blocks until data came
        pass
    buf = bytearray(8)
    result = run_in_loop(
        provider.loop, lambda: recv(provider, s, [WSABUF(8, buf)], WSAOVERLAPPED(), lambda *a: None)
    )
    assert result[0] == 0 and result[2] == 3
    assert bytes(buf[:3]) == b"xyz"


def test_close_aborts_pending_receives(provider, listener):  # type: ignore[no-untyped-def]
    # SPEC S11.1, S10.2
    s, _conn = connect(provider, listener)
    ovs = [WSAOVERLAPPED(hEvent=w.WSACreateEvent()) for _ in range(3)]
    for ov in ovs:
        recv(provider, s, [WSABUF(4, bytearray(4))], ov)
    provider.WSPCloseSocket(s, INT())
    for ov in ovs:
        assert w.WSAWaitForMultipleEvents(1, [ov.hEvent], False, 10_000, False) == 0
        assert ov.Internal == w.STATUS_CANCELLED


def test_datagram_receive_reports_sender_and_truncation(provider):  # type: ignore[no-untyped-def]
    # SPEC S11.2, S11.3
    s = make_socket(provider, w.SOCK_DGRAM)
    err = INT()
    assert provider.WSPBind(s, ("127.0.0.1", 0), 16, err) == 0
    addr = provider.socket_of(s).sock.getsockname()
    peer = udp_peer()
    peer.bind(("127.0.0.1", 0))
    buf = bytearray(4)
    ev = w.WSACreateEvent()
    ov = WSAOVERLAPPED(hEvent=ev)
    source = w.DWORD()
    flags = DWORD(0)
    rc = provider.WSPRecvFrom(
        s, [WSABUF(4, buf)], 1, DWORD(), flags, source, None, ov, None, None, err
    )
    assert rc == 0 or err.value == w.WSA_IO_PENDING
    peer.sendto(b"0123456789", addr)
    assert w.WSAWaitForMultipleEvents(1, [ev], False, 10_000, False) == 0
    assert ov.Internal == w.STATUS_BUFFER_OVERFLOW and ov.InternalHigh == 4
    assert bytes(buf) == b"0123"
    assert source.value == peer.getsockname()
    n, out_flags = DWORD(), DWORD()
    assert provider.WSPGetOverlappedResult(s, ov, n, False, out_flags, err) is False
    assert err.value == w.WSAEMSGSIZE and out_flags.value & w.MSG_PARTIAL
    # The rest of the truncated datagram is gone: the next receive gets the next datagram.
    peer.sendto(b"next", addr)
    rc = provider.WSPRecvFrom(
        s, [WSABUF(4, buf)], 1, n, DWORD(0), source, None, None, None, None, err
    )
    assert (rc, n.value, bytes(buf)) == (0, 4, b"next")


def test_connected_datagram_socket_accepts_wspsend(provider):  # type: ignore[no-untyped-def]
    # SPEC S11.3
    peer = udp_peer()
    peer.bind(("127.0.0.1", 0))
    peer.settimeout(10)
    s = make_socket(provider, w.SOCK_DGRAM)
    err = INT()
    assert provider.WSPConnect(s, peer.getsockname(), None, None, None, None, None, err) == 0
    sent = DWORD()
    assert (
        provider.WSPSend(
            s, [WSABUF(2, b"he"), WSABUF(3, b"llo")], 2, sent, 0, None, None, None, err
        )
        == 0
    )
    assert sent.value == 5
    assert peer.recv(100) == b"hello"
    # An empty datagram is a datagram (S5.4).
    assert provider.WSPSend(s, [], 0, sent, 0, None, None, None, err) == 0
    assert peer.recv(100) == b""


def test_receive_from_another_thread_while_loop_runs(provider, listener):  # type: ignore[no-untyped-def]
    # SPEC S11.1, S6.1
    s, conn = connect(provider, listener)
    out: list[bytes] = []

    def reader() -> None:
        buf = bytearray(1000)
        total = 0
        while total < 10_000:
            rc, _err, n, _ = recv(provider, s, [WSABUF(1000, buf)])
            assert rc == 0 and n > 0
            out.append(bytes(buf[:n]))
            total += n

    t = threading.Thread(target=reader)
    t.start()
    conn.sendall(bytes(range(100)) * 100)
    t.join(20)
    assert b"".join(out) == bytes(range(100)) * 100


def test_a_receive_posted_as_its_bytes_arrive_is_never_left_waiting(provider, listener):  # type: ignore[no-untyped-def]
    # SPEC S11.1, S2.4: a receive posted from another thread while the loop reads nothing
    # waits in the hand-off without waking the loop, and the loop takes it when bytes
    # come.  Race the post against the bytes' arrival, 1000 times: each receive completes
    # (no receive waits for bytes already read), with its own byte, in order.
    s, conn = connect(provider, listener)
    go = threading.Barrier(2, timeout=10)
    rounds = 1000
    stop = threading.Event()

    def peer() -> None:
        for i in range(rounds):
            go.wait()
            if stop.is_set():
                return
            conn.sendall(bytes([i % 256]))

    sender = threading.Thread(target=peer)
    sender.start()
    try:
        for i in range(rounds):
            buf = bytearray(1)
            ov = WSAOVERLAPPED(hEvent=w.WSACreateEvent())
            go.wait()
            rc, err, _n, _ = recv(provider, s, [WSABUF(1, buf)], ov)
            assert rc == 0 or err == w.WSA_IO_PENDING
            assert w.WSAWaitForMultipleEvents(1, [ov.hEvent], False, 10_000, False) == 0, i
            assert (ov.Internal, ov.InternalHigh, buf[0]) == (0, 1, i % 256)
            w.WSACloseEvent(ov.hEvent)
    finally:
        stop.set()
        go.abort()
        sender.join(10)


@pytest.mark.parametrize(
    ("kind", "ending"), [("datagram", "close"), ("stream", "close"), ("stream", "reuse")]
)
def test_a_receive_whose_socket_closes_as_it_takes_waiting_bytes_is_never_left_waiting(  # type: ignore[no-untyped-def]
    provider, listener, monkeypatch, kind, ending
):
    # SPEC S2.4, S10.2: another thread's receive finds bytes waiting and takes them on
    # the loop, in the loop's next turn.  Before that turn another receive takes the
    # bytes and WSPCloseSocket closes the socket.  The late receive must then fail as a
    # call on a closed handle does (WSAENOTSOCK, its structure as it was) -- not wait
    # on the closed socket for bytes that can never come (found by the datagram walk of
    # test_surfaces_fuzz.py, one run in six: a structure pending after the provider's
    # close).  A DisconnectEx for reuse in its place leaves a fresh socket, whose queue
    # would keep the receive for the bytes of its next connection: it fails as a call on
    # a fresh socket does (WSAENOTCONN).
    from wsp_async._core import recvqueue

    err = INT()
    if kind == "datagram":
        s = make_socket(provider, w.SOCK_DGRAM)
        assert provider.WSPBind(s, ("127.0.0.1", 0), 16, err) == 0
        udp_peer().sendto(b"one", provider.socket_of(s).sock.getsockname())
        receiver_class = recvqueue.DatagramReceiver
    else:
        s, conn = connect(provider, listener)
        conn.sendall(b"one")
        receiver_class = recvqueue.StreamReceiver
    sock = provider.socket_of(s)
    assert eventually(lambda: run_in_loop(provider.loop, sock.engine.receiver.ready))
    late = threading.Thread(target=lambda: None)
    paused, resume = threading.Event(), threading.Event()
    real_ready = receiver_class.ready

    def ready(self):  # type: ignore[no-untyped-def]
        answer = real_ready(self)
        if threading.current_thread() is late:
            paused.set()  # it saw the bytes; hold it there
            assert resume.wait(10)
        return answer

    monkeypatch.setattr(receiver_class, "ready", ready)
    ev = w.WSACreateEvent()
    ov = WSAOVERLAPPED(hEvent=ev)
    result: list[tuple[int, int]] = []

    def post_late() -> None:
        late_err = INT()
        rc = provider.WSPRecvFrom(
            s, [WSABUF(8, bytearray(8))], 1, None, DWORD(0), None, None, ov, None, None, late_err
        )  # fmt: skip
        result.append((rc, late_err.value))

    late = threading.Thread(target=post_late)
    late.start()
    assert paused.wait(10)
    # The bytes go to a receive on the loop, then the socket closes: both before the
    # late receive reaches the loop.
    got = run_in_loop(provider.loop, recv, provider, s, [WSABUF(8, bytearray(8))])
    assert got[0] == 0 and got[2] == 3
    if ending == "close":
        assert provider.WSPCloseSocket(s, err) == 0
    else:
        done = WSAOVERLAPPED(hEvent=w.WSACreateEvent())
        assert not provider.DisconnectEx(s, done, w.TF_REUSE_SOCKET, 0)
        assert w.WSAWaitForMultipleEvents(1, [done.hEvent], False, 10_000, False) == 0
    resume.set()
    late.join(10)
    refusal = w.WSAENOTSOCK if ending == "close" else w.WSAENOTCONN
    assert result == [(w.SOCKET_ERROR, refusal)]
    assert not ov.pending and ov.Internal == 0  # the structure as it was
    assert w.WSAWaitForMultipleEvents(1, [ev], False, 0, False) == w.WSA_WAIT_TIMEOUT
