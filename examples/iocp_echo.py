"""An IOCP echo server in the classic shape: worker threads on one completion port (SPEC S13).

Each accepted connection is associated with the port, its context travelling as the
completion key; the workers loop on ``GetQueuedCompletionStatus`` and, for every
packet, either post the echo of what was received or post the next receive.  The
clients are plain ``socket`` objects in threads (independent code), and each checks
that it gets its own bytes back, in order.

Connections come in through ``AcceptEx`` (S14.2), pre-posted on the listening socket,
whose packets reach the same port under the listener's own key: the worker that gets
one associates the new socket with the port and posts the next ``AcceptEx`` in its
place, so a few are always waiting.
"""

from __future__ import annotations

import socket
import threading

import attrs

from wsp_async import (
    AF_INET,
    DWORD,
    INFINITE,
    INT,
    INVALID_HANDLE_VALUE,
    INVALID_SOCKET,
    SOCK_STREAM,
    SOCKET_ERROR,
    WSA_FLAG_OVERLAPPED,
    WSA_IO_PENDING,
    WSABUF,
    WSAOVERLAPPED,
    CloseHandle,
    CreateIoCompletionPort,
    GetQueuedCompletionStatus,
    PostQueuedCompletionStatus,
    Provider,
    WSAGetLastError,
)

CLIENTS = 8
MESSAGES = 50
WORKERS = 3
PRE_POSTED = 2
ADDRESS = 16 + 16  # sizeof(SOCKADDR_IN) + 16: one AcceptEx address block


@attrs.define(eq=False)
class Connection:
    """The per-connection context: the completion key of its socket."""

    handle: int
    buffer: bytearray = attrs.field(factory=lambda: bytearray(4096))
    recv_ov: WSAOVERLAPPED = attrs.field(factory=WSAOVERLAPPED)
    send_ov: WSAOVERLAPPED = attrs.field(factory=WSAOVERLAPPED)


@attrs.define(eq=False)
class Accepting:
    """One pre-posted AcceptEx: its accept socket, buffer and structure."""

    handle: int
    output: bytearray = attrs.field(factory=lambda: bytearray(2 * ADDRESS))
    ov: WSAOVERLAPPED = attrs.field(factory=WSAOVERLAPPED)


@attrs.define(eq=False)
class Listening:
    """The listener's context (its completion key): the AcceptEx calls pending on it."""

    handle: int
    pending: dict[int, Accepting] = attrs.field(factory=dict)  # id(ov) -> AcceptEx
    accepted: int = 0


class Box:
    value: object = None


def post_accept(p: Provider, listening: Listening) -> None:
    err = INT()
    s = p.WSPSocket(AF_INET, SOCK_STREAM, 0, None, 0, WSA_FLAG_OVERLAPPED, err)
    assert s != INVALID_SOCKET, err.value
    accept = Accepting(s)
    listening.pending[id(accept.ov)] = accept
    ok = p.AcceptEx(listening.handle, s, accept.output, 0, ADDRESS, ADDRESS, None, accept.ov)
    assert ok or WSAGetLastError() == WSA_IO_PENDING


def post_recv(p: Provider, conn: Connection) -> None:
    err = INT()
    rc = p.WSPRecv(conn.handle, [WSABUF(4096, conn.buffer)], 1, None, DWORD(0), conn.recv_ov, None, None, err)  # fmt: skip
    assert rc == 0 or err.value == WSA_IO_PENDING, err.value


def worker(p: Provider, port: int, served: list[int]) -> None:
    n, key, ov = DWORD(), Box(), Box()
    while True:
        ok = GetQueuedCompletionStatus(port, n, key, ov, INFINITE)
        conn = key.value
        if conn is None:  # the shutdown packet
            return
        if isinstance(conn, Listening):
            accepted = conn.pending.pop(id(ov.value))
            if not ok:  # the listener closed: its AcceptEx calls are aborted
                p.WSPCloseSocket(accepted.handle, INT())
                continue
            new = Connection(accepted.handle)
            assert CreateIoCompletionPort(new.handle, port, new, 0) == port
            post_recv(p, new)
            conn.accepted += 1
            if conn.accepted + len(conn.pending) < CLIENTS:
                post_accept(p, conn)  # keep AcceptEx calls waiting
            continue
        assert isinstance(conn, Connection)
        if not ok or (ov.value is conn.recv_ov and n.value == 0):
            p.WSPCloseSocket(conn.handle, INT())  # the client is done (or gone)
            served.append(1)
            continue
        if ov.value is conn.recv_ov:
            data = bytes(conn.buffer[: n.value])  # the echo owns its bytes until it completes
            err = INT()
            rc = p.WSPSend(conn.handle, [WSABUF(len(data), data)], 1, None, 0, conn.send_ov, None, None, err)  # fmt: skip
            assert rc == 0 or err.value == WSA_IO_PENDING, err.value
        else:  # the echo went out: receive the next message
            post_recv(p, conn)


def client(address: tuple[str, int], index: int, failures: list[str]) -> None:
    with socket.create_connection(address, timeout=30) as sock:
        for i in range(MESSAGES):
            message = f"client {index} message {i};".encode()
            sock.sendall(message)
            got = b""
            while len(got) < len(message):
                got += sock.recv(4096)
            if got != message:
                failures.append(f"{index}/{i}: {got!r}")


def main() -> None:
    with Provider() as p:
        err = INT()
        listener = p.WSPSocket(AF_INET, SOCK_STREAM, 0, None, 0, WSA_FLAG_OVERLAPPED, err)
        assert p.WSPBind(listener, ("127.0.0.1", 0), None, err) == 0
        assert p.WSPListen(listener, CLIENTS, err) == 0
        name = DWORD()
        assert p.WSPGetSockName(listener, name, None, err) == 0
        port = CreateIoCompletionPort(INVALID_HANDLE_VALUE, None, 0, WORKERS)
        assert port
        served: list[int] = []
        workers = [threading.Thread(target=worker, args=(p, port, served)) for _ in range(WORKERS)]
        for t in workers:
            t.start()

        listening = Listening(listener)
        assert CreateIoCompletionPort(listener, port, listening, 0) == port
        for _ in range(PRE_POSTED):
            post_accept(p, listening)
        failures: list[str] = []
        clients = [
            threading.Thread(target=client, args=(name.value, i, failures)) for i in range(CLIENTS)
        ]
        for t in clients:
            t.start()
        for t in clients:
            t.join(60)
        while len(served) < CLIENTS and any(t.is_alive() for t in workers):
            threading.Event().wait(0.01)
        for _ in workers:
            PostQueuedCompletionStatus(port, 0, None, None)  # one shutdown packet each
        for t in workers:
            t.join(30)
        assert p.WSPCloseSocket(listener, err) != SOCKET_ERROR
        CloseHandle(port)
        assert not failures, failures
        print(
            f"{WORKERS} workers on one port echoed {CLIENTS * MESSAGES} messages "
            f"for {CLIENTS} clients accepted by AcceptEx, each in order"
        )


if __name__ == "__main__":
    main()
