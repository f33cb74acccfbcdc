"""The data entry points: ``WSPSend``/``WSPSendTo``, ``WSPRecv``/``WSPRecvFrom`` and
``WSPGetOverlappedResult`` (SPEC S2-S11).  Bodies only: :mod:`wsp_async.provider`
wraps each in the S2 protocol.

A post walks the S9 table in the order a Windows provider meets its rows -- the
handle, the arguments, the overlapped contract, the flags, the socket's state
(the engine's rows), an injected fault -- and only then starts anything: the
``WSAOVERLAPPED`` is claimed, the post traced, and the operation handed to the
adapter (on the loop thread) or to the cross-thread hand-off.  A failure before
that point starts nothing and leaves the structure as it was (S2.3).
"""

from __future__ import annotations

import threading
from typing import Any

from . import apc
from ._adapter import SocketAdapter
from ._arguments import BOXES, capture, check_box, check_count_box, integer, sockaddr
from ._completion import isolated, unclaim, wait_result
from ._engine import SocketState
from ._operation import Operation, OpKind
from ._parts import Parts
from ._spi import PENDING
from .constants import MSG_OOB, STATUS_PENDING
from .errors import WSAErr, WSAError
from .events import WSAEVENT, wait_alertably
from .ntstatus import wsa_of
from .structs import (
    WSAOVERLAPPED,
    WSATHREADID,
    NoPortPacket,
    claim_structure,
    operation_of,
    result_flags,
    store,
)
from .verifier import remember, report_reused_overlapped, report_wait_with_routine

__all__ = ["Transfers"]

ABORTED = WSAErr.WSA_OPERATION_ABORTED


class Transfers:
    """Send, receive and result bodies over the provider's parts."""

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
    ) -> Operation | None:
        """Validate the overlapped arguments (S3, S6.1, S9): the operation, or None (S3.2)."""
        if lpOverlapped is None and lpCompletionRoutine is None:
            return None
        if type(lpOverlapped) is not WSAOVERLAPPED and not isinstance(lpOverlapped, WSAOVERLAPPED):
            raise WSAError(WSAErr.WSAEFAULT, "lpOverlapped is not a WSAOVERLAPPED")
        parts = self.parts
        here = threading.get_ident() == self.io.ident
        issuer = parts.loop_target if here else apc.current_target()
        event = None
        thread: apc.ApcTarget | None = None
        link = sock.port_link
        if lpCompletionRoutine is not None:
            if not callable(lpCompletionRoutine):
                raise WSAError(WSAErr.WSAEFAULT, "lpCompletionRoutine is not callable")
            if link is not None:
                # S13.2 (sock.c: test_WSARecv): a port, or routines, not both.
                raise WSAError(WSAErr.WSAEINVAL, "a completion routine on a port's socket")
            if lpThreadId is None:
                thread = issuer
            elif isinstance(lpThreadId, WSATHREADID):
                thread = lpThreadId.target
                if thread is None or not thread.alive:
                    raise WSAError(WSAErr.WSAEINVAL, "lpThreadId names no live thread")
                if thread is not issuer:
                    parts.threads.watch(thread)
            else:
                raise WSAError(WSAErr.WSAEFAULT, "lpThreadId is not a WSATHREADID")
        else:
            hevent = lpOverlapped.hEvent
            if link is not None and (
                isinstance(hevent, NoPortPacket) or (type(hevent) is int and hevent & 1)
            ):
                link = None  # the low bit of hEvent: no packet (S13.2)
                hevent = getattr(hevent, "event", None)
            event = hevent if isinstance(hevent, WSAEVENT) else None
        if issuer is not None and issuer not in parts.threads.watched:
            parts.threads.watch(issuer)
        op = Operation(
            kind,
            buffers,
            nbytes,
            lpOverlapped,
            lpCompletionRoutine,
            thread,
            event,
            issuer,
            flags,
            None,
            sock.handle,
            None,
            sock.lane,
        )
        if link is not None:
            op.port_link = link
        return op

    def _reused(self, sock: SocketAdapter) -> WSAError:
        """S3.4: the structure is pending for another operation (the verifier says so too)."""
        if self.parts.debug:
            isolated(report_reused_overlapped, self.door.tracer, sock.handle)
        return WSAError(WSAErr.WSAEINVAL, "this WSAOVERLAPPED is still pending (S3.4)")

    def _claim(self, sock: SocketAdapter, op: Operation) -> tuple[int, int]:
        """Claim ``op``'s structure (S3.4) and trace its post; what to restore on failure."""
        saved = claim_structure(op.overlapped, op)  # type: ignore[arg-type]
        if saved is None:
            raise self._reused(sock)
        if self.parts.debug and op.kind == OpKind.SEND:
            remember(op)
        if self.door.tracer is not None:
            self.door.posted(op)
        return saved

    def _start(self, sock: SocketAdapter, op: Operation, checked: bool) -> tuple[int, int]:
        """Count and claim ``op`` (S3.4, S9 limits), trace its post; what to restore on failure."""
        sock.engine.pending.add(op, checked)
        saved = claim_structure(op.overlapped, op)  # type: ignore[arg-type]
        if saved is None:
            sock.engine.pending.remove(op)
            raise self._reused(sock)
        if self.parts.debug and op.kind == OpKind.SEND:
            remember(op)
        self.door.posted(op)
        return saved

    def _undo(self, sock: SocketAdapter, op: Operation, saved: tuple[int, int]) -> None:
        sock.engine.pending.remove(op)
        unclaim(op, saved)

    # ------------------------------------------------------------------ sends
    def send(
        self,
        s: object,
        lpBuffers: object,
        dwBufferCount: object,
        lpNumberOfBytesSent: object,
        dwFlags: object,
        lpTo: object,
        lpOverlapped: object,
        lpCompletionRoutine: object,
        lpThreadId: object,
        coalesce: bool = True,
    ) -> Any:
        """The common send body (``lpTo`` None for WSPSend): 0, PENDING, or raises.

        ``coalesce=False`` (the asyncio face's sequential awaits) hands the send on
        at once instead of joining the end-of-iteration gather write.
        """
        parts = self.parts
        sock = parts.sockets.find(s) if type(s) is int else None
        if sock is None:
            sock = parts.sockets.get(s)
        buffers, total = capture(lpBuffers, dwBufferCount, False)
        engine = sock.engine
        flags = dwFlags if type(dwFlags) is int else integer(dwFlags, "dwFlags is not an int")
        op = self.overlapped(
            sock, OpKind.SEND, buffers, total, flags, lpOverlapped, lpCompletionRoutine, lpThreadId
        )
        if type(lpNumberOfBytesSent) not in BOXES:
            check_count_box(lpNumberOfBytesSent, op is not None)
        address = None
        if lpTo is not None and not engine.stream:
            address = sockaddr(engine.family, lpTo)
        if flags or not engine.send_ready:
            engine.check_send(flags, address, total)
        if address is not None and engine.state == SocketState.CREATED:
            parts.implicit_bind(sock)
        if parts.faulty:
            fault = parts.draw_fault(sock, "send")
            if fault is not None:
                if fault.at == "post" or op is None:
                    raise WSAError(fault.error, "injected")
                op.fault = fault.error
        if op is None or not engine.overlapped:
            sent = self._send_now(sock, buffers, total, flags, address)
            if op is not None:
                self._done_at_once(sock, op, sent)
            store(lpNumberOfBytesSent, sent)
            return 0
        if address is not None:
            op.address = address
        if flags & MSG_OOB:
            op.urgent = True
        if engine.stream and threading.get_ident() == self.io.ident:
            # Completions happen on this very thread: count the op only if it is
            # still pending after the post, so a send done at once skips the lock.
            engine.pending.check(total)
            if claim_structure(lpOverlapped, op) is None:  # type: ignore[arg-type]
                raise self._reused(sock)
            if parts.debug:
                remember(op)
            if self.door.tracer is not None:
                self.door.posted(op)
            op.in_call = True  # a completion inside post_here is this call's (S13.3)
            done = sock.post_here(op, coalesce)
            op.in_call = False
            if done:
                store(lpNumberOfBytesSent, op.transferred)
                return 0 if op.status == 0 else PENDING
            engine.pending.add(op, checked=True)
            return PENDING
        if (
            engine.stream
            and total
            and not engine.pending.count  # nothing outstanding whose notice it could overtake
            and not op.urgent
            and not op.fault
            and not parts.debug
        ):
            # Another thread's send that fits completes at once, as on Windows (S2.1; its
            # routine is only queued, S6.2): a small one is copied into the emulated send
            # buffer, a large one goes straight to the kernel when nothing is queued.
            engine.pending.check(total)
            saved = self._claim(sock, op)
            try:
                if sock.send_staged(op):
                    done = True
                else:
                    done = sock.send_direct(op, engine.pending.add_checked)
            except WSAError:
                self._undo(sock, op, saved)
                raise
            if not done:
                return PENDING  # the rest is queued; never read a racing status (S2.2)
            op.in_call = True
            self.door.complete(op, 0, total)
            store(lpNumberOfBytesSent, total)
            return 0
        saved = self._start(sock, op, checked=False)
        if engine.stream:
            try:
                sock.post_foreign(op)
            except WSAError:
                self._undo(sock, op, saved)
                raise
            # Pending by construction: the loop may already have completed it,
            # but reading op.status now would race with it (S2.2).
            return PENDING
        if op.fault:
            self.door.complete(op, op.fault, 0)  # an injected completion-time fault
            return PENDING
        try:
            code = sock.send_datagram(op)
        except WSAError:
            self._undo(sock, op, saved)
            raise
        if code:
            self._undo(sock, op, saved)
            raise WSAError(code)
        if code is None:
            return PENDING  # queued behind an EAGAIN
        op.in_call = True
        self.door.complete(op, 0, total)
        store(lpNumberOfBytesSent, total)
        return 0

    def _send_now(
        self, sock: SocketAdapter, buffers: list[Any], total: int, flags: int, address: Any
    ) -> int:
        """Non-overlapped send (S8): blocking returns when consumed; non-blocking is all or nothing."""
        op = Operation(OpKind.SEND, buffers, total, None, None, None, None, None, flags, address)
        op.handle = sock.handle
        if flags & MSG_OOB:
            op.urgent = True
        engine = sock.engine
        me = threading.get_ident()
        here = me == self.io.ident
        if not engine.stream:
            if engine.nonblocking or here:
                # On the loop thread a datagram that cannot go at once must not
                # be queued either: that thread may not wait for it (S7.3).
                return sock.send_datagram_nonblocking(op)
            _prepare_wait(op)
            code = sock.send_datagram(op)
            if code is None:
                op.listener.wait()  # type: ignore[union-attr]
                code = op.status
            if code:
                raise WSAError(code)
            return total
        if engine.nonblocking:
            return self.io.call(sock.send_nonblocking, buffers, total)
        sock.handoff.enter_blocking(me)
        try:
            if here:
                sendq = engine.sendq
                if sock.handoff or not sendq.idle or sendq.buffered + total > engine.capacity:
                    raise self.io.refuse_blocking(
                        "a blocking send that does not fit the send buffer"
                    )
                sock.post_here(op, coalesce=False)
            else:
                if total and not op.urgent and not self.parts.debug:
                    if sock.send_direct(op, _prepare_wait):
                        return total
                else:
                    _prepare_wait(op)
                    sock.post_foreign(op)
                op.listener.wait()  # type: ignore[union-attr]
            if op.status == ABORTED:
                raise WSAError(WSAErr.WSAEINTR, "the socket was closed during a blocking send")
            if op.status:
                raise WSAError(op.status)
            return total
        finally:
            sock.handoff.leave_blocking()

    # ------------------------------------------------------------------ receives
    def recv(
        self,
        s: object,
        lpBuffers: object,
        dwBufferCount: object,
        lpNumberOfBytesRecvd: object,
        lpFlags: object,
        lpFrom: object,
        lpOverlapped: object,
        lpCompletionRoutine: object,
        lpThreadId: object,
    ) -> Any:
        """The common receive body (S11.1): 0, PENDING, or raises."""
        sock = self.parts.sockets.get(s)
        check_box(lpFrom, "lpFrom")
        buffers, total = capture(lpBuffers, dwBufferCount, True)
        check_box(lpFlags, "lpFlags", optional=False)
        flags = integer(lpFlags.value, "lpFlags holds no int")  # type: ignore[attr-defined]
        op = self.overlapped(
            sock, OpKind.RECV, buffers, total, flags, lpOverlapped, lpCompletionRoutine, lpThreadId
        )
        check_count_box(lpNumberOfBytesRecvd, op is not None)
        sock.engine.check_recv(flags, len(buffers))
        if self.parts.faulty:
            fault = self.parts.draw_fault(sock, "recv")
            if fault is not None:
                if fault.at == "post" or op is None:
                    raise WSAError(fault.error, "injected")
                op.fault = fault.error
        if op is None or not sock.engine.overlapped:
            n = self._recv_now(sock, buffers, total, flags, lpFlags, lpFrom)
            if op is not None:
                self._done_at_once(sock, op, n)
            store(lpNumberOfBytesRecvd, n)
            return 0
        if lpFrom is not None:
            op.listener = lambda done: store(lpFrom, done.source)
        saved = self._start(sock, op, checked=False)
        if not self.io.here():
            if not (sock.engine.receiver.available() and not sock.handoff):
                try:
                    sock.post_foreign(op)
                except WSAError:
                    self._undo(sock, op, saved)
                    raise
                return PENDING  # as for sends: never read a racing status
            # Data is already there: the receive completes at once, as on Windows
            # (one round trip to the loop that owns the received bytes).
            self.io.call(_receive_in_call, sock, op)
        else:
            _receive_in_call(sock, op)
        if op.status == 0:
            store(lpNumberOfBytesRecvd, op.transferred)
            store(lpFlags, op.out_flags)
            return 0
        return PENDING

    def _recv_now(
        self,
        sock: SocketAdapter,
        buffers: list[Any],
        total: int,
        flags: int,
        lpFlags: object,
        lpFrom: object,
    ) -> int:
        """A non-overlapped receive (S11.1 over S8): the bytes received, or raises."""
        op = Operation(OpKind.RECV, buffers, total, flags=flags, handle=sock.handle)
        if self.io.here() or sock.engine.nonblocking:
            result = self.io.call(sock.receive_nowait, op)
            if result is None:
                raise WSAError(WSAErr.WSAEWOULDBLOCK)
            status, n = result
        else:
            _prepare_wait(op)
            sock.post_foreign(op)
            op.listener.wait()  # type: ignore[union-attr]
            status, n = op.status, op.transferred
            if status == ABORTED:
                status = WSAErr.WSAEINTR
        store(lpFrom, op.source)
        store(lpFlags, op.out_flags)
        if status:
            raise WSAError(status)
        return n

    def _done_at_once(self, sock: SocketAdapter, op: Operation, nbytes: int) -> None:
        """S3.3: an overlapped call on a socket made without WSA_FLAG_OVERLAPPED ran as a
        blocking call; its structure (and event, or routine) completes as well."""
        self._claim(sock, op)
        op.in_call = True
        self.door.complete(op, 0, nbytes)

    def complete_request(
        self, s: object, lpOverlapped: object, dwError: object, cbTransferred: object
    ) -> int:
        """WPUCompleteOverlappedRequest (S13.9): a layered provider completes a request
        of its own through the same door -- the socket's port if it has one, else the event."""
        sock = self.parts.sockets.get(s)
        if not isinstance(lpOverlapped, WSAOVERLAPPED):
            raise WSAError(WSAErr.WSAEFAULT, "lpOverlapped is not a WSAOVERLAPPED")
        code = integer(dwError, "dwError is not a code")
        nbytes = integer(cbTransferred, "cbTransferred is not a count")
        hevent = lpOverlapped.hEvent
        link = sock.port_link
        if isinstance(hevent, NoPortPacket) or (type(hevent) is int and hevent & 1):
            link = None
            hevent = getattr(hevent, "event", None)
        op = Operation(OpKind.IOCTL, [], 0, lpOverlapped, handle=sock.handle)
        op.event = hevent if isinstance(hevent, WSAEVENT) else None
        op.port_link = link
        self._claim(sock, op)
        self.door.complete(op, code, nbytes)
        return 0

    # ------------------------------------------------------------------ results
    def result(
        self,
        s: object,
        lpOverlapped: object,
        lpcbTransfer: object,
        fWait: object,
        lpdwFlags: object,
    ) -> bool:
        """The result of an overlapped operation (S7.2); ``fWait`` blocks until it completes.

        It reads the structure, as Windows does (S2.5): pending is
        ``Internal == STATUS_PENDING``, whoever made the structure.  Waiting works
        for a structure any provider completes.
        """
        sock = self.parts.sockets.find(s) if type(s) is int else None
        if sock is None:
            sock = self.parts.sockets.get(s)
        if not isinstance(lpOverlapped, WSAOVERLAPPED):
            raise WSAError(WSAErr.WSAEFAULT, "lpOverlapped is not a WSAOVERLAPPED")
        if type(lpcbTransfer) not in BOXES:
            check_box(lpcbTransfer, "lpcbTransfer", optional=False)
        if type(lpdwFlags) not in BOXES:
            check_box(lpdwFlags, "lpdwFlags")
        status = lpOverlapped.Internal
        if status == STATUS_PENDING:
            op = operation_of(lpOverlapped)
            if not fWait or op is None:
                raise WSAError(WSAErr.WSA_IO_INCOMPLETE)
            if op.routine is not None and self.parts.debug:
                isolated(report_wait_with_routine, self.door.tracer, sock.handle)
            if self.io.here():
                raise self.io.refuse_blocking("WSPGetOverlappedResult(fWait=True)")
            wait_result(lpOverlapped)
            status = lpOverlapped.Internal
        if type(lpcbTransfer) in BOXES:
            lpcbTransfer.value = lpOverlapped.InternalHigh  # type: ignore[attr-defined]
        else:
            store(lpcbTransfer, lpOverlapped.InternalHigh)
        if lpdwFlags is not None:
            store(lpdwFlags, result_flags(lpOverlapped))
        if status:
            raise WSAError(wsa_of(status))  # S2.5: derived from the NTSTATUS
        return True


def _receive_in_call(sock: SocketAdapter, op: Operation) -> None:
    """Post a receive on the loop thread; a completion inside it is the call's (S13.3)."""
    op.in_call = True
    sock.post_receive(op)
    op.in_call = False


class _Wait:
    """A blocking caller's wait for its operation; the completion door calls it.

    The wait is alertable, as a blocking Winsock call is (S6.3): APCs queued to the
    waiting thread run during it, and then it goes on waiting for its own result.
    """

    __slots__ = ("completed", "signal")

    def __init__(self) -> None:
        self.completed = False
        self.signal = threading.Event()

    def __call__(self, _op: Operation) -> None:
        self.completed = True
        self.signal.set()

    def wait(self) -> None:
        wait_alertably(lambda: self.completed, self.signal)


def _prepare_wait(op: Operation) -> None:
    """Hook a wait on ``op`` -- only a blocking send that must wait pays for one."""
    op.listener = _Wait()
    op.issuer = apc.current_target()
