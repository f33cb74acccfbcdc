"""Every error row of S9 and the abort paths of S10, produced by real conditions on loopback."""

from __future__ import annotations

import logging
import socket
import struct
import threading

import pytest

import wsp_async as w
from wsp_async import DWORD, INT, WSABUF, WSAOVERLAPPED

from .conftest import (
    Completions,
    connect,
    make_socket,
    recv_all,
    recv_exact,
    run_in_loop,
    stall,
    udp_peer,
)


def post(p, s, data=b"x", ov=None, routine=None, flags=0, count=None):  # type: ignore[no-untyped-def]
    err = INT()
    bufs = [WSABUF(len(data), data)]
    rc = p.WSPSend(s, bufs, 1 if count is None else count, DWORD(), flags, ov, routine, None, err)
    return rc, err.value


def fill(p, s, n=64, size=65536):  # type: ignore[no-untyped-def]
    """Post n overlapped sends with events to a stalled peer; return their structures."""
    ovs = [WSAOVERLAPPED(hEvent=w.WSACreateEvent()) for _ in range(n)]
    for ov in ovs:
        rc, err = post(p, s, b"f" * size, ov)
        assert rc == 0 or err == w.WSA_IO_PENDING
    return ovs


def wait_all(ovs, timeout_ms=20_000):  # type: ignore[no-untyped-def]
    for ov in ovs:
        assert w.WSAWaitForMultipleEvents(1, [ov.hEvent], False, timeout_ms, False) == 0


# --- S9, row by row --------------------------------------------------------------------------


def test_enotsock_for_unknown_and_closed_handles(provider):  # type: ignore[no-untyped-def]
    # SPEC S9 (WSAENOTSOCK), S10.2
    assert post(provider, 0xBAD) == (w.SOCKET_ERROR, w.WSAENOTSOCK)
    assert post(provider, "not a handle") == (w.SOCKET_ERROR, w.WSAENOTSOCK)
    s = make_socket(provider)
    assert provider.WSPCloseSocket(s, INT()) == 0
    assert post(provider, s) == (w.SOCKET_ERROR, w.WSAENOTSOCK)
    err = INT()
    assert provider.WSPCloseSocket(s, err) == w.SOCKET_ERROR and err.value == w.WSAENOTSOCK


@pytest.mark.parametrize(
    "bad",
    [
        {"buffers": "not a list"},
        {"buffers": [b"raw bytes, not a WSABUF"]},
        {"buffers": [WSABUF(5, b"abc")]},  # buf shorter than len
        {"buffers": [WSABUF(1, 12345)]},  # buf not bytes-like
        {"buffers": [WSABUF(-1, b"a")]},
        {"count": -1},
        {"count": 2},  # larger than the sequence
        {"count": "1"},
        {"sent": object()},  # out-parameter without .value
        {"ov": object()},  # not a WSAOVERLAPPED
        {"routine": 42, "ov": WSAOVERLAPPED()},  # routine not callable
    ],
)
def test_efault_rows(provider, listener, bad):  # type: ignore[no-untyped-def]
    # SPEC S9 (WSAEFAULT)
    s, _conn = connect(provider, listener)
    err = INT()
    buffers = bad.get("buffers", [WSABUF(1, b"a")])
    rc = provider.WSPSend(
        s,
        buffers,
        bad.get("count", 1),
        bad.get("sent", DWORD()),
        0,
        bad.get("ov"),
        bad.get("routine"),
        None,
        err,
    )
    assert (rc, err.value) == (w.SOCKET_ERROR, w.WSAEFAULT)


def test_enotconn_stream_and_datagram_without_peer(provider):  # type: ignore[no-untyped-def]
    # SPEC S9 (WSAENOTCONN)
    assert post(provider, make_socket(provider)) == (w.SOCKET_ERROR, w.WSAENOTCONN)
    assert post(provider, make_socket(provider, w.SOCK_DGRAM)) == (w.SOCKET_ERROR, w.WSAENOTCONN)


def test_eshutdown_after_sd_send(provider, listener):  # type: ignore[no-untyped-def]
    # SPEC S9 (WSAESHUTDOWN), S10.1
    s, conn = connect(provider, listener)
    assert provider.WSPShutdown(s, w.SD_SEND, INT()) == 0
    assert post(provider, s) == (w.SOCKET_ERROR, w.WSAESHUTDOWN)
    assert recv_all(conn) == b""


@pytest.mark.parametrize(
    ("kind", "flags"),
    [
        (w.SOCK_DGRAM, w.MSG_OOB),
        (w.SOCK_STREAM, w.MSG_PARTIAL),
        (w.SOCK_DGRAM, w.MSG_PARTIAL),
        (w.SOCK_STREAM, 0x40000),
    ],
)
def test_eopnotsupp_rows(provider, listener, kind, flags):  # type: ignore[no-untyped-def]
    # SPEC S9 (WSAEOPNOTSUPP)
    if kind == w.SOCK_STREAM:
        s, _conn = connect(provider, listener)
    else:
        s = make_socket(provider, w.SOCK_DGRAM)
        peer = udp_peer()
        peer.bind(("127.0.0.1", 0))
        assert provider.WSPConnect(s, peer.getsockname(), None, None, None, None, None, INT()) == 0
    assert post(provider, s, flags=flags) == (w.SOCKET_ERROR, w.WSAEOPNOTSUPP)


def test_oob_on_a_stream_is_sent_urgent(provider, listener):  # type: ignore[no-untyped-def]
    # SPEC S9 (MSG_OOB is for stream sockets)
    s, conn = connect(provider, listener)
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_OOBINLINE, 1)
    assert post(provider, s, b"in", WSAOVERLAPPED(hEvent=w.WSACreateEvent()))[0] in (0, -1)
    calls = Completions()
    post(provider, s, b"!", WSAOVERLAPPED(), calls, flags=w.MSG_OOB)
    assert calls.wait(1)
    assert calls.calls[0][:2] == (0, 1)
    assert recv_exact(conn, 3) == b"in!"


def test_emsgsize_for_oversized_datagram_sends_nothing(provider):  # type: ignore[no-untyped-def]
    # SPEC S9 (WSAEMSGSIZE)
    peer = udp_peer()
    peer.bind(("127.0.0.1", 0))
    peer.settimeout(0.2)
    s = make_socket(provider, w.SOCK_DGRAM)
    err, size = INT(), DWORD()
    assert provider.WSPGetSockOpt(s, w.SOL_SOCKET, w.SO_MAX_MSG_SIZE, size, None, err) == 0
    assert size.value == 65507
    big = b"m" * 65508
    rc = provider.WSPSendTo(
        s, [WSABUF(len(big), big)], 1, DWORD(), 0, peer.getsockname(), 16, None, None, None, err
    )
    assert (rc, err.value) == (w.SOCKET_ERROR, w.WSAEMSGSIZE)
    with pytest.raises(TimeoutError):
        peer.recv(70000)
    ok = b"m" * 65507
    assert (
        provider.WSPSendTo(
            s, [WSABUF(len(ok), ok)], 1, DWORD(), 0, peer.getsockname(), 16, None, None, None, err
        )
        == 0
    )
    peer.settimeout(10)
    assert peer.recv(70000) == ok


def test_eacces_broadcast_without_so_broadcast(provider):  # type: ignore[no-untyped-def]
    # SPEC S9 (WSAEACCES): the OS refuses 127.255.255.255 without SO_BROADCAST
    s = make_socket(provider, w.SOCK_DGRAM)
    err = INT()
    ev = w.WSACreateEvent()
    rc = provider.WSPSendTo(
        s,
        [WSABUF(1, b"b")],
        1,
        DWORD(),
        0,
        ("127.255.255.255", 9),
        16,
        WSAOVERLAPPED(hEvent=ev),
        None,
        None,
        err,
    )
    assert (rc, err.value) == (w.SOCKET_ERROR, w.WSAEACCES)
    assert w.WSAWaitForMultipleEvents(1, [ev], False, 50, False) == w.WSA_WAIT_TIMEOUT  # S2.3


def test_ewouldblock_beyond_max_pending(loop_kind, listener):  # type: ignore[no-untyped-def]
    # SPEC S9 (WSAEWOULDBLOCK, max_pending)
    with w.Provider(use_uvloop=loop_kind == "uvloop", max_pending=8) as p:
        s, conn = connect(p, listener)
        stall(p, s, conn)
        codes = [
            post(p, s, b"p" * 65536, WSAOVERLAPPED(hEvent=w.WSACreateEvent()))[1]
            for _ in range(100)
        ]
        assert w.WSAEWOULDBLOCK in codes
        assert codes.count(w.WSA_IO_PENDING) + codes.count(0) >= 8


def test_enobufs_beyond_max_pending_bytes(loop_kind, listener):  # type: ignore[no-untyped-def]
    # SPEC S9 (WSAENOBUFS, max_pending_bytes)
    with w.Provider(use_uvloop=loop_kind == "uvloop", max_pending_bytes=1 << 20) as p:
        s, conn = connect(p, listener)
        stall(p, s, conn)
        codes = [
            post(p, s, b"p" * 65536, WSAOVERLAPPED(hEvent=w.WSACreateEvent()))[1]
            for _ in range(100)
        ]
        assert w.WSAENOBUFS in codes


def _reset_peer(conn: socket.socket) -> None:
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    conn.close()


def test_econnreset_pending_sends_complete_with_reset_exactly_once(provider, listener):  # type: ignore[no-untyped-def]
    # SPEC S9 (WSAECONNRESET), S10.5, S2.4
    s, conn = connect(provider, listener)
    stall(provider, s, conn)
    calls = Completions()
    for _ in range(64):
        post(provider, s, b"r" * 65536, WSAOVERLAPPED(), calls)
    _reset_peer(conn)
    assert calls.wait(64)
    assert w.SleepEx(50, True) == 0  # and nothing more: exactly once
    codes = {c[0] for c in calls.calls}
    assert len(calls.calls) == 64
    assert codes <= {0, w.WSAECONNRESET}
    assert w.WSAECONNRESET in codes
    # Later sends fail at once.
    assert post(provider, s) == (w.SOCKET_ERROR, w.WSAECONNRESET)


def test_einval_datagram_sendto_that_cannot_bind(provider):  # type: ignore[no-untyped-def]
    # SPEC S9 (WSAEINVAL): a datagram socket whose implicit bind fails
    s = make_socket(provider, w.SOCK_DGRAM)
    err = INT()
    sock = provider.socket_of(s)
    sock.sock.close()  # the host socket is gone: bind cannot succeed
    rc = provider.WSPSendTo(
        s, [WSABUF(1, b"x")], 1, DWORD(), 0, ("127.0.0.1", 9), 16, None, None, None, err
    )
    assert (rc, err.value) == (w.SOCKET_ERROR, w.WSAEINVAL)


# --- S10: shutdown, close, flush, thread exit ---------------------------------------------------


def test_shutdown_lets_posted_sends_finish_then_half_closes(provider, listener):  # type: ignore[no-untyped-def]
    # SPEC S10.1
    s, conn = connect(provider, listener)
    stall(provider, s, conn)
    ovs = fill(provider, s, 32)
    assert provider.WSPShutdown(s, w.SD_SEND, INT()) == 0
    data = recv_all(conn)  # returns at the FIN: every posted byte came first
    assert data == b"f" * (32 * 65536)
    wait_all(ovs)
    assert all(ov.Internal == 0 for ov in ovs)


def test_close_aborts_pending_sends_and_kills_handle(provider, listener):  # type: ignore[no-untyped-def]
    # SPEC S10.2, S2.4
    s, conn = connect(provider, listener)
    stall(provider, s, conn)
    calls = Completions()
    for _ in range(64):
        post(provider, s, b"c" * 65536, WSAOVERLAPPED(), calls)
    assert provider.WSPCloseSocket(s, INT()) == 0
    assert post(provider, s) == (w.SOCKET_ERROR, w.WSAENOTSOCK)
    assert calls.wait(64)
    assert w.SleepEx(50, True) == 0
    codes = [c[0] for c in calls.calls]
    assert len(codes) == 64 and codes[-1] == w.WSA_OPERATION_ABORTED
    assert set(codes) <= {0, w.WSA_OPERATION_ABORTED}
    # Successes first, then aborts: completions keep posting order (S6.4).
    assert codes == sorted(codes, key=lambda c: c != 0)


def test_flush_aborts_unsent_and_socket_stays_usable(provider, listener):  # type: ignore[no-untyped-def]
    # SPEC S10.3
    s, conn = connect(provider, listener)
    stall(provider, s, conn)
    ovs = fill(provider, s, 64)
    err = INT()
    assert provider.WSPIoctl(s, w.SIO_FLUSH, None, 0, None, 0, DWORD(), None, None, None, err) == 0
    wait_all(ovs)
    statuses = [ov.Internal for ov in ovs]
    assert statuses[-1] == w.STATUS_CANCELLED  # SPEC S2.5: the NTSTATUS
    delivered = sum(ov.InternalHigh for ov in ovs if ov.Internal == 0)
    assert post(provider, s, b"after", WSAOVERLAPPED(hEvent=w.WSACreateEvent()))[1] in (
        0,
        w.WSA_IO_PENDING,
    )
    provider.WSPShutdown(s, w.SD_SEND, err)
    rest = recv_all(conn)
    # Everything that completed successfully arrived, then possibly part of a handed-on send, then "after".
    assert rest.endswith(b"after")
    assert len(rest) - 5 >= delivered


def test_thread_exit_cancels_its_unsent_sends(provider, listener):  # type: ignore[no-untyped-def]
    # SPEC S10.4
    s, conn = connect(provider, listener)
    stall(provider, s, conn)
    ovs: list[WSAOVERLAPPED] = []

    def poster() -> None:
        ovs.extend(fill(provider, s, 64))

    t = threading.Thread(target=poster)
    t.start()
    t.join(10)
    wait_all(ovs)
    assert ovs[-1].Internal == w.STATUS_CANCELLED
    assert all(ov.Internal in (0, w.STATUS_CANCELLED) for ov in ovs)


def test_thread_exit_drops_routines_but_sets_nothing_twice(provider, listener):  # type: ignore[no-untyped-def]
    # SPEC S10.4, S2.4
    s, conn = connect(provider, listener)
    stall(provider, s, conn)
    calls = Completions()
    ovs: list[WSAOVERLAPPED] = []

    def poster() -> None:
        for _ in range(32):
            ov = WSAOVERLAPPED()
            ovs.append(ov)
            post(provider, s, b"d" * 65536, ov, calls)

    t = threading.Thread(target=poster)
    t.start()
    t.join(10)
    assert provider.wait_until(lambda: all(not ov.pending for ov in ovs), 20)
    assert calls.calls == []  # the thread that would run them is gone
    assert ovs[-1].Internal == w.STATUS_CANCELLED


def test_provider_close_completes_everything(loop_kind, listener):  # type: ignore[no-untyped-def]
    # SPEC S2.4, S1 (closing the provider)
    p = w.Provider(use_uvloop=loop_kind == "uvloop")
    s, conn = connect(p, listener)
    stall(p, s, conn)
    ovs = fill(p, s, 64)
    p.close()
    wait_all(ovs)
    assert ovs[-1].Internal == w.STATUS_CANCELLED
    assert post(p, s) == (w.SOCKET_ERROR, w.WSAENOTSOCK)


def test_spi_calls_on_the_loop_thread_fail_fast_for_blocking_work(provider, listener):  # type: ignore[no-untyped-def]
    # SPEC S7.3, S8.2
    s, conn = connect(provider, listener)
    stall(provider, s, conn)
    fill(provider, s, 8)

    def on_loop() -> int:
        err = INT()
        provider.WSPSend(
            s, [WSABUF(1 << 20, b"b" * (1 << 20))], 1, DWORD(), 0, None, None, None, err
        )
        return err.value

    assert run_in_loop(provider.loop, on_loop) == w.WSAEWOULDBLOCK


def test_flushed_sends_never_reach_the_peer(provider, listener):  # type: ignore[no-untyped-def]
    # SPEC S10.3: the peer receives exactly the sends that completed successfully,
    # in posting order; none of a flushed send's bytes arrives.
    s, conn = connect(provider, listener)
    stall(provider, s, conn)
    chunks = [bytes([i]) * 65536 for i in range(64)]
    ovs = [WSAOVERLAPPED(hEvent=w.WSACreateEvent()) for _ in chunks]
    for chunk, ov in zip(chunks, ovs, strict=True):
        post(provider, s, chunk, ov)
    assert (
        provider.WSPIoctl(s, w.SIO_FLUSH, None, 0, None, 0, DWORD(), None, None, None, INT()) == 0
    )
    provider.WSPShutdown(s, w.SD_SEND, INT())
    data = recv_all(conn)
    wait_all(ovs)
    assert any(ov.Internal == w.STATUS_CANCELLED for ov in ovs)
    assert data == b"".join(c for c, ov in zip(chunks, ovs, strict=True) if ov.Internal == 0)


def test_ipv6_datagram_limit_is_65527(provider):  # type: ignore[no-untyped-def]
    # SPEC S9 (SO_MAX_MSG_SIZE over IPv6), S1 (AF_INET6 = 23); no traffic: the suite
    # talks to 127.0.0.1 only.
    err, size = INT(), DWORD()
    s = provider.WSPSocket(w.AF_INET6, w.SOCK_DGRAM, 0, None, 0, w.WSA_FLAG_OVERLAPPED, err)
    assert s != w.INVALID_SOCKET, err.value
    assert provider.WSPGetSockOpt(s, w.SOL_SOCKET, w.SO_MAX_MSG_SIZE, size, None, err) == 0
    assert size.value == 65527
    big = b"6" * 65528
    rc = provider.WSPSendTo(
        s, [WSABUF(len(big), big)], 1, DWORD(), 0, ("::1", 9), None, None, None, None, err
    )
    assert (rc, err.value) == (w.SOCKET_ERROR, w.WSAEMSGSIZE)  # refused before any traffic


def test_unsupported_family_type_and_protocol(provider):  # type: ignore[no-untyped-def]
    # SPEC S1 (WSPSocket)
    err = INT()
    assert provider.WSPSocket(99, w.SOCK_STREAM, 0, None, 0, 0, err) == w.INVALID_SOCKET
    assert err.value == w.WSAEAFNOSUPPORT
    assert provider.WSPSocket(w.AF_INET, 9, 0, None, 0, 0, err) == w.INVALID_SOCKET
    assert err.value == w.WSAESOCKTNOSUPPORT
    assert (
        provider.WSPSocket(w.AF_INET, w.SOCK_STREAM, w.IPPROTO_UDP, None, 0, 0, err)
        == w.INVALID_SOCKET
    )
    assert err.value == w.WSAEPROTONOSUPPORT


def test_a_call_that_does_not_fit_its_signature_is_wsaefault_not_an_internal_error(
    provider, caplog
):  # type: ignore[no-untyped-def]
    # SPEC S9, S2.3: arguments that do not fit the ws2spi.h signature are the caller's
    # mistake -- WSAEFAULT (something the call needs is missing), nothing started, one
    # warning that names the signature -- never an "internal error" with a traceback.
    err = INT()
    with caplog.at_level(logging.WARNING, logger="wsp_async"):
        assert provider.WSPSend(1, [], 0, err) == w.SOCKET_ERROR  # five arguments short
        assert err.value == w.WSAGetLastError() == w.WSAEFAULT
        assert provider.AcceptEx(1) is False
        assert w.WSAGetLastError() == w.WSAEFAULT
    messages = [r.getMessage() for r in caplog.records]
    assert any("WSPSend(s, lpBuffers, dwBufferCount" in m for m in messages)
    assert not any(r.exc_info or "internal error" in r.getMessage() for r in caplog.records)
