"""What a cancel asked on another thread takes: what was pending when the call returned,
and nothing that comes after it (SPEC S15.1, S15.2).

The provider carries such a cancel out on its loop later, never waiting for it (S15.2).
On Windows the cancel is over when ``CancelIoEx`` returns, so two things must hold in
between: an operation posted after the call is not cancelled by it, and bytes, the end of
the stream or room in the send buffer that come after it never complete the operation it
cancelled.  Each test holds the provider's loop (``loop_held``) while the program cancels
and goes on, so the loop meets both only after the call returned, on either loop kind;
the peers are plain sockets.
"""

from __future__ import annotations

import collections
import socket
import threading

import pytest

import wsp_async as w
from wsp_async import DWORD, INT, WSABUF, WSAOVERLAPPED

from .conftest import connect, eventually, loop_held, recv_exact, run_in_loop, stall


class _Box:
    """An out parameter for GetQueuedCompletionStatus's key and structure."""

    def __init__(self) -> None:
        self.value: object = None


def _receive(
    p: w.Provider, s: int, size: int = 8, must_pend: bool = True
) -> tuple[WSAOVERLAPPED, bytearray]:
    """Post an overlapped receive with an event; it must pend (or start, at least)."""
    buf = bytearray(size)
    ov = WSAOVERLAPPED(hEvent=w.WSACreateEvent())
    err = INT()
    rc = p.WSPRecv(s, [WSABUF(size, buf)], 1, None, DWORD(0), ov, None, None, err)
    if must_pend or rc:
        assert (rc, err.value) == (w.SOCKET_ERROR, w.WSA_IO_PENDING)
    return ov, buf


def _done(ov: WSAOVERLAPPED) -> tuple[int, int]:
    assert w.WSAWaitForMultipleEvents(1, [ov.hEvent], False, 20_000, False) == 0
    return ov.Internal, ov.InternalHigh


@pytest.mark.parametrize("cancel", ["CancelIoEx", "CancelIo"])
def test_a_receive_posted_after_the_cancel_returned_is_not_cancelled(provider, listener, cancel):  # type: ignore[no-untyped-def]
    # SPEC S15.1, S15.2: a program that cancels everything and posts its next receive
    # gets that receive; only the earlier one is aborted.  CancelIoEx's earlier receive
    # waits in the engine (posted on the loop's thread); CancelIo's, this thread's own,
    # in the hand-off.
    s, conn = connect(provider, listener)
    if cancel == "CancelIoEx":
        first, _ = run_in_loop(provider.loop, _receive, provider, s)
    else:
        first, _ = _receive(provider, s)
    with loop_held(provider.loop):
        assert (w.CancelIoEx(s, None) if cancel == "CancelIoEx" else w.CancelIo(s)) is True
        second, buf = _receive(provider, s)
    assert _done(first) == (w.STATUS_CANCELLED, 0)
    conn.sendall(b"next")
    assert _done(second) == (0, 4) and bytes(buf[:4]) == b"next"


def test_a_cancel_that_found_nothing_takes_no_later_receive(provider, listener):  # type: ignore[no-untyped-def]
    # SPEC S15.1: nothing pending -- False with ERROR_NOT_FOUND, and nothing recorded
    # that would abort the receive posted next.
    s, conn = connect(provider, listener)
    with loop_held(provider.loop):
        assert not w.CancelIoEx(s, None) and w.GetLastError() == w.ERROR_NOT_FOUND
        ov, buf = _receive(provider, s)
    conn.sendall(b"x")
    assert _done(ov) == (0, 1) and buf[:1] == b"x"


def test_a_blocking_receive_after_the_cancel_returned_is_not_interrupted(provider, listener):  # type: ignore[no-untyped-def]
    # SPEC S15.1, S15.2: the cancelling thread's own blocking call, made after its
    # cancel returned, is not the cancel's to take (it would fail WSAEINTR).
    s, conn = connect(provider, listener)
    first, _ = run_in_loop(provider.loop, _receive, provider, s)
    adapter = provider.socket_of(s)
    got: list[object] = []

    def cancel_then_receive() -> None:
        got.append(w.CancelIoEx(s, None))
        buf, err, count = bytearray(8), INT(), DWORD(0)
        rc = provider.WSPRecv(s, [WSABUF(8, buf)], 1, count, DWORD(0), None, None, None, err)
        got.append((rc, err.value, bytes(buf[: count.value])))

    with loop_held(provider.loop):
        t = threading.Thread(target=cancel_then_receive)
        t.start()
        # The blocking receive waits in the hand-off, behind the recorded cancel.
        assert eventually(lambda: bool(got) and bool(adapter.handoff))
    assert _done(first) == (w.STATUS_CANCELLED, 0)
    conn.sendall(b"late")
    t.join(20)
    assert got == [True, (0, 0, b"late")]


@pytest.mark.parametrize("comes", ["bytes", "end of stream"])
def test_what_comes_after_the_cancel_goes_to_the_next_receive(provider, listener, comes):  # type: ignore[no-untyped-def]
    # SPEC S15.1, S15.2: bytes (or the peer's FIN) sent after CancelIoEx returned: the
    # cancelled receive is aborted, and what came waits for the next receive.  (On
    # uvloop the socket's readiness is handled before callbacks scheduled meanwhile,
    # so without the cancel being carried out first the bytes would complete it.)
    s, conn = connect(provider, listener)
    ov, _ = run_in_loop(provider.loop, _receive, provider, s)
    with loop_held(provider.loop):
        assert w.CancelIoEx(s, ov)
        if comes == "bytes":
            conn.sendall(b"after")
        else:
            conn.shutdown(socket.SHUT_WR)
    assert _done(ov) == (w.STATUS_CANCELLED, 0)
    nxt, buf = WSAOVERLAPPED(hEvent=w.WSACreateEvent()), bytearray(8)
    err = INT()
    rc = provider.WSPRecv(s, [WSABUF(8, buf)], 1, None, DWORD(0), nxt, None, None, err)
    assert rc == 0 or err.value == w.WSA_IO_PENDING
    expected = (0, 5) if comes == "bytes" else (0, 0)
    assert _done(nxt) == expected
    assert bytes(buf[: expected[1]]) == b"after"[: expected[1]]


def test_room_after_the_cancel_never_sends_the_cancelled_send(provider, listener):  # type: ignore[no-untyped-def]
    # SPEC S15.1, S15.2, S10.3: a send waiting for room in the emulated send buffer is
    # cancelled from another thread; room comes after that (the peer reads while the
    # loop is held, and the loop's first write empties what the transport held).  The
    # send is aborted and its bytes never go out; the bytes before it all arrive.
    for _attempt in range(5):
        if _room_after_a_cancel(provider, listener):
            return
    pytest.fail("the transport never held more than the room of one send when held")


def _room_after_a_cancel(p: w.Provider, listener: socket.socket) -> bool:
    """One try on a fresh connection; False when the moment was missed (the loop had
    written everything before the hold took it: then nothing is cancelled)."""
    s, conn = connect(p, listener)
    stall(p, s, conn)
    err = INT()
    assert p.WSPSetSockOpt(s, w.SOL_SOCKET, w.SO_SNDBUF, INT(512), 4, err) == 0
    adapter = p.socket_of(s)
    big = b"a" * (4 << 20)
    first = WSAOVERLAPPED(hEvent=w.WSACreateEvent())
    cancelled = WSAOVERLAPPED(hEvent=w.WSACreateEvent())

    def post_both() -> tuple[int, int]:
        a = p.WSPSend(s, [WSABUF(len(big), big)], 1, None, 0, first, None, None, err)
        b = p.WSPSend(s, [WSABUF(2, b"zz")], 1, None, 0, cancelled, None, None, err)
        return a, b

    assert run_in_loop(p.loop, post_both) == (w.SOCKET_ERROR, w.SOCKET_ERROR)
    # Read, the loop running, until the transport holds less than the kernel takes at
    # once (and, unless the loop was quicker than the hold, more than the 512 bytes of
    # room that would let the send go).
    taken = 0
    while adapter.transport.get_write_buffer_size() > 32 << 10:
        taken += len(conn.recv(4 << 10))
    with loop_held(p.loop):
        held = adapter.transport.get_write_buffer_size()
        if held > 512:
            assert w.CancelIoEx(s, cancelled)
        # What the kernel holds; with it read, the loop's next write takes the rest.
        taken += len(recv_exact(conn, len(big) - taken - held))
    assert recv_exact(conn, held) == big[:held]
    assert _done(first) == (0, len(big))
    if held <= 512:
        assert _done(cancelled) == (0, 2) and recv_exact(conn, 2) == b"zz"
        p.WSPCloseSocket(s, err)
        return False
    assert _done(cancelled) == (w.STATUS_CANCELLED, 0)
    rc = p.WSPSend(s, [WSABUF(1, b"!")], 1, DWORD(0), 0, None, None, None, err)
    assert rc == 0, err.value
    assert recv_exact(conn, 1) == b"!"  # "zz" never went out
    return True


def test_threads_cancelling_and_posting_again_under_a_stream_of_bytes(provider, listener):  # type: ignore[no-untyped-def]
    # SPEC S15.1, S15.2, S2.4, S13.2, hostile: four threads each post receives, cancel
    # their own (CancelIo, or CancelIoEx on one structure) and post again, while the
    # peer sends a byte at a time.  Every receive completes exactly once (one packet
    # each in the socket's port); one is aborted only by a cancel its thread made after
    # posting it; and no byte is lost or read twice.
    s, conn = connect(provider, listener)
    port = w.CreateIoCompletionPort(s, None, "k", 0)
    rounds, total = 150, 4000
    go = threading.Barrier(6)
    timelines: list[list[tuple[str, WSAOVERLAPPED | None]]] = []

    def worker() -> None:
        mine: list[tuple[str, WSAOVERLAPPED | None]] = []
        timelines.append(mine)
        go.wait()
        for i in range(rounds):
            ov, _ = _receive(provider, s, 3, must_pend=False)
            mine.append(("post", ov))
            if i % 3 == 0:
                w.CancelIo(s)
                mine.append(("cancel all", None))
            elif i % 3 == 1:
                w.CancelIoEx(s, ov)
                mine.append(("cancel", ov))

    def sender() -> None:
        go.wait()
        for _ in range(total):
            conn.sendall(b"b")

    threads = [threading.Thread(target=worker) for _ in range(4)]
    threads.append(threading.Thread(target=sender))
    for t in threads:
        t.start()
    go.wait()
    for t in threads:
        t.join(60)
    conn.shutdown(socket.SHUT_WR)  # what still waits completes with 0 bytes
    posted = [ov for line in timelines for kind, ov in line if kind == "post"]
    assert len(posted) == 4 * rounds
    packets: collections.Counter[int] = collections.Counter()
    n, key, ov_box = DWORD(), _Box(), _Box()
    for _ in posted:
        assert w.GetQueuedCompletionStatus(port, n, key, ov_box, 30_000) or ov_box.value
        packets[id(ov_box.value)] += 1
    assert not w.GetQueuedCompletionStatus(port, n, key, ov_box, 0) and ov_box.value is None
    assert sorted(packets.values()) == [1] * len(posted)
    assert set(packets) == {id(ov) for ov in posted}
    for line in timelines:
        for at, (kind, ov) in enumerate(line):
            if kind == "post" and ov is not None and ov.Internal == w.STATUS_CANCELLED:
                later = line[at + 1 :]
                assert ("cancel all", None) in later or ("cancel", ov) in later
    # What no receive took is still there, in order, up to the end of the stream.
    left = 0
    while True:
        ov, _ = _receive(provider, s, 1 << 16, must_pend=False)
        assert w.GetQueuedCompletionStatus(port, n, key, ov_box, 30_000)
        assert ov_box.value is ov
        if not ov.InternalHigh:
            break
        left += ov.InternalHigh
    assert sum(ov.InternalHigh for ov in posted if ov.Internal == 0) + left == total
    w.CloseHandle(port)
