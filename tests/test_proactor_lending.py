"""The Proactor's thread does the I/O of its own operations while its loop runs (issue
23, item 2; SPEC S17.3): the face's provider lends its loop to that thread, whose waits on
its port run it.  Counts and outcomes, never times; peers are plain sockets on 127.0.0.1
served by plain threads; both loop kinds under the face (the asyncio kind is stepped,
uvloop runs until a stop).
"""

from __future__ import annotations

import asyncio
import os
import socket
import threading
from typing import Any

import pytest

from .test_overlapped import pair as _pair


def _echo_peer(server: socket.socket, rounds: int) -> threading.Thread:
    """A plain thread that accepts one connection and echoes ``rounds`` 64-byte messages."""

    def run() -> None:
        conn, _ = server.accept()
        with conn:
            conn.settimeout(30)
            for _ in range(rounds):
                data = b""
                while len(data) < 64:
                    chunk = conn.recv(64 - len(data))
                    if not chunk:
                        return
                    data += chunk
                conn.sendall(data)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


async def _echo(rounds: int) -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        peer = _echo_peer(server, rounds)
        reader, writer = await asyncio.open_connection(*server.getsockname())
        for i in range(rounds):
            message = bytes([i % 256]) * 64
            writer.write(message)
            assert await reader.readexactly(64) == message
        writer.close()
        await writer.wait_closed()
        peer.join(30)


def test_the_proactors_own_operations_complete_on_its_thread(face: Any, monkeypatch: Any) -> None:
    # SPEC S17.3 (issue 23, item 2): while the Proactor's loop runs, every packet of its
    # echo -- sends, receives -- is queued on its own thread: no completion crosses threads.
    from wsp_async import proactor
    from wsp_async._completion.port import CompletionPort

    io = face.provider().io_loop
    queued_on: list[int] = []
    real_queue = CompletionPort.queue

    def recording(self: CompletionPort, packet: Any, front: bool = False) -> bool:
        queued_on.append(threading.get_ident())
        return real_queue(self, packet, front)

    async def main() -> int | None:
        await _echo(5)  # connections made, descriptors adopted
        monkeypatch.setattr(CompletionPort, "queue", recording)
        await _echo(100)
        monkeypatch.undo()
        return io.borrower

    with asyncio.Runner(loop_factory=proactor.new_event_loop) as runner:
        borrower = runner.run(main())
    assert borrower == threading.get_ident()
    assert io.borrower is None  # given back when the loop stopped
    assert len(queued_on) >= 200, len(queued_on)
    assert set(queued_on) == {threading.get_ident()}


def test_after_the_loop_stops_the_providers_own_thread_does_the_io(face: Any) -> None:
    # SPEC S17.3: the loop is lent only while the Proactor runs; afterwards an operation
    # started and awaited on the same thread completes through the provider's own thread.
    from wsp_async import proactor

    with asyncio.Runner(loop_factory=proactor.new_event_loop) as runner:
        runner.run(_echo(3))
    io = face.provider().io_loop
    assert io.borrower is None and not io.here()
    port = face.CreateIoCompletionPort(face.INVALID_HANDLE_VALUE, face.NULL, 0, 0)
    mine, peer = _pair()
    try:
        face.CreateIoCompletionPort(mine.fileno(), port, 7, 0)
        recv = face.Overlapped(face.NULL)
        recv.WSARecv(mine.fileno(), 100, 0)
        peer.sendall(b"after")
        status = face.GetQueuedCompletionStatus(port, 10_000)
        assert status is not None and status[1:] == (5, 7, recv.address)
        assert recv.getresult() == b"after"
    finally:
        mine.close()
        peer.close()
        face.CloseHandle(port)


def test_getresult_waiting_on_the_proactors_thread_runs_the_loop(face: Any) -> None:
    # SPEC S17.1, S7.3: ``getresult(True)`` on the thread the loop is lent to must not wait
    # for itself: it runs the loop until the operation is done.
    from wsp_async import proactor

    async def main() -> bytes:
        mine, peer = _pair()
        try:
            recv = face.Overlapped(face.NULL)
            recv.WSARecv(mine.fileno(), 100, 0)
            assert recv.pending
            peer.sendall(b"waited")
            return recv.getresult(True)  # type: ignore[no-any-return]
        finally:
            mine.close()
            peer.close()

    with asyncio.Runner(loop_factory=proactor.new_event_loop) as runner:
        assert runner.run(main()) == b"waited"


def test_two_proactors_on_two_threads_each_finish_their_echo(face: Any) -> None:
    # SPEC S17.3: one of two Proactors running at once holds the loop; the other's
    # operations run in its drives or on the provider's thread.  Both finish, every
    # message checked, and the loop is given back once both stopped.
    from wsp_async import proactor

    io = face.provider().io_loop
    started = threading.Barrier(2, timeout=30)
    outcomes: dict[str, Any] = {}

    def run(name: str) -> None:
        async def main() -> int | None:
            started.wait()
            await _echo(150)
            return io.borrower

        try:
            with asyncio.Runner(loop_factory=proactor.new_event_loop) as runner:
                outcomes[name] = runner.run(main())
        except BaseException as exc:  # reported below
            outcomes[name] = exc

    threads = [threading.Thread(target=run, args=(name,)) for name in ("a", "b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not any(thread.is_alive() for thread in threads)
    assert not any(isinstance(v, BaseException) for v in outcomes.values()), outcomes
    idents = {thread.ident for thread in threads}
    assert set(outcomes.values()) <= idents | {None}
    assert any(v is not None for v in outcomes.values())  # one of them held the loop
    assert io.borrower is None


def test_a_loop_that_stops_with_an_exception_gives_the_loop_back(face: Any) -> None:
    # SPEC S17.3 (hostile): a callback that raises out of run_forever (SystemExit) still
    # gives the provider's loop back; the face then works from the same thread again.
    from wsp_async import proactor

    io = face.provider().io_loop
    loop = proactor.new_event_loop()
    try:
        loop.run_until_complete(_echo(2))

        def leave() -> None:
            raise SystemExit(3)

        loop.call_soon(leave)
        with pytest.raises(SystemExit):
            loop.run_forever()
        assert io.borrower is None
        loop.run_until_complete(_echo(2))  # lent again, and given back again
        assert io.borrower is None
    finally:
        loop.close()


def test_a_write_reaches_its_loopback_peer_within_a_few_iterations_of_a_busy_loop(
    face: Any,
) -> None:
    # SPEC S17.3: delivery does not wait for another thread to be scheduled.  The loop is
    # kept busy (a callback that schedules itself again each iteration, so every wait on
    # the port is a poll); a write on one socket reaches data_received of its loopback
    # peer, both on the Proactor, within a few iterations (the issue measured ~1,600 when
    # the provider's own thread did the I/O).
    from wsp_async import proactor

    async def main() -> list[int]:
        loop = asyncio.get_running_loop()
        iterations = 0
        busy = True

        def spin() -> None:
            nonlocal iterations
            iterations += 1
            if busy:
                loop.call_soon(spin)

        arrived: asyncio.Queue[int] = asyncio.Queue()

        class Peer(asyncio.Protocol):
            def data_received(self, data: bytes) -> None:
                arrived.put_nowait(iterations)

        server = await loop.create_server(Peer, "127.0.0.1", 0)
        client, _ = await loop.create_connection(
            asyncio.Protocol, *server.sockets[0].getsockname()[:2]
        )
        spans = []
        try:
            for _ in range(3):  # the first write sets things up
                await asyncio.sleep(0)
                spin()
                before = iterations
                client.write(b"x")
                spans.append(await asyncio.wait_for(arrived.get(), 30) - before)
                busy = False
                await asyncio.sleep(0)
                busy = True
        finally:
            busy = False
            client.close()
            server.close()
            await server.wait_closed()
        return spans

    with asyncio.Runner(loop_factory=proactor.new_event_loop) as runner:
        spans = runner.run(main())
    assert max(spans[1:]) <= 8, spans


def test_a_port_wait_inside_the_lent_loops_callbacks_is_refused_not_deadlocked(
    face: Any,
) -> None:
    # SPEC S7.3, S13.7 (hostile): code the provider's loop runs on the Proactor's thread
    # (a routine, a callback) may not wait on a port: that thread would wait for itself.
    # It is refused with WSAEWOULDBLOCK, as on the provider's own thread; outside the
    # provider's callbacks the same thread may wait (its wait runs the loop).
    import wsp_async as w
    from wsp_async import proactor

    from .test_iocp import gqcs

    async def main() -> tuple[Any, Any]:
        port = w.CreateIoCompletionPort(w.INVALID_HANDLE_VALUE, None, 0, 0)
        try:
            inside: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

            def callback() -> None:
                inside.set_result(gqcs(port, 5_000))

            face.provider().loop.call_soon(callback)  # runs in the Proactor's next wait
            got_inside = await asyncio.wait_for(inside, 30)
            w.PostQueuedCompletionStatus(port, 9, "outside", None)
            return got_inside, gqcs(port, 5_000)
        finally:
            w.CloseHandle(port)

    with asyncio.Runner(loop_factory=proactor.new_event_loop) as runner:
        inside, outside = runner.run(main())
    assert (inside[0], inside[4]) == (False, w.WSAEWOULDBLOCK)
    assert outside[:3] == (True, 9, "outside")


def test_a_poll_right_after_a_productive_turn_skips_one_turn_and_the_next_poll_turns(
    face: Any,
) -> None:
    # SPEC S17.3 (docs/proactor.md, "Speed"): on the Proactor's thread a poll of a port
    # (a zero wait) turns the provider's lent loop, except the poll right after one whose
    # turn found packets -- the Proactor polls again after every packet, and that second
    # turn at once would find nothing.  The skipped poll reports nothing; the next poll
    # turns the loop and finds what came meanwhile: nothing waits more than one poll.
    import wsp_async as w
    from wsp_async import proactor

    async def main() -> list[Any]:
        port = w.CreateIoCompletionPort(w.INVALID_HANDLE_VALUE, None, 0, 0)
        lent = face.provider().loop
        try:

            def post(n: int) -> None:
                w.PostQueuedCompletionStatus(port, n, "key", None)

            got = []
            lent.call_soon(post, 1)  # runs in the next turn of the lent loop
            got.append(face.GetQueuedCompletionStatus(port, 0))  # turns: finds 1
            lent.call_soon(post, 2)
            got.append(face.GetQueuedCompletionStatus(port, 0))  # right after: no turn
            got.append(face.GetQueuedCompletionStatus(port, 0))  # turns: finds 2
            got.append(face.GetQueuedCompletionStatus(port, 0))  # turns: nothing came
            lent.call_soon(post, 3)
            got.append(face.GetQueuedCompletionStatus(port, 0))  # an empty turn before: turns
            return got
        finally:
            w.CloseHandle(port)

    with asyncio.Runner(loop_factory=proactor.new_event_loop) as runner:
        got = runner.run(main())
    assert [None if g is None else g[1] for g in got] == [1, None, 2, None, 3], got


def test_a_child_made_by_fork_runs_its_own_proactor(face: Any) -> None:
    # SPEC S17.3 (hostile): a process forked while the face's provider runs -- a library's
    # multiprocessing worker, as proxy.py's in aiohttp's suite -- gets no copy of that
    # provider's thread.  The child's first Proactor loop must not wait for it (it hung,
    # lending the loop forever): it runs an echo against a plain socket on a provider
    # of its own.  The parent's provider is untouched.
    from wsp_async import proactor

    from .conftest import child_exit, fork_quietly

    async def echo(port: int) -> bytes:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"ping")
        got = await reader.readexactly(4)
        writer.close()
        await writer.wait_closed()
        return got

    async def touch(port: int) -> None:
        _reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.close()
        await writer.wait_closed()

    with asyncio.Runner(loop_factory=proactor.new_event_loop) as runner:  # the face in use
        with socket.create_server(("127.0.0.1", 0)) as server:
            peer = _echo_peer(server, 0)
            runner.run(asyncio.wait_for(touch(server.getsockname()[1]), 30))
            peer.join(30)
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        pid = fork_quietly()
        if pid == 0:  # the child: its own Proactor, its own provider; never back into pytest
            code = 1
            try:
                with asyncio.Runner(loop_factory=proactor.new_event_loop) as runner:
                    code = 0 if runner.run(asyncio.wait_for(echo(port), 20)) == b"ping" else 2
            finally:
                os._exit(code)
        server.settimeout(30)
        try:
            conn, _ = server.accept()  # the child's connection, served with plain calls
            with conn:
                conn.settimeout(30)
                conn.sendall(conn.recv(4))
        except OSError:
            pass  # the child never came: its exit status says so below
        code = child_exit(pid)
    assert code == 0, code
