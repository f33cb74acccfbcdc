"""Extension functions (SPEC S14): AcceptEx, GetAcceptExSockaddrs, ConnectEx.

Plain sockets are the peers on 127.0.0.1; both loops.
"""

from __future__ import annotations

import socket
import struct
import threading
import uuid
from typing import Any

import pytest

import wsp_async as w
from wsp_async import DWORD, INT, WSABUF, WSAOVERLAPPED

from .conftest import make_socket, recv_exact, unanswering

ADDR = 16 + 16  # sizeof(SOCKADDR_IN) + 16, the smallest address block


class Box:
    value: object = None


def listening(p: w.Provider) -> tuple[int, tuple[str, int]]:
    s = make_socket(p)
    name = DWORD()
    assert p.WSPBind(s, ("127.0.0.1", 0), None, INT()) == 0
    assert p.WSPListen(s, 8, INT()) == 0
    assert p.WSPGetSockName(s, name, None, INT()) == 0
    return s, name.value  # type: ignore[return-value]


def pending_accept(p: w.Provider) -> tuple[int, tuple[str, int], int, bytearray, WSAOVERLAPPED]:
    """A listener and an AcceptEx pending on it (no first data): the listener, its
    address, the accept socket, the output buffer and the structure."""
    listener, address = listening(p)
    acceptor = make_socket(p)
    output = bytearray(2 * ADDR)
    ov = WSAOVERLAPPED(hEvent=w.WSACreateEvent())
    assert not p.AcceptEx(listener, acceptor, output, 0, ADDR, ADDR, DWORD(), ov)
    assert w.WSAGetLastError() == w.WSA_IO_PENDING
    return listener, address, acceptor, output, ov


def wait(ov: WSAOVERLAPPED) -> None:
    assert w.WSAWaitForMultipleEvents(1, [ov.hEvent], False, 10_000, False) == 0


def test_extension_functions_come_from_wsp_ioctl(provider):  # type: ignore[no-untyped-def]
    # SPEC S14.1: the mswsock.h GUIDs; another GUID is WSAEINVAL.
    s = make_socket(provider)
    for guid, expected in (
        (w.WSAID_ACCEPTEX, provider.AcceptEx),
        (w.WSAID_CONNECTEX, provider.ConnectEx),
        (w.WSAID_GETACCEPTEXSOCKADDRS, w.GetAcceptExSockaddrs),
        (w.WSAID_DISCONNECTEX, provider.DisconnectEx),
        (w.WSAID_TRANSMITFILE, provider.TransmitFile),
    ):
        out, err = Box(), INT()
        code = w.SIO_GET_EXTENSION_FUNCTION_POINTER
        assert provider.WSPIoctl(s, code, guid, 16, out, 8, DWORD(), None, None, None, err) == 0
        assert out.value == expected
    err = INT()
    unknown = uuid.UUID("d9689da0-1f90-11d3-9971-00c04f68c876")  # TransmitPackets: not emulated
    rc = provider.WSPIoctl(s, w.SIO_GET_EXTENSION_FUNCTION_POINTER, unknown, 16, Box(), 8, DWORD(), None, None, None, err)  # fmt: skip
    assert (rc, err.value) == (w.SOCKET_ERROR, w.WSAEINVAL)


def test_accept_ex_hands_the_connection_to_the_accept_socket(provider):  # type: ignore[no-untyped-def]
    # SPEC S14.2: the addresses in the output buffer; the accept socket works.
    _listener, address, acceptor, output, ov = pending_accept(provider)
    client = socket.create_connection(address, timeout=10)
    wait(ov)
    assert (ov.Internal, ov.InternalHigh) == (0, 0)
    local, remote = Box(), Box()
    w.GetAcceptExSockaddrs(output, 0, ADDR, ADDR, local, DWORD(), remote, DWORD())
    assert local.value == address and remote.value == client.getsockname()
    err = INT()
    assert (
        provider.WSPSend(acceptor, [WSABUF(5, b"hello")], 1, DWORD(), 0, None, None, None, err) == 0
    )
    assert recv_exact(client, 5) == b"hello"
    client.close()


def test_accept_ex_reports_the_peer_of_a_connection_reset_before_the_loop_took_it(provider):  # type: ignore[no-untyped-def]
    # SPEC S14.2: on Windows a pending AcceptEx owns the connection once it is made, so a
    # reset that follows is the program's next call's business: the AcceptEx succeeds
    # with the peer's address, although Linux no longer answers getpeername() by the
    # time the loop takes the connection (the loop is held until the reset went out).
    _listener, address, _acceptor, output, ov = pending_accept(provider)
    gate, held = threading.Event(), threading.Event()

    def hold() -> None:
        held.set()
        gate.wait(10)

    provider.loop.call_soon_threadsafe(hold)
    assert held.wait(10)
    client = socket.create_connection(address, timeout=10)
    name = client.getsockname()
    client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    client.close()  # the reset, while the connection waits in the backlog
    gate.set()
    wait(ov)
    assert (ov.Internal, ov.InternalHigh) == (0, 0)
    remote = Box()
    w.GetAcceptExSockaddrs(output, 0, ADDR, ADDR, Box(), DWORD(), remote, DWORD())
    assert remote.value == name


def test_accept_ex_with_receive_data_waits_for_the_first_bytes(provider):  # type: ignore[no-untyped-def]
    # SPEC S14.2: the data first, then the addresses.
    listener, address = listening(provider)
    acceptor = make_socket(provider)
    output = bytearray(64 + 2 * ADDR)
    ov = WSAOVERLAPPED(hEvent=w.WSACreateEvent())
    assert not provider.AcceptEx(listener, acceptor, output, 64, ADDR, ADDR, DWORD(), ov)
    client = socket.create_connection(address, timeout=10)
    assert w.WSAWaitForMultipleEvents(1, [ov.hEvent], False, 50, False) == w.WSA_WAIT_TIMEOUT
    client.sendall(b"GET /")
    wait(ov)
    assert (ov.Internal, ov.InternalHigh) == (0, 5) and bytes(output[:5]) == b"GET /"
    remote = Box()
    w.GetAcceptExSockaddrs(output, 64, ADDR, ADDR, Box(), DWORD(), remote, DWORD())
    assert remote.value == client.getsockname()
    client.close()


def test_pending_accept_ex_take_connections_in_posting_order(provider):  # type: ignore[no-untyped-def]
    # SPEC S14.2: many pending on one listener; each connection goes to exactly one.
    listener, address = listening(provider)
    posted = []
    for _ in range(3):
        acceptor = make_socket(provider)
        ov = WSAOVERLAPPED(hEvent=w.WSACreateEvent())
        output = bytearray(2 * ADDR)
        assert not provider.AcceptEx(listener, acceptor, output, 0, ADDR, ADDR, DWORD(), ov)
        posted.append((ov, output))
    clients = []
    for ov, output in posted:
        clients.append(socket.create_connection(address, timeout=10))
        wait(ov)
        remote = Box()
        w.GetAcceptExSockaddrs(output, 0, ADDR, ADDR, Box(), DWORD(), remote, DWORD())
        assert remote.value == clients[-1].getsockname()
    for c in clients:
        c.close()


def test_accept_ex_refuses_a_bound_accept_socket_and_aborts_at_close(provider):  # type: ignore[no-untyped-def]
    # SPEC S14.2, S10.2
    listener, _address = listening(provider)
    bound = make_socket(provider)
    assert provider.WSPBind(bound, ("127.0.0.1", 0), None, INT()) == 0
    ov = WSAOVERLAPPED(hEvent=w.WSACreateEvent())
    assert not provider.AcceptEx(listener, bound, bytearray(2 * ADDR), 0, ADDR, ADDR, DWORD(), ov)
    assert w.WSAGetLastError() == w.WSAEINVAL and not ov.pending
    pending = WSAOVERLAPPED(hEvent=w.WSACreateEvent())
    acceptor = make_socket(provider)
    assert not provider.AcceptEx(
        listener, acceptor, bytearray(2 * ADDR), 0, ADDR, ADDR, DWORD(), pending
    )
    assert provider.WSPCloseSocket(listener, INT()) == 0
    wait(pending)
    assert pending.Internal == w.STATUS_CANCELLED


def test_accept_ex_completes_through_the_listeners_port(provider):  # type: ignore[no-untyped-def]
    # SPEC S14.2, S13.2
    listener, address = listening(provider)
    port = w.CreateIoCompletionPort(listener, None, "listener", 0)
    acceptor = make_socket(provider)
    ov = WSAOVERLAPPED()
    assert not provider.AcceptEx(
        listener, acceptor, bytearray(2 * ADDR), 0, ADDR, ADDR, DWORD(), ov
    )
    client = socket.create_connection(address, timeout=10)
    n, key, got = DWORD(), Box(), Box()
    assert w.GetQueuedCompletionStatus(port, n, key, got, 10_000)
    assert (key.value, got.value) == ("listener", ov)
    client.close()
    w.CloseHandle(port)


def test_connect_ex_connects_a_bound_socket_and_sends_first_data(provider, listener):  # type: ignore[no-untyped-def]
    # SPEC S14.3
    s = make_socket(provider)
    ov = WSAOVERLAPPED(hEvent=w.WSACreateEvent())
    assert not provider.ConnectEx(s, listener.getsockname(), 16, b"first", 5, DWORD(), ov)
    assert w.WSAGetLastError() == w.WSAEINVAL  # not bound yet
    assert provider.WSPBind(s, ("127.0.0.1", 0), None, INT()) == 0
    assert not provider.ConnectEx(s, listener.getsockname(), 16, b"first", 5, DWORD(), ov)
    assert w.WSAGetLastError() == w.WSA_IO_PENDING
    peer, _ = listener.accept()
    peer.settimeout(10)
    wait(ov)
    assert (ov.Internal, ov.InternalHigh) == (0, 5)
    assert recv_exact(peer, 5) == b"first"
    peer.close()


def test_connect_ex_to_a_closed_port_is_refused(provider, refusing_address):  # type: ignore[no-untyped-def]
    # SPEC S14.3, S16.2
    address = refusing_address
    s = make_socket(provider)
    assert provider.WSPBind(s, ("127.0.0.1", 0), None, INT()) == 0
    ov = WSAOVERLAPPED(hEvent=w.WSACreateEvent())
    assert not provider.ConnectEx(s, address, 16, None, 0, DWORD(), ov)
    wait(ov)
    assert ov.Internal == w.STATUS_CONNECTION_REFUSED
    assert w.win32_of(ov.Internal) == w.ERROR_CONNECTION_REFUSED


def test_disconnect_ex_waits_for_the_sends_then_reuse_connects_again(provider, listener):  # type: ignore[no-untyped-def]
    # SPEC S14.4: graceful once the sends before it are done; TF_REUSE_SOCKET lets the
    # same handle go to ConnectEx again.
    s = make_socket(provider)
    assert provider.WSPConnect(s, listener.getsockname(), None, None, None, None, None, INT()) == 0
    first, _ = listener.accept()
    first.settimeout(10)
    sent = WSAOVERLAPPED(hEvent=w.WSACreateEvent())
    rc = provider.WSPSend(s, [WSABUF(7, b"goodbye")], 1, None, 0, sent, None, None, INT())
    assert rc == 0 or w.WSAGetLastError() == w.WSA_IO_PENDING
    ov = WSAOVERLAPPED(hEvent=w.WSACreateEvent())
    assert not provider.DisconnectEx(s, ov, w.TF_REUSE_SOCKET, 0)
    assert w.WSAGetLastError() == w.WSA_IO_PENDING
    wait(ov)
    assert ov.Internal == 0 and sent.Internal == 0
    got = b""
    while chunk := first.recv(100):
        got += chunk
    assert got == b"goodbye"  # every byte, then the FIN
    first.close()
    assert provider.WSPBind(s, ("127.0.0.1", 0), None, INT()) == 0
    again = WSAOVERLAPPED(hEvent=w.WSACreateEvent())
    assert not provider.ConnectEx(s, listener.getsockname(), 16, b"hello", 5, DWORD(), again)
    second, _ = listener.accept()
    second.settimeout(10)
    wait(again)
    assert again.Internal == 0 and recv_exact(second, 5) == b"hello"
    second.close()


def test_disconnect_ex_without_reuse_leaves_a_socket_to_close(provider, listener):  # type: ignore[no-untyped-def]
    # SPEC S14.4
    s = make_socket(provider)
    assert provider.WSPConnect(s, listener.getsockname(), None, None, None, None, None, INT()) == 0
    peer, _ = listener.accept()
    peer.settimeout(10)
    ov = WSAOVERLAPPED(hEvent=w.WSACreateEvent())
    assert not provider.DisconnectEx(s, ov, 0, 0)
    wait(ov)
    assert peer.recv(10) == b""
    err = INT()
    assert provider.WSPSend(s, [WSABUF(1, b"x")], 1, DWORD(), 0, None, None, None, err) == -1
    assert err.value == w.WSAESHUTDOWN
    # A second DisconnectEx succeeds at once, as on Windows (sock.c: test_DisconnectEx).
    assert provider.DisconnectEx(s, WSAOVERLAPPED(), 0, 0)
    peer.close()


def test_cancel_io_ex_aborts_a_pending_accept_ex_and_the_next_one_gets_the_connection(provider):  # type: ignore[no-untyped-def]
    # SPEC S15.1 with S14.2: a cancelled AcceptEx completes aborted once; a connection that
    # arrives afterwards is not lost but goes to the next AcceptEx.
    listener, address = listening(provider)
    first, second = make_socket(provider), make_socket(provider)
    ov = WSAOVERLAPPED(hEvent=w.WSACreateEvent())
    provider.AcceptEx(listener, first, bytearray(2 * ADDR), 0, ADDR, ADDR, DWORD(), ov)
    assert w.CancelIoEx(listener, ov)
    wait(ov)
    assert w.wsa_of(ov.Internal) == w.WSA_OPERATION_ABORTED
    assert not w.CancelIoEx(listener, ov) and w.GetLastError() == w.ERROR_NOT_FOUND
    client = socket.create_connection(address, timeout=10)
    again = WSAOVERLAPPED(hEvent=w.WSACreateEvent())
    provider.AcceptEx(listener, second, bytearray(2 * ADDR), 0, ADDR, ADDR, DWORD(), again)
    wait(again)
    assert again.Internal == 0
    client.sendall(b"ping")
    out = bytearray(4)
    rc = provider.WSPRecv(second, [WSABUF(4, out)], 1, DWORD(), DWORD(), None, None, None, INT())
    assert rc == 0 and out == b"ping"
    client.close()


class _AcceptHook(socket.socket):
    """A listening socket whose next accept() first runs ``hook`` (on the loop's thread,
    inside the provider's accept step)."""

    hook: Any = None

    def accept(self):  # type: ignore[no-untyped-def]
        hook, self.hook = self.hook, None
        if hook is not None:
            hook()
        return super().accept()


@pytest.mark.parametrize("receive", [0, 8])
def test_a_connection_after_cancel_io_ex_goes_to_the_next_accept_ex(provider, receive):  # type: ignore[no-untyped-def]
    # SPEC S15.1, S15.2, S14.2: CancelIoEx on another thread returns before the loop has
    # aborted the AcceptEx; a connection that comes after it returned must not go to that
    # AcceptEx (on Windows it no longer waits), even when the loop's accept step, already
    # running, takes the connection before the abort reaches it.  The step is held there:
    # the accept socket's own accept() cancels the first AcceptEx from another thread and
    # connects a client before it accepts.
    plain = _AcceptHook(socket.AF_INET, socket.SOCK_STREAM)
    plain.bind(("127.0.0.1", 0))
    plain.listen(8)
    listener = provider.adopt(plain, duplicate=False)
    first, second = make_socket(provider), make_socket(provider)
    ov1 = WSAOVERLAPPED(hEvent=w.WSACreateEvent())
    ov2 = WSAOVERLAPPED(hEvent=w.WSACreateEvent())
    clients: list[socket.socket] = []
    cancelled: list[bool] = []

    def elsewhere() -> None:
        cancelled.append(w.CancelIoEx(listener, ov1))  # never waits for the loop (S15.2)
        client = socket.create_connection(plain.getsockname(), timeout=10)
        client.sendall(b"hello, s")  # the first data an AcceptEx with a receive waits for
        clients.append(client)

    def cancel_then_connect() -> None:
        helper = threading.Thread(target=elsewhere)
        helper.start()
        helper.join(10)

    plain.hook = cancel_then_connect
    out1, out2 = bytearray(receive + 2 * ADDR), bytearray(receive + 2 * ADDR)
    provider.AcceptEx(listener, first, out1, receive, ADDR, ADDR, DWORD(), ov1)
    provider.AcceptEx(listener, second, out2, receive, ADDR, ADDR, DWORD(), ov2)
    wait(ov1)
    wait(ov2)
    assert cancelled == [True] and len(clients) == 1
    assert w.wsa_of(ov1.Internal) == w.WSA_OPERATION_ABORTED
    assert ov2.Internal == 0
    assert bytes(out2[:receive]) == b"hello, s"[:receive]
    name = DWORD()
    assert provider.WSPGetPeerName(second, name, None, INT()) == 0
    assert name.value == clients[0].getsockname()
    err = INT()
    assert provider.WSPSend(second, [WSABUF(2, b"ok")], 1, DWORD(), 0, None, None, None, err) == 0
    assert recv_exact(clients[0], 2) == b"ok"  # the client's connection was not reset
    clients[0].close()
    plain.close()


def test_cancel_io_ex_aborts_a_connect_ex_in_progress_once(provider):  # type: ignore[no-untyped-def]
    # SPEC S15.1 with S14.3: a ConnectEx waiting for its connection is cancellable; it
    # completes exactly once, aborted.  (A listener with a full backlog never answers.)
    with unanswering() as nowhere:
        s = make_socket(provider)
        assert provider.WSPBind(s, ("127.0.0.1", 0), None, INT()) == 0
        port = w.CreateIoCompletionPort(w.INVALID_HANDLE_VALUE, None, 0, 0)
        w.CreateIoCompletionPort(s, port, 5, 0)
        ov = WSAOVERLAPPED()
        assert not provider.ConnectEx(s, nowhere, None, None, 0, DWORD(), ov)
        cancelled = w.CancelIoEx(s, ov)
        n, key, box = DWORD(), Box(), Box()
        w.GetQueuedCompletionStatus(port, n, key, box, 10_000)
        assert cancelled and box.value is ov and key.value == 5
        assert w.wsa_of(ov.Internal) == w.WSA_OPERATION_ABORTED
        assert not w.GetQueuedCompletionStatus(port, n, key, box, 0)  # exactly one packet
        w.CloseHandle(port)


def test_a_receive_waiting_at_disconnect_ex_reuse_is_aborted_not_carried_over(provider, listener):  # type: ignore[no-untyped-def]
    # SPEC S14.4, S2.4: a receive posted from another thread that waits for bytes (in the
    # hand-off, not waking the loop) is aborted by DisconnectEx(TF_REUSE_SOCKET) exactly
    # once; the next connection's bytes go to the next receive, not to it.
    s = make_socket(provider)
    assert provider.WSPConnect(s, listener.getsockname(), None, None, None, None, None, INT()) == 0
    first, _ = listener.accept()
    old = WSAOVERLAPPED(hEvent=w.WSACreateEvent())
    old_buf = bytearray(8)
    rc = provider.WSPRecv(s, [WSABUF(8, old_buf)], 1, None, DWORD(0), old, None, None, INT())
    assert rc == w.SOCKET_ERROR and w.WSAGetLastError() == w.WSA_IO_PENDING
    ov = WSAOVERLAPPED(hEvent=w.WSACreateEvent())
    assert not provider.DisconnectEx(s, ov, w.TF_REUSE_SOCKET, 0)
    wait(ov)
    wait(old)
    assert old.Internal == w.STATUS_CANCELLED and old.InternalHigh == 0
    first.close()
    assert provider.WSPBind(s, ("127.0.0.1", 0), None, INT()) == 0
    again = WSAOVERLAPPED(hEvent=w.WSACreateEvent())
    assert not provider.ConnectEx(s, listener.getsockname(), 16, None, 0, DWORD(), again)
    second, _ = listener.accept()
    wait(again)
    new = WSAOVERLAPPED(hEvent=w.WSACreateEvent())
    new_buf = bytearray(8)
    provider.WSPRecv(s, [WSABUF(8, new_buf)], 1, None, DWORD(0), new, None, None, INT())
    second.sendall(b"fresh")
    wait(new)
    assert (new.Internal, new.InternalHigh, bytes(new_buf[:5])) == (0, 5, b"fresh")
    assert old_buf == bytearray(8)
    second.close()


@pytest.mark.parametrize("function", ["AcceptEx", "ConnectEx", "DisconnectEx"])
def test_a_completed_extension_function_is_not_kept_by_its_socket(provider, listener, function):  # type: ignore[no-untyped-def]
    # SPEC S14.2-S14.4: once it completed, nothing of the provider's keeps the operation
    # -- and through it the program's structure -- alive while the socket lives on.  (An
    # accept socket kept its AcceptEx for the connection's life, a ConnectEx or
    # DisconnectEx stayed in its socket's list of operations waiting elsewhere.)
    import gc
    import weakref

    ov = WSAOVERLAPPED(hEvent=w.WSACreateEvent())
    err = INT()
    if function == "AcceptEx":
        server, address = listening(provider)
        s = make_socket(provider)
        assert not provider.AcceptEx(server, s, bytearray(2 * ADDR), 0, ADDR, ADDR, DWORD(), ov)
        peer = socket.create_connection(address, timeout=10)
    else:
        s = make_socket(provider)
        assert provider.WSPBind(s, ("127.0.0.1", 0), None, err) == 0
        connected = WSAOVERLAPPED(hEvent=w.WSACreateEvent()) if function != "ConnectEx" else ov
        assert not provider.ConnectEx(s, listener.getsockname(), 16, None, 0, DWORD(), connected)
        peer, _ = listener.accept()
        wait(connected)
        if function == "DisconnectEx":
            assert not provider.DisconnectEx(s, ov, 0, 0)
    wait(ov)
    assert ov.Internal == 0
    kept = weakref.ref(ov)
    del ov
    if function != "AcceptEx":
        del connected  # (the same structure, for ConnectEx)
    gc.collect()
    assert kept() is None
    peer.close()
    assert provider.WSPCloseSocket(s, err) == 0
    if function == "AcceptEx":
        assert provider.WSPCloseSocket(server, err) == 0
