"""The Proactor as real asyncio software sees it (issue 23): Windows' moments (SPEC S17.3),
no call on a loop's thread waiting for the provider's thread (S15.2), close as on
Windows, and a Proactor for every loop a run makes.  Peers are plain sockets on
127.0.0.1; both loop kinds under the face.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import socket
import struct
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import wsp_async as w

from .conftest import loop_held, run_script
from .test_overlapped import pair as _pair


def _returns_while_the_loop_is_held(loop: asyncio.AbstractEventLoop, call: Any) -> bool:
    """Whether ``call()``, made on another thread while ``loop`` is held busy, returns."""
    returned = threading.Event()

    def run() -> None:
        call()
        returned.set()

    thread = threading.Thread(target=run)
    with loop_held(loop):
        thread.start()
        answer = returned.wait(10)
    thread.join(10)
    return answer


def test_a_send_the_buffer_takes_completes_inside_the_call(face: Any) -> None:
    # SPEC S17.3: the Proactor's future of a send that goes whole is done on return, as
    # IocpProactor._register resolves it inside the call on Windows.
    from wsp_async import proactor

    async def main() -> tuple[bool, bool]:
        loop: Any = asyncio.get_running_loop()
        mine, peer = _pair()
        try:
            first = loop._proactor.send(mine, b"x" * 156)
            first_done = first.done()
            assert await first == 156
            second = loop._proactor.send(mine, b"y" * 156)
            second_done = second.done()
            await second
            got = b""
            while len(got) < 312:
                got += peer.recv(4096)
            assert got == b"x" * 156 + b"y" * 156
            return first_done, second_done
        finally:
            mine.close()
            peer.close()

    with asyncio.Runner(loop_factory=proactor.ProactorEventLoop) as runner:
        assert runner.run(main()) == (True, True)


@contextlib.contextmanager
def _pair_on_a_port(
    face: Any, pair: tuple[socket.socket, socket.socket] | None = None
) -> Iterator[tuple[socket.socket, socket.socket, Any]]:
    """(the program's socket, its plain peer, a port the program's socket is associated
    with), from ``pair`` or a fresh one; all three closed at the end."""
    mine, peer = pair or _pair()
    port = face.CreateIoCompletionPort(face.INVALID_HANDLE_VALUE, face.NULL, 0, 0)
    try:
        face.CreateIoCompletionPort(mine.fileno(), port, 0, 0)
        yield mine, peer, port
    finally:
        face.CloseHandle(port)
        mine.close()
        peer.close()


def test_the_face_leaves_the_programs_kernel_send_buffer_alone(face: Any) -> None:
    # SPEC S16.4, S4.2: the face's emulated SO_SNDBUF of 0 is its own device; the
    # program's socket keeps the kernel buffer it had (a shrunken one made every
    # Proactor transfer crawl, and a graceful close of 16 MiB run out its timeout).
    mine, peer = _pair()
    # Read before the face first meets the socket (associating it adopts it).
    before = mine.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF)
    with _pair_on_a_port(face, (mine, peer)) as (mine, peer, port):
        ov = face.Overlapped(face.NULL)
        ov.WSASend(mine.fileno(), b"z" * 1000, 0)
        assert face.GetQueuedCompletionStatus(port, 10_000) is not None
        assert ov.getresult() == 1000
        assert mine.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF) == before
        got = b""
        while len(got) < 1000:
            got += peer.recv(4096)
        assert got == b"z" * 1000


def test_cancel_never_waits_for_the_providers_thread(face: Any) -> None:
    # SPEC S15.2: Overlapped.cancel() (CancelIoEx) returns while the provider's loop is
    # busy; the cancelled receive's packet arrives once the loop runs again.
    provider = face.provider()
    with _pair_on_a_port(face) as (mine, _peer, port):
        ov = face.Overlapped(face.NULL)
        ov.WSARecv(mine.fileno(), 100, 0)
        assert ov.pending
        assert _returns_while_the_loop_is_held(provider.loop, ov.cancel), "cancel() waited"
        packet = face.GetQueuedCompletionStatus(port, 10_000)
        assert packet is not None and packet[3] == ov.address
        try:
            ov.getresult()
        except OSError as exc:
            assert exc.winerror == 995  # type: ignore[attr-defined]  # ERROR_OPERATION_ABORTED
        else:
            raise AssertionError("the cancelled receive succeeded")
        assert face.GetQueuedCompletionStatus(port, 0) is None  # one packet, not two


def test_a_receive_the_loop_has_not_taken_is_aborted_inside_the_cancel(face: Any) -> None:
    # SPEC S15.2, S2.4: posted and cancelled while the provider's loop is busy, the
    # receive never reached the loop: the cancel aborts it itself, so its packet is
    # queued when cancel() returns (the Proactor cancels its self-reading receive each
    # time its loop stops; left to the busy loop, those piled up without bound).
    provider = face.provider()
    with _pair_on_a_port(face) as (mine, peer, port):
        with loop_held(provider.loop):
            ovs = []
            for _ in range(200):
                ov = face.Overlapped(face.NULL)
                ov.WSARecv(mine.fileno(), 100, 0)
                ov.cancel()
                assert not ov.pending
                ovs.append(ov)
            packets = [face.GetQueuedCompletionStatus(port, 0) for _ in ovs]
        assert [p[3] for p in packets if p is not None] == [ov.address for ov in ovs]
        assert all(p[0] == 995 for p in packets if p is not None)  # ERROR_OPERATION_ABORTED
        assert face.GetQueuedCompletionStatus(port, 100) is None  # once each
        peer.sendall(b"after")  # the socket still works: a fresh receive gets the bytes
        ov = face.Overlapped(face.NULL)
        ov.WSARecv(mine.fileno(), 100, 0)
        assert face.GetQueuedCompletionStatus(port, 10_000) is not None
        assert ov.getresult() == b"after"


def test_a_packet_is_handed_out_once_when_the_loop_runs_inside_an_except_block(
    face: Any,
) -> None:
    # SPEC S2.4, S17.3: the Proactor's wait runs the lent loop, and the packet that loop
    # queues is handed out once -- also when the program runs its loop while it handles
    # an exception (a retry in an ``except`` block; anyio's test runner after a failed
    # test).  The wait once asked ``sys.exc_info()`` whether it was being interrupted,
    # which there names the exception being handled: it put the packet back as well as
    # returning it, and CPython's own IocpProactor, in debug mode, reported the second
    # one as "GetQueuedCompletionStatus() returned an unexpected event" (found by
    # anyio's test_getaddrinfo on this Proactor).
    from wsp_async import proactor

    reports: list[dict[str, Any]] = []
    loop: Any = proactor.ProactorEventLoop()
    loop.set_debug(True)
    loop.set_exception_handler(lambda _loop, context: reports.append(context))
    mine, peer = _pair()

    async def receive_what_arrives_meanwhile(data: bytes) -> bytes:
        pending = loop._proactor.recv(mine, 100)  # posted now, nothing has arrived
        threading.Thread(target=peer.sendall, args=(data,)).start()
        return bytes(await pending)

    try:
        received = []
        for i in range(8):
            try:
                raise LookupError("being handled while the loop runs")
            except LookupError:
                data = b"message %d" % i
                received.append(loop.run_until_complete(receive_what_arrives_meanwhile(data)))
        loop.run_until_complete(asyncio.sleep(0))  # a poll that would meet a second packet
    finally:
        loop.close()
        mine.close()
        peer.close()
    assert received == [b"message %d" % i for i in range(8)]
    assert [r["message"] for r in reports] == []


def test_a_second_proactor_never_waits_for_the_first_ones_thread(face: Any) -> None:
    # SPEC S15.2: the first Proactor to run holds the provider's loop (its thread does the
    # I/O); a Proactor on another thread used to adopt each new socket by waiting for that
    # loop -- on the first one's thread, which may itself be waiting for the second (an
    # anyio blocking portal started from async code: both waited for ever, and anyio's
    # blockbuster reported the wait).  Here the first Proactor's thread waits, without
    # polling, until the second one's first receive has been posted.
    from wsp_async import proactor

    mine, peer = _pair()
    posted = threading.Event()
    outcome: dict[str, Any] = {}

    def second_proactor() -> None:
        loop: Any = proactor.ProactorEventLoop()

        async def first_receive() -> bytes:
            pending = loop._proactor.recv(mine, 100)  # adopts `mine` on this thread
            posted.set()
            peer.sendall(b"through the first thread's polls")
            return bytes(await pending)

        try:
            outcome["got"] = loop.run_until_complete(first_receive())
        except BaseException as exc:
            outcome["error"] = exc
        finally:
            loop.close()

    async def first_proactor() -> bool:
        thread = threading.Thread(target=second_proactor)
        thread.start()
        answered = posted.wait(10)  # this thread, the lease holder, does not poll meanwhile
        while thread.is_alive():
            await asyncio.sleep(0.01)  # polls: the second Proactor's I/O happens here
        return answered

    try:
        with asyncio.Runner(loop_factory=proactor.ProactorEventLoop) as runner:
            assert runner.run(first_proactor()), "the second Proactor waited for the first"
    finally:
        mine.close()
        peer.close()
    assert outcome == {"got": b"through the first thread's polls"}


def test_a_second_proactors_wait_for_packets_sleeps_in_select_not_on_a_lock(face: Any) -> None:
    # SPEC S15.2 ("checkable with a blocking-call detector"): a second Proactor waits for
    # its packets in GetQueuedCompletionStatus, its loop's select.  That wait slept on a
    # threading lock, which blockbuster -- the detector anyio's own tests run under --
    # reports as a blocking call in an event loop (eight of anyio's portal tests failed
    # on it; with the wait in select they pass, docs/proactor.md).  Here the waiting
    # thread's stack is read while it waits: in select, not in a lock's acquire.
    from wsp_async import apc, proactor

    mine, peer = _pair()
    posted = threading.Event()
    outcome: dict[str, Any] = {}
    lock_wait = apc.Wakeup.wait.__code__

    def second_proactor() -> None:
        loop: Any = proactor.ProactorEventLoop()

        async def receive() -> bytes:
            pending = loop._proactor.recv(mine, 100)
            posted.set()
            return bytes(await pending)  # its loop waits in GetQueuedCompletionStatus

        try:
            outcome["got"] = loop.run_until_complete(receive())
        finally:
            loop.close()

    def waiting_in(ident: int) -> str | None:
        """What the thread ``ident`` sleeps in: "lock", "select", or None (not asleep)."""
        frame = sys._current_frames().get(ident)
        while frame is not None:
            if frame.f_code is lock_wait:
                return "lock"
            if frame.f_code.co_name == "wait" and "select" in frame.f_code.co_names:
                return "select"
            frame = frame.f_back
        return None

    async def first_proactor() -> str | None:
        thread = threading.Thread(target=second_proactor)
        thread.start()
        assert posted.wait(10)
        seen = None
        for _ in range(1000):  # until it sleeps (10 s at most)
            seen = waiting_in(thread.ident or 0)
            if seen is not None:
                break
            await asyncio.sleep(0.01)
        peer.sendall(b"to the second Proactor")
        while thread.is_alive():
            await asyncio.sleep(0.01)  # the lease holder's polls do the second one's I/O
        return seen

    try:
        with asyncio.Runner(loop_factory=proactor.ProactorEventLoop) as runner:
            seen = runner.run(first_proactor())
    finally:
        mine.close()
        peer.close()
    assert outcome == {"got": b"to the second Proactor"}
    assert seen == "select"


def test_a_wait_on_the_proactors_thread_ends_when_its_operation_does(face: Any) -> None:
    # SPEC S17.3: on the Proactor's thread the provider's loop runs inside that thread's
    # waits, each up to a second at a time; a wait ends when what it waits for is done.
    # On a uvloop provider (run whole until a stop) two waits went on to their second:
    # the first use of each socket (its adoption, a task) and a blocking getresult(),
    # whose ends did not stop the drive -- a second per new connection.
    from wsp_async import proactor

    provider = face.provider()
    io = provider.io_loop
    ran_out: list[float] = []
    real_drive = io.drive

    def drive(seconds: float, done: Any = lambda: False) -> None:
        started = time.monotonic()
        real_drive(seconds, done)
        if seconds >= 1.0 and time.monotonic() - started >= seconds:
            ran_out.append(seconds)  # ended by its time limit, not by its operation

    io.drive = drive
    loop: Any = proactor.ProactorEventLoop()
    pairs = [_pair() for _ in range(4)]

    async def first_receive(mine: socket.socket, peer: socket.socket, data: bytes) -> bytes:
        pending = loop._proactor.recv(mine, 100)  # the socket's first use: adopted here
        peer.sendall(data)
        return bytes(await pending)

    async def blocking_getresult(mine: socket.socket, peer: socket.socket) -> bytes:
        ov = face.Overlapped(face.NULL)
        ov.WSARecv(mine.fileno(), 100, 0)
        threading.Thread(target=peer.sendall, args=(b"late",)).start()
        return ov.getresult(True)  # type: ignore[no-any-return]

    try:
        got = [
            loop.run_until_complete(first_receive(mine, peer, b"first %d" % i))
            for i, (mine, peer) in enumerate(pairs)
        ]
        late = loop.run_until_complete(blocking_getresult(*pairs[0]))
    finally:
        del io.drive
        loop.close()
        for mine, peer in pairs:
            mine.close()
            peer.close()
    assert got == [b"first %d" % i for i in range(4)]
    assert late == b"late"
    assert ran_out == []


def test_setting_sndbuf_from_another_thread_never_waits_for_the_loop(provider: w.Provider) -> None:
    # SPEC S15.2 (option setting included), S4.1: recorded and returned; the socket
    # answers the new value at once, and a send posted after it obeys it.
    err = w.INT()
    s = provider.WSPSocket(w.AF_INET, w.SOCK_STREAM, 0, None, 0, w.WSA_FLAG_OVERLAPPED, err)

    def set_option() -> None:
        provider.WSPSetSockOpt(s, w.SOL_SOCKET, w.SO_SNDBUF, 1234, 4, w.INT())

    assert _returns_while_the_loop_is_held(provider.loop, set_option), "setsockopt waited"
    value, size = w.INT(), w.INT(4)
    assert provider.WSPGetSockOpt(s, w.SOL_SOCKET, w.SO_SNDBUF, value, size, err) == 0
    assert value.value == 1234
    provider.WSPCloseSocket(s, err)


def _serve_on_the_proactor(how: str) -> tuple[list[str], int, bool]:
    """A Proactor server whose connection ends ``how`` ("fin-first": the server's FIN goes
    first, then the client closes; "reset": the client resets): the errors the loop
    reported, the times connection_lost ran, and whether the accepted socket closed."""
    from wsp_async import proactor

    async def main() -> tuple[list[str], int, bool]:
        loop = asyncio.get_running_loop()
        errors: list[str] = []
        loop.set_exception_handler(lambda _loop, ctx: errors.append(str(ctx.get("exception"))))
        lost = asyncio.Event()
        calls: list[object] = []
        transports: list[Any] = []

        class Server(asyncio.Protocol):
            def connection_made(self, transport: Any) -> None:
                transports.append(transport)
                if how == "fin-first":
                    transport.write(b"bye")
                    transport.write_eof()

            def eof_received(self) -> bool:
                return False

            def connection_lost(self, exc: object) -> None:
                calls.append(exc)
                lost.set()

        server = await loop.create_server(Server, "127.0.0.1", 0)
        client = socket.create_connection(server.sockets[0].getsockname(), timeout=10)
        if how == "fin-first":
            got = b""
            while chunk := await loop.run_in_executor(None, client.recv, 100):
                got += chunk
            assert got == b"bye"
            client.close()  # the client's FIN comes second
        else:
            while not transports:
                await asyncio.sleep(0.01)
            client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            client.close()
        transport = transports[0]
        sock = transport.get_extra_info("socket")
        await _lost_then_aborted(transport, lost)
        server.close()
        await server.wait_closed()
        return errors, len(calls), sock.fileno() == -1

    with asyncio.Runner(loop_factory=proactor.ProactorEventLoop) as runner:
        return runner.run(main())


async def _lost_then_aborted(transport: Any, lost: asyncio.Event) -> None:
    """Until ``connection_lost`` ran and its step ended; then ``abort()``, which must not
    call it again, and the steps that would."""
    await asyncio.wait_for(lost.wait(), 30)
    for _ in range(3):
        await asyncio.sleep(0)  # _call_connection_lost's own step has run
    transport.abort()
    for _ in range(3):
        await asyncio.sleep(0)


def test_an_accepted_connection_closes_once_after_its_own_fin_went_first(face: Any) -> None:
    # SPEC S17.3: shutdown() on a socket the Proactor accepted gives Windows' answer
    # (none) after an orderly close in which its FIN went first; the transport closes
    # its socket, and connection_lost runs exactly once.
    assert _serve_on_the_proactor("fin-first") == ([], 1, True)


def test_an_accepted_connection_closes_once_after_a_reset(face: Any) -> None:
    # SPEC S17.3: likewise after a reset the transport has already reported.
    errors, calls, closed = _serve_on_the_proactor("reset")
    assert (errors, calls, closed) == ([], 1, True)


def _connect_from_the_proactor(how: str) -> tuple[list[str], int, bool]:
    """A program's own client connection on the Proactor (``create_connection``) to a
    plain-socket server, ended ``how`` ("fin-first": the client's write_eof, then the
    server closes; "reset": the server resets): the errors the loop reported, the times
    connection_lost ran, and whether the client's socket closed."""
    from wsp_async import proactor

    async def main() -> tuple[list[str], int, bool]:
        loop = asyncio.get_running_loop()
        errors: list[str] = []
        loop.set_exception_handler(lambda _loop, ctx: errors.append(str(ctx.get("exception"))))
        lost = asyncio.Event()
        calls: list[object] = []

        class Client(asyncio.Protocol):
            def eof_received(self) -> bool:
                return False

            def connection_lost(self, exc: object) -> None:
                calls.append(exc)
                lost.set()

        with socket.create_server(("127.0.0.1", 0)) as listener:
            transport, _ = await loop.create_connection(Client, *listener.getsockname())
            peer, _ = await loop.run_in_executor(None, listener.accept)
        sock = transport.get_extra_info("socket")
        with peer:
            peer.settimeout(10)
            if how == "fin-first":
                transport.write_eof()  # the client's FIN goes first
                assert await loop.run_in_executor(None, peer.recv, 100) == b""
            else:
                peer.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        await _lost_then_aborted(transport, lost)
        return errors, len(calls), sock.fileno() == -1

    with asyncio.Runner(loop_factory=proactor.ProactorEventLoop) as runner:
        return runner.run(main())


def test_a_programs_connection_closes_once_after_its_own_fin_went_first(face: Any) -> None:
    # SPEC S17.3: the program's own socket, made a transport by the Proactor, answers
    # shutdown() as on Windows after write_eof() and the peer's close (every websockets
    # client closes so): closed by its transport, connection_lost once, nothing logged.
    assert _connect_from_the_proactor("fin-first") == ([], 1, True)


def test_a_programs_connection_closes_once_after_a_reset(face: Any) -> None:
    # SPEC S17.3: likewise when the peer resets it.
    assert _connect_from_the_proactor("reset") == ([], 1, True)


def test_an_unconnected_datagram_endpoint_closes_quietly(face: Any) -> None:
    # SPEC S17.3: Windows' shutdown() on a datagram socket that never connected is no
    # error; the Proactor's close of such an endpoint logs nothing and closes the socket.
    from wsp_async import proactor

    async def main() -> tuple[list[str], bool]:
        loop = asyncio.get_running_loop()
        errors: list[str] = []
        loop.set_exception_handler(lambda _loop, ctx: errors.append(str(ctx.get("exception"))))
        lost = asyncio.Event()

        class Endpoint(asyncio.DatagramProtocol):
            def connection_lost(self, exc: object) -> None:
                lost.set()

        transport, _ = await loop.create_datagram_endpoint(Endpoint, local_addr=("127.0.0.1", 0))
        sock = transport.get_extra_info("socket")
        transport.close()
        await asyncio.wait_for(lost.wait(), 30)
        return errors, sock.fileno() == -1

    with asyncio.Runner(loop_factory=proactor.ProactorEventLoop) as runner:
        assert runner.run(main()) == ([], True)


def test_a_programs_own_socket_subclass_keeps_its_class(face: Any) -> None:
    # A program's subclass of socket.socket is its own: the Proactor leaves it alone.
    from wsp_async import proactor

    class Mine(socket.socket):
        pass

    async def main() -> type:
        loop = asyncio.get_running_loop()
        with socket.create_server(("127.0.0.1", 0)) as listener:
            sock = Mine()
            sock.setblocking(False)
            await loop.sock_connect(sock, listener.getsockname())
            transport, _ = await loop.create_connection(asyncio.Protocol, sock=sock)
            kind = type(sock)
            transport.close()
            await asyncio.sleep(0)
        return kind

    with asyncio.Runner(loop_factory=proactor.ProactorEventLoop) as runner:
        assert runner.run(main()) is Mine


def test_the_pytest_option_makes_every_loop_of_the_run_a_proactor(tmp_path: Any) -> None:
    # Issue 23, item 5: unittest's IsolatedAsyncioTestCase and asyncio.run make their
    # loops through the policy; with the option, those are the Proactor too.
    (tmp_path / "test_policy.py").write_text(
        "import asyncio, unittest\n"
        "class Case(unittest.IsolatedAsyncioTestCase):\n"
        "    async def test_kind(self):\n"
        "        print('UNITTEST', type(asyncio.get_running_loop()).__name__)\n"
        "def test_run():\n"
        "    async def kind():\n"
        "        return type(asyncio.get_running_loop()).__name__\n"
        "    print('RUN', asyncio.run(kind()))\n"
    )
    import subprocess

    out = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-s", "-p", "no:cacheprovider",
         "--asyncio-proactor"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    words = out.stdout.replace(".", " ").split()  # pytest's dots share the lines
    kinds = sorted(f"{a} {b}" for a, b in itertools.pairwise(words) if a in ("RUN", "UNITTEST"))
    assert kinds == ["RUN ProactorEventLoop", "UNITTEST ProactorEventLoop"]


def test_a_script_runs_on_the_proactor_with_python_m(tmp_path: Any) -> None:
    # Issue 23, item 5: `python -m wsp_async.proactor script.py args`.
    script = tmp_path / "script.py"
    script.write_text(
        "import asyncio, sys\n"
        "async def kind():\n"
        "    return type(asyncio.get_running_loop()).__name__\n"
        "print(asyncio.run(kind()), sys.argv[1:])\n"
    )
    out = run_script(
        f"import sys, runpy; sys.argv = ['x', {str(script)!r}, 'one']; "
        "runpy.run_module('wsp_async.proactor', run_name='__main__')"
    )
    assert out.stdout.split() == ["ProactorEventLoop", "['one']"]


def test_an_echo_round_trip_crosses_threads_only_through_the_port(
    face: Any, monkeypatch: Any
) -> None:
    # Issue 23, item 7 (SPEC S17.3): counts, never times.  An echo round trip between a
    # client and a server both on the Proactor wakes the provider's loop from the
    # Proactor's thread not at all (sends complete in the call; a receive that must wait
    # parks in the hand-off), and the Proactor's thread blocks on its port at most twice
    # (the client's receive and the server's): those two are the only crossings left.
    from wsp_async import proactor
    from wsp_async._completion import port as port_module

    provider = face.provider()
    waiters: list[int] = []
    real_waiter = port_module._Waiter.__init__

    def counting_waiter(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        waiters.append(1)
        real_waiter(self, *args, **kwargs)

    wakes: list[int] = []
    real_wake = getattr(provider.loop, "_write_to_self", None)  # stock asyncio only

    async def main(rounds: int = 200) -> None:
        served = asyncio.Event()

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            while data := await reader.read(100):
                writer.write(data)
                await writer.drain()
            writer.close()
            served.set()

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        reader, writer = await asyncio.open_connection(*server.sockets[0].getsockname()[:2])
        for _ in range(20):  # the first round trips set things up
            writer.write(b"x" * 64)
            await reader.readexactly(64)
        monkeypatch.setattr(port_module._Waiter, "__init__", counting_waiter)
        if real_wake is not None:
            monkeypatch.setattr(
                provider.loop, "_write_to_self", lambda: (wakes.append(1), real_wake())
            )
        for _ in range(rounds):
            writer.write(b"x" * 64)
            assert await reader.readexactly(64) == b"x" * 64
        monkeypatch.undo()
        writer.close()
        await writer.wait_closed()
        await asyncio.wait_for(served.wait(), 30)
        server.close()
        await server.wait_closed()
        assert len(wakes) <= rounds // 20, f"{len(wakes)} wake-ups of the provider's loop"
        assert len(waiters) <= 2 * rounds + rounds // 20, f"{len(waiters)} port waits"

    with asyncio.Runner(loop_factory=proactor.new_event_loop) as runner:
        runner.run(main())
