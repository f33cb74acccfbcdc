"""The asyncio face mirrors the SPI guarantees (SPEC S0, S1, S2.4, S5.3, S9, S10, S11)."""

from __future__ import annotations

import asyncio
import socket
import struct

import pytest

import wsp_async as w
from wsp_async import aio

from .conftest import FacePair, loop_held, run_script, udp_peer


async def _plain_server() -> tuple[socket.socket, asyncio.Future[socket.socket]]:
    srv = socket.create_server(("127.0.0.1", 0))
    srv.setblocking(False)
    loop = asyncio.get_running_loop()
    accepted = asyncio.ensure_future(loop.sock_accept(srv))
    fut: asyncio.Future[socket.socket] = asyncio.ensure_future(_first(accepted))
    return srv, fut


async def _first(accepted: asyncio.Future) -> socket.socket:  # type: ignore[type-arg]
    conn, _ = await accepted
    return conn


async def _read_all(conn: socket.socket) -> bytes:
    loop = asyncio.get_running_loop()
    out = bytearray()
    while chunk := await loop.sock_recv(conn, 1 << 20):
        out.extend(chunk)
    return bytes(out)


async def test_send_scatter_gather_in_order_to_a_plain_peer() -> None:  # SPEC S5.3, S0
    srv, accepted = await _plain_server()
    async with await aio.connect(*srv.getsockname()) as sock:
        conn = await accepted
        reader = asyncio.ensure_future(_read_all(conn))
        sends = [sock.send([i.to_bytes(4, "big"), b"x" * (i % 50)]) for i in range(2000)]
        assert await asyncio.gather(*sends) == [4 + i % 50 for i in range(2000)]
        await sock.shutdown()
        data = await reader
    expected = b"".join(i.to_bytes(4, "big") + b"x" * (i % 50) for i in range(2000))
    assert data == expected
    conn.close()
    srv.close()


async def test_recv_and_eof(face_pair: FacePair) -> None:  # SPEC S11.1
    sock, conn = face_pair
    conn.sendall(b"hello")
    assert await sock.recv(100) == b"hello"
    conn.shutdown(socket.SHUT_WR)
    assert await sock.recv(100) == b""
    sock.close()
    conn.close()


async def test_errors_raise_wsaerror(face_pair: FacePair) -> None:  # SPEC S0, S9
    sock, conn = face_pair
    await sock.shutdown(w.SD_SEND)
    with pytest.raises(w.WSAError) as info:
        await sock.send(b"late")
    assert info.value.winerror == w.WSAESHUTDOWN
    sock.close()
    with pytest.raises(w.WSAError) as info:
        await sock.send(b"closed")
    assert info.value.winerror == w.WSAENOTSOCK
    conn.close()


async def test_connect_refused_is_a_wsaerror(refusing_address: tuple[str, int]) -> None:
    # SPEC S9
    with pytest.raises(w.WSAError) as info:
        await aio.connect(*refusing_address)
    assert info.value.winerror == w.WSAECONNREFUSED


async def test_peer_reset_fails_pending_sends_exactly_once(
    face_pair: FacePair,
) -> None:  # SPEC S10.5, S2.4
    sock, conn = face_pair
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    sock.provider.socket_of(sock.handle).sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 65536)
    sends = [asyncio.ensure_future(sock.send(b"r" * 65536)) for _ in range(64)]
    await asyncio.sleep(0)
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    conn.close()
    results = await asyncio.gather(*sends, return_exceptions=True)
    errors = [r.winerror for r in results if isinstance(r, w.WSAError)]
    assert len(results) == 64 and errors
    assert set(errors) <= {w.WSAECONNRESET}
    sock.close()


async def test_cancelling_a_waiting_send_aborts_it_cleanly(
    face_pair: FacePair,
) -> None:  # SPEC S2.4, S10.3
    sock, conn = face_pair
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    sock.provider.socket_of(sock.handle).sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 65536)
    sends = [asyncio.ensure_future(sock.send(bytes([i]) * 65536)) for i in range(64)]
    await asyncio.sleep(0)
    sends[-1].cancel()
    reader = asyncio.ensure_future(_read_all(conn))
    results = await asyncio.gather(*sends, return_exceptions=True)
    assert isinstance(results[-1], asyncio.CancelledError)
    assert results[:-1] == [65536] * 63
    await sock.shutdown()
    data = await reader
    assert data == b"".join(bytes([i]) * 65536 for i in range(63))  # the cancelled one never went
    sock.close()
    conn.close()


async def test_cancelling_a_receive_then_receiving_again(
    face_pair: FacePair,
) -> None:  # SPEC S11.1, S2.4
    sock, conn = face_pair
    pending = asyncio.ensure_future(sock.recv(10))
    await asyncio.sleep(0)
    pending.cancel()
    with pytest.raises(asyncio.CancelledError):
        await pending
    conn.sendall(b"after")
    assert await sock.recv(10) == b"after"  # the cancelled receive took nothing
    sock.close()
    conn.close()


async def test_start_server_echo_with_plain_client() -> None:  # SPEC S0, S11.1
    async def echo(sock: aio.OverlappedSocket) -> None:
        while data := await sock.recv(4096):
            await sock.send(data)

    async with await aio.start_server(echo) as server:
        loop = asyncio.get_running_loop()
        client = socket.create_connection(server.address)
        client.setblocking(False)
        await loop.sock_sendall(client, b"ping" * 1000)
        client.shutdown(socket.SHUT_WR)
        assert await _read_all(client) == b"ping" * 1000
        client.close()


async def test_datagrams_and_truncation() -> None:  # SPEC S11.2, S11.3
    peer = udp_peer()
    peer.bind(("127.0.0.1", 0))
    sock = await aio.open_datagram(local_addr=("127.0.0.1", 0))
    await sock.sendto([b"to ", b"peer"], peer.getsockname())
    assert peer.recvfrom(100) == (b"to peer", sock.getsockname())
    peer.sendto(b"0123456789", sock.getsockname())
    with pytest.raises(w.WSAError) as info:
        await sock.recvfrom(4)
    assert info.value.winerror == w.WSAEMSGSIZE
    assert info.value.partial == b"0123"  # type: ignore[attr-defined]
    peer.sendto(b"ok", sock.getsockname())
    assert await sock.recvfrom(10) == (b"ok", peer.getsockname())
    sock.close()
    peer.close()


async def test_send_overlapped_and_awaitable_result(face_pair: FacePair) -> None:  # SPEC S7.2, S7.3
    sock, conn = face_pair
    ovs = [sock.send_overlapped(b"z" * 65536) for _ in range(40)]
    reader = asyncio.ensure_future(_read_all(conn))
    assert [await sock.get_overlapped_result(ov) for ov in ovs] == [65536] * 40
    await sock.shutdown()
    assert len(await reader) == 40 * 65536
    sock.close()
    conn.close()


async def test_closing_the_loop_closes_its_provider() -> None:  # SPEC S10.4, S2.4
    provider = aio.get_provider()
    assert provider is aio.get_provider()
    assert provider.embedded and provider.loop is asyncio.get_running_loop()


def _stalled(face_pair: FacePair) -> tuple[aio.OverlappedSocket, socket.socket]:
    """The pair with small kernel buffers, so that sends queue up behind them."""
    sock, conn = face_pair
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    sock.provider.socket_of(sock.handle).sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 65536)
    return sock, conn  # type: ignore[return-value]


async def test_close_aborts_awaited_sends_exactly_once(
    face_pair: FacePair,
) -> None:  # SPEC S10.2, S2.4
    sock, conn = _stalled(face_pair)
    sends = [asyncio.ensure_future(sock.send(b"c" * 65536)) for _ in range(64)]
    await asyncio.sleep(0)
    sock.close()
    results = await asyncio.gather(*sends, return_exceptions=True)
    aborted = [r for r in results if isinstance(r, w.WSAError)]
    assert aborted and all(r.winerror == w.WSA_OPERATION_ABORTED for r in aborted)
    assert all(r == 65536 for r in results if not isinstance(r, w.WSAError))
    conn.close()


async def test_shutdown_lets_awaited_sends_finish(face_pair: FacePair) -> None:  # SPEC S10.1
    sock, conn = _stalled(face_pair)
    sends = [asyncio.ensure_future(sock.send(bytes([i]) * 65536)) for i in range(32)]
    await asyncio.sleep(0)
    await sock.shutdown()
    data = await _read_all(conn)
    assert await asyncio.gather(*sends) == [65536] * 32
    assert data == b"".join(bytes([i]) * 65536 for i in range(32))
    sock.close()
    conn.close()


async def test_recv_into_and_peek(face_pair: FacePair) -> None:  # SPEC S11.1 (MSG_PEEK)
    sock, conn = face_pair
    conn.sendall(b"abcdef")
    assert await sock.peek(3) == b"abc"
    buf = bytearray(10)
    n = await sock.recv_into(buf)
    assert bytes(buf[:n]) == b"abcdef"[:n] and n >= 3
    sock.close()
    conn.close()


async def test_get_overlapped_result_raises_the_completion_error(
    face_pair: FacePair,
) -> None:  # SPEC S7.2, S10.2
    sock, conn = _stalled(face_pair)
    ovs = [sock.send_overlapped(b"g" * 65536) for _ in range(64)]
    sock.close()
    with pytest.raises(w.WSAError) as info:
        await sock.get_overlapped_result(ovs[-1])
    assert info.value.winerror == w.WSA_OPERATION_ABORTED
    conn.close()


async def test_listener_accepts_plain_clients() -> None:  # SPEC S1 (WSPAccept), S11.1
    async with await aio.listen() as listener:
        loop = asyncio.get_running_loop()
        client = socket.socket()
        client.setblocking(False)
        await loop.sock_connect(client, listener.address)
        sock, peer = await listener.accept()
        assert peer == client.getsockname()
        await loop.sock_sendall(client, b"hi")
        assert await sock.recv(2) == b"hi"
        await sock.send(b"yo")
        assert await loop.sock_recv(client, 2) == b"yo"
        sock.close()
        client.close()


async def test_accept_ex_awaited_hands_over_the_first_data() -> None:  # SPEC S14.2
    async with await aio.listen() as listener:
        loop = asyncio.get_running_loop()
        waiting = asyncio.ensure_future(listener.accept_ex(receive=16))
        client = socket.socket()
        client.setblocking(False)
        await loop.sock_connect(client, listener.address)
        await loop.sock_sendall(client, b"GET /")
        sock, peer, first = await asyncio.wait_for(waiting, 10)
        assert (peer, first) == (client.getsockname(), b"GET /")
        await sock.send(b"200")
        assert await loop.sock_recv(client, 3) == b"200"
        sock.close()
        client.close()


async def test_many_accept_ex_awaits_each_get_one_connection_in_order() -> None:  # SPEC S14.2
    async with await aio.listen() as listener:
        loop = asyncio.get_running_loop()
        waits = [asyncio.ensure_future(listener.accept_ex()) for _ in range(3)]
        clients = []
        for _ in range(3):
            client = socket.socket()
            client.setblocking(False)
            await loop.sock_connect(client, listener.address)
            clients.append(client)
        accepted = await asyncio.wait_for(asyncio.gather(*waits), 10)
        assert [peer for _sock, peer, _data in accepted] == [c.getsockname() for c in clients]
        for (sock, _peer, _data), client in zip(accepted, clients, strict=True):
            sock.close()
            client.close()


async def test_cancelling_an_accept_ex_await_loses_no_connection() -> None:  # SPEC S15.1, S14.2
    async with await aio.listen() as listener:
        loop = asyncio.get_running_loop()
        first = asyncio.ensure_future(listener.accept_ex())
        await asyncio.sleep(0)
        first.cancel()
        with pytest.raises(asyncio.CancelledError):
            await first
        client = socket.socket()
        client.setblocking(False)
        await loop.sock_connect(client, listener.address)
        sock, peer, _data = await asyncio.wait_for(listener.accept_ex(), 10)
        assert peer == client.getsockname()
        sock.close()
        client.close()


async def test_connect_ex_sends_its_first_data() -> None:  # SPEC S14.3
    srv, accepted = await _plain_server()
    with srv:
        sock = await aio.connect_ex(*srv.getsockname(), data=[b"hel", b"lo"])
        conn = await asyncio.wait_for(accepted, 10)
        loop = asyncio.get_running_loop()
        assert await loop.sock_recv(conn, 5) == b"hello"
        assert sock.getpeername() == srv.getsockname()
        sock.close()
        conn.close()


async def test_connect_ex_refused_is_a_wsaerror(refusing_address: tuple[str, int]) -> None:
    # SPEC S14.3
    with pytest.raises(w.WSAError) as info:
        await aio.connect_ex(*refusing_address)
    assert info.value.winerror == w.WSAECONNREFUSED


def test_a_program_that_leaves_sockets_open_ends_clean_under_w_error() -> None:
    # SPEC S2.4, S10.2 through the asyncio face: the embedded provider closes its
    # sockets while the loop can still run (asyncio.run, uvloop.run), so no transport is
    # left open when the loop closes -- nothing to warn about, even under -W error.
    script = """
import asyncio, socket
from wsp_async import aio

async def main():
    srv = socket.create_server(("127.0.0.1", 0))
    sock = await aio.connect(*srv.getsockname())
    conn, _ = srv.accept()
    await sock.send(b"hello")
    assert conn.recv(10) == b"hello"
    conn.close()
    srv.close()

for run in (asyncio.run, __import__("uvloop").run):
    run(main())
print("clean")
"""
    out = run_script(script, "-X", "dev", "-W", "error")
    assert out.stdout.strip() == "clean" and not out.stderr


def test_a_program_that_leaves_an_accept_ex_pending_ends_and_aborts_it() -> (
    None
):  # SPEC S10.2, S2.4
    # asyncio.run cancels every task before the embedded provider closes; the listener's
    # accept task must end (not re-await), completing the pending AcceptEx aborted, once.
    code = (
        "import asyncio, wsp_async as w\n"
        "from wsp_async import aio\n"
        "box = {}\n"
        "async def main():\n"
        "    listener = await aio.listen()\n"
        "    p = listener.provider\n"
        "    s = p.WSPSocket(w.AF_INET, w.SOCK_STREAM, 0, None, 0, w.WSA_FLAG_OVERLAPPED, w.INT())\n"
        "    box['ov'] = ov = w.WSAOVERLAPPED(hEvent=w.WSACreateEvent())\n"
        "    assert not p.AcceptEx(listener.handle, s, bytearray(88), 0, 44, 44, w.DWORD(), ov)\n"
        "    await asyncio.sleep(0)\n"
        "asyncio.run(main())\n"
        "print(w.wsa_of(box['ov'].Internal))\n"
    )
    assert run_script(code).stdout.split() == [str(int(w.WSA_OPERATION_ABORTED))]


async def test_face_sends_never_land_inside_another_threads_direct_send(
    face_pair: FacePair,
) -> None:
    # SPEC S5.3 (issue 13): a blocking send from another thread may go straight to the
    # kernel, and a large one is taken in part; the face's lean sends on the loop thread,
    # racing it, must land before or after it, never inside.  The sends are larger than
    # the kernel's buffers, so the kernel takes them in pieces.

    sock, conn = face_pair
    provider = sock.provider
    big, small, rounds = 1_000_000, 64, 24

    def big_message(i: int) -> bytes:
        return b"T" + bytes([i]) * (big - 1)

    results: list[int] = []

    def blocking_sends() -> None:
        for i in range(rounds):
            count = w.DWORD()
            buf = big_message(i)
            err = w.INT()
            rc = provider.WSPSend(
                sock.handle, [w.WSABUF(big, buf)], 1, count, 0, None, None, None, err
            )
            results.append(count.value if rc == 0 else -err.value)

    loop = asyncio.get_running_loop()
    reader = asyncio.ensure_future(_read_all(conn))
    sender = loop.run_in_executor(None, blocking_sends)
    faces = 0
    while not sender.done() and faces < 4000:
        assert await sock.send(b"F" * small) == small
        faces += 1
        if faces % 16 == 0:
            await asyncio.sleep(0)
    await sender
    await sock.shutdown()
    data = await reader
    assert results == [big] * rounds
    # Parse: 'F' runs of 64 between whole 'T' messages, in the order the thread sent them.
    at, seen = 0, []
    while at < len(data):
        if data[at : at + 1] == b"F":
            assert data[at : at + small] == b"F" * small, at
            at += small
        else:
            i = len(seen)
            assert data[at : at + big] == big_message(i), (at, i)
            seen.append(i)
            at += big
    assert seen == list(range(rounds)) and faces > 0
    assert provider.socket_of(sock.handle).handoff.foreign_writes  # the lean path took the lock
    sock.close()
    conn.close()


async def test_a_subclass_that_overrides_send_keeps_its_own() -> None:  # SPEC S0
    # The face binds its per-socket send and recv_into on each instance (issue 13); a
    # subclass's own methods must still be the ones called.
    calls: list[str] = []

    class Logged(aio.OverlappedSocket):
        async def send(self, buffers: aio.Buffers, flags: int = 0) -> int:
            calls.append("send")
            return await super().send(buffers, flags)

        async def recv_into(self, buffer: bytearray | memoryview, flags: int = 0) -> int:
            calls.append("recv_into")
            return await super().recv_into(buffer, flags)

    srv, accepted = await _plain_server()
    plain = await aio.connect(*srv.getsockname())
    conn = await accepted
    sock = Logged(plain.provider, plain.handle)
    loop = asyncio.get_running_loop()
    for _ in range(2):  # the base's first call must not put the face's calls in its place
        assert await sock.send(b"ping") == 4
        assert await loop.sock_recv(conn, 4) == b"ping"
        conn.sendall(b"pong")
        assert await sock.recv(4) == b"pong"
    assert calls == ["send", "recv_into"] * 2
    sock.close()
    conn.close()
    srv.close()


async def test_the_per_socket_calls_are_made_at_the_first_lookup() -> None:  # SPEC S0
    # Issue 26: an accepted socket closed unused pays for no per-socket send and receive
    # calls (their closures cost a face accept 11% of its CPU, with the garbage they
    # left); the first lookup of each makes them -- so that ``send = sock.send`` taken
    # before any send is the provider's call, not a method that would make it anew at
    # every call -- and they answer from then on.
    srv, accepted = await _plain_server()
    sock = await aio.connect(*srv.getsockname())
    conn = await accepted
    assert "send" not in vars(sock) and "recv_into" not in vars(sock)
    send = sock.send
    assert vars(sock)["send"] is send and sock.send is send and "recv_into" not in vars(sock)
    assert await send(b"one") == 3
    assert await sock.send(b"two") == 3
    assert sock.send is send
    loop = asyncio.get_running_loop()
    got = b""
    while len(got) < 6:
        got += await loop.sock_recv(conn, 6)
    assert got == b"onetwo"
    conn.sendall(b"back")
    assert await sock.recv(4) == b"back"
    assert "recv_into" in vars(sock)
    sock.close()
    conn.close()
    # SPEC S9: a handle closed behind the object's back before its first send or receive
    # answers WSAENOTSOCK from both, as one closed after them does.
    sock = await aio.connect(*srv.getsockname())
    conn, _ = await loop.sock_accept(srv)
    sock.provider.WSPCloseSocket(sock.handle, w.INT())
    for call in (lambda: sock.send(b"x"), lambda: sock.recv(1)):
        with pytest.raises(w.WSAError) as info:
            await call()
        assert info.value.winerror == w.WSAENOTSOCK
    conn.close()
    srv.close()


async def test_aclose_of_an_embedded_provider_returns_once_its_sockets_let_go() -> None:
    # SPEC S10.2 (graceful closesocket), S1 (async with): bytes still buffered at close
    # go out, and by the time aclose() returns the descriptor is released, so the
    # program may close its loop at once (nothing left for -W error to find).
    import threading

    srv = socket.create_server(("127.0.0.1", 0))
    provider = w.Provider(loop=asyncio.get_running_loop())
    err = w.INT()
    s = provider.WSPSocket(w.AF_INET, w.SOCK_STREAM, 0, None, 0, w.WSA_FLAG_OVERLAPPED, err)
    await provider.connect_async(s, srv.getsockname())
    conn, peer = srv.accept()
    host = provider.socket_of(s).sock
    assert peer == host.getsockname()  # this test's connection, not a stray one
    big = bytes(range(256)) * (16 << 12)  # 16 MiB: more than the kernel takes at once
    ov = w.WSAOVERLAPPED()
    rc = provider.WSPSend(s, [w.WSABUF(len(big), big)], 1, None, 0, ov, None, None, err)
    assert rc == 0 or err.value == w.WSA_IO_PENDING
    got: list[object] = []
    reader = threading.Thread(target=_recv_to_end, args=(conn, got))
    reader.start()
    await provider.aclose()
    assert host.fileno() == -1  # released, not left to the garbage collector
    await asyncio.get_running_loop().run_in_executor(None, reader.join, 30)
    # Compared by length and digest first, so that a failure says what went wrong
    # (an exception, a short read) instead of printing 4 MiB.
    assert [len(x) if isinstance(x, bytes) else x for x in got] == [len(big)]
    assert got == [big]
    conn.close()
    srv.close()


def _recv_to_end(conn: socket.socket, into: list[object]) -> None:
    out = bytearray()
    try:
        while chunk := conn.recv(1 << 20):
            out.extend(chunk)
    except OSError as exc:
        into.append(f"{exc!r} after {len(out)} bytes")
        return
    into.append(bytes(out))


async def test_face_send_of_a_mutable_buffer_is_a_copy_once_complete(face_pair: FacePair) -> None:
    # SPEC S4.1, S5.2 through the face: an awaited send of a bytearray that completes at
    # once gives the buffer back; changing it then does not change the bytes sent.
    sock, conn = face_pair
    data = bytearray(b"first")
    assert await sock.send(data) == 5
    data[:] = b"XXXXX"
    view = memoryview(bytearray(b"second"))
    assert await sock.send(view) == 6
    view[:] = b"YYYYYY"
    await sock.shutdown()
    assert await _read_all(conn) == b"firstsecond"
    sock.close()
    conn.close()


async def test_face_calls_with_what_is_not_a_buffer_raise_wsaefault_and_do_no_harm(
    face_pair: FacePair,
) -> None:
    # SPEC S9 (WSAEFAULT) through the face: released, strided, read-only (for a receive),
    # str and int buffers raise WSAError, never a TypeError or ValueError, send nothing,
    # and leave the connection as it was.
    import array

    sock, conn = face_pair
    released = memoryview(b"gone")
    released.release()
    strided = memoryview(bytearray(b"abcdefgh"))[::2]
    for bad in (released, strided, "text", 5, ["text"], [b"ok", 5]):
        with pytest.raises(w.WSAError) as caught:
            await sock.send(bad)  # type: ignore[arg-type]
        assert caught.value.winerror == w.WSAEFAULT
    for bad in (released, strided, b"read-only", memoryview(b"read-only"), "text"):
        with pytest.raises(w.WSAError) as caught:
            await sock.recv_into(bad)  # type: ignore[arg-type]
        assert caught.value.winerror == w.WSAEFAULT
    # A C-contiguous buffer of another shape is its bytes, as for WSPSend.
    assert await sock.send(memoryview(bytearray(b"12345678")).cast("B", (2, 4))) == 8
    assert await sock.send(array.array("B", b"9")) == 1
    await sock.shutdown()
    assert await _read_all(conn) == b"123456789"
    sock.close()
    conn.close()


async def test_an_urgent_send_after_sends_that_went_out_at_once_is_not_stuck(
    face_pair: FacePair,
) -> None:
    # SPEC S9 (MSG_OOB on a stream), S2.4: a send that went out at once leaves the loop's
    # reading of the transport's buffer an estimate; an urgent send waits for an empty
    # transport, and must not wait for ever on a transport that is empty already.
    sock, conn = face_pair
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_OOBINLINE, 1)
    assert await sock.send(b"in") == 2
    assert await asyncio.wait_for(sock.send([b"!"], w.MSG_OOB), 10) == 1
    await sock.shutdown()
    assert await _read_all(conn) == b"in!"
    sock.close()
    conn.close()


async def test_a_face_send_on_a_socket_with_a_stalled_drain_waits_for_it(
    face_pair: FacePair,
) -> None:
    # SPEC S12.1 (delay_drain), S4.1: a stalled drain holds every send, the face's too --
    # a send that would complete at once on a healthy socket waits until the drain runs.
    sock, conn = face_pair
    sock.provider.inject(sock.handle, delay_drain=float("inf"))
    first = asyncio.ensure_future(sock.send(b"held"))
    for _ in range(20):
        await asyncio.sleep(0)  # loop iterations, not time: the send must still wait
    assert not first.done()
    sock.provider.inject(sock.handle, delay_drain=None)
    assert await asyncio.wait_for(first, 10) == 4
    assert await sock.send(b"-then") == 5
    await sock.shutdown()
    assert await _read_all(conn) == b"held-then"
    sock.close()
    conn.close()


async def test_a_blocking_send_on_the_loop_after_a_train_of_face_sends_fits_as_before(
    face_pair: FacePair,
) -> None:
    # SPEC S7.3, S4.1: on the loop's thread a blocking send succeeds when it fits the send
    # buffer.  Face sends leave the loop's reading of the buffer an upper bound (up to a
    # whole SO_SNDBUF after enough of them); the fit is judged on what the transport holds.
    sock, conn = face_pair
    for _ in range(1000):
        assert await sock.send(b"x" * 64) == 64
    p = sock.provider
    adapter = p.socket_of(sock.handle)
    reader = asyncio.ensure_future(_read_all(conn))
    while adapter.transport.get_write_buffer_size():  # the kernel takes it all
        await asyncio.sleep(0)
    err, sent = w.INT(), w.DWORD()
    data = b"y" * 2000
    assert p.WSPSend(sock.handle, [w.WSABUF(2000, data)], 1, sent, 0, None, None, None, err) == 0
    assert sent.value == 2000
    await sock.shutdown()
    assert await asyncio.wait_for(reader, 30) == b"x" * 64000 + data
    sock.close()
    conn.close()


async def test_a_face_socket_awaited_on_another_threads_loop_writes_only_on_its_own(
    face_pair: FacePair,
) -> None:
    # SPEC S5.3, S2.4: a coroutine of the face run by another thread's loop takes the
    # full path (a post from that thread); the transport is written on the socket's own
    # loop only, and the bytes keep the order of the awaits.
    import threading

    sock, conn = face_pair
    adapter = sock.provider.socket_of(sock.handle)
    transport = adapter.transport
    writers: set[int] = set()

    class Recording:
        def __getattr__(self, name):  # type: ignore[no-untyped-def]
            return getattr(transport, name)

        def write(self, data):  # type: ignore[no-untyped-def]
            writers.add(threading.get_ident())
            transport.write(data)

        def writelines(self, data):  # type: ignore[no-untyped-def]
            writers.add(threading.get_ident())
            transport.writelines(data)

    adapter.transport = Recording()
    assert await sock.send(b"first;") == 6
    results: dict[str, object] = {}

    def elsewhere() -> None:
        async def sends() -> int:
            return await sock.send(b"second;") + await sock.send(bytearray(b"third;"))

        try:
            results["sent"] = asyncio.run(sends())
        except BaseException as exc:  # reported below, not lost in the thread
            results["error"] = exc

    # Awaited here, so that this loop runs meanwhile: the other thread's posts need it.
    await asyncio.get_running_loop().run_in_executor(None, elsewhere)
    assert results == {"sent": 13}
    assert await sock.send(b"last") == 4
    adapter.transport = transport
    await sock.shutdown()
    assert await _read_all(conn) == b"first;second;third;last"
    assert writers == {threading.get_ident()}
    sock.close()
    conn.close()


async def test_a_face_receive_awaited_on_another_threads_loop_reads_on_the_sockets_loop(
    face_pair: FacePair,
) -> None:
    # SPEC S11.1, S2.4: the received bytes belong to the socket's loop; a receive awaited
    # on another thread's loop is posted from there and filled on the socket's loop.
    import threading

    sock, conn = face_pair
    engine = sock.provider.socket_of(sock.handle).engine
    readers: set[int] = set()
    real = engine.receive_now

    def recording(op):  # type: ignore[no-untyped-def]
        readers.add(threading.get_ident())
        return real(op)

    engine.receive_now = recording  # type: ignore[method-assign]
    conn.sendall(b"arrived")
    assert await sock.recv(1) == b"a"  # the rest is here now, in the emulator
    got: dict[str, object] = {}

    def elsewhere() -> None:
        async def receive() -> bytes:
            buf = bytearray(16)
            n = await sock.recv_into(buf)
            return bytes(buf[:n])

        try:
            got["data"] = asyncio.run(receive())
        except BaseException as exc:  # reported below, not lost in the thread
            got["error"] = exc

    await asyncio.get_running_loop().run_in_executor(None, elsewhere)
    assert got == {"data": b"rrived"}
    assert readers <= {threading.get_ident()}  # the lean read ran on no other thread
    sock.close()
    conn.close()


async def test_cancelling_an_await_never_waits_for_the_providers_loop() -> None:
    # SPEC S15.2: the face used from a loop that is not its provider's (the provider runs
    # its own I/O thread).  Cancelling a task awaiting a receive records the cancel and
    # returns: the task ends while the provider's loop is held busy, and the receive
    # completes aborted once that loop is free.
    with w.Provider() as provider:
        server = socket.create_server(("127.0.0.1", 0))
        with server:
            err = w.INT()
            handle = provider.WSPSocket(
                w.AF_INET, w.SOCK_STREAM, 0, None, 0, w.WSA_FLAG_OVERLAPPED, err
            )
            address = server.getsockname()
            rc = provider.WSPConnect(handle, address, None, None, None, None, None, err)
            assert rc == 0, err.value
            sock = aio.OverlappedSocket(provider, handle)
            peer, _ = server.accept()
            with peer:
                task = asyncio.ensure_future(sock.recv(10))
                for _ in range(100):  # until the receive is posted and pending
                    await asyncio.sleep(0)
                assert not task.done()
                with loop_held(provider.loop) as let_go:
                    task.cancel()
                    done, _ = await asyncio.wait([task], timeout=10)
                    assert done and not let_go.is_set(), "the cancel waited for the loop"
                with pytest.raises(asyncio.CancelledError):
                    await task
                peer.sendall(b"after")  # the aborted receive took none of it
                assert await asyncio.wait_for(sock.recv(10), 10) == b"after"
            sock.close()
