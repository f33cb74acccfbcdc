"""Sending datagrams (SPEC S9, S11.3): from any thread, one system call each.

A datagram cannot interleave with another, so the posting thread sends it itself
under the hand-off lock and learns the result at once -- no loop round trip.  Only
after an ``EAGAIN`` do later datagrams queue behind it in the hand-off, and the
loop sends them in order (through the transport, which keeps what the socket
cannot take yet: handed on, so consumed, S4.1).

Two Linux behaviours are turned into Windows' here: a datagram to port 0 is taken
and dropped (Linux refuses it with ``EINVAL``), and the ICMP error of an *earlier*
datagram, which Linux reports on the next send of a connected socket, never fails
that send (``docs/semantics.md``).
"""

from __future__ import annotations

import socket as _pysocket
from collections.abc import Callable
from typing import Any

from .._completion.door import CompletionDoor
from .._core.engine import SocketEngine
from .._core.operation import Operation
from ..errors import WSAErr, WSAError, wsa_code_of
from .handoff import HandOff

__all__ = ["DatagramSender"]


class DatagramSender:
    """One datagram socket's sends."""

    def __init__(
        self,
        sock: _pysocket.socket | None,
        engine: SocketEngine,
        door: CompletionDoor,
        handoff: HandOff,
        transport: Callable[[], Any],
    ) -> None:
        #: The host socket.  A datagram socket always has one; a stream socket's (which
        #: sends nothing here) may be None until it is made (``Connection.sock``).
        self.sock: Any = sock
        self.engine = engine
        self.door = door
        self.handoff = handoff
        self.transport = transport
        #: A datagram met EAGAIN: later ones queue behind it, in order.
        self.backlog = False

    def send(self, op: Operation) -> int | None:
        """Send one datagram now from any thread: error code, 0 when sent, None when queued."""
        handoff = self.handoff
        with handoff.lock:
            if handoff.closed:
                raise WSAError(WSAErr.WSAENOTSOCK)
            if not self.backlog and not handoff.incoming:
                try:
                    self._sendmsg(op)
                    return 0
                except BlockingIOError:
                    self.backlog = True
                except OSError as exc:
                    return wsa_code_of(exc, WSAErr.WSAENETDOWN)
            wake = handoff.append_locked(op)
        if wake:
            handoff.wake()
        return None

    def send_nonblocking(self, op: Operation) -> int:
        """A non-overlapped send that may not wait (S8.1, S7.3): all of it, or WSAEWOULDBLOCK."""
        with self.handoff.lock:
            if self.backlog or self.handoff.incoming:
                raise WSAError(WSAErr.WSAEWOULDBLOCK)
            try:
                self._sendmsg(op)
            except BlockingIOError:
                raise WSAError(WSAErr.WSAEWOULDBLOCK) from None
        return op.nbytes

    def _sendmsg(self, op: Operation) -> None:
        buffers = op.buffers or [b""]
        address = op.address
        if address is not None and address[1] == 0:
            return  # Windows takes a datagram to port 0 and drops it; Linux says EINVAL
        try:
            if address is None:
                self.sock.sendmsg(buffers)
            else:
                self.sock.sendmsg(buffers, (), 0, address)
        except ConnectionRefusedError:
            # Linux reports an ICMP error of an *earlier* datagram on this call;
            # Windows never fails a send for it (issue 10): that report is spent, send.
            if address is None:
                self.sock.sendmsg(buffers)
            else:
                self.sock.sendmsg(buffers, (), 0, address)

    def send_queued(self, op: Operation) -> None:
        """A datagram that waited behind an EAGAIN (loop thread)."""
        transport = self.transport()
        with self.handoff.lock:
            try:
                if transport is not None and transport.get_write_buffer_size():
                    raise BlockingIOError
                self._sendmsg(op)
                status = 0
            except BlockingIOError:
                # The transport keeps it until the socket is writable again:
                # handed on, so consumed (S4.1).
                try:
                    transport.sendto(b"".join(op.buffers), op.address)
                    status = 0
                except Exception as exc:
                    status = self.engine.write_failed(exc)
            except OSError as exc:
                status = wsa_code_of(exc, WSAErr.WSAENETDOWN)
            if not self.handoff.incoming:
                self.backlog = False
        self.door.complete(op, status, op.nbytes if status == 0 else 0)
