"""The one writer: every way a stream socket's bytes reach the transport or the kernel.

* the pump (:meth:`Writer.pump`): the engine's batches, handed to the transport, with
  the gather write that offers a batch to the kernel first and the urgent (OOB) write;
* the write at once of a send posted on the loop thread that fits the send buffer
  (:meth:`Writer.post_here`), and a non-blocking send (:meth:`Writer.send_nonblocking`);
* another thread's sends that complete inside the call (SPEC S2.1, S8.2; issue 10):
  :func:`send_staged` copies one that fits the emulated send buffer into the hand-off,
  already complete, for the loop's next batch; :func:`send_direct` writes one straight
  to the kernel from the posting thread when the socket is idle, and if the kernel takes
  part, the rest becomes the hand-off's *front*, before every send posted meanwhile
  (S5.3) -- a send begun that way is never withdrawn (``SendQueue.remove_waiting``).

Lock order
----------
``write_lock`` (held while bytes go to the transport or, from another thread, to the
kernel), then the hand-off's ``lock`` (the order of posts, and the *front*); never the
other way round.  The loop thread only ever *tries* ``write_lock`` outside the pump
(:meth:`Writer.write_alone`): it does not block on another thread (S15.2).  The
completion door is never called under the hand-off's lock.

:class:`Writer` is the send half of :class:`~wsp_async._io.adapter.SocketAdapter`; the
attributes it names are the adapter's.
"""

from __future__ import annotations

import asyncio
import math
import socket as _pysocket
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .._completion.door import CompletionDoor, isolated
from .._core.arguments import skip
from .._core.engine import ABORTED, SocketEngine
from .._core.operation import Operation, held_send
from ..constants import STATUS_PENDING
from ..errors import WSAErr, WSAError
from ..verifier import check_unchanged
from .handoff import HandOff

__all__ = ["Writer", "kept", "send_direct", "send_staged"]


def kept(buffer: Any) -> Any:
    """``buffer`` as a transport may keep it: immutable bytes as they are, anything else
    copied.

    A send completes once its bytes are held in the emulated send buffer (S4.1), and the
    caller may then reuse its buffer (S5.2), as Windows copies sends into the socket's
    buffer.  A transport keeps references to what it has not written yet (uvloop's always,
    stock asyncio's from 3.12), so a mutable buffer is copied when it is handed on; while
    its send is queued here it is not (S5.2: no copy of pending data).
    """
    if type(buffer) is bytes:
        return buffer
    view = buffer if type(buffer) is memoryview else memoryview(buffer)
    return buffer if type(view.obj) is bytes else view.tobytes()


class Writer:
    """The send half of a socket adapter, on the loop thread unless a method says not."""

    engine: SocketEngine
    door: CompletionDoor
    handoff: HandOff
    transport: Any
    sock: Any
    loop: asyncio.AbstractEventLoop
    debug: bool
    write_lock: threading.Lock
    #: See ``SocketAdapter.__init__``.
    foreign_writes: bool
    drain_timer: asyncio.TimerHandle | None

    if TYPE_CHECKING:

        def take_incoming(self, quietly: bool = False) -> None: ...
        def disconnect(self, reuse: bool) -> None: ...
        def _reset(self) -> None: ...
        def _ending(self, done: list[Operation]) -> list[Operation]: ...
        def post_foreign(self, op: Operation) -> None: ...

    def _limit(self, size: int) -> None:
        # S4.1: the transport's write buffer *is* the emulated send buffer.  Both
        # loops pause above `high` and resume at or below `low`; with high == low ==
        # capacity, resume_writing means "consumed again".
        self.transport.set_write_buffer_limits(high=size, low=size)

    def set_capacity(self, capacity: int) -> None:
        """SO_SNDBUF changed (loop thread)."""
        self.engine.capacity = self.engine.sendq.capacity = capacity
        if self.transport is not None and self.engine.stream:
            self._limit(capacity)
            self.drained()

    def post_here(self, op: Operation, coalesce: bool = True) -> bool:
        """Post a stream send on the loop thread; True when it completed at once."""
        handoff = self.handoff
        if handoff.incoming or handoff.front is not None:
            self.take_incoming()
        engine = self.engine
        if engine.at_once(op, coalesce) and self._write_at_once(op):
            return True
        if engine.post_send(op, coalesce):
            self.pump()
            self.mark_iteration()
        return op.status != STATUS_PENDING

    def _write_at_once(self, op: Operation) -> bool:
        """Write ``op`` straight to the transport and complete it, when it fits the send
        buffer (S4.1); False when it must take the queue instead.

        The queue's way (post, hand on, read the transport's buffer, pop the consumed)
        was about a quarter of a 64 KiB send's Python work, and after each 64 KiB system
        call the interpreter meets that work cold again (``benchmarks/README.md``).
        The room is judged as the asyncio face's lean send (``_io.face.sender``) judges it,
        inline there for its frame's sake: on the loop's last reading of the transport's
        buffer, an upper bound, asking the transport only when that bound says no room.
        """
        transport = self.transport
        if transport is None or self.drain_timer is not None or transport.is_closing():
            return False
        engine = self.engine
        sendq = engine.sendq
        size = op.nbytes
        buffered = sendq.buffered
        if not sendq.fits(size, buffered):
            buffered = transport.get_write_buffer_size()
            if not sendq.fits(size, buffered):
                return False
        try:
            if not self.foreign_writes:
                self._write(transport, [op])
            elif not self.write_alone(self._write, transport, [op]):
                return False  # behind another thread's send, through the queue
        except Exception as exc:
            self.door.complete(op, engine.write_failed(exc), 0)
            return True
        engine.bypassed(size, buffered + size)
        self.door.complete(op, 0, size)
        self.mark_iteration()  # the sends after it in this iteration gather
        return True

    def write_alone(self, write: Callable[..., object], *args: Any) -> bool:
        """``write(*args)`` under ``write_lock``, when other threads may write straight to
        the kernel (``foreign_writes``): False, having written nothing, when one holds the
        lock (it is writing) or left the rest of a send (``front``, set under this lock)
        that must go before anything else.  The lock is tried, never waited for: the loop
        thread does not block, and its write then takes the queue, behind them."""
        if not self.write_lock.acquire(False):
            return False
        try:
            if self.handoff.front is not None:
                return False
            write(*args)
            return True
        finally:
            self.write_lock.release()

    def mark_iteration(self) -> None:
        """A send went out at once on the loop thread: the sends after it in this loop
        iteration wait for one gather write at its end (the engine's coalescing)."""
        if self.engine.begin_iteration():
            self.loop.call_soon(self._end_of_iteration)

    def _end_of_iteration(self) -> None:
        if self.engine.end_iteration():
            self.pump()

    def pump(self) -> None:
        """Hand waiting sends to the transport while the engine says so (loop thread)."""
        transport = self.transport
        engine = self.engine
        if transport is None or engine.error or self.drain_timer is not None:
            return
        if engine.drain_delay == math.inf:
            return  # fault injection: a stalled drain (S12.1)
        door = self.door
        while not transport.is_closing():
            failed: BaseException | None = None
            done: list[Operation] = []
            with self.write_lock:
                if self.handoff.front is not None:
                    self._take_front()
                gather = engine.stream and not transport.get_write_buffer_size()
                faulted, batch = engine.next_hand_on(gather)
                offered = bool(batch)
                if batch:
                    if self.debug:
                        for op in batch:
                            isolated(check_unchanged, door.tracer, op)
                    try:
                        if engine.sendq.offer:
                            batch = self._gather(transport, batch)
                        else:
                            self._write(transport, batch)
                    except Exception as exc:
                        failed = exc
                    else:
                        done = engine.handed(batch, transport.get_write_buffer_size())
            if faulted is not None:
                door.complete(faulted, faulted.fault, 0)
                continue
            if not offered:
                break
            if failed is not None:
                door.complete_all(engine.sendq.refused(batch), engine.write_failed(failed))
                continue
            if engine.sendq.pieces:
                done = self._ending(done)
            door.complete_ok(done)
            if engine.drain_delay is not None:
                self.drain_timer = self.loop.call_later(engine.drain_delay, self._drain_tick)
                break
        if engine.wants_empty_transport:
            self._limit(0)  # an OOB send needs an empty transport: hear when it is
            if not transport.get_write_buffer_size():
                # Empty already: the reading that held the OOB send back was an
                # estimate (a send that went out at once records the buffer it may
                # have left), and no resume_writing comes for a buffer that does not
                # fall.  Hear it now instead.
                self.loop.call_soon(self.drained)
        if not self.handoff and engine.eof_ready():
            if transport.can_write_eof() and not transport.is_closing():
                transport.write_eof()

    def _write(self, transport: Any, batch: list[Operation]) -> None:
        first = batch[0]
        if first.urgent:
            self._send_urgent(first)
        elif len(batch) == 1 and len(first.buffers) == 1:
            transport.write(kept(first.buffers[0]))
        else:
            transport.writelines([kept(buf) for op in batch for buf in op.buffers])

    def _gather(self, transport: Any, batch: list[Operation]) -> list[Operation]:
        """Offer ``batch`` to the kernel in one gather write, the transport holding
        nothing (so nothing can go before it); the rest of the send it reached last goes
        through the transport.  Returns the sends reached: the batch handed on.

        One write of many sends instead of one per send: loopback's cost is mostly per
        write (each wakes the receiver), so raw asyncio moves about twice the bytes in
        256 KiB writes as in 64 KiB ones (``benchmarks/README.md``).  What the kernel
        takes is consumed (S4.1), so only the rest of one send is ever buffered here
        (S4.4).  Every call takes at least one send off the queue for good: the one it
        stopped in goes on, or, when the transport refuses its rest, completes with the
        error (and the connection is reset if its head already left).
        """
        try:
            sent = self.sock.sendmsg([buf for op in batch for buf in op.buffers])
        except OSError:
            sent = 0  # EAGAIN, or an error the transport meets on its write and reports
        reached, rest = self.engine.sendq.reached(batch, sent)
        if rest:
            try:
                transport.writelines([kept(buf) for buf in rest])
            except Exception as exc:
                # The sends before it are in the kernel: consumed.  This one failed.
                last = reached.pop()
                self.door.complete(last, self.engine.write_failed(exc), 0)
                if sum(memoryview(buf).nbytes for buf in rest) < last.nbytes:
                    # Its head is in the kernel: nothing may follow it on this stream, so
                    # the connection is reset and every send behind completes with the
                    # loss (S10.5), as when the host's connection breaks mid-send.
                    self._reset()
        return reached

    def _send_urgent(self, op: Operation) -> None:
        data = b"".join(op.buffers)
        try:
            sent = self.sock.send(data, _pysocket.MSG_OOB)
        except BlockingIOError:
            sent = 0
        if sent < len(data):
            self.transport.write(data[sent:])
        self._limit(self.engine.capacity)

    def _drain_tick(self) -> None:
        self.drain_timer = None
        self.pump()

    def set_drain_delay(self, delay: float | None) -> None:
        """Fault injection: hand sends on one batch per ``delay`` seconds (inf: not at all)."""
        self.engine.drain_delay = delay
        if self.drain_timer is not None:
            self.drain_timer.cancel()
            self.drain_timer = None
        self.pump()

    def drained(self) -> None:
        """The transport's buffer fell to the capacity (or was resized): settle and refill."""
        if self.transport is None:
            return
        done = self.engine.observe(self.transport.get_write_buffer_size())
        sendq = self.engine.sendq
        if sendq.pieces:
            self._ending(done)
        self.door.complete_ok(done)
        if sendq.waiting and sendq.waiting[0].urgent and not sendq.buffered:
            self._limit(self.engine.capacity)
        self.pump()

    def fits_now(self, total: int) -> bool:
        """On the loop: a send of ``total`` bytes would complete at once (nothing on its
        way or waiting before it, room in the send buffer).  The transport is asked:
        the loop's last reading may overstate what it holds."""
        transport = self.transport
        sendq = self.engine.sendq
        if sendq.waiting:
            self.pump()  # sends held for this iteration's gather write go now, not at its end
        held = sendq.buffered if transport is None else transport.get_write_buffer_size()
        return not self.handoff and sendq.fits(total, held)

    def send_nonblocking(self, buffers: list[Any], total: int) -> int:
        """S8.1 on the loop: all or nothing -- the whole send when the buffer has room."""
        self.take_incoming()
        transport = self.transport
        engine = self.engine
        if engine.sendq.waiting:
            self.pump()  # sends held for this iteration's gather write go now, not at its end
        if (
            transport is None
            or transport.is_closing()
            or engine.sendq.waiting
            or transport.get_write_buffer_size() > engine.capacity
        ):
            raise WSAError(WSAErr.WSAEWOULDBLOCK)
        if total:
            # A copy: the caller owns its buffers again when this returns.
            with self.write_lock:
                transport.write(b"".join(buffers))
            engine.bypassed(total, transport.get_write_buffer_size())
        return total

    def _take_front(self) -> None:
        op = self.handoff.take_front()
        if op is not None:
            self.engine.sendq.waiting.appendleft(op)


# ------------------------------------------------------------------ other threads' sends
def send_direct(adapter: Writer, op: Operation, prepare: Callable[[Operation], object]) -> bool:
    """A blocking stream send from another thread: straight to the kernel when idle.

    Idle means nothing queued, in flight or buffered here and no drain fault.
    Returns True when the kernel took all of it.  Otherwise ``prepare(op)`` is
    called (the caller hooks its wait) and the rest is queued at the front (see
    the module docstring) or, when not idle, the whole send is posted as usual;
    it then completes through the door.
    """
    engine = adapter.engine
    sendq = engine.sendq
    handoff = adapter.handoff
    with adapter.write_lock:
        transport = adapter.transport
        with handoff.lock:
            idle = not (
                transport is None
                or not adapter.foreign_writes  # no other thread's send reached the loop yet
                or handoff.closed
                or engine.error
                or engine.send_shut
                or handoff.sends  # pending sends on their way to the loop
                or handoff.staged  # complete ones copied there, not yet written
                or handoff.front is not None
                or sendq.waiting
                or sendq.inflight
                or engine.drain_delay is not None
                or transport.is_closing()
                # Both: the transport's count is read from this thread, and a transport
                # may show none while it is between two writes of its own (the
                # Proactor's does, inside _loop_writing); the loop's own last reading
                # is taken only between callbacks, so 0 there means all of it went out.
                or sendq.buffered
                or transport.get_write_buffer_size()
            )
        if idle:
            try:
                sent = adapter.sock.sendmsg(op.buffers)
            except OSError:
                sent = 0  # EAGAIN, or an error the queued path meets through the transport
            if sent == op.nbytes:
                return True
            if sent:
                op.buffers = skip(op.buffers, sent)
                op.nbytes -= sent
            op.direct = sent
            prepare(op)
            if not handoff.put_front(op):
                # Closed meanwhile: part of it went out, so it started; it is aborted.
                adapter.door.complete(op, ABORTED, 0)
            return False
    prepare(op)
    adapter.post_foreign(op)
    return False


def send_staged(adapter: Writer, op: Operation) -> bool:
    """Another thread's small send, copied into the emulated send buffer: True when it
    fits there, so it is complete at once (S4.1: held within SO_SNDBUF is consumed).

    The caller has checked that nothing of the socket is outstanding, so this completion
    cannot overtake an earlier one (S6.4).  The copy (a ``bytes`` buffer is shared, not
    copied) joins the hand-off in order
    as a send that is already complete; the loop writes it with the next batch.  It
    costs a copy instead of a system call and a loop wake-up per send.
    """
    engine = adapter.engine
    if adapter.transport is None or engine.drain_delay is not None:
        return False
    buffers = op.buffers
    data = buffers[0] if len(buffers) == 1 and type(buffers[0]) is bytes else b"".join(buffers)
    carrier = held_send([data], op.nbytes)
    sendq = engine.sendq
    handoff = adapter.handoff
    with handoff.lock:
        if (
            handoff.closed
            or engine.send_shut
            or engine.error
            or handoff.front is not None
            or handoff.sends
            or sendq.waiting
            or sendq.inflight
            or handoff.staged + sendq.buffered + op.nbytes > engine.capacity
        ):
            return False
        handoff.incoming.append(carrier)
        handoff.staged += op.nbytes
        wake = handoff.schedule_locked()
    if wake:
        handoff.wake()
    return True
