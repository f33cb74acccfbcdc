"""One record per operation, from its post to its completion.

An :class:`Operation` bundles everything that must stay alive until the
operation completes: the captured buffers (references to the caller's data,
SPEC S5.2), the ``WSAOVERLAPPED``, the routine and the APC target it must run
on, the event, and the issuing thread (S10.4).  It is compared by identity:
two operations with equal fields are still two operations.

Who writes which field:

* the SPI face fills the request fields when it validates the call;
* the engine fills ``end`` (stream offset) and, for receives, ``out_flags`` and
  ``source``;
* only the completion door (:mod:`wsp_async._completion.door`) moves ``status`` out of
  ``STATUS_PENDING`` -- that single door is what exactly-once (S2.4) rests on.
"""

from __future__ import annotations

import enum
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..constants import STATUS_PENDING
from ..errors import WSAErr, WSAError

if TYPE_CHECKING:
    from ..apc import ApcTarget
    from ..events import WSAEVENT
    from ..structs import WSAOVERLAPPED

__all__ = ["RECV", "SEND", "Operation", "OpKind", "PendingCount", "held_send"]


class OpKind(enum.IntEnum):
    SEND = 0
    RECV = 1
    IOCTL = 2


#: Called with the operation once it completed (blocking callers, asyncio futures).
Listener = Callable[["Operation"], object]
Routine = Callable[[int, int, Any, int], object]


#: Read on every post, count and uncount: an enum member's lookup through its class
#: costs a few tens of nanoseconds on Python 3.11, a module global almost nothing.
SEND = OpKind.SEND
RECV = OpKind.RECV


class PendingCount:
    """Outstanding overlapped operations of one socket and their bytes (SPEC S9 limits).

    Thread-safe: posts are counted on their posting thread and uncounted where they
    complete.  ``max_pending`` and ``max_pending_bytes`` are the provider's options.

    Two tallies make the count.  The loop thread's changes go to ``here_*``, which only
    that thread writes, so it takes no lock: a send posted on the loop thread and
    completed there -- the common case -- then costs no lock round trip at all (that
    round trip was a tenth of such a send's Python, issue 26).  Every other thread's
    changes go to ``other_*``, under ``_lock``.  The count is their sum (``count``,
    ``bytes``, ``sends``); one tally may go below zero when an operation counted on one
    side completes on the other, their sum never does.  A reader on another thread reads
    the two fields one after the other, each whole: a value the sum had meanwhile, as
    good as the one field it read before.  ``owner.ident`` names the loop thread (it
    moves while a Proactor borrows the loop); without an owner every change takes the
    lock.

    The lock is taken with ``acquire`` and ``release`` rather than ``with``: on CPython
    3.11 the ``with`` form costs about three times as much (340 against 120 ns for a
    method that takes an uncontended lock, ``benchmarks/README.md``, issue 26).
    """

    __slots__ = (
        "_lock",
        "_owner",
        "here_bytes",
        "here_count",
        "here_sends",
        "max_bytes",
        "max_count",
        "other_bytes",
        "other_count",
        "other_sends",
    )

    def __init__(self, max_count: int, max_bytes: int | None, owner: Any = None) -> None:
        self._lock = threading.Lock()
        self._owner = owner
        self.here_count = self.other_count = 0
        self.here_bytes = self.other_bytes = 0
        #: Of the count, the sends: their notices keep posting order (S6.4); a pending
        #: receive completes whenever data comes and orders nothing.
        self.here_sends = self.other_sends = 0
        self.max_count = max_count
        self.max_bytes = max_bytes

    @property
    def count(self) -> int:
        return self.here_count + self.other_count

    @property
    def bytes(self) -> int:
        return self.here_bytes + self.other_bytes

    @property
    def sends(self) -> int:
        return self.here_sends + self.other_sends

    def check(self, nbytes: int) -> None:
        """Raise the S9 code if one more operation of ``nbytes`` would pass a limit."""
        if self.here_count + self.other_count >= self.max_count:
            raise WSAError(WSAErr.WSAEWOULDBLOCK, "too many overlapped operations outstanding")
        limit = self.max_bytes
        if limit is not None and self.here_bytes + self.other_bytes + nbytes > limit:
            raise WSAError(WSAErr.WSAENOBUFS, "max_pending_bytes reached")

    def _here(self) -> bool:
        owner = self._owner
        return owner is not None and threading.get_ident() == owner.ident

    def add_here(self, op: Operation) -> None:
        """Count ``op``, posted on the loop thread with its limits checked: no lock."""
        self.here_count += 1
        self.here_bytes += op.nbytes
        if op.kind is SEND:
            self.here_sends += 1
        op.counter = self

    def add(self, op: Operation, checked: bool = False) -> None:
        if self._here():
            if not checked:
                self.check(op.nbytes)
            self.add_here(op)
            return
        lock = self._lock
        lock.acquire()
        try:
            if not checked:
                self.check(op.nbytes)
            self.other_count += 1
            self.other_bytes += op.nbytes
            if op.kind is SEND:
                self.other_sends += 1
        finally:
            lock.release()
        op.counter = self

    def add_checked(self, op: Operation) -> None:
        """Count ``op`` whose limits were checked already (it turned out to pend)."""
        self.add(op, checked=True)

    def uncount(self, count: int, nbytes: int, sends: int) -> None:
        """Take a batch's completed operations off the count at once (the door tallied
        them, and cleared each one's ``counter``)."""
        if self._here():
            self.here_count -= count
            self.here_bytes -= nbytes
            self.here_sends -= sends
            return
        lock = self._lock
        lock.acquire()
        try:
            self.other_count -= count
            self.other_bytes -= nbytes
            self.other_sends -= sends
        finally:
            lock.release()

    def remove(self, op: Operation) -> None:
        if op.counter is self:
            op.counter = None
            self.uncount(1, op.nbytes, op.kind is SEND)


class Operation:
    """An operation between its post and its completion.

    A plain slotted class rather than an attrs one: one is made per post, and an
    initializer that takes the fields a post sets and writes the rest as constants costs
    about 30 ns less per send than one taking all 27 (issue 26, ``benchmarks/README.md``).
    An overlapped post does not even call it: ``Posting.overlapped`` writes the same fields.
    Compared by identity, as attrs' ``eq=False`` would have it.
    """

    __slots__ = (
        "address", "buffers", "checksum", "counter", "direct", "end", "event", "fault",
        "flags", "handle", "in_call", "issuer", "kind", "lane", "listener", "nbytes",
        "out_flags", "overlapped", "parts", "port_later", "port_link", "routine", "source",
        "status", "thread", "transferred", "urgent",
    )  # fmt: skip

    def __init__(
        self,
        kind: OpKind,
        buffers: list[Any],
        nbytes: int,
        overlapped: WSAOVERLAPPED | None = None,
        routine: Routine | None = None,
        thread: ApcTarget | None = None,
        event: WSAEVENT | None = None,
        issuer: ApcTarget | None = None,
        flags: int = 0,
        address: Any = None,
        handle: int = 0,
        listener: Listener | None = None,
        lane: Any = None,
        status: int = STATUS_PENDING,
    ) -> None:
        self.kind = kind
        self.buffers = buffers
        self.nbytes = nbytes
        self.overlapped = overlapped
        self.routine = routine
        #: Where the routine runs (S6.1): the APC target named by lpThreadId.
        self.thread = thread
        self.event = event
        #: The thread that posted it (S10.4 cancels at that thread's exit).
        self.issuer = issuer
        self.flags = flags
        self.address = address
        #: The socket handle (tracing and the verifier name it).
        self.handle = handle
        #: Called once completed, after the structure was written (see ``CompletionDoor``).
        self.listener = listener
        #: The per-socket lane that keeps routines from nesting (S6.4).
        self.lane = lane
        self.status = status
        #: The socket's completion port and key when it is associated (S13.2): one packet.
        self.port_link: Any = None
        #: The socket whose port, if it gets one before this completes, takes the packet:
        #: a port associated after the post still gets it, as on Windows (sock.c,
        #: test_completion_port).  None with a routine or with the low bit of hEvent.
        self.port_later: Any = None
        #: True while the initiating call itself completes it (S13.3 skips that packet).
        self.in_call = False
        #: MSG_OOB send: bypasses the transport's buffer, so it waits until that is empty.
        self.urgent = False
        #: Stream offset just past this send's last byte, set when handed to the transport.
        self.end = 0
        #: Bytes the completion reports beyond ``nbytes``: those of a send the kernel took
        #: directly before its rest was queued (S4.3: the completion still reports the
        #: whole length), or fewer for a TransmitFile whose file ended early.
        self.direct = 0
        #: A TransmitFile's source of pieces (head, file chunks, tail), handed on as the
        #: send buffer drains (S14.5); see :mod:`wsp_async._core.sendqueue`.
        self.parts: Any = None
        self.transferred = 0
        #: Output flags of a receive (MSG_PARTIAL), reported through the routine and S7.2.
        self.out_flags = 0
        #: Sender of a datagram receive.
        self.source: Any = None
        #: An injected completion-time fault (S12.1): completes with it at the head of
        #: its queue.
        self.fault = 0
        #: The count it is held in while outstanding (max_pending, max_pending_bytes).
        self.counter: PendingCount | None = None
        #: Checksum of the data at post time (verifier, S12.3).
        self.checksum: int | None = None

    def __repr__(self) -> str:
        return (
            f"<Operation {OpKind(self.kind).name} of {self.nbytes} bytes on {self.handle}, "
            f"status {self.status:#x}, transferred {self.transferred}>"
        )

    @property
    def pending(self) -> bool:
        return self.status == STATUS_PENDING


def held_send(buffers: list[Any], nbytes: int) -> Operation:
    """A send already complete whose bytes still wait in the send queue: held within the
    emulated send buffer, so consumed (S4.1).  Another thread's staged send and the asyncio
    face's held sends are such records; the engine's aborts skip them, a close still
    sends them, and completing one again is a no-op (its status is not pending).

    Its buffers are immutable (``bytes``, or views of ``bytes``): the caller's data was
    copied when it was held, as Winsock copies into the socket's buffer (S5.2), so a
    transport may keep them as they are."""
    return Operation(SEND, buffers, nbytes, status=0)
