"""The asyncio face's sends and receives cancelled at random moments, checked by a plain peer.

Cancelling a task that awaits ``send`` withdraws the send if it was not handed on yet, and
otherwise lets it complete (``README``; S15.1, the boundary of S10.3); cancelling a
``recv_into`` withdraws it unless bytes were already given to it.  So whatever the moment:
the peer receives the
messages in posting order, each whole or not at all, every one whose ``send`` returned
among them; and the bytes the face's completed receives hold are exactly the peer's
stream, nothing lost, nothing twice.  One sender and one receiver task share the socket;
each operation runs in a task of its own, cancelled (or not) after 0 to 5 turns of the
loop.  The peer is a plain socket served by two threads.  Both loops.
"""

from __future__ import annotations

import asyncio
import os
import random
import socket
import struct
import threading

import pytest

import wsp_async as w
from wsp_async import aio
from wsp_async.trace import TraceRecord

SEEDS = range(12) if os.environ.get("WSP_SOAK") else range(3)


async def _walk(seed: int) -> tuple[int, int]:
    rng = random.Random(seed)
    server = socket.create_server(("127.0.0.1", 0))
    sock = await aio.connect(*server.getsockname()[:2])
    conn, _ = server.accept()
    conn.settimeout(60)
    # Small buffers, so that sends pend and cancels meet them at every stage; not tiny (a
    # receive window of a few KiB makes loopback TCP crawl).
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    sock.setsockopt(w.SOL_SOCKET, w.SO_SNDBUF, 8192)
    to_face = os.urandom(200_000)
    at_peer = bytearray()
    read_all = threading.Event()

    def peer_reads() -> None:
        while chunk := conn.recv(rng.choice([100, 4096, 65536])):
            at_peer.extend(chunk)
        read_all.set()

    def peer_writes() -> None:
        view = memoryview(to_face)
        while view:
            view = view[conn.send(view[: rng.choice([10, 1000, 30000])]) :]

    for job in (peer_reads, peer_writes):
        threading.Thread(target=job, daemon=True).start()
    outcomes: dict[int, str] = {}

    async def sender() -> None:
        for seq in range(150):
            size = rng.choice([1, 50, 3000, 40_000])
            message = struct.pack("!II", seq, size) + bytes([seq % 251]) * size
            task = asyncio.ensure_future(sock.send(message))
            for _ in range(rng.choice([0, 0, 1, 2, 5])):
                await asyncio.sleep(0)
            if rng.random() < 0.3:
                task.cancel()
            try:
                assert await task == len(message)
                outcomes[seq] = "sent"
            except asyncio.CancelledError:
                outcomes[seq] = "cancelled"

    received = bytearray()

    async def receiver() -> None:
        while len(received) < len(to_face):
            buffer = bytearray(rng.choice([1, 100, 5000, 100_000]))
            task = asyncio.ensure_future(sock.recv_into(buffer))
            for _ in range(rng.choice([0, 1, 3])):
                await asyncio.sleep(0)
            if rng.random() < 0.3:
                task.cancel()
            try:
                n = await task
            except asyncio.CancelledError:
                continue
            assert n, "the peer does not close first"
            received.extend(buffer[:n])

    try:
        await asyncio.wait_for(asyncio.gather(sender(), receiver()), 120)
        await sock.shutdown()
        assert await asyncio.get_running_loop().run_in_executor(None, read_all.wait, 60)
    finally:
        sock.close()
        conn.close()
        server.close()
    assert bytes(received) == to_face  # every byte once, in order
    seen, at = [], 0
    while at < len(at_peer):
        seq, size = struct.unpack_from("!II", at_peer, at)
        body = at_peer[at + 8 : at + 8 + size]
        assert body == bytes([seq % 251]) * size, f"message {seq} is torn"
        seen.append(seq)
        at += 8 + size
    assert seen == sorted(seen), "messages out of posting order"
    assert {seq for seq, how in outcomes.items() if how == "sent"} <= set(seen)
    cancelled = [seq for seq, how in outcomes.items() if how == "cancelled"]
    return len(cancelled), len(set(cancelled) & set(seen))


@pytest.mark.timeout(600)
@pytest.mark.parametrize("seed", SEEDS)
async def test_cancels_at_any_moment_tear_reorder_lose_or_double_nothing(seed: int) -> None:
    # SPEC S15.1, S10.3, S5.3, S2.4
    cancelled, arrived = await _walk(seed)
    assert cancelled  # the walk did cancel sends (some of them after they were handed on)
    assert arrived <= cancelled


async def test_a_receive_cancelled_as_its_bytes_arrive_returns_them() -> None:
    # SPEC S15.1, S2.4: a receive that already holds its bytes when its task is cancelled
    # completed normally; its bytes are in the caller's buffer and nowhere else, so the
    # await returns them rather than raising CancelledError (which lost them: a hole in
    # the stream, found by the walk above on the Proactor).  The cancel is made from the
    # tracer, at the completion's own record, so that it meets the completion in one step.
    server = socket.create_server(("127.0.0.1", 0))
    sock = await aio.connect(*server.getsockname()[:2])
    conn, _ = server.accept()
    buffer = bytearray(100)
    task = asyncio.ensure_future(sock.recv_into(buffer))
    for _ in range(3):
        await asyncio.sleep(0)  # posted, and pending: nothing has been sent yet
    assert not task.done()

    def tracer(record: TraceRecord) -> None:
        if record.event == "complete" and record.kind == "recv":
            task.cancel()

    sock.provider.tracer = tracer
    try:
        conn.sendall(b"hello")
        assert await asyncio.wait_for(task, 10) == 5
    finally:
        sock.provider.tracer = None
        sock.close()
        conn.close()
        server.close()
    assert bytes(buffer[:5]) == b"hello"
