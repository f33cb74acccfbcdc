"""The ``_overlapped``-compatible face (SPEC S17.1) and the Proactor loaded over it (S17.2).

The program's sockets are plain ``socket`` objects, named by their descriptors as the
Proactor names them; peers are plain sockets on 127.0.0.1; both loops.
"""

from __future__ import annotations

import asyncio
import errno
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

import wsp_async as w
from wsp_async import overlapped as ov_face

from .conftest import loop_held, run_script


@pytest.fixture
def port(face: Any) -> Iterator[int]:
    handle = face.CreateIoCompletionPort(face.INVALID_HANDLE_VALUE, face.NULL, 0, 0)
    yield handle
    face.CloseHandle(handle)


def pair() -> tuple[socket.socket, socket.socket]:
    """A connected TCP pair on 127.0.0.1: (the program's socket, its plain peer)."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        mine = socket.create_connection(server.getsockname(), timeout=10)
        peer, _ = server.accept()
    peer.settimeout(10)
    mine.setblocking(False)
    return mine, peer


def packet(face: Any, port: int, ms: int = 10_000) -> tuple[int, int, int, int]:
    status = face.GetQueuedCompletionStatus(port, ms)
    assert status is not None, "no packet"
    return status  # type: ignore[no-any-return]


def test_recv_and_send_complete_through_the_port_by_address(face, port):  # type: ignore[no-untyped-def]
    # SPEC S17.1: packets carry (err, transferred, key, address); getresult reads them.
    mine, peer = pair()
    with mine, peer:
        face.CreateIoCompletionPort(mine.fileno(), port, 0, 0)
        recv = face.Overlapped(face.NULL)
        recv.WSARecv(mine.fileno(), 100, 0)
        assert recv.pending
        with pytest.raises(OSError) as incomplete:
            recv.getresult()
        assert incomplete.value.winerror == 996  # ERROR_IO_INCOMPLETE
        peer.sendall(b"ping")
        assert packet(face, port) == (0, 4, 0, recv.address)
        assert not recv.pending and recv.getresult() == b"ping"
        send = face.Overlapped(face.NULL)
        send.WSASend(mine.fileno(), b"pong", 0)
        assert packet(face, port) == (0, 4, 0, send.address)
        assert send.getresult() == 4
        assert peer.recv(4) == b"pong"


def test_recv_into_and_the_state_errors(face, port):  # type: ignore[no-untyped-def]
    # SPEC S17.1: recv_into gives a count; an Overlapped not started raises ValueError.
    mine, peer = pair()
    with mine, peer:
        face.CreateIoCompletionPort(mine.fileno(), port, 0, 0)
        idle = face.Overlapped(face.NULL)
        with pytest.raises(ValueError):
            idle.getresult()
        buf = bytearray(10)
        recv = face.Overlapped(face.NULL)
        recv.WSARecvInto(mine.fileno(), buf, 0)
        with pytest.raises(ValueError):
            recv.WSARecvInto(mine.fileno(), buf, 0)  # one operation per Overlapped
        peer.sendall(b"abc")
        packet(face, port)
        assert recv.getresult() == 3 and buf[:3] == b"abc"


def test_a_reset_is_connection_reset_with_the_win32_code(face, port):  # type: ignore[no-untyped-def]
    # SPEC S17.1 with S16.2: ERROR_NETNAME_DELETED (64), an OSError the Proactor maps to
    # ConnectionResetError; errno makes it one here already.
    mine, peer = pair()
    with mine:
        face.CreateIoCompletionPort(mine.fileno(), port, 0, 0)
        recv = face.Overlapped(face.NULL)
        recv.WSARecv(mine.fileno(), 100, 0)
        peer.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        peer.close()
        err, _n, _key, address = packet(face, port)
        assert (err, address) == (ov_face.ERROR_NETNAME_DELETED, recv.address)
        with pytest.raises(ConnectionResetError) as reset:
            recv.getresult()
        assert reset.value.winerror == ov_face.ERROR_NETNAME_DELETED


def test_accept_ex_puts_the_connection_behind_the_callers_socket(face, port):  # type: ignore[no-untyped-def]
    # SPEC S17.1, S14.2: the Proactor's own accept socket is the connection afterwards.
    listener = socket.create_server(("127.0.0.1", 0))
    listener.setblocking(False)
    conn = socket.socket()
    with listener, conn:
        face.CreateIoCompletionPort(listener.fileno(), port, 0, 0)
        accept = face.Overlapped(face.NULL)
        accept.AcceptEx(listener.fileno(), conn.fileno())
        client = socket.create_connection(listener.getsockname(), timeout=10)
        with client:
            assert packet(face, port)[3] == accept.address
            accept.getresult()
            assert conn.getpeername() == client.getsockname()
            face.CreateIoCompletionPort(conn.fileno(), port, 0, 0)
            send = face.Overlapped(face.NULL)
            send.WSASend(conn.fileno(), b"welcome", 0)
            packet(face, port)
            assert client.recv(7) == b"welcome"


def test_a_closed_listener_refuses_at_once_and_its_accept_is_aborted(face, port):  # type: ignore[no-untyped-def]
    # SPEC S17.2 (item 3): the program's close of its listener is the close; the pending
    # AcceptEx completes aborted, exactly once.
    listener = socket.create_server(("127.0.0.1", 0))
    listener.setblocking(False)
    address = listener.getsockname()
    conn = socket.socket()
    face.CreateIoCompletionPort(listener.fileno(), port, 0, 0)
    accept = face.Overlapped(face.NULL)
    accept.AcceptEx(listener.fileno(), conn.fileno())
    accept.cancel()
    listener.close()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(address, timeout=10)
    err, _n, _key, address_of = packet(face, port)
    assert (err, address_of) == (ov_face.ERROR_OPERATION_ABORTED, accept.address)
    assert face.GetQueuedCompletionStatus(port, 0) is None
    conn.close()


def test_a_pending_accept_never_takes_a_connection_of_the_socket_that_reuses_its_number(face, port):  # type: ignore[no-untyped-def]
    # SPEC S16.4, S17.2: the program closes its listener while an AcceptEx waits, and the
    # number goes to a new listener of its own before the provider's loop looks again.
    # The AcceptEx completes aborted, once; the new listener's connection is the
    # program's, never taken by the provider (CI met the close half: ERROR_INVALID_HANDLE).
    old = socket.create_server(("127.0.0.1", 0))
    old.setblocking(False)
    number = old.fileno()
    conn = socket.socket()
    with conn:
        face.CreateIoCompletionPort(number, port, 0, 0)
        accept = face.Overlapped(face.NULL)
        with loop_held(face.provider().loop):
            accept.AcceptEx(number, conn.fileno())  # reaches the loop once it is free
            new = socket.create_server(("127.0.0.1", 0))
            old.detach()
            os.dup2(new.fileno(), number)  # closes the old listener, reuses its number
            new.close()
            new = socket.socket(fileno=number)
            client = socket.create_connection(new.getsockname(), timeout=10)
        with new, client:
            err, _n, _key, address = packet(face, port)
            assert (err, address) == (ov_face.ERROR_OPERATION_ABORTED, accept.address)
            assert face.GetQueuedCompletionStatus(port, 0) is None
            new.settimeout(10)
            mine, _ = new.accept()  # the program's connection is still there for it
            with mine:
                client.sendall(b"ok")
                assert mine.recv(2) == b"ok"


def test_a_closed_descriptor_releases_its_socket_and_a_reused_number_is_new(face, port):  # type: ignore[no-untyped-def]
    # SPEC S16.1 via S17 (item 3): a pending receive on a socket the program closed is
    # aborted; the same number, reused by the OS for another socket, reaches that one.
    first, first_peer = pair()
    number = first.fileno()
    face.CreateIoCompletionPort(number, port, 0, 0)
    recv = face.Overlapped(face.NULL)
    recv.WSARecv(number, 100, 0)
    server = socket.create_server(("127.0.0.1", 0))
    other = socket.create_connection(server.getsockname(), timeout=10)
    second_peer, _ = server.accept()
    # The program closes its socket and the OS hands the same number to another one, in
    # one step (dup2 closes what the number named and reuses it).
    first.detach()
    os.dup2(other.fileno(), number)
    other.close()
    second = socket.socket(fileno=number)
    with server, second, second_peer, first_peer:
        err, _n, _key, address = packet(face, port)  # the wait notices the close
        assert (err, address) == (ov_face.ERROR_OPERATION_ABORTED, recv.address)
        face.CreateIoCompletionPort(number, port, 0, 0)
        again = face.Overlapped(face.NULL)
        again.WSARecv(number, 100, 0)
        first_peer.sendall(b"old")
        second_peer.sendall(b"new")
        packet(face, port)
        assert again.getresult() == b"new"


def test_connect_ex_refused_and_bind_local_twice(face, port, refusing_address):  # type: ignore[no-untyped-def]
    # SPEC S17.1, S14.3, S16.2: ERROR_CONNECTION_REFUSED (1225) is ConnectionRefusedError;
    # BindLocal on a bound socket is WSAEINVAL, which the Proactor checks for.
    address = refusing_address
    sock = socket.socket()
    with sock:
        face.CreateIoCompletionPort(sock.fileno(), port, 0, 0)
        face.BindLocal(sock.fileno(), socket.AF_INET)
        with pytest.raises(OSError) as twice:
            face.BindLocal(sock.fileno(), socket.AF_INET)
        assert twice.value.winerror == w.WSAEINVAL
        connect = face.Overlapped(face.NULL)
        connect.ConnectEx(sock.fileno(), address)
        err, _n, _key, _address = packet(face, port)
        assert err == 1225
        with pytest.raises(ConnectionRefusedError) as refused:
            connect.getresult()
        assert refused.value.winerror == 1225


@pytest.mark.parametrize("bad", [None, "127.0.0.1:80", ["127.0.0.1", 80]])
def test_an_address_that_is_not_a_tuple_is_a_type_error(face, bad):  # type: ignore[no-untyped-def]
    # SPEC S17.1: CPython's module parses addresses from tuples (cpython issue 98793).
    sock = socket.socket(type=socket.SOCK_DGRAM)
    with sock:
        with pytest.raises(TypeError):
            face.WSAConnect(sock.fileno(), bad)
        with pytest.raises(TypeError):
            face.Overlapped(face.NULL).WSASendTo(sock.fileno(), b"x", 0, bad)


def test_events_and_registered_waits_post_packets(face, port):  # type: ignore[no-untyped-def]
    # SPEC S17.1: CreateEvent/SetEvent/ResetEvent; RegisterWaitWithQueue posts the packet
    # of its address when the event is set, or at its timeout.
    event = face.CreateEvent(None, True, False, None)
    marker = face.Overlapped(face.NULL)
    wait = face.RegisterWaitWithQueue(event, port, marker.address, face.INFINITE)
    assert face.GetQueuedCompletionStatus(port, 50) is None
    face.SetEvent(event)
    assert packet(face, port)[3] == marker.address
    face.UnregisterWait(wait)
    face.ResetEvent(event)
    assert face.WaitForSingleObject(event, 0) == ov_face.WAIT_TIMEOUT
    timed = face.RegisterWaitWithQueue(event, port, 12345, 30)
    assert packet(face, port)[3] == 12345
    face.UnregisterWaitEx(timed, face.NULL)
    face.CloseHandle(event)
    with pytest.raises(OSError):
        face.SetEvent(event)


def test_named_pipes_are_not_implemented(face):  # type: ignore[no-untyped-def]
    # SPEC S17.2: a clear NotImplementedError, not an AttributeError or a crash.
    with pytest.raises(NotImplementedError):
        face.ConnectPipe(r"\\.\pipe\x")
    with pytest.raises(NotImplementedError):
        face.Overlapped(face.NULL).ConnectNamedPipe(3)
    from wsp_async import proactor

    with pytest.raises(NotImplementedError):
        proactor.winapi.CreateNamedPipe  # noqa: B018


def test_a_subprocess_on_the_proactor_is_refused_before_it_starts(tmp_path) -> None:  # type: ignore[no-untyped-def]
    # SPEC S17.2: subprocesses are not emulated -- a clear NotImplementedError, and no child
    # started.  One started by Linux's Popen, then failing on Windows' process handle
    # (AttributeError: _handle), ran on unwaited (aiohttp's test_subprocess_co).
    from wsp_async import proactor

    marker = tmp_path / "ran"

    async def main() -> None:
        await asyncio.create_subprocess_exec(
            sys.executable, "-c", f"open({str(marker)!r}, 'w').close()"
        )

    with asyncio.Runner(loop_factory=proactor.new_event_loop) as runner:
        with pytest.raises(NotImplementedError, match="subprocesses are not emulated"):
            runner.run(main())
    assert not marker.exists()


def test_loading_the_proactor_changes_nothing_for_other_code() -> None:
    # SPEC S17.2: no sys.modules entry, sys.platform untouched, the stdlib's own classes.
    code = (
        "import sys, asyncio; from wsp_async import proactor; "
        "loop = proactor.ProactorEventLoop(); "
        "print(type(loop).__module__, sys.platform, '_overlapped' in sys.modules, "
        "'asyncio.windows_events' in sys.modules, hasattr(asyncio, 'ProactorEventLoop'), "
        "proactor.load().__file__ == asyncio.__file__.replace('__init__.py', 'windows_events.py')); "
        "loop.close()"
    )
    assert run_script(code).stdout.split() == [
        "asyncio.windows_events",
        sys.platform,
        "False",
        "False",
        "False",
        "True",
    ]


def test_the_proactor_loop_echoes_over_this_loop_kind(face):  # type: ignore[no-untyped-def]
    # SPEC S17.2: CPython's own ProactorEventLoop, asyncio.Runner with its loop_factory.
    from wsp_async import proactor

    async def main() -> bytes:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.write((await reader.readline()).upper())
            await writer.drain()
            writer.close()

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        async with server:
            reader, writer = await asyncio.open_connection(*server.sockets[0].getsockname())
            writer.write(b"over the proactor\n")
            line = await reader.readline()
            writer.close()
            await writer.wait_closed()
        return line

    with asyncio.Runner(loop_factory=proactor.ProactorEventLoop) as runner:
        assert type(runner.get_loop()).__name__ == "ProactorEventLoop"
        assert runner.run(main()) == b"OVER THE PROACTOR\n"


def test_windows_error_codes_map_to_posix_subclasses() -> None:
    # SPEC S16.2 via S17.1: winerror kept, errno chosen as on Windows.
    for code, kind in [
        (64, ConnectionResetError),
        (1225, ConnectionRefusedError),
        (1236, ConnectionAbortedError),
        (w.WSAECONNRESET, ConnectionResetError),
    ]:
        exc = ov_face.windows_error(code)
        assert isinstance(exc, kind) and exc.winerror == code  # type: ignore[attr-defined]
    assert ov_face.windows_error(995).errno == errno.ECANCELED


def test_the_pytest_plugin_runs_async_tests_on_the_proactor(tmp_path) -> None:  # type: ignore[no-untyped-def]
    # SPEC S17.2 (issue 12, item 5): `pytest --asyncio-proactor`, and nothing without it.
    (tmp_path / "test_loop.py").write_text(
        "import asyncio\n"
        "async def test_loop_kind():\n"
        "    name = type(asyncio.get_running_loop()).__name__\n"
        "    print('LOOP', name)\n"
    )
    (tmp_path / "pytest.ini").write_text("[pytest]\nasyncio_mode = auto\n")
    runs = {}
    for args in (["--asyncio-proactor"], []):
        out = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-s", "-p", "no:cacheprovider", *args],
            cwd=tmp_path, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert out.returncode == 0, out.stdout + out.stderr
        runs[bool(args)] = [line for line in out.stdout.splitlines() if line.startswith("LOOP")]
    assert runs[True] == ["LOOP ProactorEventLoop"]
    assert runs[False] and runs[False] != ["LOOP ProactorEventLoop"]


def test_hostile_arguments_get_clear_errors(face, port, tmp_path):  # type: ignore[no-untyped-def]
    # SPEC S9 via S17.1: a closed descriptor, a file that is no socket, a float: OSError
    # or TypeError with a reason, nothing started, no traceback from inside.
    with open(tmp_path / "file", "wb") as file:
        for bad in (file.fileno(), 10_000, -1):
            ov = face.Overlapped(face.NULL)
            with pytest.raises(OSError) as info:
                ov.WSARecv(bad, 10, 0)
            assert info.value.winerror in (w.WSAENOTSOCK, ov_face.ERROR_INVALID_HANDLE)
            assert not ov.pending
            with pytest.raises(ValueError):
                ov.getresult()  # "operation failed to start"
    with pytest.raises(OSError):
        face.Overlapped(face.NULL).WSARecv(2.5, 10, 0)
    with pytest.raises(OSError):
        face.GetQueuedCompletionStatus(123456789, 0)  # no such port
    face.Overlapped(face.NULL).cancel()  # nothing started: nothing to do


def test_a_pending_overlapped_dropped_by_the_program_is_cancelled_once(face, port):  # type: ignore[no-untyped-def]
    # SPEC S2.4 via S17.1: deallocating a pending Overlapped cancels it; its packet comes
    # once, with ERROR_OPERATION_ABORTED.
    mine, peer = pair()
    with mine, peer:
        face.CreateIoCompletionPort(mine.fileno(), port, 0, 0)
        recv = face.Overlapped(face.NULL)
        recv.WSARecv(mine.fileno(), 10, 0)
        address = recv.address
        del recv
        err, _n, _key, got = packet(face, port)
        assert (err, got) == (ov_face.ERROR_OPERATION_ABORTED, address)
        assert face.GetQueuedCompletionStatus(port, 0) is None
