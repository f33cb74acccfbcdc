"""One socket's engine: its state and every policy that decides completions. No I/O here.

Rules of this module (read them before changing it):

* Everything that decides *what happens to an operation* lives here or in the
  two queues it owns (:mod:`wsp_async._core.sendqueue`, :mod:`wsp_async._core.recvqueue`):
  which S9 row a post meets, when sends are handed on and in what batches, an
  injected fault at the head of the queue, OOB ordering, which operations each
  abort takes (close, flush, reset, thread exit, cancel), when reading pauses.
* The engine never calls a transport, a loop, a hook or a completion.  Every
  method *returns* what happened -- operations to complete, and with what -- and
  the adapter (:mod:`wsp_async._io.adapter`) carries it out: it writes the batches
  and hands the completions to the completion door.  So these policies can be
  tested with no socket at all (``tests/test_engine.py``).
* The engine is driven from the I/O loop thread only.  What crosses threads
  (the hand-off of posts made elsewhere) is the adapter's business.

Theory of operation
-------------------
A send goes through three places: *waiting* (posted, owned by the engine, the
caller's buffers referenced and never copied, S5.2), *in flight* (handed to the
transport, not yet consumed), and *done* (consumed: handed to the kernel or
held within ``SO_SNDBUF``, S4.1).  The send queue computes the last step from
the transport's buffer size; the engine adds the policies around it:

* Coalescing: the first send of a loop iteration is handed on at once (and
  usually completes at once, S2.1); the sends after it in the same iteration
  wait for one gather write at the iteration's end, which the adapter offers
  to the kernel whole when the transport holds nothing.  The asyncio face's
  sends after the first are held there complete instead (one record whose
  status is already 0, as another thread's staged send; ``_io.face.sender``).
  A record already complete in ``waiting`` is consumed bytes: the aborts below
  skip it, a close still sends it, and its completion is a no-op.
* A fault injected "at completion" (S12.1) rides on its operation to the head of
  the queue and completes there, after the sends before it (S6.4's order).
* An abort takes exactly the operations its rule names (S10): a close takes all,
  a flush and a thread exit only those not yet handed on (bytes given to the
  transport cannot be taken back), a reset all the unconsumed ones.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..constants import (
    AF_INET,
    UDP_MAX_MSG_SIZE_V4,
    UDP_MAX_MSG_SIZE_V6,
)
from ..errors import WSAErr, WSAError, wsa_code_of
from ..faults import FaultPlan
from .operation import Operation, PendingCount
from .recvqueue import DatagramReceiver, StreamReceiver
from .rules import (
    DATAGRAM_SEND_ROWS,
    RECV_ROWS,
    SEND_FLAG_ROWS,
    STREAM_SEND_ROWS,
    Event,
    Row,
    SocketState,
    next_state,
)
from .sendqueue import SendQueue

__all__ = ["RECEIVE_HIGH_WATER", "Event", "SocketEngine", "SocketState"]

#: Pause reading once this many received bytes wait for a receive (bounds memory).
RECEIVE_HIGH_WATER = 1 << 20


ABORTED = WSAErr.WSA_OPERATION_ABORTED
Completions = list[tuple[Operation, int, int]]


class SocketEngine:
    """The state and policies of one emulated socket (see the module docstring)."""

    def __init__(self, *, stream: bool, family: int, overlapped: bool, pending: PendingCount):
        self.stream = stream
        self.family = family
        self.overlapped = overlapped
        self.nonblocking = False
        self._state = SocketState.CREATED
        #: A plain stream send meets no S9 row (connected, not shut down, no error) and
        #: no slowed drain (S12.1), so it may skip the table and be admitted at once
        #: (:mod:`~wsp_async._core.admission`).  Kept up to date by the four things it
        #: depends on, so the hot path reads one attribute.
        self.send_ready = False
        self._send_shut = False
        self.recv_shut = False
        #: Sticky connection error (reset, abort): later sends fail with it at once.
        self._error = 0
        #: What later receives fail with once the connection is gone (see ``lost``).
        self.recv_error = 0
        #: SO_ERROR: the last asynchronous error (a failed background connect), cleared when read.
        self.so_error = 0
        self.broadcast = False
        self.sendq: SendQueue[Operation] = SendQueue(65536)
        self.receiver: StreamReceiver[Operation] | DatagramReceiver[Operation] = (
            StreamReceiver() if stream else DatagramReceiver()
        )
        self.pending = pending
        #: A send went straight out in this loop iteration; small ones after it wait for its end.
        self.coalescing = False
        #: SD_SEND was asked: the end of stream goes out once the queue is empty (S10.1).
        self.eof_due = False
        self.reading_paused = False
        #: Fault injection (S12.1): faults armed on this socket, and a slowed drain.
        self.faults: FaultPlan | None = None  # made when a fault is armed on this socket
        self._drain_delay: float | None = None

    @property
    def state(self) -> SocketState:
        return self._state

    @state.setter
    def state(self, state: SocketState) -> None:
        self._state = state
        self._update_ready()

    def allows(self, event: Event) -> SocketState:
        r"""The state ``event`` would move the socket to; raises its S9 code when the
        life cycle refuses it (:data:`~wsp_async._core.rules.TRANSITIONS`).  Nothing
        changes: a caller that must do I/O first asks, acts, then :meth:`move`\ s."""
        to = next_state(self._state, event)
        if type(to) is WSAErr:
            raise WSAError(to, f"{event.value} while {self._state.name.lower()}")
        return to  # type: ignore[return-value]

    def move(self, event: Event) -> None:
        """Take ``event`` (raising its S9 code when refused: nothing changes)."""
        self.state = self.allows(event)

    @property
    def capacity(self) -> int:
        """``SO_SNDBUF``: the emulated send buffer's size (S4.1), which the send queue owns."""
        return self.sendq.capacity

    @capacity.setter
    def capacity(self, size: int) -> None:
        self.sendq.capacity = size

    @property
    def send_shut(self) -> bool:
        return self._send_shut

    @send_shut.setter
    def send_shut(self, shut: bool) -> None:
        self._send_shut = shut
        self._update_ready()

    @property
    def drain_delay(self) -> float | None:
        """Fault injection (S12.1): hand sends on one batch per this many seconds
        (``math.inf``: not at all); None, the transport's own pace."""
        return self._drain_delay

    @drain_delay.setter
    def drain_delay(self, delay: float | None) -> None:
        self._drain_delay = delay
        self._update_ready()

    @property
    def error(self) -> int:
        return self._error

    @error.setter
    def error(self, code: int) -> None:
        self._error = code
        self._update_ready()

    def _update_ready(self) -> None:
        self.send_ready = (
            self.stream
            and self._state is SocketState.CONNECTED
            and not self._send_shut
            and not self._error
            and self._drain_delay is None
        )

    @property
    def max_message(self) -> int:
        return UDP_MAX_MSG_SIZE_V4 if self.family == AF_INET else UDP_MAX_MSG_SIZE_V6

    # ------------------------------------------------------------------ the S9 table
    def check(self, rows: tuple[Row, ...], flags: int = 0, to: Any = None, total: int = 0) -> None:
        """Raise the first S9 row that ``rows`` say applies (nothing started, S2.3)."""
        for test, code, why in rows:
            if test(self, flags, to, total):
                if code is None:
                    code = self.error
                elif code == -1:
                    code = self.recv_error
                raise WSAError(code, why)

    def check_send(self, flags: int, to: Any, total: int) -> None:
        """The S9 rows of a send (callers may skip it when ``send_ready`` and no flags)."""
        if not flags and self.send_ready:
            return
        if flags:
            self.check(SEND_FLAG_ROWS, flags, to, total)
        self.check(STREAM_SEND_ROWS if self.stream else DATAGRAM_SEND_ROWS, flags, to, total)

    def check_recv(self, flags: int, buffers: int) -> None:
        """``buffers``: how many WSABUF entries the receive has (none is WSAEINVAL)."""
        if (
            not flags
            and buffers
            and self.stream
            and self._state is SocketState.CONNECTED
            and not self.recv_shut
            and not self.recv_error
        ):
            return  # every row of RECV_ROWS reads false: the common receive, read at once
        self.check(RECV_ROWS, flags, None, buffers)

    # ------------------------------------------------------------------ stream sends
    def post_send(self, op: Operation, coalesce: bool = True) -> bool:
        """Queue a send in posting order (S5.3); True when the queue should be handed on now."""
        self.sendq.post(op)
        return not (coalesce and self.coalescing)

    def begin_iteration(self) -> bool:
        """A send went out at once: True when the end of this loop iteration must be marked.

        Not with an emulated buffer of 0: nothing may wait there to be gathered, each send
        completes once the kernel holds it (S4.2; S17.3 on the Proactor's own thread)."""
        if self.coalescing or not self.capacity:
            return False
        self.coalescing = True
        return True

    def end_iteration(self) -> bool:
        """The loop iteration ended: True when sends wait for the gather write."""
        self.coalescing = False
        return bool(self.sendq.waiting)

    def next_hand_on(self, gather: bool = False) -> tuple[Operation | None, list[Operation]]:
        """What the adapter does next: ``(op, [])`` completes ``op`` with its injected
        fault; ``(None, batch)`` writes ``batch`` (empty: nothing to do now).  ``gather``:
        the transport holds nothing, so the batch may be offered to the kernel whole
        (:meth:`SendQueue.next_batch`)."""
        sendq = self.sendq
        waiting = sendq.waiting
        if waiting and waiting[0].fault:
            if sendq.inflight:
                return None, []  # the sends before it complete first (S6.4)
            return waiting.popleft(), []
        return None, sendq.next_batch(gather)

    def handed(self, batch: list[Operation], buffered: int) -> list[Operation]:
        """The transport took ``batch`` and now holds ``buffered``: the consumed sends."""
        return self.sendq.handed(batch, buffered)

    def observe(self, buffered: int) -> list[Operation]:
        """The transport's buffer is ``buffered``: the sends consumed meanwhile."""
        return self.sendq.observe(buffered)

    @property
    def wants_empty_transport(self) -> bool:
        """An OOB send heads the queue and waits for the transport to hold nothing."""
        return self.sendq.blocked_on_urgent

    def eof_ready(self) -> bool:
        """SD_SEND asked and every send before it is consumed: time to send the FIN."""
        if self.eof_due and not self.sendq:
            self.eof_due = False
            return True
        return False

    def shutdown(self, send: bool, receive: bool) -> None:
        if receive:
            self.recv_shut = True
        if send:
            self.send_shut = True
            if self.stream:
                self.eof_due = True

    def reset(self) -> None:
        """DisconnectEx with TF_REUSE_SOCKET (S14.4): a fresh, unbound socket again."""
        self.state = SocketState.CREATED
        self.error = self.so_error = self.recv_error = 0
        self.send_shut = self.recv_shut = False
        self.eof_due = self.coalescing = self.reading_paused = False
        self.sendq = SendQueue(self.sendq.capacity)
        self.receiver = StreamReceiver()

    def write_failed(self, exc: BaseException) -> int:
        """The code a batch completes with when the transport refused to take it.

        A buffer the transport cannot read is the caller's bad pointer
        (``WSAEFAULT``); a transport already half-closed or closing refuses as a
        shut-down or lost connection would; the host's errors take the errno table.
        """
        if isinstance(exc, TypeError | ValueError | BufferError):
            return WSAErr.WSAEFAULT
        if isinstance(exc, OSError):
            return wsa_code_of(exc)
        return WSAErr.WSAESHUTDOWN if self.send_shut else WSAErr.WSAECONNABORTED

    # ------------------------------------------------------------------ receives
    def receive_now(self, op: Operation) -> tuple[int, int] | None:
        """A receive that can complete at once: (status, bytes); else None."""
        return self.receiver.take(op)

    def post_receive(self, op: Operation) -> tuple[int, int] | None:
        """Complete ``op`` at once if it can, else queue it (posting order, S11.1)."""
        got = self.receiver.take(op)
        if got is None:
            self.receiver.post(op)
        return got

    def arrived(self, data: bytes, source: Any) -> Completions:
        receiver = self.receiver
        if isinstance(receiver, StreamReceiver):
            return receiver.feed(data)
        return receiver.feed(data, source)

    def should_pause_reading(self) -> bool:
        if not self.reading_paused and self.receiver.available() > RECEIVE_HIGH_WATER:
            self.reading_paused = True
            return True
        return False

    def should_resume_reading(self) -> bool:
        if self.reading_paused and self.receiver.available() < RECEIVE_HIGH_WATER // 2:
            self.reading_paused = False
            return True
        return False

    def ended(self) -> Completions:
        """The peer's graceful end of stream: waiting receives complete with 0 bytes."""
        return self.receiver.end()

    # ------------------------------------------------------------------ aborts (S10)
    def lost(self, code: int | None) -> tuple[list[Operation], int, Completions]:
        """The connection is gone (``code`` None: closed without a socket error, S10.5).

        Returns the unconsumed sends with the code they complete with, and the
        receive completions: every receive fails with a socket error, or sees the
        end of stream after a clean close.
        """
        status = self.lose(code)
        sends = self.sendq.remove_all()
        if code is None:
            return sends, status, self.receiver.end()
        return sends, status, [(op, code, 0) for op in self.receiver.remove()]

    def lose(self, code: int | None) -> int:
        """The errors a lost connection leaves (:meth:`lost`'s first step, which the adapter
        takes alone first, under its hand-off's lock): sends fail with the returned status
        from now on, and receives with ``recv_error`` once no bytes are left."""
        status = WSAErr.WSAECONNABORTED if code is None else code
        self.error = status
        if code is not None:
            # A reset is reported through the completions, not SO_ERROR (Windows leaves
            # it 0).  One drawn by our own send after the peer had closed (its FIN seen)
            # fails later receives with WSAECONNABORTED, as Windows does, not with a
            # 0-byte read.
            ended = isinstance(self.receiver, StreamReceiver) and self.receiver.ended
            self.recv_error = WSAErr.WSAECONNABORTED if ended else code
        return status

    def close(self) -> tuple[list[Operation], list[Operation]]:
        """WSPCloseSocket (S10.2): every pending operation, to complete aborted -- and the
        sends already complete whose bytes still wait here (copied into the emulated send
        buffer), which a graceful close still sends, in order."""
        sends = self.sendq.remove_all()
        kept = [op for op in sends if not op.pending]
        aborted = [op for op in sends if op.pending] if kept else sends
        return aborted + self.receiver.remove(), kept

    @property
    def unread(self) -> bool:
        """Bytes arrived that the program never received: a close then resets the
        connection instead of ending it, so that the peer learns they were not read
        (RFC 1122 4.2.2.13; Windows and Linux both do so for bytes in their kernel
        buffer, and these are bytes this emulator took from the kernel for it)."""
        return self.stream and self.receiver.available() > 0

    def flush(self) -> list[Operation]:
        """SIO_FLUSH (S10.3): the sends not yet handed on, to complete aborted (a send
        already complete was consumed: its bytes are no longer the caller's to cancel)."""
        return self.sendq.remove_waiting(_still_pending)

    def cancel_issued_by(self, target: object) -> list[Operation]:
        """S10.4: a thread is gone; its operations not yet handed on, to complete aborted.

        Those whose routine was to run on that thread go too: no one is left to run it.
        """

        def gone(op: Operation) -> bool:
            # A port's operations outlive their thread (S13.2), as on Windows since Vista.
            if op.port_link is not None:
                return False
            later = op.port_later
            return (op.issuer is target or op.thread is target) and (
                later is None or later.port_link is None
            )

        return self.cancel_where(gone)

    def cancel(self, op: Operation) -> list[Operation]:
        """Withdraw one operation not yet handed on ([] when it is on its way or done)."""

        def this(candidate: Operation) -> bool:
            return candidate is op

        return self.cancel_where(this)

    def cancel_where(self, which: Callable[[Operation], bool]) -> list[Operation]:
        """Withdraw the pending operations ``which`` selects that are not handed on yet
        (CancelIoEx, S15.1: one handed to the transport completes normally)."""

        def chosen(op: Operation) -> bool:
            return op.pending and which(op)

        return self.sendq.remove_waiting(chosen) + self.receiver.remove(chosen)

    def has_pending(self, which: Callable[[Operation], bool]) -> bool:
        """Some pending operation, handed on or not, is one ``which`` selects."""
        return any(
            op.pending and which(op)
            for q in (self.sendq.outstanding(), self.receiver.waiting)
            for op in q
        )


def _still_pending(op: Operation) -> bool:
    return op.pending
