"""Scatter/gather framing: a header WSABUF and a body WSABUF per message (SPEC S5.1, S5.3).

The header and the body are separate buffers, the WSABUF list is rebuilt (and
discarded) on every call, and the receiving side -- a plain socket -- parses
length-prefixed frames to prove the bytes went out in order, each send whole.
"""

from __future__ import annotations

import socket
import struct
import threading

from wsp_async import (
    AF_INET,
    INT,
    SD_SEND,
    SOCK_STREAM,
    WSA_FLAG_OVERLAPPED,
    WSABUF,
    WSAOVERLAPPED,
    Provider,
    SleepEx,
)

HEADER = struct.Struct("!HI")  # kind, body length


def parse(stream: bytes) -> list[tuple[int, bytes]]:
    frames, pos = [], 0
    while pos < len(stream):
        kind, length = HEADER.unpack_from(stream, pos)
        pos += HEADER.size
        frames.append((kind, stream[pos : pos + length]))
        pos += length
    return frames


def main() -> None:
    server = socket.create_server(("127.0.0.1", 0))
    received = bytearray()

    def read_all() -> None:
        conn, _ = server.accept()
        with conn:
            while data := conn.recv(65536):
                received.extend(data)

    reader = threading.Thread(target=read_all)
    reader.start()
    bodies = [f"frame {i} ".encode() * (i % 40 + 1) for i in range(500)]
    done = [0]
    with Provider() as p:
        err = INT()
        s = p.WSPSocket(AF_INET, SOCK_STREAM, 0, None, 0, WSA_FLAG_OVERLAPPED, err)
        p.WSPConnect(s, server.getsockname(), None, None, None, None, None, err)
        for i, body in enumerate(bodies):
            header = HEADER.pack(i % 3, len(body))
            wsabufs = [WSABUF(len(header), header), WSABUF(len(body), body)]  # transient (S5.1)
            p.WSPSend(
                s,
                wsabufs,
                2,
                None,
                0,
                WSAOVERLAPPED(),
                lambda *a: done.__setitem__(0, done[0] + 1),
                None,
                err,
            )
        while done[0] < len(bodies):
            SleepEx(1000, True)
        p.WSPShutdown(s, SD_SEND, err)
        reader.join(10)
        p.WSPCloseSocket(s, err)
    frames = parse(bytes(received))
    assert frames == [(i % 3, body) for i, body in enumerate(bodies)], "framing broken"
    print(f"{len(frames)} header+body frames parsed intact by a plain-socket peer")


if __name__ == "__main__":
    main()
