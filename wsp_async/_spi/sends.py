"""``WSPSend`` and ``WSPSendTo`` (SPEC S2-S10): bodies only; :mod:`wsp_async.provider`
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
from threading import get_ident
from typing import Any

from .._core.arguments import BOXES, capture, check_count_box, integer, sockaddr
from .._core.engine import SocketState
from .._core.operation import SEND, Operation
from .._io.adapter import SocketAdapter
from .._io.foreign_sends import send_other
from ..constants import MSG_OOB, STATUS_PENDING
from ..errors import WSAErr, WSAError
from ..structs import WSABUF, store, tie_structure
from .entry import PENDING
from .parts import Parts
from .posting import Posting, prepare_wait

__all__ = ["Sends"]


ABORTED = WSAErr.WSA_OPERATION_ABORTED


class Sends:
    """Send bodies over the provider's parts and the shared overlapped contract."""

    def __init__(self, parts: Parts, posting: Posting) -> None:
        self.parts = parts
        self.io = parts.io
        self.door = parts.door
        self.posting = posting
        # Read by every send: bound once (their lookups were a fiftieth of a send).
        self.find = parts.sockets.find
        self.overlapped = posting.overlapped

    # ------------------------------------------------------------------ sends
    def send(
        self,
        s: object,
        lpBuffers: object,
        dwBufferCount: object,
        lpNumberOfBytesSent: object,
        dwFlags: object,
        lpOverlapped: object,
        lpCompletionRoutine: object,
        lpThreadId: object,
        lpErrno: object = None,
        lpTo: object = None,
        coalesce: bool = True,
    ) -> Any:
        """The common send body (``lpTo`` None for WSPSend): 0, PENDING, or raises.

        Its parameters begin as ``WSPSend``'s, so that a provider's ``WSPSend`` is this
        method behind the S2 wrapper (``entry.direct_entry``); ``lpErrno`` is the wrapper's.

        ``coalesce=False`` (the asyncio face's sequential awaits) hands the send on
        at once instead of joining the end-of-iteration gather write.
        """
        sock = self.find(s) if type(s) is int else None
        if sock is None:
            sock = self.parts.sockets.get(s)
        if (
            type(lpBuffers) is list
            and type(dwBufferCount) is int
            and dwBufferCount == 1 == len(lpBuffers)
            and type(entry := lpBuffers[0]) is WSABUF
            and type(data := entry.buf) is bytes
            and type(total := entry.len) is int
            and total == len(data)
        ):
            # The common send, one WSABUF of a whole ``bytes``: what capture (S5.1)
            # would conclude, read without the call (issue 26: a twelfth of a send).
            buffers = [data]
        else:
            buffers, total = capture(lpBuffers, dwBufferCount, False)
        engine = sock.engine
        flags = dwFlags if type(dwFlags) is int else integer(dwFlags, "dwFlags is not an int")
        here = get_ident() == self.io.ident
        op = self.overlapped(
            sock, SEND, buffers, total, flags, lpOverlapped, lpCompletionRoutine, lpThreadId, here,
            engine.stream,
        )  # fmt: skip
        box = lpNumberOfBytesSent
        if (box is not None or op is None) and type(box) not in BOXES:
            check_count_box(box, op is not None)
        address = None
        if flags or lpTo is not None or not engine.send_ready:
            address = self._state_rows(sock, flags, lpTo, total)
        parts = self.parts
        if parts.faulty:
            fault = parts.draw_fault(sock, "send")
            if fault is not None:
                if fault.at == "post" or op is None:
                    raise WSAError(fault.error, "injected")
                op.fault = fault.error
        if op is None or not engine.overlapped:
            sent = self._send_now(sock, buffers, total, flags, address)
            if op is not None:
                self.posting.done_at_once(sock, op, sent)
            store(lpNumberOfBytesSent, sent)
            return 0
        if flags or address is not None:
            op.address = address
            op.urgent = bool(flags & MSG_OOB)
        if engine.stream:
            pending = engine.pending
            # Without a byte limit only the count can refuse it: read it here, call the
            # check (which raises the S9 code) only when it could.
            if pending.max_bytes is not None or (
                pending.here_count + pending.other_count >= pending.max_count
            ):
                pending.check(total)
            # Posting.claim's steps, read inline (a frame per send, issue 26).  Only
            # ``Internal`` changes, so it alone is kept for the undo below.
            if tie_structure(lpOverlapped, op) is not op:  # type: ignore[call-overload]
                raise self.posting.reused(sock)
            internal = lpOverlapped.Internal  # type: ignore[attr-defined]
            lpOverlapped.Internal = STATUS_PENDING  # type: ignore[attr-defined]
            if parts.debug or self.door.tracer is not None:
                self.posting.traced(op)
            if here:
                # Completions happen on this very thread: count the op only if it is
                # still pending after the post, so a send done at once is never counted.
                op.in_call = True  # a completion inside post_here is this call's (S13.3)
                done = sock.post_here(op, coalesce)
                op.in_call = False
                if not done:
                    # PendingCount.add_here's steps (its limits were checked above; on
                    # the loop thread no lock), read inline: a frame per send.
                    pending.here_count += 1
                    pending.here_bytes += total
                    pending.here_sends += 1
                    op.counter = pending
                    return PENDING
                if lpNumberOfBytesSent is not None:
                    store(lpNumberOfBytesSent, op.transferred)
                return 0 if op.status == 0 else PENDING
            # Another thread's send that fits completes at once, as on Windows (S2.1; its
            # routine is only queued, S6.2): the admission decides how (send_other).
            # Otherwise it is counted, queued, and pending by construction: the loop
            # may already have completed it, but reading op.status now would race with
            # it (S2.2).
            try:
                plain = not (op.urgent or op.fault or parts.debug)
                done = send_other(sock, op, plain, False, pending.add_checked)
            except WSAError:
                self.posting.undo(sock, op, (internal, lpOverlapped.InternalHigh))  # type: ignore[attr-defined]
                raise
            if not done:
                if op.issuer is None:
                    self.posting.issued(op)  # pending: its thread is asked now
                return PENDING
            op.in_call = True
            self.door.complete(op, 0, total)
            if lpNumberOfBytesSent is not None:
                store(lpNumberOfBytesSent, total)
            return 0
        saved = self.posting.start(sock, op, checked=False)
        if op.fault:
            self.door.complete(op, op.fault, 0)  # an injected completion-time fault
            return PENDING
        datagrams = sock.datagrams
        assert datagrams is not None  # not a stream: a datagram socket
        try:
            code = datagrams.send(op)
        except WSAError:
            self.posting.undo(sock, op, saved)
            raise
        if code:
            self.posting.undo(sock, op, saved)
            raise WSAError(code)
        if code is None:
            return PENDING  # queued behind an EAGAIN
        op.in_call = True
        self.door.complete(op, 0, total)
        store(lpNumberOfBytesSent, total)
        return 0

    def _state_rows(self, sock: SocketAdapter, flags: int, lpTo: object, total: int) -> Any:
        """The rows of S9 a plain send on a ready socket never meets: the flags, the
        destination (a datagram socket's ``lpTo``, bound implicitly if it is not yet), and
        a socket not ready to send (``SocketEngine.check_send``).  The destination, or
        None."""
        engine = sock.engine
        address = None
        if lpTo is not None and not engine.stream:
            address = sockaddr(engine.family, lpTo)
        if flags or not engine.send_ready:
            engine.check_send(flags, address, total)
        if address is not None and engine.state == SocketState.CREATED:
            self.parts.implicit_bind(sock)
        return address

    def _send_now(
        self, sock: SocketAdapter, buffers: list[Any], total: int, flags: int, address: Any
    ) -> int:
        """Non-overlapped send (S8): blocking returns when consumed; non-blocking is all or nothing."""
        op = Operation(SEND, buffers, total, None, None, None, None, None, flags, address)
        op.handle = sock.handle
        if flags & MSG_OOB:
            op.urgent = True
        engine = sock.engine
        me = threading.get_ident()
        here = self.io.here()
        if not engine.stream:
            datagrams = sock.datagrams
            assert datagrams is not None
            if engine.nonblocking or here:
                # On the loop thread a datagram that cannot go at once must not
                # be queued either: that thread may not wait for it (S7.3).
                return datagrams.send_nonblocking(op)
            prepare_wait(op)
            code = datagrams.send(op)
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
                if not sock.fits_now(total, op.urgent):
                    raise self.io.refuse_blocking(
                        "a blocking send that does not fit the send buffer"
                    )
                sock.post_here(op, coalesce=False)
            else:
                plain = not (op.urgent or self.parts.debug)
                if send_other(sock, op, plain, True, prepare_wait):
                    return total
                op.listener.wait()  # type: ignore[union-attr]
            if op.status == ABORTED:
                raise WSAError(WSAErr.WSAEINTR, "the socket was closed during a blocking send")
            if op.status:
                raise WSAError(op.status)
            return total
        finally:
            sock.handoff.leave_blocking()
