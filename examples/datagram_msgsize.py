"""Datagrams and WSAEMSGSIZE, both ways (SPEC S9, S11.2).

Sending more than SO_MAX_MSG_SIZE (65507 bytes over IPv4) fails at once with
WSAEMSGSIZE and sends nothing; receiving a datagram into buffers that are too small
fills them, sets MSG_PARTIAL and completes with WSAEMSGSIZE, and the rest of that
datagram is gone.  The peer is a plain UDP socket.
"""

from __future__ import annotations

import socket

from wsp_async import (
    AF_INET,
    DWORD,
    INT,
    MSG_PARTIAL,
    SO_MAX_MSG_SIZE,
    SOCK_DGRAM,
    SOL_SOCKET,
    STATUS_BUFFER_OVERFLOW,
    WSA_FLAG_OVERLAPPED,
    WSABUF,
    WSAEMSGSIZE,
    WSAOVERLAPPED,
    Provider,
    WSACreateEvent,
    WSAWaitForMultipleEvents,
)


def main() -> None:
    peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    peer.bind(("127.0.0.1", 0))
    with Provider() as p:
        err = INT()
        s = p.WSPSocket(AF_INET, SOCK_DGRAM, 0, None, 0, WSA_FLAG_OVERLAPPED, err)
        p.WSPBind(s, ("127.0.0.1", 0), None, err)
        limit = DWORD()
        p.WSPGetSockOpt(s, SOL_SOCKET, SO_MAX_MSG_SIZE, limit, None, err)
        too_big = b"x" * (limit.value + 1)
        rc = p.WSPSendTo(
            s,
            [WSABUF(len(too_big), too_big)],
            1,
            DWORD(),
            0,
            peer.getsockname(),
            None,
            None,
            None,
            None,
            err,
        )
        assert rc == -1 and err.value == WSAEMSGSIZE
        print(
            f"send of {len(too_big)} bytes (SO_MAX_MSG_SIZE={limit.value}): WSAEMSGSIZE, nothing sent"
        )

        buffer = bytearray(8)
        ov = WSAOVERLAPPED(hEvent=WSACreateEvent())
        sender, flags = DWORD(), DWORD(0)
        p.WSPRecvFrom(s, [WSABUF(8, buffer)], 1, None, flags, sender, None, ov, None, None, err)
        peer.sendto(b"a datagram longer than eight bytes", p.socket_of(s).sock.getsockname())
        WSAWaitForMultipleEvents(1, [ov.hEvent], False, 10_000, False)
        out_flags = DWORD()
        p.WSPGetOverlappedResult(s, ov, DWORD(), False, out_flags, err)
        assert ov.Internal == STATUS_BUFFER_OVERFLOW and out_flags.value & MSG_PARTIAL
        print(
            f"receive into 8 bytes: {bytes(buffer)!r}, status WSAEMSGSIZE, MSG_PARTIAL set, from {sender.value}"
        )
        p.WSPCloseSocket(s, err)


if __name__ == "__main__":
    main()
