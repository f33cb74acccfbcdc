"""The Python cost of one overlapped operation, as a ratio to a floor measured alongside.

Issue 26 measures the library's own cost per operation: ``WSPSend`` with a completion
routine, posted on the provider's loop thread in bursts of 256, each burst timed until
its last routine ran.  Seconds per operation depend on the machine, so the figure is
reported as a ratio to a *floor* measured by the same interpreter in the same run: the
least Python any completion mechanism must run per operation -- build a four-slot record,
append it to a deque, pop it, call a four-argument routine.  (Raw ``transport.write`` is
no stable yardstick: on a two-core machine it costs 2 or 5 us per call depending on how
the receiver is scheduled.)

The peer is a plain socket drained by a thread of this process; the sends are 64 bytes.
Each burst is timed on its own and the figure is a low percentile of the bursts (the
2nd), not their mean: on a shared two-core machine a mean carries every interruption of
the run, and the floor is timed the same way (the least of several rounds), so that the
ratio compares like with like.  Measured so, four runs in a row stayed within 3% of one
another (15.9-16.4x) where the mean had spread over 30-50% in the same sitting (issue 26,
``benchmarks/README.md``).
"""

from __future__ import annotations

import asyncio
import collections
import socket
import threading
import time
from typing import Any

from .. import (
    AF_INET,
    INT,
    SOCK_STREAM,
    WSA_FLAG_OVERLAPPED,
    WSABUF,
    WSAOVERLAPPED,
    WSATHREADID,
    Provider,
)

__all__ = ["floor_per_op", "per_op_cost", "spi_per_op"]

BURST = 256


class _Record:
    __slots__ = ("count", "error", "flags", "overlapped")

    def __init__(self, error: int, count: int, overlapped: object, flags: int) -> None:
        self.error = error
        self.count = count
        self.overlapped = overlapped
        self.flags = flags


def floor_per_op(n: int = 100_000, rounds: int = 20) -> float:
    """Seconds per operation of the least a completion needs (see the module doc): the
    least of ``rounds`` rounds of ``n // rounds`` operations."""
    queue: collections.deque[_Record] = collections.deque()
    ran = [0]

    def routine(error: int, count: int, overlapped: object, flags: int) -> None:
        ran[0] += 1

    per_round = max(1, n // rounds)
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(per_round):
            queue.append(_Record(0, 64, None, 0))
            record = queue.popleft()
            routine(record.error, record.count, record.overlapped, record.flags)
        best = min(best, time.perf_counter() - start)
    return best / per_round


async def spi_per_op(bursts: int = 100) -> float:
    """Seconds per ``WSPSend`` + routine on the provider's loop thread (bursts of 256)."""
    loop = asyncio.get_running_loop()
    server = socket.create_server(("127.0.0.1", 0))
    drained = threading.Event()

    def drain() -> None:
        conn, _ = server.accept()
        with conn:
            while conn.recv(1 << 20):
                pass
        drained.set()

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    provider = Provider(loop=loop)
    err = INT()
    try:
        s = provider.WSPSocket(AF_INET, SOCK_STREAM, 0, None, 0, WSA_FLAG_OVERLAPPED, err)
        await provider.connect_async(s, server.getsockname())
        me = WSATHREADID.current()
        buffers = [WSABUF(64, b"x" * 64)]
        structures = [WSAOVERLAPPED() for _ in range(BURST)]
        left = [0]
        burst_done = asyncio.Event()

        def routine(error: int, count: int, overlapped: Any, flags: int) -> None:
            left[0] -= 1
            if not left[0]:
                burst_done.set()

        send = provider.WSPSend
        times: list[float] = []
        for i in range(bursts + 5):
            left[0] = BURST
            burst_done.clear()
            start = time.perf_counter()
            for ov in structures:
                send(s, buffers, 1, None, 0, ov, routine, me, err)
            await burst_done.wait()
            if i >= 5:  # the first bursts warm the path up
                times.append(time.perf_counter() - start)
            await asyncio.sleep(0)
        provider.WSPCloseSocket(s, err)
    finally:
        await provider.aclose()
        server.close()
    await asyncio.get_running_loop().run_in_executor(None, drained.wait, 10)
    times.sort()
    return times[len(times) // 50] / BURST  # the 2nd percentile (see the module doc)


def per_op_cost(kind: str, bursts: int = 100, repeats: int = 3) -> dict[str, float]:
    """The best of ``repeats`` runs on a loop of ``kind``, and the floor measured between
    them: seconds each, and their ratio."""
    from .benchmodes import new_loop

    costs, floors = [], []
    for _ in range(repeats):
        floors.append(floor_per_op())
        with asyncio.Runner(loop_factory=lambda: new_loop(kind)) as runner:
            costs.append(runner.run(spi_per_op(bursts)))
    cost, floor = min(costs), min(floors)
    return {"per_op_us": cost * 1e6, "floor_us": floor * 1e6, "ratio": cost / floor}
