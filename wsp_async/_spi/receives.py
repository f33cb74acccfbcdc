"""``WSPRecv``/``WSPRecvFrom`` (S11), ``WSPGetOverlappedResult`` (S7.2) and
``WPUCompleteOverlappedRequest`` (S13.9): bodies only; :mod:`wsp_async.provider` wraps
each in the S2 protocol.
"""

from __future__ import annotations

import threading
from typing import Any

from .._completion.door import isolated
from .._completion.waits import wait_result
from .._core.arguments import BOXES, capture, check_box, check_count_box, integer
from .._core.operation import RECV, Operation, OpKind
from .._io.adapter import SocketAdapter
from ..constants import STATUS_PENDING, WSA_INFINITE
from ..errors import WSAErr, WSAError
from ..events import WSAEVENT, WSAWaitForMultipleEvents
from ..ntstatus import wsa_of
from ..structs import (
    WSAOVERLAPPED,
    NoPortPacket,
    operation_of,
    result_flags,
    store,
)
from ..verifier import report_wait_with_routine
from .entry import PENDING
from .parts import Parts
from .posting import Posting, prepare_wait

__all__ = ["Receives"]

ABORTED = WSAErr.WSA_OPERATION_ABORTED

#: NTSTATUS severities warning and error (the upper half): the failures.
_FAILURE = 0x80000000


class Receives:
    """Receive and result bodies over the provider's parts and the overlapped contract."""

    def __init__(self, parts: Parts, posting: Posting) -> None:
        self.parts = parts
        self.io = parts.io
        self.door = parts.door
        self.posting = posting

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
        sockets = self.parts.sockets
        sock = sockets.find(s) if type(s) is int else None
        if sock is None:
            sock = sockets.get(s)
        if lpFrom is not None:
            check_box(lpFrom, "lpFrom")
        buffers, total = capture(lpBuffers, dwBufferCount, True)
        if type(lpFlags) not in BOXES:
            check_box(lpFlags, "lpFlags", optional=False)
        flags = lpFlags.value  # type: ignore[attr-defined]
        if type(flags) is not int:
            flags = integer(flags, "lpFlags holds no int")
        here = threading.get_ident() == self.io.ident
        op = self.posting.overlapped(
            sock, RECV, buffers, total, flags, lpOverlapped, lpCompletionRoutine, lpThreadId, here
        )
        box = lpNumberOfBytesRecvd
        if (box is not None or op is None) and type(box) not in BOXES:
            check_count_box(box, op is not None)
        sock.engine.check_recv(flags, len(buffers))
        if self.parts.faulty:
            fault = self.parts.draw_fault(sock, "recv")
            if fault is not None:
                if fault.at == "post" or op is None:
                    raise WSAError(fault.error, "injected")
                op.fault = fault.error
        if op is None or not sock.engine.overlapped:
            n = self._recv_now(sock, buffers, total, flags, lpFlags, lpFrom, op is not None)
            if op is not None:
                self.posting.done_at_once(sock, op, n)
            store(lpNumberOfBytesRecvd, n)
            return 0
        if lpFrom is not None:
            op.listener = lambda done: store(lpFrom, done.source)
        saved = self.posting.start(sock, op, checked=False)
        if not here:
            if not (sock.engine.receiver.ready() and not sock.handoff):
                try:
                    sock.park_foreign(op)
                except WSAError:
                    self.posting.undo(sock, op, saved)
                    raise
                return PENDING  # as for sends: never read a racing status
        try:
            if here:
                _receive_in_call(sock, op)
            else:
                # Data (or the end of stream) is already there: the receive completes at
                # once, as on Windows (sock.c, test_completion_port: 0 bytes after a
                # FIN), in one round trip to the loop that owns the received bytes.
                self.io.call(_receive_in_call, sock, op)
        except WSAError:
            self.posting.undo(sock, op, saved)  # nothing started (S2.3)
            raise
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
        structure: bool = False,
    ) -> int:
        """A non-overlapped receive (S11.1 over S8): the bytes received, or raises.

        Given a structure (on a socket made without WSA_FLAG_OVERLAPPED, S3.3), it blocks
        until data comes even on a non-blocking socket, as Windows does (sock.c:
        test_nonblocking_async_recv).  Data already there is taken without an alertable
        wait: a queued APC stays queued (test_WSARecv)."""
        op = Operation(OpKind.RECV, buffers, total, flags=flags, handle=sock.handle)
        result = None
        if self.io.here() or (sock.engine.nonblocking and not structure):
            result = self.io.call(sock.receive_nowait, op)
            if result is None:
                raise WSAError(WSAErr.WSAEWOULDBLOCK)
        elif sock.engine.receiver.ready() and not sock.handoff:
            result = self.io.call(sock.receive_nowait, op)
        if result is not None:
            status, n = result
        else:
            prepare_wait(op)
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
        self.posting.claim(sock, op)
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
        status = integer(lpOverlapped.Internal, "Internal is not an NTSTATUS")
        if status == STATUS_PENDING:
            op = operation_of(lpOverlapped)
            if op is None:
                # Completed between the two reads: the door writes Internal before it
                # unties the structure, so a second read sees the result.
                status = integer(lpOverlapped.Internal, "Internal is not an NTSTATUS")
        if status == STATUS_PENDING:
            if not fWait:
                raise WSAError(WSAErr.WSA_IO_INCOMPLETE)
            if self.io.here():
                raise self.io.refuse_blocking("WSPGetOverlappedResult(fWait=True)")
            if op is None:
                status = self._wait_unknown(lpOverlapped)
            else:
                if op.routine is not None and self.parts.debug:
                    isolated(report_wait_with_routine, self.door.tracer, sock.handle)
                wait_result(lpOverlapped)
                status = lpOverlapped.Internal
        if type(lpcbTransfer) in BOXES:
            lpcbTransfer.value = lpOverlapped.InternalHigh  # type: ignore[attr-defined]
        else:
            store(lpcbTransfer, lpOverlapped.InternalHigh)
        if lpdwFlags is not None:
            store(lpdwFlags, result_flags(lpOverlapped))
        if status >= _FAILURE:
            # S2.5: derived from the NTSTATUS.  Any success status is success, as
            # ws2_32 has it (sock.c, test_WSAGetOverlappedResult).
            raise WSAError(wsa_of(status))
        return True

    @staticmethod
    def _wait_unknown(ov: WSAOVERLAPPED) -> int:
        """fWait on a pending structure no operation owns (made by hand, or another
        program's): Windows waits for its event and then reports what the structure
        holds -- success, even if that is still STATUS_PENDING (sock.c,
        test_WSAGetOverlappedResult).  With no event Windows would wait on the socket
        handle for an operation that does not exist, that is, forever: we answer
        WSA_IO_INCOMPLETE instead (docs/semantics.md)."""
        event = ov.hEvent.event if isinstance(ov.hEvent, NoPortPacket) else ov.hEvent
        if not isinstance(event, WSAEVENT) or event.closed:
            raise WSAError(WSAErr.WSA_IO_INCOMPLETE)
        WSAWaitForMultipleEvents(1, [event], False, WSA_INFINITE, False)
        status = integer(ov.Internal, "Internal is not an NTSTATUS")
        return 0 if status == STATUS_PENDING else status


def _receive_in_call(sock: SocketAdapter, op: Operation) -> None:
    """Post a receive on the loop thread; a completion inside it is the call's (S13.3).

    Another thread's receive comes here a turn of the loop after it found bytes waiting,
    not through the hand-off: by then another receive may have taken them and the socket
    been closed, or made fresh by ``DisconnectEx``, where it would wait for ever or for
    the next connection's bytes (S2.4).  So it asks what a post entering the hand-off
    asks (``HandOff.refusal``), and fails as a call made after the change does; its
    caller undoes its start."""
    code = sock.handoff.refusal(op)
    if code:
        raise WSAError(code, "the socket changed during the call")
    op.in_call = True
    sock.post_receive(op)
    op.in_call = False
