"""Windows' answers on the completion surfaces (issue 22).

Each test names the function of Wine's ``dlls/ws2_32/tests/sock.c`` whose checks run
on Windows (``ok()``: what Windows does) and the SPEC rule.  Peers are plain sockets on
127.0.0.1; both loops.
"""

from __future__ import annotations

import socket
import threading

import pytest

import wsp_async as w
from wsp_async import DWORD, INT, WSAOVERLAPPED

from .conftest import connect, make_socket, recv_all, recv_exact, run_in_loop, stall, unanswering

# --- 12. WSAGetOverlappedResult reads the structure through ws2_32's table ----------------

E = w.WSAErr
ERROR_IO_INCOMPLETE = 996

#: sock.c's map_status: NTSTATUS -> what WSAGetOverlappedResult reports on Windows.
MAP_STATUS = {
    0x00000103: ERROR_IO_INCOMPLETE,  # STATUS_PENDING
    0x80000005: E.WSAEMSGSIZE,  # STATUS_BUFFER_OVERFLOW
    0xC0000002: E.WSAEOPNOTSUPP,  # STATUS_NOT_IMPLEMENTED
    0xC0000005: E.WSAEFAULT,  # STATUS_ACCESS_VIOLATION
    0xC0000007: E.WSAENOBUFS,  # STATUS_PAGEFILE_QUOTA
    0xC0000008: E.WSAENOTSOCK,  # STATUS_INVALID_HANDLE
    0xC000000E: E.WSAENETDOWN,  # STATUS_NO_SUCH_DEVICE
    0xC000000F: E.WSAENETDOWN,  # STATUS_NO_SUCH_FILE
    0xC0000017: E.WSAENOBUFS,  # STATUS_NO_MEMORY
    0xC0000018: E.WSAENOBUFS,  # STATUS_CONFLICTING_ADDRESSES
    0xC0000022: E.WSAEACCES,  # STATUS_ACCESS_DENIED
    0xC0000023: E.WSAEFAULT,  # STATUS_BUFFER_TOO_SMALL
    0xC0000024: E.WSAENOTSOCK,  # STATUS_OBJECT_TYPE_MISMATCH
    0xC0000034: E.WSAENETDOWN,  # STATUS_OBJECT_NAME_NOT_FOUND
    0xC000003A: E.WSAENETDOWN,  # STATUS_OBJECT_PATH_NOT_FOUND
    0xC0000043: E.WSAEADDRINUSE,  # STATUS_SHARING_VIOLATION
    0xC0000044: E.WSAENOBUFS,  # STATUS_QUOTA_EXCEEDED
    0xC0000097: E.WSAENOBUFS,  # STATUS_TOO_MANY_PAGING_FILES
    0xC000009A: E.WSAENOBUFS,  # STATUS_INSUFFICIENT_RESOURCES
    0xC00000A1: E.WSAENOBUFS,  # STATUS_WORKING_SET_QUOTA
    0xC00000A3: E.WSAEWOULDBLOCK,  # STATUS_DEVICE_NOT_READY
    0xC00000B0: E.WSAESHUTDOWN,  # STATUS_PIPE_DISCONNECTED
    0xC00000B5: E.WSAETIMEDOUT,  # STATUS_IO_TIMEOUT
    0xC00000BB: E.WSAEOPNOTSUPP,  # STATUS_NOT_SUPPORTED
    0xC00000BC: E.WSAECONNREFUSED,  # STATUS_REMOTE_NOT_LISTENING
    0xC00000BE: E.WSAENETUNREACH,  # STATUS_BAD_NETWORK_PATH
    0xC00000BF: E.WSAENETDOWN,  # STATUS_NETWORK_BUSY
    0xC00000C3: E.WSAENETDOWN,  # STATUS_INVALID_NETWORK_RESPONSE
    0xC00000C4: E.WSAENETDOWN,  # STATUS_UNEXPECTED_NETWORK_ERROR
    0xC00000D0: E.WSAEWOULDBLOCK,  # STATUS_REQUEST_NOT_ACCEPTED
    0xC0000120: E.WSA_OPERATION_ABORTED,  # STATUS_CANCELLED
    0xC000012D: E.WSAENOBUFS,  # STATUS_COMMITMENT_LIMIT
    0xC000013B: E.WSAECONNABORTED,  # STATUS_LOCAL_DISCONNECT
    0xC000013C: E.WSAECONNRESET,  # STATUS_REMOTE_DISCONNECT
    0xC000013D: E.WSAENOBUFS,  # STATUS_REMOTE_RESOURCES
    0xC000013E: E.WSAECONNRESET,  # STATUS_LINK_FAILED
    0xC000013F: E.WSAETIMEDOUT,  # STATUS_LINK_TIMEOUT
    0xC0000140: E.WSAENOTCONN,  # STATUS_INVALID_CONNECTION
    0xC0000141: E.WSAEADDRNOTAVAIL,  # STATUS_INVALID_ADDRESS
    0xC0000206: E.WSAEMSGSIZE,  # STATUS_INVALID_BUFFER_SIZE
    0xC0000207: E.WSAEADDRNOTAVAIL,  # STATUS_INVALID_ADDRESS_COMPONENT
    0xC0000209: E.WSAENOBUFS,  # STATUS_TOO_MANY_ADDRESSES
    0xC000020A: E.WSAEADDRINUSE,  # STATUS_ADDRESS_ALREADY_EXISTS
    0xC000020C: E.WSAECONNRESET,  # STATUS_CONNECTION_DISCONNECTED
    0xC000020D: E.WSAECONNRESET,  # STATUS_CONNECTION_RESET
    0xC000020F: E.WSAECONNABORTED,  # STATUS_TRANSACTION_ABORTED
    0xC0000236: E.WSAECONNREFUSED,  # STATUS_CONNECTION_REFUSED
    0xC0000237: E.WSAEDISCON,  # STATUS_GRACEFUL_DISCONNECT
    0xC000023B: E.WSAEISCONN,  # STATUS_CONNECTION_ACTIVE
    0xC000023C: E.WSAENETUNREACH,  # STATUS_NETWORK_UNREACHABLE
    0xC000023D: E.WSAEHOSTUNREACH,  # STATUS_HOST_UNREACHABLE
    0xC000023E: E.WSAENETUNREACH,  # STATUS_PROTOCOL_UNREACHABLE
    0xC000023F: E.WSAECONNRESET,  # STATUS_PORT_UNREACHABLE
    0xC0000240: E.WSAEINTR,  # STATUS_REQUEST_ABORTED
    0xC0000241: E.WSAECONNABORTED,  # STATUS_CONNECTION_ABORTED
    0xC00002C5: E.WSAEFAULT,  # STATUS_DATATYPE_MISALIGNMENT_ERROR
    0xC0000350: E.WSAEHOSTDOWN,  # STATUS_HOST_DOWN
    0x80070000 | ERROR_IO_INCOMPLETE: ERROR_IO_INCOMPLETE,
    0xC0010000 | ERROR_IO_INCOMPLETE: ERROR_IO_INCOMPLETE,
    0xC0070000 | ERROR_IO_INCOMPLETE: ERROR_IO_INCOMPLETE,
}

#: The status ranges sock.c walks.
RANGES = [
    (0x0, 0x10000),
    (0x40000000, 0x40001000),
    (0x80000000, 0x80001000),
    (0x80070000, 0x80080000),
    (0xC0000000, 0xC0001000),
    (0xC0070000, 0xC0080000),
    (0xD0000000, 0xD0001000),
    (0xD0070000, 0xD0080000),
]

#: Winsock codes the provider itself stores as 0xC0070000 | code, which read back as
#: themselves (SPEC S2.5; the one row of "Differences from Windows" on this table).
CARRIED = {0xC0070000 | int(c) for c in E if w.ntstatus_of(c) == 0xC0070000 | int(c)}


def expected(status: int) -> tuple[bool, int | None]:
    """(succeeds, error) as Windows reports them, or as S2.5 asks for a carried code."""
    if status in CARRIED:
        return False, status & 0xFFFF
    if status < 0x80000000 and status != 0x103:
        return True, None
    return False, MAP_STATUS.get(status, E.WSAEINVAL)


def test_every_status_reads_as_ws2_32_reads_it(provider):  # type: ignore[no-untyped-def]
    # sock.c: test_WSAGetOverlappedResult (map_status over its ranges); SPEC S2.5, S7.2.
    s = make_socket(provider)
    ov, got, flags, err = WSAOVERLAPPED(), DWORD(), DWORD(), INT()
    wrong = []
    for low, high in RANGES:
        for status in range(low, high):
            ov.Internal = status
            err.value = 0xDEADBEEF
            ok = provider.WSPGetOverlappedResult(s, ov, got, False, flags, err)
            succeeds, code = expected(status)
            if bool(ok) != succeeds or (not succeeds and err.value != code):
                wrong.append((hex(status), ok, err.value, code))
    assert not wrong, wrong[:10]
    assert CARRIED and all(status >> 16 == 0xC007 for status in CARRIED)


def test_a_hand_made_pending_structure_whose_event_is_set_succeeds(provider):  # type: ignore[no-untyped-def]
    # sock.c: test_WSAGetOverlappedResult (the last part): fWait waits for the event, not
    # alertably (a queued APC stays queued), and reports success.
    s = make_socket(provider)
    ov = WSAOVERLAPPED(
        Internal=w.STATUS_PENDING, InternalHigh=7, hEvent=w.CreateEvent(None, True, True, None)
    )
    ran = []
    assert not w.queue_apc(threading.get_ident(), ran.append, 0)  # a number is no thread
    assert w.queue_apc(w.WSATHREADID.current(), ran.append, 1)
    got, err = DWORD(), INT()
    assert provider.WSPGetOverlappedResult(s, ov, got, True, DWORD(), err)
    assert got.value == 7 and ran == []
    assert w.SleepEx(0, True) == w.WAIT_IO_COMPLETION and ran == [1]
    # Without fWait it is still incomplete; with no event to wait on, too (a choice: Windows
    # would wait on the socket for ever).
    assert not provider.WSPGetOverlappedResult(s, ov, got, False, DWORD(), err)
    assert err.value == w.WSA_IO_INCOMPLETE
    bare = WSAOVERLAPPED(Internal=w.STATUS_PENDING)
    assert not provider.WSPGetOverlappedResult(s, bare, got, True, DWORD(), err)
    assert err.value == w.WSA_IO_INCOMPLETE


@pytest.mark.parametrize(
    ("status", "succeeds", "win32"),
    [
        (0, True, None),
        (0x40000001, True, None),  # an informational status is success
        (w.STATUS_CONNECTION_RESET, False, 64),  # ERROR_NETNAME_DELETED
        (0x80000005, False, 234),  # STATUS_BUFFER_OVERFLOW: ERROR_MORE_DATA
        (w.STATUS_CANCELLED, False, 995),
        (w.STATUS_PENDING, False, ERROR_IO_INCOMPLETE),
    ],
)
def test_kernel32_get_overlapped_result_reports_win32_codes(status, succeeds, win32):  # type: ignore[no-untyped-def]
    # SPEC S16.2 (sock.c: test_nonblocking_async_recv and others call GetOverlappedResult
    # on sockets): the same structure, kernel32's view.
    ov = WSAOVERLAPPED(Internal=status, InternalHigh=5)
    got = DWORD()
    w.SetLastError(0xDEADBEEF)
    assert bool(w.GetOverlappedResult(0, ov, got, False)) is succeeds
    if succeeds:
        assert got.value == 5 and w.GetLastError() == 0xDEADBEEF
    else:
        assert w.GetLastError() == win32


# --- 1. a port associated after the post still gets the packet -------------------------------


class Box:
    def __init__(self, value: object = None) -> None:
        self.value = value


def gqcs(port: object, ms: int = 10_000) -> tuple[bool, int, object, object, int]:
    n, key, ov = DWORD(), Box(), Box()
    ok = w.GetQueuedCompletionStatus(port, n, key, ov, ms)
    return bool(ok), n.value, key.value, ov.value, w.GetLastError()


def listening(p: w.Provider) -> tuple[int, tuple[str, int]]:
    s = make_socket(p)
    name = DWORD()
    assert p.WSPBind(s, ("127.0.0.1", 0), None, INT()) == 0
    assert p.WSPListen(s, 8, INT()) == 0
    assert p.WSPGetSockName(s, name, None, INT()) == 0
    return s, name.value  # type: ignore[return-value]


ADDR = 16 + 16


def test_an_accept_ex_posted_before_the_port_reports_to_it(provider):  # type: ignore[no-untyped-def]
    # sock.c: test_completion_port ("IOCP created after AcceptEx"); SPEC S13.2.
    listener, _address = listening(provider)
    acceptor = make_socket(provider)
    ov = WSAOVERLAPPED()
    out = bytearray(2 * ADDR)
    assert not provider.AcceptEx(listener, acceptor, out, 0, ADDR, ADDR, DWORD(), ov)
    port = w.CreateIoCompletionPort(listener, None, 125, 0)
    assert port
    assert provider.WSPCloseSocket(listener, INT()) == 0
    ok, n, key, got, error = gqcs(port)
    assert (ok, n, key, got, error) == (False, 0, 125, ov, w.ERROR_OPERATION_ABORTED)
    assert ov.Internal == w.STATUS_CANCELLED
    assert gqcs(port, 0)[4] == w.WAIT_TIMEOUT  # one packet
    assert w.CloseHandle(port)


def test_a_receive_posted_before_the_port_reports_to_it(provider, listener):  # type: ignore[no-untyped-def]
    # SPEC S13.2: the packet's target is read when the operation completes.
    s, conn = connect(provider, listener)
    ov = WSAOVERLAPPED()
    buf = bytearray(8)
    err = INT()
    rc = provider.WSPRecv(s, [w.WSABUF(8, buf)], 1, None, DWORD(0), ov, None, None, err)
    assert (rc, err.value) == (w.SOCKET_ERROR, w.WSA_IO_PENDING)
    port = w.CreateIoCompletionPort(s, None, "late", 0)
    conn.sendall(b"data")
    assert gqcs(port)[:4] == (True, 4, "late", ov)
    assert gqcs(port, 0)[4] == w.WAIT_TIMEOUT  # one packet
    assert bytes(buf[:4]) == b"data"
    assert w.CloseHandle(port)


# --- 7. a receive after the peer's FIN returns 0 at once, port or not --------------------------


def test_a_receive_after_the_fin_returns_zero_at_once_on_a_port_socket(provider, listener):  # type: ignore[no-untyped-def]
    # sock.c: test_completion_port ("IOCP response on graceful shutdown"): WSARecv returns
    # 0 with a count of 0, and the port still gets its packet; SPEC S13.2, S13.3.
    s, conn = connect(provider, listener)
    port = w.CreateIoCompletionPort(s, None, 125, 0)
    first = WSAOVERLAPPED()
    buf = bytearray(8)
    err = INT()
    rc = provider.WSPRecv(s, [w.WSABUF(8, buf)], 1, None, DWORD(0), first, None, None, err)
    assert (rc, err.value) == (w.SOCKET_ERROR, w.WSA_IO_PENDING)
    conn.close()  # FIN
    assert gqcs(port)[:4] == (True, 0, 125, first)
    for _ in range(3):
        again, got = WSAOVERLAPPED(), DWORD(0xDEAD)
        rc = provider.WSPRecv(s, [w.WSABUF(8, buf)], 1, got, DWORD(0), again, None, None, err)
        assert (rc, got.value) == (0, 0)
        assert gqcs(port, 0)[:4] == (True, 0, 125, again)
    assert w.CloseHandle(port)


# --- 3, 4, 5. AcceptEx: Windows' answers to every argument ------------------------------------

DEAD = 0xDEADBEEF


def accept_ex(p: w.Provider, listener: int, acceptor: int, out: object, receive: int, local: int, remote: int, ov: object) -> tuple[bool, int]:  # fmt: skip
    ok = p.AcceptEx(listener, acceptor, out, receive, local, remote, DWORD(), ov)
    return bool(ok), w.WSAGetLastError()


def test_accept_ex_failing_at_once_leaves_status_pending_and_windows_codes(provider):  # type: ignore[no-untyped-def]
    # sock.c: test_AcceptEx: each of these fails with its code, and Internal says
    # STATUS_PENDING (written first); SPEC S14.2, S9.
    s = make_socket(provider)
    assert provider.WSPBind(s, ("127.0.0.1", 0), None, INT()) == 0
    acceptor = make_socket(provider)
    out = bytearray(2 * ADDR)
    ov = WSAOVERLAPPED(Internal=DEAD)
    assert accept_ex(provider, w.INVALID_SOCKET, acceptor, out, 0, ADDR, ADDR, ov) == (False, w.WSAENOTSOCK)  # fmt: skip
    assert ov.Internal == w.STATUS_PENDING
    ov.Internal = DEAD
    assert accept_ex(provider, s, acceptor, out, 0, ADDR, ADDR, ov) == (
        False,
        w.WSAEINVAL,
    )  # not listening
    assert ov.Internal == w.STATUS_PENDING
    assert provider.WSPListen(s, 5, INT()) == 0
    udp = make_socket(provider, w.SOCK_DGRAM)
    bound = make_socket(provider)
    assert provider.WSPBind(bound, ("127.0.0.1", 0), None, INT()) == 0
    for bad, code, args in (
        (w.INVALID_SOCKET, w.WSAENOTSOCK, (out, 0, ADDR, ADDR)),
        (acceptor, w.WSAEFAULT, (None, 0, ADDR, ADDR)),  # NULL buffer
        (udp, w.WSAEINVAL, (out, 0, 0, ADDR)),
        (bound, w.WSAEINVAL, (out, 0, 0, ADDR)),
        (acceptor, w.WSAEFAULT, (out, 0, ADDR, 0)),  # a remote block of 0
    ):
        ov.Internal = DEAD
        assert accept_ex(provider, s, bad, *args, ov) == (False, code), (bad, args)
        assert ov.Internal == w.STATUS_PENDING
    # No structure at all: ERROR_INVALID_PARAMETER.
    assert accept_ex(provider, s, acceptor, out, 0, ADDR, ADDR, None) == (False, 87)
    assert accept_ex(provider, s, acceptor, out, 0, 0, 0, None) == (False, 87)


def test_accept_ex_with_a_local_block_of_zero_gives_only_the_remote_address(provider):  # type: ignore[no-untyped-def]
    # sock.c: test_AcceptEx ("too small local address size" of 0 succeeds); SPEC S14.2.
    listener, address = listening(provider)
    acceptor = make_socket(provider)
    out = bytearray(ADDR)
    ov = WSAOVERLAPPED(hEvent=w.WSACreateEvent())
    assert accept_ex(provider, listener, acceptor, out, 0, 0, ADDR, ov) == (False, w.WSA_IO_PENDING)
    with socket_to(address) as client:
        assert w.WaitForSingleObject(ov.hEvent, 10_000) == 0
        got = DWORD(DEAD)
        assert w.GetOverlappedResult(listener, ov, got, False) and got.value == 0
        local, local_len, remote, remote_len = Box("untouched"), DWORD(DEAD), Box(), DWORD()
        w.GetAcceptExSockaddrs(out, 0, 0, ADDR, local, local_len, remote, remote_len)
        assert (local.value, local_len.value) == ("untouched", DEAD)
        assert remote.value == client.getsockname() and remote_len.value == 16


@pytest.mark.parametrize(("local", "remote"), [(3, ADDR), (16 + 4, ADDR), (ADDR, ADDR - 1)])
def test_accept_ex_with_a_short_address_block_fails_and_leaves_the_connection(
    provider, local, remote
):  # type: ignore[no-untyped-def]
    # sock.c: test_AcceptEx ("insufficient local address size"): it pends, then completes
    # with STATUS_BUFFER_TOO_SMALL (ERROR_INSUFFICIENT_BUFFER, count 0) when a connection
    # comes, and that connection is still there to accept; SPEC S14.2, S16.2.
    listener, address = listening(provider)
    acceptor = make_socket(provider)
    out = bytearray(local + remote)
    ov = WSAOVERLAPPED(hEvent=w.WSACreateEvent())
    assert accept_ex(provider, listener, acceptor, out, 0, local, remote, ov) == (False, w.WSA_IO_PENDING)  # fmt: skip
    assert ov.Internal == w.STATUS_PENDING
    with socket_to(address) as client:
        assert w.WaitForSingleObject(ov.hEvent, 10_000) == 0
        got = DWORD(DEAD)
        w.SetLastError(DEAD)
        assert not w.GetOverlappedResult(listener, ov, got, False)
        assert (w.GetLastError(), ov.Internal, got.value) == (122, 0xC0000023, 0)
        err = INT()
        assert not provider.WSPGetOverlappedResult(listener, ov, got, False, DWORD(), err)
        assert err.value == w.WSAEFAULT
        # The connection waits for the next AcceptEx.
        again = WSAOVERLAPPED(hEvent=w.WSACreateEvent())
        whole = bytearray(2 * ADDR)
        ok, code = accept_ex(provider, listener, acceptor, whole, 0, ADDR, ADDR, again)
        assert ok or code == w.WSA_IO_PENDING
        assert w.WaitForSingleObject(again.hEvent, 10_000) == 0 and again.Internal == 0
        name = DWORD()
        assert provider.WSPGetPeerName(acceptor, name, None, INT()) == 0
        assert name.value == client.getsockname()


def socket_to(address: tuple[str, int]) -> socket.socket:
    return socket.create_connection(address, timeout=10)


# --- 4, 5, 6. ConnectEx -----------------------------------------------------------------------


def test_connect_ex_on_a_connecting_socket_is_einval_with_status_pending(provider):  # type: ignore[no-untyped-def]
    # sock.c: test_connecting_socket: while a ConnectEx is under way, a second ConnectEx
    # fails with WSAEINVAL (Internal: STATUS_PENDING), and so does connect(); SPEC S14.3.
    # A listener whose backlog is full leaves the SYN unanswered: the connect pends.
    with unanswering() as nowhere:
        s = make_socket(provider)
        assert provider.WSPBind(s, ("127.0.0.1", 0), None, INT()) == 0
        first = WSAOVERLAPPED(hEvent=w.WSACreateEvent())
        assert not provider.ConnectEx(s, nowhere, None, None, 0, DWORD(), first)
        assert w.WSAGetLastError() == w.WSA_IO_PENDING
        second = WSAOVERLAPPED(Internal=DEAD, InternalHigh=DEAD)
        assert not provider.ConnectEx(s, nowhere, None, None, 0, DWORD(), second)
        assert w.WSAGetLastError() == w.WSAEINVAL
        assert (second.Internal, second.InternalHigh) == (w.STATUS_PENDING, DEAD)
        err = INT()
        assert provider.WSPConnect(s, nowhere, None, None, None, None, None, err) == w.SOCKET_ERROR  # fmt: skip
        assert err.value == w.WSAEINVAL
        assert provider.WSPCloseSocket(s, INT()) == 0
        assert w.WaitForSingleObject(first.hEvent, 10_000) == 0
        assert first.Internal == w.STATUS_CANCELLED


def test_connect_ex_reads_its_data_in_the_call_and_connect_after_it_is_einval(provider, listener):  # type: ignore[no-untyped-def]
    # sock.c: test_connect (ConnectEx's send buffer; connect() on its socket), SPEC S14.3.
    s = make_socket(provider)
    assert provider.WSPBind(s, ("127.0.0.1", 0), None, INT()) == 0
    data = bytearray(b"first bytes")
    ov = WSAOVERLAPPED(hEvent=w.WSACreateEvent())
    ok = provider.ConnectEx(s, listener.getsockname(), None, data, len(data), DWORD(), ov)
    data[:] = b"X" * len(data)  # the program reuses its buffer at once
    assert ok or w.WSAGetLastError() == w.WSA_IO_PENDING
    conn, _ = listener.accept()
    with conn:
        conn.settimeout(10)
        assert w.WaitForSingleObject(ov.hEvent, 10_000) == 0 and ov.Internal == 0
        assert recv_exact(conn, 11) == b"first bytes"
        err = INT()
        assert provider.WSPConnect(s, listener.getsockname(), None, None, None, None, None, err) == w.SOCKET_ERROR  # fmt: skip
        assert err.value == w.WSAEINVAL
    assert not provider.ConnectEx(s, listener.getsockname(), None, None, 0, DWORD(), None)
    assert w.WSAGetLastError() == 87  # ERROR_INVALID_PARAMETER: no structure


# --- 5. TransmitFile on an unconnected socket ------------------------------------------------


def test_transmit_file_with_tf_reuse_socket_on_an_unconnected_socket_is_enotconn(provider):  # type: ignore[no-untyped-def]
    # sock.c: test_TransmitFile ("a bogus TransmitFile without a connected socket"): not
    # connected is said before the flags are; SPEC S14.5, S9.
    s = make_socket(provider)
    assert not provider.TransmitFile(s, None, 0, 0, None, None, w.TF_REUSE_SOCKET)
    assert w.WSAGetLastError() == w.WSAENOTCONN
    udp = make_socket(provider, w.SOCK_DGRAM)
    assert not provider.TransmitFile(udp, None, 0, 0, None, None, 0)
    assert w.WSAGetLastError() == w.WSAENOTCONN


# --- 9. CloseHandle of a socket ---------------------------------------------------------------


def test_close_handle_closes_a_socket_and_its_pending_receive_still_reports(provider, listener):  # type: ignore[no-untyped-def]
    # sock.c: test_iocp (sockets closed by CloseHandle; their I/O is cancelled and the port
    # gets the packet); SPEC S10.2, S13.2.
    s, _conn = connect(provider, listener)
    port = w.CreateIoCompletionPort(s, None, 9, 0)
    ov = WSAOVERLAPPED()
    err = INT()
    rc = provider.WSPRecv(s, [w.WSABUF(8, bytearray(8))], 1, None, DWORD(0), ov, None, None, err)
    assert (rc, err.value) == (w.SOCKET_ERROR, w.WSA_IO_PENDING)
    assert w.CloseHandle(s)
    assert gqcs(port)[:4] == (False, 0, 9, ov)
    assert ov.Internal == w.STATUS_CANCELLED
    assert gqcs(port, 0)[4] == w.WAIT_TIMEOUT  # one packet
    # The handle is gone: a second CloseHandle, and any call on it, fail.
    assert not w.CloseHandle(s) and w.GetLastError() == w.ERROR_INVALID_HANDLE
    assert provider.WSPCloseSocket(s, err) == w.SOCKET_ERROR and err.value == w.WSAENOTSOCK
    assert w.CloseHandle(port)


# --- 11. an unsupported ioctl -----------------------------------------------------------------


def test_an_unsupported_ioctl_writes_a_count_of_zero(provider):  # type: ignore[no-untyped-def]
    # sock.c: test_unsupported_ioctls: WSAEOPNOTSUPP, and the byte count is 0; SPEC S9.
    s = make_socket(provider)
    returned, err = DWORD(DEAD), INT()
    rc = provider.WSPIoctl(s, 0x98000001, None, 0, None, 0, returned, None, None, None, err)
    assert (rc, err.value, returned.value) == (w.SOCKET_ERROR, w.WSAEOPNOTSUPP, 0)


# --- 17. a UDP socket connected to a broadcast address ----------------------------------------


def test_a_socket_connected_to_a_broadcast_address_sends_but_sendto_it_fails(
    provider, refusing_address
):  # type: ignore[no-untyped-def]
    # sock.c: test_broadcast: connect() works without SO_BROADCAST and send() on it too;
    # SO_BROADCAST still reads 0, and sendto() the broadcast address fails (WSAEACCES).
    # Loopback's own broadcast address, so nothing leaves the machine.
    s = make_socket(provider, w.SOCK_DGRAM)
    target = ("127.255.255.255", refusing_address[1])
    err = INT()
    assert provider.WSPConnect(s, target, None, None, None, None, None, err) == 0
    sent = DWORD()
    assert provider.WSPSend(s, [w.WSABUF(4, b"test")], 1, sent, 0, None, None, None, err) == 0
    assert sent.value == 4
    value = DWORD(DEAD)
    assert provider.WSPGetSockOpt(s, w.SOL_SOCKET, w.SO_BROADCAST, value, None, err) == 0
    assert value.value == 0
    rc = provider.WSPSendTo(s, [w.WSABUF(4, b"test")], 1, sent, 0, target, None, None, None, None, err)  # fmt: skip
    assert (rc, err.value) == (w.SOCKET_ERROR, w.WSAEACCES)
    assert provider.WSPSend(s, [w.WSABUF(4, b"test")], 1, sent, 0, None, None, None, err) == 0


# --- 2. DisconnectEx is a half-close ----------------------------------------------------------


def test_disconnect_ex_half_closes_and_a_second_one_succeeds(provider, listener):  # type: ignore[no-untyped-def]
    # sock.c: test_DisconnectEx: after it, the peer reads the end of stream; the socket
    # still has its names and still receives (the peer's data is not answered with a
    # reset); a second DisconnectEx succeeds at once; SPEC S14.4.
    s, conn = connect(provider, listener)
    err = INT()
    assert provider.WSPSend(s, [w.WSABUF(6, b"before")], 1, DWORD(), 0, None, None, None, err) == 0
    ov = WSAOVERLAPPED(hEvent=w.WSACreateEvent())
    ok = provider.DisconnectEx(s, ov, 0, 0)
    assert ok or w.WSAGetLastError() == w.WSA_IO_PENDING
    assert w.WaitForSingleObject(ov.hEvent, 10_000) == 0 and ov.Internal == 0
    assert recv_exact(conn, 6) == b"before"
    assert conn.recv(10) == b""  # FIN
    name = DWORD()
    assert provider.WSPGetPeerName(s, name, None, err) == 0 and name.value == listener.getsockname()
    conn.sendall(b"after")
    buf = bytearray(8)
    got = DWORD()
    rc = provider.WSPRecv(s, [w.WSABUF(8, buf)], 1, got, DWORD(0), None, None, None, err)
    assert (rc, bytes(buf[: got.value])) == (0, b"after")
    again = WSAOVERLAPPED(hEvent=w.WSACreateEvent())
    assert provider.DisconnectEx(s, again, 0, 0)  # TRUE, at once
    assert again.Internal == 0 and w.WaitForSingleObject(again.hEvent, 0) == 0
    assert provider.DisconnectEx(s, None, 0, 0)
    # Sends stay refused after the disconnect.
    rc = provider.WSPSend(s, [w.WSABUF(1, b"x")], 1, DWORD(), 0, None, None, None, err)
    assert (rc, err.value) == (w.SOCKET_ERROR, w.WSAESHUTDOWN)
    conn.close()


@pytest.mark.parametrize("reuse", [0, w.TF_REUSE_SOCKET])
@pytest.mark.parametrize("where", ["loop thread", "other thread"])
def test_a_send_posted_while_disconnect_ex_waits_is_refused_not_sent_before_the_fin(  # type: ignore[no-untyped-def]
    provider, listener, where, reuse
):
    # SPEC S14.4 with S9 (WSAESHUTDOWN): DisconnectEx is a graceful close from the moment
    # it is issued, as a shutdown(SD_SEND) is -- the sends before it still go out, a send
    # posted after it is refused at once (it used to go out before the FIN and complete 0
    # when it joined the batch that consumed the disconnect's marker).
    s, conn = connect(provider, listener)
    stall(provider, s, conn)
    big = b"b" * (4 << 20)  # far more than the kernel buffers hold: it pends
    before = WSAOVERLAPPED(hEvent=w.WSACreateEvent())
    rc = provider.WSPSend(s, [w.WSABUF(len(big), big)], 1, None, 0, before, None, None, INT())
    assert rc == w.SOCKET_ERROR and w.WSAGetLastError() == w.WSA_IO_PENDING
    ov = WSAOVERLAPPED(hEvent=w.WSACreateEvent())
    assert not provider.DisconnectEx(s, ov, reuse, 0)
    assert w.WSAGetLastError() == w.WSA_IO_PENDING

    def late() -> tuple[int, int, int]:
        late_ov = WSAOVERLAPPED(hEvent=w.WSACreateEvent())
        err = INT()
        rc = provider.WSPSend(s, [w.WSABUF(4, b"late")], 1, None, 0, late_ov, None, None, err)
        return rc, err.value, late_ov.Internal

    rc, code, internal = late() if where == "other thread" else run_in_loop(provider.loop, late)
    assert (rc, code) == (w.SOCKET_ERROR, w.WSAESHUTDOWN)
    assert internal != w.STATUS_PENDING  # refused: nothing started
    # The half-close is asked for already: a second DisconnectEx succeeds at once.
    again = WSAOVERLAPPED(hEvent=w.WSACreateEvent())
    assert provider.DisconnectEx(s, again, 0, 0) and again.Internal == 0
    assert recv_all(conn) == big  # every byte before it, then the FIN; never "late"
    assert w.WaitForSingleObject(ov.hEvent, 10_000) == 0 and ov.Internal == 0
    assert w.WaitForSingleObject(before.hEvent, 10_000) == 0 and before.Internal == 0


# --- 14, 15, 16. receives as Windows answers them ---------------------------------------------


def test_a_receive_after_sending_to_a_peer_that_closed_is_connaborted(provider, listener):  # type: ignore[no-untyped-def]
    # sock.c: test_shutdown (a send to a closed peer, then recv: WSAECONNABORTED, not 0);
    # SPEC S10.5, S11.1.
    s, conn = connect(provider, listener)
    conn.close()
    err = INT()
    # The first send goes out and draws the reset; keep sending until one fails.
    for _ in range(200):
        rc = provider.WSPSend(s, [w.WSABUF(4, b"ping")], 1, DWORD(), 0, None, None, None, err)
        if rc == w.SOCKET_ERROR:
            break
        w.SleepEx(5, False)
    assert rc == w.SOCKET_ERROR and err.value in (w.WSAECONNRESET, w.WSAECONNABORTED)
    buf = bytearray(8)
    got = DWORD()
    rc = provider.WSPRecv(s, [w.WSABUF(8, buf)], 1, got, DWORD(0), None, None, None, err)
    assert (rc, err.value) == (w.SOCKET_ERROR, w.WSAECONNABORTED)


def test_an_overlapped_receive_on_a_non_overlapped_nonblocking_socket_blocks(provider, listener):  # type: ignore[no-untyped-def]
    # sock.c: test_nonblocking_async_recv: without WSA_FLAG_OVERLAPPED and with FIONBIO,
    # a receive given a structure still blocks until data comes (without one:
    # WSAEWOULDBLOCK); SPEC S3.3.
    s, conn = connect(provider, listener, flags=0)
    err = INT()
    assert provider.WSPIoctl(s, w.FIONBIO, 1, 4, None, 0, DWORD(), None, None, None, err) == 0
    buf = bytearray(5)
    rc = provider.WSPRecv(s, [w.WSABUF(5, buf)], 1, DWORD(), DWORD(0), None, None, None, err)
    assert (rc, err.value) == (w.SOCKET_ERROR, w.WSAEWOULDBLOCK)
    ov = WSAOVERLAPPED(hEvent=w.WSACreateEvent())
    result: list[int] = []

    def receive() -> None:
        got = DWORD()
        result.append(
            provider.WSPRecv(s, [w.WSABUF(5, buf)], 1, got, DWORD(0), ov, None, None, INT())
        )
        result.append(got.value)

    thread = threading.Thread(target=receive)
    thread.start()
    thread.join(0.2)
    assert thread.is_alive() and not result  # it waits for the data
    conn.sendall(b"data")
    thread.join(10)
    assert result == [0, 4] and bytes(buf[:4]) == b"data"
    assert ov.Internal == 0 and ov.InternalHigh == 4


def test_a_blocking_receive_that_finds_data_runs_no_apc(provider, listener):  # type: ignore[no-untyped-def]
    # sock.c: test_WSARecv (a receive with data already there does not enter an alertable
    # wait, so a queued APC stays queued); SPEC S6.3.
    s, conn = connect(provider, listener)
    conn.sendall(b"data")
    buf = bytearray(8)
    err = INT()

    # Wait until the bytes are there (a zero-byte FIONREAD poll, not a sleep).
    def arrived() -> bool:
        n = DWORD()
        provider.WSPIoctl(s, w.FIONREAD, None, 0, n, 4, DWORD(), None, None, None, err)
        return n.value == 4

    from .conftest import eventually

    assert eventually(arrived)
    ran: list[int] = []
    assert w.queue_apc(w.WSATHREADID.current(), ran.append, 1)
    got = DWORD()
    assert provider.WSPRecv(s, [w.WSABUF(8, buf)], 1, got, DWORD(0), None, None, None, err) == 0
    assert got.value == 4 and ran == []
    assert w.SleepEx(0, True) == w.WAIT_IO_COMPLETION and ran == [1]


# --- 13. SO_SNDBUF 0 bounds the kernel's buffer too -------------------------------------------


def test_so_sndbuf_zero_makes_a_large_send_pend_and_it_completes_whole_in_order(provider):  # type: ignore[no-untyped-def]
    # sock.c: test_send (SO_SNDBUF 0: an overlapped send of a large buffer pends, then
    # completes whole); SPEC S4.1.  The peer's receive buffer is small too, so that only
    # the sender's bound decides.
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    srv.settimeout(10)
    with srv:
        s = make_socket(provider)
        err = INT()
        assert provider.WSPSetSockOpt(s, w.SOL_SOCKET, w.SO_SNDBUF, 0, 4, err) == 0
        assert provider.WSPConnect(s, srv.getsockname(), None, None, None, None, None, err) == 0
        conn, _ = srv.accept()
        with conn:
            conn.settimeout(10)
            data = bytes(range(256)) * 1024  # 256 KiB
            ov = WSAOVERLAPPED(hEvent=w.WSACreateEvent())
            rc = provider.WSPSend(s, [w.WSABUF(len(data), data)], 1, None, 0, ov, None, None, err)
            assert (rc, err.value) == (w.SOCKET_ERROR, w.WSA_IO_PENDING)
            assert recv_exact(conn, len(data)) == data
            assert w.WaitForSingleObject(ov.hEvent, 10_000) == 0
            assert (ov.Internal, ov.InternalHigh) == (0, len(data))
