"""The asyncio face (SPEC S0, S1): awaitable overlapped sockets over the same engine.

``await sock.send([header, body])`` posts one overlapped ``WSPSend`` with a
completion routine that resolves a future on the calling loop, so the face has
the SPI's ordering and exactly-once guarantees by construction: it *is* the SPI,
called on the provider's own loop thread (the fast path).  Failures raise
:class:`~wsp_async.errors.WSAError` with the Winsock code in ``.winerror``.

The provider behind the face is embedded in the running loop, one per loop,
made on first use (:func:`get_provider`), and closed when the loop closes.
Cancelling a task that awaits an operation withdraws the operation if it has
not been handed to the transport yet (it completes with
``WSA_OPERATION_ABORTED``); otherwise the operation completes normally and the
result is dropped -- never lost, never doubled.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeAlias

from .aioports import CompletionPortReader
from .constants import (
    AF_INET,
    AF_INET6,
    INVALID_SOCKET,
    MSG_PEEK,
    SD_SEND,
    SOCK_DGRAM,
    SOCK_STREAM,
    SOCKET_ERROR,
    WSA_FLAG_OVERLAPPED,
)
from .errors import WSAErr, WSAError, wsa_code_of
from .events import WSAGetLastError
from .kernel32 import CancelIoEx
from .mswsock import GetAcceptExSockaddrs
from .ntstatus import wsa_of
from .provider import Provider
from .structs import DWORD, INT, WSABUF, WSAOVERLAPPED

__all__ = [
    "CompletionPortReader",
    "Listener",
    "OverlappedSocket",
    "Server",
    "connect",
    "connect_ex",
    "get_provider",
    "listen",
    "open_connection",
    "open_datagram",
    "start_server",
]

log = logging.getLogger("wsp_async.aio")

Buffers: TypeAlias = "bytes | bytearray | memoryview | Sequence[bytes | bytearray | memoryview]"
_PROVIDER_ATTR = "_wsp_async_aio_provider"
#: An AcceptEx address block large enough for either family: sizeof(SOCKADDR_IN6) + 16.
_ADDRESS_BLOCK = 28 + 16


class _Box:
    """An out-parameter (GetAcceptExSockaddrs writes ``value``)."""

    value: Any = None


def get_provider(**options: Any) -> Provider:
    """The provider embedded in the running loop (made on first use with ``options``)."""
    loop = asyncio.get_running_loop()
    provider: Provider | None = getattr(loop, _PROVIDER_ATTR, None)
    if provider is None or provider.closed:
        provider = Provider(loop=loop, **options)
        setattr(loop, _PROVIDER_ATTR, provider)
        _close_before_the_loop(loop, provider)
    return provider


def _close_before_the_loop(loop: asyncio.AbstractEventLoop, provider: Provider) -> None:
    """Close the provider while its loop can still run, not after ``loop.close()``.

    ``asyncio.run`` (and ``asyncio.Runner``) await ``loop.shutdown_asyncgens()`` before
    closing the loop; the provider's sockets are closed there, and their transports get
    the loop iterations they need to finish, so no transport is left open (a
    ``ResourceWarning``, an error under ``-W error``) when the loop closes.
    """
    original = loop.shutdown_asyncgens

    async def shutdown_asyncgens() -> None:
        if not provider.closed:
            provider.close()
            for _ in range(3):
                await asyncio.sleep(0)
        await original()

    loop.shutdown_asyncgens = shutdown_asyncgens  # type: ignore[method-assign]


def _family(host: str) -> int:
    return AF_INET6 if ":" in host else AF_INET


def _as_wsabufs(buffers: Any) -> list[WSABUF]:
    """One WSABUF per buffer: a list or tuple is a gather list, any other object with the
    buffer protocol (``array``, ``mmap``, ...) one buffer.  What is neither a live buffer
    nor a sequence of them is ``WSAError(WSAEFAULT)`` (S9), as the SPI reports it."""
    if not isinstance(buffers, list | tuple):
        try:
            memoryview(buffers)
        except TypeError:
            pass  # not a buffer: perhaps another iterable of buffers
        except ValueError:
            buffers = [buffers]  # a released one: one bad buffer
        else:
            buffers = [buffers]
    try:
        return [WSABUF(len(b) if type(b) is bytes else memoryview(b).nbytes, b) for b in buffers]
    except (TypeError, ValueError):
        raise WSAError(
            WSAErr.WSAEFAULT, "buffers is not a bytes-like object or a sequence of them"
        ) from None


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class OverlappedSocket:
    """An emulated Winsock socket with awaitable overlapped operations.

    ``handle`` is the SPI handle, usable with the provider's ``WSP*`` methods
    too.  Use ``async with`` or :meth:`close`.
    """

    def __init__(self, provider: Provider, handle: int) -> None:
        self.provider = provider
        self.handle = handle
        # The calls of every message, made per socket by the provider: a send that
        # completes at once, or a receive of bytes already here, then runs in one frame
        # (issue 13).  A subclass that overrides them keeps its own.
        cls = type(self)
        if cls.send is OverlappedSocket.send:
            self.send = provider.face_sender(handle, self._send_posted)  # type: ignore[method-assign]
        if cls.recv_into is OverlappedSocket.recv_into:
            self.recv_into = provider.face_receiver(handle, self._recv_posted)  # type: ignore[method-assign]

    def __repr__(self) -> str:
        return f"<OverlappedSocket {self.handle:#x}>"

    # -- plumbing ---------------------------------------------------------------------
    async def _overlapped(
        self, post: Callable[[WSAOVERLAPPED, Any, INT], int]
    ) -> tuple[int, WSAOVERLAPPED]:
        """Post one overlapped operation and await its completion.

        On the provider's own loop thread (the usual case: :func:`get_provider`)
        the post carries no routine at all: an operation that completes at once
        returns without yielding, and a pending one gets a completion hook that
        resolves a future -- completions run on this same thread, so the hook
        cannot miss one.  Otherwise a completion routine delivered to this loop
        resolves the future.
        """
        loop = asyncio.get_running_loop()
        ov = WSAOVERLAPPED()
        err = INT()
        provider = self.provider
        if provider.loop is loop and provider.on_loop_thread():
            _raise_unless_started(post(ov, None, err), err)
            if ov.pending:
                future: asyncio.Future[None] = loop.create_future()
                provider.when_complete(ov, lambda: _resolve(future))
                await self._await_completion(future, ov)
        else:
            future = loop.create_future()

            def routine(*_args: Any) -> None:
                _resolve(future)

            _raise_unless_started(post(ov, routine, err), err)
            await self._await_completion(future, ov)
        if ov.Internal:
            raise WSAError(wsa_of(ov.Internal))
        return ov.InternalHigh, ov

    async def _await_completion(self, future: asyncio.Future[None], ov: WSAOVERLAPPED) -> None:
        try:
            await future
        except asyncio.CancelledError:
            if ov.pending and not self.provider.cancel(self.handle, ov):
                log.debug("%r: cancelled await of an operation already handed on", self)
            raise

    # -- sends --------------------------------------------------------------------------
    async def send(self, buffers: Buffers, flags: int = 0) -> int:
        """Send one buffer or a scatter/gather list; returns when consumed (S4).

        (Each instance has the provider's :meth:`Provider.face_sender` in its place,
        which completes a send that fits at once and otherwise does this.)
        """
        return await self._send_posted(buffers, flags)

    async def _send_posted(self, buffers: Buffers, flags: int = 0) -> int:
        provider = self.provider
        bufs = _as_wsabufs(buffers)
        loop = asyncio.get_running_loop()
        if provider.loop is loop and provider.on_loop_thread():
            # WSPSend itself, minus the end-of-iteration coalescing: a coroutine
            # that awaits each send gains nothing from it, and a send that
            # completes at once needs no future at all.
            ov = WSAOVERLAPPED()
            provider.send_now(self.handle, bufs, len(bufs), flags, ov)
            if ov.pending:
                future: asyncio.Future[None] = loop.create_future()
                provider.when_complete(ov, lambda: _resolve(future))
                await self._await_completion(future, ov)
            if ov.Internal:
                raise WSAError(wsa_of(ov.Internal))
            return ov.InternalHigh

        def post(ov: WSAOVERLAPPED, routine: Any, err: INT) -> int:
            return provider.WSPSend(
                self.handle, bufs, len(bufs), None, flags, ov, routine, None, err
            )

        n, _ = await self._overlapped(post)
        return n

    async def sendto(self, buffers: Buffers, address: tuple[Any, ...], flags: int = 0) -> int:
        bufs = _as_wsabufs(buffers)
        p = self.provider

        def post(ov: WSAOVERLAPPED, routine: Any, err: INT) -> int:
            return p.WSPSendTo(
                self.handle, bufs, len(bufs), None, flags, address, None, ov, routine, None, err
            )

        n, _ = await self._overlapped(post)
        return n

    def send_overlapped(self, buffers: Buffers, hEvent: Any = None) -> WSAOVERLAPPED:
        """Post a send and return its ``WSAOVERLAPPED`` at once (await it with
        :meth:`get_overlapped_result`); the data buffers are the provider's until then."""
        bufs = _as_wsabufs(buffers)
        ov = WSAOVERLAPPED(hEvent=hEvent)
        err = INT()
        rc = self.provider.WSPSend(self.handle, bufs, len(bufs), None, 0, ov, None, None, err)
        _raise_unless_started(rc, err)
        return ov

    async def get_overlapped_result(self, ov: WSAOVERLAPPED) -> int:
        """The awaitable ``WSPGetOverlappedResult(fWait=True)``: bytes transferred, or WSAError."""
        return await _result(self.provider, ov)

    async def connect_ex(self, address: tuple[Any, ...], data: Buffers = b"") -> int:
        """``ConnectEx`` awaited (S14.3): connect, then send ``data``; the bytes sent.

        The socket must be bound (``ConnectEx``'s rule); an unbound one is bound to
        the wildcard address and an ephemeral port first, as Windows programs do.
        Cancelling the await cancels the ConnectEx (``CancelIoEx``); the socket is then
        in no known state and should be closed, as on Windows.
        """
        provider = self.provider
        err = INT()
        if provider.WSPGetSockName(self.handle, DWORD(), None, INT()) == SOCKET_ERROR:
            wildcard = "::" if len(address) == 4 else "0.0.0.0"
            self._check(provider.WSPBind(self.handle, (wildcard, 0), None, err), err)
        bufs = _as_wsabufs(data)
        payload = bufs[0].buf if len(bufs) == 1 else b"".join(b.buf for b in bufs)
        ov = WSAOVERLAPPED()
        started = provider.ConnectEx(
            self.handle, address, None, payload or None, len(payload), None, ov
        )
        _raise_unless_pending(started)
        return await _result(provider, ov, self.handle)

    # -- receives -----------------------------------------------------------------------
    async def recv_into(self, buffer: bytearray | memoryview, flags: int = 0) -> int:
        """Receive into ``buffer``; 0 means the peer closed gracefully (S11.1).

        (Each instance has the provider's :meth:`Provider.face_receiver` in its place,
        which takes bytes already arrived at once and otherwise does this.)
        """
        return await self._recv_posted(buffer, flags)

    async def _recv_posted(self, buffer: bytearray | memoryview, flags: int = 0) -> int:
        p = self.provider
        bufs = _as_wsabufs(buffer)

        def post(ov: WSAOVERLAPPED, routine: Any, err: INT) -> int:
            return p.WSPRecv(
                self.handle, bufs, len(bufs), None, DWORD(flags), ov, routine, None, err
            )

        n, _ = await self._overlapped(post)
        return n

    async def recv(self, size: int, flags: int = 0) -> bytes:
        buffer = bytearray(size)
        n = await self.recv_into(buffer, flags)
        return bytes(buffer[:n])

    async def recvfrom(self, size: int, flags: int = 0) -> tuple[bytes, Any]:
        """One datagram and its sender; a datagram larger than ``size`` raises
        ``WSAError(WSAEMSGSIZE)`` (S11.2) with the truncated data in ``.partial``."""
        p = self.provider
        buffer = bytearray(size)
        bufs = [WSABUF(size, buffer)]
        source = DWORD()

        def post(ov: WSAOVERLAPPED, routine: Any, err: INT) -> int:
            return p.WSPRecvFrom(
                self.handle, bufs, 1, None, DWORD(flags), source, None, ov, routine, None, err
            )

        try:
            n, _ = await self._overlapped(post)
        except WSAError as exc:
            if exc.winerror == WSAErr.WSAEMSGSIZE:
                exc.partial = bytes(buffer)  # type: ignore[attr-defined]
            raise
        return bytes(buffer[:n]), source.value

    async def peek(self, size: int) -> bytes:
        return await self.recv(size, MSG_PEEK)

    # -- the rest -------------------------------------------------------------------------
    def _check(self, rc: int, err: INT) -> None:
        if rc == SOCKET_ERROR:
            raise WSAError(err.value)

    async def shutdown(self, how: int = SD_SEND) -> None:
        """Half-close: posted sends still go out first (S10.1)."""
        err = INT()
        self._check(self.provider.WSPShutdown(self.handle, how, err), err)

    def close(self) -> None:
        """Close; operations still pending complete with ``WSA_OPERATION_ABORTED`` (S10.2)."""
        err = INT()
        rc = self.provider.WSPCloseSocket(self.handle, err)
        if rc == SOCKET_ERROR and err.value != WSAErr.WSAENOTSOCK:
            raise WSAError(err.value)

    def getsockname(self) -> Any:
        return _name(self.provider.WSPGetSockName, self.handle)

    def getpeername(self) -> Any:
        return _name(self.provider.WSPGetPeerName, self.handle)

    def setsockopt(self, level: int, optname: int, value: int) -> None:
        err = INT()
        self._check(self.provider.WSPSetSockOpt(self.handle, level, optname, value, 4, err), err)

    def getsockopt(self, level: int, optname: int) -> int:
        err, value = INT(), DWORD()
        self._check(self.provider.WSPGetSockOpt(self.handle, level, optname, value, None, err), err)
        return value.value

    async def __aenter__(self) -> OverlappedSocket:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()


async def _result(provider: Provider, ov: WSAOVERLAPPED, handle: int | None = None) -> int:
    """Await ``ov``'s completion: its byte count, or WSAError.  With ``handle``, cancelling
    the await cancels the operation (CancelIoEx, S15.1)."""
    if ov.pending:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        if provider.loop is loop and provider.on_loop_thread():
            # Completions run on this thread: none can come before the hook is on.
            provider.when_complete(ov, lambda: _resolve(future))
        else:

            def resolve() -> None:
                loop.call_soon_threadsafe(_resolve, future)

            def hook() -> None:
                if not provider.when_complete(ov, resolve):
                    resolve()  # it completed before the hook got there

            provider.loop.call_soon_threadsafe(hook)
        if ov.pending:
            try:
                await future
            except asyncio.CancelledError:
                if handle is not None and ov.pending:
                    CancelIoEx(handle, ov)
                raise
    if ov.Internal:
        raise WSAError(wsa_of(ov.Internal))
    return ov.InternalHigh


def _raise_unless_pending(started: bool) -> None:
    """An extension function's BOOL: True (done) or False with WSA_IO_PENDING is started."""
    if not started:
        code = WSAGetLastError()
        if code != WSAErr.WSA_IO_PENDING:
            raise WSAError(code)


def _raise_unless_started(rc: int, err: INT) -> None:
    """S2: 0 or WSA_IO_PENDING means started; any other code is the error."""
    if rc == SOCKET_ERROR and err.value != WSAErr.WSA_IO_PENDING:
        raise WSAError(err.value)


def _name(call: Callable[[int, DWORD, None, INT], int], handle: int) -> Any:
    box, err = DWORD(), INT()
    if call(handle, box, None, err) == SOCKET_ERROR:
        raise WSAError(err.value)
    return box.value


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
    sock = OverlappedSocket(provider, _new_socket(provider, _family(host), SOCK_STREAM))
    try:
        await sock.connect_ex((host, port), data)
    except BaseException:
        sock.close()
        raise
    return sock


async def connect(host: str, port: int, *, provider: Provider | None = None) -> OverlappedSocket:
    """Connect a stream socket (the overlapped counterpart of ``asyncio.open_connection``)."""
    provider = provider or get_provider()
    handle = _new_socket(provider, _family(host), SOCK_STREAM)
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
        return _name(self.provider.WSPGetSockName, self.handle)

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
        output = bytearray(receive + 2 * _ADDRESS_BLOCK)
        ov = WSAOVERLAPPED()
        try:
            started = provider.AcceptEx(
                self.handle, acceptor.handle, output, receive, _ADDRESS_BLOCK, _ADDRESS_BLOCK,
                None, ov,
            )  # fmt: skip
            _raise_unless_pending(started)
            count = await _result(provider, ov, self.handle)
        except BaseException:
            if into is None:
                acceptor.close()
            raise
        local, remote = _Box(), _Box()
        GetAcceptExSockaddrs(
            output, receive, _ADDRESS_BLOCK, _ADDRESS_BLOCK, local, DWORD(), remote, DWORD()
        )
        return acceptor, remote.value, bytes(output[:count])

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
    handle = _new_socket(provider, _family(host), SOCK_STREAM)
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
    handle = _new_socket(provider, _family(host), SOCK_DGRAM)
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
