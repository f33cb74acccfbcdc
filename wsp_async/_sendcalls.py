"""``WSPSend`` and ``WSPSendTo`` (SPEC S2-S9): argument checks in the order of the S9 table,
the overlapped post, and the non-overlapped sends of S8.
"""

from __future__ import annotations

import threading
from typing import Any

from . import apc
from ._args import (
    PENDING,
    SEND_FLAGS,
    call_spi,
    capture,
    skip,
)
from ._base import ProviderBase
from ._ops import SEND, Operation
from ._socket import CONNECTED, CREATED, Socket
from .constants import (
    AF_INET,
    MSG_OOB,
    MSG_PARTIAL,
    UDP_MAX_MSG_SIZE_V4,
    UDP_MAX_MSG_SIZE_V6,
)
from .errors import WSAErr, WSAError
from .structs import is_box, store


class SendCalls(ProviderBase):
    """WSPSend and WSPSendTo: the return protocol of S2 over the engine."""

    def WSPSend(
        self,
        s: int,
        lpBuffers: object,
        dwBufferCount: int,
        lpNumberOfBytesSent: object,
        dwFlags: int,
        lpOverlapped: object,
        lpCompletionRoutine: object,
        lpThreadId: object,
        lpErrno: object,
    ) -> int:
        """Send on a connected socket (S2-S10): 0 when complete at once, else SOCKET_ERROR.

        ``lpErrno`` is ``WSA_IO_PENDING`` when an overlapped send started and
        will complete later (exactly once, S2.4); any other code means nothing
        was started and no completion will come (S2.3).
        """
        return call_spi(
            self._send,
            lpErrno,
            s,
            lpBuffers,
            dwBufferCount,
            lpNumberOfBytesSent,
            dwFlags,
            None,
            False,
            lpOverlapped,
            lpCompletionRoutine,
            lpThreadId,
        )

    def WSPSendTo(
        self,
        s: int,
        lpBuffers: object,
        dwBufferCount: int,
        lpNumberOfBytesSent: object,
        dwFlags: int,
        lpTo: object,
        iTolen: object,
        lpOverlapped: object,
        lpCompletionRoutine: object,
        lpThreadId: object,
        lpErrno: object,
    ) -> int:
        """``WSPSend`` with a destination (datagram sockets; ignored on streams)."""
        return call_spi(
            self._send,
            lpErrno,
            s,
            lpBuffers,
            dwBufferCount,
            lpNumberOfBytesSent,
            dwFlags,
            lpTo,
            True,
            lpOverlapped,
            lpCompletionRoutine,
            lpThreadId,
        )

    def _send(
        self,
        s: int,
        lpBuffers: object,
        dwBufferCount: object,
        lpNumberOfBytesSent: object,
        dwFlags: object,
        lpTo: object,
        sendto: bool,
        lpOverlapped: object,
        lpCompletionRoutine: object,
        lpThreadId: object,
        coalesce: bool = True,
    ) -> int:
        """The common send path; raises WSAError (turned into ``lpErrno`` by the caller).

        ``coalesce=False`` (the asyncio face's sequential awaits) sends at once
        instead of joining the end-of-iteration gather write.

        The order of the checks is the order of the S9 table's rows as a Windows
        provider meets them: the handle, the arguments, the overlapped contract,
        the flags, then the socket's state.
        """
        sock = self._sockets.get(s) if type(s) is int else None
        if sock is None:
            raise WSAError(WSAErr.WSAENOTSOCK)
        buffers, total = capture(lpBuffers, dwBufferCount, False)
        if lpNumberOfBytesSent is not None and not is_box(lpNumberOfBytesSent):
            raise WSAError(WSAErr.WSAEFAULT, "lpNumberOfBytesSent is not a box")
        if type(dwFlags) is not int:
            raise WSAError(WSAErr.WSAEFAULT, "dwFlags is not an int")
        op = self._overlapped_op(
            sock, SEND, buffers, total, dwFlags, lpOverlapped, lpCompletionRoutine, lpThreadId
        )
        if dwFlags & ~SEND_FLAGS:
            raise WSAError(WSAErr.WSAEOPNOTSUPP, f"unknown flags {dwFlags:#x}")
        if dwFlags & MSG_PARTIAL:
            raise WSAError(WSAErr.WSAEOPNOTSUPP, "MSG_PARTIAL is not supported by TCP or UDP")
        if dwFlags & MSG_OOB and not sock.is_stream:
            raise WSAError(WSAErr.WSAEOPNOTSUPP, "MSG_OOB on a datagram socket")
        address: Any = None
        if sock.is_stream:
            if sock.send_shut:
                raise WSAError(WSAErr.WSAESHUTDOWN)
            if sock.error:
                raise WSAError(sock.error)
            if sock.state != CONNECTED:
                raise WSAError(WSAErr.WSAENOTCONN)
        else:
            if sock.send_shut:
                raise WSAError(WSAErr.WSAESHUTDOWN)
            if sendto and lpTo is not None:
                if not isinstance(lpTo, tuple):
                    raise WSAError(WSAErr.WSAEFAULT, "lpTo is not a sockaddr tuple")
                address = lpTo
                if sock.state == CREATED:
                    self._implicit_bind(sock)
            elif sock.state != CONNECTED:
                raise WSAError(WSAErr.WSAENOTCONN, "no default peer: use WSPSendTo")
            limit = UDP_MAX_MSG_SIZE_V4 if sock.family == AF_INET else UDP_MAX_MSG_SIZE_V6
            if total > limit:
                raise WSAError(WSAErr.WSAEMSGSIZE)
        if self._faulty:
            fault = self._draw_fault(sock, "send")
            if fault is not None:
                if fault.at == "post" or op is None:
                    raise WSAError(fault.error, "injected")
                op.fault = fault.error
        if op is None:
            sent = self._send_now(sock, buffers, total, dwFlags, address)
            store(lpNumberOfBytesSent, sent)
            return 0
        op.address = address
        op.urgent = bool(dwFlags & MSG_OOB)
        here = threading.get_ident() == self._loop_ident
        if here and sock.is_stream:
            # Completions happen on this very thread, so the op can be counted
            # after the post, and only if it is still pending: a send that
            # completes at once never touches the lock.
            sock.check_pending_limits(op)
        else:
            sock.count_pending(op)
        ov = op.overlapped
        assert ov is not None
        saved = (ov.Internal, ov.InternalHigh)
        self._prime(op)
        if self.debug:
            from .verifier import remember

            remember(op)
        if self.tracer is not None:
            self._trace_post(sock, op)
        if sock.is_stream:
            if here:
                if not sock.post_send_here(op, coalesce):
                    sock.count_pending(op, checked=True)
            else:
                try:
                    sock.post_foreign(op)
                except WSAError:
                    sock.uncount(op)
                    self._unprime(op, saved)
                    raise
                # Pending by construction: the loop may already have completed it,
                # but reading op.status now would race with it (S2.2).
                return PENDING
        else:
            if op.fault:
                # An injected completion-time fault: it completes now, with the error.
                sock.finish(op, op.fault, 0)
                return PENDING
            try:
                code = sock.send_datagram(op)
            except WSAError:
                sock.uncount(op)
                self._unprime(op, saved)
                raise
            if code:
                sock.uncount(op)
                self._unprime(op, saved)
                raise WSAError(code)
            if code is None:
                return PENDING  # queued behind an EAGAIN
            sock.finish(op, 0, total)
        status = op.status
        if status == 0:
            store(lpNumberOfBytesSent, op.transferred)
            return 0
        # Pending, or already completed with an error whose notice is issued:
        # either way the caller hears of it through the completion (S2.2).
        return PENDING

    def _send_now(
        self, sock: Socket, buffers: list[Any], total: int, flags: int, address: Any
    ) -> int:
        """Non-overlapped send (S8): blocking returns when consumed; non-blocking takes what fits."""
        if not sock.is_stream:
            op = Operation(SEND, buffers, total, None, None, None, None, None, flags, address)
            if sock.nonblocking or threading.get_ident() == self._loop_ident:
                # On the loop thread a datagram that cannot go at once must not
                # be queued either: that thread may not wait for it (S7.3).
                return self._datagram_nonblocking(sock, op)
            done = threading.Event()
            op.notify = lambda _op: done.set()
            code = sock.send_datagram(op)
            if code is None:
                done.wait()
                code = op.status
            if code:
                raise WSAError(code)
            return total
        if sock.nonblocking:
            return self._run_on_loop(self._stream_nonblocking, sock, buffers, total)
        me = threading.get_ident()
        with sock.lock:
            if sock.blocking_owner is not None and sock.blocking_owner != me:
                raise WSAError(WSAErr.WSAEINPROGRESS)
            sock.blocking_owner = me
        try:
            op = Operation(SEND, buffers, total, None, None, None, None, None, flags)
            op.urgent = bool(flags & MSG_OOB)
            if me == self._loop_ident:
                sendq = sock.sendq
                if sock.incoming or not sendq.idle or sendq.buffered + total > sock.capacity:
                    raise self._refuse_blocking("a blocking send that does not fit the send buffer")
                sock.post_send_here(op, coalesce=False)
            else:
                direct = (
                    sock.send_direct(buffers) if total and not op.urgent and not self.debug else 0
                )
                if direct == total:
                    return total
                if direct:
                    op.buffers, op.nbytes = skip(buffers, direct), total - direct
                done = threading.Event()
                op.notify = lambda _op: done.set()
                op.issuer = apc.current_target()
                sock.post_foreign(op)
                done.wait()
                if op.status == 0:
                    return total
            if op.status == WSAErr.WSA_OPERATION_ABORTED:
                raise WSAError(WSAErr.WSAEINTR, "the socket was closed during a blocking send")
            if op.status:
                raise WSAError(op.status)
            return op.transferred
        finally:
            sock.blocking_owner = None

    @staticmethod
    def _datagram_nonblocking(sock: Socket, op: Operation) -> int:
        with sock.lock:
            if sock.datagram_backlog or sock.incoming:
                raise WSAError(WSAErr.WSAEWOULDBLOCK)
            try:
                sock._sendmsg(op)
            except BlockingIOError:
                raise WSAError(WSAErr.WSAEWOULDBLOCK) from None
        return op.nbytes

    @staticmethod
    def _stream_nonblocking(sock: Socket, buffers: list[Any], total: int) -> int:
        """S8.1 on the loop: the kernel takes what it can, the send buffer what fits."""
        if sock.incoming:
            sock.take_incoming()
        sendq = sock.sendq
        transport = sock.transport
        if transport is None or sendq.waiting or transport.is_closing():
            raise WSAError(WSAErr.WSAEWOULDBLOCK)
        if total == 0:
            return 0
        taken = 0
        if not transport.get_write_buffer_size():
            # Nothing is queued in the transport, so writing to the kernel
            # directly keeps the byte order.
            try:
                taken = sock.sock.sendmsg(buffers)
            except BlockingIOError:
                taken = 0
        room = sock.capacity - transport.get_write_buffer_size()
        rest = min(total - taken, max(0, room))
        if rest:
            data = b"".join(bytes(memoryview(b).cast("B")) for b in buffers)
            transport.write(data[taken : taken + rest])
            taken += rest
        if taken == 0:
            raise WSAError(WSAErr.WSAEWOULDBLOCK)
        sendq.written += taken
        sendq.buffered = transport.get_write_buffer_size()
        return taken
