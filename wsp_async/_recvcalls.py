"""``WSPRecv`` and ``WSPRecvFrom`` (SPEC S11), with the return protocol of S2."""

from __future__ import annotations

import threading
from typing import Any

from . import apc
from ._args import (
    PENDING,
    RECV_FLAGS,
    call_spi,
    capture,
)
from ._base import ProviderBase
from ._ops import RECV, Operation
from ._socket import CONNECTED, CREATED, Socket
from .constants import (
    MSG_OOB,
    MSG_PARTIAL,
)
from .errors import WSAErr, WSAError
from .structs import is_box, store


class RecvCalls(ProviderBase):
    """WSPRecv and WSPRecvFrom over the engine."""

    def WSPRecv(
        self,
        s: int,
        lpBuffers: object,
        dwBufferCount: int,
        lpNumberOfBytesRecvd: object,
        lpFlags: object,
        lpOverlapped: object,
        lpCompletionRoutine: object,
        lpThreadId: object,
        lpErrno: object,
    ) -> int:
        """Receive (S11.1): completes with at least one byte, or 0 at a graceful close."""
        return call_spi(
            self._recv,
            lpErrno,
            s,
            lpBuffers,
            dwBufferCount,
            lpNumberOfBytesRecvd,
            lpFlags,
            None,
            lpOverlapped,
            lpCompletionRoutine,
            lpThreadId,
        )

    def WSPRecvFrom(
        self,
        s: int,
        lpBuffers: object,
        dwBufferCount: int,
        lpNumberOfBytesRecvd: object,
        lpFlags: object,
        lpFrom: object,
        lpFromlen: object,
        lpOverlapped: object,
        lpCompletionRoutine: object,
        lpThreadId: object,
        lpErrno: object,
    ) -> int:
        """``WSPRecv`` that also reports the sender (``lpFrom`` box) of a datagram."""
        return call_spi(
            self._recv,
            lpErrno,
            s,
            lpBuffers,
            dwBufferCount,
            lpNumberOfBytesRecvd,
            lpFlags,
            lpFrom,
            lpOverlapped,
            lpCompletionRoutine,
            lpThreadId,
        )

    def _recv(
        self,
        s: int,
        lpBuffers: object,
        dwBufferCount: object,
        lpNumberOfBytesRecvd: object,
        lpFlags: object,
        lpFrom: object,
        lpOverlapped: object,
        lpCompletionRoutine: object,
        lpThreadId: object,
    ) -> int:
        sock = self._socket(s)
        if lpFrom is not None and not is_box(lpFrom):
            raise WSAError(WSAErr.WSAEFAULT, "lpFrom is not a box")
        buffers, total = capture(lpBuffers, dwBufferCount, True)
        if lpNumberOfBytesRecvd is not None and not is_box(lpNumberOfBytesRecvd):
            raise WSAError(WSAErr.WSAEFAULT, "lpNumberOfBytesRecvd is not a box")
        if lpFlags is None or not is_box(lpFlags):
            raise WSAError(WSAErr.WSAEFAULT, "lpFlags is not an in/out box")
        flags = lpFlags.value  # type: ignore[attr-defined]
        if type(flags) is not int:
            raise WSAError(WSAErr.WSAEFAULT, "lpFlags holds no int")
        op = self._overlapped_op(
            sock, RECV, buffers, total, flags, lpOverlapped, lpCompletionRoutine, lpThreadId
        )
        if flags & ~RECV_FLAGS:
            raise WSAError(WSAErr.WSAEOPNOTSUPP, f"unknown flags {flags:#x}")
        if flags & (MSG_OOB | MSG_PARTIAL):
            raise WSAError(WSAErr.WSAEOPNOTSUPP, "MSG_OOB/MSG_PARTIAL receives are not emulated")
        if sock.recv_shut:
            raise WSAError(WSAErr.WSAESHUTDOWN)
        if sock.is_stream:
            if sock.state != CONNECTED:
                raise WSAError(WSAErr.WSAENOTCONN)
            if sock.error and not sock.receiver.available():
                raise WSAError(sock.error)
        elif sock.state == CREATED:
            raise WSAError(WSAErr.WSAEINVAL, "the datagram socket is not bound")
        if self._faulty:
            fault = self._draw_fault(sock, "recv")
            if fault is not None:
                if fault.at == "post" or op is None:
                    raise WSAError(fault.error, "injected")
                op.fault = fault.error
        if op is None:
            return self._recv_now(
                sock, buffers, total, flags, lpNumberOfBytesRecvd, lpFlags, lpFrom
            )
        op.source = None
        sock.count_pending(op)
        ov = op.overlapped
        assert ov is not None
        saved = (ov.Internal, ov.InternalHigh)
        self._prime(op)
        if self.tracer is not None:
            self._trace_post(sock, op)
        if lpFrom is not None:
            op.notify = lambda done: store(lpFrom, done.source)
        if threading.get_ident() == self._loop_ident:
            result = sock.post_receive(op)
            if result is not None:
                sock.finish(op, result[0], result[1])
        else:
            try:
                sock.post_foreign(op)
            except WSAError:
                sock.uncount(op)
                self._unprime(op, saved)
                raise
            return PENDING  # as for sends: never read a racing status
        if op.status == 0:
            store(lpNumberOfBytesRecvd, op.transferred)
            store(lpFlags, op.out_flags)
            return 0
        return PENDING

    def _recv_now(
        self,
        sock: Socket,
        buffers: list[Any],
        total: int,
        flags: int,
        lpNumberOfBytesRecvd: object,
        lpFlags: object,
        lpFrom: object,
    ) -> int:
        op = Operation(RECV, buffers, total, None, None, None, None, None, flags)
        if self.on_loop_thread() or sock.nonblocking:
            result = self._run_on_loop(sock.post_receive_nowait, op)
            if result is None:
                raise WSAError(WSAErr.WSAEWOULDBLOCK)
            status, n = result
        else:
            done = threading.Event()
            op.notify = lambda _op: done.set()
            op.issuer = apc.current_target()
            sock.post_foreign(op)
            done.wait()
            status, n = op.status, op.transferred
            if status == WSAErr.WSA_OPERATION_ABORTED:
                status = WSAErr.WSAEINTR
        store(lpFrom, op.source)
        store(lpFlags, op.out_flags)
        if status:
            raise WSAError(status)
        store(lpNumberOfBytesRecvd, n)
        return 0
