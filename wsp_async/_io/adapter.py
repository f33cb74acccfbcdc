"""The transport adapter: carries out one socket engine's decisions on an asyncio transport.

Rules of this module:

* It decides nothing the engine can decide.  It feeds the engine facts ("the
  transport took this batch and holds N bytes", "data arrived", "the connection
  is gone with this error") and hands what the engine returns to the completion
  door.  It gets everything through its constructor and never imports the
  provider.
* A send is *handed on* only once ``transport.write`` returned.  A write that
  raises completes its batch with the mapped error (never strands it).
* Other threads reach a socket only through the hand-off below; everything else
  runs on the I/O loop thread.

The cross-thread hand-off
-------------------------
Posts made on other threads enter :class:`~wsp_async._io.handoff.HandOff` (its lock
fixes their order, S5.3) and the loop takes them in bursts.  ``write_lock`` is held
while bytes go to the transport, or, for a send from another thread on an idle
socket, straight to the kernel (:mod:`wsp_async._io.foreign`).  If the kernel takes
only part of that send, the rest goes to the hand-off's *front*, before every send
posted meanwhile, under the same lock that kept those from being written.  A stream
receive from another thread that must wait for bytes does not wake the loop: it waits in
the hand-off, and the loop takes it when the bytes come (``park_foreign``).

Datagrams are one system call each and cannot interleave: any thread sends one
directly (:mod:`wsp_async._io.datagrams`).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import math
import socket as _pysocket
import struct
import threading
from collections.abc import Callable
from typing import Any

from .._completion.door import CompletionDoor, RoutineLane, isolated
from .._core.engine import ABORTED, SocketEngine, SocketState
from .._core.operation import Operation, OpKind
from .._core.recvqueue import StreamReceiver
from ..constants import AF_INET, AF_INET6, STATUS_PENDING
from ..errors import WSAErr, WSAError, wsa_code_of
from ..verifier import check_unchanged
from . import adoption as _adoption
from .datagrams import DatagramSender
from .handoff import HandOff
from .protocols import Detached

#: SO_LINGER on, 0 seconds: ``close()`` resets the connection.
_LINGER_0 = struct.pack("ii", 1, 0)

__all__ = ["SocketAdapter"]

Wake = Callable[[Callable[[], object]], object]


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


class SocketAdapter:
    """One emulated socket over its transport (see the module docstring)."""

    def __init__(
        self,
        handle: int,
        sock: _pysocket.socket,
        engine: SocketEngine,
        door: CompletionDoor,
        loop: asyncio.AbstractEventLoop,
        wake: Wake,
        on_closing: Callable[[SocketAdapter, bool], object],
        lane: RoutineLane,
        debug: bool = False,
        run: Callable[..., Any] | None = None,
        on_loop_thread: Callable[[], bool] = lambda: False,
    ) -> None:
        self.handle = handle
        self.sock = sock
        self.engine = engine
        self.door = door
        self.loop = loop
        #: Told (self, True) when a closing transport starts flushing, (self, False) when gone.
        self.on_closing = on_closing
        self.lane = lane
        self.debug = debug
        #: Runs a function on the I/O loop and returns its result, from any thread.
        self.run = run
        self.transport: Any = None
        #: TCP_NODELAY as the program set it (Winsock's default: off, Nagle on), applied
        #: to the host socket once a transport is attached; None for a socket whose
        #: setting is not ours to keep (not TCP).
        self.nodelay: bool | None = (
            False if engine.stream and engine.family in (AF_INET, AF_INET6) else None
        )
        #: Posts from other threads on their way here (see :mod:`wsp_async._io.handoff`).
        self.handoff = HandOff(wake, self.take_incoming_and_pump, self._refused, self._parks)
        self.write_lock = threading.Lock()
        #: Other threads may write straight to the kernel (:mod:`._foreign`), under
        #: ``write_lock``.  Set only here on the loop thread, when the loop first takes a
        #: send from another thread; until then those go through the hand-off.  So the
        #: lean send, also on the loop thread, can skip the lock while this is False:
        #: no other writer can start behind its check.
        self.foreign_writes = False
        self.drain_timer: asyncio.TimerHandle | None = None
        #: Datagram sends, from any thread (see :mod:`wsp_async._io.datagrams`).
        self.datagrams = DatagramSender(sock, engine, door, self.handoff, lambda: self.transport)
        #: The completion port this socket is associated with (S13.1), and its modes.
        self.port_link: Any = None
        self._skip_on_success = False
        self.connect_future: asyncio.Future[Any] | None = None
        #: ConnectEx connects (or connected) it: connect() is WSAEINVAL.
        self.by_connect_ex = False
        #: The provider's closesocket, by handle (CloseHandle of a socket uses it).
        self.closesocket: Callable[[int], object] | None = None
        #: True on the I/O loop's thread (``IoLoop.here``).
        self.on_loop_thread = on_loop_thread
        #: An adopted socket's own object (S16.1): ``sock`` is our duplicate of it.  The
        #: handle's close closes it too; its own close closes the handle
        #: (:mod:`wsp_async._io.adoption`).
        self.program_sock: _pysocket.socket | None = None
        #: A transport is being made over ``sock`` (``Parts.attach_stream``): a close or
        #: a reset meanwhile must not close the host socket under it -- :meth:`attach`
        #: aborts that transport, which closes it.
        self.attaching = False
        #: The transport called ``connection_lost`` (it has let go of ``sock``).
        self.transport_gone = False
        #: The AcceptEx this socket is the accept socket of, from the call until it
        #: completes (S14.2): the socket is committed to it -- a second AcceptEx, a bind
        #: or a connect naming it is WSAEINVAL -- and closing it aborts that AcceptEx.
        self.accept_into: Operation | None = None
        self.accepting: set[asyncio.Future[Any]] = set()
        #: The AcceptEx calls' wait for a connection (:meth:`readable`), if one waits.
        self.readable_wait: asyncio.Future[None] | None = None
        #: Pending operations that wait outside the engine's queues -- AcceptEx,
        #: ConnectEx, DisconnectEx (loop thread only) -- so that CancelIoEx finds them.
        self.elsewhere: list[Operation] = []
        self._prune_at = 16
        #: What a cancel of one of those must do before it completes (an AcceptEx waiting
        #: for first data resets the connection it holds), so that the notice never
        #: comes before the state it reports.
        self.before_abort: dict[Operation, Callable[[], object]] = {}
        #: Connections a listener accepted for AcceptEx calls cancelled meanwhile: the
        #: next AcceptEx takes them first (loop thread only).
        self.parked: list[_pysocket.socket] = []

    def __repr__(self) -> str:
        kind = "stream" if self.engine.stream else "datagram"
        return (
            f"<SocketAdapter {self.handle:#x} {kind} {self.engine.state.name} closed={self.closed}>"
        )

    @property
    def closed(self) -> bool:
        return self.handoff.closed

    def associate(self, link: Any) -> bool:
        """Associate with a completion port (S13.1); False when already associated."""
        with self.handoff.lock:
            if self.port_link is not None:
                return False
            link.skip_on_success = self._skip_on_success
            self.port_link = link
        return True

    @property
    def skip_on_success(self) -> bool:
        return self._skip_on_success

    @skip_on_success.setter
    def skip_on_success(self, skip: bool) -> None:
        """FILE_SKIP_COMPLETION_PORT_ON_SUCCESS (S13.3)."""
        self._skip_on_success = skip
        if self.port_link is not None:
            self.port_link.skip_on_success = skip

    def disconnect(self, reuse: bool) -> None:
        """DisconnectEx (S14.4), loop thread, once the sends before it are done: close the
        connection gracefully; with ``reuse`` the socket becomes a fresh unbound one."""
        transport = self.transport
        if transport is not None and reuse:
            # The old connection's events concern us no more; its host socket object is
            # closed once the transport lets go of it (at once if it has already).
            if self.transport_gone:
                self.sock.close()
            else:
                transport.get_protocol().sock = Detached(self.sock)
        if not reuse:
            # A half-close, as Windows' (sock.c: test_DisconnectEx): what the transport
            # holds still goes out, then FIN; the socket still receives, its names still
            # work, and the peer's later data is read, not answered with a reset.
            if transport is not None and not transport.is_closing():
                transport.write_eof()
            self.engine.shutdown(send=True, receive=False)
            return
        if transport is not None and not transport.is_closing():
            transport.close()  # graceful: what it holds still goes out, then FIN
        engine = self.engine
        self.take_incoming(quietly=True)  # receives parked by other threads are aborted too
        self.door.complete_all(engine.sendq.remove_all() + engine.receiver.remove(), ABORTED)
        old = self.sock
        self.sock = _pysocket.socket(old.family, old.type)
        self.sock.setblocking(False)
        self.datagrams.sock = self.sock
        self.transport = None
        self.by_connect_ex = False
        if transport is None and not self.attaching:
            old.close()
        self.engine.reset()

    def reset_and_reuse(self) -> None:
        """Reset the connection (linger on, time 0) and become a fresh unbound socket, as
        after DisconnectEx with TF_REUSE_SOCKET (loop thread)."""
        with contextlib.suppress(OSError):
            self.sock.setsockopt(_pysocket.SOL_SOCKET, _pysocket.SO_LINGER, _LINGER_0)
        self.disconnect(reuse=True)

    def replace_socket(self, sock: _pysocket.socket) -> None:
        """AcceptEx (S14.2): this socket takes over an accepted connection's host socket."""
        sock.setblocking(False)
        old, self.sock = self.sock, sock
        self.datagrams.sock = sock
        old.close()

    def _refused(self, op: Operation) -> int:
        # Read under the hand-off lock, which WSPShutdown holds while it sets the flag.
        return WSAErr.WSAESHUTDOWN if op.kind == OpKind.SEND and self.engine.send_shut else 0

    def shutdown(self, send: bool, receive: bool) -> None:
        """Record WSPShutdown (any thread); posts racing it either enter first or fail."""
        with self.handoff.lock:
            self.engine.shutdown(send=send, receive=receive)

    # ------------------------------------------------------------------ transport
    def attach(self, transport: asyncio.BaseTransport) -> None:
        if self.closed or _fileno(transport) != self.sock.fileno():
            # Closed, or made fresh again (an AcceptEx cancelled), while this transport
            # was being made: it carries a connection that is no longer ours.
            transport.abort()  # type: ignore[attr-defined]
            return
        self.transport = transport
        self.transport_gone = False
        if self.engine.stream:
            self._limit(self.engine.capacity)
            if self.nodelay is not None:
                # uvloop turns Nagle off for every TCP transport it makes (stock asyncio
                # only for sockets made with IPPROTO_TCP); Winsock leaves it on until the
                # program sets TCP_NODELAY.  The socket keeps its own setting.
                with contextlib.suppress(OSError):
                    self.sock.setsockopt(
                        _pysocket.IPPROTO_TCP, _pysocket.TCP_NODELAY, int(self.nodelay)
                    )

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

    # ------------------------------------------------------------------ stream sends
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

    def _ending(self, done: list[Operation]) -> list[Operation]:
        """A TransmitFile with TF_DISCONNECT among the consumed sends: disconnect before
        it completes, so that its socket may be reused once its notice arrives (S14.5).

        The disconnect closes the transport, and the pump may be running inside the
        transport's own write callback (``resume_writing``), which goes on using the
        transport after we return: so the disconnect, with that operation's completion
        and every one after it (completion order, S13.2), waits for the next callback of
        the loop.  Returns what completes now."""
        for i, op in enumerate(done):
            if _disconnects(op):
                self.loop.call_soon(self._disconnect_and_complete, done[i:])
                return done[:i]
        return done

    def _disconnect_and_complete(self, done: list[Operation]) -> None:
        for op in done:
            if _disconnects(op):
                self.disconnect(op.parts.reuse)
        self.door.complete_ok(done)

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

    # ------------------------------------------------------------------ other threads
    def post_foreign(self, op: Operation) -> None:
        """Queue an operation posted on another thread for the loop to take (S5.3 order)."""
        self.handoff.post(op)

    def park_foreign(self, op: Operation) -> None:
        """Queue a stream receive posted on another thread; wake the loop only if it has
        something to give it now.

        A receive that waits for bytes not read yet would cost a wake-up of the loop just
        to be moved to the receive queue.  Instead it waits in the hand-off, and the loop
        takes it when bytes or the end of the stream arrive (:meth:`received`,
        :meth:`ended`), when the transport is lost, or when the socket is closed or the
        operation cancelled -- each of those takes the hand-off first.  One wake-up less
        per round trip for a thread that receives (the Proactor's, issue 13).

        Why no receive is left behind: this thread queues the receive, then reads the
        receive state (:meth:`_parks`); the loop changes that state, then looks at the
        hand-off.  Under the interpreter lock one of the two sees the other's write: either
        this thread sees bytes and wakes the loop, or the loop sees the receive.
        """
        self.handoff.post(op, may_park=True)

    def _parks(self, op: Operation) -> bool:
        engine = self.engine
        receiver = engine.receiver
        return (
            isinstance(receiver, StreamReceiver)
            and not op.fault
            and self.transport is not None
            and engine.state == SocketState.CONNECTED
            and not engine.recv_shut
            and not engine.recv_error
            and not receiver.available()
            and not receiver.ended
        )

    def _take_front(self) -> None:
        op = self.handoff.take_front()
        if op is not None:
            self.engine.sendq.waiting.appendleft(op)

    def take_incoming(self, quietly: bool = False) -> None:
        """Move posts made on other threads into the engine, in the order they came.

        ``quietly``: queue everything without doing I/O (before an abort takes it all).
        """
        engine = self.engine
        sendq = engine.sendq
        rest: list[Operation] = []
        # Stream sends move into the send queue under the hand-off lock: a thread that
        # checks "nothing queued" under that lock never sees one in transit (S5.3).
        with self.handoff.lock:
            front, batch = self.handoff.take_locked()
            if front is not None:
                sendq.waiting.appendleft(front)
            for op in batch:
                if op.kind == OpKind.SEND and (engine.stream or quietly):
                    sendq.post(op)
                    self.foreign_writes = True
                else:
                    rest.append(op)
        for op in rest:
            if op.kind != OpKind.SEND:
                if quietly:
                    engine.receiver.post(op)
                else:
                    self.post_receive(op)
            else:
                self.datagrams.send_queued(op)

    def take_incoming_and_pump(self) -> None:
        if self.closed:
            self.close_here()
            return
        self.take_incoming()
        if self.engine.stream:
            self.pump()

    # ------------------------------------------------------------------ receives
    def post_receive(self, op: Operation) -> tuple[int, int] | None:
        """Loop thread: (status, bytes) when ``op`` completed at once, else None (queued)."""
        handoff = self.handoff
        if handoff.incoming or handoff.front is not None:
            self.take_incoming()
        got = self.engine.post_receive(op)
        if got is not None:
            self.maybe_resume_reading()
            self.door.complete(op, got[0], got[1])
        return got

    def receive_nowait(self, op: Operation) -> tuple[int, int] | None:
        """A non-overlapped receive that must not wait: the result now, or None."""
        handoff = self.handoff
        if handoff.incoming or handoff.front is not None:
            self.take_incoming()
        got = self.engine.receive_now(op)
        if got is not None:
            self.maybe_resume_reading()
        return got

    def received(self, data: bytes, source: Any) -> None:
        done = self.engine.arrived(data, source)
        if self.engine.should_pause_reading():
            self.transport.pause_reading()
        self.door.completions(done)
        if self.handoff.incoming:
            self.take_incoming_and_pump()  # receives parked by other threads (park_foreign)

    def maybe_resume_reading(self) -> None:
        """Bytes were taken from the receive queue: read again if reading was paused."""
        if self.engine.should_resume_reading():
            transport = self.transport
            if transport is not None and not transport.is_closing():
                transport.resume_reading()

    def ended(self) -> None:
        self.door.completions(self.engine.ended())
        if self.handoff.incoming:
            self.take_incoming_and_pump()  # receives parked by other threads (park_foreign)

    def icmp_error(self, code: int) -> None:
        # An ICMP error for an earlier datagram: Winsock reports it on a later
        # receive, if at all; we keep it as the pending socket error.
        self.engine.so_error = code

    # ------------------------------------------------------------------ failure and close
    def lost(self, exc: BaseException | None) -> None:
        """The transport is gone: complete everything unconsumed with the mapped error (S10.5)."""
        self.transport_gone = True
        if self.closed:
            self.on_closing(self, False)
            return
        self.take_incoming(quietly=True)
        sends, status, receives = self.engine.lost(None if exc is None else wsa_code_of(exc))
        self.door.complete_all(sends, status)
        self.door.completions(receives)

    def flush(self) -> None:
        """SIO_FLUSH (S10.3): discard the sends not yet handed on; the socket stays usable."""
        self.take_incoming(quietly=True)
        self.door.complete_all(self.engine.flush(), ABORTED)
        self.pump()

    def cancel_issued_by(self, target: object) -> None:
        """S10.4: the issuing (or delivering) thread of some operations is gone."""
        self.take_incoming()
        self._aborted(self.engine.cancel_issued_by(target))

    def cancel(self, op: Operation) -> bool:
        """Withdraw one operation not yet handed on, aborted (loop thread); False if on its way."""
        return self.cancel_where(lambda candidate: candidate is op) > 0

    async def readable(self) -> None:
        """Until the host socket is readable (a listener: a connection waits), or the wait
        is cancelled (loop thread).  The reader is removed before this returns -- or by
        :meth:`stop_accepting` before the descriptor closes, so that a number the
        OS reuses never has our reader on it."""
        loop = self.loop
        future: asyncio.Future[None] = loop.create_future()
        fd = self.sock.fileno()
        loop.add_reader(fd, _set_none, future)  # NotImplementedError on a Proactor loop
        self.readable_wait = future
        try:
            await future
        finally:
            if self.readable_wait is future:
                self.readable_wait = None
                loop.remove_reader(fd)

    def stop_accepting(self) -> None:
        """Cancel the AcceptEx calls' readiness wait, its reader removed now, and any accept
        of the loop's own (loop thread): nothing is left waiting on the descriptor."""
        future = self.readable_wait
        if future is not None:
            self.readable_wait = None
            self.loop.remove_reader(self.sock.fileno())
            future.cancel()
        for accepting in list(self.accepting):
            accepting.cancel()

    def begin_connect(self, by_connect_ex: bool = False) -> None:
        """The connection is under way from this call on (any thread): a second connect
        racing it sees CONNECTING and fails (WSAEALREADY; ConnectEx says WSAEINVAL).  A
        socket ConnectEx connects refuses connect() from then on (WSAEINVAL, sock.c:
        test_connecting_socket)."""
        engine = self.engine
        with self.handoff.lock:
            if self.by_connect_ex and not by_connect_ex:
                raise WSAError(WSAErr.WSAEINVAL, "ConnectEx connects this socket")
            if engine.state == SocketState.CONNECTING:
                raise WSAError(WSAErr.WSAEINVAL if by_connect_ex else WSAErr.WSAEALREADY)
            if engine.state == SocketState.CONNECTED:
                raise WSAError(WSAErr.WSAEISCONN)
            engine.state = SocketState.CONNECTING
            self.by_connect_ex = by_connect_ex

    @property
    def committed(self) -> bool:
        """The accept socket of a pending AcceptEx (see :attr:`accept_into`)."""
        op = self.accept_into
        return op is not None and op.pending

    def commit_to(self, op: Operation) -> bool:
        """Make this socket ``op``'s accept socket (any thread); False if it is already
        one, or no longer a fresh socket."""
        with self.handoff.lock:
            if self.committed or self.closed:
                return False
            self.accept_into = op
            return True

    def on_its_way(self, op: Operation) -> None:
        """``op`` (waiting outside the queues) has what it waited for: a cancel no longer
        takes it (S15.1's boundary), it completes through its own path (loop thread)."""
        elsewhere = self.elsewhere
        for i in range(len(elsewhere) - 1, -1, -1):
            if elsewhere[i] is op:
                del elsewhere[i]
                return

    def wait_elsewhere(self, op: Operation) -> None:
        """``op`` pends outside the queues (an extension function): cancellable (loop thread).

        Completed ones are dropped when the list has doubled since the last pruning, so
        a listener with many AcceptEx calls in flight pays O(1) per call."""
        elsewhere = self.elsewhere
        if len(elsewhere) >= self._prune_at:
            elsewhere[:] = [other for other in elsewhere if other.pending]
            self._prune_at = 2 * len(elsewhere) + 16
        elsewhere.append(op)

    def request_cancel(self, which: Callable[[Operation], bool], op: Operation | None) -> int:
        """CancelIoEx/CancelIo from any thread, never waiting for the loop (S15.2).

        On the loop: :meth:`cancel_where` at once.  Elsewhere, what is still in the
        hand-off (no I/O done) is aborted here, inside the call; the rest is recorded
        (scheduled on the loop, behind every post already made) and aborted there, and
        the answer is what the calling thread can see alone: ``op`` (or, with None,
        some operation of this socket) still pending is found (0), else -1.  An
        operation already handed on completes normally, as one racing a cancel does on
        Windows."""
        if self.on_loop_thread():
            return self.cancel_where(which)
        # Aborted at once, so a program that posts and cancels in a tight loop (the
        # Proactor's self-reading receive, each time its loop stops) never piles work
        # up for the loop.
        withdrawn = self.handoff.withdraw(which)
        if withdrawn:
            self.door.complete_all(withdrawn, ABORTED)
        if op is not None:
            if withdrawn or not op.pending:
                return 0 if withdrawn else -1  # decided here: nothing for the loop
            found = True
        else:
            found = (
                bool(withdrawn)
                or self.engine.pending.count > 0
                or any(other.pending and which(other) for other in list(self.elsewhere))
            )
        try:
            self.handoff.call_on_loop(functools.partial(self.cancel_where, which))
        except RuntimeError:
            return -1  # the loop is closed: nothing is pending any more
        return 0 if found else -1

    def cancel_where(self, which: Callable[[Operation], bool]) -> int:
        """CancelIoEx/CancelIo on the loop (S15.1): abort what ``which`` selects that is
        not handed on; the count aborted, or -1 when nothing pending matched at all.

        An extension function waiting for its connection is not handed on: it is
        aborted, and the task that serves it sees that and lets go."""
        self.take_incoming()
        removed = self.engine.cancel_where(which)
        if self.elsewhere:
            aside = [op for op in self.elsewhere if op.pending and which(op)]
            if self.before_abort:
                for op in aside:
                    hook = self.before_abort.pop(op, None)
                    if hook is not None:
                        isolated(hook)
            if aside:
                # A listener whose AcceptEx calls were cancelled stops waiting until
                # another is posted.
                self.stop_accepting()
            removed += aside
        self._aborted(removed)
        if removed:
            return len(removed)
        return 0 if self.engine.has_pending(which) else -1

    def _aborted(self, removed: list[Operation]) -> None:
        """Complete withdrawn operations aborted, and let the sends behind them go."""
        self.door.complete_all(removed, ABORTED)
        if self.engine.stream:
            self.pump()

    def close_here(self) -> None:
        """WSPCloseSocket on the loop thread (S10.2): abort everything, close the transport."""
        self.handoff.close()
        self.take_incoming(quietly=True)
        aborted, done = self.engine.close()
        self.door.complete_all(aborted, ABORTED)
        if self.accept_into is not None:
            # The AcceptEx this socket was to take a connection for ends with it, at
            # once, as on Windows (Wine's test_AcceptEx): aborted, one notice.
            self.door.complete(self.accept_into, ABORTED, 0)
        transport = self.transport
        if done and transport is not None and not transport.is_closing():
            try:
                transport.writelines([kept(buf) for op in done for buf in op.buffers])
            except Exception:
                pass  # the connection is going anyway; nothing waits for these bytes
        if self.drain_timer is not None:
            self.drain_timer.cancel()
            self.drain_timer = None
        self.stop_accepting()
        for conn in self.parked:
            conn.close()
        self.parked.clear()
        if self.connect_future is not None:
            self.connect_future.cancel()
        program, self.program_sock = self.program_sock, None
        if program is not None:
            # WSPCloseSocket closes the program's object too (documented at adopt);
            # forgotten first, so that its close does not come back here.
            _adoption.forget(program)
            program.close()
        if self.transport is None:
            if not self.attaching:
                self.sock.close()
        elif not self.transport.is_closing():
            self.on_closing(self, True)
            if self.engine.unread:
                self._reset()
            else:
                self.transport.close()  # graceful: buffered bytes still go out, then FIN

    def _reset(self) -> None:
        """Close abortively: a reset (linger on, time 0), nothing more goes out."""
        with contextlib.suppress(OSError):
            self.sock.setsockopt(_pysocket.SOL_SOCKET, _pysocket.SO_LINGER, _LINGER_0)
        self.transport.abort()


def _set_none(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _disconnects(op: Operation) -> bool:
    """A TransmitFile with TF_DISCONNECT that went whole (S14.5)."""
    parts = op.parts
    return parts is not None and parts.disconnect and not op.fault


def _fileno(transport: asyncio.BaseTransport) -> int:
    sock = transport.get_extra_info("socket")
    return sock.fileno() if sock is not None else -1
