"""Existing OS sockets (SPEC S16.1): adopt, work through the handle, find by fd."""

from __future__ import annotations

import socket

import pytest

import wsp_async as w
from wsp_async import DWORD, INT, WSABUF, WSAOVERLAPPED

from .conftest import eventually, recv_exact


def send(p: w.Provider, s: int, data: bytes) -> None:
    ov = WSAOVERLAPPED(hEvent=w.WSACreateEvent())
    err = INT()
    rc = p.WSPSend(s, [WSABUF(len(data), data)], 1, None, 0, ov, None, None, err)
    assert rc == 0 or err.value == w.WSA_IO_PENDING, err.value
    assert w.WSAWaitForMultipleEvents(1, [ov.hEvent], False, 10_000, False) == 0
    assert ov.Internal == 0


def recv(p: w.Provider, s: int, size: int) -> bytes:
    buf, got, err = bytearray(size), DWORD(), INT()
    assert p.WSPRecv(s, [WSABUF(size, buf)], 1, got, DWORD(0), None, None, None, err) == 0, (
        err.value
    )
    return bytes(buf[: got.value])


def test_an_adopted_connected_tcp_socket_works_through_its_handle(provider, listener):  # type: ignore[no-untyped-def]
    # SPEC S16.1
    mine = socket.create_connection(listener.getsockname(), timeout=10)
    peer, _ = listener.accept()
    s = provider.adopt(mine)
    send(provider, s, b"adopted")
    assert recv_exact(peer, 7) == b"adopted"
    peer.sendall(b"back")
    assert recv(provider, s, 4) == b"back"
    peer.close()


def test_an_adopted_unix_socketpair_end(provider):  # type: ignore[no-untyped-def]
    # SPEC S16.1: AF_UNIX pairs (the Proactor's self-pipe is one).
    a, b = socket.socketpair()
    s = provider.adopt(a)
    send(provider, s, b"unix")
    b.settimeout(10)
    assert recv_exact(b, 4) == b"unix"
    b.sendall(b"pair")
    assert recv(provider, s, 4) == b"pair"
    b.close()


def test_an_adopted_listener_accepts(provider):  # type: ignore[no-untyped-def]
    # SPEC S16.1: the listening state carries over.
    srv = socket.create_server(("127.0.0.1", 0))
    s = provider.adopt(srv)
    client = socket.create_connection(srv.getsockname(), timeout=10)
    child = provider.WSPAccept(s, None, None, None, None, INT())
    assert child != w.INVALID_SOCKET
    client.sendall(b"hi")
    assert recv(provider, child, 2) == b"hi"
    client.close()


def test_an_adopted_udp_socket_receives(provider):  # type: ignore[no-untyped-def]
    # SPEC S16.1, S11.3
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", 0))
    s = provider.adopt(udp)
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sender.bind(("127.0.0.1", 0))
    buf, got, source, err = bytearray(16), DWORD(), DWORD(), INT()
    ov = WSAOVERLAPPED(hEvent=w.WSACreateEvent())
    rc = provider.WSPRecvFrom(s, [WSABUF(16, buf)], 1, got, DWORD(0), source, None, ov, None, None, err)  # fmt: skip
    assert rc == 0 or err.value == w.WSA_IO_PENDING
    sender.sendto(b"datagram", udp.getsockname())
    assert w.WSAWaitForMultipleEvents(1, [ov.hEvent], False, 10_000, False) == 0
    assert bytes(buf[: ov.InternalHigh]) == b"datagram" and source.value == sender.getsockname()
    sender.close()


def test_a_reused_fd_number_never_reaches_the_old_handle(provider, listener):  # type: ignore[no-untyped-def]
    # SPEC S16.1
    mine = socket.create_connection(listener.getsockname(), timeout=10)
    peer, _ = listener.accept()
    fd = mine.fileno()
    s = provider.adopt(mine)
    assert provider.handle_of_fd(fd) == s
    assert provider.WSPCloseSocket(s, INT()) == 0
    assert eventually(lambda: mine.fileno() == -1)  # the shared object is closed too
    assert provider.handle_of_fd(fd) is None
    again = socket.socket()  # the OS hands out the lowest free number: often the same
    try:
        assert provider.handle_of_fd(again.fileno()) is None
    finally:
        again.close()
        peer.close()


def test_adopting_anything_else_is_refused(provider):  # type: ignore[no-untyped-def]
    # SPEC S16.1
    closed = socket.socket()
    closed.close()
    for thing in (closed, 3, "socket"):
        with pytest.raises(w.WSAError):
            provider.adopt(thing)  # type: ignore[arg-type]
