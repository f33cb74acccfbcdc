"""The asyncio face's ways to a connection: connecting, listening and accepting, servers
and datagram endpoints.  See :mod:`wsp_async.aio`."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from ..constants import (
    AF_INET,
    AF_INET6,
    INVALID_SOCKET,
    SOCK_DGRAM,
    SOCK_STREAM,
    WSA_FLAG_OVERLAPPED,
)
from ..errors import WSAErr, WSAError, wsa_code_of
from ..mswsock import decode_sockaddr
from ..provider import Provider
from ..structs import INT, WSAOVERLAPPED
from ._results import overlapped_result, raise_unless_pending, socket_name
from ._socket import (
    ADDRESS_BLOCK,
    Buffers,
    OverlappedSocket,
    family_of,
    get_provider,
)

__all__ = [
    "Listener",
    "Server",
    "connect",
    "connect_ex",
    "listen",
    "open_connection",
    "open_datagram",
    "start_server",
]


def _new_socket(provider: Provider, family: int, kind: int) -> int:
    err = INT()
    handle = provider.WSPSocket(family, kind, 0, None, 0, WSA_FLAG_OVERLAPPED, err)
    if handle == INVALID_SOCKET:
        raise WSAError(err.value)
    return handle


async def connect_ex(
    host: str, port: int, data: Buffers = b"", *, provider: Provider | None = None
) -> OverlappedSocket:
    """Connect with ``ConnectEx`` (S14.3), sending ``data`` as the first bytes."""
    provider = provider or get_provider()
    sock = OverlappedSocket(provider, _new_socket(provider, family_of(host), SOCK_STREAM))
    try:
        await sock.connect_ex((host, port), data)
    except BaseException:
        sock.close()
        raise
    return sock


async def connect(host: str, port: int, *, provider: Provider | None = None) -> OverlappedSocket:
    """Connect a stream socket (the overlapped counterpart of ``asyncio.open_connection``)."""
    provider = provider or get_provider()
    handle = _new_socket(provider, family_of(host), SOCK_STREAM)
    try:
        await provider.connect_async(handle, (host, port))
    except BaseException as exc:
        provider.WSPCloseSocket(handle, INT())
        if isinstance(exc, OSError) and not isinstance(exc, WSAError):
            raise WSAError(wsa_code_of(exc, WSAErr.WSAECONNREFUSED), str(exc)) from exc
        raise
    return OverlappedSocket(provider, handle)


open_connection = connect


class Listener:
    """A listening stream socket; ``await accept()`` returns ``(OverlappedSocket, address)``."""

    def __init__(self, provider: Provider, handle: int) -> None:
        self.provider = provider
        self.handle = handle
        #: The family of the sockets AcceptEx accepts into: the listener's own.
        self.family = AF_INET6 if len(self.address) == 4 else AF_INET

    @property
    def address(self) -> Any:
        return socket_name(self.provider.WSPGetSockName, self.handle)

    async def accept_ex(
        self, receive: int = 0, into: OverlappedSocket | None = None
    ) -> tuple[OverlappedSocket, Any, bytes]:
        """``AcceptEx`` awaited (S14.2): ``(socket, peer address, first data)``.

        ``receive`` > 0 waits for the connection's first bytes too (up to that many).
        ``into`` is an accept socket to reuse (one ``DisconnectEx(TF_REUSE_SOCKET)``
        freed); by default a new one is made.  Many may be awaited at once: each
        connection goes to the oldest.  Cancelling the await cancels the AcceptEx.
        """
        provider = self.provider
        acceptor = into or OverlappedSocket(
            provider, _new_socket(provider, self.family, SOCK_STREAM)
        )
        output = bytearray(receive + 2 * ADDRESS_BLOCK)
        ov = WSAOVERLAPPED()
        try:
            started = provider.AcceptEx(
                self.handle, acceptor.handle, output, receive, ADDRESS_BLOCK, ADDRESS_BLOCK,
                None, ov,
            )  # fmt: skip
            raise_unless_pending(started)
            count = await overlapped_result(provider, ov, self.handle)
        except BaseException:
            if into is None:
                acceptor.close()
            raise
        # The remote block, read straight: what GetAcceptExSockaddrs would return for it
        # (its local block is not asked for here).
        start = receive + ADDRESS_BLOCK
        remote = decode_sockaddr(memoryview(output)[start : start + ADDRESS_BLOCK])
        return acceptor, remote, bytes(output[:count])

    async def accept(self) -> tuple[OverlappedSocket, Any]:
        try:
            handle, peer = await self.provider.accept_async(self.handle)
        except OSError as exc:
            if isinstance(exc, WSAError):
                raise
            raise WSAError(wsa_code_of(exc, WSAErr.WSAEINVAL), str(exc)) from exc
        return OverlappedSocket(self.provider, handle), peer

    def close(self) -> None:
        self.provider.WSPCloseSocket(self.handle, INT())

    async def __aenter__(self) -> Listener:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()


async def listen(
    host: str = "127.0.0.1", port: int = 0, backlog: int = 128, *, provider: Provider | None = None
) -> Listener:
    """A bound, listening stream socket."""
    provider = provider or get_provider()
    handle = _new_socket(provider, family_of(host), SOCK_STREAM)
    err = INT()
    if provider.WSPBind(handle, (host, port), None, err) or provider.WSPListen(
        handle, backlog, err
    ):
        provider.WSPCloseSocket(handle, INT())
        raise WSAError(err.value)
    return Listener(provider, handle)


class Server:
    """What :func:`start_server` returns: the listener and its connection tasks."""

    def __init__(self, listener: Listener, task: asyncio.Task[None]) -> None:
        self.listener = listener
        self._task = task
        self.connections: set[asyncio.Task[None]] = set()

    @property
    def address(self) -> Any:
        return self.listener.address

    def close(self) -> None:
        self._task.cancel()
        self.listener.close()
        for task in self.connections:
            task.cancel()

    async def wait_closed(self) -> None:
        await asyncio.gather(self._task, *self.connections, return_exceptions=True)

    async def __aenter__(self) -> Server:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()
        await self.wait_closed()


async def start_server(
    client_connected: Callable[[OverlappedSocket], Awaitable[None]],
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    provider: Provider | None = None,
) -> Server:
    """Accept connections and run ``client_connected(sock)`` for each in its own task
    (the socket is closed when the coroutine returns)."""
    listener = await listen(host, port, provider=provider)
    server: Server

    async def serve_one(sock: OverlappedSocket) -> None:
        async with sock:
            await client_connected(sock)

    async def accept_loop() -> None:
        while True:
            try:
                sock, _ = await listener.accept()
            except WSAError:
                return
            task = asyncio.ensure_future(serve_one(sock))
            server.connections.add(task)
            task.add_done_callback(server.connections.discard)

    server = Server(listener, asyncio.ensure_future(accept_loop()))
    return server


async def open_datagram(
    local_addr: tuple[str, int] | None = None,
    remote_addr: tuple[str, int] | None = None,
    *,
    provider: Provider | None = None,
) -> OverlappedSocket:
    """A datagram socket, bound to ``local_addr`` and/or with ``remote_addr`` as default peer."""
    provider = provider or get_provider()
    host = (local_addr or remote_addr or ("127.0.0.1", 0))[0]
    handle = _new_socket(provider, family_of(host), SOCK_DGRAM)
    err = INT()
    if local_addr is not None and provider.WSPBind(handle, local_addr, None, err):
        provider.WSPCloseSocket(handle, INT())
        raise WSAError(err.value)
    if remote_addr is not None and provider.WSPConnect(
        handle, remote_addr, None, None, None, None, None, err
    ):
        provider.WSPCloseSocket(handle, INT())
        raise WSAError(err.value)
    sock = OverlappedSocket(provider, handle)
    # Receives need the datagram transport, which the bind/connect above start on this loop.
    await asyncio.sleep(0)
    return sock
