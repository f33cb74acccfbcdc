"""Real programs' rates on the Proactor against the selector loop (issue 23, item 7).

What a user of CPython's ProactorEventLoop over wsp_async meets is not one send or one
echo but a library's whole program: an HTTP server answering a pooled client's concurrent
requests, a websocket server echoing.  Each is run here on the selector loop and on the
Proactor, in the same process and the same run, and reported as a rate and a ratio.

The libraries are aiohttp and websockets (the project's test extras); where either is
not installed its row is left out rather than failing the bench.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
import warnings
from collections.abc import Callable, Coroutine
from typing import Any

__all__ = ["http_requests", "real_program_rates", "websocket_echoes"]


async def http_requests(requests: int, concurrency: int = 50) -> float:
    """Seconds for ``requests`` GETs through one pooled aiohttp client, ``concurrency``
    at a time, each reply checked, against an aiohttp server on the same loop."""
    import aiohttp
    from aiohttp import web

    async def hello(request: web.Request) -> web.Response:
        return web.Response(body=b"x" * 64)

    app = web.Application()
    app.router.add_get("/", hello)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    gate = asyncio.Semaphore(concurrency)
    try:
        async with aiohttp.ClientSession() as session:

            async def one() -> None:
                async with gate, session.get(f"http://127.0.0.1:{port}/") as reply:
                    if await reply.read() != b"x" * 64:
                        raise AssertionError("a wrong reply")

            start = time.perf_counter()
            await asyncio.gather(*(one() for _ in range(requests)))
            return time.perf_counter() - start
    finally:
        await runner.cleanup()


async def websocket_echoes(echoes: int, clients: int = 4) -> float:
    """Seconds for ``echoes`` 64-byte websocket echoes, spread over ``clients``
    connections that each wait for a reply before the next message."""
    from websockets.asyncio.client import connect
    from websockets.asyncio.server import serve

    async def echo(ws: Any) -> None:
        async for message in ws:
            await ws.send(message)

    async with serve(echo, "127.0.0.1", 0) as server:
        port = next(iter(server.sockets)).getsockname()[1]

        async def client(count: int) -> None:
            async with connect(f"ws://127.0.0.1:{port}") as ws:
                for _ in range(count):
                    await ws.send(b"m" * 64)
                    if await ws.recv() != b"m" * 64:
                        raise AssertionError("a wrong echo")

        start = time.perf_counter()
        await asyncio.gather(*(client(echoes // clients) for _ in range(clients)))
        return time.perf_counter() - start


class _Count(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.count += 1


def _run(
    factory: Callable[[], asyncio.AbstractEventLoop], main: Coroutine[Any, Any, float]
) -> tuple[float, int]:
    """Seconds taken, and the errors asyncio logged plus the sockets left to the
    collector meanwhile: counted, not printed, and the collector run here so that no
    warning escapes into a later run.  (On the Proactor a program's socket once logged
    Linux's ENOTCONN from ``shutdown`` and leaked; docs/proactor.md, "What differs".)"""
    logger = logging.getLogger("asyncio")
    counter, propagate = _Count(), logger.propagate
    logger.addHandler(counter)
    logger.propagate = False
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ResourceWarning)
            with asyncio.Runner(loop_factory=factory) as runner:
                took = runner.run(main)
            gc.collect()
        leaked = sum(issubclass(w.category, ResourceWarning) for w in caught)
        return took, counter.count + leaked
    finally:
        logger.removeHandler(counter)
        logger.propagate = propagate


def real_program_rates(requests: int = 1000, echoes: int = 2000) -> dict[str, Any]:
    """Requests/s and echoes/s on the selector loop and on the Proactor, with the ratio
    Proactor/selector; each figure the better of two runs (the first warms imports)."""
    from .. import proactor

    loops: dict[str, Callable[[], asyncio.AbstractEventLoop]] = {
        "selector": asyncio.SelectorEventLoop,
        "proactor": proactor.ProactorEventLoop,
    }
    programs: dict[str, tuple[Callable[[int], Coroutine[Any, Any, float]], int]] = {
        "http": (http_requests, requests),
        "websocket": (websocket_echoes, echoes),
    }
    rates: dict[str, Any] = {}
    for name, (program, count) in programs.items():
        try:
            __import__("aiohttp" if name == "http" else "websockets")
        except ImportError:
            continue
        row: dict[str, float] = {}
        for kind, factory in loops.items():
            runs = [_run(factory, program(count)) for _ in range(2)]
            row[kind] = count / min(took for took, _ in runs)
            row[f"{kind}_faults"] = sum(errors for _, errors in runs)
        row["ratio"] = row["proactor"] / row["selector"]
        rates[name] = row
    return rates
