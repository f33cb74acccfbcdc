"""What the provider is made of, and the few services its entry points share.

The provider is composed, not inherited: an :class:`IoLoop` (the loop and its
thread), a :class:`HandleTable` (process-unique handles), a
:class:`CompletionDoor` (the one way out of ``STATUS_PENDING``), a
:class:`ThreadWatch` (S10.4), the provider-wide fault plan (S12.1) and the
options.  The groups of entry points (:mod:`wsp_async._spi.lifecycle`,
:mod:`wsp_async._spi.sends`, :mod:`wsp_async._spi.receives`, :mod:`wsp_async._spi.control`, over :mod:`wsp_async._spi.posting`) each get this one
record and nothing else.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket as _pysocket
import threading
import weakref
from collections.abc import Callable
from typing import Any

import attrs

from .. import apc
from .._completion.door import CompletionDoor, RoutineLane, isolated
from .._completion.ioloop import IoLoop
from .._completion.threadwatch import ThreadWatch
from .._core.engine import Event, SocketEngine, SocketState
from .._core.handles import HandleTable
from .._core.operation import PendingCount
from .._io.adapter import SocketAdapter
from .._io.protocols import DatagramProtocol, StreamProtocol
from ..constants import AF_INET
from ..errors import WSAErr, WSAError
from ..faults import Fault, FaultPlan

__all__ = ["Parts"]


@attrs.define(eq=False)
class Parts:
    """The provider's parts (see the module docstring)."""

    io: IoLoop
    door: CompletionDoor
    sockets: HandleTable[SocketAdapter]
    threads: ThreadWatch
    loop_target: apc.LoopTarget
    max_pending: int = 10000
    max_pending_bytes: int | None = None
    debug: bool = False
    slow_routine: float = 0.05
    #: Provider-wide faults; ``faulty`` is the one flag the hot path reads.  Set once
    #: any fault is armed, on any socket or provider-wide, and never cleared.
    faults: FaultPlan = attrs.field(factory=FaultPlan)
    faulty: bool = False
    #: Some socket's drain was slowed or stalled (``inject(delay_drain=...)``); never
    #: cleared, like ``faulty``.
    slowed: bool = False
    #: Anything that must see every post: faults on any socket, a slowed drain, the
    #: verifier or a tracer.  The asyncio face's lean paths read this one flag instead
    #: of the socket's own fault plan and drain delay (:meth:`rewatch`).
    watched: bool = False
    #: Sockets whose transport is flushing after WSPCloseSocket, and a wake-up for close().
    closing: set[SocketAdapter] = attrs.field(factory=set)
    closing_changed: Callable[[], object] | None = None
    closed: bool = False
    #: The first ``close()`` claims the close under this lock; another thread's close
    #: returns once the first has closed every socket (never two wind-downs).
    close_lock: threading.Lock = attrs.field(factory=threading.Lock)
    close_begun: bool = False
    close_done: threading.Event = attrs.field(factory=threading.Event)
    #: Adopted sockets by file descriptor (S16.1), checked against the fd on lookup.
    by_fd: dict[int, SocketAdapter] = attrs.field(factory=dict)
    by_fd_lock: threading.Lock = attrs.field(factory=threading.Lock)
    #: closesocket of a handle (the provider's, set once it is made): what CloseHandle
    #: of a socket does (:func:`wsp_async.iocp.CloseHandle`).
    close_handle: Callable[[int], object] | None = None

    #: The bound methods every adapter is given, made once: a bound method is a new
    #: object each time it is read, and each one an adapter kept was one more object per
    #: socket for the garbage collector to walk (issue 26).
    hooks: tuple[Any, ...] = attrs.field(init=False, default=())

    def __attrs_post_init__(self) -> None:
        self.hooks = (self.io.wake, self._closing, self.io.call, self.io.here)
        self.rewatch()
        _ALL.add(self)

    def after_fork(self) -> None:
        """In a child made by fork, a provider whose loop's thread stayed in the parent
        is closed without a word to that loop (it is the parent's too): its handles name
        nothing here (WSAENOTSOCK, S9), and its sockets are left as they are."""
        self.io.after_fork()
        if self.io.gone:
            self.closed = self.close_begun = True
            self.threads.closed = True
            self.sockets.after_fork()

    def rewatch(self) -> None:
        """Recompute :attr:`watched` after ``faulty``, ``slowed``, ``debug`` or the tracer
        changed."""
        self.watched = self.faulty or self.slowed or self.debug or self.door.tracer is not None

    def new_socket(
        self,
        sock: _pysocket.socket | None,
        family: int,
        overlapped: bool,
        state: SocketState = SocketState.CREATED,
        capacity: int = 65536,
        stream: bool | None = None,
        host_kind: tuple[int, int] | None = None,
    ) -> SocketAdapter:
        """Register a fresh handle for ``sock`` with its engine and adapter; ``stream``:
        whether it is a stream socket, when the caller knows (else ``sock.type`` says, a
        property that costs four Python calls).  ``sock`` None: a stream socket whose
        host socket is made when first needed, of ``host_kind`` (family, type)."""
        if sock is None:
            stream = True
        else:
            sock.setblocking(False)
            if stream is None:
                stream = sock.type == _pysocket.SOCK_STREAM
        engine = SocketEngine(
            stream=stream,
            family=family,
            overlapped=overlapped,
            pending=PendingCount(self.max_pending, self.max_pending_bytes, self.io),
        )
        engine.state = state
        engine.capacity = capacity
        lane = RoutineLane(self.debug, self.slow_routine, self.door.tracer)

        wake, closing, call, here = self.hooks

        def make(handle: int) -> SocketAdapter:
            adapter = SocketAdapter(
                handle,
                sock,
                engine,
                self.door,
                self.io.loop,
                wake,
                closing,
                lane,
                self.debug,
                call,
                here,
                host_kind,
            )
            adapter.closesocket = self.close_handle
            return adapter

        return self.sockets.add(make)

    def _closing(self, sock: SocketAdapter, starting: bool) -> None:
        if starting:
            self.closing.add(sock)
        elif sock in self.closing:
            self.closing.discard(sock)
            if self.closing_changed is not None:
                self.closing_changed()

    def draw_fault(self, sock: SocketAdapter, kind: str) -> Fault | None:
        local = sock.engine.faults.draw(kind) if sock.engine.faults else None
        shared = self.faults.draw(kind) if self.faults else None
        return local or shared

    async def attach_stream(self, sock: SocketAdapter) -> None:
        host = sock.sock
        if sock.closed or host.fileno() < 0:
            # Closed between the start of this task and its first step (an adoption
            # that did not wait for it, S15.2): the host socket is gone, and a
            # transport made on its number would be half made (uvloop's) or another's.
            return
        sock.attaching = host  # a close meanwhile leaves the host socket to the transport
        try:
            loop: Any = self.io.loop
            make = getattr(loop, "_create_connection_transport", None)
            if make is not None:
                # A stock asyncio loop: what connect_accepted_socket does after its check
                # of the socket's type against ``asyncio.base_events.socket`` -- a name
                # CPython's own tests replace with a mock while the Proactor, and so this
                # loop lent to its thread, runs (the type was checked at adoption).
                await make(host, lambda: StreamProtocol(sock), None, None, server_side=True)
            else:
                await loop.connect_accepted_socket(lambda: StreamProtocol(sock), host)
        finally:
            sock.attaching = None
            if sock.host is not host or sock.closed:
                # Closed or made fresh meanwhile (its transport, if any, was aborted by
                # ``attach``): the host socket was left for us to close.
                host.close()
        sock.pump()

    def ensure_datagram_transport(self, sock: SocketAdapter) -> None:
        """A bound or connected datagram socket receives through a datagram transport."""
        if sock.transport is not None:
            return

        async def attach() -> None:
            # One transport per socket: a bind and a connect in one step of the loop's
            # thread (or on two threads) each asked for one, and both were made on the
            # one descriptor -- on stock asyncio the socket then refused its sends
            # (WSAENOTSOCK), on uvloop the first transport was never closed.  The one
            # being made counts (``attaching``), as a stream socket's does.
            host = sock.host
            if sock.transport is not None or sock.closed or sock.attaching or host is None:
                return
            sock.attaching = host  # a close meanwhile leaves the host socket to the transport
            try:
                await self.io.loop.create_datagram_endpoint(
                    lambda: DatagramProtocol(sock), sock=host
                )
            finally:
                sock.attaching = None
                if sock.transport is None and sock.handoff.closed:  # (``closed``, read again)
                    host.close()  # closed while it was made (its transport was aborted)

        self.io.run_or_start(attach())

    def implicit_bind(self, sock: SocketAdapter) -> None:
        """A datagram sent from an unbound socket binds it first, as Winsock does."""
        if sock.engine.state != SocketState.CREATED:
            return
        wildcard = "0.0.0.0" if sock.engine.family == AF_INET else "::"
        try:
            sock.sock.bind((wildcard, 0))
        except OSError:
            raise WSAError(WSAErr.WSAEINVAL, "the socket cannot be implicitly bound") from None
        sock.engine.move(Event.BIND)
        self.ensure_datagram_transport(sock)

    def cancel_issued_by(self, target: Any) -> None:
        """S10.4 on the loop: every socket drops what the gone thread issued."""
        if target is self.loop_target:
            return
        for sock in self.sockets_now():
            sock.cancel_issued_by(target)

    def sockets_now(self) -> list[SocketAdapter]:
        return self.sockets.items()

    # ------------------------------------------------------------------ provider close
    def close(self, timeout: float) -> None:
        """Close every socket, aborting what is pending (S2.4); see ``Provider.close``.

        Idempotent and safe from any number of threads at once: one caller closes; the
        others return once the sockets are closed (at once on the loop's own thread,
        which the closing caller may be waiting for)."""
        with self.close_lock:
            first, self.close_begun = not self.close_begun, True
        if not first:
            if not self.io.here():
                self.close_done.wait(timeout)
            return
        try:
            self._close(timeout)
        finally:
            self.close_done.set()

    def _close(self, timeout: float) -> None:
        if self.closed:
            return
        io = self.io
        if io.loop.is_closed() or io.here():
            self.close_here()
            io.stop()
            return
        try:
            io.call(self.close_here)
        except WSAError:
            self.close_here()
        if not io.embedded:
            with contextlib.suppress(RuntimeError):
                asyncio.run_coroutine_threadsafe(self.wind_down(timeout), io.loop)

    def close_here(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.threads.closed = True
        self.io.release()
        for sock in self.sockets.close():
            sock.handoff.close()
            isolated(sock.close_here)

    async def wind_down(self, timeout: float) -> None:
        """On the loop, after :meth:`close`: wait (at most ``timeout``) until the closing
        transports have handed their bytes on and let go of their sockets; abort the rest.
        Then an owned loop stops."""
        loop = self.io.loop
        changed = asyncio.Event()
        self.closing_changed = changed.set
        deadline = loop.time() + timeout
        while self.closing and loop.time() < deadline:
            changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), deadline - loop.time())
        aborted = False
        for sock in list(self.closing):
            if sock.transport is not None:
                sock.transport.abort()  # a peer that never read: give up on its bytes
                aborted = True
        self.closing.clear()
        if aborted:
            await asyncio.sleep(0)  # an abort lets go of its socket on the next iteration
        self.io.stop()


#: Every provider's parts, for the child of a fork.
_ALL: weakref.WeakSet[Parts] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for parts in list(_ALL):
        parts.after_fork()


os.register_at_fork(after_in_child=_after_fork_in_child)
