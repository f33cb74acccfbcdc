"""The asyncio face's socket: :class:`OverlappedSocket`, and the provider each loop embeds
(:func:`get_provider`).  See :mod:`wsp_async.aio`."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Sequence
from typing import Any, ParamSpec, TypeAlias, TypeVar

from ..constants import (
    AF_INET,
    AF_INET6,
    MSG_PEEK,
    SD_SEND,
    SOCKET_ERROR,
)
from ..errors import WSAErr, WSAError
from ..ntstatus import wsa_of
from ..provider import Provider
from ..structs import DWORD, INT, WSABUF, WSAOVERLAPPED
from ._results import (
    kept_after_cancel,
    overlapped_result,
    raise_unless_pending,
    raise_unless_started,
    resolve,
    socket_name,
)

__all__ = [
    "ADDRESS_BLOCK",
    "Box",
    "Buffers",
    "OverlappedSocket",
    "family_of",
    "get_provider",
]


Buffers: TypeAlias = "bytes | bytearray | memoryview | Sequence[bytes | bytearray | memoryview]"
_PROVIDER_ATTR = "_wsp_async_aio_provider"
P = ParamSpec("P")
R = TypeVar("R")
#: An AcceptEx address block large enough for either family: sizeof(SOCKADDR_IN6) + 16.
ADDRESS_BLOCK = 28 + 16


class Box:
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


def family_of(host: str) -> int:
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


class _MadeAtFirstUse:
    """A method of :class:`OverlappedSocket` that each instance replaces, the first time
    it is looked up there, with the call the provider makes for that socket
    (``Provider.face_sender`` or ``face_receiver``, given the method's posting
    counterpart, ``_send_posted`` or ``_recv_posted``): a send that completes at once, or
    a receive of bytes already here, then runs in one frame (issue 13).

    Made at the lookup rather than in the constructor: an accepted socket closed unused
    -- most of a busy accept loop's -- never pays for the two closures and the reference
    cycles they leave (12 us of an awaited AcceptEx's 112, issue 26); and at the lookup
    rather than at the first call, so that ``send = sock.send`` taken before the first
    send is the provider's call too.  On the class (documentation, ``super()``, a
    subclass's own method) it is the method itself, and an instance of a subclass that
    overrides the method keeps its own.  A handle already closed gets the method itself,
    whose call answers ``WSAENOTSOCK``.
    """

    def __init__(self, maker: str, posted: str, method: Callable[..., Any]) -> None:
        self.maker = maker
        self.posted = posted
        self.method = method
        self.name = method.__name__
        # Function-like to inspection, so that documentation tools show the method it
        # stands for (a coroutine function, its signature, its text).
        functools.update_wrapper(self, method)
        self.__code__ = method.__code__
        self.__defaults__ = method.__defaults__
        self.__kwdefaults__ = method.__kwdefaults__

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.method(*args, **kwargs)

    def __get__(self, obj: Any, owner: type | None = None) -> Any:
        if obj is None:
            return self.method
        method = self.method.__get__(obj, owner)
        for klass in type(obj).__mro__:
            if self.name in klass.__dict__:
                if klass.__dict__[self.name] is not self:
                    return method  # a subclass's own (reached through super())
                break
        try:
            made = getattr(obj.provider, self.maker)(obj.handle, getattr(obj, self.posted))
        except WSAError:
            return method
        obj.__dict__[self.name] = made
        return made


def _made_at_first_use(maker: str, posted: str) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """:class:`_MadeAtFirstUse` as a decorator, typed as the method it stands for."""

    def wrap(method: Callable[P, R]) -> Callable[P, R]:
        return _MadeAtFirstUse(maker, posted, method)

    return wrap


class OverlappedSocket:
    """An emulated Winsock socket with awaitable overlapped operations.

    ``handle`` is the SPI handle, usable with the provider's ``WSP*`` methods
    too.  Use ``async with`` or :meth:`close`.
    """

    def __init__(self, provider: Provider, handle: int) -> None:
        self.provider = provider
        self.handle = handle
        # ``send`` and ``recv_into`` are replaced, at their first lookup, by the calls
        # the provider makes per socket for every message (:class:`_MadeAtFirstUse`).

    def __repr__(self) -> str:
        return f"<OverlappedSocket {self.handle:#x}>"

    # -- plumbing ---------------------------------------------------------------------
    async def _overlapped(
        self, post: Callable[[WSAOVERLAPPED, Any, INT], int], keep: bool = False
    ) -> tuple[int, WSAOVERLAPPED]:
        """Post one overlapped operation and await its completion.

        On the provider's own loop thread (the usual case: :func:`get_provider`)
        the post carries no routine at all: an operation that completes at once
        returns without yielding, and a pending one gets a completion hook that
        resolves a future -- completions run on this same thread, so the hook
        cannot miss one.  Otherwise a completion routine delivered to this loop
        resolves the future.

        ``keep`` (receives): see :func:`overlapped_result`.
        """
        loop = asyncio.get_running_loop()
        ov = WSAOVERLAPPED()
        err = INT()
        provider = self.provider
        if provider.loop is loop and provider.on_loop_thread():
            raise_unless_started(post(ov, None, err), err)
            return await overlapped_result(provider, ov, self.handle, keep), ov
        future: asyncio.Future[None] = loop.create_future()

        def routine(*_args: Any) -> None:
            resolve(future)

        raise_unless_started(post(ov, routine, err), err)
        try:
            await future
        except asyncio.CancelledError:
            if not kept_after_cancel(self.handle, ov, keep):
                raise
        if ov.Internal:
            raise WSAError(wsa_of(ov.Internal))
        return ov.InternalHigh, ov

    # -- sends --------------------------------------------------------------------------
    @_made_at_first_use("face_sender", "_send_posted")
    async def send(self, buffers: Buffers, flags: int = 0) -> int:
        """Send one buffer or a scatter/gather list; returns when consumed (S4).

        (From its first lookup each instance has the provider's
        :meth:`Provider.face_sender` in its place, which completes a send that fits at
        once and otherwise does this.  A subclass that overrides it keeps its own.)
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
            return await overlapped_result(provider, ov, self.handle)

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
        raise_unless_started(rc, err)
        return ov

    async def get_overlapped_result(self, ov: WSAOVERLAPPED) -> int:
        """The awaitable ``WSPGetOverlappedResult(fWait=True)``: bytes transferred, or WSAError."""
        return await overlapped_result(self.provider, ov)

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
        raise_unless_pending(started)
        return await overlapped_result(provider, ov, self.handle)

    # -- receives -----------------------------------------------------------------------
    @_made_at_first_use("face_receiver", "_recv_posted")
    async def recv_into(self, buffer: bytearray | memoryview, flags: int = 0) -> int:
        """Receive into ``buffer``; 0 means the peer closed gracefully (S11.1).

        (From its first lookup each instance has the provider's
        :meth:`Provider.face_receiver` in its place, which takes bytes already arrived
        at once and otherwise does this.  A subclass that overrides it keeps its own.)
        """
        return await self._recv_posted(buffer, flags)

    async def _recv_posted(self, buffer: bytearray | memoryview, flags: int = 0) -> int:
        p = self.provider
        bufs = _as_wsabufs(buffer)

        def post(ov: WSAOVERLAPPED, routine: Any, err: INT) -> int:
            return p.WSPRecv(
                self.handle, bufs, len(bufs), None, DWORD(flags), ov, routine, None, err
            )

        n, _ = await self._overlapped(post, keep=True)
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
            n, _ = await self._overlapped(post, keep=True)
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
        return socket_name(self.provider.WSPGetSockName, self.handle)

    def getpeername(self) -> Any:
        return socket_name(self.provider.WSPGetPeerName, self.handle)

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
