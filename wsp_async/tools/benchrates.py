"""The figures of ``python -m wsp_async bench`` beyond the throughput table: completion
latency and memory per pending operation, accept rates, and echo round trips on the
Proactor.  :mod:`wsp_async.tools.bench` drives them and prints the lines.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import socket
import subprocess
import sys
import threading
import time
import tracemalloc
from collections.abc import Callable, Coroutine, Iterator
from typing import Any

from .. import (
    AF_INET,
    DWORD,
    INT,
    SOCK_STREAM,
    WSA_FLAG_OVERLAPPED,
    WSABUF,
    WSAOVERLAPPED,
    CloseHandle,
    CreateIoCompletionPort,
    GetLastError,
    GetQueuedCompletionStatus,
    Provider,
)
from .benchmodes import Box, embedded, new_loop


# ----------------------------------------------------------------------------- latency, memory
def latency(kind: str, port: int, samples: int = 2000) -> dict[str, float]:
    """Post -> routine latency on an idle loop, same thread (microseconds)."""

    async def run() -> list[float]:
        p, s = await embedded(port)
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
        p, s = await embedded(stalled.getsockname()[1])
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
    code = f"from wsp_async.tools.benchrates import _load; _load({tuple(address)!r}, {count})"
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
    n, key, ov = DWORD(), Box(), Box()
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
#: An echo server (a thread per connection) run as ``python -c``; it prints its port.
ECHO_SERVER = """
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

    with peer_process(ECHO_SERVER) as port:
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


@contextlib.contextmanager
def peer_process(code: str) -> Iterator[int]:
    """Run ``code`` (a server that prints its port first) in a process of its own; the
    port, then the process killed on the way out."""
    server = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        yield int(server.stdout.readline())
    finally:
        server.kill()
        server.wait()
        if server.stdout is not None:
            server.stdout.close()
