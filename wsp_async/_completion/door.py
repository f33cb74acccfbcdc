"""The completion door: the one place where an operation stops being pending.

Rules of this module:

* ``CompletionDoor.complete`` (and the loops of its batches, ``_complete_many`` and
  ``complete_ok``) is the only code that moves an operation out of
  ``STATUS_PENDING`` and writes ``Internal``/``InternalHigh`` (SPEC S2.5), and the
  door (:meth:`CompletionDoor.complete` for one operation; ``complete_ok``,
  ``complete_all`` and ``completions`` for a batch) is the only code that then
  issues the completion notice: the routine queued as an APC (S6), the event set
  (S7.1), a blocked caller or an asyncio future woken (its *listener*), and the
  threads blocked in ``WSPGetOverlappedResult(fWait=True)`` (S7.2) woken.  A
  completion port (S13) is one more target here, not a new path.
* A batch queues the routines of its operations bound for one thread as one APC
  (``RoutineLane.run_many``), before any of them leaves its pending count.
* It returns at once for an operation that already left ``STATUS_PENDING``:
  whatever races (close, flush, reset, thread exit, provider close) may hand the
  same operation twice, and the notice still goes out exactly once (S2.4).
* Hooks that are not ours (the tracer, the verifier's warnings, which
  ``-W error`` turns into exceptions) run only once the structure is consistent,
  and their failures are reported the way S6.7 reports a routine's: they never
  strand an operation or stop the completions after them.

The S3.4 guard is the other half of the same promise: ``structs.claim_structure``
ties a ``WSAOVERLAPPED`` to one pending operation atomically (one ``dict.setdefault``),
so that two threads posting one structure cannot both succeed; :func:`unclaim`
undoes it for a post that fails before anything started.

Waiting for a result is process-wide (:mod:`wsp_async._completion.waits`), so a
``WSPGetOverlappedResult(fWait=True)`` wakes whichever provider completes the
structure: the door wakes the waiters of each structure it completes.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from .. import apc
from .._core.operation import SEND, Operation, PendingCount
from ..constants import STATUS_PENDING
from ..ntstatus import ntstatus_of
from ..structs import (
    operation_of,
    release_structure,
    write_result,
    write_results,
)
from ..trace import completion_record, post_record
from ..verifier import report_slow_routine
from .waits import WAITING, wake_all, wake_structure

__all__ = [
    "CompletionDoor",
    "RoutineLane",
    "isolated",
    "unclaim",
]

log = logging.getLogger("wsp_async")

Tracer = Callable[[Any], object]


def isolated(hook: Callable[..., object], *args: Any) -> None:
    """Call a hook that is not ours; a failure is reported (S6.7), never propagated."""
    try:
        hook(*args)
    except Exception as exc:
        apc.report(hook, exc)


def unclaim(op: Operation, saved: tuple[int, int]) -> None:
    """Undo a claim (``structs.claim_structure``) for a post that failed before anything
    started (S2.3)."""
    ov = op.overlapped
    if ov is not None and operation_of(ov) is op:
        release_structure(ov, saved)
        if WAITING.by_structure:
            wake_structure(ov)


class RoutineLane:
    """One socket's routines on their threads: never nested, in completion order (S6.4).

    The routine runs as the APC :meth:`run`.  A routine that enters an alertable
    wait lets the next APC of its thread run inside it; if that is another
    routine of the same socket, it is deferred until the running one returns.
    A routine that raises ``KeyboardInterrupt`` (or another ``BaseException``)
    lets it propagate, and the routines deferred behind it keep their turn: they
    run from a ``resume`` APC queued behind it, or first thing in the next
    routine of this socket on that thread, whichever comes first.
    """

    __slots__ = ("_backlog", "_running", "debug", "slow", "tracer")

    def __init__(self, debug: bool = False, slow: float = 0.05, tracer: Tracer | None = None):
        self._running: dict[int, collections.deque[Operation]] = {}
        self._backlog: dict[int, collections.deque[Operation]] = {}
        self.debug = debug
        self.slow = slow
        self.tracer = tracer

    def run(self, op: Operation) -> None:
        """The APC of one completed operation (on its routine's thread)."""
        self.run_many((op,))

    def run_many(self, ops: Sequence[Operation]) -> None:
        """The one APC of completed operations of this socket, in order (S6.4)."""
        ident = threading.get_ident()
        queue = self._running.get(ident)
        if queue is not None:
            queue.extend(ops)  # a routine of this socket runs below us on this thread
            return
        queue = self._backlog.pop(ident, None) if self._backlog else None
        if queue is None:
            queue = collections.deque(ops)
        else:
            queue.extend(ops)
        self._drain(ident, queue.popleft(), queue)

    def resume(self) -> None:
        """The APC queued behind an interrupted routine: run what it left deferred."""
        ident = threading.get_ident()
        if ident not in self._running:
            queue = self._backlog.pop(ident, None)
            if queue:
                self._drain(ident, queue.popleft(), queue)

    def _drain(self, ident: int, op: Operation, queue: collections.deque[Operation]) -> None:
        self._running[ident] = queue
        debug = self.debug
        try:
            while True:
                if debug:
                    self._timed(op)
                else:
                    routine = op.routine
                    try:
                        routine(op.status, op.transferred, op.overlapped, 0)  # type: ignore[misc]
                    except Exception as exc:
                        apc.report(routine, exc)  # S6.7
                if not queue:
                    break
                op = queue.popleft()
        except BaseException:
            if queue and op.thread is not None:
                self._backlog[ident] = queue
                op.thread.post(self.resume, ())
            raise
        finally:
            del self._running[ident]
            if WAITING.count:
                wake_all()  # a wait_until may be waiting for routines to run

    def _timed(self, op: Operation) -> None:
        """Run ``op``'s routine under the verifier (S12.3): one that blocks its loop longer
        than ``slow`` is reported."""
        routine = op.routine
        assert routine is not None
        started = time.perf_counter()
        try:
            routine(op.status, op.transferred, op.overlapped, 0)
        except Exception as exc:
            apc.report(routine, exc)  # S6.7
        took = time.perf_counter() - started
        if took > self.slow and apc.on_loop_thread():
            isolated(report_slow_routine, self.tracer, op, took, self.slow)


class CompletionDoor:
    """Completes operations exactly once and delivers their notices (see the module doc)."""

    __slots__ = ("tracer",)

    def __init__(self, tracer: Tracer | None = None) -> None:
        #: The S12.2 hook: one record per post and per completion.
        self.tracer = tracer

    def complete(self, op: Operation, status: int, nbytes: int) -> None:
        """Complete ``op`` with ``status`` and ``nbytes`` and issue its notice, once.

        The one exit from ``STATUS_PENDING`` for a single operation, then every notice in
        this order: its routine's APC, its event and its port's packet, its pending
        count, its listener, the result waiters, the tracer.  (One method rather than
        the three it was: a send completed inside its call from another thread -- every
        send of an IOCP server's -- passes here, issue 26.)"""
        if op.status != STATUS_PENDING:
            return
        op.status = status
        op.transferred = nbytes
        op.buffers = []  # drop our references to the caller's data
        ov = op.overlapped
        if ov is not None:
            # S2.5: Internal holds the NTSTATUS; the routine's dwError below is the
            # Winsock code, which ntstatus.wsa_of derives back from it unchanged.
            write_result(ov, ntstatus_of(status) if status else 0, nbytes, op.out_flags)
        if op.routine is not None and op.thread is not None:
            # S6.6: hEvent is the caller's; with a routine we never touch it.  A
            # target that is gone drops the APC, as the kernel does (S10.4).
            op.thread.post_joined(op.lane.run_many, op)
        # A routine's operation has no event of ours and no port (S6.6, S13.2).
        elif op.event is None and (link := op.port_link) is not None:
            # An IOCP server's every operation: its one packet (S13.2), queued here
            # rather than through _notify's general steps (issue 26).
            if not (op.in_call and not status and link.skip_on_success):
                nt = ntstatus_of(status) if status else 0
                link.port.queue((nbytes, link.key, ov, nt))
        elif op.event is not None or op.port_later is not None:
            self._notify(op, status, nbytes)  # an event, or a port associated later
        counter = op.counter
        if counter is not None:
            # Only now: a socket with nothing outstanding lets another thread's send
            # complete at once, and its notice must not overtake this one (S6.4).
            counter.remove(op)
        if op.listener is not None:
            _listen(op)
        if WAITING.count:
            wake_all()
        if WAITING.by_structure and ov is not None:
            wake_structure(ov)
        tracer = self.tracer
        if tracer is not None:
            isolated(tracer, completion_record(op))

    def _notify(self, op: Operation, status: int, nbytes: int) -> None:
        """The notices an operation may carry besides its routine and its listener: its
        event (S7.1), then its port's packet (S13.2).  Called only for an operation with
        an event or a port: a routine's operation, the common one, makes no call."""
        if op.routine is None and op.event is not None:
            op.event.set()  # S7.1
        link = op.port_link
        if link is None and op.port_later is not None:
            link = op.port_later.port_link  # associated after the post (S13.2)
        if link is not None and not (op.in_call and not status and link.skip_on_success):
            nt = ntstatus_of(status) if status else 0
            link.port.queue((nbytes, link.key, op.overlapped, nt))  # S13.2: one packet

    def _complete_many(self, done: Iterable[tuple[Operation, int, int]]) -> None:
        """Complete a batch of ``(op, status, nbytes)``: :meth:`_deliver` of what settles."""
        settled = []
        for op, status, nbytes in done:
            if op.status == STATUS_PENDING:
                op.status = status
                op.transferred = nbytes
                op.buffers = []  # drop our references to the caller's data
                settled.append(op)
        self._deliver(settled)

    def complete_ok(self, ops: Iterable[Operation]) -> None:
        """Complete sends that were consumed whole (S4.3); a TransmitFile whose file failed
        to read carries its code in ``fault``.  (The writer's every batch: settled here in
        one loop, without a ``(op, status, nbytes)`` per send.)"""
        settled = []
        for op in ops:
            if op.status == STATUS_PENDING:
                if op.fault:
                    op.status = op.fault
                    op.transferred = 0
                else:
                    op.status = 0
                    op.transferred = op.nbytes + op.direct
                op.buffers = []
                settled.append(op)
        self._deliver(settled)

    def complete_all(self, ops: Iterable[Operation], status: int) -> None:
        self._complete_many([(op, status, 0) for op in ops])

    def _deliver(self, ops: list[Operation]) -> None:
        """The notices of a settled batch: the same steps as :meth:`complete`, with the
        routines of consecutive operations bound for one thread's lane queued as ONE APC
        (``RoutineLane.run_many``) instead of one each -- and all of them queued before
        any operation of the batch leaves its pending count, as one by one they were.

        The steps that concern the batch as a whole (the pending counts, the waiters of
        ``WSPGetOverlappedResult``, the tracer's records) are taken once for it, after
        every operation's own notices; the routines and the counts are gathered in one
        loop over the batch, and the other notices (events, ports, listeners) take a
        second only when one of them has any: a batch of routine sends costs one pass
        (issue 26: six before, a fifth of a send's Python)."""
        if not ops:
            return
        write_results(ops)
        run: list[Operation] = []
        thread = lane = None
        others = False
        counter: PendingCount | None = None
        count = nbytes = sends = 0
        tallies: list[tuple[PendingCount, int, int, int]] = []
        for op in ops:
            if op.routine is not None and op.thread is not None:
                if op.thread is not thread or op.lane is not lane:
                    if run:
                        _post_routines(run)
                        run = []
                    thread, lane = op.thread, op.lane
                run.append(op)
            # A routine's operation has no event of ours and no port (S6.6, S13.2).
            elif op.event is not None or op.port_link is not None or op.port_later is not None:
                others = True
            if op.listener is not None:
                others = True
            held = op.counter
            if held is not None:
                op.counter = None
                if held is not counter:
                    if counter is not None:
                        tallies.append((counter, count, nbytes, sends))
                    counter, count, nbytes, sends = held, 0, 0, 0
                count += 1
                nbytes += op.nbytes
                sends += op.kind is SEND
        if run:
            _post_routines(run)
        if others:
            notify = self._notify
            for op in ops:
                if op.event is not None or op.port_link is not None or op.port_later is not None:
                    notify(op, op.status, op.transferred)
                if op.listener is not None:
                    _listen(op)
        # The pending counts drop once for the batch, after every notice of it: none of
        # them can be overtaken by another thread's send completing at once (S6.4).
        if counter is not None:
            tallies.append((counter, count, nbytes, sends))
        for held, count, nbytes, sends in tallies:
            held.uncount(count, nbytes, sends)
        if WAITING.count:
            wake_all()
        by_structure = WAITING.by_structure
        if by_structure:
            for op in ops:
                if op.overlapped in by_structure:
                    wake_structure(op.overlapped)
        tracer = self.tracer
        if tracer is not None:
            for op in ops:
                isolated(tracer, completion_record(op))

    def completions(self, done: list[tuple[Operation, int, int]]) -> None:
        """Complete what a receive queue matched: most often nothing or one receive, which
        take :meth:`complete`'s steps without a batch's loops (issue 23: a receive on the
        Proactor's thread, 10 frames of the door before, 6 now)."""
        if len(done) == 1:
            op, status, nbytes = done[0]
            self.complete(op, status, nbytes)
        elif done:
            self._complete_many(done)

    def posted(self, op: Operation) -> None:
        """Trace a post (S12.2) -- after the operation is consistent, isolated."""
        tracer = self.tracer
        if tracer is not None:
            isolated(tracer, post_record(op))


def _listen(op: Operation) -> None:
    """Call ``op``'s listener (ours: a blocked caller's wake-up, an asyncio future)."""
    try:
        op.listener(op)  # type: ignore[misc]
    except Exception:
        log.exception("completion listener %r failed", op.listener)


def _post_routines(ops: list[Operation]) -> None:
    """Queue the routines of ``ops`` (one thread, one lane) as one APC, or as the one
    APC of a single operation."""
    first = ops[0]
    thread, lane = first.thread, first.lane
    assert thread is not None and lane is not None
    if len(ops) == 1:
        thread.post(lane.run, (first,))
    else:
        thread.post(lane.run_many, (ops,))
