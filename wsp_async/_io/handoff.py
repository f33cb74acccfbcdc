"""The cross-thread hand-off of one socket: how posts made on other threads reach its loop.

Rules of this module:

* ``lock`` guards everything here.  The order in which posts enter ``incoming``
  under it is the order their bytes go out (S5.3).
* One wake-up of the loop drains everything queued since the last drain
  (``scheduled``), so a burst of foreign posts costs one ``call_soon_threadsafe``.
* ``front`` is the rest of a blocking send that went straight to the kernel and
  was taken only in part: it goes before every send posted meanwhile, so no
  other bytes land inside it.
* Once ``closed`` is set (under the lock) nothing more enters: a post fails with
  ``WSAENOTSOCK`` before it starts, and whatever entered before is taken by the
  close, exactly once.
"""

from __future__ import annotations

import collections
import threading
from collections.abc import Callable

from .._core.operation import SEND, Operation, OpKind
from ..errors import WSAErr, WSAError

__all__ = ["HandOff"]


class HandOff:
    """Posts on their way from other threads to one socket's I/O loop.

    ``post``, ``put_front`` and staging (``foreign_sends``) take ``lock`` with ``acquire``
    and ``release``, as every path taken once per operation does (a third of the cost
    of ``with`` on CPython 3.11, issue 26).
    """

    __slots__ = (
        "_drain",
        "_parks",
        "_refuse",
        "blocking_owner",
        "busy",
        "call_on_loop",
        "closed",
        "foreign_writes",
        "front",
        "incoming",
        "lock",
        "pending_posts",
        "scheduled",
        "sends",
        "staged",
    )

    def __init__(
        self,
        wake: Callable[[Callable[[], object]], object],
        drain: Callable[[], object],
        refuse: Callable[[Operation], int],
        parks: Callable[[Operation], bool],
    ) -> None:
        self.lock = threading.Lock()
        self.incoming: collections.deque[Operation] = collections.deque()
        self.front: Operation | None = None
        self.closed = False
        #: ``incoming``, ``front`` or ``closed``: a send on the loop thread cannot go at
        #: once (:func:`~wsp_async._core.admission.admit_here` reads this one flag).
        #: Written under ``lock``, with the three it sums up.
        self.busy = False
        self.scheduled = False
        #: Bytes of sends copied into ``incoming`` that the loop has not taken yet.
        self.staged = 0
        #: Operations in ``incoming`` that are still pending: nothing after them may
        #: complete at once, or completions would overtake posting order (S6.4).
        self.pending_posts = 0
        #: Of those, the sends (bytes and their notices keep posting order; a receive
        #: waiting here orders nothing against a send).
        self.sends = 0
        #: Another thread's send has reached the loop: from now on other threads may
        #: write straight to the kernel (``_io.writer.send_direct``), so the loop thread
        #: writes only under ``write_lock`` and the face holds nothing (set on the loop).
        self.foreign_writes = False
        #: Thread ident of a blocking call in progress (WSAEINPROGRESS).
        self.blocking_owner: int | None = None
        #: Schedules a call on the I/O loop from any thread (``call_soon_threadsafe``).
        self.call_on_loop = wake
        self._drain = drain
        #: The S9 code that refuses ``op`` at the door (0: none), read under the lock.
        self._refuse = refuse
        #: Whether a receive ``op``, once queued, may wait here without waking the loop:
        #: the loop looks here by itself before it could complete (asked under the lock,
        #: after ``op`` is queued; see ``SocketAdapter.park_foreign``).
        self._parks = parks

    def refusal(self, op: Operation) -> int:
        """The code that refuses ``op`` now (0: none): ``WSAENOTSOCK`` once closed, else the
        socket's S9 rows as they read now.  Asked under ``lock`` as another thread's post
        enters, and on the loop by a post that went there another way (a receive that
        found bytes waiting): a post racing a close, a shutdown, the loss of the
        connection or a ``DisconnectEx`` either came first or fails as a post made after
        it does, never waiting where nothing will serve it (S2.4)."""
        return WSAErr.WSAENOTSOCK if self.closed else self._refuse(op)

    def __bool__(self) -> bool:
        """Something waits for the loop to take it."""
        return bool(self.incoming) or self.front is not None

    def post(self, op: Operation, may_park: bool = False) -> None:
        """Queue ``op`` for the loop, in arrival order; raises when it may not enter.

        ``may_park``: a receive that need not wake the loop if ``parks`` says so.
        """
        lock = self.lock
        lock.acquire()
        try:
            code = self.refusal(op)
            if code:
                raise WSAError(code)
            self.incoming.append(op)
            self.busy = True
            self.pending_posts += 1
            if op.kind == OpKind.SEND:
                self.sends += 1
            if self.scheduled or (may_park and self._parks(op)):
                return
            self.scheduled = True
        finally:
            lock.release()
        self.call_on_loop(self._drain)

    def put_front(self, op: Operation) -> bool:
        """Queue the rest of a partly written send before everything else; False if closed."""
        lock = self.lock
        lock.acquire()
        try:
            if self.closed:
                return False
            self.front = op
            self.busy = True
            if self.scheduled:
                return True
            self.scheduled = True
        finally:
            lock.release()
        self.call_on_loop(self._drain)
        return True

    def append_locked(self, op: Operation) -> bool:
        """With ``lock`` held: queue ``op`` (a datagram send) for the loop; True when the
        caller must :meth:`wake` it."""
        self.incoming.append(op)
        self.busy = True
        self.pending_posts += 1
        return self.schedule_locked()

    def stage_locked(
        self, data: object, nbytes: int, record: Callable[[list[object], int], Operation]
    ) -> bool:
        """With ``lock`` held: ``data``, a send already complete, for the loop (STAGE);
        True when the caller must :meth:`wake` it.

        Joined to the last thing waiting when that is such a record too, or a new one
        made by ``record(buffers, nbytes)``: a burst of small sends from one thread
        reaches the loop as one record, which it moves and writes as one."""
        incoming = self.incoming
        tail = incoming[-1] if incoming else None
        if tail is not None and tail.kind is SEND and not tail.status:
            tail.buffers.append(data)
            tail.nbytes += nbytes
        else:
            incoming.append(record([data], nbytes))
            self.busy = True
        self.staged += nbytes
        if self.scheduled:
            return False  # a drain is due already: every send of a burst but its first
        return self.schedule_locked()

    def schedule_locked(self) -> bool:
        """With ``lock`` held: mark a drain due; True when the caller must wake the loop."""
        if self.scheduled:
            return False
        self.scheduled = True
        return True

    def wake(self) -> None:
        self.call_on_loop(self._drain)

    def take_locked(self) -> tuple[Operation | None, collections.deque[Operation]]:
        """With ``lock`` held: everything waiting, the front send, then the posts in order."""
        batch, self.incoming = self.incoming, collections.deque()
        front, self.front = self.front, None
        self.busy = self.closed
        self.scheduled = False
        self.staged = 0
        self.pending_posts = 0
        self.sends = 0
        return front, batch

    def take_front(self) -> Operation | None:
        with self.lock:
            op, self.front = self.front, None
            self.busy = self.closed or bool(self.incoming)
        return op

    def withdraw(self, which: Callable[[Operation], bool]) -> list[Operation]:
        """Take back the pending posts ``which`` selects that the loop has not taken yet.

        CancelIoEx from another thread (S15.2): a post still waiting here has done no
        I/O, so the caller may abort it itself, at once, without the loop.  The partly
        written send at the front has started and is left to the loop."""
        with self.lock:
            if not self.pending_posts:
                return []
            taken = [op for op in self.incoming if op.pending and which(op)]
            if not taken:
                return []
            chosen = set(map(id, taken))
            self.incoming = collections.deque(op for op in self.incoming if id(op) not in chosen)
            self.busy = self.closed or bool(self.incoming) or self.front is not None
            self.pending_posts -= len(taken)
            # (A datagram send queued here is not counted in ``sends``: hence the floor.)
            self.sends = max(0, self.sends - sum(op.kind == OpKind.SEND for op in taken))
            return taken

    def close(self) -> None:
        with self.lock:
            self.closed = self.busy = True

    def enter_blocking(self, ident: int) -> None:
        """A blocking call starts on thread ``ident``; one per socket at a time (S9)."""
        with self.lock:
            if self.blocking_owner is not None and self.blocking_owner != ident:
                raise WSAError(WSAErr.WSAEINPROGRESS)
            self.blocking_owner = ident

    def leave_blocking(self) -> None:
        self.blocking_owner = None
