"""The extension functions of ``mswsock.h`` other than AcceptEx (SPEC S14): ConnectEx,
DisconnectEx, TransmitFile (AcceptEx is :mod:`wsp_async._spi.accept`).

Each is overlapped operations like any other -- one record, claimed, counted, and
completed once through the completion door (event, or packet of the socket's port).

* ``ConnectEx`` connects a bound socket and sends the optional first data; a refused
  connection completes with ``WSAECONNREFUSED``.
* ``DisconnectEx`` half-closes, or with ``TF_REUSE_SOCKET`` makes the socket fresh.
* ``TransmitFile`` is one send whose bytes -- head, file, tail -- the send queue hands
  on piece by piece as the buffer drains (:mod:`wsp_async._io.transmit`), in order with
  the socket's other sends.
"""

from __future__ import annotations

import os
import stat
from functools import partial
from typing import Any

from .._core.arguments import capture, integer, sockaddr
from .._core.engine import ABORTED, Event, SocketState
from .._core.operation import Operation, OpKind
from .._io.adapter import SocketAdapter
from .._io.transmit import DEFAULT_PER_SEND, FileParts
from ..constants import (
    TF_DISCONNECT,
    TF_REUSE_SOCKET,
    TF_USE_KERNEL_APC,
    TF_USE_SYSTEM_THREAD,
    TF_WRITE_BEHIND,
)
from ..errors import WSAErr, WSAError, wsa_code_of
from ..structs import TRANSMIT_FILE_BUFFERS, WSABUF
from .accept import mark_pending
from .entry import PENDING
from .lifecycle import Lifecycle, closed_meanwhile
from .parts import Parts
from .posting import Posting, prepare_wait, run_internal

__all__ = ["Extensions"]


class Extensions:
    """AcceptEx and ConnectEx bodies over the provider's parts."""

    def __init__(self, parts: Parts, lifecycle: Lifecycle, posting: Posting) -> None:
        self.parts = parts
        self.io = parts.io
        self.door = parts.door
        self.lifecycle = lifecycle
        self.posting = posting

    def _pend_elsewhere(self, sock: SocketAdapter, op: Operation) -> None:
        """Make ``op`` findable by CancelIoEx before the call returns: a cancel made after
        it reaches the loop after this (both go through the loop's FIFO)."""
        if self.io.here():
            sock.wait_elsewhere(op)
        else:
            self.io.wake(sock.wait_elsewhere, op)

    # ------------------------------------------------------------------ DisconnectEx
    def disconnect_ex(
        self, s: object, lpOverlapped: object, dwFlags: object, dwReserved: object
    ) -> Any:
        sock = self.parts.sockets.get(s)
        flags = integer(dwFlags, "dwFlags is not an int")
        if dwReserved not in (0, None) or flags & ~(TF_DISCONNECT | TF_REUSE_SOCKET):
            raise WSAError(WSAErr.WSAEINVAL)
        engine = sock.engine
        if not engine.stream or engine.state != SocketState.CONNECTED:
            raise WSAError(WSAErr.WSAENOTCONN)  # never connected, or made fresh again
        op = self.posting.overlapped(sock, OpKind.IOCTL, [], 0, 0, lpOverlapped, None, None)
        reuse = bool(flags & TF_REUSE_SOCKET)
        if engine.send_shut and not reuse:
            # Disconnected already (a half-close): nothing more to do, and that is
            # success, at once (sock.c: test_DisconnectEx).
            if op is not None:
                self.posting.done_at_once(sock, op, 0)
            return 0
        # A graceful close from the moment it is issued, as a shutdown for sending is:
        # a send posted after it is refused, not written before its FIN (S14.4).
        if op is None:  # no structure: DisconnectEx blocks until done
            sock.disconnecting()
            self.io.run(self._disconnect(sock, sock.host, None, reuse), alertable=True)
            return 0
        self.posting.start(sock, op, checked=False)
        sock.disconnecting()  # (once it has started: a refused DisconnectEx changes nothing)
        self._pend_elsewhere(sock, op)
        self.io.spawn(self._disconnect(sock, sock.host, op, reuse))
        return PENDING

    async def _disconnect(
        self, sock: SocketAdapter, connection: object, op: Operation | None, reuse: bool
    ) -> None:
        """Once the sends before it are done (a 0-byte marker behind them completes), close
        the connection gracefully (S14.4); with TF_REUSE_SOCKET the socket is fresh again.

        Only the connection it was called for: another DisconnectEx or TransmitFile with
        TF_REUSE_SOCKET may have ended that one first (aborting this one's marker with
        the socket's other sends), and other threads may already have bound the fresh
        socket, made it a listener, posted AcceptEx calls on it -- a disconnect then
        closed a listening host socket the loop was still watching (a libuv abort,
        found by the fuzz).  ``connection`` is the host socket it was called for."""
        status = sock.engine.error
        if not status:
            marker = Operation(OpKind.SEND, [], 0)
            await run_internal(self.io.loop, sock, marker, partial(sock.post_here, coalesce=False))
            status = marker.status
        if sock.closed:
            status = ABORTED  # closed meanwhile: nothing left to disconnect (S10.2)
        elif connection is None or sock.host is not connection:
            status = status or ABORTED  # made fresh meanwhile: that connection is gone
        else:
            try:
                sock.disconnect(reuse)
            except OSError as exc:  # the connection failed under it: said, not lost
                status = status or wsa_code_of(exc)
        if op is not None:
            sock.on_its_way(op)  # done waiting: the socket's list lets go of it
            self.door.complete(op, status, 0)

    # ------------------------------------------------------------------ ConnectEx
    def connect_ex(
        self,
        s: object,
        name: object,
        lpSendBuffer: object,
        dwSendDataLength: object,
        lpOverlapped: object,
    ) -> Any:
        mark_pending(lpOverlapped, "ConnectEx")  # first, whatever fails next
        sock = self.parts.sockets.get(s)
        engine = sock.engine
        address = sockaddr(engine.family, name)
        if not engine.stream:
            raise WSAError(WSAErr.WSAEINVAL, "ConnectEx is for stream sockets")
        engine.allows(Event.CONNECT_EX)  # refused before anything is read (S2.3)
        length = integer(dwSendDataLength, "dwSendDataLength is not a length")
        data: list[Any] = []
        if lpSendBuffer is not None and length:
            views, length = capture([WSABUF(length, lpSendBuffer)], 1, False)
            # Read in the call, as Windows does: the program may reuse the buffer at once.
            data = [bytes(views[0])]
        op = self.posting.overlapped(sock, OpKind.IOCTL, [], 0, 0, lpOverlapped, None, None)
        assert op is not None  # lpOverlapped was checked above
        # The state changes in the call, not later on the loop: a second ConnectEx or a
        # connect made right after it sees the connection under way.
        sock.begin_connect(by_connect_ex=True)
        try:
            self.posting.start(sock, op, checked=False)
        except BaseException:
            engine.move(Event.GAVE_UP_BOUND)
            raise
        self._pend_elsewhere(sock, op)
        self.io.spawn(self._connect(sock, address, op, data, length))
        return PENDING

    async def _connect(
        self,
        sock: SocketAdapter,
        address: tuple[Any, ...],
        op: Operation,
        data: list[Any],
        length: int,
    ) -> None:
        try:
            await self.lifecycle.connect_async(sock, address)
            if sock.closed:  # between the connection and its transport (S10.2)
                raise closed_meanwhile()
        except BaseException as exc:
            sock.on_its_way(op)  # done waiting: the socket's list lets go of it
            sock.by_connect_ex = False  # not connected: connect() may try again
            # A close while it connects aborts it, as any pending operation (S10.2).
            code = ABORTED if sock.closed else wsa_code_of(exc, WSAErr.WSAECONNREFUSED)
            self.door.complete(op, code, 0)
            return
        if length:
            first = await run_internal(
                self.io.loop,
                sock,
                Operation(OpKind.SEND, data, length),
                partial(sock.post_here, coalesce=False),
            )
        # Done: the socket's list of operations waiting elsewhere lets go of it (it kept
        # a completed ConnectEx -- its structure, the Proactor's future -- for the
        # connection's whole life).
        sock.on_its_way(op)
        if not length:
            self.door.complete(op, 0, 0)
            return
        self.door.complete(op, first.status, first.transferred if not first.status else 0)

    # ------------------------------------------------------------------ TransmitFile
    def transmit_file(
        self,
        hSocket: object,
        hFile: object,
        nNumberOfBytesToWrite: object,
        nNumberOfBytesPerSend: object,
        lpOverlapped: object,
        lpTransmitBuffers: object,
        dwFlags: object,
    ) -> Any:
        sock = self.parts.sockets.get(hSocket)
        engine = sock.engine
        to_write = integer(nNumberOfBytesToWrite, "nNumberOfBytesToWrite is not a length")
        per_send = integer(nNumberOfBytesPerSend, "nNumberOfBytesPerSend is not a length")
        flags = integer(dwFlags, "dwFlags is not an int")
        if to_write < 0 or per_send < 0 or flags & ~_TRANSMIT_FLAGS:
            raise WSAError(WSAErr.WSAEINVAL)
        if not engine.stream:
            raise WSAError(WSAErr.WSAENOTCONN, "TransmitFile needs a connected stream socket")
        # Not connected is said before the flags are (sock.c: test_TransmitFile).
        engine.check_send(0, None, 0)  # shut down, failed, not connected (S9)
        if flags & TF_REUSE_SOCKET and not flags & TF_DISCONNECT:
            raise WSAError(WSAErr.WSAEINVAL, "TF_REUSE_SOCKET needs TF_DISCONNECT")
        head, tail = _head_and_tail(lpTransmitBuffers)
        fd = _file_descriptor(hFile)
        op = self.posting.overlapped(sock, OpKind.SEND, [], 0, 0, lpOverlapped, None, None)
        if op is None:
            offset = os.lseek(fd, 0, os.SEEK_CUR) if fd is not None else 0
        else:
            ov = op.overlapped
            low = integer(ov.Offset, "Offset is not a file offset")  # type: ignore[union-attr]
            high = integer(ov.OffsetHigh, "OffsetHigh is not a file offset")  # type: ignore[union-attr]
            if not (0 <= low < 1 << 32 and 0 <= high < 1 << 32):
                raise WSAError(WSAErr.WSAEINVAL, "Offset/OffsetHigh is not a file offset")
            offset = high << 32 | low
        count = 0
        if fd is not None:
            available = max(0, _file_size(fd) - offset)
            count = min(to_write, available) if to_write else available
        parts = FileParts(head, fd, offset, count, per_send or DEFAULT_PER_SEND, tail)
        parts.disconnect = bool(flags & TF_DISCONNECT)
        parts.reuse = bool(flags & TF_REUSE_SOCKET)
        total = len(head) + count + len(tail)
        if op is None:  # no structure: TransmitFile blocks until done, from the file pointer
            return self._transmit_blocking(sock, parts, total, fd)
        op.nbytes = total
        op.parts = parts
        saved = self.posting.start(sock, op, checked=False)
        if self.io.here():
            sock.post_here(op, coalesce=False)
        else:
            try:
                sock.post_foreign(op)
            except WSAError:
                self.posting.undo(sock, op, saved)
                raise
        return PENDING

    def _transmit_blocking(
        self, sock: SocketAdapter, parts: FileParts, total: int, fd: int | None
    ) -> int:
        if self.io.here():
            raise self.io.refuse_blocking("a blocking TransmitFile")
        op = Operation(OpKind.SEND, [], total)
        op.handle = sock.handle
        op.parts = parts
        prepare_wait(op)
        sock.post_foreign(op)
        op.listener.wait()  # type: ignore[union-attr]
        if fd is not None:
            os.lseek(fd, parts.offset, os.SEEK_SET)  # the file pointer moves past what went
        if op.status:
            raise WSAError(op.status)
        return 0


_TRANSMIT_FLAGS = (
    TF_DISCONNECT | TF_REUSE_SOCKET | TF_WRITE_BEHIND | TF_USE_SYSTEM_THREAD | TF_USE_KERNEL_APC
)


def _head_and_tail(buffers: object) -> tuple[Any, Any]:
    """The head and tail of a ``TRANSMIT_FILE_BUFFERS`` (None: neither), captured now."""
    if buffers is None:
        return b"", b""
    if not isinstance(buffers, TRANSMIT_FILE_BUFFERS):
        raise WSAError(WSAErr.WSAEFAULT, "lpTransmitBuffers is not a TRANSMIT_FILE_BUFFERS")
    pieces = []
    for buf, length in ((buffers.Head, buffers.HeadLength), (buffers.Tail, buffers.TailLength)):
        size = integer(length, "HeadLength/TailLength is not a length")
        if buf is None or not size:
            pieces.append(b"")
            continue
        views, _total = capture([WSABUF(size, buf)], 1, False)
        pieces.append(views[0])
    return pieces[0], pieces[1]


def _file_descriptor(hFile: object) -> int | None:
    """The file's descriptor: an int, or an object with ``fileno()``; None or 0 for no file.

    Descriptor 0 is stdin, never a file anyone transmits: as on Windows, a null
    handle means "only the transmit buffers"."""
    if hFile is None or hFile is False:
        return None
    try:
        fd = hFile if type(hFile) is int else hFile.fileno()  # type: ignore[attr-defined]
        if type(fd) is not int:
            raise TypeError
    except Exception:
        raise WSAError(WSAErr.WSA_INVALID_HANDLE, "hFile is not an open file") from None
    if fd == 0:
        return None
    try:
        mode = os.fstat(fd).st_mode
    except (OSError, OverflowError, ValueError):  # closed, or no descriptor can be this
        raise WSAError(WSAErr.WSA_INVALID_HANDLE, "hFile is not an open file") from None
    if not stat.S_ISREG(mode):
        # The bytes are read from an offset (the overlapped's, or the file pointer): a
        # pipe, a socket or a device has none.  Both forms refuse it alike.
        raise WSAError(WSAErr.WSAEINVAL, "hFile is not a regular file")
    return fd


def _file_size(fd: int) -> int:
    try:
        return os.fstat(fd).st_size
    except OSError:
        raise WSAError(WSAErr.WSA_INVALID_HANDLE, "hFile is not an open file") from None
