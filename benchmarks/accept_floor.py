"""How close any Python accept can come to ``asyncio.start_server``: the floor under the
AcceptEx target of issue 26 (``accept_ex`` >= 0.8x ``start_server``).

``python benchmarks/accept_floor.py [uvloop|asyncio] [--runs N] [--count N]`` accepts
``count`` connections per server, under the load ``accept_rate`` uses (four client
threads in another process, each connecting, waiting for the server's close, connecting
again), with:

- ``start_server``: asyncio's own server (on uvloop, accepted and made a transport in C);
- ``python accept``: a listening socket with ``add_reader``, ``accept()`` in a loop, and
  ``loop.connect_accepted_socket`` per connection in a task -- the least a server written
  in Python must do to give each connection an asyncio transport, with nothing of
  Winsock in it;
- ``python accept, no transport``: the same, closing each connection at once;
- ``accept_ex``: the provider's ``aio.Listener.accept_ex``, 16 awaited at a time.

Each run prints accepts per second and each one's ratio to ``start_server`` in that run.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import time
from collections.abc import Awaitable, Callable
from typing import Any

from wsp_async import aio
from wsp_async.tools.benchmodes import new_loop
from wsp_async.tools.benchrates import _start_load


async def _until_done(address: Any, count: int, done: asyncio.Event) -> None:
    load = _start_load(address, count)
    await done.wait()
    await asyncio.get_running_loop().run_in_executor(None, load.wait, 30)


class _Counter:
    """Counts accepts; times from the first (the load's start-up is not the server's)."""

    def __init__(self, count: int) -> None:
        self.count, self.accepted, self.start, self.end = count, 0, 0.0, 0.0
        self.done = asyncio.Event()

    def one(self) -> None:
        self.accepted += 1
        if self.accepted == 1:
            self.start = time.perf_counter()
        if self.accepted == self.count:
            self.end = time.perf_counter()
            self.done.set()

    def rate(self) -> float:
        return (self.count - 1) / (self.end - self.start)


async def start_server(count: int) -> float:
    counter = _Counter(count)
    writers: list[asyncio.StreamWriter] = []

    def on_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()
        writers.append(writer)
        counter.one()

    server = await asyncio.start_server(on_connection, "127.0.0.1", 0, backlog=128)
    await _until_done(server.sockets[0].getsockname()[:2], count, counter.done)
    await asyncio.gather(*(w.wait_closed() for w in writers), return_exceptions=True)
    server.close()
    await server.wait_closed()
    return counter.rate()


class _CloseAtOnce(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport.close()


async def python_accept(count: int, transport: bool = True) -> float:
    loop = asyncio.get_running_loop()
    counter = _Counter(count)
    listener = socket.create_server(("127.0.0.1", 0), backlog=128)
    listener.setblocking(False)
    tasks: set[asyncio.Task[Any]] = set()

    def readable() -> None:
        while True:
            try:
                conn, _peer = listener.accept()
            except BlockingIOError:
                return
            conn.setblocking(False)
            counter.one()
            if transport:
                task = loop.create_task(loop.connect_accepted_socket(_CloseAtOnce, conn))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            else:
                conn.close()

    loop.add_reader(listener.fileno(), readable)
    try:
        await _until_done(listener.getsockname(), count, counter.done)
    finally:
        loop.remove_reader(listener.fileno())
        listener.close()
    await asyncio.gather(*tasks, return_exceptions=True)
    return counter.rate()


async def accept_ex(count: int) -> float:
    counter = _Counter(count)
    listener = await aio.listen("127.0.0.1", 0, backlog=128)

    async def acceptor() -> None:
        while counter.accepted < count:
            sock, _peer, _data = await listener.accept_ex()
            sock.close()
            counter.one()

    tasks = [asyncio.ensure_future(acceptor()) for _ in range(16)]
    try:
        await _until_done(listener.address, count, counter.done)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        listener.close()
    return counter.rate()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("kind", nargs="?", default="uvloop", choices=("uvloop", "asyncio"))
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--count", type=int, default=2000)
    args = parser.parse_args()
    servers: dict[str, Callable[[int], Awaitable[float]]] = {
        "start_server": start_server,
        "python accept": python_accept,
        "python accept, no transport": lambda n: python_accept(n, transport=False),
        "accept_ex": accept_ex,
    }
    count = args.count - args.count % 4  # the load's four threads share it evenly
    for _ in range(args.runs):
        rates: dict[str, float] = {}
        for name, server in servers.items():
            loop = new_loop(args.kind)
            try:
                rates[name] = loop.run_until_complete(server(count))
            finally:
                loop.close()
        base = rates["start_server"]
        print(
            args.kind,
            " | ".join(
                f"{name} {rate / 1000:.1f}k/s ({rate / base:.2f}x)" for name, rate in rates.items()
            ),
        )


if __name__ == "__main__":
    main()
