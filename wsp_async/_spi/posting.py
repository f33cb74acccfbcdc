"""The overlapped contract of every post (SPEC S3, S6.1, S9, S13.2): validating the
overlapped arguments, building the operation record, claiming its structure, and the
blocking caller's alertable wait.  Shared by :mod:`wsp_async._spi.sends`,
:mod:`wsp_async._spi.receives` and :mod:`wsp_async._spi.control`.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

from .. import apc
from .._completion.door import isolated, unclaim
from .._core.operation import Operation, OpKind
from .._io.adapter import SocketAdapter
from ..constants import STATUS_PENDING
from ..errors import WSAErr, WSAError
from ..events import WSAEVENT, wait_alertably
from ..structs import (
    WSAOVERLAPPED,
    WSATHREADID,
    NoPortPacket,
    claim_structure,
)
from ..verifier import remember, report_reused_overlapped
from .parts import Parts

__all__ = ["Posting", "prepare_wait", "run_internal"]

ABORTED = WSAErr.WSA_OPERATION_ABORTED
_new = object.__new__


class Posting:
    """Turns a post's overlapped arguments into a started operation, or an S9 error."""

    def __init__(self, parts: Parts) -> None:
        self.parts = parts
        self.io = parts.io
        self.door = parts.door

    # ------------------------------------------------------------------ the overlapped contract
    def overlapped(
        self,
        sock: SocketAdapter,
        kind: OpKind,
        buffers: list[Any],
        nbytes: int,
        flags: int,
        lpOverlapped: object,
        lpCompletionRoutine: object,
        lpThreadId: object,
        here: bool | None = None,
        late_issuer: bool = False,
    ) -> Operation | None:
        """Validate the overlapped arguments (S3, S6.1, S9): the operation, or None (S3.2).

        ``here``: whether the caller runs on the loop's thread, when it knows already.
        ``late_issuer``: the caller names the issuing thread itself (:meth:`issued`) if the
        operation is still pending when its call returns -- another thread's stream send
        usually is not, and then nothing ever asks which thread that was (issue 26: a
        twentieth of an IOCP server's send).  Not with a routine, whose thread it may be,
        nor while anything watches every post."""
        if lpOverlapped is None and lpCompletionRoutine is None:
            return None
        if type(lpOverlapped) is not WSAOVERLAPPED and not isinstance(lpOverlapped, WSAOVERLAPPED):
            raise WSAError(WSAErr.WSAEFAULT, "lpOverlapped is not a WSAOVERLAPPED")
        parts = self.parts
        if here is None:
            here = threading.get_ident() == self.io.ident
        if here:
            issuer: apc.ApcTarget | None = parts.loop_target
        elif late_issuer and lpCompletionRoutine is None and not self.watched():
            issuer = None
        else:
            issuer = apc.current_target()
        event = None
        thread: apc.ApcTarget | None = None
        link = sock.port_link
        later = None
        if lpCompletionRoutine is not None:
            if not callable(lpCompletionRoutine):
                raise WSAError(WSAErr.WSAEFAULT, "lpCompletionRoutine is not callable")
            if link is not None:
                # S13.2 (sock.c: test_WSARecv): a port, or routines, not both.
                raise WSAError(WSAErr.WSAEINVAL, "a completion routine on a port's socket")
            if lpThreadId is None:
                thread = issuer
            elif type(lpThreadId) is WSATHREADID or isinstance(lpThreadId, WSATHREADID):
                thread = lpThreadId.target
                if thread is None or not thread.alive:
                    raise WSAError(WSAErr.WSAEINVAL, "lpThreadId names no live thread")
                if thread is not issuer:
                    parts.threads.watch(thread)
            else:
                raise WSAError(WSAErr.WSAEFAULT, "lpThreadId is not a WSATHREADID")
        else:
            hevent = lpOverlapped.hEvent
            packet = True
            if hevent is not None:  # (most structures have none: no checks of it then)
                if isinstance(hevent, NoPortPacket):
                    # The low bit of hEvent: no packet (S13.2), but the event is still set
                    # (S7.1) -- whether or not the socket has a port.
                    packet = False
                    hevent = hevent.event
                elif type(hevent) is int and hevent & 1:
                    packet = False
                event = hevent if isinstance(hevent, WSAEVENT) else None
            if not packet:
                link = None
            elif link is None:
                later = sock  # a port associated before it completes gets the packet
        # S10.4: a thread's exit cancels what it issued, so the issuer is watched -- but
        # not the loop's own thread, whose end closes the provider anyway (and whose
        # posts are the hot path: a set lookup each, issue 26).
        if not here and issuer is not None and issuer not in parts.threads.watched:
            parts.threads.watch(issuer)
        # The record, written here rather than made by calling the class: a class whose
        # ``__init__`` is Python is called from C (``type.__call__``, then the ``__init__``
        # slot), which CPython 3.11 cannot run inline (235 ns a post against 150), and a
        # helper writing these fields was one more frame of 13 arguments (3-5% of a
        # loop-thread send, issue 26, ``benchmarks/README.md``).  The fields are
        # ``Operation.__init__``'s, in its order; ``tests/test_operation_record.py``
        # holds the two to the same record.
        op = _new(Operation)
        op.kind = kind
        op.buffers = buffers
        op.nbytes = nbytes
        op.overlapped = lpOverlapped
        op.routine = lpCompletionRoutine
        op.thread = thread
        op.event = event
        op.issuer = issuer
        op.flags = flags
        op.address = None
        op.handle = sock.handle
        op.listener = None
        op.lane = sock.lane
        op.status = STATUS_PENDING
        op.port_link = link
        op.port_later = later
        op.in_call = False
        op.urgent = False
        op.end = 0
        op.direct = 0
        op.parts = None
        op.transferred = 0
        op.out_flags = 0
        op.source = None
        op.fault = 0
        op.counter = None
        op.checksum = None
        return op

    def watched(self) -> bool:
        """The verifier or a tracer sees every post (S12.2, S12.3)."""
        return self.parts.debug or self.door.tracer is not None

    def issued(self, op: Operation) -> None:
        """Name the thread that issued ``op``, left unnamed by ``late_issuer``, now that
        it is pending (S10.4: that thread's exit cancels it; ``CancelIo`` there too).
        Called on that thread before its call returns, so no cancel of its own can miss
        it, and no exit."""
        issuer = op.issuer = apc.current_target()
        if issuer not in self.parts.threads.watched:
            self.parts.threads.watch(issuer)

    def reused(self, sock: SocketAdapter) -> WSAError:
        """S3.4: the structure is pending for another operation (the verifier says so too)."""
        if self.parts.debug:
            isolated(report_reused_overlapped, self.door.tracer, sock.handle)
        return WSAError(WSAErr.WSAEINVAL, "this WSAOVERLAPPED is still pending (S3.4)")

    def claim(self, sock: SocketAdapter, op: Operation) -> tuple[int, int]:
        """Claim ``op``'s structure (S3.4) and trace its post; what to restore on failure."""
        saved = claim_structure(op.overlapped, op)  # type: ignore[arg-type]
        if saved is None:
            raise self.reused(sock)
        if self.parts.debug or self.door.tracer is not None:
            self.traced(op)
        return saved

    def traced(self, op: Operation) -> None:
        """A claimed post, seen by the verifier (S12.3) and the tracer (S12.2)."""
        if self.parts.debug and op.kind == OpKind.SEND:
            remember(op)
        if self.door.tracer is not None:
            self.door.posted(op)

    def start(self, sock: SocketAdapter, op: Operation, checked: bool) -> tuple[int, int]:
        """Count and claim ``op`` (S3.4, S9 limits), trace its post; what to restore on failure."""
        sock.engine.pending.add(op, checked)
        saved = claim_structure(op.overlapped, op)  # type: ignore[arg-type]
        if saved is None:
            sock.engine.pending.remove(op)
            raise self.reused(sock)
        if self.parts.debug or self.door.tracer is not None:
            self.traced(op)
        return saved

    def undo(self, sock: SocketAdapter, op: Operation, saved: tuple[int, int]) -> None:
        sock.engine.pending.remove(op)
        unclaim(op, saved)

    def done_at_once(self, sock: SocketAdapter, op: Operation, nbytes: int) -> None:
        """S3.3: an overlapped call on a socket made without WSA_FLAG_OVERLAPPED ran as a
        blocking call; its structure (and event, or routine) completes as well."""
        self.claim(sock, op)
        op.in_call = True
        self.door.complete(op, 0, nbytes)


class _Wait:
    """A blocking caller's wait for its operation; the completion door calls it.

    The wait is alertable, as a blocking Winsock call is (S6.3): APCs queued to the
    waiting thread run during it, and then it goes on waiting for its own result.
    """

    __slots__ = ("completed", "signal")

    def __init__(self) -> None:
        self.completed = False
        self.signal = apc.Wakeup()

    def __call__(self, _op: Operation) -> None:
        self.completed = True
        self.signal.set()

    def wait(self) -> None:
        wait_alertably(lambda: self.completed, self.signal)


async def run_internal(
    loop: asyncio.AbstractEventLoop,
    sock: SocketAdapter,
    op: Operation,
    post: Callable[[Operation], object],
) -> Operation:
    """Post ``op``, an extension function's own operation (DisconnectEx's marker behind
    the sends, ConnectEx's first data, AcceptEx's first receive), with ``post`` on the
    loop, and wait for it there: the one await of the extension functions.  The caller
    reads its ``status`` and ``transferred``.  No structure, no routine: it reaches the
    program only through the operation it belongs to.

    On a socket closed since the extension function began, ``op`` is aborted without
    being posted: a closed socket takes nothing in, so it would wait for ever, and the
    operation it belongs to with it (S10.2, S2.4).  A close after the post aborts it
    like any pending operation."""
    if sock.closed:
        op.status = ABORTED
        return op
    done: asyncio.Future[None] = loop.create_future()

    def settled(_op: Operation) -> None:
        if not done.done():
            done.set_result(None)

    op.listener = settled
    post(op)
    await done
    return op


def prepare_wait(op: Operation) -> None:
    """Hook a wait on ``op`` -- only a blocking send that must wait pays for one."""
    op.listener = _Wait()
    op.issuer = apc.current_target()
