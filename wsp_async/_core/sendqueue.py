"""The send-ordering queue and its completion accounting (SPEC S4, S5.3). No I/O here.

Rules of this module:

* Everything that decides *when a send is complete* lives in this file; the
  transport adapter only reports two facts -- "I handed these sends to the
  transport" and "the transport's write buffer now holds N bytes" -- and carries
  out the completions this file returns.
* This file does not know about threads, loops, events or routines.  Its caller
  runs it on the I/O loop thread only.

Theory of operation
-------------------
A stream socket's bytes form one sequence.  Each send, when handed to the
transport, is given ``end``: the offset in that sequence just past its last byte.
The emulated send buffer (S4.1) is the transport's write buffer with capacity
``capacity`` (``SO_SNDBUF``).  If the transport reports ``buffered`` bytes, then the
first ``written - buffered`` bytes are in the kernel, and of the ``buffered`` ones the
oldest ``capacity`` are "held in the send buffer within its capacity".  So::

    consumed = written - max(0, buffered - capacity)

and every send with ``end <= consumed`` is complete.  With ``capacity == 0`` (S4.2)
a send completes only when none of its bytes is left in user space.

A send is handed to the transport only while ``buffered <= capacity``: at most
one batch overshoots the capacity, which bounds the provider's own buffering
to ``SO_SNDBUF`` plus one send's worth (S4.4).  Sends waiting their turn are kept
as references to the caller's buffers, never copied (S5.2).

``buffered`` is only learnt when the adapter reports it (after a write, and when
the transport says it drained to the capacity), so a completion may come a
little *late*, never early: ``consumed`` can only be under-estimated.

The queue also keeps the room in the emulated buffer for sends that complete
inside their call (:mod:`~wsp_async._core.admission`): ``reported``, the last
reading; ``held``, the bytes of records already complete that wait at the head of
``waiting`` (the asyncio face's held sends, another thread's staged copies); and
``used``, an upper bound on the whole: the reading, plus what went to the
transport outside the queue since, plus ``held``.  Each is changed only by the
method that names the event (:meth:`SendQueue.report`, :meth:`SendQueue.wrote`,
:meth:`SendQueue.hold`, :meth:`SendQueue.post`, :meth:`SendQueue.push_front`).

One operation may be handed on in parts: a ``TransmitFile`` (S14.5) carries a
``PartSource`` and stays at the head of ``waiting`` while its source hands out
``Piece`` objects (:mod:`~wsp_async._core.sendable`) -- head, file chunks, tail -- as
room appears in the send buffer, so a file is never read whole and no later send
lands inside it.  Its pieces travel through ``inflight`` like sends; the last one
names the operation as its ``owner``, and the operation completes when that piece is
consumed.  The queue only asks the source for the next piece; reading the file is the
source's business, outside this module.
"""

from __future__ import annotations

import collections
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from .arguments import skip
from .sendable import Op, Piece, owners

T = TypeVar("T")

#: At most this much is offered to the kernel in one gather write (it takes what fits
#: its buffers).  Measured on loopback (``benchmarks/README.md``): 512 KiB keeps most of
#: the gain of fewer writes (4 MiB gathers: about 2.1x raw's 64 KiB writes, 512 KiB:
#: 1.7-1.9x) and, with sender and receiver on one CPU, the bytes still in cache when the
#: receiver copies them out (4 MiB gathers fell to 0.86-0.93x raw there, 512 KiB stay
#: at 0.98x or more).
GATHER_BYTES = 1 << 19
#: And in at most this many buffers: IOV_MAX on Linux (more fails with EMSGSIZE).
GATHER_BUFFERS = 1024


def withdraw(queue: collections.deque[T], which: Callable[[T], bool] | None) -> list[T]:
    """Remove and return the items of ``queue`` that ``which`` selects (all when None), in order."""
    if which is None:
        removed = list(queue)
        queue.clear()
        return removed
    removed = [item for item in queue if which(item)]
    if removed:
        kept = [item for item in queue if not which(item)]
        queue.clear()
        queue.extend(kept)
    return removed


class SendQueue(Generic[Op]):
    """Posting-order queue of one socket's sends, with S4 completion accounting."""

    __slots__ = (
        "capacity",
        "held",
        "inflight",
        "offer",
        "offered",
        "pieces",
        "reported",
        "run",
        "run_buffers",
        "run_bytes",
        "used",
        "waiting",
        "written",
    )

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        #: Posted, not yet handed to the transport (posting order).
        self.waiting: collections.deque[Op] = collections.deque()
        #: Handed to the transport, not yet consumed (posting order, ``end`` ascending).
        self.inflight: collections.deque[Op] = collections.deque()
        #: Bytes handed to the transport since the socket opened.
        self.written = 0
        #: The transport's write-buffer size as last reported (:meth:`report`).
        self.reported = 0
        #: Bytes of records held complete at the head of ``waiting`` (S4.1: held within
        #: the send buffer is consumed), not yet handed on.
        self.held = 0
        #: Bytes in the emulated send buffer, at most: the transport's last reading,
        #: what went to it outside the queue since (sends that completed at once), and
        #: what is held here.  Never less than the truth, so a send judged to fit by it
        #: does (:mod:`~wsp_async._core.admission` judges room on it).
        self.used = 0
        #: Some operation was handed on in pieces: ``inflight`` may hold :class:`Piece`.
        self.pieces = False
        #: The last batch may be offered to the kernel whole (:meth:`next_batch`).
        self.offer = False
        #: Its bytes, when it may.
        self.offered = 0
        #: The run: how many sends :meth:`post` appended to ``waiting`` since it was
        #: last empty, each pending and plain (no fault, no pieces, not urgent), and
        #: their bytes and buffers; -1 once anything else joined ``waiting``.  When it
        #: counts every send waiting, :meth:`next_batch` takes them all without looking
        #: at each -- a burst posted in one loop iteration, the common batch (the
        #: look was a tenth of a loop-thread send's Python, issue 26).  So a send that
        #: joins ``waiting`` any other way, or a record held complete, spoils the run
        #: (``-1``); a removal need not, since it leaves the run longer than ``waiting``
        #: until ``waiting`` is empty again, and neither does putting back what was
        #: taken off (:meth:`reached`, :meth:`remove_waiting`).
        self.run = 0
        self.run_bytes = 0
        self.run_buffers = 0

    def __len__(self) -> int:
        return len(self.waiting) + len(self.inflight)

    @property
    def in_transport(self) -> int:
        """What the transport holds, at most: its last reading plus what went since."""
        return self.used - self.held

    def report(self, buffered: int) -> None:
        """The transport holds ``buffered`` bytes now (read with nothing in flight, or
        through :meth:`observe`, which also settles what that consumed)."""
        self.reported = buffered
        self.used = buffered + self.held

    def wrote(self, nbytes: int) -> None:
        """``nbytes`` went to the transport outside the queue: a send that completed at
        once (:mod:`~wsp_async._core.admission`'s ``WRITE``, a non-blocking send)."""
        self.written += nbytes
        self.used += nbytes

    def hold(self, data: Any, nbytes: int, record: Callable[[list[Any], int], Op]) -> None:
        """Hold ``data`` complete for the next batch (``HOLD``): joined to the record
        held at the head, or a new one made by ``record(buffers, nbytes)``."""
        waiting = self.waiting
        if waiting:
            held = waiting[0]
            held.buffers.append(data)
            held.nbytes += nbytes
        else:
            waiting.append(record([data], nbytes))
        self.run = -1
        self.held += nbytes
        self.used += nbytes

    def post(self, op: Op) -> None:
        """Queue ``op`` in posting order; a record already complete (another thread's
        staged send) is held bytes.  Counted in the run (see ``__init__``) when it may be."""
        waiting = self.waiting
        if not waiting:
            self.run = self.run_bytes = self.run_buffers = 0
        waiting.append(op)
        if not op.status:
            self.held += op.nbytes
            self.used += op.nbytes
            self.run = -1
        elif self.run >= 0:
            if op.fault or op.urgent or op.parts is not None:
                self.run = -1
            else:
                self.run += 1
                self.run_bytes += op.nbytes
                self.run_buffers += len(op.buffers)

    def push_front(self, op: Op) -> None:
        """The rest of a send begun straight to the kernel: before everything waiting."""
        self.waiting.appendleft(op)
        self.run = -1

    def hold_front(self, op: Op) -> None:
        """A record already complete goes back before everything waiting, its bytes held:
        the rest of an urgent send the kernel had no room for (it goes first, and alone)."""
        self.waiting.appendleft(op)
        self.run = -1
        self.held += op.nbytes
        self.used += op.nbytes

    def next_batch(self, gather: bool = False) -> list[Op]:
        """Pop the sends to hand to the transport now, in posting order.

        Takes sends while the buffer estimate stays within the capacity, and at
        least one while there is room at all, so that a send larger than the
        capacity still goes out.  An urgent (``MSG_OOB``) send goes alone, and only
        once the transport holds nothing, since it bypasses the transport's buffer.

        ``gather``: the transport holds nothing, so the batch may be offered to the
        kernel first in one gather write (see :meth:`reached`).  Then it may hold up to
        ``GATHER_BYTES`` in ``GATHER_BUFFERS`` buffers of plain sends: what the kernel
        takes is consumed, and what it does not reach comes back to ``waiting``.
        :attr:`offer` says whether the batch returned is such a one (several plain
        sends, or one in several buffers); the pieces of a TransmitFile never are: they
        never go back.
        """
        batch: list[Op] = []
        waiting = self.waiting
        estimate = 0 if gather else self.in_transport  # gather: a reading of 0
        self.offer = False
        if estimate > self.capacity:
            return batch
        if (
            gather
            and self.run == len(waiting)
            and self.run_bytes <= GATHER_BYTES
            and self.run_buffers <= GATHER_BUFFERS
            and waiting
        ):
            # The run is everything waiting, and within one gather write: what the loop
            # below would take, taken whole (nothing held among it, so ``held`` stays).
            batch = list(waiting)
            waiting.clear()
            self.offer = len(batch) > 1 or self.run_buffers > 1
            self.offered = self.run_bytes
            return batch
        limit = GATHER_BYTES if gather else self.capacity
        buffers = 0
        taken = 0  # bytes of held records taken: written to ``held`` once, after the loop
        while waiting:
            op = waiting[0]
            if op.fault:
                break  # it completes with its fault, not through the transport
            if op.parts is not None:
                if gather and batch:
                    break  # a TransmitFile goes piece by piece, in a batch of its own
                gather, limit = False, self.capacity
                estimate = self._take_pieces(op, batch, estimate)
                if waiting and waiting[0] is op:
                    break  # the rest of it when the buffer drains
                continue
            if op.urgent:
                if batch or self.in_transport:
                    break
                batch.append(waiting.popleft())
                if not op.status:
                    self.held -= op.nbytes  # the rest of one, held (hold_front)
                break
            if batch and estimate + op.nbytes > limit:
                break
            if gather:
                buffers += len(op.buffers)
                if batch and buffers > GATHER_BUFFERS:
                    break
            estimate += op.nbytes
            batch.append(waiting.popleft())
            if not op.status:
                taken += op.nbytes  # still in ``used``: on its way to the transport
        self.held -= taken
        # Worth a gather write: several sends, or one in several buffers (the asyncio
        # face's held sends are one such) -- within what one system call takes.
        self.offer = gather and (len(batch) > 1 or 1 < buffers <= GATHER_BUFFERS)
        self.offered = estimate
        return batch

    def reached(self, batch: list[Op], sent: int) -> tuple[list[Op], list[Any]]:
        """The kernel took the first ``sent`` bytes of ``batch`` (a gather batch, offered
        whole): the sends it reached, and what is left of the last of them.

        The sends it did not reach go back to the head of ``waiting``, in order.  The
        last send reached may have been taken in part, or not at all: the buffers left
        of it (views, no copy) go through the transport, so that the batch handed on
        is never empty.  The caller then reports the sends reached with :meth:`handed`.
        """
        if sent >= self.offered:
            return batch, []  # the common case: the kernel took it all (no loop, issue 26)
        for i, op in enumerate(batch):
            if sent < op.nbytes:
                back = batch[i + 1 :]
                self.waiting.extendleft(reversed(back))
                self.held += sum(op.nbytes for op in back if not op.status)
                return batch[: i + 1], skip(op.buffers, sent)
            sent -= op.nbytes
        return batch, []

    def _take_pieces(self, op: Op, batch: list[Any], estimate: int) -> int:
        """Add ``op``'s next pieces to ``batch`` while the buffer has room (``op`` leaves
        ``waiting`` with its last one); returns the new buffer estimate."""
        parts = op.parts
        assert parts is not None
        self.pieces = True
        while not batch or estimate < self.capacity:
            data, last = parts.take()
            size = len(data)
            batch.append(Piece([data] if size else [], size, op, op if last else None))
            estimate += size
            if last:
                self.waiting.popleft()
                op.fault = parts.error  # it completes with that once its bytes are consumed
                op.direct = parts.sent - op.nbytes  # a file shorter than announced
                break
        return estimate

    @property
    def blocked_on_urgent(self) -> bool:
        """An urgent send heads the queue and waits for the transport to empty."""
        return bool(self.waiting) and self.waiting[0].urgent and self.in_transport > 0

    def handed(self, batch: list[Op], buffered: int) -> list[Op]:
        """Record that ``batch`` went to the transport, now holding ``buffered``; return completions."""
        if buffered <= self.capacity and not self.inflight and not self.pieces:
            # :meth:`observe`'s common case, known without a loop: the transport holds no
            # more than the emulated buffer, so the whole batch is consumed.  ``written``
            # only places the ends of sends in flight, and none is left in flight, so
            # offsets counted on without these bytes stay consistent (issue 26: two
            # passes over every batch).
            self.reported = buffered
            self.used = buffered + self.held
            return batch
        written = self.written
        for op in batch:
            written += op.nbytes
            op.end = written
        self.written = written
        self.inflight.extend(batch)
        return self.observe(buffered)

    def observe(self, buffered: int) -> list[Op]:
        """The transport reports ``buffered`` bytes held: pop and return the consumed sends."""
        self.reported = buffered
        self.used = buffered + self.held
        inflight = self.inflight
        if not inflight:
            return []
        over = buffered - self.capacity
        consumed = self.written - over if over > 0 else self.written
        if inflight[-1].end <= consumed:  # the common case: everything handed on is consumed
            done = list(inflight)
            inflight.clear()
        else:
            done = []
            while inflight and inflight[0].end <= consumed:
                done.append(inflight.popleft())
        if self.pieces:
            return owners(done)
        return done

    def refused(self, batch: list[Any]) -> list[Op]:
        """The transport refused ``batch``: the operations it stands for, which complete with
        the write's error.  An operation whose pieces were in it leaves the queue even when
        its last piece was not among them: nothing more of it may follow a hole."""
        if not self.pieces:
            return batch
        ops: list[Op] = []
        for item in batch:
            op = item.source if type(item) is Piece else item
            if not ops or ops[-1] is not op:
                ops.append(op)
        waiting = self.waiting
        if waiting and any(op is waiting[0] for op in ops):
            waiting.popleft()
        return ops

    def remove_waiting(self, which: Callable[[Op], bool] | None = None) -> list[Op]:
        """Withdraw sends not yet handed on (all, or those ``which`` selects), in order.

        An operation handed on in part is on its way, like a send handed on whole: it
        stays, so that the stream never holds a piece of it followed by later sends.
        Such a send can only be the first one waiting: a ``TransmitFile`` whose first
        pieces went out, or a send whose first bytes another thread wrote straight to
        the kernel (``direct``) before its rest was queued in front of everything.
        """
        waiting = self.waiting
        begun = None
        if waiting:
            head = waiting[0]
            if head.direct or (head.parts is not None and head.parts.sent > 0):
                begun = waiting.popleft()
        try:
            return withdraw(waiting, which)
        finally:
            if begun is not None:
                waiting.appendleft(begun)
            held = sum(op.nbytes for op in waiting if not op.status)
            self.used -= self.held - held
            self.held = held

    def remove_all(self) -> list[Op]:
        """Withdraw every unconsumed send (handed-on ones first: posting order)."""
        removed = owners(self.inflight) if self.pieces else list(self.inflight)
        self.inflight.clear()
        removed.extend(self.waiting)
        self.waiting.clear()
        self.used -= self.held
        self.held = 0
        return removed

    def outstanding(self) -> list[Op]:
        """Every unconsumed operation, handed on or not, in posting order."""
        handed = owners(self.inflight) if self.pieces else list(self.inflight)
        return handed + list(self.waiting)
