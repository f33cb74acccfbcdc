"""Real third-party asyncio software on the Proactor (issue 23, item 6; SPEC S17).

aiohttp (an HTTP server and client) and websockets (a websocket server, with clients
from websockets' own threaded implementation as independent peers) run real programs
on CPython's ProactorEventLoop over wsp_async: many concurrent requests, echo with
many clients, orderly and abrupt closes, cancellation.  Every reply is checked, and
nothing may be logged at ERROR or reported to the loop's exception handler.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import struct
import threading
from collections.abc import Coroutine
from typing import Any

# Test dependencies (pyproject's test extra): missing, the module fails, never skips.
import aiohttp
import websockets
from aiohttp import web
from websockets.sync.client import connect as ws_connect


class _Errors(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record.getMessage())


def _on_the_proactor(main: Coroutine[Any, Any, Any]) -> list[str]:
    """Run ``main`` on the Proactor; the errors logged or handed to the exception handler."""
    from wsp_async import proactor

    errors = _Errors()
    logging.getLogger().addHandler(errors)
    reported: list[str] = []

    async def wrapped() -> None:
        loop = asyncio.get_running_loop()
        loop.set_exception_handler(
            lambda _loop, ctx: reported.append(f"{ctx.get('message')}: {ctx.get('exception')!r}")
        )
        await main

    try:
        with asyncio.Runner(loop_factory=proactor.ProactorEventLoop) as runner:
            runner.run(wrapped())
    finally:
        logging.getLogger().removeHandler(errors)
    return errors.records + reported


def test_aiohttp_serves_concurrent_requests_and_cancellations_on_the_proactor() -> None:
    # SPEC S17.2, S17.3: 300 concurrent requests over a pooled client, each reply its own;
    # requests cancelled while the server holds them.  (A client that resets mid-request
    # makes aiohttp log an error on every loop, the selector one included.)
    release = asyncio.Event()

    async def main() -> None:
        async def echo(request: Any) -> Any:
            body = await request.read()
            return web.Response(body=body[::-1], headers={"X-N": request.match_info["n"]})

        async def slow(request: Any) -> Any:
            await release.wait()
            return web.Response(text="late")

        app = web.Application()
        app.router.add_post("/echo/{n}", echo)
        app.router.add_get("/slow", slow)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        host, port = site._server.sockets[0].getsockname()[:2]  # type: ignore[union-attr]
        base = f"http://{host}:{port}"
        try:
            connector = aiohttp.TCPConnector(limit=50)
            async with aiohttp.ClientSession(connector=connector) as session:

                async def one(n: int) -> None:
                    payload = f"request {n} ".encode() * (1 + n % 40)
                    async with session.post(f"{base}/echo/{n}", data=payload) as reply:
                        assert reply.status == 200
                        assert reply.headers["X-N"] == str(n)
                        assert await reply.read() == payload[::-1]

                await asyncio.gather(*(one(n) for n in range(300)))
                cancelled = [asyncio.create_task(session.get(f"{base}/slow")) for _ in range(5)]
                await asyncio.sleep(0.05)
                for task in cancelled:
                    task.cancel()
                results = await asyncio.gather(*cancelled, return_exceptions=True)
                assert all(isinstance(r, asyncio.CancelledError) for r in results)
                release.set()
                await one(1000)  # the server still serves
        finally:
            await runner.cleanup()

    assert _on_the_proactor(main()) == []


def test_websockets_echoes_to_many_clients_and_survives_abrupt_ones_on_the_proactor() -> None:
    # SPEC S17.2, S17.3: a websockets server on the Proactor; 16 clients in threads
    # (websockets' own threaded client: independent code, plain sockets) echo 25
    # messages each and close orderly; two more vanish with a reset.
    from websockets.exceptions import ConnectionClosed

    async def main() -> None:
        async def echo(conn: Any) -> None:
            try:
                async for message in conn:
                    await conn.send(message)
            except ConnectionClosed:
                pass  # the abrupt clients

        async with websockets.serve(echo, "127.0.0.1", 0) as server:
            host, port = next(iter(server.sockets)).getsockname()[:2]
            uri = f"ws://{host}:{port}"
            failures: list[str] = []

            def client(n: int) -> None:
                try:
                    with ws_connect(uri, open_timeout=30, close_timeout=30) as conn:
                        for i in range(25):
                            message = f"{n}:{i}:" + "x" * (i * 37)
                            conn.send(message)
                            if conn.recv(timeout=30) != message:
                                failures.append(f"{n}:{i} wrong echo")
                except Exception as exc:  # reported below, never lost
                    failures.append(f"{n}: {exc!r}")

            def abrupt() -> None:
                # A plain socket: the opening handshake, then a reset instead of a close.
                raw = socket.create_connection((host, port), timeout=30)
                raw.sendall(
                    b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                    b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                    b"Sec-WebSocket-Version: 13\r\n\r\n"
                )
                answer = b""
                while b"\r\n\r\n" not in answer:
                    chunk = raw.recv(4096)
                    if not chunk:
                        break
                    answer += chunk
                if not answer.startswith(b"HTTP/1.1 101"):
                    failures.append(f"abrupt: {answer[:40]!r}")
                raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                raw.close()

            threads = [threading.Thread(target=client, args=(n,)) for n in range(16)]
            threads += [threading.Thread(target=abrupt) for _ in range(2)]
            for t in threads:
                t.start()
            loop = asyncio.get_running_loop()
            for t in threads:
                await loop.run_in_executor(None, t.join, 60)
            assert failures == []
            assert not any(t.is_alive() for t in threads)

    assert _on_the_proactor(main()) == []


def test_the_bench_measures_real_programs_on_both_loops() -> None:
    # SPEC S17: the bench's real-program rows (issue 23, item 7) run whole: every request
    # and echo checked on the selector loop and on the Proactor, rates and a ratio out.
    from wsp_async.tools.realbench import real_program_rates

    rates = real_program_rates(requests=60, echoes=40)
    assert set(rates) == {"http", "websocket"}
    for row in rates.values():
        assert row["selector"] > 0 and row["proactor"] > 0
        assert row["ratio"] == row["proactor"] / row["selector"]
        assert row["selector_faults"] == row["proactor_faults"] == 0


def test_the_call_shares_sort_the_proactors_python_by_owner() -> None:
    # Issue 23, item 7 (SPEC S17.3): the count that bounds the Proactor's speed sorts every
    # Python call of the real programs by owner.  On the selector loop none is the
    # emulator's; on the Proactor the emulator's are counted apart from asyncio's own,
    # which are more than on the selector loop (windows_events and proactor_events, the
    # code Windows runs too) -- the share no emulator can take away.
    from wsp_async.tools.callshare import call_shares

    shares = call_shares(20)
    assert set(shares) == {"echo", "websocket", "http"}
    for loops in shares.values():
        assert "emulator" not in loops["selector"], loops
        assert loops["proactor"]["emulator"] > 0, loops
        assert loops["proactor"]["asyncio"] > loops["selector"]["asyncio"], loops
