"""The entry points of a socket's life: create, bind, listen, accept, connect, names,
shut down, close (SPEC S1, S10).  Bodies only: :mod:`wsp_async.provider` wraps each
in the S2 protocol.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket as _pysocket
from typing import Any

from .._core.arguments import check_box, integer, sockaddr
from .._core.engine import Event, SocketState
from .._io import adoption as _adoption
from .._io.accepted import accept_connection
from .._io.adapter import SocketAdapter
from ..constants import (
    AF_INET,
    AF_INET6,
    AF_UNIX,
    IPPROTO_TCP,
    IPPROTO_UDP,
    SD_BOTH,
    SD_RECEIVE,
    SD_SEND,
    SOCK_DGRAM,
    SOCK_STREAM,
    WSA_FLAG_OVERLAPPED,
)
from ..errors import WSAErr, WSAError, wsa_code_of
from ..structs import store
from .parts import Parts

__all__ = ["Lifecycle"]

log = logging.getLogger("wsp_async")

FAMILIES = {AF_INET: _pysocket.AF_INET, AF_INET6: _pysocket.AF_INET6}
TYPES = {SOCK_STREAM: _pysocket.SOCK_STREAM, SOCK_DGRAM: _pysocket.SOCK_DGRAM}
PROTOCOLS = {SOCK_STREAM: (0, IPPROTO_TCP), SOCK_DGRAM: (0, IPPROTO_UDP)}

CREATED, BOUND, LISTENING = SocketState.CREATED, SocketState.BOUND, SocketState.LISTENING

#: Host families of which this process has made a stream socket: ``WSPSocket`` makes the
#: host socket of later ones lazily (the family is known to work).
_STREAMS_MADE: set[int] = set()
CONNECTING, CONNECTED = SocketState.CONNECTING, SocketState.CONNECTED


class Lifecycle:
    """Socket life-cycle bodies over the provider's parts."""

    def __init__(self, parts: Parts) -> None:
        self.parts = parts
        self.io = parts.io

    def socket(self, af: object, type_: object, protocol: object, flags: object) -> int:
        af = int(af) if isinstance(af, int) else None
        family = FAMILIES.get(af) if af is not None else None
        if af is None or family is None:
            raise WSAError(WSAErr.WSAEAFNOSUPPORT)
        type_ = int(type_) if isinstance(type_, int) else None
        kind = TYPES.get(type_) if type_ is not None else None
        if type_ is None or kind is None:
            raise WSAError(WSAErr.WSAESOCKTNOSUPPORT)
        if protocol not in PROTOCOLS[type_]:
            raise WSAError(WSAErr.WSAEPROTONOSUPPORT)
        overlapped = bool(integer(flags, "dwFlags is not an int") & WSA_FLAG_OVERLAPPED)
        if kind == _pysocket.SOCK_STREAM and family in _STREAMS_MADE:
            # Its host socket is made when first needed (``Connection.sock``): an
            # AcceptEx's accept socket never needs one.
            return self.parts.new_socket(None, af, overlapped, host_kind=(family, kind)).handle
        # A datagram socket, or the process's first stream socket of this family: made
        # now, so that a family the host cannot make fails here, as on Windows
        # (WSAEAFNOSUPPORT for IPv6 on a host without it), not at its first use.
        sock = _pysocket.socket(family, kind)
        try:
            stream = kind == _pysocket.SOCK_STREAM
            handle = self.parts.new_socket(sock, af, overlapped, stream=stream).handle
        except BaseException:
            sock.close()
            raise
        if stream:
            _STREAMS_MADE.add(family)
        return handle

    def adopt(self, sock: object, duplicate: bool = True, kernel_completes: bool = False) -> int:
        """A handle for an existing OS socket (S16.1); see ``Provider.adopt``.

        With ``duplicate`` (the program's object), the emulated socket works on a
        duplicate of its descriptor and the object's ``close`` closes the handle
        (:mod:`wsp_async._io.adoption`); without (an object the caller hands over, as the
        ``_overlapped`` face does), on the object itself."""
        if not isinstance(sock, _pysocket.socket) or sock.fileno() < 0:
            raise WSAError(WSAErr.WSAENOTSOCK, "adopt takes an open socket.socket")
        family = {_pysocket.AF_INET: AF_INET, _pysocket.AF_INET6: AF_INET6}.get(
            sock.family, AF_UNIX
        )
        if sock.type not in (_pysocket.SOCK_STREAM, _pysocket.SOCK_DGRAM):
            raise WSAError(WSAErr.WSAESOCKTNOSUPPORT)
        if duplicate:
            known = _adoption.adopted(sock)
            if known is not None:
                if known.owner is self:
                    return known.handle  # one object, one handle
                raise WSAError(WSAErr.WSAEINVAL, "the socket is adopted by another provider")
        state = _state_of(sock)
        fd = sock.fileno()
        ours = sock.dup() if duplicate else sock
        try:
            adapter = self.parts.new_socket(ours, family, True, state)
        except BaseException:
            if duplicate:
                ours.close()
            raise
        if kernel_completes:
            # Before any transport exists, so nothing waits for the loop: attach() applies
            # the capacity, and no send can have reached the loop yet.
            adapter.engine.capacity = 0
            adapter.handoff.foreign_writes = adapter.engine.stream
        try:
            if adapter.nodelay is not None:
                # The program's socket keeps the setting it has (S16.1).
                adapter.nodelay = bool(
                    ours.getsockopt(_pysocket.IPPROTO_TCP, _pysocket.TCP_NODELAY)
                )
            if sock.type == _pysocket.SOCK_STREAM:
                if state == CONNECTED:
                    self.io.run_or_start(self.parts.attach_stream(adapter))
            elif state in (BOUND, CONNECTED):
                self.parts.ensure_datagram_transport(adapter)
        except BaseException as exc:
            # Nothing half-registered: the handle dies, our duplicate closes, the
            # program's object is as it was.
            with contextlib.suppress(WSAError):
                self.parts.sockets.pop(adapter.handle)
            adapter.program_sock = None
            with contextlib.suppress(Exception):
                adapter.close_here()
            if isinstance(exc, WSAError) or not isinstance(exc, Exception):
                raise
            raise WSAError(wsa_code_of(exc, WSAErr.WSAEINVAL), f"adopt failed: {exc}") from None
        with self.parts.by_fd_lock:
            self.parts.by_fd[fd] = adapter
        if duplicate:
            adapter.program_sock = sock
            handle = adapter.handle
            _adoption.register(
                sock,
                _adoption.Adoption(
                    handle, self, lambda: self._close_quietly(handle), lambda: not adapter.closed
                ),
            )
        return adapter.handle

    def _close_quietly(self, handle: int) -> None:
        """The program closed its adopted object: closesocket of the handle (S10.2)."""
        try:
            self.close(handle)
        except WSAError:
            pass  # closed already, or the provider is gone
        except Exception:
            log.exception("closing the handle of an adopted socket failed")

    def handle_of_fd(self, fd: object) -> int | None:
        """The handle of the adopted socket that owns ``fd`` now, or None (S16.1).

        An fd number the OS reused after the adopted socket closed names nothing:
        the entry is kept only while that very socket object still holds the fd.
        """
        if not isinstance(fd, int):
            return None
        adapter = self.parts.by_fd.get(fd)
        if adapter is None or adapter.closed:
            return None
        holder = adapter.program_sock if adapter.program_sock is not None else adapter.sock
        if holder.fileno() != fd:
            return None
        return adapter.handle

    def bind(self, s: object, name: object) -> int:
        sock = self.parts.sockets.get(s)
        address = sockaddr(sock.engine.family, name)
        sock.bind(address)
        if not sock.engine.stream:
            self.parts.ensure_datagram_transport(sock)
        return 0

    def listen(self, s: object, backlog: object) -> int:
        sock = self.parts.sockets.get(s)
        if not sock.engine.stream:
            raise WSAError(WSAErr.WSAEOPNOTSUPP)
        sock.engine.allows(Event.LISTEN)
        count = integer(backlog, "backlog is not an int")
        sock.sock.listen(max(0, min(count, 4096)))
        sock.engine.move(Event.LISTEN)
        return 0

    def accept(self, s: object, addr: object) -> int:
        sock = self.parts.sockets.get(s)
        check_box(addr, "addr")
        if sock.engine.state != LISTENING:
            raise WSAError(WSAErr.WSAEINVAL, "not listening")
        if sock.engine.nonblocking or self.io.here():
            try:
                conn, peer = accept_connection(sock.sock, sock.engine.family)
            except BlockingIOError:
                raise WSAError(WSAErr.WSAEWOULDBLOCK) from None
            child = self._child(sock, conn)
            if self.io.here():
                self.io.loop.create_task(self.parts.attach_stream(child))
            else:
                self.io.run(self.parts.attach_stream(child))
        else:
            child, peer = self.io.run(self.accept_async(sock), alertable=True)
        store(addr, peer)
        return child.handle

    def _child(self, listener: SocketAdapter, conn: _pysocket.socket) -> SocketAdapter:
        child = self.parts.new_socket(
            conn,
            listener.engine.family,
            listener.engine.overlapped,
            CONNECTED,
            listener.engine.capacity,
            stream=True,  # (a listener's: what ``conn.type`` would say, without asking)
        )
        child.nodelay = listener.nodelay  # an accepted socket takes its listener's options
        return child

    async def accept_async(self, sock: SocketAdapter) -> tuple[SocketAdapter, Any]:
        """Accept on the loop (the blocking path of WSPAccept, and the asyncio face)."""
        task = asyncio.ensure_future(self.io.loop.sock_accept(sock.sock))
        sock.accepting_now(task)
        try:
            conn, peer = await task
        except asyncio.CancelledError:
            if sock.closed:
                raise WSAError(WSAErr.WSAEINTR, "the listening socket was closed") from None
            raise
        finally:
            sock.accepting.discard(task)
        child = self._child(sock, conn)
        await self.parts.attach_stream(child)
        return child, peer

    def connect(self, s: object, name: object) -> int:
        sock = self.parts.sockets.get(s)
        address = sockaddr(sock.engine.family, name)
        engine = sock.engine
        if not engine.stream:
            try:
                sock.sock.connect(address)
            except PermissionError:
                # A broadcast peer: Windows connects (and sends) without SO_BROADCAST,
                # but sendto() a broadcast address still fails (sock.c: test_broadcast).
                # Linux wants the flag to connect; once connected, its send() uses the
                # route it holds, unchecked, while sendto() looks one up and is refused
                # again -- so the flag is set for the connect only.
                host = sock.sock
                host.setsockopt(_pysocket.SOL_SOCKET, _pysocket.SO_BROADCAST, 1)
                try:
                    host.connect(address)
                finally:
                    host.setsockopt(_pysocket.SOL_SOCKET, _pysocket.SO_BROADCAST, 0)
            engine.move(Event.PEER)
            self.parts.ensure_datagram_transport(sock)
            return 0
        if engine.state == LISTENING:
            raise WSAError(WSAErr.WSAEINVAL, "a listening socket")
        # WSAEISCONN, WSAEALREADY, WSAEINVAL for the accept socket of a pending AcceptEx
        # (Wine's test_AcceptEx); else CONNECTING from now on.
        sock.begin_connect()
        if engine.nonblocking or self.io.here():
            self.io.spawn(self._connect_in_background(sock, address))
            raise WSAError(WSAErr.WSAEWOULDBLOCK, "connect started")
        self.io.run(self.connect_async(sock, address), alertable=True)
        return 0

    async def connect_async(self, sock: SocketAdapter, name: tuple[Any, ...]) -> None:
        """Connect on the loop (the blocking path of WSPConnect, and the asyncio face)."""
        if sock.closed:
            # Closed before this step began (a ConnectEx's task starts a turn after its
            # call): there is no close to come that would cancel the connect (S10.2).
            raise closed_meanwhile()
        engine = sock.engine
        if engine.state != CONNECTING:
            sock.begin_connect()  # not begun by a WSPConnect or ConnectEx: the asyncio face's
        future = asyncio.ensure_future(self.io.loop.sock_connect(sock.sock, name))
        sock.connect_future = future
        try:
            await future
        except asyncio.CancelledError:
            if sock.closed:
                raise closed_meanwhile() from None
            engine.move(Event.GAVE_UP_BOUND if _bound(sock.sock) else Event.GAVE_UP)
            raise
        except BaseException:
            if not sock.closed:
                engine.move(Event.GAVE_UP_BOUND if _bound(sock.sock) else Event.GAVE_UP)
            raise
        finally:
            sock.connect_future = None
        if sock.closed:
            # Closed after the kernel connected it, before this step: nothing to attach
            # (a transport on a closed socket is never made, and its wait never ends).
            raise closed_meanwhile()
        engine.move(Event.CONNECTED)
        await self.parts.attach_stream(sock)

    async def _connect_in_background(self, sock: SocketAdapter, name: tuple[Any, ...]) -> None:
        try:
            await self.connect_async(sock, name)
        except BaseException as exc:
            sock.engine.so_error = wsa_code_of(exc, WSAErr.WSAECONNREFUSED)

    def name(self, s: object, box: object, peer: bool) -> int:
        """WSPGetSockName / WSPGetPeerName: the sockaddr tuple into the box ``name``."""
        sock = self.parts.sockets.get(s)
        check_box(box, "name", optional=False)
        engine = sock.engine
        if peer:
            if engine.state != CONNECTED:
                raise WSAError(WSAErr.WSAENOTCONN)
            address = sock.sock.getpeername()
        else:
            if engine.state == CREATED:
                raise WSAError(WSAErr.WSAEINVAL, "not bound")
            address = sock.sock.getsockname()
        store(box, address)
        return 0

    def shutdown(self, s: object, how: object) -> int:
        """SD_SEND: posted sends still go out and complete, then the stream is half-closed (S10.1)."""
        sock = self.parts.sockets.get(s)
        if how not in (SD_RECEIVE, SD_SEND, SD_BOTH) or not isinstance(how, int):
            raise WSAError(WSAErr.WSAEINVAL)
        engine = sock.engine
        if engine.stream and engine.state != CONNECTED:
            raise WSAError(WSAErr.WSAENOTCONN)
        sock.shutdown(send=how != SD_RECEIVE, receive=how != SD_SEND)
        if engine.stream and how != SD_RECEIVE:
            self.io.call(_half_close, sock)
        return 0

    def close(self, s: object) -> int:
        """Close: pending operations complete with ``WSA_OPERATION_ABORTED``; the handle dies at once (S10.2)."""
        sock = self.parts.sockets.pop(s)
        sock.handoff.close()
        holder = sock.program_sock if sock.program_sock is not None else sock.host
        if holder is not None:  # (none yet: a lazy host socket, never in the table)
            with self.parts.by_fd_lock:
                fd = holder.fileno()
                if self.parts.by_fd.get(fd) is sock:
                    del self.parts.by_fd[fd]
        if not self.io.here() and _idle(sock):
            # Nothing to abort or flush, no address another socket may want at once: the
            # loop closes it behind this call, which need not wait for that (a worker
            # that closes each served connection saves a round trip to the loop).
            try:
                self.io.wake(sock.close_here)
                return 0
            except RuntimeError:
                pass  # the loop is closed: close it here, below
        try:
            self.io.call(sock.close_here)
        except WSAError:
            sock.close_here()  # the loop is gone: nothing else can touch the socket
        return 0


def closed_meanwhile() -> WSAError:
    """A connect's answer when its socket was closed while it was under way: ``WSAEINTR``,
    as a blocking call interrupted by ``closesocket`` on Windows (S10.2)."""
    return WSAError(WSAErr.WSAEINTR, "the socket was closed")


#: States in which a close from another thread need not wait for the loop: a connected
#: socket's port stays the peer's business (its transport closes gracefully anyway), a
#: fresh one has none.  A bound or listening socket's address must be free on return.
_CLOSE_BEHIND = frozenset({SocketState.CONNECTED, SocketState.CREATED})


def _idle(sock: SocketAdapter) -> bool:
    """Nothing pending, queued or buffered, and no address to release (read from any
    thread: with the hand-off closed these can only shrink)."""
    engine = sock.engine
    transport = sock.transport
    return (
        engine.state in _CLOSE_BEHIND
        and not engine.pending.count
        and not sock.handoff
        and not engine.sendq
        and (transport is None or not transport.get_write_buffer_size())
    )


def _state_of(sock: _pysocket.socket) -> SocketState:
    """Where an existing socket is in its life (S16.1)."""
    try:
        if sock.getsockopt(_pysocket.SOL_SOCKET, _pysocket.SO_ACCEPTCONN):
            return LISTENING
    except OSError:
        pass
    try:
        sock.getpeername()
        return CONNECTED
    except OSError:
        pass
    try:
        name = sock.getsockname()
    except OSError:
        return CREATED
    bound = bool(name[1]) if isinstance(name, tuple) else bool(name)
    return BOUND if bound else CREATED


def _half_close(sock: SocketAdapter) -> None:
    sock.take_incoming()
    sock.pump()


def _bound(sock: _pysocket.socket) -> bool:
    try:
        return bool(sock.getsockname()[1])
    except OSError:
        return False
