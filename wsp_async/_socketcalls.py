"""The SPI entry points of a socket's life: create, bind, listen, accept, connect, shut down,
close, ioctls and options (SPEC S1, S10).
"""

from __future__ import annotations

import asyncio
import socket as _pysocket
import struct
from typing import Any

from ._args import (
    FAMILIES,
    PASSTHROUGH,
    PROTOCOLS,
    TYPES,
    fail,
)
from ._base import ProviderBase
from ._ops import IOCTL
from ._socket import BOUND, CONNECTED, CONNECTING, CREATED, LISTENING, Socket
from .constants import (
    AF_INET,
    FIONBIO,
    FIONREAD,
    INVALID_SOCKET,
    SD_BOTH,
    SD_RECEIVE,
    SD_SEND,
    SIO_FLUSH,
    SO_ACCEPTCONN,
    SO_BROADCAST,
    SO_ERROR,
    SO_LINGER,
    SO_MAX_MSG_SIZE,
    SO_SNDBUF,
    SO_TYPE,
    SOCKET_ERROR,
    SOL_SOCKET,
    UDP_MAX_MSG_SIZE_V4,
    UDP_MAX_MSG_SIZE_V6,
    WSA_FLAG_OVERLAPPED,
)
from .errors import WSAErr, WSAError, wsa_code_of
from .structs import is_box, store


class SocketCalls(ProviderBase):
    """Socket life cycle, ioctls and options of the SPI face."""

    def WSPSocket(
        self,
        af: int,
        type: int,
        protocol: int,
        lpProtocolInfo: object,
        g: int,
        dwFlags: int,
        lpErrno: object,
    ) -> int:
        """Create a socket; returns its handle or ``INVALID_SOCKET``."""
        try:
            family = FAMILIES.get(af)
            if family is None:
                raise WSAError(WSAErr.WSAEAFNOSUPPORT)
            kind = TYPES.get(type)
            if kind is None:
                raise WSAError(WSAErr.WSAESOCKTNOSUPPORT)
            if protocol not in PROTOCOLS[type]:
                raise WSAError(WSAErr.WSAEPROTONOSUPPORT)
            if not isinstance(dwFlags, int):
                raise WSAError(WSAErr.WSAEINVAL)
            pysock = _pysocket.socket(family, kind)
            pysock.setblocking(False)
            sock = self._register(
                lambda handle: Socket(
                    self,
                    handle,
                    af,
                    type,
                    protocol or PROTOCOLS[type][1],
                    bool(dwFlags & WSA_FLAG_OVERLAPPED),
                    pysock,
                )
            )
            return sock.handle
        except BaseException as exc:
            fail(lpErrno, exc)
            return INVALID_SOCKET

    def WSPBind(self, s: int, name: object, namelen: object, lpErrno: object) -> int:
        try:
            sock = self._socket(s)
            if not isinstance(name, tuple):
                raise WSAError(WSAErr.WSAEFAULT, "name is not a sockaddr tuple")
            if sock.state != CREATED:
                raise WSAError(WSAErr.WSAEINVAL, "already bound")
            sock.sock.bind(name)
            sock.state = BOUND
            if not sock.is_stream:
                self._ensure_datagram_transport(sock)
            return 0
        except BaseException as exc:
            fail(lpErrno, exc)
            return SOCKET_ERROR

    def WSPListen(self, s: int, backlog: int, lpErrno: object) -> int:
        try:
            sock = self._socket(s)
            if not sock.is_stream:
                raise WSAError(WSAErr.WSAEOPNOTSUPP)
            if sock.state not in (BOUND, LISTENING):
                raise WSAError(WSAErr.WSAEINVAL, "not bound")
            sock.sock.listen(max(0, min(int(backlog), 4096)))
            sock.state = LISTENING
            return 0
        except BaseException as exc:
            fail(lpErrno, exc)
            return SOCKET_ERROR

    def WSPAccept(
        self,
        s: int,
        addr: object,
        addrlen: object,
        lpfnCondition: object,
        dwCallbackData: object,
        lpErrno: object,
    ) -> int:
        """Accept a connection; blocks unless the socket is non-blocking (``FIONBIO``).

        ``addr``, when given, is a box that receives the peer's sockaddr tuple.
        Conditional acceptance (``lpfnCondition``) is not emulated: it is ignored.
        """
        try:
            sock = self._socket(s)
            if addr is not None and not is_box(addr):
                raise WSAError(WSAErr.WSAEFAULT, "addr is not a box")
            if sock.state != LISTENING:
                raise WSAError(WSAErr.WSAEINVAL, "not listening")
            if sock.nonblocking or self.on_loop_thread():
                try:
                    conn, peer = sock.sock.accept()
                except BlockingIOError:
                    raise WSAError(WSAErr.WSAEWOULDBLOCK) from None
                child = self._adopt(sock, conn)
                if self.on_loop_thread():
                    self.loop.create_task(self._attach_stream(child))
                else:
                    self._run_coro(self._attach_stream(child))
            else:
                child, peer = self._run_coro(self.accept_async(sock))
            store(addr, peer)
            return child.handle
        except BaseException as exc:
            fail(lpErrno, exc)
            return INVALID_SOCKET

    def _adopt(self, listener: Socket, conn: _pysocket.socket) -> Socket:
        conn.setblocking(False)
        child = self._register(
            lambda handle: Socket(
                self,
                handle,
                listener.family,
                listener.type,
                listener.proto,
                listener.overlapped,
                conn,
            )
        )
        child.state = CONNECTED
        child.capacity = listener.capacity
        child.sendq.capacity = listener.capacity
        return child

    async def _attach_stream(self, sock: Socket, connected: bool = True) -> None:
        def factory() -> asyncio.Protocol:
            from ._socket import _StreamProtocol

            return _StreamProtocol(sock)

        await self.loop.connect_accepted_socket(factory, sock.sock)
        sock.pump()

    async def accept_async(self, sock: Socket) -> tuple[Socket, Any]:
        """Accept on the loop (the blocking path of WSPAccept, and the asyncio face)."""
        task = asyncio.ensure_future(self.loop.sock_accept(sock.sock))
        sock.accepting.add(task)
        try:
            conn, peer = await task
        except asyncio.CancelledError:
            if sock.closed:
                raise WSAError(WSAErr.WSAEINTR, "the listening socket was closed") from None
            raise
        finally:
            sock.accepting.discard(task)
        child = self._adopt(sock, conn)
        await self._attach_stream(child)
        return child, peer

    def WSPConnect(
        self,
        s: int,
        name: object,
        namelen: object,
        lpCallerData: object,
        lpCalleeData: object,
        lpSQOS: object,
        lpGQOS: object,
        lpErrno: object,
    ) -> int:
        """Connect a stream socket, or set a datagram socket's default peer (S11.3).

        On a non-blocking socket, or on the I/O loop's thread, a stream connect
        starts in the background and returns ``WSAEWOULDBLOCK``, as on Windows.
        """
        try:
            sock = self._socket(s)
            if not isinstance(name, tuple):
                raise WSAError(WSAErr.WSAEFAULT, "name is not a sockaddr tuple")
            if not sock.is_stream:
                sock.sock.connect(name)
                sock.state = CONNECTED
                self._ensure_datagram_transport(sock)
                return 0
            if sock.state == CONNECTED:
                raise WSAError(WSAErr.WSAEISCONN)
            if sock.state == CONNECTING:
                raise WSAError(WSAErr.WSAEALREADY)
            if sock.state == LISTENING:
                raise WSAError(WSAErr.WSAEINVAL)
            if sock.nonblocking or self.on_loop_thread():
                sock.state = CONNECTING
                if self.on_loop_thread():
                    self.loop.create_task(self._connect_in_background(sock, name))
                else:
                    self.loop.call_soon_threadsafe(
                        lambda: self.loop.create_task(self._connect_in_background(sock, name))
                    )
                raise WSAError(WSAErr.WSAEWOULDBLOCK, "connect started")
            self._run_coro(self.connect_async(sock, name))
            return 0
        except BaseException as exc:
            fail(lpErrno, exc)
            return SOCKET_ERROR

    async def connect_async(self, sock: Socket, name: tuple[Any, ...]) -> None:
        """Connect on the loop (the blocking path of WSPConnect, and the asyncio face)."""
        sock.state = CONNECTING
        future = asyncio.ensure_future(self.loop.sock_connect(sock.sock, name))
        sock.connect_future = future
        try:
            await future
        except asyncio.CancelledError:
            if sock.closed:
                raise WSAError(WSAErr.WSAEINTR, "the socket was closed") from None
            raise
        except BaseException:
            if not sock.closed:
                sock.state = BOUND if self._is_bound(sock) else CREATED
            raise
        finally:
            sock.connect_future = None
        sock.state = CONNECTED
        await self._attach_stream(sock)

    async def _connect_in_background(self, sock: Socket, name: tuple[Any, ...]) -> None:
        try:
            await self.connect_async(sock, name)
        except BaseException as exc:
            sock.so_error = wsa_code_of(exc, WSAErr.WSAECONNREFUSED)

    def WSPShutdown(self, s: int, how: int, lpErrno: object) -> int:
        """SD_SEND: posted sends still go out and complete, then the stream is half-closed (S10.1)."""
        try:
            sock = self._socket(s)
            if how not in (SD_RECEIVE, SD_SEND, SD_BOTH):
                raise WSAError(WSAErr.WSAEINVAL)
            if sock.is_stream and sock.state != CONNECTED:
                raise WSAError(WSAErr.WSAENOTCONN)
            if how in (SD_RECEIVE, SD_BOTH):
                sock.recv_shut = True
            if how in (SD_SEND, SD_BOTH):
                with sock.lock:
                    sock.send_shut = True
                if sock.is_stream:
                    self._run_on_loop(self._half_close, sock)
            return 0
        except BaseException as exc:
            fail(lpErrno, exc)
            return SOCKET_ERROR

    @staticmethod
    def _half_close(sock: Socket) -> None:
        sock.eof_after_drain = True
        sock.take_incoming()
        sock.pump()

    def WSPCloseSocket(self, s: int, lpErrno: object) -> int:
        """Close: pending operations complete with ``WSA_OPERATION_ABORTED``; the handle dies at once (S10.2)."""
        try:
            with self._lock:
                sock = self._sockets.pop(s, None)
            if sock is None:
                raise WSAError(WSAErr.WSAENOTSOCK)
            with sock.lock:
                sock.closed = True
            try:
                self._run_on_loop(sock.close_here)
            except WSAError:
                sock.close_here()  # the loop is gone: nothing else can touch the socket
            return 0
        except BaseException as exc:
            fail(lpErrno, exc)
            return SOCKET_ERROR

    def WSPIoctl(
        self,
        s: int,
        dwIoControlCode: int,
        lpvInBuffer: object,
        cbInBuffer: object,
        lpvOutBuffer: object,
        cbOutBuffer: object,
        lpcbBytesReturned: object,
        lpOverlapped: object,
        lpCompletionRoutine: object,
        lpThreadId: object,
        lpErrno: object,
    ) -> int:
        """``FIONBIO``, ``FIONREAD`` and ``SIO_FLUSH`` (S10.3).

        These complete at once; with ``lpOverlapped``/a routine the completion
        notice is issued before the call returns 0 (S2.1).
        """
        try:
            sock = self._socket(s)
            op = self._overlapped_op(
                sock, IOCTL, [], 0, 0, lpOverlapped, lpCompletionRoutine, lpThreadId
            )
            if lpcbBytesReturned is not None and not is_box(lpcbBytesReturned):
                raise WSAError(WSAErr.WSAEFAULT)
            returned = 0
            if dwIoControlCode == FIONBIO:
                value = getattr(lpvInBuffer, "value", lpvInBuffer)
                if isinstance(value, bytes | bytearray):
                    value = int.from_bytes(value[:4], "little")
                if not isinstance(value, int):
                    raise WSAError(WSAErr.WSAEFAULT, "FIONBIO takes an int")
                sock.nonblocking = bool(value)
            elif dwIoControlCode == FIONREAD:
                if not is_box(lpvOutBuffer):
                    raise WSAError(WSAErr.WSAEFAULT, "FIONREAD writes into a box")
                store(lpvOutBuffer, self._run_on_loop(sock.receiver.available))
                returned = 4
            elif dwIoControlCode == SIO_FLUSH:
                if not sock.is_stream:
                    raise WSAError(WSAErr.WSAEOPNOTSUPP)
                self._run_on_loop(sock.flush)
            else:
                raise WSAError(WSAErr.WSAEINVAL, f"unsupported ioctl {dwIoControlCode:#x}")
            store(lpcbBytesReturned, returned)
            if op is not None:
                op.counted = False
                self._prime(op)
                sock.finish(op, 0, returned)
            return 0
        except BaseException as exc:
            fail(lpErrno, exc)
            return SOCKET_ERROR

    @staticmethod
    def _optval(optval: object) -> int:
        value = getattr(optval, "value", optval)
        if isinstance(value, bool):
            return int(value)
        if isinstance(value, int):
            return value
        if isinstance(value, bytes | bytearray | memoryview) and len(value) >= 4:
            return int.from_bytes(bytes(value[:4]), "little", signed=True)
        raise WSAError(WSAErr.WSAEFAULT, "optval is not an int or 4 bytes")

    def WSPSetSockOpt(
        self, s: int, level: int, optname: int, optval: object, optlen: object, lpErrno: object
    ) -> int:
        """``SO_SNDBUF`` sets the emulated send-buffer capacity (S4.1); others pass to the host."""
        try:
            sock = self._socket(s)
            key = (level, optname)
            if key == (SOL_SOCKET, SO_SNDBUF):
                value = self._optval(optval)
                if value < 0:
                    raise WSAError(WSAErr.WSAEINVAL, "SO_SNDBUF must be >= 0")
                self._run_on_loop(sock.set_capacity, value)
            elif key == (SOL_SOCKET, SO_BROADCAST):
                value = self._optval(optval)
                sock.sock.setsockopt(_pysocket.SOL_SOCKET, _pysocket.SO_BROADCAST, int(bool(value)))
                sock.broadcast = bool(value)
            elif key == (SOL_SOCKET, SO_LINGER):
                raw = getattr(optval, "value", optval)
                if isinstance(raw, tuple) and len(raw) == 2:
                    onoff, seconds = raw
                elif isinstance(raw, bytes | bytearray) and len(raw) >= 4:
                    onoff, seconds = struct.unpack("<HH", bytes(raw[:4]))
                else:
                    raise WSAError(WSAErr.WSAEFAULT, "SO_LINGER takes (onoff, seconds)")
                sock.sock.setsockopt(
                    _pysocket.SOL_SOCKET, _pysocket.SO_LINGER, struct.pack("ii", onoff, seconds)
                )
            elif key in PASSTHROUGH:
                host_level, host_name = PASSTHROUGH[key]
                sock.sock.setsockopt(host_level, host_name, self._optval(optval))
            else:
                raise WSAError(WSAErr.WSAENOPROTOOPT)
            return 0
        except BaseException as exc:
            fail(lpErrno, exc)
            return SOCKET_ERROR

    def WSPGetSockOpt(
        self, s: int, level: int, optname: int, optval: object, optlen: object, lpErrno: object
    ) -> int:
        try:
            sock = self._socket(s)
            if not is_box(optval) or (optlen is not None and not is_box(optlen)):
                raise WSAError(WSAErr.WSAEFAULT, "optval/optlen must be boxes")
            key = (level, optname)
            value: int
            if key == (SOL_SOCKET, SO_SNDBUF):
                value = sock.capacity
            elif key == (SOL_SOCKET, SO_BROADCAST):
                value = int(sock.broadcast)
            elif key == (SOL_SOCKET, SO_MAX_MSG_SIZE):
                if sock.is_stream:
                    raise WSAError(
                        WSAErr.WSAENOPROTOOPT, "SO_MAX_MSG_SIZE means nothing on a stream"
                    )
                value = UDP_MAX_MSG_SIZE_V4 if sock.family == AF_INET else UDP_MAX_MSG_SIZE_V6
            elif key == (SOL_SOCKET, SO_TYPE):
                value = sock.type
            elif key == (SOL_SOCKET, SO_ERROR):
                value, sock.so_error = sock.so_error, 0
            elif key == (SOL_SOCKET, SO_ACCEPTCONN):
                value = int(sock.state == LISTENING)
            elif key in PASSTHROUGH:
                host_level, host_name = PASSTHROUGH[key]
                value = sock.sock.getsockopt(host_level, host_name)
            else:
                raise WSAError(WSAErr.WSAENOPROTOOPT)
            store(optval, value)
            store(optlen, 4)
            return 0
        except BaseException as exc:
            fail(lpErrno, exc)
            return SOCKET_ERROR
