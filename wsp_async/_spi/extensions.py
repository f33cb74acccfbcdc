"""The extension functions of ``mswsock.h`` (SPEC S14): AcceptEx, ConnectEx, DisconnectEx,
TransmitFile.

Each is overlapped operations like any other -- one record, claimed, counted, and
completed once through the completion door (event, or packet of the socket's port).

* ``AcceptEx`` posts on the *listening* socket (its port gets the packet).  Many may be
  pending on one listener; each accepted connection goes to the oldest one (posting
  order), whose accept socket then takes over the connection.  With
  ``dwReceiveDataLength > 0`` it completes once the first data arrived, the data first
  in the output buffer, then the local and the remote address (``mswsock``).  Closing
  the listener aborts them (S10.2).
* ``ConnectEx`` connects a bound socket and sends the optional first data; a refused
  connection completes with ``WSAECONNREFUSED``.
* ``TransmitFile`` is one send whose bytes -- head, file, tail -- the send queue hands
  on piece by piece as the buffer drains (:mod:`wsp_async._io.transmit`), in order with
  the socket's other sends.
"""

from __future__ import annotations

import asyncio
import collections
import errno
import os
import stat
import threading
import weakref
from typing import Any

import attrs

from .._core.arguments import capture, integer, sockaddr
from .._core.engine import ABORTED, SocketState
from .._core.operation import Operation, OpKind
from .._io.adapter import SocketAdapter
from .._io.transmit import DEFAULT_PER_SEND, FileParts
from ..constants import (
    STATUS_PENDING,
    TF_DISCONNECT,
    TF_REUSE_SOCKET,
    TF_USE_KERNEL_APC,
    TF_USE_SYSTEM_THREAD,
    TF_WRITE_BEHIND,
)
from ..errors import WSAErr, WSAError, wsa_code_of
from ..mswsock import MIN_ADDRESS_LENGTH, encode_sockaddr
from ..structs import TRANSMIT_FILE_BUFFERS, WSABUF, WSAOVERLAPPED
from .entry import PENDING
from .lifecycle import Lifecycle
from .parts import Parts
from .posting import Posting, prepare_wait

#: ERROR_INSUFFICIENT_BUFFER: an AcceptEx whose address block is too short completes with
#: it (STATUS_BUFFER_TOO_SMALL; WSAEFAULT in ws2_32's view).
TOO_SMALL = 122

__all__ = ["Extensions"]


#: The peer address accept() gave each connection taken for an AcceptEx: after a reset,
#: Linux no longer answers getpeername().
_PEERS: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()


@attrs.define(eq=False)
class _Accept:
    """One pending AcceptEx: its operation and where the connection goes."""

    op: Operation
    listener: SocketAdapter
    acceptor: SocketAdapter
    output: memoryview
    receive: int
    local: int
    remote: int

    def too_small(self) -> bool:
        """A block that cannot hold its address (0 for the local one is allowed)."""
        return 0 < self.local < MIN_ADDRESS_LENGTH or self.remote < MIN_ADDRESS_LENGTH


class Extensions:
    """AcceptEx and ConnectEx bodies over the provider's parts."""

    def __init__(self, parts: Parts, lifecycle: Lifecycle, posting: Posting) -> None:
        self.parts = parts
        self.io = parts.io
        self.door = parts.door
        self.lifecycle = lifecycle
        self.posting = posting
        #: Pending AcceptEx per listening socket, oldest first (loop thread only).
        self.accepts: dict[int, collections.deque[_Accept]] = {}

    # ------------------------------------------------------------------ AcceptEx
    def accept_ex(
        self,
        sListenSocket: object,
        sAcceptSocket: object,
        lpOutputBuffer: object,
        dwReceiveDataLength: object,
        dwLocalAddressLength: object,
        dwRemoteAddressLength: object,
        lpOverlapped: object,
    ) -> Any:
        if lpOverlapped is None:
            raise WSAError(WSAErr.WSA_INVALID_PARAMETER, "AcceptEx needs its WSAOVERLAPPED")
        _mark_pending(lpOverlapped)  # first, whatever fails next (sock.c: test_AcceptEx)
        listener = self.parts.sockets.get(sListenSocket)
        acceptor = self.parts.sockets.get(sAcceptSocket)
        receive = integer(dwReceiveDataLength, "dwReceiveDataLength is not a length")
        local = integer(dwLocalAddressLength, "dwLocalAddressLength is not a length")
        remote = integer(dwRemoteAddressLength, "dwRemoteAddressLength is not a length")
        if listener.engine.state != SocketState.LISTENING:
            raise WSAError(WSAErr.WSAEINVAL, "sListenSocket is not listening")
        if not acceptor.engine.stream or acceptor.engine.state != SocketState.CREATED:
            raise WSAError(WSAErr.WSAEINVAL, "sAcceptSocket must be neither bound nor connected")
        if receive < 0 or local < 0 or remote < 0:
            raise WSAError(WSAErr.WSAEINVAL, "a negative length")
        if remote == 0:
            raise WSAError(WSAErr.WSAEFAULT, "dwRemoteAddressLength is 0")
        if lpOutputBuffer is None:
            raise WSAError(WSAErr.WSAEFAULT, "lpOutputBuffer is NULL")
        views, _size = capture([WSABUF(receive + local + remote, lpOutputBuffer)], 1, True)
        op = self.posting.overlapped(listener, OpKind.IOCTL, [], 0, 0, lpOverlapped, None, None)
        assert op is not None  # lpOverlapped was checked above
        # The accept socket is this AcceptEx's from the call on (S14.2): a second
        # AcceptEx, a bind or a connect naming it fails at once.
        if not acceptor.commit_to(op):
            raise WSAError(
                WSAErr.WSAEINVAL, "sAcceptSocket is the accept socket of another AcceptEx"
            )
        try:
            self.posting.start(listener, op, checked=False)
        except BaseException:
            acceptor.accept_into = None
            raise
        record = _Accept(op, listener, acceptor, views[0], receive, local, remote)
        if self.io.here():
            self._queue_accept(listener, record)
        else:
            self.io.wake(self._queue_accept, listener, record)  # FIFO: posting order kept
        return PENDING

    def _queue_accept(self, listener: SocketAdapter, record: _Accept) -> None:
        if not record.op.pending:
            return  # cancelled before it got here
        listener.wait_elsewhere(record.op)
        queue = self.accepts.get(listener.handle)
        if queue is None:
            queue = self.accepts[listener.handle] = collections.deque()
            self.io.loop.create_task(self._accept_loop(listener, queue))
        queue.append(record)

    async def _accept_loop(
        self, listener: SocketAdapter, queue: collections.deque[_Accept]
    ) -> None:
        loop = self.io.loop
        try:
            while _drop_cancelled(queue):
                try:
                    conn = await self._next_connection(listener)
                except asyncio.CancelledError:
                    task = asyncio.current_task()
                    if listener.closed or (task is not None and task.cancelling()):
                        # Closed (S10.2), or the loop is shutting its tasks down: every
                        # pending AcceptEx completes aborted, once.
                        self.door.complete_all([r.op for r in queue], ABORTED)
                        queue.clear()
                        return
                    continue  # AcceptEx calls were cancelled: see what is left
                except Exception as exc:
                    # Whatever ends the listening, every pending AcceptEx completes once
                    # (S2.4): aborted by a close (S10.2) -- the program's own close of a
                    # descriptor it lent us is one -- else with the error.
                    closed = listener.closed or _lost(listener)
                    code = ABORTED if closed else wsa_code_of(exc, WSAErr.WSAEINVAL)
                    self.door.complete_all([r.op for r in queue], code)
                    queue.clear()
                    return
                if not _drop_cancelled(queue):
                    # Every AcceptEx was cancelled meanwhile: the connection waits for the
                    # next one, as it would in the listener's backlog.
                    listener.parked.append(conn)
                    break
                record = queue.popleft()  # the oldest pending AcceptEx gets it (S14.2)
                if record.too_small():
                    # An address block too short for its address: the AcceptEx fails with
                    # ERROR_INSUFFICIENT_BUFFER when a connection comes, and the connection
                    # stays for the next one (sock.c: test_AcceptEx).
                    listener.parked.insert(0, conn)
                    listener.on_its_way(record.op)
                    self.door.complete(record.op, TOO_SMALL, 0)
                    continue
                if not self._take_connection(record, conn):
                    continue
                # Handed over in a task of its own: the next connection is accepted
                # meanwhile, so a burst of them costs no loop iteration each.
                loop.create_task(self._hand_over(record, conn))
        finally:
            del self.accepts[listener.handle]

    async def _next_connection(self, listener: SocketAdapter) -> Any:
        """The next connection: one parked, one already waiting, else the next to come.

        The wait is for readiness only, and the accept is ours, in this task: a wait
        cancelled (CancelIoEx, close) can never have taken a connection with it -- a
        connection is only ever accepted when an AcceptEx is there to get it."""
        while True:
            if listener.closed:
                raise asyncio.CancelledError  # closed before this accept began
            if listener.parked:
                return listener.parked.pop(0)
            if _lost(listener):
                # The descriptor lent to us was closed by its owner, and its number may
                # name another socket now: never accept on that one (S16.4).
                raise OSError(errno.EBADF, "the listener's descriptor was closed")
            try:
                conn, peer = listener.sock.accept()
            except (BlockingIOError, InterruptedError):
                pass
            else:
                _PEERS[conn] = peer
                conn.setblocking(False)
                return conn
            try:
                await listener.readable()
            except NotImplementedError:
                # A loop with no readiness callbacks (a Proactor loop embedding the
                # provider): its own accept, whose cancel is that loop's business.
                return await self._accept_on(listener)

    async def _accept_on(self, listener: SocketAdapter) -> Any:
        future = asyncio.ensure_future(self.io.loop.sock_accept(listener.sock))
        listener.accepting.add(future)
        try:
            conn, peer = await future
        finally:
            listener.accepting.discard(future)
        _PEERS[conn] = peer
        conn.setblocking(False)
        return conn

    def _take_connection(self, record: _Accept, conn: Any) -> bool:
        """The accept socket takes ``conn`` now, in the accept loop's own step (S14.2).

        From here the connection is this AcceptEx's: a cancel no longer takes an AcceptEx
        without first data (S15.1), so the connection is consumed by exactly it.  One that
        waits for first data stays cancellable until the data comes: the cancel first
        resets the connection and makes the accept socket fresh again (:func:`_abandon`),
        then completes it, so its aborted notice never comes before that state."""
        acceptor, listener = record.acceptor, record.listener
        if acceptor.closed:
            # Its close is on its way here (it aborts this AcceptEx): the connection
            # waits for the next AcceptEx, first in line.
            listener.parked.insert(0, conn)
            self.door.complete(record.op, ABORTED, 0)
            return False
        try:
            acceptor.replace_socket(conn)
        except Exception as exc:
            conn.close()
            self.door.complete(record.op, wsa_code_of(exc, WSAErr.WSAECONNABORTED), 0)
            return False
        acceptor.engine.state = SocketState.CONNECTED
        if record.receive:
            listener.before_abort[record.op] = lambda: _abandon(acceptor)
        else:
            listener.on_its_way(record.op)
        return True

    async def _hand_over(self, record: _Accept, conn: Any) -> None:
        """The accept socket's transport is made; then the AcceptEx completes (S14.2)."""
        try:
            if record.acceptor.sock is not conn or record.acceptor.closed:
                return  # cancelled (reset, made fresh) or closed before this began
            try:
                await self.parts.attach_stream(record.acceptor)
                await self._finish_accept(record)
            except Exception as exc:  # the accept socket went away; never strand (S2.4)
                self.door.complete(record.op, wsa_code_of(exc, WSAErr.WSAECONNABORTED), 0)
        finally:
            record.listener.before_abort.pop(record.op, None)

    async def _finish_accept(self, record: _Accept) -> None:
        acceptor, output, receive = record.acceptor, record.output, record.receive
        received = 0
        if not record.op.pending:
            return  # its accept socket closed during the hand-over: nothing to fill
        if receive:
            # Still cancellable while it waits for the first data (_take_connection).
            first = Operation(OpKind.RECV, [output[:receive]], receive)
            arrived: asyncio.Future[None] = self.io.loop.create_future()
            first.listener = lambda _op: _resolve(arrived)
            acceptor.post_receive(first)
            await arrived
            record.listener.before_abort.pop(record.op, None)
            if record.op.status != STATUS_PENDING:
                return  # cancelled meanwhile: the accept socket is fresh again
            record.listener.on_its_way(record.op)
            if first.status:
                self.door.complete(record.op, first.status, 0)
                return
            received = first.transferred
        try:
            local = encode_sockaddr(acceptor.sock.getsockname())
            try:
                peer = acceptor.sock.getpeername()
            except OSError:
                # Reset by the peer after the kernel accepted it, before this step: on
                # Windows the AcceptEx already had it (it completes when the connection
                # is made) and the reset meets the program's next call on it, so the
                # address is the one accept() reported.
                peer = _PEERS.get(acceptor.sock)
                if peer is None:
                    raise
            remote = encode_sockaddr(peer)
        except OSError as exc:
            self.door.complete(record.op, wsa_code_of(exc), 0)
            return
        if record.local:  # a local block of 0: the local address is not asked for
            output[receive : receive + len(local)] = local
        start = receive + record.local
        output[start : start + len(remote)] = remote
        self.door.complete(record.op, 0, received)

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
        if op is None:  # no structure: DisconnectEx blocks until done
            self.io.run(self._disconnect(sock, None, reuse), alertable=True)
            return 0
        self.posting.start(sock, op, checked=False)
        self._pend_elsewhere(sock, op)
        self.io.spawn(self._disconnect(sock, op, reuse))
        return PENDING

    async def _disconnect(self, sock: SocketAdapter, op: Operation | None, reuse: bool) -> None:
        """Once the sends before it are done (a 0-byte marker behind them completes), close
        the connection gracefully (S14.4); with TF_REUSE_SOCKET the socket is fresh again."""
        status = sock.engine.error
        if not status:
            marker = Operation(OpKind.SEND, [], 0)
            done: asyncio.Future[None] = self.io.loop.create_future()
            marker.listener = lambda _op: _resolve(done)
            sock.post_here(marker, coalesce=False)
            await done
            status = marker.status
        sock.disconnect(reuse)
        if op is not None:
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
        if lpOverlapped is None:
            raise WSAError(WSAErr.WSA_INVALID_PARAMETER, "ConnectEx needs its WSAOVERLAPPED")
        _mark_pending(lpOverlapped)  # first, whatever fails next (sock.c: test_connecting_socket)
        sock = self.parts.sockets.get(s)
        engine = sock.engine
        address = sockaddr(engine.family, name)
        if not engine.stream:
            raise WSAError(WSAErr.WSAEINVAL, "ConnectEx is for stream sockets")
        if engine.state == SocketState.CONNECTED:
            raise WSAError(WSAErr.WSAEISCONN)
        if engine.state != SocketState.BOUND:
            # Connecting already (connect or ConnectEx) is WSAEINVAL too, not WSAEALREADY
            # (sock.c: test_connecting_socket).
            raise WSAError(WSAErr.WSAEINVAL, "ConnectEx needs a bound, unconnected socket")
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
            engine.state = SocketState.BOUND
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
        except BaseException as exc:
            sock.by_connect_ex = False  # not connected: connect() may try again
            # A close while it connects aborts it, as any pending operation (S10.2).
            code = ABORTED if sock.closed else wsa_code_of(exc, WSAErr.WSAECONNREFUSED)
            self.door.complete(op, code, 0)
            return
        if not length:
            self.door.complete(op, 0, 0)
            return
        first = Operation(OpKind.SEND, data, length)
        sent: asyncio.Future[None] = self.io.loop.create_future()
        first.listener = lambda _op: _resolve(sent)
        sock.post_here(first, coalesce=False)
        await sent
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
        if threading.get_ident() == self.io.ident:
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


def _lost(listener: SocketAdapter) -> bool:
    """A listener the provider borrows from the program (the ``_overlapped`` face's) whose
    descriptor the program closed: its ``lost()`` says so.  Sockets of our own have none."""
    lost = getattr(listener.sock, "lost", None)
    return lost is not None and bool(lost())


def _abandon(acceptor: SocketAdapter) -> None:
    """An AcceptEx ended (cancelled) while it waited for its connection's first data: the
    connection is reset, the accept socket fresh again (loop thread)."""
    if not acceptor.closed and acceptor.engine.state == SocketState.CONNECTED:
        acceptor.reset_and_reuse()


def _mark_pending(ov: object) -> None:
    """AcceptEx and ConnectEx write STATUS_PENDING into the structure before anything
    else, so a call that then fails at once leaves it there (sock.c: test_AcceptEx,
    test_connecting_socket).  A structure pending for another operation holds it
    already."""
    if isinstance(ov, WSAOVERLAPPED):
        ov.Internal = STATUS_PENDING


def _drop_cancelled(queue: collections.deque[_Accept]) -> bool:
    """Forget the AcceptEx cancelled while queued (CancelIoEx completed them); True if any
    is left."""
    while queue and not queue[0].op.pending:
        queue.popleft()
    return bool(queue)


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
