"""Echo server and client driven entirely by completion routines (SPEC S6).

The server is a state machine in the IOCP/completion-routine style: each receive's
routine posts the send of what arrived, and each send's routine posts the next
receive.  Server and client each run in a plain thread that sits in an alertable
``SleepEx`` loop, which is where their routines run.  The client is importable
(``echo_client``) so that other code can drive it through Winsock errors.
"""

from __future__ import annotations

import threading

from wsp_async import (
    AF_INET,
    DWORD,
    INT,
    INVALID_SOCKET,
    SD_SEND,
    SOCK_STREAM,
    SOCKET_ERROR,
    WSA_FLAG_OVERLAPPED,
    WSA_IO_PENDING,
    WSABUF,
    WSAOVERLAPPED,
    Provider,
    SleepEx,
    WSAError,
)


class EchoConnection:
    """One accepted connection: receive -> (routine) send -> (routine) receive ..."""

    def __init__(self, p: Provider, s: int) -> None:
        self.p, self.s = p, s
        self.buffer = bytearray(4096)
        self.closed = threading.Event()
        self.receive()

    def receive(self) -> None:
        err = INT()
        rc = self.p.WSPRecv(
            self.s,
            [WSABUF(len(self.buffer), self.buffer)],
            1,
            None,
            DWORD(0),
            WSAOVERLAPPED(),
            self.received,
            None,
            err,
        )
        if rc == SOCKET_ERROR and err.value != WSA_IO_PENDING:
            self.close()

    def received(self, error: int, n: int, ov: WSAOVERLAPPED, flags: int) -> None:
        if error or n == 0:  # reset, or the client half-closed: we are done
            self.close()
            return
        data = bytes(self.buffer[:n])
        err = INT()
        rc = self.p.WSPSend(
            self.s, [WSABUF(n, data)], 1, None, 0, WSAOVERLAPPED(), self.sent, None, err
        )
        if rc == SOCKET_ERROR and err.value != WSA_IO_PENDING:
            self.close()

    def sent(self, error: int, n: int, ov: WSAOVERLAPPED, flags: int) -> None:
        if error:
            self.close()
        else:
            self.receive()

    def close(self) -> None:
        self.p.WSPShutdown(self.s, SD_SEND, INT())
        self.p.WSPCloseSocket(self.s, INT())
        self.closed.set()


def echo_server(
    p: Provider, ready: threading.Event, address: list[tuple[str, int]], stop: threading.Event
) -> None:
    """Accept one connection and echo it, running its routines in this thread."""
    err = INT()
    ls = p.WSPSocket(AF_INET, SOCK_STREAM, 0, None, 0, WSA_FLAG_OVERLAPPED, err)
    p.WSPBind(ls, ("127.0.0.1", 0), None, err)
    p.WSPListen(ls, 8, err)
    address.append(p.socket_of(ls).sock.getsockname())
    ready.set()
    s = p.WSPAccept(ls, None, None, None, None, err)
    p.WSPCloseSocket(ls, INT())
    if s == INVALID_SOCKET:
        return
    conn = EchoConnection(p, s)
    while not conn.closed.is_set() and not stop.is_set():
        SleepEx(100, True)  # alertable: this is where the routines run


def echo_client(p: Provider, address: tuple[str, int], messages: list[bytes]) -> bytes:
    """Send each message with a routine, read the echo back, return everything echoed.

    Raises WSAError with the Winsock code of the first failure (connect, send or receive).
    """
    err = INT()
    s = p.WSPSocket(AF_INET, SOCK_STREAM, 0, None, 0, WSA_FLAG_OVERLAPPED, err)
    if s == INVALID_SOCKET or p.WSPConnect(s, address, None, None, None, None, None, err):
        raise WSAError(err.value)
    failures: list[int] = []
    sent = [0]

    def on_sent(error: int, n: int, ov: WSAOVERLAPPED, flags: int) -> None:
        if error:
            failures.append(error)
        sent[0] += 1

    try:
        for message in messages:
            rc = p.WSPSend(
                s, [WSABUF(len(message), message)], 1, None, 0, WSAOVERLAPPED(), on_sent, None, err
            )
            if rc == SOCKET_ERROR and err.value != WSA_IO_PENDING:
                raise WSAError(err.value)
        while sent[0] < len(messages):
            SleepEx(1000, True)
        if failures:
            raise WSAError(failures[0])
        p.WSPShutdown(s, SD_SEND, err)
        echoed = bytearray()
        buffer = bytearray(4096)
        while True:
            got = DWORD()
            if p.WSPRecv(s, [WSABUF(4096, buffer)], 1, got, DWORD(0), None, None, None, err):
                raise WSAError(err.value)
            if got.value == 0:
                return bytes(echoed)
            echoed += buffer[: got.value]
    finally:
        p.WSPCloseSocket(s, INT())


def main() -> None:
    messages = [f"message {i}\n".encode() * (i + 1) for i in range(50)]
    with Provider() as p:
        ready, stop, address = threading.Event(), threading.Event(), []
        server = threading.Thread(target=echo_server, args=(p, ready, address, stop))
        server.start()
        ready.wait(10)
        echoed = echo_client(p, address[0], messages)
        stop.set()
        server.join(10)
    assert echoed == b"".join(messages), "echo mismatch"
    print(f"echoed {len(echoed)} bytes in {len(messages)} messages through completion routines")


if __name__ == "__main__":
    main()
