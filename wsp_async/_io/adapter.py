"""The transport adapter: carries out one socket engine's decisions on an asyncio transport.

Rules of this module:

* It decides nothing the engine can decide.  It feeds the engine facts ("the
  transport took this batch and holds N bytes", "data arrived", "the connection
  is gone with this error") and hands what the engine returns to the completion
  door.  It gets everything through its constructor and never imports the
  provider.
* A send is *handed on* only once ``transport.write`` returned.  A write that
  raises completes its batch with the mapped error (never strands it).
* Other threads reach a socket only through the hand-off below; everything else
  runs on the I/O loop thread.

The cross-thread hand-off
-------------------------
Posts made on other threads enter :class:`~wsp_async._io.handoff.HandOff` (its lock
fixes their order, S5.3) and the loop takes them in bursts.  ``write_lock`` is held
while bytes go to the transport, or, for a send from another thread on an idle
socket, straight to the kernel (:mod:`wsp_async._io.writer`).  If the kernel takes
only part of that send, the rest goes to the hand-off's *front*, before every send
posted meanwhile, under the same lock that kept those from being written.  A stream
receive from another thread that must wait for bytes does not wake the loop: it waits in
the hand-off, and the loop takes it when the bytes come (``park_foreign``).

Datagrams are one system call each and cannot interleave: any thread sends one
directly (:mod:`wsp_async._io.datagrams`).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket as _pysocket
import threading
from collections.abc import Callable
from typing import Any

from .._completion.door import CompletionDoor, RoutineLane
from .._core.engine import ABORTED, SocketEngine, SocketState
from .._core.operation import Operation, OpKind
from .._core.recvqueue import StreamReceiver
from ..constants import AF_INET, AF_INET6
from ..errors import WSAError, wsa_code_of
from . import adoption as _adoption
from .connection import LINGER_0, Connection
from .datagrams import DatagramSender
from .handoff import HandOff
from .withdrawal import Withdrawal
from .writer import URGENT_RETRY_FIRST, Writer, kept

__all__ = ["SocketAdapter"]

Wake = Callable[[Callable[[], object]], object]


class SocketAdapter(Writer, Withdrawal, Connection):
    """One emulated socket over its transport (see the module docstring)."""

    def __init__(
        self,
        handle: int,
        sock: _pysocket.socket | None,
        engine: SocketEngine,
        door: CompletionDoor,
        loop: asyncio.AbstractEventLoop,
        wake: Wake,
        on_closing: Callable[[SocketAdapter, bool], object],
        lane: RoutineLane,
        debug: bool = False,
        run: Callable[..., Any] | None = None,
        on_loop_thread: Callable[[], bool] = lambda: False,
        host_kind: tuple[int, int] | None = None,
    ) -> None:
        """``sock`` None: the host socket is made when first needed, with ``host_kind``
        (its family and type; see :attr:`sock`)."""
        if sock is None and host_kind is None:
            raise ValueError("a host socket made when first needed needs its kind")
        self.handle = handle
        self.host = sock
        self.host_kind = host_kind
        self.engine = engine
        self.door = door
        self.loop = loop
        #: Told (self, True) when a closing transport starts flushing, (self, False) when gone.
        self.on_closing = on_closing
        self.lane = lane
        self.debug = debug
        #: Runs a function on the I/O loop and returns its result, from any thread.
        self.run = run
        self.transport: Any = None
        #: TCP_NODELAY as the program set it (Winsock's default: off, Nagle on), applied
        #: to the host socket once a transport is attached; None for a socket whose
        #: setting is not ours to keep (not TCP).
        self.nodelay: bool | None = (
            False if engine.stream and engine.family in (AF_INET, AF_INET6) else None
        )
        #: Posts from other threads on their way here (see :mod:`wsp_async._io.handoff`).
        self.handoff = HandOff(wake, self.take_incoming_and_pump, self._refused, self._parks)
        self.write_lock = threading.Lock()
        # ``handoff.foreign_writes``: other threads may write straight to the kernel
        # (:func:`~wsp_async._io.writer.send_direct`), under ``write_lock``.  Set only on
        # the loop thread, when the loop first takes a send from another thread; until
        # then those go through the hand-off.  So the loop's own writes skip the lock
        # while it is False: no other writer can start behind their check.
        self.drain_timer: asyncio.TimerHandle | None = None
        self.urgent_retry = URGENT_RETRY_FIRST
        #: Datagram sends, from any thread (see :mod:`wsp_async._io.datagrams`); a stream
        #: socket has none (one object fewer per socket for the collector to walk).
        self.datagrams: DatagramSender | None = None
        if not engine.stream:
            self.datagrams = DatagramSender(sock, engine, door, self.handoff, self._transport)
        #: The completion port this socket is associated with (S13.1), and its modes.
        self.port_link: Any = None
        self._skip_on_success = False
        self.connect_future: asyncio.Future[Any] | None = None
        #: ConnectEx connects (or connected) it: connect() is WSAEINVAL.
        self.by_connect_ex = False
        #: The provider's closesocket, by handle (CloseHandle of a socket uses it).
        self.closesocket: Callable[[int], object] | None = None
        #: True on the I/O loop's thread (``IoLoop.here``).
        self.on_loop_thread = on_loop_thread
        #: An adopted socket's own object (S16.1): ``sock`` is our duplicate of it.  The
        #: handle's close closes it too; its own close closes the handle
        #: (:mod:`wsp_async._io.adoption`).
        self.program_sock: _pysocket.socket | None = None
        #: The host socket a transport is being made over (``Parts.attach_stream``), or
        #: None: a close or a reset meanwhile must not close *that* socket under it --
        #: :meth:`attach` aborts that transport, which closes it.  Only that one: a reset
        #: that made the socket fresh meanwhile (an AcceptEx cancelled while it waited for
        #: first data) leaves a new ``sock`` that the close closes as usual.
        self.attaching: _pysocket.socket | None = None
        #: The transport called ``connection_lost`` (it has let go of ``sock``).
        self.transport_gone = False
        #: The AcceptEx this socket is the accept socket of, from the call until it
        #: completes (S14.2): the socket is committed to it -- a second AcceptEx, a bind
        #: or a connect naming it is WSAEINVAL -- and closing it aborts that AcceptEx.
        self.accept_into: Operation | None = None
        #: The AcceptEx calls' wait for a connection (:meth:`readable`), if one waits.
        self.readable_wait: asyncio.Future[None] | None = None
        self.cancels_due: list[Callable[[Operation], bool]] = []
        self._prune_at = 16
        # ``accepting``, ``elsewhere``, ``before_abort`` and ``parked`` are the classes'
        # empty defaults until a socket needs its own (Connection, Withdrawal): most
        # sockets never do, and each container kept is one more object per socket for
        # the garbage collector to walk (issue 26).

    def __repr__(self) -> str:
        kind = "stream" if self.engine.stream else "datagram"
        return (
            f"<SocketAdapter {self.handle:#x} {kind} {self.engine.state.name} closed={self.closed}>"
        )

    @property
    def closed(self) -> bool:
        return self.handoff.closed

    def _transport(self) -> Any:
        return self.transport

    def associate(self, link: Any) -> bool:
        """Associate with a completion port (S13.1); False when already associated."""
        with self.handoff.lock:
            if self.port_link is not None:
                return False
            link.skip_on_success = self._skip_on_success
            self.port_link = link
        return True

    @property
    def skip_on_success(self) -> bool:
        return self._skip_on_success

    @skip_on_success.setter
    def skip_on_success(self, skip: bool) -> None:
        """FILE_SKIP_COMPLETION_PORT_ON_SUCCESS (S13.3)."""
        self._skip_on_success = skip
        if self.port_link is not None:
            self.port_link.skip_on_success = skip

    def _refused(self, op: Operation) -> int:
        """The S9 rows of a post, read again (``HandOff.refusal``): ``WSPShutdown``, the
        loss of the transport (:meth:`lost`) and ``DisconnectEx`` change what they answer
        under the hand-off's lock, before they sweep what entered."""
        engine = self.engine
        try:
            if op.kind == OpKind.SEND and engine.stream:  # (a datagram's goes in unchecked)
                engine.check_send(op.flags, None, op.nbytes)
            elif op.kind == OpKind.RECV:
                engine.check_recv(op.flags, len(op.buffers))
        except WSAError as refusal:
            return refusal.winerror
        return 0

    def shutdown(self, send: bool, receive: bool) -> None:
        """Record WSPShutdown (any thread); posts racing it either enter first or fail."""
        with self.handoff.lock:
            self.engine.shutdown(send=send, receive=receive)

    # ------------------------------------------------------------------ transport
    def attach(self, transport: asyncio.BaseTransport) -> None:
        host = self.host
        if self.closed or host is None or _fileno(transport) != host.fileno():
            # Closed, or made fresh again (an AcceptEx cancelled), while this transport
            # was being made: it carries a connection that is no longer ours.
            transport.abort()  # type: ignore[attr-defined]
            return
        self.transport = transport
        self.transport_gone = False
        if self.engine.stream:
            self._limit(self.engine.capacity)
            if self.nodelay is not None:
                # uvloop turns Nagle off for every TCP transport it makes (stock asyncio
                # only for sockets made with IPPROTO_TCP); Winsock leaves it on until the
                # program sets TCP_NODELAY.  The socket keeps its own setting.
                try:  # not contextlib.suppress: three Python calls, once per connection
                    host.setsockopt(_pysocket.IPPROTO_TCP, _pysocket.TCP_NODELAY, int(self.nodelay))
                except OSError:
                    pass

    # ------------------------------------------------------------------ stream sends

    # ------------------------------------------------------------------ other threads
    def post_foreign(self, op: Operation) -> None:
        """Queue an operation posted on another thread for the loop to take (S5.3 order)."""
        self.handoff.post(op)

    def park_foreign(self, op: Operation) -> None:
        """Queue a stream receive posted on another thread; wake the loop only if it has
        something to give it now.

        A receive that waits for bytes not read yet would cost a wake-up of the loop just
        to be moved to the receive queue.  Instead it waits in the hand-off, and the loop
        takes it when bytes or the end of the stream arrive (:meth:`received`,
        :meth:`ended`), when the transport is lost, or when the socket is closed or the
        operation cancelled -- each of those takes the hand-off first.  One wake-up less
        per round trip for a thread that receives (the Proactor's, issue 13).

        Why no receive is left behind: this thread queues the receive, then reads the
        receive state (:meth:`_parks`); the loop changes that state, then looks at the
        hand-off.  Under the interpreter lock one of the two sees the other's write: either
        this thread sees bytes and wakes the loop, or the loop sees the receive.
        """
        self.handoff.post(op, may_park=True)

    def _parks(self, op: Operation) -> bool:
        engine = self.engine
        receiver = engine.receiver
        return (
            isinstance(receiver, StreamReceiver)
            and not op.fault
            and self.transport is not None
            and engine.state == SocketState.CONNECTED
            and not engine.recv_shut
            and not engine.recv_error
            and not receiver.available()
            and not receiver.ended
        )

    def take_incoming(self, quietly: bool = False) -> None:
        """Move posts made on other threads into the engine, in the order they came.

        ``quietly``: queue everything without doing I/O (before an abort takes it all).
        """
        engine = self.engine
        sendq = engine.sendq
        rest: list[Operation] = []
        # Stream sends move into the send queue under the hand-off lock: a thread that
        # checks "nothing queued" under that lock never sees one in transit (S5.3).
        with self.handoff.lock:
            front, batch = self.handoff.take_locked()
            if front is not None:
                sendq.push_front(front)
            for op in batch:
                if op.kind == OpKind.SEND and (engine.stream or quietly):
                    sendq.post(op)
                    self.handoff.foreign_writes = True
                else:
                    rest.append(op)
        for op in rest:
            if op.kind != OpKind.SEND:
                if quietly:
                    engine.receiver.post(op)
                else:
                    self.post_receive(op)
            else:
                assert self.datagrams is not None  # a send here is a datagram's
                self.datagrams.send_queued(op)

    def take_incoming_and_pump(self) -> None:
        if self.closed:
            self.close_here()
            return
        self.take_incoming()
        if self.engine.stream:
            self.pump()

    # ------------------------------------------------------------------ receives
    def post_receive(self, op: Operation) -> tuple[int, int] | None:
        """Loop thread: (status, bytes) when ``op`` completed at once, else None (queued)."""
        handoff = self.handoff
        if handoff.incoming or handoff.front is not None:
            self.take_incoming()
        got = self.engine.post_receive(op)
        if got is not None:
            self.maybe_resume_reading()
            self.door.complete(op, got[0], got[1])
        return got

    def receive_nowait(self, op: Operation) -> tuple[int, int] | None:
        """A non-overlapped receive that must not wait: the result now, or None."""
        handoff = self.handoff
        if handoff.incoming or handoff.front is not None:
            self.take_incoming()
        got = self.engine.receive_now(op)
        if got is not None:
            self.maybe_resume_reading()
        return got

    def received(self, data: bytes, source: Any) -> None:
        if self.cancels_due:
            self.carry_out_cancels()  # bytes after a cancel never complete it (S15.2)
        done = self.engine.arrived(data, source)
        if self.engine.should_pause_reading():
            self.transport.pause_reading()
        self.door.completions(done)
        if self.handoff.incoming:
            self.take_incoming_and_pump()  # receives parked by other threads (park_foreign)

    def maybe_resume_reading(self) -> None:
        """Bytes were taken from the receive queue: read again if reading was paused."""
        if self.engine.should_resume_reading():
            transport = self.transport
            if transport is not None and not transport.is_closing():
                transport.resume_reading()

    def ended(self) -> None:
        if self.cancels_due:
            self.carry_out_cancels()
        self.door.completions(self.engine.ended())
        if self.handoff.incoming:
            self.take_incoming_and_pump()  # receives parked by other threads (park_foreign)

    def icmp_error(self, code: int) -> None:
        # An ICMP error for an earlier datagram: Winsock reports it on a later
        # receive, if at all; we keep it as the pending socket error.
        self.engine.so_error = code

    # ------------------------------------------------------------------ failure and close
    def lost(self, exc: BaseException | None) -> None:
        """The transport is gone: complete everything unconsumed with the mapped error (S10.5)."""
        self.transport_gone = True
        if self.closed:
            self.on_closing(self, False)
            return
        if self.cancels_due:
            self.carry_out_cancels()
        code = None if exc is None else wsa_code_of(exc)
        with self.handoff.lock:
            # From here another thread's post racing the loss is refused with its error
            # (:meth:`_refused`); one that entered before is taken below and completes
            # with it.  Entering after the last take, it would wait in a queue that
            # nothing hands on any more (S2.4).
            self.engine.lose(code)
        self.take_incoming(quietly=True)
        sends, status, receives = self.engine.lost(code)
        self.door.complete_all(sends, status)
        self.door.completions(receives)

    def close_here(self) -> None:
        """WSPCloseSocket on the loop thread (S10.2): abort everything, close the transport."""
        self.handoff.close()
        self.take_incoming(quietly=True)
        aborted, done = self.engine.close()
        if self.elsewhere:
            # An extension function waiting outside the queues (its connect, its
            # connection, the sends before its disconnect) is aborted here too, not by
            # its task a turn later: a provider's close may stop the loop before that
            # turn, and a close is over when it returns (S10.2, S2.4).
            aborted = aborted + self.withdraw_elsewhere(_anything)
        self.door.complete_all(aborted, ABORTED)
        if self.accept_into is not None:
            # The AcceptEx this socket was to take a connection for ends with it, at
            # once, as on Windows (Wine's test_AcceptEx): aborted, one notice.
            self.door.complete(self.accept_into, ABORTED, 0)
        transport = self.transport
        if done and transport is not None and not transport.is_closing():
            try:
                transport.writelines([kept(buf) for op in done for buf in op.buffers])
            except Exception:
                pass  # the connection is going anyway; nothing waits for these bytes
        if self.drain_timer is not None:
            self.drain_timer.cancel()
            self.drain_timer = None
        self.stop_accepting()
        if self.parked:  # (most sockets have the class's empty one: nothing to make)
            for conn, _peer in self.parked:
                conn.close()
            self.parked.clear()
        if self.connect_future is not None:
            self.connect_future.cancel()
        program, self.program_sock = self.program_sock, None
        if program is not None:
            # WSPCloseSocket closes the program's object too (documented at adopt);
            # forgotten first, so that its close does not come back here.
            _adoption.forget(program)
            program.close()
        if self.transport is None:
            host = self.host_at_close()
            if host is not None and self.attaching is not host:
                host.close()
        elif not self.transport.is_closing():
            self.on_closing(self, True)
            if self.engine.unread:
                self._reset()
            else:
                self.transport.close()  # graceful: buffered bytes still go out, then FIN

    def _reset(self) -> None:
        """Close abortively: a reset (linger on, time 0), nothing more goes out."""
        with contextlib.suppress(OSError):
            self.sock.setsockopt(_pysocket.SOL_SOCKET, _pysocket.SO_LINGER, LINGER_0)
        self.transport.abort()


def _fileno(transport: asyncio.BaseTransport) -> int:
    sock = transport.get_extra_info("socket")
    return sock.fileno() if sock is not None else -1


def _anything(_op: Operation) -> bool:
    """Selects every operation (a close takes them all)."""
    return True
