"""A socket's connection as the extension functions see it: connecting (ConnectEx and
connect race as on Windows), the accept socket an AcceptEx commits (S14.2), the
listener's wait for a connection, and DisconnectEx's half-close or reuse (S14.4).

:class:`Connection` is part of :class:`~wsp_async._io.adapter.SocketAdapter`; the
attributes it names are the adapter's.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket as _pysocket
import struct
import threading
from typing import TYPE_CHECKING, Any

from .._completion.door import CompletionDoor
from .._core.engine import ABORTED, Event, SocketEngine, SocketState
from .._core.operation import Operation
from ..errors import WSAErr, WSAError, wsa_code_of
from .datagrams import DatagramSender
from .handoff import HandOff
from .protocols import Detached

__all__ = ["LINGER_0", "Connection"]

#: SO_LINGER on, 0 seconds: ``close()`` resets the connection.
LINGER_0 = struct.pack("ii", 1, 0)


#: Decides which thread's new host socket a lazy socket keeps (:meth:`Connection.sock`):
#: two threads that both need one end up with one, the other closed.
_MAKING = threading.Lock()


class Connection:
    """The connection half of a socket adapter."""

    engine: SocketEngine
    door: CompletionDoor
    handoff: HandOff
    transport: Any
    #: The host socket -- the OS socket the emulated one runs on -- or None while a
    #: stream socket has not needed one yet (:attr:`sock`).
    host: _pysocket.socket | None
    #: The family and type a lazy host socket is made with (None: it has its socket).
    host_kind: tuple[int, int] | None
    loop: asyncio.AbstractEventLoop
    datagrams: DatagramSender | None
    attaching: _pysocket.socket | None
    transport_gone: bool
    by_connect_ex: bool
    accept_into: Operation | None
    #: Accepts of the loop's own in flight (a loop without readiness callbacks): the
    #: class's empty set until the socket has one (:meth:`accepting_now`).
    accepting: set[asyncio.Future[Any]] = frozenset()  # type: ignore[assignment]
    readable_wait: asyncio.Future[None] | None
    #: The descriptor our reader is on while an accept loop runs (:meth:`readable`);
    #: the class's None otherwise.
    reading_fd: int | None = None
    #: Connections a listener accepted for AcceptEx calls cancelled meanwhile, each with
    #: its peer's address as accept() gave it: the next AcceptEx takes them first (loop
    #: thread only).  The class's empty tuple until the socket parks one (:meth:`park`).
    parked: list[tuple[_pysocket.socket, Any]] = ()  # type: ignore[assignment]

    if TYPE_CHECKING:

        @property
        def closed(self) -> bool: ...
        def take_incoming(self, quietly: bool = False) -> None: ...
        def shutdown(self, send: bool, receive: bool) -> None: ...

    @property
    def sock(self) -> _pysocket.socket:
        """The host socket, made now if the socket has none yet (any thread).

        A stream socket from ``WSPSocket`` gets its OS socket the first time something
        needs one (a bind, a connect, an option, a name) -- or never: the accept socket
        of an AcceptEx takes over the accepted connection's socket, so a host socket
        made up front was made and closed again for nothing, two system calls per accept
        (on the loop's thread, with another thread waiting for the interpreter, each
        such call cost a switch, issue 26).  A socket made fresh by DisconnectEx's
        ``TF_REUSE_SOCKET`` is lazy the same way.  Closing paths read :attr:`host` and
        never make one; a closed socket refuses to."""
        host = self.host
        if host is not None:
            return host
        if self.closed:
            raise WSAError(WSAErr.WSAENOTSOCK, "the socket is closed")
        assert self.host_kind is not None  # a socket without a host has its kind
        made = _pysocket.socket(*self.host_kind)
        made.setblocking(False)
        with _MAKING:  # (never held across a system call)
            kept = self.host
            if kept is None and not self.handoff.closed:  # (``closed`` is the hand-off's)
                kept = self.host = made  # (a stream socket's: no datagram sender to tell)
        if kept is not made:
            # Another thread made one first, or the socket was closed meanwhile.
            made.close()
            if kept is None:
                raise WSAError(WSAErr.WSAENOTSOCK, "the socket is closed")
        return kept

    @sock.setter
    def sock(self, host: _pysocket.socket) -> None:
        self.host = host
        if self.datagrams is not None:
            self.datagrams.sock = host

    def host_at_close(self) -> _pysocket.socket | None:
        """The host socket as the close finds it (loop thread, the socket marked closed).

        Read under the lock :attr:`sock` makes one under: a host made before this is the
        close's to close -- after its AcceptEx readiness wait is removed (the loop may be
        watching its descriptor by number); one never made after it.  The maker used to
        close a host it found closed itself, on its own thread: when another thread had
        made that host and already listened on it, its descriptor closed under the
        loop's watch (a libuv abort in the fuzz)."""
        with _MAKING:
            return self.host

    def disconnecting(self) -> None:
        """DisconnectEx issued (any thread, S14.4): from now on the socket refuses sends
        as one shut down for sending does (``WSAESHUTDOWN``), while the sends before it
        still go out.  Under the hand-off's lock, so that another thread's send racing it
        enters first or is refused.  The refusal only: the FIN is the disconnect's own,
        written once its marker is consumed (:meth:`disconnect`) -- a shutdown's end of
        stream, due as soon as the queue is empty, could go before the marker joins it."""
        with self.handoff.lock:
            self.engine.send_shut = True

    def disconnect(self, reuse: bool) -> None:
        """DisconnectEx (S14.4), loop thread, once the sends before it are done: close the
        connection gracefully; with ``reuse`` the socket becomes a fresh unbound one."""
        transport = self.transport
        if transport is not None and reuse:
            # The old connection's events concern us no more; its host socket object is
            # closed once the transport lets go of it (at once if it has already).
            if self.transport_gone:
                self.sock.close()
            else:
                transport.get_protocol().sock = Detached(self.sock)
        if not reuse:
            # A half-close, as Windows' (sock.c: test_DisconnectEx): what the transport
            # holds still goes out, then FIN; the socket still receives, its names still
            # work, and the peer's later data is read, not answered with a reset.  The
            # shutdown is recorded first, under the hand-off's lock: another thread's
            # send then enters before the FIN or is refused, never queued behind it.
            self.shutdown(send=True, receive=False)
            if transport is not None and not transport.is_closing():
                transport.write_eof()
            return
        if transport is not None and not transport.is_closing():
            transport.close()  # graceful: what it holds still goes out, then FIN
        engine = self.engine
        # Under the hand-off's lock, so that another thread's post racing the disconnect
        # enters before it (taken and aborted just below) or is refused (shut down now,
        # not connected once fresh): entering after the sweep, it would wait in the fresh
        # socket's queues -- a send to go out on its next connection (S2.4, S14.4).
        self.shutdown(send=True, receive=True)
        self.take_incoming(quietly=True)  # receives parked by other threads are aborted too
        self.door.complete_all(engine.sendq.remove_all() + engine.receiver.remove(), ABORTED)
        old, self.host = self.host, None  # fresh: a new host socket when one is needed
        if old is not None:
            self.host_kind = (old.family, old.type)
        self.transport = None
        self.by_connect_ex = False
        if old is not None and transport is None and self.attaching is not old:
            old.close()
        self.engine.reset()

    def reset_and_reuse(self) -> None:
        """Reset the connection (linger on, time 0) and become a fresh unbound socket, as
        after DisconnectEx with TF_REUSE_SOCKET (loop thread)."""
        host = self.host
        if host is not None:
            with contextlib.suppress(OSError):
                host.setsockopt(_pysocket.SOL_SOCKET, _pysocket.SO_LINGER, LINGER_0)
        self.disconnect(reuse=True)

    def replace_socket(self, sock: _pysocket.socket) -> None:
        """AcceptEx (S14.2): this socket takes over an accepted connection's host socket."""
        old, self.sock = self.host, sock
        if old is not None:
            old.close()

    def park(self, conn: _pysocket.socket, peer: Any) -> None:
        """Keep an accepted connection for the next AcceptEx, first in line."""
        if not self.parked:
            self.parked = []
        self.parked.insert(0, (conn, peer))

    def accepting_now(self, future: asyncio.Future[Any]) -> None:
        """An accept of the loop's own is in flight: cancelled by :meth:`stop_accepting`."""
        if not self.accepting:
            self.accepting = set()
        self.accepting.add(future)

    async def readable(self) -> None:
        """Until the host socket is readable (a listener: a connection waits), or the wait
        is cancelled (loop thread).

        The reader stays on the descriptor from the accept loop's first wait until
        :meth:`stop_reading` at its end (or :meth:`stop_accepting`, before the
        descriptor closes, so that a number the OS reuses never has our reader on it):
        added and removed around every wait, it cost two system calls per accepted
        connection (issue 26).  Between two waits the loop accepts without yielding,
        so the reader's calls meanwhile find no wait and do nothing."""
        loop = self.loop
        if self.reading_fd is None:
            fd = self.sock.fileno()
            loop.add_reader(fd, self._readable_now)  # NotImplementedError on a Proactor loop
            self.reading_fd = fd
        future: asyncio.Future[None] = loop.create_future()
        self.readable_wait = future
        try:
            await future
        finally:
            if self.readable_wait is future:
                self.readable_wait = None

    def _readable_now(self) -> None:
        future = self.readable_wait
        if future is not None and not future.done():
            future.set_result(None)

    def stop_reading(self) -> None:
        """The accept loop ended: our reader leaves the descriptor (loop thread)."""
        fd = self.reading_fd
        if fd is not None:
            self.reading_fd = None
            self.loop.remove_reader(fd)

    def stop_accepting(self) -> None:
        """Cancel the AcceptEx calls' readiness wait, the reader removed now, and any accept
        of the loop's own (loop thread): nothing is left waiting on the descriptor."""
        self.stop_reading()
        future = self.readable_wait
        if future is not None:
            self.readable_wait = None
            future.cancel()
        for accepting in list(self.accepting):
            accepting.cancel()

    def bind(self, address: tuple[Any, ...]) -> None:
        """Bind the host socket (any thread); refused for the accept socket of a pending
        AcceptEx (WSAEINVAL), decided under the lock :meth:`commit_to` takes.  Held
        across the system call, which a bind never blocks in."""
        host = self.sock  # (made first, if it must be: never under the lock)
        engine = self.engine
        with self.handoff.lock:
            self._refuse_if_committed()
            engine.allows(Event.BIND)
            host.bind(address)
            engine.move(Event.BIND)

    def _refuse_if_committed(self) -> None:
        """WSAEINVAL for the accept socket of a pending AcceptEx (under the hand-off lock,
        as :meth:`commit_to` decides: see there)."""
        if self.committed:
            raise WSAError(WSAErr.WSAEINVAL, "the accept socket of a pending AcceptEx")

    def begin_connect(self, by_connect_ex: bool = False) -> None:
        """The connection is under way from this call on (any thread): a second connect
        racing it sees CONNECTING and fails (WSAEALREADY; ConnectEx says WSAEINVAL).  A
        socket ConnectEx connects refuses connect() from then on (WSAEINVAL, sock.c:
        test_connecting_socket).  The accept socket of a pending AcceptEx refuses too
        (WSAEINVAL, Wine's test_AcceptEx), decided under the lock :meth:`commit_to`
        takes, so that a connect and an AcceptEx racing for one fresh socket never
        both have it."""
        engine = self.engine
        with self.handoff.lock:
            self._refuse_if_committed()
            if self.by_connect_ex and not by_connect_ex:
                raise WSAError(WSAErr.WSAEINVAL, "ConnectEx connects this socket")
            engine.move(Event.CONNECT_EX if by_connect_ex else Event.CONNECT)
            self.by_connect_ex = by_connect_ex

    @property
    def committed(self) -> bool:
        """The accept socket of a pending AcceptEx (see :attr:`accept_into`)."""
        op = self.accept_into
        return op is not None and op.pending

    def commit_to(self, op: Operation) -> bool:
        """Make this socket ``op``'s accept socket (any thread); False if it is already
        one, or no longer a fresh socket.

        Decided under the hand-off lock, which a bind (:meth:`bind`) and a connect
        (:meth:`begin_connect`) also hold while they leave the fresh state: checked
        anywhere else, a bind on another thread between the check and the commit left
        a bound -- then listening -- socket committed to the AcceptEx, whose connection
        then replaced a host socket the loop was still watching (a crash in libuv)."""
        with self.handoff.lock:
            if self.committed or self.closed or self.engine.state != SocketState.CREATED:
                return False
            self.accept_into = op
            return True

    def _ending(self, done: list[Operation]) -> list[Operation]:
        """A TransmitFile with TF_DISCONNECT among the consumed sends: disconnect before
        it completes, so that its socket may be reused once its notice arrives (S14.5).

        The disconnect closes the transport, and the pump may be running inside the
        transport's own write callback (``resume_writing``), which goes on using the
        transport after we return: so the disconnect, with that operation's completion
        and every one after it (completion order, S13.2), waits for the next callback of
        the loop.  Returns what completes now."""
        for i, op in enumerate(done):
            if _disconnects(op):
                self.loop.call_soon(self._disconnect_and_complete, done[i:])
                return done[:i]
        return done

    def _disconnect_and_complete(self, done: list[Operation]) -> None:
        if self.closed:
            # Closed since their bytes were consumed, before this turn: still pending,
            # so aborted, as every pending operation of a closed socket (S10.2).
            self.door.complete_all(done, ABORTED)
            return
        for op in done:
            if _disconnects(op):
                try:
                    self.disconnect(op.parts.reuse)
                except OSError as exc:
                    # The connection failed under it: the TransmitFile says so, and the
                    # operations after it still complete (an exception here lost them).
                    op.fault = wsa_code_of(exc)
        self.door.complete_ok(done)


def _disconnects(op: Operation) -> bool:
    """A TransmitFile with TF_DISCONNECT that went whole (S14.5)."""
    parts = op.parts
    return parts is not None and parts.disconnect and not op.fault
