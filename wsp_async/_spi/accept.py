"""``AcceptEx`` (SPEC S14.2): many may wait on one listener, each connection goes to the
oldest (posting order), whose accept socket then takes it over.

With ``dwReceiveDataLength > 0`` an AcceptEx completes once the first data arrived: the
data first in the output buffer, then the local and the remote address (``mswsock``).
Closing the listener aborts them (S10.2); so does the program's close of a listener it
lent us (the ``_overlapped`` face's): a descriptor that is no longer the same open file
is never accepted on (S16.4).  A connection is consumed by exactly one AcceptEx that
completes successfully, or it waits for the next one (S15.1 against S14.2).
"""

from __future__ import annotations

import asyncio
import collections
import errno
import ipaddress
from typing import Any

import attrs

from .._core.arguments import capture, integer
from .._core.engine import ABORTED, Event, SocketState
from .._core.operation import Operation, OpKind
from .._io.accepted import accept_connection
from .._io.adapter import SocketAdapter
from ..constants import STATUS_PENDING
from ..errors import WSAErr, WSAError, wsa_code_of
from ..mswsock import MIN_ADDRESS_LENGTH, encode_sockaddr
from ..structs import WSABUF, WSAOVERLAPPED
from .entry import PENDING
from .parts import Parts
from .posting import Posting, run_internal

__all__ = ["Accepts", "mark_pending"]

#: ERROR_INSUFFICIENT_BUFFER: an AcceptEx whose address block is too short completes with
#: it (STATUS_BUFFER_TOO_SMALL; WSAEFAULT in ws2_32's view).
TOO_SMALL = 122


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
    #: The peer address accept() gave the connection this AcceptEx takes: after a reset,
    #: Linux no longer answers getpeername().
    peer: Any = None
    #: The listener's own address, encoded, when it is a specific one (then every
    #: connection's local address): None for a wildcard, asked per connection.
    listener_name: bytes | None = None

    def too_small(self) -> bool:
        """A block that cannot hold its address (0 for the local one is allowed)."""
        return 0 < self.local < MIN_ADDRESS_LENGTH or self.remote < MIN_ADDRESS_LENGTH


class Accepts:
    """AcceptEx bodies over the provider's parts."""

    def __init__(self, parts: Parts, posting: Posting) -> None:
        self.parts = parts
        self.io = parts.io
        self.door = parts.door
        self.posting = posting
        #: Pending AcceptEx per listening socket, oldest first (loop thread only).
        self.accepts: dict[int, collections.deque[_Accept]] = {}

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
        mark_pending(lpOverlapped, "AcceptEx")  # first, whatever fails next
        listener = self.parts.sockets.get(sListenSocket)
        acceptor = self.parts.sockets.get(sAcceptSocket)
        # An int as it is, else integer()'s check (a call each, on every AcceptEx).
        receive, local, remote = dwReceiveDataLength, dwLocalAddressLength, dwRemoteAddressLength
        if type(receive) is not int:
            receive = integer(receive, "dwReceiveDataLength is not a length")
        if type(local) is not int:
            local = integer(local, "dwLocalAddressLength is not a length")
        if type(remote) is not int:
            remote = integer(remote, "dwRemoteAddressLength is not a length")
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
                WSAErr.WSAEINVAL,
                "sAcceptSocket is bound, connected, or another AcceptEx's accept socket",
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
        name = _specific_name(listener)
        try:
            while _drop_cancelled(queue):
                try:
                    conn, peer = await self._next_connection(listener)
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
                if listener.cancels_due:
                    # Cancels asked on other threads before this connection came, still
                    # on their way here (S15.2), are carried out first: on Windows the
                    # connection goes to an AcceptEx that was not cancelled.
                    listener.carry_out_cancels()
                if not _drop_cancelled(queue):
                    # Every AcceptEx was cancelled meanwhile: the connection waits for the
                    # next one, first in line (it was first: _next_connection takes the
                    # parked ones first), as it would in the listener's backlog.
                    listener.park(conn, peer)
                    break
                record = queue.popleft()  # the oldest pending AcceptEx gets it (S14.2)
                if record.too_small():
                    # An address block too short for its address: the AcceptEx fails with
                    # ERROR_INSUFFICIENT_BUFFER when a connection comes, and the connection
                    # stays for the next one (sock.c: test_AcceptEx).
                    listener.park(conn, peer)
                    listener.on_its_way(record.op)
                    self.door.complete(record.op, TOO_SMALL, 0)
                    continue
                if not self._take_connection(record, conn, peer):
                    continue
                record.listener_name = name
                # Handed over in a task of its own: the next connection is accepted
                # meanwhile, so a burst of them costs no loop iteration each.
                loop.create_task(self._hand_over(record, conn))
        finally:
            del self.accepts[listener.handle]
            listener.stop_reading()  # (kept on the descriptor between the loop's waits)

    async def _next_connection(self, listener: SocketAdapter) -> tuple[Any, Any]:
        """The next connection and its peer's address: one parked, one already waiting,
        else the next to come.

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
                return accept_connection(listener.sock, listener.engine.family)
            except (BlockingIOError, InterruptedError):
                pass
            try:
                await listener.readable()
            except NotImplementedError:
                # A loop with no readiness callbacks (a Proactor loop embedding the
                # provider): its own accept, whose cancel is that loop's business.
                return await self._accept_on(listener)

    async def _accept_on(self, listener: SocketAdapter) -> tuple[Any, Any]:
        future = asyncio.ensure_future(self.io.loop.sock_accept(listener.sock))
        listener.accepting_now(future)
        try:
            conn, peer = await future
        finally:
            listener.accepting.discard(future)
        conn.setblocking(False)
        return conn, peer

    def _take_connection(self, record: _Accept, conn: Any, peer: Any) -> bool:
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
            listener.park(conn, peer)
            self.door.complete(record.op, ABORTED, 0)
            return False
        try:
            acceptor.replace_socket(conn)
        except Exception as exc:
            conn.close()
            self.door.complete(record.op, wsa_code_of(exc, WSAErr.WSAECONNABORTED), 0)
            return False
        acceptor.engine.move(Event.ACCEPTED)
        record.peer = peer
        if record.receive:
            listener.before_aborting(record.op, lambda: _abandon(acceptor))
        else:
            listener.on_its_way(record.op)
        return True

    async def _hand_over(self, record: _Accept, conn: Any) -> None:
        """The accept socket's transport is made; then the AcceptEx completes (S14.2)."""
        try:
            if record.acceptor.host is not conn or record.acceptor.closed:
                return  # cancelled (reset, made fresh) or closed before this began
            try:
                await self.parts.attach_stream(record.acceptor)
                await self._finish_accept(record)
            except Exception as exc:  # the accept socket went away; never strand (S2.4)
                self.door.complete(record.op, wsa_code_of(exc, WSAErr.WSAECONNABORTED), 0)
        finally:
            record.listener.no_hook_for(record.op)
            acceptor = record.acceptor
            if acceptor.accept_into is record.op and not record.op.pending:
                # Done with it: the connection no longer keeps the AcceptEx's record (its
                # structure, its waiter) alive.  A connected socket takes no new AcceptEx,
                # so nothing commits it meanwhile.
                acceptor.accept_into = None

    async def _finish_accept(self, record: _Accept) -> None:
        acceptor, output, receive = record.acceptor, record.output, record.receive
        received = 0
        if not record.op.pending:
            return  # its accept socket closed during the hand-over: nothing to fill
        if receive:
            # Still cancellable while it waits for the first data (_take_connection).
            first = Operation(OpKind.RECV, [output[:receive]], receive)
            await run_internal(self.io.loop, acceptor, first, acceptor.post_receive)
            record.listener.no_hook_for(record.op)
            if record.op.status != STATUS_PENDING:
                return  # cancelled meanwhile: the accept socket is fresh again
            record.listener.on_its_way(record.op)
            if first.status:
                self.door.complete(record.op, first.status, 0)
                return
            received = first.transferred
        if record.local:  # a local block of 0: the local address is not asked for
            local = record.listener_name
            if local is None:
                # A listener on a wildcard address: the connection's own, asked.
                try:
                    local = encode_sockaddr(acceptor.sock.getsockname())
                except OSError as exc:
                    self.door.complete(record.op, wsa_code_of(exc), 0)
                    return
            output[receive : receive + len(local)] = local
        # The address accept() reported, not getpeername(): the same, without a system
        # call, and still there after a reset by the peer since -- on Windows the
        # AcceptEx had the connection already (it completes when the connection is
        # made) and the reset meets the program's next call on it.
        remote = encode_sockaddr(record.peer)
        start = receive + record.local
        output[start : start + len(remote)] = remote
        self.door.complete(record.op, 0, received)


def _specific_name(listener: SocketAdapter) -> bytes | None:
    """The listener's address, encoded, when it is a specific IP address: every connection
    it accepts has it as its local address, so it is asked once per accept loop rather
    than once per connection.  None for a wildcard (or a name that is no IP address)."""
    try:
        name = listener.sock.getsockname()
        if ipaddress.ip_address(name[0]).is_unspecified:
            return None
        return encode_sockaddr(name)
    except (OSError, ValueError, TypeError, IndexError):
        return None


def _lost(listener: SocketAdapter) -> bool:
    """A listener the provider borrows from the program (the ``_overlapped`` face's) whose
    descriptor the program closed: its ``lost()`` says so.  Sockets of our own have none."""
    lost = getattr(listener.host, "lost", None)
    return lost is not None and bool(lost())


def _abandon(acceptor: SocketAdapter) -> None:
    """An AcceptEx ended (cancelled) while it waited for its connection's first data: the
    connection is reset, the accept socket fresh again (loop thread)."""
    if not acceptor.closed and acceptor.engine.state == SocketState.CONNECTED:
        acceptor.reset_and_reuse()


def mark_pending(ov: object, function: str) -> None:
    """The prologue of AcceptEx and ConnectEx: a NULL structure is
    ERROR_INVALID_PARAMETER; any other gets STATUS_PENDING before anything else, so a
    call that then fails at once leaves it there (sock.c: test_AcceptEx,
    test_connecting_socket).  A structure pending for another operation holds it
    already."""
    if ov is None:
        raise WSAError(WSAErr.WSA_INVALID_PARAMETER, f"{function} needs its WSAOVERLAPPED")
    if isinstance(ov, WSAOVERLAPPED):
        ov.Internal = STATUS_PENDING


def _drop_cancelled(queue: collections.deque[_Accept]) -> bool:
    """Forget the AcceptEx cancelled while queued (CancelIoEx completed them); True if any
    is left."""
    while queue and not queue[0].op.pending:
        queue.popleft()
    return bool(queue)
