"""The asyncio face's lean send alone: ``await sock.send(b"x" * 64)`` in a loop.

``python benchmarks/lean_send.py [uvloop|asyncio] [--runs N] [--count N]`` prints the
best of ``runs`` runs of ``count`` sends, in nanoseconds per send.  A plain thread on the
other end of a loopback connection only drains.  Almost every send is held complete
(``_core.admission``'s ``HOLD``), so this is the face's Python per message and little
else: the figure the issue 24 table in ``benchmarks/README.md`` compares across trees
(run it with ``PYTHONPATH`` at each checkout, alternating).
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import threading
import time

from wsp_async import aio


def _drain(conn: socket.socket) -> None:
    try:
        while conn.recv(1 << 20):
            pass
    except OSError:
        pass


async def best_ns_per_send(count: int, runs: int) -> float:
    listener = socket.create_server(("127.0.0.1", 0))
    accepting = asyncio.get_running_loop().run_in_executor(None, listener.accept)
    sock = await aio.connect(*listener.getsockname())
    conn, _ = await accepting
    drainer = threading.Thread(target=_drain, args=(conn,), daemon=True)
    drainer.start()
    data = b"x" * 64
    send = sock.send
    best = float("inf")
    try:
        for _ in range(runs):
            start = time.perf_counter()
            for _ in range(count):
                await send(data)
            best = min(best, (time.perf_counter() - start) / count)
    finally:
        sock.close()
        drainer.join(10)
        conn.close()
        listener.close()
    return best * 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("loop", nargs="?", default="uvloop", choices=("uvloop", "asyncio"))
    parser.add_argument("--runs", type=int, default=9)
    parser.add_argument("--count", type=int, default=200_000)
    args = parser.parse_args()
    work = best_ns_per_send(args.count, args.runs)
    if args.loop == "uvloop":
        import uvloop

        ns = uvloop.run(work)
    else:
        ns = asyncio.run(work)
    print(f"{args.loop}: {ns:.0f} ns per 64 B lean send (best of {args.runs} x {args.count})")


if __name__ == "__main__":
    main()
