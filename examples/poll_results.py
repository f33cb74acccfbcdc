"""Polling with WSPGetOverlappedResult (SPEC S7.2): no routine, no event, just ask.

Posts a burst of large sends to a peer that reads slowly, then polls each one with
``fWait=False`` (``WSA_IO_INCOMPLETE`` while pending) and finally waits for the
last with ``fWait=True``.
"""

from __future__ import annotations

import socket
import threading
import time

from wsp_async import (
    AF_INET,
    DWORD,
    INT,
    SOCK_STREAM,
    WSA_FLAG_OVERLAPPED,
    WSA_IO_INCOMPLETE,
    WSABUF,
    WSAOVERLAPPED,
    Provider,
)


def slow_reader(server: socket.socket, total: list[int]) -> None:
    conn, _ = server.accept()
    with conn:
        while data := conn.recv(65536):
            total[0] += len(data)
            time.sleep(0.001)  # a slow peer, so that sends stay pending for a while


def main() -> None:
    server = socket.create_server(("127.0.0.1", 0))
    total = [0]
    reader = threading.Thread(target=slow_reader, args=(server, total))
    reader.start()
    chunk = b"p" * 65536
    with Provider() as p:
        err = INT()
        s = p.WSPSocket(AF_INET, SOCK_STREAM, 0, None, 0, WSA_FLAG_OVERLAPPED, err)
        p.WSPConnect(s, server.getsockname(), None, None, None, None, None, err)
        ovs = [WSAOVERLAPPED() for _ in range(64)]
        for ov in ovs:
            p.WSPSend(s, [WSABUF(len(chunk), chunk)], 1, None, 0, ov, None, None, err)
        incomplete_polls = 0
        n, flags = DWORD(), DWORD()
        for ov in ovs[:-1]:
            while not p.WSPGetOverlappedResult(s, ov, n, False, flags, err):
                assert err.value == WSA_IO_INCOMPLETE, err.value
                incomplete_polls += 1
                time.sleep(0.0005)
            assert n.value == len(chunk)
        assert p.WSPGetOverlappedResult(s, ovs[-1], n, True, flags, err)  # fWait=True blocks
        p.WSPCloseSocket(s, err)
    reader.join(30)
    print(
        f"64 sends of 64 KiB complete; {incomplete_polls} polls answered WSA_IO_INCOMPLETE; "
        f"peer read {total[0]} bytes"
    )


if __name__ == "__main__":
    main()
