"""Echo with event objects: one WSAWaitForMultipleEvents loop serves the send and receive sides (SPEC S7.1).

The client keeps several overlapped sends and one receive in flight, each with its
own event, and waits for whichever completes first -- the classic pre-IOCP Winsock
server loop.  The echo peer is a plain ``socket`` in a thread (independent code).
"""

from __future__ import annotations

import socket
import threading

from wsp_async import (
    AF_INET,
    DWORD,
    INT,
    SD_SEND,
    SOCK_STREAM,
    WSA_FLAG_OVERLAPPED,
    WSA_WAIT_EVENT_0,
    WSABUF,
    WSAOVERLAPPED,
    Provider,
    WSACreateEvent,
    WSAResetEvent,
    WSAWaitForMultipleEvents,
)


def plain_echo(server: socket.socket) -> None:
    conn, _ = server.accept()
    with conn:
        while data := conn.recv(65536):
            conn.sendall(data)


def main() -> None:
    server = socket.create_server(("127.0.0.1", 0))
    threading.Thread(target=plain_echo, args=(server,), daemon=True).start()
    messages = [bytes([65 + i % 26]) * (100 + i) for i in range(200)]
    expected = b"".join(messages)
    with Provider() as p:
        err = INT()
        s = p.WSPSocket(AF_INET, SOCK_STREAM, 0, None, 0, WSA_FLAG_OVERLAPPED, err)
        p.WSPConnect(s, server.getsockname(), None, None, None, None, None, err)
        recv_buffer = bytearray(65536)
        recv_ov = WSAOVERLAPPED(hEvent=WSACreateEvent())
        p.WSPRecv(
            s, [WSABUF(len(recv_buffer), recv_buffer)], 1, None, DWORD(0), recv_ov, None, None, err
        )
        pending_sends: list[WSAOVERLAPPED] = []
        echoed = bytearray()
        next_message = 0
        while len(echoed) < len(expected):
            while next_message < len(messages) and len(pending_sends) < 8:  # keep 8 sends in flight
                data = messages[next_message]
                ov = WSAOVERLAPPED(hEvent=WSACreateEvent())
                p.WSPSend(s, [WSABUF(len(data), data)], 1, None, 0, ov, None, None, err)
                pending_sends.append(ov)
                next_message += 1
            events = [recv_ov.hEvent] + [ov.hEvent for ov in pending_sends]
            index = (
                WSAWaitForMultipleEvents(len(events), events, False, 10_000, False)
                - WSA_WAIT_EVENT_0
            )
            if index == 0:
                assert recv_ov.Internal == 0, f"receive failed: {recv_ov.Internal}"
                echoed += recv_buffer[: recv_ov.InternalHigh]
                WSAResetEvent(recv_ov.hEvent)
                p.WSPRecv(
                    s,
                    [WSABUF(len(recv_buffer), recv_buffer)],
                    1,
                    None,
                    DWORD(0),
                    recv_ov,
                    None,
                    None,
                    err,
                )
            else:
                done = pending_sends.pop(index - 1)
                assert done.Internal == 0, f"send failed: {done.Internal}"
        p.WSPShutdown(s, SD_SEND, err)
        p.WSPCloseSocket(s, err)
    assert bytes(echoed) == expected, "echo mismatch"
    print(
        f"{len(messages)} sends echoed ({len(echoed)} bytes), completions seen through event objects"
    )


if __name__ == "__main__":
    main()
