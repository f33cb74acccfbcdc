"""The measurements behind ``python -m wsp_async bench``: the receiver process, every
mode (raw transport and each completion mechanism), latency and memory probes.
:mod:`wsp_async.tools.bench` drives them and prints the table.
"""

from __future__ import annotations

import asyncio
import functools
import gc
import multiprocessing
import socket
import subprocess
import sys
import threading
import time
import tracemalloc
from collections.abc import Callable, Coroutine
from typing import Any

from .. import (
    AF_INET,
    DWORD,
    INFINITE,
    INT,
    IPPROTO_TCP,
    OVERLAPPED_ENTRY,
    SO_SNDBUF,
    SOCK_STREAM,
    SOL_SOCKET,
    TCP_NODELAY,
    WSA_FLAG_OVERLAPPED,
    WSA_IO_INCOMPLETE,
    WSABUF,
    WSAOVERLAPPED,
    CloseHandle,
    CreateIoCompletionPort,
    GetLastError,
    GetQueuedCompletionStatus,
    GetQueuedCompletionStatusEx,
    PostQueuedCompletionStatus,
    Provider,
    SleepEx,
    WSACreateEvent,
    WSAResetEvent,
    wait_for_events,
)

MODES = [
    "raw-transport",
    "routine",
    "event",
    "poll",
    "blocking-thread",
    "foreign-thread",
    "iocp-1",
    "iocp-2",
    "aio",
    "aio-nodelay",
    "streams",
]
SIZES = [64, 1024, 65536, 1 << 20]
WINDOW = 256  # overlapped sends kept in flight by the windowed modes


# ----------------------------------------------------------------------------- receiver
def _drain_forever(port_queue: Any) -> None:
    srv = socket.create_server(("127.0.0.1", 0), backlog=64)
    port_queue.put(srv.getsockname()[1])

    def drain(conn: socket.socket) -> None:
        with conn:
            while conn.recv(1 << 20):
                pass

    while True:
        conn, _ = srv.accept()
        threading.Thread(target=drain, args=(conn,), daemon=True).start()


def start_receiver() -> tuple[Any, int]:
    ctx = multiprocessing.get_context("spawn")
    ports = ctx.Queue()
    proc = ctx.Process(target=_drain_forever, args=(ports,), daemon=True)
    proc.start()
    return proc, int(ports.get(timeout=60))


# ----------------------------------------------------------------------------- helpers
def new_loop(kind: str) -> asyncio.AbstractEventLoop:
    if kind == "uvloop":
        import uvloop

        loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
        return loop
    return asyncio.SelectorEventLoop()


def _message(size: int, nbufs: int) -> list[WSABUF]:
    data = b"w" * size
    if nbufs == 1:
        return [WSABUF(size, data)]
    cut = [size * i // nbufs for i in range(nbufs + 1)]
    return [
        WSABUF(cut[i + 1] - cut[i], memoryview(data)[cut[i] : cut[i + 1]]) for i in range(nbufs)
    ]


class _Raw(asyncio.Protocol):
    def __init__(self) -> None:
        self.writable = asyncio.Event()
        self.writable.set()
        self.lost = asyncio.Event()

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost.set()

    def pause_writing(self) -> None:
        self.writable.clear()

    def resume_writing(self) -> None:
        self.writable.set()


async def _raw(port: int, size: int, count: int, nbufs: int) -> float:
    loop = asyncio.get_running_loop()
    transport, proto = await loop.create_connection(_Raw, "127.0.0.1", port)
    # The loops' defaults differ (uvloop resumes at 16 bytes, asyncio at 16 KiB):
    # use asyncio's on both, so the baseline is the same program on each loop.
    transport.set_write_buffer_limits(high=65536, low=16384)
    bufs = [b.buf for b in _message(size, nbufs)]
    start = time.perf_counter()
    for _ in range(count):
        if not proto.writable.is_set():
            await proto.writable.wait()
        if nbufs == 1:
            transport.write(bufs[0])
        else:
            transport.writelines(bufs)
    transport.set_write_buffer_limits(0, 0)
    while transport.get_write_buffer_size():
        proto.writable.clear()
        await proto.writable.wait()
    elapsed = time.perf_counter() - start
    transport.close()
    await proto.lost.wait()  # closed before the loop is (clean under -W error)
    return elapsed


async def _embedded(port: int) -> tuple[Provider, int]:
    p = Provider(loop=asyncio.get_running_loop())
    err = INT()
    s = p.WSPSocket(AF_INET, SOCK_STREAM, 0, None, 0, WSA_FLAG_OVERLAPPED, err)
    await p.connect_async(s, ("127.0.0.1", port))
    return p, s


async def _until_flushed(p: Provider, s: int) -> None:
    """Wait until the transport holds nothing: every byte has reached the kernel."""
    err = INT()
    p.WSPSetSockOpt(s, SOL_SOCKET, SO_SNDBUF, 0, 4, err)
    ov = WSAOVERLAPPED(hEvent=WSACreateEvent())
    p.WSPSend(s, [], 0, None, 0, ov, None, None, err)
    await wait_for_events([ov.hEvent])


async def _routine(port: int, size: int, count: int, nbufs: int) -> float:
    p, s = await _embedded(port)
    bufs = _message(size, nbufs)
    n = len(bufs)
    state = [0, 0]  # completed, in flight
    wake = asyncio.Event()
    err = INT()

    def routine(error: int, transferred: int, ov: WSAOVERLAPPED, flags: int) -> None:
        state[0] += 1
        state[1] -= 1
        if error:
            raise RuntimeError(f"send failed: {error}")
        wake.set()

    send = p.WSPSend
    start = time.perf_counter()
    for _ in range(count):
        if state[1] >= WINDOW:
            wake.clear()
            await wake.wait()
        state[1] += 1
        send(s, bufs, n, None, 0, WSAOVERLAPPED(), routine, None, err)
    while state[0] < count:
        wake.clear()
        await wake.wait()
    await _until_flushed(p, s)
    elapsed = time.perf_counter() - start
    await p.aclose()
    return elapsed


async def _event(port: int, size: int, count: int, nbufs: int) -> float:
    p, s = await _embedded(port)
    bufs = _message(size, nbufs)
    n = len(bufs)
    batch = 64  # WSA_MAXIMUM_WAIT_EVENTS
    events = [WSACreateEvent() for _ in range(batch)]
    err = INT()
    start = time.perf_counter()
    done = 0
    while done < count:
        k = min(batch, count - done)
        for ev in events[:k]:
            WSAResetEvent(ev)
            p.WSPSend(s, bufs, n, None, 0, WSAOVERLAPPED(hEvent=ev), None, None, err)
        await wait_for_events(events[:k], wait_all=True)
        done += k
    await _until_flushed(p, s)
    elapsed = time.perf_counter() - start
    await p.aclose()
    return elapsed


async def _poll(port: int, size: int, count: int, nbufs: int) -> float:
    p, s = await _embedded(port)
    bufs = _message(size, nbufs)
    n = len(bufs)
    err, got, flags = INT(), DWORD(), DWORD()
    result = p.WSPGetOverlappedResult
    start = time.perf_counter()
    done = 0
    while done < count:
        k = min(WINDOW, count - done)
        ovs = [WSAOVERLAPPED() for _ in range(k)]
        for ov in ovs:
            p.WSPSend(s, bufs, n, None, 0, ov, None, None, err)
        for ov in ovs:
            while not result(s, ov, got, False, flags, err):
                if err.value != WSA_IO_INCOMPLETE:
                    raise RuntimeError(f"send failed: {err.value}")
                await asyncio.sleep(0)
        done += k
    await _until_flushed(p, s)
    elapsed = time.perf_counter() - start
    await p.aclose()
    return elapsed


async def _aio(port: int, size: int, count: int, nbufs: int, nodelay: bool = False) -> float:
    """``await sock.send(data)``; the socket has Winsock's default (Nagle on) unless
    ``nodelay`` sets TCP_NODELAY, as asyncio does for its own transports."""
    from .. import aio

    p = Provider(loop=asyncio.get_running_loop())
    sock = await aio.connect("127.0.0.1", port, provider=p)
    if nodelay:
        p.WSPSetSockOpt(sock.handle, IPPROTO_TCP, TCP_NODELAY, 1, 4, INT())
    data: Any = [b.buf for b in _message(size, nbufs)]
    if nbufs == 1:
        data = data[0]
    send = sock.send
    start = time.perf_counter()
    for _ in range(count):
        await send(data)
    await _until_flushed(p, sock.handle)
    elapsed = time.perf_counter() - start
    await p.aclose()
    return elapsed


async def _streams(port: int, size: int, count: int, nbufs: int) -> float:
    """What asyncio users write without us: ``writer.write(data); await writer.drain()``
    per message (the baseline of the ``aio`` mode, issue 13)."""
    _reader, writer = await asyncio.open_connection("127.0.0.1", port)
    bufs = [b.buf for b in _message(size, nbufs)]
    write = writer.write if nbufs == 1 else writer.writelines
    data: Any = bufs[0] if nbufs == 1 else bufs
    drain = writer.drain
    start = time.perf_counter()
    for _ in range(count):
        write(data)
        await drain()
    transport = writer.transport
    transport.set_write_buffer_limits(0, 0)
    await drain()
    while transport.get_write_buffer_size():
        await asyncio.sleep(0.001)
    elapsed = time.perf_counter() - start
    writer.close()
    await writer.wait_closed()
    return elapsed


def _own_provider(kind: str, port: int) -> tuple[Provider, int]:
    p = Provider(use_uvloop=kind == "uvloop")
    err = INT()
    s = p.WSPSocket(AF_INET, SOCK_STREAM, 0, None, 0, WSA_FLAG_OVERLAPPED, err)
    if p.WSPConnect(s, ("127.0.0.1", port), None, None, None, None, None, err):
        raise RuntimeError(f"connect failed: {err.value}")
    return p, s


def _flush_blocking(p: Provider, s: int) -> None:
    err = INT()
    p.WSPSetSockOpt(s, SOL_SOCKET, SO_SNDBUF, 0, 4, err)
    p.WSPSend(
        s, [], 0, DWORD(), 0, None, None, None, err
    )  # queued behind all: returns when flushed


def _blocking_thread(kind: str, port: int, size: int, count: int, nbufs: int) -> float:
    p, s = _own_provider(kind, port)
    bufs = _message(size, nbufs)
    n = len(bufs)
    err, sent = INT(), DWORD()
    send = p.WSPSend
    start = time.perf_counter()
    for _ in range(count):
        if send(s, bufs, n, sent, 0, None, None, None, err):
            raise RuntimeError(f"send failed: {err.value}")
    _flush_blocking(p, s)
    elapsed = time.perf_counter() - start
    p.close()
    return elapsed


def _foreign_thread(kind: str, port: int, size: int, count: int, nbufs: int) -> float:
    p, s = _own_provider(kind, port)
    bufs = _message(size, nbufs)
    n = len(bufs)
    state = [0, 0]
    err = INT()

    def routine(error: int, transferred: int, ov: WSAOVERLAPPED, flags: int) -> None:
        state[0] += 1
        state[1] -= 1
        if error:
            raise RuntimeError(f"send failed: {error}")

    send = p.WSPSend
    start = time.perf_counter()
    for _ in range(count):
        while state[1] >= WINDOW:
            SleepEx(10_000, True)
        state[1] += 1
        send(s, bufs, n, None, 0, WSAOVERLAPPED(), routine, None, err)
    while state[0] < count:
        SleepEx(10_000, True)
    _flush_blocking(p, s)
    elapsed = time.perf_counter() - start
    p.close()
    return elapsed


class _Box:
    value: Any = None


def _iocp(workers: int, kind: str, port: int, size: int, count: int, nbufs: int) -> float:
    """Overlapped sends from a plain thread, completed through a port that ``workers``
    threads drain in batches (GetQueuedCompletionStatusEx), the shape of an IOCP server."""
    p, s = _own_provider(kind, port)
    cp = CreateIoCompletionPort(s, None, 1, workers)
    bufs = _message(size, nbufs)
    n = len(bufs)
    err = INT()
    cond = threading.Condition()
    done = [0]

    def drain() -> None:
        entries = [OVERLAPPED_ENTRY() for _ in range(64)]
        removed = DWORD()
        while True:
            if not GetQueuedCompletionStatusEx(cp, entries, 64, removed, INFINITE, False):
                return
            got = removed.value
            if any(e.lpCompletionKey is None for e in entries[:got]):
                return  # the shutdown packet
            if any(e.Internal for e in entries[:got]):
                raise RuntimeError("a send failed")
            with cond:
                done[0] += got
                cond.notify()

    threads = [threading.Thread(target=drain, daemon=True) for _ in range(workers)]
    for t in threads:
        t.start()
    send = p.WSPSend
    start = time.perf_counter()
    for posted in range(count):
        if posted - done[0] >= WINDOW:
            with cond:
                while posted - done[0] >= WINDOW:
                    cond.wait()
        send(s, bufs, n, None, 0, WSAOVERLAPPED(), None, None, err)
    with cond:
        while done[0] < count:
            cond.wait()
    _flush_blocking(p, s)
    elapsed = time.perf_counter() - start
    for _ in threads:
        PostQueuedCompletionStatus(cp, 0, None, None)
    for t in threads:
        t.join(10)
    CloseHandle(cp)
    p.close()
    return elapsed


_ASYNC_MODES: dict[str, Callable[[int, int, int, int], Coroutine[Any, Any, float]]] = {
    "raw-transport": _raw,
    "routine": _routine,
    "event": _event,
    "poll": _poll,
    "aio": _aio,
    "aio-nodelay": functools.partial(_aio, nodelay=True),
    "streams": _streams,
}
_THREAD_MODES: dict[str, Callable[[str, int, int, int, int], float]] = {
    "blocking-thread": _blocking_thread,
    "foreign-thread": _foreign_thread,
    "iocp-1": functools.partial(_iocp, 1),
    "iocp-2": functools.partial(_iocp, 2),
}


def measure(mode: str, kind: str, port: int, size: int, count: int, nbufs: int = 1) -> float:
    """Seconds to send ``count`` messages of ``size`` bytes (in ``nbufs`` WSABUFs) in ``mode``."""
    gc.collect()
    if mode in _THREAD_MODES:
        return _THREAD_MODES[mode](kind, port, size, count, nbufs)
    loop = new_loop(kind)
    try:
        return loop.run_until_complete(_ASYNC_MODES[mode](port, size, count, nbufs))
    finally:
        loop.close()


# ----------------------------------------------------------------------------- latency, memory
def latency(kind: str, port: int, samples: int = 2000) -> dict[str, float]:
    """Post -> routine latency on an idle loop, same thread (microseconds)."""

    async def run() -> list[float]:
        p, s = await _embedded(port)
        loop = asyncio.get_running_loop()
        bufs = [WSABUF(64, b"l" * 64)]
        err = INT()
        out: list[float] = []
        for _ in range(samples + 100):
            future: asyncio.Future[float] = loop.create_future()
            t0 = time.perf_counter()
            p.WSPSend(
                s,
                bufs,
                1,
                None,
                0,
                WSAOVERLAPPED(),
                lambda *a, future=future: future.set_result(time.perf_counter()),
                None,
                err,
            )
            out.append((await future) - t0)
        await p.aclose()
        return out[100:]

    loop = new_loop(kind)
    try:
        values = sorted(loop.run_until_complete(run()))
    finally:
        loop.close()
    return {
        "p50_us": values[len(values) // 2] * 1e6,
        "p99_us": values[int(len(values) * 0.99)] * 1e6,
    }


def memory_per_pending_op(kind: str, ops: int = 2000, size: int = 1024) -> dict[str, float]:
    """tracemalloc bytes the emulator allocates per pending send (caller's objects excluded)."""
    stalled = socket.create_server(("127.0.0.1", 0))

    async def run() -> dict[str, float]:
        p, s = await _embedded(stalled.getsockname()[1])
        peer, _ = stalled.accept()
        peer.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        p.socket_of(s).sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        err = INT()
        filler = b"f" * (4 << 20)  # fills the kernel buffers: everything after it pends
        p.WSPSend(s, [WSABUF(len(filler), filler)], 1, None, 0, WSAOVERLAPPED(), None, None, err)
        payloads = [bytes([i % 256]) * size for i in range(ops)]
        wsabufs = [[WSABUF(size, d)] for d in payloads]
        ovs = [WSAOVERLAPPED() for _ in range(ops)]
        gc.collect()
        tracemalloc.start()
        before = tracemalloc.take_snapshot()
        for bufs, ov in zip(wsabufs, ovs, strict=True):
            p.WSPSend(s, bufs, 1, None, 0, ov, None, None, err)
        after = tracemalloc.take_snapshot()
        tracemalloc.stop()
        pending = sum(1 for ov in ovs if ov.pending)
        grown = sum(stat.size_diff for stat in after.compare_to(before, "filename"))
        peer.close()  # first: a graceful close would wait for this peer to read
        await p.aclose()
        return {
            "pending_ops": pending,
            "bytes_per_op": grown / max(1, pending),
            "payload_bytes": size,
        }

    loop = new_loop(kind)
    try:
        return loop.run_until_complete(run())
    finally:
        loop.close()
        stalled.close()


# ----------------------------------------------------------------------------- accept rate
#: Client threads of the accept-rate load (in a process of their own).
LOAD_THREADS = 4


def _connect_many(address: tuple[str, int], count: int) -> None:
    """One client of the load: ``count`` connections, each waiting until the server has
    accepted and closed it (a closed loop: an open-loop client that closes at once
    fills the listen backlog faster than any Python server accepts, and every SYN the
    kernel then drops costs a one-second retransmission -- which measured the backlog,
    not the server)."""
    for _ in range(count):
        with socket.create_connection(address, timeout=30) as conn:
            conn.recv(1)  # the server's close


def _load(address: tuple[str, int], count: int) -> None:
    threads = [
        threading.Thread(target=_connect_many, args=(address, count // LOAD_THREADS))
        for _ in range(LOAD_THREADS)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def _start_load(address: tuple[str, int], count: int) -> Any:
    """The load runs in its own process, so that it takes no interpreter time from the
    server under test."""
    code = f"from wsp_async.tools.benchmodes import _load; _load({tuple(address)!r}, {count})"
    return subprocess.Popen([sys.executable, "-c", code])


def accept_rate(kind: str, count: int = 2000) -> dict[str, float]:
    """Connections accepted per second: ``asyncio.start_server`` against ``AcceptEx`` --
    16 pending, completed through a port drained by one worker thread (the classic IOCP
    server), and awaited on the loop itself (``aio.Listener.accept_ex``) -- under the
    same client load (4 threads of another process, each connecting, waiting for the
    server's close, connecting again).  ``count`` is rounded down to a multiple of 4."""
    count -= count % LOAD_THREADS

    async def asyncio_side() -> float:
        accepted = 0
        start = 0.0
        done = asyncio.Event()

        writers: list[asyncio.StreamWriter] = []

        def on_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            nonlocal accepted, start
            accepted += 1
            if accepted == 1:
                start = time.perf_counter()  # from the first accept on, as below
            writer.close()
            writers.append(writer)
            if accepted == count:
                done.set()

        server = await asyncio.start_server(on_connection, "127.0.0.1", 0, backlog=128)
        address = server.sockets[0].getsockname()[:2]
        load = _start_load(address, count)
        await done.wait()
        elapsed = time.perf_counter() - start
        await asyncio.get_running_loop().run_in_executor(None, load.wait, 30)
        await asyncio.gather(*(w.wait_closed() for w in writers), return_exceptions=True)
        server.close()
        await server.wait_closed()
        return elapsed

    loop = new_loop(kind)
    try:
        asyncio_seconds = loop.run_until_complete(asyncio_side())
    finally:
        loop.close()

    p = Provider(use_uvloop=kind == "uvloop")
    err = INT()
    listener = p.WSPSocket(AF_INET, SOCK_STREAM, 0, None, 0, WSA_FLAG_OVERLAPPED, err)
    p.WSPBind(listener, ("127.0.0.1", 0), None, err)
    p.WSPListen(listener, 128, err)
    name = DWORD()
    p.WSPGetSockName(listener, name, None, err)
    cp = CreateIoCompletionPort(listener, None, "listener", 1)
    sockets: dict[int, int] = {}

    def post_accept() -> None:
        s = p.WSPSocket(AF_INET, SOCK_STREAM, 0, None, 0, WSA_FLAG_OVERLAPPED, err)
        ov = WSAOVERLAPPED()
        sockets[id(ov)] = s
        p.AcceptEx(listener, s, bytearray(64), 0, 32, 32, DWORD(), ov)

    for _ in range(16):
        post_accept()
    load = _start_load(name.value, count)  # type: ignore[arg-type]
    start = 0.0
    n, key, ov = DWORD(), _Box(), _Box()
    for i in range(count):
        if not GetQueuedCompletionStatus(cp, n, key, ov, 30_000):
            raise RuntimeError(f"AcceptEx failed: {GetLastError()}")
        if not i:
            start = time.perf_counter()  # from the first accept on: the load's start-up
        p.WSPCloseSocket(sockets.pop(id(ov.value)), err)
        post_accept()
    acceptex_seconds = time.perf_counter() - start
    load.wait(30)
    CloseHandle(cp)
    p.close()

    async def face_side() -> float:
        """AcceptEx awaited on the loop itself (``Listener.accept_ex``, 16 at a time)."""
        from .. import aio

        listener = await aio.listen("127.0.0.1", 0, backlog=128)
        accepted = 0
        start = 0.0
        done = asyncio.Event()

        async def acceptor() -> None:
            nonlocal accepted, start
            while accepted < count:
                sock, _peer, _data = await listener.accept_ex()
                accepted += 1
                if accepted == 1:
                    start = time.perf_counter()
                sock.close()
                if accepted == count:
                    done.set()

        tasks = [asyncio.ensure_future(acceptor()) for _ in range(16)]
        load = _start_load(listener.address, count)
        await done.wait()
        elapsed = time.perf_counter() - start
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.get_running_loop().run_in_executor(None, load.wait, 30)
        listener.close()
        return elapsed

    loop = new_loop(kind)
    try:
        face_seconds = loop.run_until_complete(face_side())
    finally:
        loop.close()
    return {
        "asyncio_per_s": (count - 1) / asyncio_seconds,
        "acceptex_per_s": (count - 1) / acceptex_seconds,
        "ratio": asyncio_seconds / acceptex_seconds,
        "face_per_s": (count - 1) / face_seconds,
        "face_ratio": asyncio_seconds / face_seconds,
    }


# ----------------------------------------------------------------------------- Proactor echo
_ECHO_SERVER = """
import socket, sys, threading
server = socket.create_server(("127.0.0.1", 0))
print(server.getsockname()[1], flush=True)
def serve(conn):
    buf = bytearray(1 << 17)
    with conn:
        while n := conn.recv_into(buf):
            conn.sendall(memoryview(buf)[:n])
while True:
    conn, _ = server.accept()
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    threading.Thread(target=serve, args=(conn,), daemon=True).start()
"""


async def _timed(round_trip: Callable[[], Coroutine[Any, Any, None]], count: int) -> float:
    """Seconds for ``count`` calls of ``round_trip`` after a short warm-up."""
    for _ in range(min(50, count)):
        await round_trip()
    start = time.perf_counter()
    for _ in range(count):
        await round_trip()
    return time.perf_counter() - start


async def _echo_client(port: int, size: int, count: int) -> float:
    """Seconds for ``count`` round trips of ``size`` bytes (asyncio streams, one at a time)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    message = b"e" * size

    async def round_trip() -> None:
        writer.write(message)
        await reader.readexactly(size)

    elapsed = await _timed(round_trip, count)
    writer.close()
    await writer.wait_closed()
    return elapsed


async def _echo_face(port: int, size: int, count: int) -> float:
    """The same round trips through the asyncio face (``aio.connect``, send, recv_into)."""
    from .. import aio

    sock = await aio.connect("127.0.0.1", port)
    message = b"e" * size
    view = memoryview(bytearray(size))

    async def round_trip() -> None:
        await sock.send(message)
        got = 0
        while got < size:
            n = await sock.recv_into(view[got:])
            if not n:
                raise ConnectionError("the echo server closed")
            got += n

    elapsed = await _timed(round_trip, count)
    sock.close()
    return elapsed


def echo_rates(sizes: tuple[int, ...] = (64, 65536), seconds: float = 1.0) -> dict[str, Any]:
    """Echo round trips per second through asyncio streams on the selector loop (stock
    asyncio), uvloop and CPython's ProactorEventLoop over wsp_async, and through the asyncio
    face on both loops, against one echo server in another process, in one run (issue 12,
    item 7; issue 13, item 2)."""
    from .. import proactor

    server = subprocess.Popen(
        [sys.executable, "-c", _ECHO_SERVER], stdout=subprocess.PIPE, text=True
    )
    try:
        assert server.stdout is not None
        port = int(server.stdout.readline())
        factories: dict[str, Callable[[], asyncio.AbstractEventLoop]] = {
            "asyncio": asyncio.SelectorEventLoop,
            "uvloop": lambda: new_loop("uvloop"),
            "proactor": proactor.ProactorEventLoop,
            "face-asyncio": asyncio.SelectorEventLoop,
            "face-uvloop": lambda: new_loop("uvloop"),
        }
        rates: dict[str, Any] = {}
        for size in sizes:
            row: dict[str, float] = {}
            for name, factory in factories.items():
                client = _echo_face if name.startswith("face") else _echo_client
                count = 200
                while True:  # size the run to about ``seconds``
                    with asyncio.Runner(loop_factory=factory) as runner:
                        took = runner.run(client(port, size, count))
                    if took >= seconds / 4 or count >= 1 << 20:
                        break
                    count = int(count * max(2.0, seconds / max(took, 1e-6)))
                row[name] = count / took
            row["ratio_to_asyncio"] = row["proactor"] / row["asyncio"]
            row["face_ratio_asyncio"] = row["face-asyncio"] / row["asyncio"]
            row["face_ratio_uvloop"] = row["face-uvloop"] / row["uvloop"]
            rates[str(size)] = row
        return rates
    finally:
        server.kill()
        server.wait()
        if server.stdout is not None:
            server.stdout.close()
