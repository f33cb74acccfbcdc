"""One emulated socket: the engine's decisions wired to a real asyncio transport.

How the emulation works
-----------------------
Who owns what:

* The caller's ``WSABUF`` list is read and dropped before ``WSPSend`` returns
  (S5.1); the data buffers it pointed at are referenced by the
  :class:`~wsp_async._ops.Operation` until it completes (S5.2), never copied
  while they wait.  The transport copies what it cannot write at once -- that
  copy is the emulated send buffer, bounded by ``SO_SNDBUF`` plus one send (S4.4).
* The :class:`~wsp_async._sendqueue.SendQueue` and the receivers belong to the
  I/O loop thread.  Other threads reach a socket only through ``incoming``, a
  deque guarded by ``lock``: the order in which posts enter it is the order their
  bytes go out (S5.3).  One ``call_soon_threadsafe`` drains everything queued
  since the last drain, so a burst of foreign posts costs one loop wake-up.

Which thread runs what:

* A post made on the I/O loop thread with nothing queued before it goes
  straight to the transport and usually completes at once (S2.1): returns 0 and
  its routine is *queued* (S6.2).
* A post from any other thread is pending (S2.2) and completes when the loop
  has handed it on and the transport consumed it (S4.1).
* Completions are decided on the loop thread, in :meth:`Socket.finish`, and
  travel to the routine's thread as an APC (:mod:`wsp_async.apc`), or set the
  event, or wake a blocked caller.

Exactly once (S2.4): an operation is completed only by :meth:`Socket.finish`,
which ignores an operation that already completed; every path that drops
operations (close, flush, thread exit, reset, provider close) hands them to it.
Datagrams are the exception to "loop thread only": a datagram is one system call
that cannot interleave with another, so any thread sends it directly under the
socket's lock and learns the result at once.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import math
import socket as _pysocket
import threading
import time
from typing import TYPE_CHECKING, Any

from . import apc
from ._ops import SEND, Operation
from ._recvqueue import DatagramReceiver, StreamReceiver
from ._sendqueue import SendQueue
from .constants import STATUS_PENDING
from .errors import WSAErr, WSAError, wsa_code_of
from .faults import FaultPlan

if TYPE_CHECKING:
    from ._base import ProviderBase as Provider

log = logging.getLogger("wsp_async")

# Socket states (stream sockets walk them in order; datagram sockets skip LISTENING).
CREATED = 0
BOUND = 1
LISTENING = 2
CONNECTING = 3
CONNECTED = 4

#: Only sends smaller than this wait for the end-of-iteration gather write: a large
#: send costs one system call whether it is gathered or not, and going out at once
#: lets it complete at once (S2.1) without a pending op's bookkeeping.
COALESCE_BELOW = 8192

#: Pause reading once this many received bytes wait for a receive (bounds memory).
RECEIVE_HIGH_WATER = 1 << 20

ABORTED = WSAErr.WSA_OPERATION_ABORTED


class _StreamProtocol(asyncio.Protocol):
    """Relays transport events to the socket; decides nothing itself."""

    __slots__ = ("sock",)

    def __init__(self, sock: Socket) -> None:
        self.sock = sock

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.sock.attach(transport)

    def pause_writing(self) -> None:
        pass  # the send queue reads the buffer size itself after every write

    def resume_writing(self) -> None:
        self.sock.drained()

    def data_received(self, data: bytes) -> None:
        self.sock.received(data, None)

    def eof_received(self) -> bool:
        self.sock.ended()
        return True  # keep our half open: the peer's FIN does not stop our sends

    def connection_lost(self, exc: Exception | None) -> None:
        self.sock.lost(exc)


class _DatagramProtocol(asyncio.DatagramProtocol):
    __slots__ = ("sock",)

    def __init__(self, sock: Socket) -> None:
        self.sock = sock

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.sock.attach(transport)

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.sock.received(data, addr)

    def error_received(self, exc: Exception) -> None:
        # An ICMP error for an earlier datagram (e.g. port unreachable): Winsock
        # reports it on a later receive; we keep it as the pending socket error.
        self.sock.so_error = wsa_code_of(exc)

    def connection_lost(self, exc: Exception | None) -> None:
        self.sock.lost(exc)


class Socket:
    """The state of one emulated socket (see the module docstring)."""

    def __init__(
        self,
        provider: Provider,
        handle: int,
        family: int,
        type_: int,
        proto: int,
        overlapped: bool,
        pysock: _pysocket.socket,
    ) -> None:
        self.provider = provider
        self.loop = provider.loop
        self.handle = handle
        self.family = family
        self.type = type_
        self.proto = proto
        self.is_stream = pysock.type == _pysocket.SOCK_STREAM
        self.overlapped = overlapped
        self.nonblocking = False
        self.sock = pysock
        self.transport: Any = None
        self.state = CREATED
        self.closed = False
        self.send_shut = False
        self.recv_shut = False
        #: Sticky connection error (reset, abort): later sends fail with it at once.
        self.error = 0
        #: SO_ERROR: the last asynchronous error, cleared when read.
        self.so_error = 0
        self.broadcast = False
        self.capacity = 65536
        self.lock = threading.Lock()
        #: Held while bytes are handed to the transport or, by send_direct, to the kernel.
        self.write_lock = threading.Lock()
        self.incoming: collections.deque[Operation] = collections.deque()
        self.drain_scheduled = False
        self.sendq: SendQueue[Operation] = SendQueue(self.capacity)
        self.receiver: StreamReceiver[Operation] | DatagramReceiver[Operation] = (
            StreamReceiver() if self.is_stream else DatagramReceiver()
        )
        self.reading_paused = False
        #: Outstanding overlapped operations and their bytes (max_pending, max_pending_bytes).
        self.pending = 0
        self.pending_bytes = 0
        #: Thread ident of a blocking call in progress (WSAEINPROGRESS).
        self.blocking_owner: int | None = None
        #: Per delivering thread, routines of this socket waiting for the running one (S6.4).
        self.delivering: dict[int, collections.deque[Operation]] = {}
        self.eof_after_drain = False
        #: A send went straight out in this loop iteration; later ones wait for its end.
        self.coalescing = False
        #: Datagrams that met EAGAIN wait here (on the loop) so later ones keep their order.
        self.datagram_backlog = False
        self.connect_future: asyncio.Future[None] | None = None
        #: Fault injection (S12.1): faults armed on this socket, and a slowed drain.
        self.faults = FaultPlan()
        self.drain_delay: float | None = None
        self.drain_timer: asyncio.TimerHandle | None = None
        self.accepting: set[asyncio.Future[Any]] = set()

    def __repr__(self) -> str:
        kind = "stream" if self.is_stream else "datagram"
        return f"<Socket {self.handle:#x} {kind} state={self.state} closed={self.closed}>"

    # ------------------------------------------------------------------ transport
    def attach(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        if self.is_stream:
            # S4.1: the transport's write buffer *is* the emulated send buffer.
            # Both loops pause above `high` and resume at or below `low`; with
            # high == low == capacity, resume_writing means "consumed again".
            transport.set_write_buffer_limits(high=self.capacity, low=self.capacity)  # type: ignore[attr-defined]

    def set_capacity(self, capacity: int) -> None:
        """SO_SNDBUF changed (loop thread)."""
        self.capacity = capacity
        self.sendq.capacity = capacity
        if self.transport is not None and self.is_stream:
            self.transport.set_write_buffer_limits(high=capacity, low=capacity)
            self.drained()

    def _buffered(self) -> int:
        size: int = self.transport.get_write_buffer_size()
        return size

    # ------------------------------------------------------------------ completion
    def finish(self, op: Operation, status: int, nbytes: int) -> None:
        """Complete ``op`` exactly once and issue its completion notice (loop thread)."""
        if op.status != STATUS_PENDING:
            return
        op.status = status
        op.transferred = nbytes
        op.buffers = []  # drop our references to the caller's data
        ov = op.overlapped
        if ov is not None:
            ov.InternalHigh = nbytes
            ov._flags = op.out_flags
            ov.Internal = status
            ov._op = None
        if op.counted:
            with self.lock:
                self.pending -= 1
                self.pending_bytes -= op.nbytes
        if op.routine is not None:
            # S6.6: hEvent is the caller's; with a routine we never touch it.
            if op.thread is not None:
                op.thread.post(self._run_routine, (op,))
        elif op.event is not None:
            op.event.set()  # S7.1
        if op.notify is not None:
            op.notify(op)
        provider = self.provider
        if provider._result_waiters:
            provider._wake_result_waiters()
        if provider.tracer is not None:
            provider._trace_completion(self, op)

    def finish_all(self, ops: list[Operation], status: int) -> None:
        for op in ops:
            self.finish(op, status, 0)

    def _run_routine(self, op: Operation) -> None:
        """The provider's APC function: runs the caller's routine, never nested per socket (S6.4)."""
        ident = threading.get_ident()
        later = self.delivering.get(ident)
        if later is not None:
            later.append(op)  # a routine of ours is running below us on this thread
            return
        later = self.delivering[ident] = collections.deque()
        try:
            while True:
                routine = op.routine
                assert routine is not None
                debug = self.provider.debug
                started = time.perf_counter() if debug else 0.0
                try:
                    routine(op.status, op.transferred, op.overlapped, 0)
                except Exception as exc:
                    apc.report(routine, exc)
                if debug:
                    took = time.perf_counter() - started
                    if took > self.provider.slow_routine and apc.on_loop_thread():
                        from .verifier import report_slow_routine

                        report_slow_routine(self, op, took)
                if not later:
                    break
                op = later.popleft()
        finally:
            del self.delivering[ident]

    # ------------------------------------------------------------------ posting
    def check_pending_limits(self, op: Operation) -> None:
        """Raise WSAEWOULDBLOCK/WSAENOBUFS if one more pending op would pass the limits."""
        provider = self.provider
        if self.pending >= provider.max_pending:
            raise WSAError(WSAErr.WSAEWOULDBLOCK, "too many overlapped operations outstanding")
        limit = provider.max_pending_bytes
        if limit is not None and self.pending_bytes + op.nbytes > limit:
            raise WSAError(WSAErr.WSAENOBUFS, "max_pending_bytes reached")

    def count_pending(self, op: Operation, checked: bool = False) -> None:
        """Account one more outstanding overlapped op (checking the limits unless ``checked``)."""
        with self.lock:
            if not checked:
                self.check_pending_limits(op)
            self.pending += 1
            self.pending_bytes += op.nbytes
        op.counted = True

    def uncount(self, op: Operation) -> None:
        if op.counted:
            op.counted = False
            with self.lock:
                self.pending -= 1
                self.pending_bytes -= op.nbytes

    def post_send_here(self, op: Operation, coalesce: bool = True) -> bool:
        """Post a stream send on the loop thread; True when it completed at once.

        Coalescing: the first send posted in a loop iteration goes straight to the
        transport (and usually completes at once, S2.1); sends posted after it in
        the same iteration wait for one gather write at the end of the iteration.
        A burst of N small sends thus costs two system calls instead of N -- what
        lets per-send completion beat raw ``transport.write`` -- while posting
        order (S5.3) is untouched: they all go through the same queue.
        """
        sendq = self.sendq
        if self.incoming:
            self.take_incoming()
        sendq.post(op)
        if self.coalescing and coalesce and op.nbytes < COALESCE_BELOW:
            return False
        self.pump()
        if not self.coalescing:
            self.coalescing = True
            self.loop.call_soon(self._end_of_iteration)
        return op.status != STATUS_PENDING

    def _end_of_iteration(self) -> None:
        self.coalescing = False
        if self.sendq.waiting:
            self.pump()

    def post_foreign(self, op: Operation) -> None:
        """Queue a send (or receive) posted from another thread for the loop to take."""
        with self.lock:
            if self.closed:
                raise WSAError(WSAErr.WSAENOTSOCK)
            self.incoming.append(op)
            if self.drain_scheduled:
                return
            self.drain_scheduled = True
        self.provider._call_soon_threadsafe(self.take_incoming_and_pump)

    def take_incoming(self) -> None:
        with self.lock:
            batch, self.incoming = self.incoming, collections.deque()
            self.drain_scheduled = False
        for op in batch:
            if op.kind == SEND:
                if self.is_stream:
                    self.sendq.post(op)
                else:
                    self._send_datagram_queued(op)
            else:
                self._post_receive_here(op)

    def take_incoming_and_pump(self) -> None:
        if self.closed:
            with self.lock:
                batch, self.incoming = self.incoming, collections.deque()
                self.drain_scheduled = False
            self.finish_all(list(batch), ABORTED)
            return
        self.take_incoming()
        if self.is_stream:
            self.pump()

    def pump(self) -> None:
        """Hand waiting sends to the transport while the send buffer has room (loop thread).

        Each hand-on happens under ``write_lock``, which is what lets a blocking
        send from another thread write straight to the kernel when the socket is
        idle (:meth:`send_direct`) without overtaking a batch in flight here.
        Completions are issued after the lock is released.
        """
        transport = self.transport
        if transport is None or self.error:
            return
        sendq = self.sendq
        if self.drain_timer is not None or self.drain_delay == math.inf:
            return  # fault injection: a slowed (or stalled) drain (S12.1)
        debug = self.provider.debug
        while True:
            if transport.is_closing():
                return  # connection_lost will complete what is left with its error
            waiting = sendq.waiting
            if waiting and waiting[0].fault:
                if sendq.inflight:
                    break  # the sends before it complete first (S6.4)
                op = waiting.popleft()
                self.finish(op, op.fault, 0)
                continue
            with self.write_lock:
                batch = sendq.next_batch()
                if not batch:
                    break
                if debug:
                    from .verifier import check_unchanged

                    for op in batch:
                        check_unchanged(self, op)
                first = batch[0]
                if first.urgent:
                    self._send_urgent(first)
                elif len(batch) == 1 and len(first.buffers) == 1:
                    transport.write(first.buffers[0])
                else:
                    transport.writelines([buf for op in batch for buf in op.buffers])
                done = sendq.handed(batch, transport.get_write_buffer_size())
            for op in done:
                self.finish(op, 0, op.nbytes)
            if self.drain_delay is not None:
                self.drain_timer = self.loop.call_later(self.drain_delay, self._drain_tick)
                break
        if sendq.blocked_on_urgent:
            # An OOB send needs an empty transport: ask to hear when it is.
            transport.set_write_buffer_limits(high=0, low=0)
        if self.eof_after_drain and not sendq and not self.incoming:
            self.eof_after_drain = False
            if transport.can_write_eof():
                transport.write_eof()

    def send_direct(self, buffers: list[Any]) -> int:
        """A blocking send from another thread, straight to the kernel when the socket is idle.

        Idle means: nothing queued or in flight here, nothing in the transport's
        buffer, no drain fault armed.  Then no byte of an earlier send can still be
        on its way, and ``write_lock`` keeps :meth:`pump` from starting one, so
        writing to the kernel from this thread keeps the byte order (S5.3).
        Returns the bytes the kernel took (0 when not idle or full); the caller
        queues the rest.  Saves a loop round trip per blocking send (S8.2).
        """
        with self.write_lock:
            transport = self.transport
            if (
                transport is None
                or self.closed
                or self.error
                or self.incoming
                or self.sendq.waiting
                or self.sendq.inflight
                or self.drain_delay is not None
                or transport.is_closing()
                or transport.get_write_buffer_size()
            ):
                return 0
            try:
                return self.sock.sendmsg(buffers)
            except (BlockingIOError, InterruptedError):
                return 0
            except OSError:
                return 0  # let the queued path meet the error through the transport

    def _drain_tick(self) -> None:
        self.drain_timer = None
        self.pump()

    def set_drain_delay(self, delay: float | None) -> None:
        """Fault injection: hand sends on one batch per ``delay`` seconds (inf: not at all)."""
        self.drain_delay = delay
        if self.drain_timer is not None:
            self.drain_timer.cancel()
            self.drain_timer = None
        self.pump()

    def _send_urgent(self, op: Operation) -> None:
        data = b"".join(op.buffers)
        try:
            sent = self.sock.send(data, _pysocket.MSG_OOB)
        except BlockingIOError:
            sent = 0
        except OSError as exc:
            self.sendq.waiting.appendleft(op)
            self.lost(exc)
            return
        if sent < len(data):
            self.transport.write(data[sent:])
        self.transport.set_write_buffer_limits(high=self.capacity, low=self.capacity)

    def drained(self) -> None:
        """The transport's buffer fell to the capacity (or was resized): settle and refill."""
        if self.transport is None:
            return
        for op in self.sendq.observe(self.transport.get_write_buffer_size()):
            self.finish(op, 0, op.nbytes)
        if self.sendq.waiting and self.sendq.waiting[0].urgent and not self.sendq.buffered:
            self.transport.set_write_buffer_limits(high=self.capacity, low=self.capacity)
        self.pump()

    # ------------------------------------------------------------------ datagrams
    def send_datagram(self, op: Operation) -> int | None:
        """Send one datagram now from any thread: error code, 0 when sent, None when queued."""
        with self.lock:
            if self.closed:
                raise WSAError(WSAErr.WSAENOTSOCK)
            if not self.datagram_backlog and not self.incoming:
                try:
                    self._sendmsg(op)
                    return 0
                except BlockingIOError:
                    self.datagram_backlog = True
                except OSError as exc:
                    return wsa_code_of(exc, WSAErr.WSAENETDOWN)
            self.incoming.append(op)
            schedule = not self.drain_scheduled
            self.drain_scheduled = True
        if schedule:
            self.provider._call_soon_threadsafe(self.take_incoming_and_pump)
        return None

    def _sendmsg(self, op: Operation) -> None:
        buffers = op.buffers or [b""]
        if op.address is None:
            self.sock.sendmsg(buffers)
        else:
            self.sock.sendmsg(buffers, (), 0, op.address)

    def _send_datagram_queued(self, op: Operation) -> None:
        """A datagram that waited behind an EAGAIN (loop thread)."""
        with self.lock:
            try:
                if self.transport is not None and self.transport.get_write_buffer_size():
                    raise BlockingIOError
                self._sendmsg(op)
                status = 0
            except BlockingIOError:
                # The transport keeps it until the socket is writable again:
                # handed on, so consumed (S4.1).
                self.transport.sendto(b"".join(op.buffers), op.address)
                status = 0
            except OSError as exc:
                status = wsa_code_of(exc, WSAErr.WSAENETDOWN)
            if not self.incoming:
                self.datagram_backlog = False
        self.finish(op, status, op.nbytes if status == 0 else 0)

    # ------------------------------------------------------------------ receives
    def post_receive(self, op: Operation) -> tuple[int, int] | None:
        """Loop thread: (status, bytes) if ``op`` completes at once, else None (queued)."""
        if self.incoming:
            self.take_incoming()
        receiver = self.receiver
        got = receiver.take(op)
        if got is None:
            receiver.post(op)
        elif self.reading_paused:
            self._maybe_resume_reading()
        return got

    def post_receive_nowait(self, op: Operation) -> tuple[int, int] | None:
        """A non-overlapped receive that must not wait: the result now, or None."""
        if self.incoming:
            self.take_incoming()
        got = self.receiver.take(op)
        if got is not None and self.reading_paused:
            self._maybe_resume_reading()
        return got

    def _post_receive_here(self, op: Operation) -> None:
        result = self.post_receive(op)
        if result is not None:
            self.finish(op, result[0], result[1])

    def received(self, data: bytes, source: Any) -> None:
        receiver = self.receiver
        if isinstance(receiver, StreamReceiver):
            done = receiver.feed(data)
            if receiver.size > RECEIVE_HIGH_WATER and not self.reading_paused:
                self.reading_paused = True
                self.transport.pause_reading()
        else:
            done = receiver.feed(data, source)
        for op, status, n in done:
            self.finish(op, status, n)

    def _maybe_resume_reading(self) -> None:
        receiver = self.receiver
        if self.reading_paused and receiver.available() < RECEIVE_HIGH_WATER // 2:
            self.reading_paused = False
            if self.transport is not None and not self.transport.is_closing():
                self.transport.resume_reading()

    def ended(self) -> None:
        for op, status, n in self.receiver.end():
            self.finish(op, status, n)

    # ------------------------------------------------------------------ failure and close
    def lost(self, exc: BaseException | None) -> None:
        """The transport is gone: complete everything unconsumed with the mapped error (S10.5)."""
        if self.closed:
            self.provider._transport_gone(self)
            return
        # No exception means the transport closed without a socket error; for
        # sends still waiting that is a connection lost locally.
        code = wsa_code_of(exc) if exc is not None else WSAErr.WSAECONNABORTED
        self.error = code
        if exc is not None:
            self.so_error = code
        self.take_incoming_silently()
        self.finish_all(self.sendq.remove_all(), code)
        if exc is not None:
            self.finish_all(self.receiver.remove(), code)
        else:
            self.ended()

    def take_incoming_silently(self) -> None:
        with self.lock:
            batch, self.incoming = self.incoming, collections.deque()
            self.drain_scheduled = False
        for op in batch:
            if op.kind == SEND:
                self.sendq.post(op)
            else:
                self.receiver.post(op)

    def flush(self) -> None:
        """SIO_FLUSH (S10.3): discard the sends not yet handed on; the socket stays usable."""
        self.take_incoming_silently()
        self.finish_all(self.sendq.remove_waiting(), ABORTED)

    def cancel_issued_by(self, target: object) -> None:
        """S10.4: the issuing thread of some operations is gone."""

        def mine(op: Operation) -> bool:
            return op.issuer is target

        # The gone thread's posts still in `incoming` are aborted there; the
        # others take their normal way (a datagram must be sent, not parked).
        with self.lock:
            gone = [op for op in self.incoming if mine(op)]
            if gone:
                self.incoming = collections.deque(op for op in self.incoming if not mine(op))
        self.finish_all(gone, ABORTED)
        if self.incoming:
            self.take_incoming()
        self.finish_all(self.sendq.remove_waiting(mine), ABORTED)
        self.finish_all(self.receiver.remove(mine), ABORTED)
        if self.is_stream:
            self.pump()

    def cancel(self, op: Operation) -> bool:
        """Withdraw one operation not yet handed on and complete it aborted (loop thread).

        False when it is already on its way (handed to the transport) or done:
        it will then complete by itself, exactly once.
        """
        if self.incoming:
            self.take_incoming()
        if not op.pending:
            return False
        if op.kind == SEND:
            removed = self.sendq.remove_waiting(lambda candidate: candidate is op)
        else:
            removed = self.receiver.remove(lambda candidate: candidate is op)
        self.finish_all(removed, ABORTED)
        if self.is_stream:
            self.pump()
        return bool(removed)

    def close_here(self) -> None:
        """WSPCloseSocket on the loop thread (S10.2): abort everything, close the transport."""
        with self.lock:
            self.closed = True
            batch, self.incoming = self.incoming, collections.deque()
            self.drain_scheduled = False
        self.finish_all(list(batch), ABORTED)
        self.finish_all(self.sendq.remove_all(), ABORTED)
        self.finish_all(self.receiver.remove(), ABORTED)
        if self.drain_timer is not None:
            self.drain_timer.cancel()
            self.drain_timer = None
        for fut in list(self.accepting):
            if not fut.done():
                fut.cancel()
        if self.connect_future is not None and not self.connect_future.done():
            self.connect_future.cancel()
        if self.transport is None:
            self.sock.close()
        elif not self.transport.is_closing():
            self.provider._closing.add(self)
            self.transport.close()  # graceful: buffered bytes still go out, then FIN
