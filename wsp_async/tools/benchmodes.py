"""The throughput modes of ``python -m wsp_async bench``: the receiver process and every
mode (raw transport and each completion mechanism).  The other figures are in
:mod:`wsp_async.tools.benchrates`; :mod:`wsp_async.tools.bench` drives both and prints.
"""

from __future__ import annotations

import asyncio
import functools
import gc
import multiprocessing
import socket
import threading
import time
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
        # Into one buffer made once: recv(1 << 20) would allocate (and fault in) a MiB per
        # call, and a receiver that slow is what a 64 KiB run would then measure.
        buffer = bytearray(1 << 20)
        with conn:
            while conn.recv_into(buffer):
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


async def embedded(port: int) -> tuple[Provider, int]:
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
    p, s = await embedded(port)
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
    p, s = await embedded(port)
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
    p, s = await embedded(port)
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


class Box:
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
            # Each packet read as a server reads it, in a plain loop: the bench's own
            # Python per packet stays below a routine call's (two generator expressions
            # here cost two frames per packet, charged to the mechanism, issue 26).
            for e in entries[:got]:
                if e.lpCompletionKey is None:
                    return  # the shutdown packet
                if e.Internal:
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
