"""``python -m wsp_async bench``: completion mechanisms against raw asyncio, in one run.

Loopback TCP; the receiver is a separate process that only drains.  Every mode
runs in the same run, on the same loop kind and message size as the
``raw-transport`` baseline (plain ``transport.write`` with flow control: what a
user writes without us), and the table reports each mode's ratio to it.

Modes
  raw-transport   asyncio transport.write + pause/resume flow control
  routine         WSPSend on the I/O loop thread, a completion routine per send
  event           WSPSend on the I/O loop thread, an event per send, awaited in batches
  poll            WSPSend on the I/O loop thread, WSPGetOverlappedResult(fWait=False) polling
  blocking-thread non-overlapped blocking WSPSend from a worker thread
  foreign-thread  overlapped WSPSend + routine from a thread that is not the I/O loop's,
                  routines delivered in its alertable SleepEx
  aio             ``await sock.send(data)`` on the asyncio face

Also measured: completion latency post -> routine (same thread, idle loop, p50/p99),
emulator memory per pending operation (tracemalloc), and peak RSS.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import multiprocessing
import resource
import socket
import statistics
import sys
import threading
import time
import tracemalloc
from collections.abc import Callable, Coroutine
from typing import Any

from .. import (
    AF_INET,
    DWORD,
    INT,
    SO_SNDBUF,
    SOCK_STREAM,
    SOL_SOCKET,
    WSA_FLAG_OVERLAPPED,
    WSA_IO_INCOMPLETE,
    WSABUF,
    WSAOVERLAPPED,
    Provider,
    SleepEx,
    WSACreateEvent,
    WSAResetEvent,
    wait_for_events,
)

MODES = ["raw-transport", "routine", "event", "poll", "blocking-thread", "foreign-thread", "aio"]
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
    return asyncio.new_event_loop()


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
    p.close()
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
    p.close()
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
    p.close()
    return elapsed


async def _aio(port: int, size: int, count: int, nbufs: int) -> float:
    from .. import aio

    p = Provider(loop=asyncio.get_running_loop())
    sock = await aio.connect("127.0.0.1", port, provider=p)
    data: Any = [b.buf for b in _message(size, nbufs)]
    if nbufs == 1:
        data = data[0]
    send = sock.send
    start = time.perf_counter()
    for _ in range(count):
        await send(data)
    await _until_flushed(p, sock.handle)
    elapsed = time.perf_counter() - start
    p.close()
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


_ASYNC_MODES: dict[str, Callable[[int, int, int, int], Coroutine[Any, Any, float]]] = {
    "raw-transport": _raw,
    "routine": _routine,
    "event": _event,
    "poll": _poll,
    "aio": _aio,
}
_THREAD_MODES: dict[str, Callable[[str, int, int, int, int], float]] = {
    "blocking-thread": _blocking_thread,
    "foreign-thread": _foreign_thread,
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
        p.close()
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
        p.close()
        peer.close()
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


# ----------------------------------------------------------------------------- driver
def _progress(text: str, end: str = "") -> None:
    """Progress on stderr: one line rewritten in place on a terminal, a line per step elsewhere."""
    if sys.stderr.isatty():
        print(f"\r  {text:<60}", end=end, file=sys.stderr, flush=True)
    elif text:
        print(f"  {text}", file=sys.stderr, flush=True)


def run(
    modes: list[str],
    kinds: list[str],
    sizes: list[int],
    reps: int,
    budget: int,
    nbufs: int,
    quiet: bool = False,
    cap: int = 100_000,
) -> dict[str, Any]:
    receiver, port = start_receiver()
    rows: list[dict[str, Any]] = []
    total = len(modes) * len(kinds) * len(sizes) * reps
    step = 0
    try:
        for kind in kinds:
            for size in sizes:
                count = max(200, min(budget // size, cap))
                times: dict[str, list[float]] = {m: [] for m in modes}
                for rep in range(reps):
                    # Rotate the order so that no mode always runs first (TCP autotuning,
                    # caches and the receiver warm up during a run).
                    for mode in modes[rep % len(modes) :] + modes[: rep % len(modes)]:
                        step += 1
                        if not quiet:
                            _progress(f"[{step:>3}/{total}] {kind:<7} {size:>8} B  {mode:<16}")
                        times[mode].append(measure(mode, kind, port, size, count, nbufs))
                raw = (
                    statistics.median(times["raw-transport"]) if "raw-transport" in times else None
                )
                for mode in modes:
                    med = statistics.median(times[mode])
                    rows.append(
                        {
                            "loop": kind,
                            "size": size,
                            "bufs": nbufs,
                            "mode": mode,
                            "count": count,
                            "seconds": med,
                            "sends_per_s": count / med,
                            "mb_per_s": count * size / med / 1e6,
                            "spread": [count / max(times[mode]), count / min(times[mode])],
                            "ratio_to_raw": (raw / med) if raw else None,
                        }
                    )
        if not quiet:
            _progress("measuring latency and memory...")
        extra = {
            kind: {"latency": latency(kind, port), "memory": memory_per_pending_op(kind)}
            for kind in kinds
        }
    finally:
        receiver.kill()
    if not quiet and sys.stderr.isatty():
        _progress("", end="\r")
    return {
        "rows": rows,
        "extra": extra,
        "peak_rss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
    }


def format_table(result: dict[str, Any]) -> str:
    lines = [
        f"{'loop':<8}{'size':>9} {'bufs':>4} {'mode':<16}{'MB/s':>10}{'sends/s':>12}{'x raw':>8}   spread (sends/s)"
    ]
    for r in result["rows"]:
        ratio = f"{r['ratio_to_raw']:.2f}" if r["ratio_to_raw"] else "-"
        lo, hi = r["spread"]
        lines.append(
            f"{r['loop']:<8}{r['size']:>9} {r['bufs']:>4} {r['mode']:<16}{r['mb_per_s']:>10.1f}"
            f"{r['sends_per_s']:>12.0f}{ratio:>8}   {lo:.0f}-{hi:.0f}"
        )
    for kind, extra in result["extra"].items():
        lat, mem = extra["latency"], extra["memory"]
        lines.append(
            f"{kind}: post->routine latency p50 {lat['p50_us']:.1f} us, p99 {lat['p99_us']:.1f} us; "
            f"emulator memory per pending op {mem['bytes_per_op']:.0f} B "
            f"({mem['pending_ops']} pending sends of {mem['payload_bytes']} B)"
        )
    lines.append(f"peak RSS {result['peak_rss_kib'] / 1024:.1f} MiB")
    return "\n".join(lines)


def plot(result: dict[str, Any], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    kinds = sorted({r["loop"] for r in result["rows"]})
    modes = list(dict.fromkeys(r["mode"] for r in result["rows"]))
    sizes = sorted({r["size"] for r in result["rows"]})
    fig, axes = plt.subplots(1, len(kinds) + 1, figsize=(6 * (len(kinds) + 1), 4.5))
    for ax, kind in zip(axes, kinds, strict=False):
        width = 0.8 / len(modes)
        for i, mode in enumerate(modes):
            ys = [
                next(
                    (
                        r["mb_per_s"]
                        for r in result["rows"]
                        if r["loop"] == kind and r["size"] == s and r["mode"] == mode
                    ),
                    0,
                )
                for s in sizes
            ]
            ax.bar([j + i * width for j in range(len(sizes))], ys, width, label=mode)
        ax.set_xticks([j + 0.4 - width / 2 for j in range(len(sizes))], [f"{s} B" for s in sizes])
        ax.set_yscale("log")
        ax.set_ylabel("MB/s")
        ax.set_title(f"throughput ({kind})")
    axes[0].legend(fontsize=7)
    lat_ax = axes[-1]
    lat = [(k, result["extra"][k]["latency"]) for k in kinds]
    lat_ax.bar(
        [f"{k} p50" for k, _ in lat] + [f"{k} p99" for k, _ in lat],
        [v["p50_us"] for _, v in lat] + [v["p99_us"] for _, v in lat],
    )
    lat_ax.set_ylabel("microseconds")
    lat_ax.set_title("post -> routine latency")
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m wsp_async bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--quick", action="store_true", help="small budget, 2 repetitions (under a minute)"
    )
    parser.add_argument("--reps", type=int, help="repetitions per measurement (median and spread)")
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--loops", default="uvloop,asyncio")
    parser.add_argument("--sizes", default=",".join(map(str, SIZES)))
    parser.add_argument("--bufs", type=int, default=1, help="WSABUFs per send (scatter/gather)")
    parser.add_argument("--json", metavar="FILE", help="write the results as JSON ('-' for stdout)")
    parser.add_argument(
        "--plot", metavar="PNG", help="draw throughput and latency (needs matplotlib)"
    )
    args = parser.parse_args(argv)
    modes = [m for m in args.modes.split(",") if m]
    if "raw-transport" not in modes:
        modes.insert(0, "raw-transport")
    reps = args.reps or (2 if args.quick else 5)
    budget = (16 << 20) if args.quick else (256 << 20)
    cap = 20_000 if args.quick else 100_000
    result = run(
        modes,
        args.loops.split(","),
        [int(s) for s in args.sizes.split(",")],
        reps,
        budget,
        args.bufs,
        quiet=args.json == "-",
        cap=cap,
    )
    if args.json == "-":
        json.dump(result, sys.stdout, indent=1)
        return 0
    print(format_table(result))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)
    if args.plot:
        plot(result, args.plot)
        print(f"plot written to {args.plot}")
    return 0
