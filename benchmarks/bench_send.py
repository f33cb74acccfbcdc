"""Send throughput: raw asyncio transport vs overlapped WSPSend with a routine per send.

A first cut of the harness of issue 5: the receiver is a separate process that
only drains; each mode runs in the same process and run, on the same loop kind,
and the table reports the ratio to raw-transport measured in that run.

    python benchmarks/bench_send.py [--quick] [--loop uvloop|asyncio]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import socket
import statistics
import sys
import time

import wsp_async as w


def _drain(port_queue: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    srv = socket.create_server(("127.0.0.1", 0))
    port_queue.put(srv.getsockname()[1])
    while True:
        conn, _ = srv.accept()
        with conn:
            while conn.recv(1 << 20):
                pass


class _Raw(asyncio.Protocol):
    def __init__(self) -> None:
        self.can_write = asyncio.Event()
        self.can_write.set()

    def pause_writing(self) -> None:
        self.can_write.clear()

    def resume_writing(self) -> None:
        self.can_write.set()


async def raw_transport(port: int, size: int, count: int) -> float:
    loop = asyncio.get_running_loop()
    transport, proto = await loop.create_connection(_Raw, "127.0.0.1", port)
    data = b"r" * size
    start = time.perf_counter()
    for _ in range(count):
        if not proto.can_write.is_set():
            await proto.can_write.wait()
        transport.write(data)
    while transport.get_write_buffer_size():
        proto.can_write.clear()
        transport.set_write_buffer_limits(0, 0)
        await proto.can_write.wait()
    elapsed = time.perf_counter() - start
    transport.close()
    return elapsed


async def routine_mode(port: int, size: int, count: int, window: int = 256) -> float:
    loop = asyncio.get_running_loop()
    p = w.Provider(loop=loop)
    err = w.INT()
    s = p.WSPSocket(w.AF_INET, w.SOCK_STREAM, 0, None, 0, w.WSA_FLAG_OVERLAPPED, err)
    await p.connect_async(p.socket_of(s), ("127.0.0.1", port))
    data = b"o" * size
    state = {"done": 0, "flight": 0}
    wake = asyncio.Event()

    def routine(error: int, n: int, ov: object, flags: int) -> None:
        state["done"] += 1
        state["flight"] -= 1
        wake.set()

    start = time.perf_counter()
    for _ in range(count):
        while state["flight"] >= window:
            wake.clear()
            await wake.wait()
        state["flight"] += 1
        p.WSPSend(s, [w.WSABUF(size, data)], 1, None, 0, w.WSAOVERLAPPED(), routine, None, err)
    while state["done"] < count:
        wake.clear()
        await wake.wait()
    elapsed = time.perf_counter() - start
    p.close()
    return elapsed


def _loop(kind: str) -> asyncio.AbstractEventLoop:
    if kind == "uvloop":
        import uvloop

        return uvloop.new_event_loop()
    return asyncio.new_event_loop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--loop", default="uvloop", choices=["uvloop", "asyncio"])
    parser.add_argument("--reps", type=int, default=None)
    args = parser.parse_args(argv)
    reps = args.reps or (3 if args.quick else 5)
    ports: multiprocessing.Queue[int] = multiprocessing.Queue()
    receiver = multiprocessing.Process(target=_drain, args=(ports,), daemon=True)
    receiver.start()
    port = ports.get(timeout=30)
    total = (16 << 20) if args.quick else (128 << 20)
    print(f"loop={args.loop} reps={reps} bytes per run={total >> 20} MiB (median, [min-max])")
    print(f"{'size':>7} {'mode':<14} {'MB/s':>9} {'sends/s':>11}  ratio to raw")
    try:
        for size in (64, 1024, 65536):
            count = max(1000, min(total // size, 200_000 if args.quick else 1_000_000))
            results: dict[str, list[float]] = {"raw-transport": [], "routine": []}
            for _ in range(reps):
                for mode, fn in (("raw-transport", raw_transport), ("routine", routine_mode)):
                    loop = _loop(args.loop)
                    try:
                        results[mode].append(loop.run_until_complete(fn(port, size, count)))
                    finally:
                        loop.close()
            raw = statistics.median(results["raw-transport"])
            for mode, times in results.items():
                med = statistics.median(times)
                rate = count / med
                print(
                    f"{size:>7} {mode:<14} {rate * size / 1e6:>9.1f} {rate:>11.0f}  "
                    f"{raw / med:.2f}x  [{count / max(times):.0f}-{count / min(times):.0f}/s]"
                )
    finally:
        receiver.kill()
    return 0


if __name__ == "__main__":
    sys.exit(main())
