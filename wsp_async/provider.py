"""The provider: the SPI face (``WSPSend`` and friends) over one I/O loop (SPEC S1-S10).

Every ``WSP*`` method keeps the ``ws2spi.h`` name and parameter order, returns
``0``/``SOCKET_ERROR`` (or a handle, or a BOOL) and reports its error through the
``lpErrno`` box -- never by raising (S0).  Each is safe to call from any thread,
including from inside completion routines (S6.5).  The engine behind them is in
:mod:`wsp_async._socket` (one emulated socket), :mod:`wsp_async._sendqueue` and
:mod:`wsp_async._recvqueue` (the I/O-free decisions).

Threads: the provider either owns its I/O loop (started in a daemon thread) or
is *embedded* in a running loop.  A call made on the I/O loop's thread acts at
once (the fast path); a call from another thread that must touch the transport
is queued to the loop (sends, receives: they pend) or waits for a round trip
(connect, accept, close, ioctl).  Blocking waits refuse to run on the loop's
thread (S7.3): they fail with ``WSAEWOULDBLOCK`` instead of deadlocking.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import itertools
import logging
import socket as _pysocket
import struct
import threading
import time
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from . import apc
from ._ops import IOCTL, RECV, SEND, Operation
from ._socket import BOUND, CONNECTED, CONNECTING, CREATED, LISTENING, Socket
from .constants import (
    AF_INET,
    AF_INET6,
    FIONBIO,
    FIONREAD,
    INVALID_SOCKET,
    IPPROTO_TCP,
    IPPROTO_UDP,
    MSG_DONTROUTE,
    MSG_OOB,
    MSG_PARTIAL,
    MSG_PEEK,
    SD_BOTH,
    SD_RECEIVE,
    SD_SEND,
    SIO_FLUSH,
    SO_ACCEPTCONN,
    SO_BROADCAST,
    SO_ERROR,
    SO_KEEPALIVE,
    SO_LINGER,
    SO_MAX_MSG_SIZE,
    SO_RCVBUF,
    SO_REUSEADDR,
    SO_SNDBUF,
    SO_TYPE,
    SOCK_DGRAM,
    SOCK_STREAM,
    SOCKET_ERROR,
    SOL_SOCKET,
    STATUS_PENDING,
    TCP_NODELAY,
    UDP_MAX_MSG_SIZE_V4,
    UDP_MAX_MSG_SIZE_V6,
    WSA_FLAG_OVERLAPPED,
)
from .errors import WSAErr, WSAError, wsa_code_of
from .events import WSAEVENT, WSASetLastError
from .faults import Fault, FaultPlan
from .structs import WSABUF, WSAOVERLAPPED, WSATHREADID, is_box, store

__all__ = ["Provider"]

log = logging.getLogger("wsp_async")

T = TypeVar("T")

_FAMILIES = {AF_INET: _pysocket.AF_INET, AF_INET6: _pysocket.AF_INET6}
_TYPES = {SOCK_STREAM: _pysocket.SOCK_STREAM, SOCK_DGRAM: _pysocket.SOCK_DGRAM}
_PROTOCOLS = {SOCK_STREAM: (0, IPPROTO_TCP), SOCK_DGRAM: (0, IPPROTO_UDP)}
_SEND_FLAGS = MSG_OOB | MSG_DONTROUTE | MSG_PARTIAL
_RECV_FLAGS = MSG_OOB | MSG_PEEK | MSG_PARTIAL

#: Winsock socket options that pass straight through to the host socket.
_PASSTHROUGH = {
    (SOL_SOCKET, SO_RCVBUF): (_pysocket.SOL_SOCKET, _pysocket.SO_RCVBUF),
    (SOL_SOCKET, SO_REUSEADDR): (_pysocket.SOL_SOCKET, _pysocket.SO_REUSEADDR),
    (SOL_SOCKET, SO_KEEPALIVE): (_pysocket.SOL_SOCKET, _pysocket.SO_KEEPALIVE),
    (IPPROTO_TCP, TCP_NODELAY): (_pysocket.IPPROTO_TCP, _pysocket.TCP_NODELAY),
}

_BUFFER_TYPES = (bytes, bytearray)


#: What the internal send/receive paths return for "started, completes later" (S2.2):
#: cheaper than raising, on the path every pending operation takes.
_PENDING = -2


def _io_pending(lpErrno: object) -> int:
    """Report WSA_IO_PENDING (S2.2) and return SOCKET_ERROR."""
    try:
        lpErrno.value = WSAErr.WSA_IO_PENDING  # type: ignore[attr-defined]
    except Exception:
        pass
    WSASetLastError(WSAErr.WSA_IO_PENDING)
    return SOCKET_ERROR


def spi_result(rc: int, lpErrno: object) -> int:
    """What an SPI method returns for an internal path's result (for the faces)."""
    return _io_pending(lpErrno) if rc == _PENDING else rc


def _fail(lpErrno: object, exc: BaseException) -> int:
    """Turn any exception into a Winsock code in ``lpErrno`` (no traceback leaves an SPI call)."""
    if isinstance(exc, WSAError):
        code = exc.winerror
    elif isinstance(exc, OSError):
        code = wsa_code_of(exc, WSAErr.WSAEINVAL)
    else:
        log.exception("unexpected error inside an SPI call", exc_info=exc)
        code = WSAErr.WSAEINVAL
    store(lpErrno, code)
    WSASetLastError(code)
    return code


def _capture(lpBuffers: object, count: object, writable: bool) -> tuple[list[Any], int]:
    """Read the transient ``WSABUF`` array now (S5.1): the data buffers, and their total.

    Whole buffers are kept as they are (no view, no copy); a ``len`` shorter than
    its buffer becomes a memoryview slice.  Receives get writable byte views.
    Anything malformed is ``WSAEFAULT`` (S9).
    """
    if type(count) is not int or count < 0:
        raise WSAError(WSAErr.WSAEFAULT, "dwBufferCount is not a count")
    try:
        seq: Any = lpBuffers
        entries: Any = seq[:count] if count != len(seq) else seq
    except Exception:
        raise WSAError(WSAErr.WSAEFAULT, "lpBuffers is not a sequence of WSABUF") from None
    if len(entries) != count:
        raise WSAError(WSAErr.WSAEFAULT, "dwBufferCount is larger than lpBuffers")
    views: list[Any] = []
    total = 0
    for entry in entries:
        if type(entry) is not WSABUF:
            raise WSAError(WSAErr.WSAEFAULT, "lpBuffers holds something that is not a WSABUF")
        n = entry.len
        data = entry.buf
        if type(n) is not int or n < 0:
            raise WSAError(WSAErr.WSAEFAULT, "WSABUF.len is not a length")
        if not writable and type(data) in _BUFFER_TYPES:
            size = len(data)
        else:
            try:
                view = memoryview(data)
            except TypeError:
                raise WSAError(WSAErr.WSAEFAULT, "WSABUF.buf is not bytes-like") from None
            if writable and view.readonly:
                raise WSAError(WSAErr.WSAEFAULT, "WSABUF.buf of a receive is read-only")
            if view.format != "B" or view.ndim != 1:
                view = view.cast("B")
            size = view.nbytes
            data = view
        if n > size:
            raise WSAError(WSAErr.WSAEFAULT, "WSABUF.buf is shorter than WSABUF.len")
        if n < size:
            data = memoryview(data)[:n]
        views.append(data)
        total += n
    return views, total


def _skip(buffers: list[Any], n: int) -> list[Any]:
    """The buffers without their first ``n`` bytes (views, no copy)."""
    out: list[Any] = []
    for buf in buffers:
        size = memoryview(buf).nbytes
        if n >= size:
            n -= size
            continue
        out.append(memoryview(buf).cast("B")[n:] if n else buf)
        n = 0
    return out


class Provider:
    """A Winsock service provider emulated over asyncio transports (SPEC S1).

    ``Provider()`` starts its own I/O loop in a daemon thread (uvloop when it
    imports and ``use_uvloop`` is true); ``Provider(loop=running_loop)`` lives on
    the caller's loop.  Use it as a context manager (``with`` or ``async with``);
    closing it completes every pending operation with ``WSA_OPERATION_ABORTED``
    (S2.4) and closes every socket.

    Options: ``max_pending`` (outstanding overlapped operations per socket,
    default 10000, beyond which posts fail with ``WSAEWOULDBLOCK``),
    ``max_pending_bytes`` (their bytes, beyond which ``WSAENOBUFS``), ``debug``
    (the verifier of S12.3, with ``slow_routine`` its threshold in seconds for a
    routine that blocks its loop), ``tracer`` (a callable receiving trace records, S12.2).
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop | None = None,
        *,
        max_pending: int = 10000,
        max_pending_bytes: int | None = None,
        debug: bool = False,
        use_uvloop: bool = True,
        tracer: Callable[[Any], object] | None = None,
        slow_routine: float = 0.05,
    ) -> None:
        self.max_pending = max_pending
        #: Verifier threshold (seconds) for a routine that blocks its loop (S12.3).
        self.slow_routine = slow_routine
        self.max_pending_bytes = max_pending_bytes
        self.debug = debug
        self.tracer = tracer
        self._sockets: dict[int, Socket] = {}
        self._handles = itertools.count(0x104, 4)  # Windows hands out multiples of 4
        self._lock = threading.Lock()
        self._closed = False
        self._result_cond = threading.Condition()
        self._result_waiters = 0
        self._watched: set[object] = set()
        self._thread: threading.Thread | None = None
        #: Fault injection (S12.1): provider-wide faults; ``_faulty`` is the one
        #: flag the hot path reads, true once any fault was armed anywhere.
        self._faults = FaultPlan()
        self._faulty = False
        #: Sockets whose transport is closing (flushing) after WSPCloseSocket / close().
        self._closing: set[Socket] = set()
        self._closing_changed = asyncio.Event()
        #: How long close() lets closing transports flush to the kernel (seconds).
        self.close_timeout = 5.0
        if loop is None:
            self.loop = self._new_loop(use_uvloop)
            self.embedded = False
            self._start_thread()
        else:
            self.loop = loop
            self.embedded = True
            if asyncio._get_running_loop() is loop:
                self._loop_ident = threading.get_ident()
            else:
                self._loop_ident = self._learn_loop_thread(loop)
        self._loop_target = apc.loop_target(self.loop, self._loop_ident)
        self._loop_target.add_exit_hook(self._io_loop_closed)

    # ------------------------------------------------------------------ loop plumbing
    @staticmethod
    def _new_loop(use_uvloop: bool) -> asyncio.AbstractEventLoop:
        if use_uvloop:
            try:
                import uvloop
            except ImportError:
                pass
            else:
                loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
                return loop
        return asyncio.new_event_loop()

    @staticmethod
    def _learn_loop_thread(loop: asyncio.AbstractEventLoop) -> int:
        box: concurrent.futures.Future[int] = concurrent.futures.Future()
        loop.call_soon_threadsafe(lambda: box.set_result(threading.get_ident()))
        return box.result(30)

    def _start_thread(self) -> None:
        ready = threading.Event()
        loop = self.loop

        def main() -> None:
            asyncio.set_event_loop(loop)
            self._loop_ident = threading.get_ident()
            loop.call_soon(ready.set)
            try:
                loop.run_forever()
                # Let closing transports finish their callbacks before the loop goes.
                for _ in range(3):
                    loop.run_until_complete(asyncio.sleep(0))
                loop.run_until_complete(loop.shutdown_asyncgens())
            finally:
                loop.close()

        self._thread = threading.Thread(target=main, name="wsp_async-io", daemon=True)
        self._thread.start()
        if not ready.wait(30):
            raise RuntimeError("the provider's I/O loop did not start")

    @property
    def loop_kind(self) -> str:
        """``"uvloop"`` or ``"asyncio"``: which loop backs the transports."""
        return "uvloop" if type(self.loop).__module__.startswith("uvloop") else "asyncio"

    def on_loop_thread(self) -> bool:
        return threading.get_ident() == self._loop_ident

    def _call_soon_threadsafe(self, fn: Callable[..., object], *args: Any) -> None:
        self.loop.call_soon_threadsafe(fn, *args)

    def _run_on_loop(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(*args)`` on the I/O loop and return its result (or raise its error)."""
        if threading.get_ident() == self._loop_ident:
            return fn(*args)
        future: concurrent.futures.Future[T] = concurrent.futures.Future()

        def call() -> None:
            try:
                future.set_result(fn(*args))
            except BaseException as exc:
                future.set_exception(exc)

        try:
            self.loop.call_soon_threadsafe(call)
        except RuntimeError:
            raise WSAError(WSAErr.WSAENETDOWN, "the provider's I/O loop is closed") from None
        return future.result()

    def _run_coro(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run a coroutine on the I/O loop from another thread and wait for its result."""
        try:
            future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        except RuntimeError:
            coro.close()
            raise WSAError(WSAErr.WSAENETDOWN, "the provider's I/O loop is closed") from None
        return future.result()

    def _refuse_blocking(self, what: str) -> WSAError:
        log.warning(
            "%s would block the provider's I/O loop thread; failing with WSAEWOULDBLOCK "
            "instead of deadlocking (SPEC S7.3; use the asyncio face to await it)",
            what,
        )
        return WSAError(WSAErr.WSAEWOULDBLOCK, f"{what} on the I/O loop thread")

    # ------------------------------------------------------------------ handles
    def _socket(self, s: object) -> Socket:
        try:
            sock: Socket | None = self._sockets.get(s)  # type: ignore[call-overload]
        except TypeError:
            sock = None
        if sock is None:
            raise WSAError(WSAErr.WSAENOTSOCK)
        return sock

    def _register(self, sock_factory: Callable[[int], Socket]) -> Socket:
        with self._lock:
            if self._closed:
                raise WSAError(WSAErr.WSAENETDOWN, "the provider is closed")
            handle = next(self._handles)
            sock = sock_factory(handle)
            self._sockets[handle] = sock
        return sock

    def sockets(self) -> list[int]:
        """Handles of the open sockets."""
        return list(self._sockets)

    # ------------------------------------------------------------------ threads
    def _watch(self, issuer: apc.ApcTarget) -> None:
        """Hear about the exit of a thread that issued operations (S10.4)."""
        if issuer in self._watched:
            return
        with self._lock:
            if issuer in self._watched:
                return
            self._watched.add(issuer)
        if not issuer.add_exit_hook(self._issuer_gone):
            self._watched.discard(issuer)

    def _issuer_gone(self, target: apc.ApcTarget) -> None:
        self._watched.discard(target)
        if self._closed or target is self._loop_target:
            return
        with contextlib.suppress(RuntimeError):
            self.loop.call_soon_threadsafe(self._cancel_issued_by, target)

    def _cancel_issued_by(self, target: object) -> None:
        for sock in list(self._sockets.values()):
            sock.cancel_issued_by(target)

    def _io_loop_closed(self, _target: object) -> None:
        """The I/O loop closed (embedded provider whose loop ended): complete everything."""
        if not self._closed:
            # For an embedded provider (the asyncio face's) the loop's end is its end.
            (log.debug if self.embedded else log.warning)(
                "the provider's I/O loop closed before the provider; aborting its I/O"
            )
            self._close_here()

    # ------------------------------------------------------------------ results
    def _wake_result_waiters(self) -> None:
        with self._result_cond:
            self._result_cond.notify_all()

    def _trace_completion(self, sock: Socket, op: Operation) -> None:
        tracer = self.tracer
        if tracer is not None:
            from .trace import completion_record

            tracer(completion_record(sock, op))

    def _trace_post(self, sock: Socket, op: Operation) -> None:
        tracer = self.tracer
        if tracer is not None:
            from .trace import post_record

            tracer(post_record(sock, op))

    # ------------------------------------------------------------------ life cycle
    def close(self) -> None:
        """Complete every pending operation (``WSA_OPERATION_ABORTED``), close every socket."""
        with self._lock:
            if self._closed:
                return
        if self.loop.is_closed():
            self._close_here()
        elif self.on_loop_thread():
            self._close_here()
            if not self.embedded:
                self.loop.stop()
        else:
            try:
                self._run_on_loop(self._close_here)
            except WSAError:
                self._close_here()
            if not self.embedded:
                # closesocket is graceful, and a kernel keeps sending after its
                # process let go: the loop lives on in its daemon thread until
                # the closing transports have handed their bytes on (bounded by
                # close_timeout), then stops by itself.  close() does not wait.
                with contextlib.suppress(RuntimeError):
                    asyncio.run_coroutine_threadsafe(self._wind_down(), self.loop)

    async def _wind_down(self) -> None:
        await self._let_transports_close(self.close_timeout)
        self.loop.stop()

    async def _let_transports_close(self, timeout: float) -> None:
        deadline = self.loop.time() + timeout
        while self._closing and self.loop.time() < deadline:
            self._closing_changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closing_changed.wait(), deadline - self.loop.time())
        for sock in list(self._closing):
            if sock.transport is not None:
                sock.transport.abort()  # a peer that never read: give up on its bytes
        self._closing.clear()

    def _transport_gone(self, sock: Socket) -> None:
        """A closing socket's transport finished closing (called on the loop)."""
        if sock in self._closing:
            self._closing.discard(sock)
            self._closing_changed.set()

    def _close_here(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            sockets = list(self._sockets.values())
            self._sockets.clear()
        for sock in sockets:
            try:
                sock.close_here()
            except Exception:
                log.exception("closing %r", sock)

    @property
    def closed(self) -> bool:
        return self._closed

    def __enter__(self) -> Provider:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> Provider:
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.embedded or self.on_loop_thread():
            self.close()
        else:
            await asyncio.get_running_loop().run_in_executor(None, self.close)

    # ================================================================== fault injection
    def inject(
        self,
        s: int | None = None,
        *,
        op: str = "send",
        error: int | None = None,
        at: str = "post",
        nth: int = 1,
        every: bool = False,
        delay_drain: float | str | None = "unchanged",
    ) -> None:
        """Arm a fault on socket ``s`` (or, with ``s=None``, on every socket) -- SPEC S12.1.

        ``error`` makes the ``nth`` operation of kind ``op`` (``"send"``,
        ``"recv"`` or ``"any"``) -- or, with ``every``, the ``nth`` and all after
        it -- fail with that WSA code: at once (``at="post"``: SOCKET_ERROR,
        nothing started, no completion, S2.3) or as its completion status
        (``at="completion"``: WSA_IO_PENDING, then the error through the normal
        completion path, in posting order, S2.2).  ``delay_drain`` slows the
        socket's drain to one hand-on per that many seconds (``math.inf``
        stalls it; ``None`` restores full speed): a stalled peer without a
        second process.  See :mod:`wsp_async.faults`.
        """
        sock = None if s is None else self._socket(s)
        if error is not None:
            fault = Fault(op, int(error), at, nth, every)  # type: ignore[arg-type]
            (self._faults if sock is None else sock.faults).add(fault)
            self._faulty = True
        if delay_drain != "unchanged":
            if sock is None:
                raise ValueError("delay_drain needs a socket")
            delay = None if delay_drain is None else float(delay_drain)
            self._run_on_loop(sock.set_drain_delay, delay)

    def clear_faults(self, s: int | None = None) -> None:
        """Disarm the faults of socket ``s`` (or the provider-wide ones)."""
        (self._faults if s is None else self._socket(s).faults).clear()

    def _draw_fault(self, sock: Socket, kind: str) -> Fault | None:
        local = sock.faults.draw(kind) if sock.faults else None
        shared = self._faults.draw(kind) if self._faults else None
        return local or shared

    # ================================================================== socket life cycle
    def WSPSocket(
        self,
        af: int,
        type: int,
        protocol: int,
        lpProtocolInfo: object,
        g: int,
        dwFlags: int,
        lpErrno: object,
    ) -> int:
        """Create a socket; returns its handle or ``INVALID_SOCKET``."""
        try:
            family = _FAMILIES.get(af)
            if family is None:
                raise WSAError(WSAErr.WSAEAFNOSUPPORT)
            kind = _TYPES.get(type)
            if kind is None:
                raise WSAError(WSAErr.WSAESOCKTNOSUPPORT)
            if protocol not in _PROTOCOLS[type]:
                raise WSAError(WSAErr.WSAEPROTONOSUPPORT)
            if not isinstance(dwFlags, int):
                raise WSAError(WSAErr.WSAEINVAL)
            pysock = _pysocket.socket(family, kind)
            pysock.setblocking(False)
            sock = self._register(
                lambda handle: Socket(
                    self,
                    handle,
                    af,
                    type,
                    protocol or _PROTOCOLS[type][1],
                    bool(dwFlags & WSA_FLAG_OVERLAPPED),
                    pysock,
                )
            )
            return sock.handle
        except BaseException as exc:
            _fail(lpErrno, exc)
            return INVALID_SOCKET

    def WSPBind(self, s: int, name: object, namelen: object, lpErrno: object) -> int:
        try:
            sock = self._socket(s)
            if not isinstance(name, tuple):
                raise WSAError(WSAErr.WSAEFAULT, "name is not a sockaddr tuple")
            if sock.state != CREATED:
                raise WSAError(WSAErr.WSAEINVAL, "already bound")
            sock.sock.bind(name)
            sock.state = BOUND
            if not sock.is_stream:
                self._ensure_datagram_transport(sock)
            return 0
        except BaseException as exc:
            _fail(lpErrno, exc)
            return SOCKET_ERROR

    def WSPListen(self, s: int, backlog: int, lpErrno: object) -> int:
        try:
            sock = self._socket(s)
            if not sock.is_stream:
                raise WSAError(WSAErr.WSAEOPNOTSUPP)
            if sock.state not in (BOUND, LISTENING):
                raise WSAError(WSAErr.WSAEINVAL, "not bound")
            sock.sock.listen(max(0, min(int(backlog), 4096)))
            sock.state = LISTENING
            return 0
        except BaseException as exc:
            _fail(lpErrno, exc)
            return SOCKET_ERROR

    def WSPAccept(
        self,
        s: int,
        addr: object,
        addrlen: object,
        lpfnCondition: object,
        dwCallbackData: object,
        lpErrno: object,
    ) -> int:
        """Accept a connection; blocks unless the socket is non-blocking (``FIONBIO``).

        ``addr``, when given, is a box that receives the peer's sockaddr tuple.
        Conditional acceptance (``lpfnCondition``) is not emulated: it is ignored.
        """
        try:
            sock = self._socket(s)
            if addr is not None and not is_box(addr):
                raise WSAError(WSAErr.WSAEFAULT, "addr is not a box")
            if sock.state != LISTENING:
                raise WSAError(WSAErr.WSAEINVAL, "not listening")
            if sock.nonblocking or self.on_loop_thread():
                try:
                    conn, peer = sock.sock.accept()
                except BlockingIOError:
                    raise WSAError(WSAErr.WSAEWOULDBLOCK) from None
                child = self._adopt(sock, conn)
                if self.on_loop_thread():
                    self.loop.create_task(self._attach_stream(child))
                else:
                    self._run_coro(self._attach_stream(child))
            else:
                child, peer = self._run_coro(self.accept_async(sock))
            store(addr, peer)
            return child.handle
        except BaseException as exc:
            _fail(lpErrno, exc)
            return INVALID_SOCKET

    def _adopt(self, listener: Socket, conn: _pysocket.socket) -> Socket:
        conn.setblocking(False)
        child = self._register(
            lambda handle: Socket(
                self,
                handle,
                listener.family,
                listener.type,
                listener.proto,
                listener.overlapped,
                conn,
            )
        )
        child.state = CONNECTED
        child.capacity = listener.capacity
        child.sendq.capacity = listener.capacity
        return child

    async def _attach_stream(self, sock: Socket, connected: bool = True) -> None:
        def factory() -> asyncio.Protocol:
            from ._socket import _StreamProtocol

            return _StreamProtocol(sock)

        await self.loop.connect_accepted_socket(factory, sock.sock)
        sock.pump()

    async def accept_async(self, sock: Socket) -> tuple[Socket, Any]:
        """Accept on the loop (the blocking path of WSPAccept, and the asyncio face)."""
        task = asyncio.ensure_future(self.loop.sock_accept(sock.sock))
        sock.accepting.add(task)
        try:
            conn, peer = await task
        except asyncio.CancelledError:
            if sock.closed:
                raise WSAError(WSAErr.WSAEINTR, "the listening socket was closed") from None
            raise
        finally:
            sock.accepting.discard(task)
        child = self._adopt(sock, conn)
        await self._attach_stream(child)
        return child, peer

    def WSPConnect(
        self,
        s: int,
        name: object,
        namelen: object,
        lpCallerData: object,
        lpCalleeData: object,
        lpSQOS: object,
        lpGQOS: object,
        lpErrno: object,
    ) -> int:
        """Connect a stream socket, or set a datagram socket's default peer (S11.3).

        On a non-blocking socket, or on the I/O loop's thread, a stream connect
        starts in the background and returns ``WSAEWOULDBLOCK``, as on Windows.
        """
        try:
            sock = self._socket(s)
            if not isinstance(name, tuple):
                raise WSAError(WSAErr.WSAEFAULT, "name is not a sockaddr tuple")
            if not sock.is_stream:
                sock.sock.connect(name)
                sock.state = CONNECTED
                self._ensure_datagram_transport(sock)
                return 0
            if sock.state == CONNECTED:
                raise WSAError(WSAErr.WSAEISCONN)
            if sock.state == CONNECTING:
                raise WSAError(WSAErr.WSAEALREADY)
            if sock.state == LISTENING:
                raise WSAError(WSAErr.WSAEINVAL)
            if sock.nonblocking or self.on_loop_thread():
                sock.state = CONNECTING
                if self.on_loop_thread():
                    self.loop.create_task(self._connect_in_background(sock, name))
                else:
                    self.loop.call_soon_threadsafe(
                        lambda: self.loop.create_task(self._connect_in_background(sock, name))
                    )
                raise WSAError(WSAErr.WSAEWOULDBLOCK, "connect started")
            self._run_coro(self.connect_async(sock, name))
            return 0
        except BaseException as exc:
            _fail(lpErrno, exc)
            return SOCKET_ERROR

    async def connect_async(self, sock: Socket, name: tuple[Any, ...]) -> None:
        """Connect on the loop (the blocking path of WSPConnect, and the asyncio face)."""
        sock.state = CONNECTING
        future = asyncio.ensure_future(self.loop.sock_connect(sock.sock, name))
        sock.connect_future = future
        try:
            await future
        except asyncio.CancelledError:
            if sock.closed:
                raise WSAError(WSAErr.WSAEINTR, "the socket was closed") from None
            raise
        except BaseException:
            if not sock.closed:
                sock.state = BOUND if self._is_bound(sock) else CREATED
            raise
        finally:
            sock.connect_future = None
        sock.state = CONNECTED
        await self._attach_stream(sock)

    async def _connect_in_background(self, sock: Socket, name: tuple[Any, ...]) -> None:
        try:
            await self.connect_async(sock, name)
        except BaseException as exc:
            sock.so_error = wsa_code_of(exc, WSAErr.WSAECONNREFUSED)

    @staticmethod
    def _is_bound(sock: Socket) -> bool:
        try:
            return bool(sock.sock.getsockname()[1])
        except OSError:
            return False

    def _ensure_datagram_transport(self, sock: Socket) -> None:
        if sock.transport is not None or sock.closed:
            return

        async def attach() -> None:
            if sock.transport is not None or sock.closed:
                return
            from ._socket import _DatagramProtocol

            await self.loop.create_datagram_endpoint(
                lambda: _DatagramProtocol(sock), sock=sock.sock
            )

        if self.on_loop_thread():
            self.loop.create_task(attach())
        else:
            self._run_coro(attach())

    def _implicit_bind(self, sock: Socket) -> None:
        """A datagram sent from an unbound socket binds it first, as Winsock does."""
        if sock.state != CREATED:
            return
        wildcard = "0.0.0.0" if sock.family == AF_INET else "::"
        try:
            sock.sock.bind((wildcard, 0))
        except OSError:
            raise WSAError(WSAErr.WSAEINVAL, "the socket cannot be implicitly bound") from None
        sock.state = BOUND
        self._ensure_datagram_transport(sock)

    def WSPShutdown(self, s: int, how: int, lpErrno: object) -> int:
        """SD_SEND: posted sends still go out and complete, then the stream is half-closed (S10.1)."""
        try:
            sock = self._socket(s)
            if how not in (SD_RECEIVE, SD_SEND, SD_BOTH):
                raise WSAError(WSAErr.WSAEINVAL)
            if sock.is_stream and sock.state != CONNECTED:
                raise WSAError(WSAErr.WSAENOTCONN)
            if how in (SD_RECEIVE, SD_BOTH):
                sock.recv_shut = True
            if how in (SD_SEND, SD_BOTH):
                with sock.lock:
                    sock.send_shut = True
                if sock.is_stream:
                    self._run_on_loop(self._half_close, sock)
            return 0
        except BaseException as exc:
            _fail(lpErrno, exc)
            return SOCKET_ERROR

    @staticmethod
    def _half_close(sock: Socket) -> None:
        sock.eof_after_drain = True
        sock.take_incoming()
        sock.pump()

    def WSPCloseSocket(self, s: int, lpErrno: object) -> int:
        """Close: pending operations complete with ``WSA_OPERATION_ABORTED``; the handle dies at once (S10.2)."""
        try:
            with self._lock:
                sock = self._sockets.pop(s, None)
            if sock is None:
                raise WSAError(WSAErr.WSAENOTSOCK)
            with sock.lock:
                sock.closed = True
            try:
                self._run_on_loop(sock.close_here)
            except WSAError:
                sock.close_here()  # the loop is gone: nothing else can touch the socket
            return 0
        except BaseException as exc:
            _fail(lpErrno, exc)
            return SOCKET_ERROR

    # ================================================================== ioctl and options
    def WSPIoctl(
        self,
        s: int,
        dwIoControlCode: int,
        lpvInBuffer: object,
        cbInBuffer: object,
        lpvOutBuffer: object,
        cbOutBuffer: object,
        lpcbBytesReturned: object,
        lpOverlapped: object,
        lpCompletionRoutine: object,
        lpThreadId: object,
        lpErrno: object,
    ) -> int:
        """``FIONBIO``, ``FIONREAD`` and ``SIO_FLUSH`` (S10.3).

        These complete at once; with ``lpOverlapped``/a routine the completion
        notice is issued before the call returns 0 (S2.1).
        """
        try:
            sock = self._socket(s)
            op = self._overlapped_op(
                sock, IOCTL, [], 0, 0, lpOverlapped, lpCompletionRoutine, lpThreadId
            )
            if lpcbBytesReturned is not None and not is_box(lpcbBytesReturned):
                raise WSAError(WSAErr.WSAEFAULT)
            returned = 0
            if dwIoControlCode == FIONBIO:
                value = getattr(lpvInBuffer, "value", lpvInBuffer)
                if isinstance(value, bytes | bytearray):
                    value = int.from_bytes(value[:4], "little")
                if not isinstance(value, int):
                    raise WSAError(WSAErr.WSAEFAULT, "FIONBIO takes an int")
                sock.nonblocking = bool(value)
            elif dwIoControlCode == FIONREAD:
                if not is_box(lpvOutBuffer):
                    raise WSAError(WSAErr.WSAEFAULT, "FIONREAD writes into a box")
                store(lpvOutBuffer, self._run_on_loop(sock.receiver.available))
                returned = 4
            elif dwIoControlCode == SIO_FLUSH:
                if not sock.is_stream:
                    raise WSAError(WSAErr.WSAEOPNOTSUPP)
                self._run_on_loop(sock.flush)
            else:
                raise WSAError(WSAErr.WSAEINVAL, f"unsupported ioctl {dwIoControlCode:#x}")
            store(lpcbBytesReturned, returned)
            if op is not None:
                op.counted = False
                self._prime(op)
                sock.finish(op, 0, returned)
            return 0
        except BaseException as exc:
            _fail(lpErrno, exc)
            return SOCKET_ERROR

    @staticmethod
    def _optval(optval: object) -> int:
        value = getattr(optval, "value", optval)
        if isinstance(value, bool):
            return int(value)
        if isinstance(value, int):
            return value
        if isinstance(value, bytes | bytearray | memoryview) and len(value) >= 4:
            return int.from_bytes(bytes(value[:4]), "little", signed=True)
        raise WSAError(WSAErr.WSAEFAULT, "optval is not an int or 4 bytes")

    def WSPSetSockOpt(
        self, s: int, level: int, optname: int, optval: object, optlen: object, lpErrno: object
    ) -> int:
        """``SO_SNDBUF`` sets the emulated send-buffer capacity (S4.1); others pass to the host."""
        try:
            sock = self._socket(s)
            key = (level, optname)
            if key == (SOL_SOCKET, SO_SNDBUF):
                value = self._optval(optval)
                if value < 0:
                    raise WSAError(WSAErr.WSAEINVAL, "SO_SNDBUF must be >= 0")
                self._run_on_loop(sock.set_capacity, value)
            elif key == (SOL_SOCKET, SO_BROADCAST):
                value = self._optval(optval)
                sock.sock.setsockopt(_pysocket.SOL_SOCKET, _pysocket.SO_BROADCAST, int(bool(value)))
                sock.broadcast = bool(value)
            elif key == (SOL_SOCKET, SO_LINGER):
                raw = getattr(optval, "value", optval)
                if isinstance(raw, tuple) and len(raw) == 2:
                    onoff, seconds = raw
                elif isinstance(raw, bytes | bytearray) and len(raw) >= 4:
                    onoff, seconds = struct.unpack("<HH", bytes(raw[:4]))
                else:
                    raise WSAError(WSAErr.WSAEFAULT, "SO_LINGER takes (onoff, seconds)")
                sock.sock.setsockopt(
                    _pysocket.SOL_SOCKET, _pysocket.SO_LINGER, struct.pack("ii", onoff, seconds)
                )
            elif key in _PASSTHROUGH:
                host_level, host_name = _PASSTHROUGH[key]
                sock.sock.setsockopt(host_level, host_name, self._optval(optval))
            else:
                raise WSAError(WSAErr.WSAENOPROTOOPT)
            return 0
        except BaseException as exc:
            _fail(lpErrno, exc)
            return SOCKET_ERROR

    def WSPGetSockOpt(
        self, s: int, level: int, optname: int, optval: object, optlen: object, lpErrno: object
    ) -> int:
        try:
            sock = self._socket(s)
            if not is_box(optval) or (optlen is not None and not is_box(optlen)):
                raise WSAError(WSAErr.WSAEFAULT, "optval/optlen must be boxes")
            key = (level, optname)
            value: int
            if key == (SOL_SOCKET, SO_SNDBUF):
                value = sock.capacity
            elif key == (SOL_SOCKET, SO_BROADCAST):
                value = int(sock.broadcast)
            elif key == (SOL_SOCKET, SO_MAX_MSG_SIZE):
                if sock.is_stream:
                    raise WSAError(
                        WSAErr.WSAENOPROTOOPT, "SO_MAX_MSG_SIZE means nothing on a stream"
                    )
                value = UDP_MAX_MSG_SIZE_V4 if sock.family == AF_INET else UDP_MAX_MSG_SIZE_V6
            elif key == (SOL_SOCKET, SO_TYPE):
                value = sock.type
            elif key == (SOL_SOCKET, SO_ERROR):
                value, sock.so_error = sock.so_error, 0
            elif key == (SOL_SOCKET, SO_ACCEPTCONN):
                value = int(sock.state == LISTENING)
            elif key in _PASSTHROUGH:
                host_level, host_name = _PASSTHROUGH[key]
                value = sock.sock.getsockopt(host_level, host_name)
            else:
                raise WSAError(WSAErr.WSAENOPROTOOPT)
            store(optval, value)
            store(optlen, 4)
            return 0
        except BaseException as exc:
            _fail(lpErrno, exc)
            return SOCKET_ERROR

    # ================================================================== overlapped plumbing
    def _overlapped_op(
        self,
        sock: Socket,
        kind: int,
        buffers: list[Any],
        nbytes: int,
        flags: int,
        lpOverlapped: object,
        lpCompletionRoutine: object,
        lpThreadId: object,
    ) -> Operation | None:
        """Validate the overlapped arguments (S3, S9); the op to post, or None when not overlapped."""
        if lpOverlapped is None and lpCompletionRoutine is None:
            return None  # S3.2
        if not sock.overlapped:
            raise WSAError(WSAErr.WSAEINVAL, "the socket was made without WSA_FLAG_OVERLAPPED")
        if type(lpOverlapped) is not WSAOVERLAPPED:
            raise WSAError(WSAErr.WSAEFAULT, "lpOverlapped is not a WSAOVERLAPPED")
        if lpOverlapped._op is not None:
            if self.debug:
                from .verifier import report_reused_overlapped

                report_reused_overlapped(self, sock, lpOverlapped)
            raise WSAError(WSAErr.WSAEINVAL, "this WSAOVERLAPPED is still pending (S3.4)")
        # On the I/O loop thread the issuer is that loop's target: no lookup needed.
        issuer = (
            self._loop_target if threading.get_ident() == self._loop_ident else apc.current_target()
        )
        if lpCompletionRoutine is not None:
            if not callable(lpCompletionRoutine):
                raise WSAError(WSAErr.WSAEFAULT, "lpCompletionRoutine is not callable")
            if lpThreadId is None:
                thread: apc.ApcTarget | None = issuer
            elif type(lpThreadId) is WSATHREADID:
                thread = lpThreadId.target
            else:
                raise WSAError(WSAErr.WSAEFAULT, "lpThreadId is not a WSATHREADID")
            event = None
        else:
            thread = None
            hevent = lpOverlapped.hEvent
            event = hevent if type(hevent) is WSAEVENT else None
        if issuer not in self._watched:
            self._watch(issuer)
        return Operation(
            kind,
            buffers,
            nbytes,
            lpOverlapped,
            lpCompletionRoutine,
            thread,
            event,
            issuer,
            flags,
        )

    @staticmethod
    def _prime(op: Operation) -> None:
        """Mark the op's structure pending (S2.5); undone by _unprime if the post fails."""
        ov = op.overlapped
        if ov is not None:
            ov._op = op
            ov.Internal = STATUS_PENDING
            ov.InternalHigh = 0

    @staticmethod
    def _unprime(op: Operation, saved: tuple[int, int]) -> None:
        ov = op.overlapped
        if ov is not None:
            ov._op = None
            ov.Internal, ov.InternalHigh = saved

    # ================================================================== sends
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
        try:
            rc = self._send(
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
            return _io_pending(lpErrno) if rc == _PENDING else rc
        except BaseException as exc:
            _fail(lpErrno, exc)
            return SOCKET_ERROR

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
        try:
            rc = self._send(
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
            return _io_pending(lpErrno) if rc == _PENDING else rc
        except BaseException as exc:
            _fail(lpErrno, exc)
            return SOCKET_ERROR

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
        buffers, total = _capture(lpBuffers, dwBufferCount, False)
        if lpNumberOfBytesSent is not None and not is_box(lpNumberOfBytesSent):
            raise WSAError(WSAErr.WSAEFAULT, "lpNumberOfBytesSent is not a box")
        if type(dwFlags) is not int:
            raise WSAError(WSAErr.WSAEFAULT, "dwFlags is not an int")
        op = self._overlapped_op(
            sock, SEND, buffers, total, dwFlags, lpOverlapped, lpCompletionRoutine, lpThreadId
        )
        if dwFlags & ~_SEND_FLAGS:
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
                return _PENDING
        else:
            if op.fault:
                # An injected completion-time fault: it completes now, with the error.
                sock.finish(op, op.fault, 0)
                return _PENDING
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
                return _PENDING  # queued behind an EAGAIN
            sock.finish(op, 0, total)
        status = op.status
        if status == 0:
            store(lpNumberOfBytesSent, op.transferred)
            return 0
        # Pending, or already completed with an error whose notice is issued:
        # either way the caller hears of it through the completion (S2.2).
        return _PENDING

    def _send_now(
        self, sock: Socket, buffers: list[Any], total: int, flags: int, address: Any
    ) -> int:
        """Non-overlapped send (S8): blocking returns when consumed; non-blocking takes what fits."""
        if not sock.is_stream:
            op = Operation(SEND, buffers, total, None, None, None, None, None, flags, address)
            if sock.nonblocking:
                return self._datagram_nonblocking(sock, op)
            done = threading.Event()
            op.notify = lambda _op: done.set()
            code = sock.send_datagram(op)
            if code is None:
                if self.on_loop_thread():
                    raise self._refuse_blocking("a blocking send")
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
                    op.buffers, op.nbytes = _skip(buffers, direct), total - direct
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

    # ================================================================== receives
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
        try:
            rc = self._recv(
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
            return _io_pending(lpErrno) if rc == _PENDING else rc
        except BaseException as exc:
            _fail(lpErrno, exc)
            return SOCKET_ERROR

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
        try:
            if lpFrom is not None and not is_box(lpFrom):
                raise WSAError(WSAErr.WSAEFAULT, "lpFrom is not a box")
            rc = self._recv(
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
            return _io_pending(lpErrno) if rc == _PENDING else rc
        except BaseException as exc:
            _fail(lpErrno, exc)
            return SOCKET_ERROR

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
        buffers, total = _capture(lpBuffers, dwBufferCount, True)
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
        if flags & ~_RECV_FLAGS:
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
            return _PENDING  # as for sends: never read a racing status
        if op.status == 0:
            store(lpNumberOfBytesRecvd, op.transferred)
            store(lpFlags, op.out_flags)
            return 0
        return _PENDING

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

    # ================================================================== results and APCs
    def WSPGetOverlappedResult(
        self,
        s: int,
        lpOverlapped: object,
        lpcbTransfer: object,
        fWait: bool,
        lpdwFlags: object,
        lpErrno: object,
    ) -> bool:
        """The result of an overlapped operation (S7.2); ``fWait`` blocks until it completes."""
        try:
            self._socket(s)
            if type(lpOverlapped) is not WSAOVERLAPPED:
                raise WSAError(WSAErr.WSAEFAULT, "lpOverlapped is not a WSAOVERLAPPED")
            if not is_box(lpcbTransfer) or (lpdwFlags is not None and not is_box(lpdwFlags)):
                raise WSAError(WSAErr.WSAEFAULT, "lpcbTransfer/lpdwFlags must be boxes")
            op = lpOverlapped._op
            if op is not None:
                if not fWait:
                    raise WSAError(WSAErr.WSA_IO_INCOMPLETE)
                if op.routine is not None and self.debug:
                    from .verifier import report_wait_with_routine

                    report_wait_with_routine(self, self._socket(s))
                if self.on_loop_thread():
                    raise self._refuse_blocking("WSPGetOverlappedResult(fWait=True)")
                self._wait_for(lpOverlapped)
            status = lpOverlapped.Internal
            store(lpcbTransfer, lpOverlapped.InternalHigh)
            store(lpdwFlags, lpOverlapped._flags)
            if status:
                raise WSAError(status)
            return True
        except BaseException as exc:
            _fail(lpErrno, exc)
            return False

    def _wait_for(self, ov: WSAOVERLAPPED) -> None:
        with self._result_cond:
            self._result_waiters += 1
            try:
                while ov._op is not None:
                    self._result_cond.wait()
            finally:
                self._result_waiters -= 1

    def WPUQueueApc(
        self, lpThreadId: object, lpfnUserApc: object, dwContext: object, lpErrno: object
    ) -> int:
        """Queue ``lpfnUserApc(dwContext)`` to the thread ``lpThreadId`` names (S6.1)."""
        try:
            if type(lpThreadId) is not WSATHREADID:
                raise WSAError(WSAErr.WSAEFAULT, "lpThreadId is not a WSATHREADID")
            if not callable(lpfnUserApc):
                raise WSAError(WSAErr.WSAEFAULT, "lpfnUserApc is not callable")
            if not apc.queue_apc(lpThreadId, lpfnUserApc, dwContext):
                raise WSAError(WSAErr.WSAEINVAL, "the thread has exited")
            return 0
        except BaseException as exc:
            _fail(lpErrno, exc)
            return SOCKET_ERROR

    # ================================================================== helpers for the faces
    def socket_of(self, s: int) -> Socket:
        """The engine object behind a handle (for the asyncio face and tools)."""
        return self._socket(s)

    def wait_until(self, predicate: Callable[[], bool], timeout: float) -> bool:
        """Block (off the loop) until ``predicate()`` holds after some completion."""
        deadline = time.monotonic() + timeout
        with self._result_cond:
            self._result_waiters += 1
            try:
                while not predicate():
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        return False
                    self._result_cond.wait(remaining)
                return True
            finally:
                self._result_waiters -= 1
