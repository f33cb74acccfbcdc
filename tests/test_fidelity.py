"""What Windows itself does where the contract was loose (issue 10).

Each test names the SPEC rule it checks or, where the contract is silent, the test
function of Wine's ``dlls/ws2_32/tests/sock.c`` (run on Windows) that pins the
behaviour.  Peers are plain sockets on 127.0.0.1; both loops.
"""

from __future__ import annotations

import math
import socket
import threading

import pytest

import wsp_async as w
from wsp_async import DWORD, INT, WSABUF, WSAOVERLAPPED, WSATHREADID
from wsp_async.ntstatus import NTWIN32

from .conftest import (
    Completions,
    connect,
    eventually,
    make_socket,
    recv_exact,
    run_in_loop,
    stall,
)


def send(p: w.Provider, s: int, data: bytes, ov: object = None, routine: object = None, count: object = "box") -> tuple[int, int, int]:  # fmt: skip
    err, sent = INT(), DWORD(12345)
    box = sent if count == "box" else count
    rc = p.WSPSend(s, [WSABUF(len(data), data)], 1, box, 0, ov, routine, None, err)
    return rc, err.value, sent.value


def recv(p: w.Provider, s: int, size: int, ov: object = None, routine: object = None) -> tuple[int, int, int, bytearray]:  # fmt: skip
    buf = bytearray(size)
    err, got = INT(), DWORD(12345)
    rc = p.WSPRecv(s, [WSABUF(size, buf)], 1, got, DWORD(0), ov, routine, None, err)
    return rc, err.value, got.value, buf


def wait(p: w.Provider, ovs: list[WSAOVERLAPPED]) -> None:
    assert p.wait_until(lambda: all(not ov.pending for ov in ovs), 20)


def free_udp_port() -> int:
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    probe.bind(("127.0.0.1", 0))
    port: int = probe.getsockname()[1]
    probe.close()
    return port


# --- 1. Internal holds the NTSTATUS (S2.5) ---------------------------------------------


def test_internal_holds_the_ntstatus_and_the_views_derive_from_it(provider, listener):  # type: ignore[no-untyped-def]
    # SPEC S2.5 (Wine's test_WSAGetOverlappedResult): an abort stores STATUS_CANCELLED;
    # the routine and WSPGetOverlappedResult report WSA_OPERATION_ABORTED.
    s, _conn = connect(provider, listener)
    provider.inject(s, delay_drain=math.inf)
    calls = Completions()
    ov = WSAOVERLAPPED()
    assert send(provider, s, b"x", ov, calls)[:2] == (w.SOCKET_ERROR, w.WSA_IO_PENDING)
    assert provider.WSPCloseSocket(s, INT()) == 0
    assert ov.Internal == w.STATUS_CANCELLED == 0xC0000120
    assert calls.wait(1) and calls.calls[0][0] == w.WSA_OPERATION_ABORTED
    other = make_socket(provider)
    err = INT()
    assert not provider.WSPGetOverlappedResult(other, ov, DWORD(), False, DWORD(), err)
    assert err.value == w.WSA_OPERATION_ABORTED


def test_internalhigh_is_left_untouched_while_pending(provider, listener):  # type: ignore[no-untyped-def]
    # SPEC S2.5
    s, _conn = connect(provider, listener)
    provider.inject(s, delay_drain=math.inf)
    ov = WSAOVERLAPPED(InternalHigh=4242)
    assert send(provider, s, b"pending", ov)[:2] == (w.SOCKET_ERROR, w.WSA_IO_PENDING)
    assert (ov.Internal, ov.InternalHigh) == (w.STATUS_PENDING, 4242)
    provider.inject(s, delay_drain=None)
    wait(provider, [ov])
    assert (ov.Internal, ov.InternalHigh) == (0, 7)


def test_an_injected_wsa_fault_is_stored_as_the_ntstatus_that_maps_back(provider, listener):  # type: ignore[no-untyped-def]
    # SPEC S2.5, S12.1: WSAENETRESET has no NTSTATUS of its own: FACILITY_NTWIN32.
    s, _conn = connect(provider, listener)
    provider.inject(s, error=w.WSAENETRESET, at="completion")
    calls = Completions()
    ov = WSAOVERLAPPED()
    assert send(provider, s, b"x", ov, calls)[:2] == (w.SOCKET_ERROR, w.WSA_IO_PENDING)
    assert calls.wait(1) and calls.calls[0][0] == w.WSAENETRESET
    assert ov.Internal == NTWIN32 | w.WSAENETRESET
    err = INT()
    assert not provider.WSPGetOverlappedResult(s, ov, DWORD(), False, DWORD(), err)
    assert err.value == w.WSAENETRESET


def test_a_structure_the_provider_never_saw_is_incomplete_while_status_pending(provider):  # type: ignore[no-untyped-def]
    # SPEC S2.5, S7.2: the result is read from the structure.
    s = make_socket(provider)
    ov = WSAOVERLAPPED(Internal=w.STATUS_PENDING)
    err = INT()
    assert not provider.WSPGetOverlappedResult(s, ov, DWORD(), False, DWORD(), err)
    assert err.value == w.WSA_IO_INCOMPLETE
    done = WSAOVERLAPPED(Internal=w.STATUS_CONNECTION_RESET, InternalHigh=3)
    got = DWORD()
    assert not provider.WSPGetOverlappedResult(s, done, got, False, DWORD(), err)
    assert (err.value, got.value) == (w.WSAECONNRESET, 3)


@pytest.mark.parametrize("code", [int(c) for c in w.WSAErr if c != w.WSA_IO_PENDING])
def test_every_winsock_code_survives_the_ntstatus_round_trip(code: int) -> None:
    # SPEC S2.5: the one table maps every code the provider stores back to itself
    # (STATUS_PENDING is no completion: it reads as WSA_IO_INCOMPLETE).
    assert w.wsa_of(w.ntstatus_of(code)) == code


def test_the_win32_view_is_what_kernel32_reports() -> None:
    # SPEC S16.2: one table, RtlNtStatusToDosError's values.
    assert w.win32_of(w.STATUS_CONNECTION_RESET) == 64  # ERROR_NETNAME_DELETED
    assert w.win32_of(w.STATUS_CONNECTION_ABORTED) == 1236
    assert w.win32_of(w.STATUS_CONNECTION_REFUSED) == 1225
    assert w.win32_of(w.STATUS_CANCELLED) == 995
    assert w.win32_of(w.STATUS_PORT_UNREACHABLE) == 1234
    assert w.win32_of(w.STATUS_BUFFER_OVERFLOW) == 234  # ERROR_MORE_DATA
    assert w.win32_of(NTWIN32 | 10052) == 10052


# --- 3. blocking calls are alertable (S6.3) ----------------------------------------------


@pytest.mark.parametrize("call", ["recv", "send", "accept"])
def test_a_thread_blocked_in_a_winsock_call_runs_its_apcs(provider, listener, call):  # type: ignore[no-untyped-def]
    # SPEC S6.3: the APC runs during the call, which then goes on waiting.
    s, conn = connect(provider, listener)
    if call == "send":
        stall(provider, s, conn)
    if call == "accept":
        s = make_socket(provider)
        name = DWORD()
        assert provider.WSPBind(s, ("127.0.0.1", 0), None, INT()) == 0
        assert provider.WSPListen(s, 4, INT()) == 0
        assert provider.WSPGetSockName(s, name, None, INT()) == 0
    tid: list[WSATHREADID] = []
    ran = threading.Event()
    go = threading.Event()
    ran_while_blocked: list[bool] = []
    returned = threading.Event()
    result: list[tuple[int, int]] = []

    def blocked() -> None:
        tid.append(WSATHREADID.current())
        go.wait(10)  # not alertable: the APC queued meanwhile waits for the call
        if call == "recv":
            rc, _err, n, _ = recv(provider, s, 10)
            result.append((rc, n))
        elif call == "accept":
            child = provider.WSPAccept(s, None, None, None, None, INT())
            result.append((0, int(child != w.INVALID_SOCKET)))
        else:
            rc, _err, n = send(provider, s, b"b" * (16 << 20))
            result.append((rc, n))
        returned.set()

    def apc(context: object) -> None:
        ran_while_blocked.append(not returned.is_set())
        ran.set()

    t = threading.Thread(target=blocked)
    t.start()
    assert eventually(lambda: bool(tid))
    assert provider.WPUQueueApc(tid[0], apc, 7, INT()) == 0
    go.set()  # the thread enters the blocking call; nothing lets it return yet
    assert ran.wait(10)
    assert ran_while_blocked == [True]
    if call == "recv":
        conn.sendall(b"hello")
    elif call == "accept":
        client = socket.create_connection(name.value, timeout=10)
    else:
        assert recv_exact(conn, 16 << 20) == b"b" * (16 << 20)
    assert returned.wait(20)
    t.join(10)
    assert result == [(0, {"recv": 5, "accept": 1, "send": 16 << 20}[call])]
    if call == "accept":
        client.close()


# --- 4, 5, 6: blocking forms, counts, the last error --------------------------------------


def test_an_overlapped_receive_on_a_non_overlapped_socket_blocks_and_completes(provider, listener):  # type: ignore[no-untyped-def]
    # SPEC S3.3 (sock.c: test_nonblocking_async_recv)
    s, conn = connect(provider, listener, flags=0)
    conn.sendall(b"data")
    ov = WSAOVERLAPPED(hEvent=w.WSACreateEvent())
    rc, _err, n, buf = recv(provider, s, 10, ov)
    assert (rc, n, bytes(buf[:n])) == (0, 4, b"data")
    assert (ov.Internal, ov.InternalHigh) == (0, 4) and ov.hEvent.signaled


def test_a_non_overlapped_send_without_a_count_is_efault_and_sends_nothing(provider, listener):  # type: ignore[no-untyped-def]
    # SPEC S2.2, S2.3
    s, conn = connect(provider, listener)
    assert send(provider, s, b"lost", count=None)[:2] == (w.SOCKET_ERROR, w.WSAEFAULT)
    assert send(provider, s, b"kept")[0] == 0
    assert recv_exact(conn, 4) == b"kept"


def test_the_last_error_is_zero_after_a_successful_call(provider, listener):  # type: ignore[no-untyped-def]
    # SPEC S1 (sock.c: test_WSASendTo)
    s, _conn = connect(provider, listener)
    assert send(provider, 0xBAD, b"x")[1] == w.WSAENOTSOCK
    assert w.WSAGetLastError() == w.WSAENOTSOCK
    assert send(provider, s, b"x")[0] == 0
    assert w.WSAGetLastError() == 0


# --- 7, 8: completing at once from any thread --------------------------------------------


def test_a_receive_that_finds_data_completes_at_once_from_any_thread(provider, listener):  # type: ignore[no-untyped-def]
    # sock.c: test_WSARecv -- data already received: 0 and the count, routine queued.
    s, conn = connect(provider, listener)
    conn.sendall(b"already")
    avail = DWORD()

    def arrived() -> bool:
        provider.WSPIoctl(s, w.FIONREAD, None, 0, avail, 4, DWORD(), None, None, None, INT())
        return avail.value == 7

    assert eventually(arrived)
    calls = Completions()
    ov = WSAOVERLAPPED()
    rc, _err, n, buf = recv(provider, s, 16, ov, calls)
    assert (rc, n, bytes(buf[:n])) == (0, 7, b"already")
    assert calls.calls == [] and calls.wait(1)


# --- 9. resets ------------------------------------------------------------------------------


def test_a_reset_through_a_completion_leaves_so_error_zero_and_receives_abort(provider, listener):  # type: ignore[no-untyped-def]
    # sock.c: test_tcp_reset -- our send to a closed peer draws a reset: the failed
    # completion reports it, SO_ERROR stays 0, and a receive fails WSAECONNABORTED.
    s, conn = connect(provider, listener)
    conn.close()
    rc, _err, n, _ = recv(provider, s, 4)
    assert (rc, n) == (0, 0)  # the peer's FIN
    failed = None
    for _ in range(200):
        ov = WSAOVERLAPPED(hEvent=w.WSACreateEvent())
        rc, err, _ = send(provider, s, b"x" * 1000, ov)
        if rc == w.SOCKET_ERROR and err != w.WSA_IO_PENDING:
            failed = err
            break
        wait(provider, [ov])
        if ov.Internal:
            failed = w.wsa_of(ov.Internal)
            break
    assert failed in (w.WSAECONNRESET, w.WSAECONNABORTED)
    value = DWORD()
    assert provider.WSPGetSockOpt(s, w.SOL_SOCKET, w.SO_ERROR, value, None, INT()) == 0
    assert value.value == 0
    rc, err, _n, _ = recv(provider, s, 4)
    assert (rc, err) == (w.SOCKET_ERROR, w.WSAECONNABORTED)


# --- 10, 11: receives without buffers, ioctls ----------------------------------------------


@pytest.mark.parametrize("buffers", [[], None])
def test_a_receive_with_no_buffers_is_einval(provider, listener, buffers):  # type: ignore[no-untyped-def]
    # sock.c: test_empty_recv
    s, _conn = connect(provider, listener)
    err = INT()
    rc = provider.WSPRecv(s, buffers, 0, DWORD(), DWORD(0), WSAOVERLAPPED(), None, None, err)
    assert (rc, err.value) == (w.SOCKET_ERROR, w.WSAEINVAL)


def test_ioctl_needs_its_count_box_and_refuses_unknown_codes(provider, listener):  # type: ignore[no-untyped-def]
    # sock.c: test_unsupported_ioctls, test_fionread_siocatmark
    s, conn = connect(provider, listener)
    err = INT()
    assert provider.WSPIoctl(s, w.FIONBIO, 0, 4, None, 0, None, None, None, None, err) == -1
    assert err.value == w.WSAEFAULT
    assert provider.WSPIoctl(s, 0x12345, None, 0, None, 0, DWORD(), None, None, None, err) == -1
    assert err.value == w.WSAEOPNOTSUPP
    calls = Completions()
    ov = WSAOVERLAPPED()
    rc = provider.WSPIoctl(s, 0x12345, None, 0, None, 0, DWORD(), ov, calls, None, err)
    assert (rc, err.value) == (w.SOCKET_ERROR, w.WSA_IO_PENDING)
    assert calls.wait(1) and calls.calls[0][0] == w.WSAEOPNOTSUPP
    conn.sendall(b"abc")
    avail, returned = DWORD(), DWORD()
    assert eventually(
        lambda: (
            provider.WSPIoctl(s, w.FIONREAD, None, 0, avail, 4, returned, None, None, None, err)
            == 0
            and avail.value == 3
        )
    )
    ov = WSAOVERLAPPED(hEvent=w.WSACreateEvent())
    assert provider.WSPIoctl(s, w.FIONREAD, None, 0, avail, 4, returned, ov, None, None, err) == 0
    assert avail.value == 3 and (ov.Internal, ov.InternalHigh) == (0, 0)


# --- 12. datagrams ---------------------------------------------------------------------------


def test_icmp_errors_never_fail_a_later_send_on_a_connected_udp_socket(provider):  # type: ignore[no-untyped-def]
    # sock.c: test_icmp
    s = make_socket(provider, w.SOCK_DGRAM)
    err = INT()
    assert (
        provider.WSPConnect(s, ("127.0.0.1", free_udp_port()), None, None, None, None, None, err)
        == 0
    )
    for _ in range(5):
        assert send(provider, s, b"nobody listens")[:2] == (0, 0)


def test_sendto_port_zero_succeeds(provider):  # type: ignore[no-untyped-def]
    # sock.c: test_WSASendTo
    s = make_socket(provider, w.SOCK_DGRAM)
    err, sent = INT(), DWORD()
    rc = provider.WSPSendTo(s, [WSABUF(4, b"zero")], 1, sent, 0, ("127.0.0.1", 0), None, None, None, None, err)  # fmt: skip
    assert (rc, sent.value) == (0, 4)


def test_a_udp_socket_connects_and_sends_to_a_broadcast_address(provider):  # type: ignore[no-untyped-def]
    # sock.c: test_connect_udp, test_broadcast -- without SO_BROADCAST (loopback's own
    # broadcast address, 127.255.255.255, so nothing leaves the machine).
    s = make_socket(provider, w.SOCK_DGRAM)
    err = INT()
    port = free_udp_port()
    assert provider.WSPConnect(s, ("127.255.255.255", port), None, None, None, None, None, err) == 0
    assert send(provider, s, b"to all")[:2] == (0, 0)


def test_an_unknown_option_level_is_einval(provider):  # type: ignore[no-untyped-def]
    # sock.c: test_sockopt_validity
    s = make_socket(provider)
    err = INT()
    assert provider.WSPSetSockOpt(s, 0x7777, w.SO_SNDBUF, 1, 4, err) == w.SOCKET_ERROR
    assert err.value == w.WSAEINVAL
    assert provider.WSPGetSockOpt(s, 0x7777, w.SO_SNDBUF, DWORD(), None, err) == w.SOCKET_ERROR
    assert err.value == w.WSAEINVAL


# --- 13. names -------------------------------------------------------------------------------


def test_sock_and_peer_names(provider, listener):  # type: ignore[no-untyped-def]
    # SPEC S1 (sock.c: test_getsockname, test_getpeername)
    s, conn = connect(provider, listener)
    name, peer, err = DWORD(), DWORD(), INT()
    assert provider.WSPGetSockName(s, name, None, err) == 0
    assert provider.WSPGetPeerName(s, peer, None, err) == 0
    assert name.value == conn.getpeername() and peer.value == listener.getsockname()
    fresh = make_socket(provider)
    assert provider.WSPGetPeerName(fresh, peer, None, err) == w.SOCKET_ERROR
    assert err.value == w.WSAENOTCONN
    assert provider.WSPGetSockName(fresh, name, None, err) == w.SOCKET_ERROR
    assert err.value == w.WSAEINVAL
    assert run_in_loop(provider.loop, lambda: provider.WSPGetSockName(s, name, None, INT())) == 0


def _nodelay(p: w.Provider, s: int) -> tuple[int, int]:
    """TCP_NODELAY as WSPGetSockOpt reports it, and as the host socket has it."""
    value, err = DWORD(), INT()
    assert p.WSPGetSockOpt(s, w.IPPROTO_TCP, w.TCP_NODELAY, value, None, err) == 0, err.value
    return int(bool(value.value)), p.socket_of(s).sock.getsockopt(
        socket.IPPROTO_TCP, socket.TCP_NODELAY
    )


def test_tcp_nodelay_is_off_until_the_program_sets_it(provider, listener):  # type: ignore[no-untyped-def]
    # Winsock leaves Nagle on (TCP_NODELAY FALSE) by default; uvloop turns it off on
    # every transport it makes.  The emulated socket has Winsock's default on both loops,
    # and keeps what the program set before connecting (docs/semantics.md).
    s, _conn = connect(provider, listener)
    assert eventually(lambda: _nodelay(provider, s) == (0, 0))
    t = make_socket(provider)
    err = INT()
    assert provider.WSPSetSockOpt(t, w.IPPROTO_TCP, w.TCP_NODELAY, 1, 4, err) == 0
    assert provider.WSPConnect(t, listener.getsockname(), None, None, None, None, None, err) == 0
    peer, _ = listener.accept()
    assert provider.socket_of(t).transport is not None
    assert _nodelay(provider, t)[1] != 0
    peer.close()


def test_an_accepted_socket_takes_its_listeners_tcp_nodelay(provider):  # type: ignore[no-untyped-def]
    # Winsock: a socket from accept() inherits the listening socket's options.
    err = INT()
    for setting in (0, 1):
        lst = make_socket(provider)
        assert provider.WSPSetSockOpt(lst, w.IPPROTO_TCP, w.TCP_NODELAY, setting, 4, err) == 0
        assert provider.WSPBind(lst, ("127.0.0.1", 0), None, err) == 0
        assert provider.WSPListen(lst, 4, err) == 0
        name = DWORD()
        assert provider.WSPGetSockName(lst, name, None, err) == 0
        client = socket.create_connection(name.value, timeout=10)
        child = provider.WSPAccept(lst, None, None, None, 0, err)
        assert child != w.INVALID_SOCKET, err.value
        assert eventually(lambda c=child: provider.socket_of(c).transport is not None)
        assert _nodelay(provider, child)[0] == setting
        assert bool(_nodelay(provider, child)[1]) == bool(setting)
        client.close()


def test_an_adopted_socket_keeps_its_own_tcp_nodelay(provider, listener):  # type: ignore[no-untyped-def]
    # SPEC S16.1: adopting does not change the program's socket; its TCP_NODELAY stays
    # what it was, whichever loop's transport now carries it.
    for setting in (0, 1):
        sock = socket.create_connection(listener.getsockname(), timeout=10)
        peer, _ = listener.accept()
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, setting)
        s = provider.adopt(sock)
        assert eventually(lambda h=s: provider.socket_of(h).transport is not None)
        assert bool(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)) == bool(setting)
        err = INT()
        assert provider.WSPCloseSocket(s, err) == 0
        peer.close()


def test_a_buffer_reused_after_its_send_completed_leaves_the_sent_bytes_alone(provider, listener):  # type: ignore[no-untyped-def]
    # SPEC S4.1, S5.2: a send that completes while its bytes are held in the send buffer
    # hands the buffer back to the caller; Windows copied them, so reusing the buffer then
    # must not change what goes out -- though the transport (uvloop's always) keeps
    # references to bytes it has not written.
    s, conn = connect(provider, listener)
    stall(provider, s, conn)
    err = INT()
    assert provider.WSPSetSockOpt(s, w.SOL_SOCKET, w.SO_SNDBUF, 8 << 20, 4, err) == 0
    filler = b"f" * (4 << 20)  # more than the kernel holds: the rest waits in the transport
    kinds = {
        "bytearray": bytearray(b"A" * 1000),
        "memoryview": memoryview(bytearray(b"B" * 1000)),
        "array": __import__("array").array("B", b"C" * 1000),
    }
    sent: list[bytes] = []

    def post(data: object) -> None:
        # Each in its own loop callback: the first send of an iteration goes out at once.
        ov = WSAOVERLAPPED()
        rc = provider.WSPSend(s, [WSABUF(len(data), data)], 1, None, 0, ov, None, None, err)  # type: ignore[arg-type]
        assert rc == 0 and not ov.pending, err.value  # held within SO_SNDBUF: complete
        if data is not filler:
            sent.append(bytes(data))  # type: ignore[call-overload]
            memoryview(data).cast("B")[:] = b"x" * 1000  # type: ignore[arg-type]  # the caller's again

    run_in_loop(provider.loop, post, filler)
    for data in kinds.values():
        run_in_loop(provider.loop, post, data)
    assert provider.socket_of(s).transport.get_write_buffer_size() > 3000  # still held here
    got = recv_exact(conn, len(filler) + 3000)
    assert got[len(filler) :] == b"".join(sent)


# --- Closing with bytes the program never read (RFC 1122 4.2.2.13) ----------------------


def _unread(provider: w.Provider, s: int, n: int) -> bool:
    avail = DWORD()
    provider.WSPIoctl(s, w.FIONREAD, None, 0, avail, 4, DWORD(), None, None, None, INT())
    return avail.value == n


def test_closing_with_unread_bytes_resets_the_connection(provider, listener):  # type: ignore[no-untyped-def]
    # SPEC S10.2; silent on the wire: closesocket with received bytes the program never
    # read resets the connection, on Windows as on Linux.  Here the bytes sit in the
    # emulator (FIONREAD counts them), not in the kernel, so the emulator must reset.
    s, conn = connect(provider, listener)
    conn.sendall(b"r" * 100)
    assert eventually(lambda: _unread(provider, s, 100))
    rc, _err, n, _buf = recv(provider, s, 10)
    assert (rc, n) == (0, 10)
    assert _unread(provider, s, 90)
    assert provider.WSPCloseSocket(s, INT()) == 0
    with pytest.raises(ConnectionResetError):
        while conn.recv(16):  # a reset, not an end of stream
            pass


def test_closing_after_reading_everything_ends_the_stream_gracefully(provider, listener):  # type: ignore[no-untyped-def]
    # SPEC S10.2: nothing unread, so the peer sees the bytes sent and then an end of stream.
    s, conn = connect(provider, listener)
    conn.sendall(b"all")
    assert eventually(lambda: _unread(provider, s, 3))
    rc, _err, n, buf = recv(provider, s, 3)
    assert (rc, n, bytes(buf)) == (0, 3, b"all")
    assert send(provider, s, b"bye")[:2] == (0, 0)
    assert provider.WSPCloseSocket(s, INT()) == 0
    assert recv_exact(conn, 4) == b"bye"  # then b"": the end of stream, no reset
