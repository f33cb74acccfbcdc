"""The provider's core: its I/O loop, handle table, threads, life cycle and overlapped plumbing.

The ``WSP*`` entry points live in :mod:`wsp_async._socketcalls` (socket life
cycle, ioctls, options), :mod:`wsp_async._sendcalls` and :mod:`wsp_async._recvcalls`;
:class:`wsp_async.provider.Provider` puts them together.  What they share is here:
running code on the I/O loop (or refusing to block it, S7.3), finding sockets,
hearing about threads that exit (S10.4), validating the overlapped arguments
(S3), closing everything exactly once (S2.4), fault injection (S12.1), and the
calls that only read results (``WSPGetOverlappedResult``, ``WPUQueueApc``).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import itertools
import threading
import time
from collections.abc import Callable, Coroutine
from typing import Any, Self

from . import apc
from ._args import (
    T,
    fail,
    log,
)
from ._ops import Operation
from ._socket import BOUND, CREATED, Socket
from .constants import (
    AF_INET,
    SOCKET_ERROR,
    STATUS_PENDING,
)
from .errors import WSAErr, WSAError
from .events import WSAEVENT
from .faults import Fault, FaultPlan
from .structs import WSAOVERLAPPED, WSATHREADID, is_box, store


class ProviderBase:
    """State and plumbing shared by the SPI entry points (see :class:`~wsp_async.provider.Provider`)."""

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

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.embedded or self.on_loop_thread():
            self.close()
        else:
            await asyncio.get_running_loop().run_in_executor(None, self.close)

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
            fail(lpErrno, exc)
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
            fail(lpErrno, exc)
            return SOCKET_ERROR

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
