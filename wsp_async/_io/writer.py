"""The one writer: every way a stream socket's bytes reach the transport or the kernel --
the pump (the engine's batches, the gather write, the urgent write), ``WRITE`` on the
loop thread (:meth:`Writer.post_here`, :meth:`Writer.send_nonblocking`), and -- in
:mod:`~wsp_async._io.foreign_sends` -- another thread's ``STAGE`` and ``DIRECT`` (SPEC
S2.1, S8.2).  Which way a
send goes is not decided here: every route asks :mod:`wsp_async._core.admission` and
carries its answer out.  A direct send the kernel took in part leaves its rest at the
hand-off's *front*, before every send posted meanwhile (S5.3); a send begun that way
is never withdrawn (``SendQueue.remove_waiting``).

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
from .._core import admission
from .._core.admission import MEASURE, QUEUE, THROUGH, WRITE, Route
from .._core.engine import SocketEngine
from .._core.operation import Operation, held_send
from ..constants import STATUS_PENDING
from ..errors import WSAErr, WSAError
from ..verifier import check_unchanged
from .handoff import HandOff

__all__ = ["URGENT_RETRY_FIRST", "Writer", "kept"]

#: How soon an urgent send's rest is tried again when the kernel had no room for it, the
#: first time; each try that finds none doubles it, up to ``URGENT_RETRY_MAX``.
URGENT_RETRY_FIRST = 0.001
URGENT_RETRY_MAX = 0.064


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
    drain_timer: asyncio.TimerHandle | None
    #: Seconds before the next try of an urgent send's rest (:meth:`_send_urgent`).
    urgent_retry: float
    cancels_due: list[Callable[[Operation], bool]]

    if TYPE_CHECKING:

        def take_incoming(self, quietly: bool = False) -> None: ...
        def disconnect(self, reuse: bool) -> None: ...
        def _reset(self) -> None: ...
        def _ending(self, done: list[Operation]) -> list[Operation]: ...
        def post_foreign(self, op: Operation) -> None: ...
        def carry_out_cancels(self) -> None: ...

    def _limit(self, size: int) -> None:
        # S4.1: the transport's write buffer *is* the emulated send buffer.  Both
        # loops pause above `high` and resume at or below `low`; with high == low ==
        # capacity, resume_writing means "consumed again".
        self.transport.set_write_buffer_limits(high=size, low=size)

    def set_capacity(self, capacity: int) -> None:
        """SO_SNDBUF changed (loop thread)."""
        self.engine.capacity = capacity
        if self.transport is not None and self.engine.stream:
            self._limit(capacity)
            self.drained()

    def post_here(self, op: Operation, coalesce: bool = True) -> bool:
        """Post a stream send on the loop thread; True when it completed at once."""
        handoff = self.handoff
        if handoff.busy:
            self.take_incoming()
        engine = self.engine
        if self.transport is not None:
            plain = not (op.urgent or op.fault or op.parts is not None)
            route = admission.admit_here(engine, handoff, op.nbytes, plain, False, coalesce)
            if route is MEASURE:
                route = self.measure(op.nbytes, False, coalesce)
            if route is WRITE or route is THROUGH:
                if self._write_at_once(op, route is THROUGH):
                    return op.status != STATUS_PENDING
        if engine.post_send(op, coalesce):
            self.pump()
            self.mark_iteration()
        return op.status != STATUS_PENDING

    def measure(self, nbytes: int, lean: bool, coalesce: bool) -> Route:
        """``MEASURE``: the last reading of the transport (an upper bound: it only drains)
        said no room; read it, ask again.  A train of small sends reads once per buffer."""
        self.engine.sendq.report(self.transport.get_write_buffer_size())
        route = admission.admit_here(self.engine, self.handoff, nbytes, True, lean, coalesce)
        return QUEUE if route == MEASURE else route

    def _write_at_once(self, op: Operation, through: bool = False) -> bool:
        """``WRITE``: hand ``op`` to the transport and complete it; with ``through``
        (``THROUGH``, no emulated buffer), hand it on as :meth:`pump` would hand it alone,
        and complete it if the kernel took it all.  False when it must take the queue
        instead (the transport is closing, or another thread is writing).  The queue's
        way was a quarter of a 64 KiB send's Python (``benchmarks/README.md``)."""
        transport = self.transport
        if transport.is_closing():
            return False
        engine = self.engine
        write = self._hand_on if through else self._write
        try:
            if not self.handoff.foreign_writes:
                write(transport, [op])
            elif not self.write_alone(write, transport, [op]):
                return False  # behind another thread's send, through the queue
        except Exception as exc:
            self.door.complete(op, engine.write_failed(exc), 0)
            return True
        size = op.nbytes
        if through:
            if not engine.sendq.inflight:  # nothing was before it: the kernel holds it
                self.door.complete(op, 0, size)
            return True
        engine.sendq.wrote(size)
        self.door.complete(op, 0, size)
        self.mark_iteration()  # the sends after it in this iteration gather
        return True

    def _hand_on(self, transport: Any, batch: list[Operation]) -> None:
        self._write(transport, batch)
        self.engine.handed(batch, transport.get_write_buffer_size())

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
        stuck = False
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
                        elif batch[0].urgent:
                            stuck = not self._send_urgent(batch[0])
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
            if stuck:
                # The kernel had no room for the urgent send's rest, and the transport
                # holds nothing, so no event of its own will say when there is: look
                # again shortly, less often the longer it waits.
                delay = self.urgent_retry
                self.urgent_retry = min(URGENT_RETRY_MAX, delay * 2)
                self.drain_timer = self.loop.call_later(delay, self._drain_tick)
                break
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
        if len(batch) == 1 and len(first.buffers) == 1:
            transport.write(kept(first.buffers[0]))
        elif len(batch) == 1 and not first.status:
            # A record held complete alone (the face's train): its buffers were kept
            # when they were held (held_send), so they go as they are, unlooked at.
            transport.writelines(first.buffers)
        else:
            # ``bytes`` is kept as it is (see kept): asked inline, as most buffers are
            # (every one of a record held complete), it saves a call per buffer.
            transport.writelines(
                [buf if type(buf) is bytes else kept(buf) for op in batch for buf in op.buffers]
            )

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
            buffers = (
                batch[0].buffers if len(batch) == 1 else [b for op in batch for b in op.buffers]
            )
            sent = self.sock.sendmsg(buffers)
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

    def _send_urgent(self, op: Operation) -> bool:
        """An urgent (``MSG_OOB``) send, alone on an empty transport: all but its last byte
        as plain bytes, then the last byte as TCP urgent data, the byte a peer reads out of
        band.  A single byte goes whole or not at all, so the mark never lands on another
        byte, as it would on the last byte taken of a whole send the kernel took in part.

        True when the kernel took all of it.  Else the rest goes back to the head of the
        queue, held (within SO_SNDBUF it is consumed, S4.1: the send completes as any
        other), before everything posted after it, and False: the pump tries again once
        the kernel may have room.  (It went as plain bytes through the transport once,
        and lost its mark.)"""
        data = b"".join(op.buffers)
        sent = 0
        try:
            if len(data) > 1:
                sent = self.sock.send(data[:-1])
            if sent == len(data) - 1:
                sent += self.sock.send(data[-1:], _pysocket.MSG_OOB)
        except BlockingIOError:
            pass  # no room now: what is left waits (below)
        self._limit(self.engine.capacity)
        if sent == len(data):
            self.urgent_retry = URGENT_RETRY_FIRST
            return True
        rest = held_send([data[sent:]], len(data) - sent)
        rest.urgent = True
        self.engine.sendq.hold_front(rest)
        return False

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
        if self.cancels_due:
            self.carry_out_cancels()  # room after a cancel never takes what it cancelled
        done = self.engine.observe(self.transport.get_write_buffer_size())
        sendq = self.engine.sendq
        if sendq.pieces:
            done = self._ending(done)  # a TF_DISCONNECT's completion waits for its disconnect
        self.door.complete_ok(done)
        if sendq.waiting and sendq.waiting[0].urgent and not sendq.in_transport:
            self._limit(self.engine.capacity)
        self.pump()

    def fits_now(self, total: int, urgent: bool = False) -> bool:
        """On the loop: a blocking send of ``total`` bytes would complete at once (asked as
        a plain send of the asyncio face's: no coalescing), so the loop thread may make it
        without waiting.  Sends held for this iteration's gather write go first."""
        if self.transport is None:
            return False
        self.take_incoming()
        sendq = self.engine.sendq
        if sendq.waiting:
            self.pump()
        if urgent:
            if not sendq.inflight:
                sendq.report(self.transport.get_write_buffer_size())
            return admission.urgent_goes_now(self.engine, self.handoff, total)
        route = admission.admit_here(self.engine, self.handoff, total, True, False, False)
        if route == MEASURE:
            route = self.measure(total, False, False)
        return route == WRITE

    def send_nonblocking(self, buffers: list[Any], total: int) -> int:
        """S8.1 on the loop: all or nothing -- the whole send when the buffer has room."""
        self.take_incoming()
        transport = self.transport
        engine = self.engine
        if transport is None or transport.is_closing():
            raise WSAError(WSAErr.WSAEWOULDBLOCK)
        # A fresh reading, what it consumed settled; sends held for this iteration's
        # gather write go now, not at its end.
        self.drained()
        if not admission.admit_nonblocking(engine, self.handoff):
            raise WSAError(WSAErr.WSAEWOULDBLOCK)
        if total:
            # A copy: the caller owns its buffers again when this returns.
            with self.write_lock:
                transport.write(b"".join(buffers))
            engine.sendq.wrote(total)
        return total

    def _take_front(self) -> None:
        op = self.handoff.take_front()
        if op is not None:
            self.engine.sendq.push_front(op)
