"""The asyncio face against asyncio streams at large messages, as a user would compare them
(issue 26): ``python -m wsp_async bench`` prints the figure; :func:`face_versus_streams`
says how it is measured and why so.
"""

from __future__ import annotations

import asyncio
import gc
import time

from .. import IPPROTO_TCP, TCP_NODELAY
from .benchmodes import new_loop
from .benchrates import peer_process

__all__ = ["face_versus_streams"]


def face_versus_streams(
    kind: str, size: int = 65536, count: int = 1024, pairs: int = 5
) -> dict[str, float]:
    """``await sock.send(data)`` against ``writer.write(data); await writer.drain()``, as
    a user would compare them: adjacent pairs, each side on a fresh connection of
    ``count`` messages, the order alternating, each timed until the receiver has read
    every byte (the sender half-closes, the receiver closes at the end of the stream);
    the median ratio and its range.  ``TCP_NODELAY`` on both, as asyncio sets it.

    The receiver is its own process, draining one connection at a time in its main
    thread into one buffer, as a user's check would.  Two things made the bench disagree
    with such a check (issue 26, ``benchmarks/README.md``): timing only until the bytes
    were in the sender's kernel, and the throughput table's receiver, a new thread per
    connection, under which streams' runs fall into loopback's slow state far more
    often than the face's (face / streams 1.4-2.2x there, 0.8-0.95x against this one
    before the face stopped holding sends of half its buffer or more).
    """
    with peer_process(_SEQUENTIAL_DRAIN) as port:
        return _pairs(kind, port, size, count, pairs)


_SEQUENTIAL_DRAIN = """
import socket
server = socket.create_server(("127.0.0.1", 0))
print(server.getsockname()[1], flush=True)
buffer = bytearray(1 << 20)
while True:
    conn, _ = server.accept()
    with conn:
        while conn.recv_into(buffer):
            pass
"""


def _pairs(kind: str, port: int, size: int, count: int, pairs: int) -> dict[str, float]:
    ratios = []
    for i in range(pairs):
        sides = [_face_to_the_end, _streams_to_the_end]
        if i % 2:
            sides.reverse()
        took = {}
        for side in sides:
            gc.collect()
            with asyncio.Runner(loop_factory=lambda: new_loop(kind)) as runner:
                took[side] = runner.run(side(port, size, count))
        ratios.append(took[_streams_to_the_end] / took[_face_to_the_end])  # face / streams
    ratios.sort()
    return {
        "size": size,
        "count": count,
        "median": ratios[len(ratios) // 2],
        "min": ratios[0],
        "max": ratios[-1],
        "pairs": pairs,
    }


async def _face_to_the_end(port: int, size: int, count: int) -> float:
    """Seconds for ``count`` sends through the asyncio face, until the receiver read them."""
    from .. import aio

    sock = await aio.connect("127.0.0.1", port)
    sock.setsockopt(IPPROTO_TCP, TCP_NODELAY, 1)
    data = b"f" * size
    send = sock.send
    start = time.perf_counter()
    for _ in range(count):
        await send(data)
    await sock.shutdown()
    if await sock.recv_into(bytearray(1)):
        raise RuntimeError("the receiver sent data")
    elapsed = time.perf_counter() - start
    sock.close()
    return elapsed


async def _streams_to_the_end(port: int, size: int, count: int) -> float:
    """The same through asyncio streams (``write`` + ``drain`` per message)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    data = b"s" * size
    write, drain = writer.write, writer.drain
    start = time.perf_counter()
    for _ in range(count):
        write(data)
        await drain()
    writer.write_eof()
    if await reader.read():
        raise RuntimeError("the receiver sent data")
    elapsed = time.perf_counter() - start
    writer.close()
    await writer.wait_closed()
    return elapsed
