"""What the application sees when it shuts down or closes with sends still pending (SPEC S10.1, S10.2).

With a peer that is not reading, 64 sends of 64 KiB pile up.  ``WSPShutdown(SD_SEND)``
lets them all go out and complete normally before the FIN; ``WSPCloseSocket`` instead
completes everything not yet consumed with ``WSA_OPERATION_ABORTED`` -- each exactly once.
"""

from __future__ import annotations

import socket
import threading

from wsp_async import (
    AF_INET,
    INT,
    SD_SEND,
    SOCK_STREAM,
    STATUS_CANCELLED,
    WSA_FLAG_OVERLAPPED,
    WSABUF,
    WSAOVERLAPPED,
    Provider,
    WSACreateEvent,
    WSAWaitForMultipleEvents,
)

CHUNK = b"s" * 65536


def post_many(p: Provider, s: int) -> list[WSAOVERLAPPED]:
    ovs = [WSAOVERLAPPED(hEvent=WSACreateEvent()) for _ in range(64)]
    for ov in ovs:
        p.WSPSend(s, [WSABUF(len(CHUNK), CHUNK)], 1, None, 0, ov, None, None, INT())
    return ovs


def wait(ovs: list[WSAOVERLAPPED]) -> dict[str, int]:
    counts = {"ok": 0, "aborted": 0}
    for ov in ovs:
        WSAWaitForMultipleEvents(1, [ov.hEvent], False, 30_000, False)
        counts[
            "ok"
            if ov.Internal == 0
            else "aborted"
            if ov.Internal == STATUS_CANCELLED
            else str(ov.Internal)
        ] += 1
    return counts


def main() -> None:
    server = socket.create_server(("127.0.0.1", 0))
    with Provider() as p:
        err = INT()
        # 1. Shutdown: every posted send still completes, then the peer sees EOF.
        s = p.WSPSocket(AF_INET, SOCK_STREAM, 0, None, 0, WSA_FLAG_OVERLAPPED, err)
        p.WSPConnect(s, server.getsockname(), None, None, None, None, None, err)
        peer, _ = server.accept()
        peer.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        ovs = post_many(p, s)
        p.WSPShutdown(s, SD_SEND, err)
        got = bytearray()
        while data := peer.recv(1 << 20):
            got += data
        print(f"shutdown: peer read {len(got)} bytes then EOF; completions {wait(ovs)}")
        p.WSPCloseSocket(s, err)
        peer.close()

        # 2. Close: what was not consumed is aborted, exactly once each.
        s = p.WSPSocket(AF_INET, SOCK_STREAM, 0, None, 0, WSA_FLAG_OVERLAPPED, err)
        p.WSPConnect(s, server.getsockname(), None, None, None, None, None, err)
        peer, _ = server.accept()
        peer.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        # A small kernel send buffer too, so that sends pile up behind a slow peer.
        p.socket_of(s).sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 65536)
        ovs = post_many(p, s)
        p.WSPCloseSocket(s, err)
        counts = wait(ovs)
        print(f"close: completions {counts} (sum {sum(counts.values())} of 64)")
        assert sum(counts.values()) == 64 and counts["aborted"] > 0
        threading.Thread(target=lambda: peer.recv(1 << 20), daemon=True).start()


if __name__ == "__main__":
    main()
