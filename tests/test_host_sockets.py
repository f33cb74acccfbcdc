"""When an emulated stream socket gets the OS socket it runs on (SPEC S1, S14.2, S14.4).

``WSPSocket`` makes a stream socket's host socket the first time something needs it; an
AcceptEx's accept socket never does (the accepted connection's socket takes its place),
and DisconnectEx's ``TF_REUSE_SOCKET`` leaves the socket without one until it is used
again.  Counted here by the process's open descriptors (sockets in ``/proc/self/fd``), so each test
checks what the kernel holds, not our bookkeeping; peers are plain sockets.
"""

from __future__ import annotations

import functools
import os
import socket
import threading

import pytest

import wsp_async as w
from wsp_async import DWORD, INT, WSABUF, WSAOVERLAPPED

from .conftest import connect, eventually, make_socket, recv_exact

pytestmark = pytest.mark.skipif(
    not os.path.isdir("/proc/self/fd"), reason="counts descriptors in /proc/self/fd"
)

ADDR = 16 + 16  # a sockaddr_in and AcceptEx's 16 bytes more


def _open() -> set[tuple[str, str]]:
    """The process's open socket descriptors, each with the socket it names."""
    found = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            link = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue  # closed meanwhile (the listing's own descriptor, at least)
        if link.startswith("socket:"):
            found.add((fd, link))
    return found


def _listening(provider: w.Provider) -> tuple[int, tuple[str, int]]:
    """An emulated listener on 127.0.0.1 (its host socket made by the bind) and its address."""
    err, name = INT(), w.DWORD()
    listener = make_socket(provider)
    assert provider.WSPBind(listener, ("127.0.0.1", 0), None, err) == 0
    assert provider.WSPListen(listener, 16, err) == 0
    assert provider.WSPGetSockName(listener, name, None, err) == 0
    return listener, name.value


def _none_opened_since(before: set[tuple[str, str]]) -> bool:
    return not _opened_since(before)


def _opened_since(before: set[tuple[str, str]]) -> int:
    """Socket descriptors open now that were not before: what other threads close
    meanwhile (a provider of an earlier test finishing its close) does not count."""
    return len(_open() - before)


@pytest.fixture(autouse=True)
def _family_seen(provider: w.Provider) -> None:
    """The process's first stream socket of a family is made at once (a family the host
    cannot make fails in WSPSocket, as on Windows); make it before anything is counted."""
    err = INT()
    assert provider.WSPCloseSocket(make_socket(provider), err) == 0


def test_a_fresh_stream_socket_holds_no_descriptor_until_it_needs_one(provider):  # type: ignore[no-untyped-def]
    # SPEC S1: twenty sockets made and closed without use open nothing; the first call
    # that needs the OS socket (an option) makes exactly one, which the close releases.
    before = _open()
    fresh = [make_socket(provider) for _ in range(20)]
    assert _opened_since(before) == 0
    err = INT()
    one = fresh[0]
    assert provider.WSPSetSockOpt(one, w.SOL_SOCKET, w.SO_REUSEADDR, INT(1), 4, err) == 0
    assert _opened_since(before) == 1
    got = INT()
    assert provider.WSPGetSockOpt(one, w.SOL_SOCKET, w.SO_REUSEADDR, got, INT(4), err) == 0
    assert got.value
    for s in fresh:
        assert provider.WSPCloseSocket(s, err) == 0
    # (A close from a thread not the loop's may finish behind the call.)
    assert eventually(lambda: _opened_since(before) == 0, 20)
    # Closed, it makes none any more: every call is WSAENOTSOCK.
    rc = provider.WSPSetSockOpt(one, w.SOL_SOCKET, w.SO_REUSEADDR, INT(1), 4, err)
    assert (rc, err.value) == (w.SOCKET_ERROR, w.WSAENOTSOCK)
    assert _opened_since(before) == 0


def test_threads_racing_to_use_a_fresh_socket_make_one_host_socket(provider):  # type: ignore[no-untyped-def]
    # SPEC S1, hostile: eight threads set an option on one fresh socket at once; one OS
    # socket is made, and every call sees it.
    s = make_socket(provider)
    before = _open()
    go = threading.Barrier(8)
    codes: list[tuple[int, int]] = []

    def set_option(value: int) -> None:
        err = INT()
        go.wait()
        rc = provider.WSPSetSockOpt(s, w.SOL_SOCKET, w.SO_KEEPALIVE, INT(value), 4, err)
        codes.append((rc, err.value))

    threads = [threading.Thread(target=set_option, args=(1,)) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert codes == [(0, 0)] * 8
    assert _opened_since(before) == 1
    got, err = INT(), INT()
    assert provider.WSPGetSockOpt(s, w.SOL_SOCKET, w.SO_KEEPALIVE, got, INT(4), err) == 0
    assert got.value == 1
    assert provider.WSPCloseSocket(s, err) == 0
    assert eventually(lambda: _opened_since(before) == 0, 20)


def test_an_accept_socket_takes_the_connection_without_a_socket_of_its_own(provider):  # type: ignore[no-untyped-def]
    # SPEC S14.2: sixteen AcceptEx calls pending open no descriptor beyond the listener's;
    # each connection then adds exactly its own (the accept socket took it over).
    err = INT()
    listener, address = _listening(provider)
    before = _open()
    pending = []
    for _ in range(16):
        acceptor, ov, output = make_socket(provider), WSAOVERLAPPED(), bytearray(2 * ADDR)
        provider.AcceptEx(listener, acceptor, output, 0, ADDR, ADDR, DWORD(), ov)
        pending.append((acceptor, ov))
    assert _opened_since(before) == 0
    clients = [socket.create_connection(address, timeout=10) for _ in range(16)]
    assert provider.wait_until(lambda: all(not ov.pending for _s, ov in pending), 20)
    assert [ov.Internal for _s, ov in pending] == [0] * 16
    # The clients' sockets and the sixteen accepted ones: nothing else.
    assert _opened_since(before) == 32
    for (acceptor, _ov), client in zip(pending, clients, strict=True):
        data = [WSABUF(2, b"hi")]
        assert provider.WSPSend(acceptor, data, 1, DWORD(), 0, None, None, None, err) == 0
        assert recv_exact(client, 2) == b"hi"
        client.close()
        assert provider.WSPCloseSocket(acceptor, err) == 0
    assert provider.WSPCloseSocket(listener, err) == 0


def test_a_socket_disconnect_ex_made_fresh_gets_a_new_host_socket_when_used(provider, listener):  # type: ignore[no-untyped-def]
    # SPEC S14.4: TF_REUSE_SOCKET releases the connection's descriptor and makes none
    # until the socket is used again; then it connects like a new one.
    s, conn = connect(provider, listener)
    host = provider.socket_of(s).host
    assert host is not None
    held = (str(host.fileno()), os.readlink(f"/proc/self/fd/{host.fileno()}"))
    before = _open()
    ov = WSAOVERLAPPED(hEvent=w.WSACreateEvent())
    err = INT()
    rc = provider.DisconnectEx(s, ov, w.TF_REUSE_SOCKET, 0)
    assert rc or w.WSAGetLastError() == w.WSA_IO_PENDING
    assert w.WSAWaitForMultipleEvents(1, [ov.hEvent], False, 20_000, False) == 0
    assert ov.Internal == 0
    assert conn.recv(1) == b""  # the peer saw the close
    assert eventually(lambda: held not in _open(), 20)
    assert _opened_since(before) == 0
    address = listener.getsockname()
    assert provider.WSPConnect(s, address, None, None, None, None, None, err) == 0, err.value
    again, _ = listener.accept()
    with again:
        assert provider.WSPSend(s, [WSABUF(3, b"new")], 1, DWORD(), 0, None, None, None, err) == 0
        again.settimeout(10)
        assert recv_exact(again, 3) == b"new"
    assert provider.WSPCloseSocket(s, err) == 0


def test_threads_using_fresh_sockets_while_they_are_closed_leak_no_descriptor(provider):  # type: ignore[no-untyped-def]
    # SPEC S1, S10.2, hostile: four threads set an option on each of 400 fresh sockets
    # (each call may be the one that makes its host socket) while this thread closes
    # them.  Every call succeeds or finds the socket closed (WSAENOTSOCK), and once the
    # closes are done no descriptor made meanwhile is left open.
    before = _open()
    handles = [make_socket(provider) for _ in range(400)]
    go = threading.Barrier(5)
    codes: set[int] = set()
    lock = threading.Lock()

    def use_all(offset: int) -> None:
        go.wait()
        for i in range(len(handles)):
            s = handles[(i + offset * 100) % len(handles)]
            err = INT()
            rc = provider.WSPSetSockOpt(s, w.SOL_SOCKET, w.SO_KEEPALIVE, INT(1), 4, err)
            with lock:
                codes.add(0 if rc == 0 else err.value)

    threads = [threading.Thread(target=use_all, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    go.wait()
    err = INT()
    for s in handles:
        assert provider.WSPCloseSocket(s, err) == 0
    for t in threads:
        t.join(30)
    assert codes <= {0, w.WSAENOTSOCK}
    assert eventually(lambda: _opened_since(before) == 0, 20), _opened_since(before)


def test_an_accept_socket_recycled_by_disconnect_ex_takes_the_next_connection(provider):  # type: ignore[no-untyped-def]
    # SPEC S14.2, S14.4: the IOCP server's recycling -- AcceptEx into a socket,
    # DisconnectEx(TF_REUSE_SOCKET) when done, AcceptEx into the same socket again.  The
    # recycled socket holds no descriptor while it waits; each connection brings its own.
    err = INT()
    listener, address = _listening(provider)
    acceptor = make_socket(provider)
    for round_ in range(3):
        before = _open()
        ov, output = WSAOVERLAPPED(hEvent=w.WSACreateEvent()), bytearray(2 * ADDR)
        provider.AcceptEx(listener, acceptor, output, 0, ADDR, ADDR, DWORD(), ov)
        assert _opened_since(before) == 0  # waiting, it holds no descriptor
        with socket.create_connection(address, timeout=10) as client:
            assert w.WSAWaitForMultipleEvents(1, [ov.hEvent], False, 20_000, False) == 0
            assert ov.Internal == 0
            assert _opened_since(before) == 2  # the client's and the accepted one
            data = [WSABUF(5, b"round")]
            assert provider.WSPSend(acceptor, data, 1, DWORD(), 0, None, None, None, err) == 0
            assert recv_exact(client, 5) == b"round"
            done = WSAOVERLAPPED(hEvent=w.WSACreateEvent())
            rc = provider.DisconnectEx(acceptor, done, w.TF_REUSE_SOCKET, 0)
            assert rc or w.WSAGetLastError() == w.WSA_IO_PENDING
            assert w.WSAWaitForMultipleEvents(1, [done.hEvent], False, 20_000, False) == 0
            assert done.Internal == 0, round_
            assert client.recv(1) == b""
        assert eventually(functools.partial(_none_opened_since, before), 20)
    assert provider.WSPCloseSocket(acceptor, err) == 0
    assert provider.WSPCloseSocket(listener, err) == 0
