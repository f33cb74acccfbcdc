"""A ConnectEx client (SPEC S14.3): connect and send the first request in one call.

The client binds its socket (ConnectEx wants a bound one), associates it with a
completion port, and posts ``ConnectEx`` carrying the first request; the packet
says both "connected" and "request sent".  Then it receives the reply, posts the
next request with ``WSPSend``, and so on, every step one packet on the port.  The
server is a plain ``socket`` in a thread (independent code) that answers each line
with its upper-case copy.
"""

from __future__ import annotations

import socket
import threading

from wsp_async import (
    AF_INET,
    DWORD,
    INT,
    INVALID_HANDLE_VALUE,
    SOCK_STREAM,
    WSA_FLAG_OVERLAPPED,
    WSA_IO_PENDING,
    WSABUF,
    WSAOVERLAPPED,
    CloseHandle,
    CreateIoCompletionPort,
    GetQueuedCompletionStatus,
    Provider,
    WSAGetLastError,
)

REQUESTS = [b"hello\n", b"completion ports\n", b"connectex\n"]


class Box:
    value: object = None


def serve(server: socket.socket) -> None:
    conn, _ = server.accept()
    with conn, conn.makefile("rb") as lines:
        for line in lines:
            conn.sendall(line.upper())


def wait(port: int) -> tuple[int, object]:
    """One packet: its byte count and structure (raises on a failed operation)."""
    n, key, ov = DWORD(), Box(), Box()
    if not GetQueuedCompletionStatus(port, n, key, ov, 10_000):
        raise OSError(WSAGetLastError(), "operation failed")
    return n.value, ov.value  # type: ignore[return-value]


def main() -> None:
    server = socket.create_server(("127.0.0.1", 0))
    threading.Thread(target=serve, args=(server,), daemon=True).start()
    with Provider() as p:
        err = INT()
        s = p.WSPSocket(AF_INET, SOCK_STREAM, 0, None, 0, WSA_FLAG_OVERLAPPED, err)
        assert p.WSPBind(s, ("127.0.0.1", 0), None, err) == 0
        port = CreateIoCompletionPort(INVALID_HANDLE_VALUE, None, 0, 1)
        assert CreateIoCompletionPort(s, port, s, 0) == port

        connect_ov = WSAOVERLAPPED()
        first = REQUESTS[0]
        ok = p.ConnectEx(s, server.getsockname(), None, first, len(first), None, connect_ov)
        assert ok or WSAGetLastError() == WSA_IO_PENDING
        sent, which = wait(port)
        assert which is connect_ov and sent == len(first)
        print(f"ConnectEx: connected and sent {sent} bytes in one operation")

        buffer = bytearray(4096)
        for i, request in enumerate(REQUESTS):
            if i:
                send_ov = WSAOVERLAPPED()
                p.WSPSend(s, [WSABUF(len(request), request)], 1, None, 0, send_ov, None, None, err)
                assert wait(port)[1] is send_ov
            reply = b""
            while not reply.endswith(b"\n"):
                recv_ov = WSAOVERLAPPED()
                view = memoryview(buffer)[len(reply) :]
                p.WSPRecv(s, [WSABUF(len(view), view)], 1, None, DWORD(0), recv_ov, None, None, err)
                n, _ov = wait(port)
                reply = bytes(buffer[: len(reply) + n])
            assert reply == request.upper(), reply
            print(f"reply: {reply.decode().strip()}")
        p.WSPCloseSocket(s, err)
        CloseHandle(port)
    server.close()


if __name__ == "__main__":
    main()
