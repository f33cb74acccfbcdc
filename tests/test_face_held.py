"""The asyncio face's held sends (issue 13): the sends after the first of a loop iteration
complete at once, held in the emulated send buffer (S4.1), and reach the kernel in one
gather write when the iteration ends.  Whatever comes next in the same step -- a close, a
half-close, a flush, a cancel, an SPI send, another thread's send, a reset, a resized
buffer -- the held bytes go out whole and in order, or with the connection, and never
produce a notice of their own.

The peer is always a plain ``socket``; every step below makes its sends without
suspending, so that they are held.
"""

from __future__ import annotations

import asyncio
import errno
import socket
import struct
import threading

import pytest

import wsp_async as w
from wsp_async import aio

from .conftest import FacePair


async def _read_to_end(conn: socket.socket) -> bytes:
    loop = asyncio.get_running_loop()
    out = bytearray()
    while chunk := await loop.sock_recv(conn, 1 << 20):
        out.extend(chunk)
    return bytes(out)


async def _read_exactly(conn: socket.socket, n: int) -> bytes:
    loop = asyncio.get_running_loop()
    out = bytearray()
    while len(out) < n:
        chunk = await asyncio.wait_for(loop.sock_recv(conn, 1 << 20), 30)
        assert chunk, "the stream ended early"
        out.extend(chunk)
    return bytes(out)


def _numbered(i: int) -> bytes:
    return struct.pack(">I", i) * 16  # 64 bytes that say where they belong


def _held(sock: aio.OverlappedSocket) -> int:
    """Bytes the socket holds complete, waiting for the gather write."""
    waiting = sock.provider.socket_of(sock.handle).engine.sendq.waiting
    return sum(op.nbytes for op in waiting if not op.pending)


async def _send_train(sock: aio.OverlappedSocket, count: int, first: int = 0) -> None:
    for i in range(first, first + count):
        assert await sock.send(_numbered(i)) == 64


def _train(count: int, first: int = 0) -> bytes:
    return b"".join(_numbered(i) for i in range(first, first + count))


class _Notices:
    """A completion routine (S6.1) that records each notice it gets."""

    def __init__(self) -> None:
        self.seen: list[tuple[int, int]] = []
        self.came = asyncio.Event()

    def __call__(self, error: int, transferred: int, ov: w.WSAOVERLAPPED, flags: int) -> None:
        self.seen.append((error, transferred))
        self.came.set()

    async def settled(self) -> list[tuple[int, int]]:
        """The notices, once the first has come and the loop has run once more (a
        doubled one would be there by then)."""
        await asyncio.wait_for(self.came.wait(), 30)
        await asyncio.sleep(0)
        return self.seen


async def test_held_sends_go_out_in_order_before_a_close(face_pair: FacePair) -> None:
    # SPEC S4.1, S5.3, S10.2: a close in the same step still sends what completed, in
    # order, then ends the stream gracefully.
    sock, conn = face_pair
    reader = asyncio.ensure_future(_read_to_end(conn))
    await _send_train(sock, 300)
    assert _held(sock) == 299 * 64  # the first went out at once
    sock.close()
    assert await asyncio.wait_for(reader, 30) == _train(300)
    conn.close()


async def test_held_sends_go_out_before_the_end_of_stream_of_a_half_close(
    face_pair: FacePair,
) -> None:
    # SPEC S10.1: sends made before WSPShutdown(SD_SEND) still go out, then the FIN; the
    # socket still receives.
    sock, conn = face_pair
    reader = asyncio.ensure_future(_read_to_end(conn))
    await _send_train(sock, 200)
    await sock.shutdown(w.SD_SEND)
    assert await asyncio.wait_for(reader, 30) == _train(200)
    await asyncio.get_running_loop().sock_sendall(conn, b"reply")
    assert await sock.recv(5) == b"reply"
    sock.close()
    conn.close()


async def test_a_flush_or_a_cancel_in_the_same_step_cannot_take_back_held_sends(
    face_pair: FacePair,
) -> None:
    # SPEC S10.3, S15.1: held sends are consumed, like bytes in the kernel: SIO_FLUSH and
    # CancelIoEx(s, NULL) take only the pending SPI send behind them, which completes
    # once, aborted; the held bytes and the sends after it arrive.
    sock, conn = face_pair
    p = sock.provider
    err = w.INT()
    routine = _Notices()
    await _send_train(sock, 50)
    rc = p.WSPSend(
        sock.handle, [w.WSABUF(4, b"LOST")], 1, None, 0, w.WSAOVERLAPPED(), routine, None, err
    )
    assert rc == w.SOCKET_ERROR and err.value == w.WSA_IO_PENDING  # behind the held ones
    assert w.CancelIoEx(sock.handle, None)
    await _send_train(sock, 50, first=50)
    assert (
        p.WSPIoctl(sock.handle, w.SIO_FLUSH, None, 0, None, 0, w.DWORD(), None, None, None, err)
        == 0
    )
    await _send_train(sock, 10, first=100)
    assert await _read_exactly(conn, 110 * 64) == _train(110)
    assert await routine.settled() == [(w.WSA_OPERATION_ABORTED, 0)]
    sock.close()
    conn.close()


async def test_an_spi_send_after_held_sends_keeps_its_place_and_one_notice(
    face_pair: FacePair,
) -> None:
    # SPEC S5.3, S2.4, S6.4: an overlapped send posted after held face sends goes out after
    # them and completes exactly once, with its whole length.
    sock, conn = face_pair
    p = sock.provider
    err = w.INT()
    routine = _Notices()
    await _send_train(sock, 100)
    ov = w.WSAOVERLAPPED()
    rc = p.WSPSend(sock.handle, [w.WSABUF(6, b"middle")], 1, None, 0, ov, routine, None, err)
    assert rc == 0 or err.value == w.WSA_IO_PENDING
    await _send_train(sock, 100, first=100)  # behind a pending send: the full path
    assert await _read_exactly(conn, 200 * 64 + 6) == _train(100) + b"middle" + _train(100, 100)
    assert await routine.settled() == [(0, 6)]
    sock.close()
    conn.close()


async def test_a_reused_mutable_buffer_does_not_change_held_bytes(face_pair: FacePair) -> None:
    # SPEC S5.2, S4.1: a send complete at once gives the buffer back to the caller; what
    # the caller then writes into it is not what was sent.
    sock, conn = face_pair
    buffer = bytearray(64)
    view = memoryview(buffer)
    for i in range(100):
        buffer[:] = _numbered(i)
        assert await sock.send(view if i % 2 else buffer) == 64
    buffer[:] = b"\xff" * 64
    view.release()
    for i in range(100, 150):  # views of immutable bytes, released once sent
        of_bytes = memoryview(b"-" * 32 + _numbered(i) + b"-" * 32)[32:96]
        assert await sock.send(of_bytes) == 64
        of_bytes.release()
    assert await _read_exactly(conn, 150 * 64) == _train(150)
    sock.close()
    conn.close()


async def test_another_threads_send_after_held_sends_comes_after_them(face_pair: FacePair) -> None:
    # SPEC S5.3: a blocking send made on another thread after the held sends were made
    # reaches the peer after them, and the face's sends after that keep the order too.
    sock, conn = face_pair
    p = sock.provider
    loop = asyncio.get_running_loop()
    result: list[tuple[int, int]] = []

    def blocking_send() -> None:
        err, sent = w.INT(), w.DWORD()
        rc = p.WSPSend(sock.handle, [w.WSABUF(5, b"other")], 1, sent, 0, None, None, None, err)
        result.append((rc, sent.value))

    await _send_train(sock, 100)
    worker = threading.Thread(target=blocking_send)
    worker.start()
    await loop.run_in_executor(None, worker.join, 30)
    assert result == [(0, 5)]
    await _send_train(sock, 100, first=100)
    assert await _read_exactly(conn, 200 * 64 + 5) == _train(100) + b"other" + _train(100, 100)
    sock.close()
    conn.close()


async def test_a_send_buffer_shrunk_to_zero_after_held_sends_waits_for_them(
    face_pair: FacePair,
) -> None:
    # SPEC S4.2: with SO_SNDBUF 0 a send completes only once no byte of it, or of the
    # held sends before it, is left in user space.
    sock, conn = face_pair
    adapter = sock.provider.socket_of(sock.handle)
    reader = asyncio.ensure_future(_read_to_end(conn))
    await _send_train(sock, 100)
    sock.setsockopt(w.SOL_SOCKET, w.SO_SNDBUF, 0)
    assert await sock.send(b"last") == 4
    assert not adapter.engine.sendq and not adapter.transport.get_write_buffer_size()
    await sock.shutdown(w.SD_SEND)
    assert await asyncio.wait_for(reader, 30) == _train(100) + b"last"
    sock.close()
    conn.close()


async def test_a_large_send_buffer_holds_more_sends_than_one_gather_write_takes(
    face_pair: FacePair,
) -> None:
    # SPEC S4.1, S4.4, S5.3: with SO_SNDBUF 1 MiB a step holds 16,000 sends of 64 bytes,
    # more buffers than one system call takes; they all arrive, in order.
    sock, conn = face_pair
    sock.setsockopt(w.SOL_SOCKET, w.SO_SNDBUF, 1 << 20)
    reader = asyncio.ensure_future(_read_to_end(conn))
    await _send_train(sock, 16000)
    assert _held(sock) > 1024 * 64
    await sock.shutdown(w.SD_SEND)
    assert await asyncio.wait_for(reader, 60) == _train(16000)
    sock.close()
    conn.close()


async def test_a_nonblocking_spi_send_after_held_sends_is_not_refused(face_pair: FacePair) -> None:
    # SPEC S8.1: a non-blocking send takes the whole send when the buffer has room; held
    # sends are handed on first instead of making it fail with WSAEWOULDBLOCK.
    sock, conn = face_pair
    p = sock.provider
    err, sent = w.INT(), w.DWORD()
    assert p.WSPIoctl(sock.handle, w.FIONBIO, 1, 4, None, 0, w.DWORD(), None, None, None, err) == 0
    await _send_train(sock, 20)
    assert p.WSPSend(sock.handle, [w.WSABUF(3, b"end")], 1, sent, 0, None, None, None, err) == 0
    assert sent.value == 3
    assert await _read_exactly(conn, 20 * 64 + 3) == _train(20) + b"end"
    sock.close()
    conn.close()


async def test_a_reset_while_sends_are_held_reports_once_and_leaks_nothing(
    face_pair: FacePair,
) -> None:
    # SPEC S10.5, S2.4, S9: the peer resets the connection; sends already complete stay
    # complete (no notice, no exception in the loop), and the next send fails with the
    # connection's loss.
    loop = asyncio.get_running_loop()
    errors: list[dict[str, object]] = []
    old = loop.get_exception_handler()
    loop.set_exception_handler(lambda _loop, context: errors.append(context))
    try:
        sock, conn = face_pair
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        conn.close()  # a reset, on its way to our socket
        completed = 0
        for i in range(100):
            try:
                completed += await sock.send(_numbered(i)) == 64
            except w.WSAError as exc:
                assert exc.winerror in (w.WSAECONNRESET, w.WSAECONNABORTED)
        adapter = sock.provider.socket_of(sock.handle)
        for _ in range(1000):
            if adapter.engine.error:
                break
            await asyncio.sleep(0.01)
        with pytest.raises(w.WSAError) as info:
            await sock.send(b"after")
        assert info.value.winerror in (w.WSAECONNRESET, w.WSAECONNABORTED)
        assert not adapter.engine.sendq
        sock.close()
    finally:
        loop.set_exception_handler(old)
    assert completed >= 1
    assert [context for context in errors if not _proactor_shutdown_artefact(context)] == []


def _proactor_shutdown_artefact(context: dict[str, object]) -> bool:
    """Under ``--asyncio-proactor``, the Proactor's own transport shuts its socket down after
    a reset, which Linux refuses with ENOTCONN (docs/proactor.md, "What differs")."""
    exc = context.get("exception")
    return (
        isinstance(exc, OSError)
        and exc.errno == errno.ENOTCONN
        and "_call_connection_lost" in repr(context.get("handle"))
    )


async def test_small_gather_lists_are_held_whole_and_bad_ones_refused(face_pair: FacePair) -> None:
    # SPEC S5.3, S5.2, S9 (WSAEFAULT), S2.3: a small gather list of bytes-like buffers is
    # one send, held like any other, its mutable parts copied; a list with a strided,
    # released or non-buffer entry is refused with nothing sent; a large list goes whole.
    sock, conn = face_pair
    scratch = bytearray(32)
    expected = bytearray()
    for i in range(200):
        scratch[:] = _numbered(i)[:32]
        parts = (_numbered(i)[32:48], scratch, memoryview(_numbered(i))[48:])
        parts = (parts[1], parts[0], parts[2])  # header from the reused bytearray
        assert await sock.send(list(parts) if i % 2 else parts) == 64
        expected += _numbered(i)
    assert _held(sock) == 199 * 64
    scratch[:] = b"\xff" * 32  # reused: the held copy is what was sent
    released = memoryview(b"gone")
    released.release()
    for bad in (
        [b"ok", memoryview(bytearray(b"abcdef"))[::2]],
        [b"ok", released],
        [b"ok", 42],
    ):
        with pytest.raises(w.WSAError) as info:
            await sock.send(bad)
        assert info.value.winerror == w.WSAEFAULT
    large = [bytes([65 + i]) * 10000 for i in range(3)]  # past what is joined
    assert await sock.send(large) == 30000
    expected += b"".join(large)
    assert await _read_exactly(conn, len(expected)) == bytes(expected)
    sock.close()
    conn.close()


@pytest.mark.parametrize("action", ["close", "shutdown", "flush"])
async def test_another_thread_ending_the_stream_midway_loses_no_completed_send(
    action: str,
    face_pair: FacePair,
) -> None:
    # SPEC S10.1-S10.3, S2.4, S5.3: while a task sends bursts (the first of each written,
    # the rest held), another thread closes, half-closes or flushes the socket at a moment
    # of its own.  Every send that returned its length reaches the peer, in order, whole;
    # every one after the close or half-close fails; nothing arrives that was not returned.
    sock, conn = face_pair
    p = sock.provider
    loop = asyncio.get_running_loop()
    reader = asyncio.ensure_future(_read_to_end(conn))
    go = threading.Event()
    results: list[int] = []

    def end_it() -> None:
        go.wait(30)
        err = w.INT()
        if action == "close":
            results.append(p.WSPCloseSocket(sock.handle, err))
        elif action == "shutdown":
            results.append(p.WSPShutdown(sock.handle, w.SD_SEND, err))
        else:
            results.append(
                p.WSPIoctl(
                    sock.handle, w.SIO_FLUSH, None, 0, None, 0, w.DWORD(), None, None, None, err
                )
            )

    ender = threading.Thread(target=end_it)
    ender.start()
    sent = bytearray()
    refused = 0
    # At least 400 bursts, and on until the other thread's call has been made and (for a
    # close or half-close) has refused a send: when that thread runs is the scheduler's.
    for burst in range(200_000):
        if burst == 40:
            go.set()
        for i in range(burst % 7 + 1):
            message = _numbered(burst * 8 + i)[: 16 + (burst * 8 + i) % 49]
            try:
                assert await sock.send(message) == len(message)
            except w.WSAError as exc:
                assert exc.winerror in (w.WSAENOTSOCK, w.WSAESHUTDOWN)
                refused += 1
            else:
                assert not refused, "a send succeeded after one was refused"
                sent += message
        await asyncio.sleep(0)
        if results and refused:
            break
        if burst >= 399 and results and action == "flush":
            break
    await loop.run_in_executor(None, ender.join, 30)
    assert results == [0]
    if action == "flush":
        assert refused == 0
        await sock.shutdown(w.SD_SEND)
    else:
        assert refused > 0
    assert await asyncio.wait_for(reader, 30) == bytes(sent)
    sock.close()
    conn.close()
