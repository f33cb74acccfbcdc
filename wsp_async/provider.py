"""The provider: the SPI face (``WSPSend`` and friends) over one I/O loop (SPEC S1-S12).

Every ``WSP*`` method keeps the ``ws2spi.h`` name and parameter order and is one
definition under :func:`~wsp_async._spi.entry.entry_point`, the S2 protocol written
once: it returns ``0``/``SOCKET_ERROR`` (or a handle, or a BOOL) and reports its
error through the ``lpErrno`` box, never by raising (S0).  Each is safe to call
from any thread, including inside completion routines (S6.5).

How it is built (see ``docs/architecture.md``): the provider is composed of
parts (:mod:`wsp_async._spi.parts`): the I/O loop, the handle table, the completion
door, the thread watch and the fault plan.  The bodies of the entry points live
in groups -- :mod:`wsp_async._spi.lifecycle`, :mod:`wsp_async._spi.sends`, :mod:`wsp_async._spi.receives`,
:mod:`wsp_async._spi.control` -- over per-socket engines (:mod:`wsp_async._core.engine`,
no I/O) and their transport adapters (:mod:`wsp_async._io.adapter`).

Threads: a call made on the I/O loop's thread acts at once (the fast path); a
call from another thread that must touch the transport is handed to the loop
(sends, receives: they pend) or waits for a round trip (connect, accept, close,
ioctl).  Blocking waits refuse to run on the loop's thread (S7.3).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, Self

from . import apc
from ._completion.door import CompletionDoor
from ._completion.ioloop import IoLoop
from ._completion.threadwatch import ThreadWatch
from ._completion.waits import wait_until
from ._core.handles import HandleTable
from ._io.adapter import SocketAdapter
from ._spi.accept import Accepts
from ._spi.control import Controls
from ._spi.entry import direct_entry, entry_point, extension
from ._spi.extensions import Extensions
from ._spi.extras import ProviderExtras
from ._spi.lifecycle import Lifecycle
from ._spi.parts import Parts
from ._spi.posting import Posting
from ._spi.receives import Receives
from ._spi.sends import Sends
from .constants import INVALID_SOCKET, SOCKET_ERROR
from .errors import WSAErr, WSAError
from .mswsock import (
    WSAID_ACCEPTEX,
    WSAID_CONNECTEX,
    WSAID_DISCONNECTEX,
    WSAID_GETACCEPTEXSOCKADDRS,
    WSAID_TRANSMITFILE,
    GetAcceptExSockaddrs,
)
from .structs import WSATHREADID

__all__ = ["Provider"]


class Provider(ProviderExtras):
    """A Winsock service provider emulated over asyncio transports (SPEC S1).

    ``Provider()`` starts its own I/O loop in a daemon thread (uvloop when it
    imports and ``use_uvloop`` is true); ``Provider(loop=running_loop)`` lives on
    the caller's loop.  Use it as a context manager (``with`` or ``async with``);
    closing it completes every pending operation with ``WSA_OPERATION_ABORTED``
    (S2.4) and closes every socket.

    Options: ``max_pending`` (outstanding overlapped operations per socket,
    default 10000, beyond which posts fail with ``WSAEWOULDBLOCK``),
    ``max_pending_bytes`` (their bytes, beyond which ``WSAENOBUFS``), ``debug``
    (the verifier of S12.3, with ``slow_routine`` its threshold in seconds for a
    routine that blocks its loop), ``tracer`` (a callable receiving trace records, S12.2).
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop | None = None,
        *,
        max_pending: int = 10000,
        max_pending_bytes: int | None = None,
        debug: bool = False,
        use_uvloop: bool = True,
        tracer: Callable[[Any], object] | None = None,
        slow_routine: float = 0.05,
    ) -> None:
        io = IoLoop(loop, use_uvloop)
        loop_target = apc.loop_target(io.loop, io.ident)
        io.on_move = lambda ident: setattr(loop_target, "thread_ident", ident)
        parts = Parts(
            io,
            CompletionDoor(tracer),
            HandleTable(),
            ThreadWatch(io.wake, lambda target: parts.cancel_issued_by(target)),
            loop_target,
            max_pending,
            max_pending_bytes,
            debug,
            slow_routine,
        )
        self._parts = parts
        self._io = io
        self._lifecycle = Lifecycle(parts)
        parts.close_handle = self._lifecycle.close
        posting = Posting(parts)
        self._sends = Sends(parts, posting)
        self._receives = Receives(parts, posting)
        self._controls = Controls(parts, posting)
        self._extensions = Extensions(parts, self._lifecycle, posting)
        self._accepts = Accepts(parts, posting)
        self._controls.extension_functions = {
            WSAID_ACCEPTEX: self.AcceptEx,
            WSAID_CONNECTEX: self.ConnectEx,
            WSAID_DISCONNECTEX: self.DisconnectEx,
            WSAID_GETACCEPTEXSOCKADDRS: GetAcceptExSockaddrs,
            WSAID_TRANSMITFILE: self.TransmitFile,
        }
        if type(self).WSPSend is Provider.WSPSend:
            # The send body behind the S2 wrapper, without the method between them (a
            # frame per send, issue 26); a subclass's own WSPSend is left to it.
            vars(self)["WSPSend"] = direct_entry(SOCKET_ERROR, self._sends.send, self.WSPSend)
        #: How long close() lets closing transports flush to the kernel (seconds).
        self.close_timeout = 5.0
        # An embedded provider whose loop ended is closed with it.
        loop_target.add_exit_hook(lambda _target: parts.close_here())

    # ------------------------------------------------------------------ what it runs on
    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        return self._io.loop

    @property
    def embedded(self) -> bool:
        return self._io.embedded

    @property
    def io_loop(self) -> IoLoop:
        """Who runs the loop, and the lending of it to a program thread (the Proactor's
        face, :mod:`wsp_async.overlapped`, lends it to the thread whose loop runs)."""
        return self._io

    @property
    def loop_kind(self) -> str:
        """``"uvloop"`` or ``"asyncio"``: which loop backs the transports."""
        return self._io.kind

    def on_loop_thread(self) -> bool:
        return self._io.here()

    @property
    def debug(self) -> bool:
        """The verifier of S12.3 (settable: applies to every socket, open or to come)."""
        return self._parts.debug

    @debug.setter
    def debug(self, on: bool) -> None:
        self._parts.debug = bool(on)
        self._parts.rewatch()
        for sock in self._parts.sockets.items():
            sock.debug = sock.lane.debug = bool(on)

    @property
    def tracer(self) -> Callable[[Any], object] | None:
        return self._parts.door.tracer

    @tracer.setter
    def tracer(self, tracer: Callable[[Any], object] | None) -> None:
        self._parts.door.tracer = tracer
        self._parts.rewatch()

    def sockets(self) -> list[int]:
        """Handles of the open sockets."""
        return self._parts.sockets.handles()

    def socket_of(self, s: int) -> SocketAdapter:
        """The adapter behind a handle (its ``sock`` is the host socket; for tools and tests)."""
        return self._parts.sockets.get(s)

    @staticmethod
    def wait_until(predicate: Callable[[], bool], timeout: float) -> bool:
        """Block (off the loop) until ``predicate()`` holds after some completion."""
        return wait_until(predicate, timeout)

    # The ws2spi.h signatures, kept compact.
    # fmt: off
    # ------------------------------------------------------------------ socket life (S1, S10)
    @entry_point(INVALID_SOCKET)
    def WSPSocket(
        self, af: int, type: int, protocol: int, lpProtocolInfo: object, g: int, dwFlags: int,
        lpErrno: object
    ) -> int:
        """Create a socket; returns its handle (unique in the process) or ``INVALID_SOCKET``."""
        return self._lifecycle.socket(af, type, protocol, dwFlags)

    @entry_point(SOCKET_ERROR)
    def WSPBind(self, s: int, name: object, namelen: object, lpErrno: object) -> int:
        return self._lifecycle.bind(s, name)

    @entry_point(SOCKET_ERROR)
    def WSPListen(self, s: int, backlog: int, lpErrno: object) -> int:
        return self._lifecycle.listen(s, backlog)

    @entry_point(INVALID_SOCKET)
    def WSPAccept(
        self, s: int, addr: object, addrlen: object, lpfnCondition: object,
        dwCallbackData: object, lpErrno: object
    ) -> int:
        """Accept a connection (``addr``: a box for the peer's sockaddr); ``lpfnCondition`` is ignored."""
        return self._lifecycle.accept(s, addr)

    @entry_point(SOCKET_ERROR)
    def WSPConnect(
        self, s: int, name: object, namelen: object, lpCallerData: object, lpCalleeData: object,
        lpSQOS: object, lpGQOS: object, lpErrno: object
    ) -> int:
        """Connect a stream socket, or set a datagram socket's default peer (S11.3)."""
        return self._lifecycle.connect(s, name)

    @entry_point(SOCKET_ERROR)
    def WSPGetSockName(self, s: int, name: object, namelen: object, lpErrno: object) -> int:
        """The socket's own address, into the box ``name``."""
        return self._lifecycle.name(s, name, peer=False)

    @entry_point(SOCKET_ERROR)
    def WSPGetPeerName(self, s: int, name: object, namelen: object, lpErrno: object) -> int:
        """The connected peer's address, into the box ``name``."""
        return self._lifecycle.name(s, name, peer=True)

    @entry_point(SOCKET_ERROR)
    def WSPShutdown(self, s: int, how: int, lpErrno: object) -> int:
        """SD_SEND: posted sends still go out and complete, then the stream is half-closed (S10.1)."""
        return self._lifecycle.shutdown(s, how)

    @entry_point(SOCKET_ERROR)
    def WSPCloseSocket(self, s: int, lpErrno: object) -> int:
        """Close: pending operations complete with ``WSA_OPERATION_ABORTED``; the handle dies at once (S10.2)."""
        return self._lifecycle.close(s)

    # ------------------------------------------------------------------ data (S2-S11)
    @entry_point(SOCKET_ERROR)
    def WSPSend(
        self, s: int, lpBuffers: object, dwBufferCount: int, lpNumberOfBytesSent: object,
        dwFlags: int, lpOverlapped: object, lpCompletionRoutine: object, lpThreadId: object,
        lpErrno: object
    ) -> int:
        """Send (S2-S10): 0 when complete at once; else ``WSA_IO_PENDING`` (it will complete,
        exactly once, S2.4) or another code (nothing started, no completion, S2.3)."""
        return self._sends.send(  # type: ignore[no-any-return]
            s, lpBuffers, dwBufferCount, lpNumberOfBytesSent, dwFlags,
            lpOverlapped, lpCompletionRoutine, lpThreadId,
        )  # fmt: skip

    @entry_point(SOCKET_ERROR)
    def WSPSendTo(
        self, s: int, lpBuffers: object, dwBufferCount: int, lpNumberOfBytesSent: object,
        dwFlags: int, lpTo: object, iTolen: object, lpOverlapped: object,
        lpCompletionRoutine: object, lpThreadId: object, lpErrno: object
    ) -> int:
        """``WSPSend`` with a destination (datagram sockets; ignored on streams)."""
        return self._sends.send(  # type: ignore[no-any-return]
            s, lpBuffers, dwBufferCount, lpNumberOfBytesSent, dwFlags,
            lpOverlapped, lpCompletionRoutine, lpThreadId, None, lpTo,
        )  # fmt: skip

    @entry_point(SOCKET_ERROR)
    def WSPRecv(
        self, s: int, lpBuffers: object, dwBufferCount: int, lpNumberOfBytesRecvd: object,
        lpFlags: object, lpOverlapped: object, lpCompletionRoutine: object, lpThreadId: object,
        lpErrno: object
    ) -> int:
        """Receive (S11.1): completes with at least one byte, or 0 at a graceful close."""
        return self._receives.recv(  # type: ignore[no-any-return]
            s, lpBuffers, dwBufferCount, lpNumberOfBytesRecvd, lpFlags, None,
            lpOverlapped, lpCompletionRoutine, lpThreadId,
        )  # fmt: skip

    @entry_point(SOCKET_ERROR)
    def WSPRecvFrom(
        self, s: int, lpBuffers: object, dwBufferCount: int, lpNumberOfBytesRecvd: object,
        lpFlags: object, lpFrom: object, lpFromlen: object, lpOverlapped: object,
        lpCompletionRoutine: object, lpThreadId: object, lpErrno: object
    ) -> int:
        """``WSPRecv`` that also reports the sender (``lpFrom`` box) of a datagram."""
        return self._receives.recv(  # type: ignore[no-any-return]
            s, lpBuffers, dwBufferCount, lpNumberOfBytesRecvd, lpFlags, lpFrom,
            lpOverlapped, lpCompletionRoutine, lpThreadId,
        )  # fmt: skip

    @entry_point(False)
    def WSPGetOverlappedResult(
        self, s: int, lpOverlapped: object, lpcbTransfer: object, fWait: bool, lpdwFlags: object,
        lpErrno: object
    ) -> bool:
        """The result of an overlapped operation (S7.2); ``fWait`` blocks until it completes."""
        return self._receives.result(s, lpOverlapped, lpcbTransfer, fWait, lpdwFlags)

    # ------------------------------------------------------------------ control
    @entry_point(SOCKET_ERROR)
    def WSPIoctl(
        self, s: int, dwIoControlCode: int, lpvInBuffer: object, cbInBuffer: object,
        lpvOutBuffer: object, cbOutBuffer: object, lpcbBytesReturned: object,
        lpOverlapped: object, lpCompletionRoutine: object, lpThreadId: object, lpErrno: object
    ) -> int:
        """``FIONBIO``, ``FIONREAD`` and ``SIO_FLUSH`` (S10.3)."""
        return self._controls.ioctl(  # type: ignore[no-any-return]
            s, dwIoControlCode, lpvInBuffer, lpvOutBuffer, lpcbBytesReturned,
            lpOverlapped, lpCompletionRoutine, lpThreadId,
        )  # fmt: skip

    @entry_point(SOCKET_ERROR)
    def WSPSetSockOpt(
        self, s: int, level: int, optname: int, optval: object, optlen: object, lpErrno: object
    ) -> int:
        """``SO_SNDBUF`` sets the emulated send-buffer capacity (S4.1); others pass to the host."""
        return self._controls.set_option(s, level, optname, optval)

    @entry_point(SOCKET_ERROR)
    def WSPGetSockOpt(
        self, s: int, level: int, optname: int, optval: object, optlen: object, lpErrno: object
    ) -> int:
        return self._controls.get_option(s, level, optname, optval, optlen)

    @entry_point(SOCKET_ERROR)
    def WPUQueueApc(
        self, lpThreadId: object, lpfnUserApc: object, dwContext: object, lpErrno: object
    ) -> int:
        """Queue ``lpfnUserApc(dwContext)`` to the thread ``lpThreadId`` names (S6.1)."""
        if not isinstance(lpThreadId, WSATHREADID):
            raise WSAError(WSAErr.WSAEFAULT, "lpThreadId is not a WSATHREADID")
        if not callable(lpfnUserApc):
            raise WSAError(WSAErr.WSAEFAULT, "lpfnUserApc is not callable")
        if not apc.queue_apc(lpThreadId, lpfnUserApc, dwContext):
            raise WSAError(WSAErr.WSAEINVAL, "the thread has exited")
        return 0

    # ------------------------------------------------------------------ mswsock.h (S14)
    @extension
    def AcceptEx(
        self, sListenSocket: int, sAcceptSocket: int, lpOutputBuffer: object,
        dwReceiveDataLength: int, dwLocalAddressLength: int, dwRemoteAddressLength: int,
        lpdwBytesReceived: object, lpOverlapped: object
    ) -> Any:
        """Accept a connection into ``sAcceptSocket`` (S14.2): False with WSA_IO_PENDING."""
        return self._accepts.accept_ex(
            sListenSocket, sAcceptSocket, lpOutputBuffer, dwReceiveDataLength,
            dwLocalAddressLength, dwRemoteAddressLength, lpOverlapped,
        )  # fmt: skip

    @extension
    def ConnectEx(
        self, s: int, name: object, namelen: object, lpSendBuffer: object, dwSendDataLength: int,
        lpdwBytesSent: object, lpOverlapped: object
    ) -> Any:
        """Connect a bound socket and send the first data (S14.3): False with WSA_IO_PENDING."""
        return self._extensions.connect_ex(s, name, lpSendBuffer, dwSendDataLength, lpOverlapped)

    @extension
    def DisconnectEx(self, s: int, lpOverlapped: object, dwFlags: int, dwReserved: int) -> Any:
        """Close gracefully once the sends before it are done; with TF_REUSE_SOCKET the
        socket can go to AcceptEx or ConnectEx again (S14.4)."""
        return self._extensions.disconnect_ex(s, lpOverlapped, dwFlags, dwReserved)

    @extension
    def TransmitFile(
        self, hSocket: int, hFile: object, nNumberOfBytesToWrite: int,
        nNumberOfBytesPerSend: int, lpOverlapped: object, lpTransmitBuffers: object,
        dwFlags: int
    ) -> Any:
        """Send head, file bytes (from the overlapped's Offset) and tail, in order with the
        socket's other sends, reading the file as the connection drains (S14.5)."""
        return self._extensions.transmit_file(
            hSocket, hFile, nNumberOfBytesToWrite, nNumberOfBytesPerSend, lpOverlapped,
            lpTransmitBuffers, dwFlags,
        )  # fmt: skip

    GetAcceptExSockaddrs = staticmethod(GetAcceptExSockaddrs)

    @entry_point(SOCKET_ERROR)
    def WPUCompleteOverlappedRequest(
        self, s: int, lpOverlapped: object, dwError: int, cbTransferred: int, lpErrno: object
    ) -> int:
        """Complete a caller-made overlapped request: port packet, or event (S13.9)."""
        return self._receives.complete_request(s, lpOverlapped, dwError, cbTransferred)

    # fmt: on

    # ------------------------------------------------------------------ life cycle
    def close(self) -> None:
        """Complete every pending operation (``WSA_OPERATION_ABORTED``), close every socket.

        ``closesocket`` is graceful, and a kernel keeps sending after its process
        let go: an owned loop lives on in its daemon thread until the closing
        transports have handed their bytes on (bounded by ``close_timeout``), then
        stops by itself.  ``close()`` does not wait for that.
        """
        self._parts.close(self.close_timeout)

    @property
    def closed(self) -> bool:
        return self._parts.closed

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """:meth:`close`, awaited: on an embedded provider's own loop it returns once the
        closing sockets have handed their bytes on and let go of their descriptors (at most
        ``close_timeout``, then the rest are aborted), so that the program may close its
        loop right after without losing those bytes or leaking a socket.  What ``async
        with`` does on the way out."""
        if self.embedded and self.on_loop_thread():
            self.close()
            await self._parts.wind_down(self.close_timeout)
        elif self.on_loop_thread():
            self.close()
        else:
            await asyncio.get_running_loop().run_in_executor(None, self.close)
