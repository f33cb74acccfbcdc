"""One overlapped send through each completion mechanism, to a plain loopback server.

Shows the S2 return protocol (0 = completed at once, SOCKET_ERROR + WSA_IO_PENDING =
completes later) and the three ways to hear of the completion: a completion routine
delivered in an alertable wait, an event object, and WSPGetOverlappedResult.
"""

import socket

from wsp_async import (
    AF_INET,
    DWORD,
    INT,
    SOCK_STREAM,
    WSA_FLAG_OVERLAPPED,
    WSA_IO_PENDING,
    WSABUF,
    WSAOVERLAPPED,
    Provider,
    SleepEx,
    WSACreateEvent,
    WSAWaitForMultipleEvents,
)

server = socket.create_server(("127.0.0.1", 0))

with Provider() as p:  # its own I/O loop (uvloop when available) in a daemon thread
    err = INT()
    s = p.WSPSocket(AF_INET, SOCK_STREAM, 0, None, 0, WSA_FLAG_OVERLAPPED, err)
    p.WSPConnect(s, server.getsockname(), None, None, None, None, None, err)
    peer, _ = server.accept()

    # 1. Completion routine: runs on this thread, inside an alertable wait (S6).
    def routine(dwError, cbTransferred, lpOverlapped, dwFlags):
        print("routine:", dwError, cbTransferred, "context:", lpOverlapped.hEvent)

    ov = WSAOVERLAPPED(hEvent="any context")  # hEvent is ignored with a routine (S6.6)
    rc = p.WSPSend(
        s, [WSABUF(6, b"header"), WSABUF(4, b"body")], 2, None, 0, ov, routine, None, err
    )
    assert rc == 0 or err.value == WSA_IO_PENDING
    SleepEx(5000, True)  # returns WAIT_IO_COMPLETION once the routine ran

    # 2. Event object: set when the send completes (S7.1).
    ov = WSAOVERLAPPED(hEvent=WSACreateEvent())
    p.WSPSend(s, [WSABUF(5, b"event")], 1, None, 0, ov, None, None, err)
    WSAWaitForMultipleEvents(1, [ov.hEvent], False, 5000, False)
    print("event:", ov.Internal, ov.InternalHigh)

    # 3. WSPGetOverlappedResult: poll (fWait=False) or wait (fWait=True) (S7.2).
    ov = WSAOVERLAPPED()
    p.WSPSend(s, [WSABUF(4, b"poll")], 1, None, 0, ov, None, None, err)
    sent, flags = DWORD(), DWORD()
    ok = p.WSPGetOverlappedResult(s, ov, sent, True, flags, err)
    print("result:", ok, sent.value)

    p.WSPCloseSocket(s, err)
    print("peer got:", peer.recv(100))
