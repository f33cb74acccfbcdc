"""Taking operations back: CancelIoEx and CancelIo (S15), SIO_FLUSH (S10.3), a thread's
exit (S10.4), and the operations that pend outside the engine's queues (AcceptEx,
ConnectEx, DisconnectEx) so that a cancel finds them.

The boundary is the engine's (S10.3): what was handed on, even in part, completes
normally.  A cancel from another thread never waits for the loop (S15.2):
:meth:`Withdrawal.request_cancel` answers what that thread can decide alone and records
the rest.  :class:`Withdrawal` is part of :class:`~wsp_async._io.adapter.SocketAdapter`;
the attributes it names are the adapter's.
"""

from __future__ import annotations

import functools
import types
from collections.abc import Callable
from typing import TYPE_CHECKING

from .. import apc
from .._completion.door import CompletionDoor, isolated
from .._core.engine import ABORTED, SocketEngine
from .._core.operation import Operation
from ..structs import pending_operations
from .handoff import HandOff

__all__ = ["Withdrawal"]

#: The empty ``before_abort`` of a socket that never needed one (read-only: a hook is
#: added through :meth:`Withdrawal.before_aborting`, which makes the socket its own).
_NO_HOOKS: types.MappingProxyType[Operation, Callable[[], object]] = types.MappingProxyType({})


class Withdrawal:
    """Cancellation, flush and thread exit for one socket adapter."""

    engine: SocketEngine
    door: CompletionDoor
    handoff: HandOff
    on_loop_thread: Callable[[], bool]
    #: Pending operations that wait outside the engine's queues -- AcceptEx, ConnectEx,
    #: DisconnectEx (loop thread only) -- so that CancelIoEx finds them.  The class's
    #: empty tuple until the socket has one.
    elsewhere: list[Operation] = ()  # type: ignore[assignment]
    _prune_at: int
    #: What a cancel of one of those must do before it completes (an AcceptEx waiting
    #: for first data resets the connection it holds), so that the notice never comes
    #: before the state it reports (:meth:`before_aborting`).  The class's read-only
    #: empty mapping until the socket has one.
    before_abort: dict[Operation, Callable[[], object]] = _NO_HOOKS  # type: ignore[assignment]
    #: Cancels asked on another thread and not yet carried out on the loop (S15.2):
    #: appended there, removed here when each is carried out.
    cancels_due: list[Callable[[Operation], bool]]

    if TYPE_CHECKING:

        def take_incoming(self, quietly: bool = False) -> None: ...
        def pump(self) -> None: ...
        def stop_accepting(self) -> None: ...

    def flush(self) -> None:
        """SIO_FLUSH (S10.3): discard the sends not yet handed on; the socket stays usable."""
        self.take_incoming(quietly=True)
        self.door.complete_all(self.engine.flush(), ABORTED)
        self.pump()

    def cancel_issued_by(self, target: object) -> None:
        """S10.4: the issuing (or delivering) thread of some operations is gone."""
        self.take_incoming()
        self._aborted(self.engine.cancel_issued_by(target))

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
        if not elsewhere:
            self.elsewhere = [op]  # (the class's empty tuple, or a list emptied)
            return
        if len(elsewhere) >= self._prune_at:
            elsewhere[:] = [other for other in elsewhere if other.pending]
            self._prune_at = 2 * len(elsewhere) + 16
        elsewhere.append(op)

    def before_aborting(self, op: Operation, hook: Callable[[], object]) -> None:
        """Run ``hook`` before a cancel completes ``op`` (loop thread)."""
        if not self.before_abort:
            self.before_abort = {}
        self.before_abort[op] = hook

    def no_hook_for(self, op: Operation) -> None:
        """``op`` needs its :meth:`before_aborting` hook no more (loop thread)."""
        if self.before_abort:
            self.before_abort.pop(op, None)

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
            if not found:
                return -1  # nothing of this socket is pending: nothing for the loop
            which = _asked_now(which)
        self.cancels_due.append(which)
        try:
            self.handoff.call_on_loop(functools.partial(self._cancel_due, which))
        except RuntimeError:
            self.cancels_due.remove(which)
            return -1  # the loop is closed: nothing is pending any more
        return 0 if found else -1

    def _cancel_due(self, which: Callable[[Operation], bool]) -> None:
        """A cancel asked on another thread, carried out on the loop (unless
        :meth:`carry_out_cancels` did already)."""
        due = self.cancels_due
        for i, recorded in enumerate(due):
            if recorded is which:
                del due[i]
                self.cancel_where(which)
                return

    def carry_out_cancels(self) -> None:
        """Carry out now every cancel asked on another thread and still on its way here
        (loop thread), before the loop gives what just came -- bytes, the end of the
        stream, a reset, room in the send buffer -- to an operation.

        On Windows the cancel is done when ``CancelIoEx`` returns: what comes after can
        no longer complete the operation it cancelled, and goes to the next one.  Here it
        is carried out by the loop later (S15.2), and on uvloop a socket's readiness is
        handled before callbacks scheduled meanwhile, so bytes sent after the cancel
        returned would otherwise complete the cancelled receive."""
        due = self.cancels_due
        while due:
            self.cancel_where(due.pop(0))

    def cancel_where(self, which: Callable[[Operation], bool]) -> int:
        """CancelIoEx/CancelIo on the loop (S15.1): abort what ``which`` selects that is
        not handed on; the count aborted, or -1 when nothing pending matched at all.

        An extension function waiting for its connection is not handed on: it is
        aborted, and the task that serves it sees that and lets go."""
        self.take_incoming()
        removed = self.engine.cancel_where(which)
        if self.elsewhere:
            aside = self.withdraw_elsewhere(which)
            if aside:
                # A listener whose AcceptEx calls were cancelled stops waiting until
                # another is posted.
                self.stop_accepting()
            removed += aside
        self._aborted(removed)
        if removed:
            return len(removed)
        return 0 if self.engine.has_pending(which) else -1

    def withdraw_elsewhere(self, which: Callable[[Operation], bool]) -> list[Operation]:
        """The pending operations waiting outside the queues that ``which`` selects, each
        one's hook run (:meth:`before_aborting`): a cancel or a close completes them
        aborted next."""
        aside = [op for op in self.elsewhere if op.pending and which(op)]
        if self.before_abort:
            for op in aside:
                hook = self.before_abort.pop(op, None)
                if hook is not None:
                    isolated(hook)
        return aside

    def _aborted(self, removed: list[Operation]) -> None:
        """Complete withdrawn operations aborted, and let the sends behind them go."""
        self.door.complete_all(removed, ABORTED)
        if self.engine.stream:
            self.pump()


def _asked_now(which: Callable[[Operation], bool]) -> Callable[[Operation], bool]:
    """``which`` limited to what it selects now (any thread).

    A cancel of every operation (``CancelIoEx`` with no structure, ``CancelIo``) asked on
    another thread is carried out on the loop later (S15.2).  Without this limit it
    would also take what was posted after it returned -- the next receive of a program
    that cancels and posts again -- which Windows never cancels: its cancel is over
    when the call returns.  What it selects: the operations pending on a structure at
    this instant, and those without one (blocking calls, internal steps) except the
    calling thread's own -- that thread was in this call, so a blocking call of its is
    one it made after."""
    selected = {op for op in pending_operations() if which(op)}
    caller = apc.current_target()

    def asked_now(op: Operation) -> bool:
        if op.overlapped is None:
            return op.issuer is not caller and which(op)
        return op in selected

    return asked_now
