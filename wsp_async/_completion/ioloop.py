"""The provider's I/O loop: who owns it, which thread runs it, and running code on it.

A provider either owns its loop (started here in a daemon thread, uvloop when
it imports) or is *embedded* in a loop that already runs.  Either way every
transport lives on that loop, and the rest of the provider reaches it through
three doors: :meth:`IoLoop.call` (run a function there and wait for its
result), :meth:`IoLoop.run` (a coroutine), and :meth:`IoLoop.wake` (schedule,
from any thread, without waiting).  Blocking on the loop's own thread would
deadlock, so :meth:`IoLoop.refuse_blocking` is how a blocking wait says no
there (SPEC S7.3).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from ..errors import WSAErr, WSAError
from ..events import wait_alertably

__all__ = ["IO_THREADS", "IoLoop"]

#: The threads that run a provider's I/O loop: no blocking wait may run there (S7.3),
#: whichever provider it waits on (a completion port is process-wide).
IO_THREADS: set[int] = set()

log = logging.getLogger("wsp_async")
T = TypeVar("T")


def _new_loop(use_uvloop: bool) -> asyncio.AbstractEventLoop:
    if use_uvloop:
        try:
            import uvloop
        except ImportError:
            pass
        else:
            loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
            return loop
    # Explicitly the selector loop, never the policy's: a run that sets the Proactor's
    # policy (``--asyncio-proactor``, ``python -m wsp_async.proactor``) must not put the
    # provider's own I/O on a Proactor that runs over a provider.
    return asyncio.SelectorEventLoop()


class IoLoop:
    """The loop that backs every transport of one provider."""

    def __init__(self, loop: asyncio.AbstractEventLoop | None, use_uvloop: bool) -> None:
        self.thread: threading.Thread | None = None
        if loop is None:
            self.loop = _new_loop(use_uvloop)
            self.embedded = False
            self.ident = self._start_thread()
        else:
            self.loop = loop
            self.embedded = True
            try:
                running = asyncio.get_running_loop()
            except RuntimeError:
                running = None
            self.ident = threading.get_ident() if running is loop else self._learn_thread(loop)
        self.wake = self.loop.call_soon_threadsafe
        IO_THREADS.add(self.ident)

    def release(self) -> None:
        """The provider is closed: its loop's thread may block again."""
        IO_THREADS.discard(self.ident)

    @staticmethod
    def _learn_thread(loop: asyncio.AbstractEventLoop) -> int:
        box: concurrent.futures.Future[int] = concurrent.futures.Future()
        loop.call_soon_threadsafe(lambda: box.set_result(threading.get_ident()))
        return box.result(30)

    def _start_thread(self) -> int:
        ready = threading.Event()
        loop = self.loop
        ident: list[int] = []

        def main() -> None:
            asyncio.set_event_loop(loop)
            ident.append(threading.get_ident())
            loop.call_soon(ready.set)
            try:
                loop.run_forever()
                # Let closing transports finish their callbacks before the loop goes.
                for _ in range(3):
                    loop.run_until_complete(asyncio.sleep(0))
                loop.run_until_complete(loop.shutdown_asyncgens())
            finally:
                loop.close()

        self.thread = threading.Thread(target=main, name="wsp_async-io", daemon=True)
        self.thread.start()
        if not ready.wait(30):
            raise RuntimeError("the provider's I/O loop did not start")
        return ident[0]

    @property
    def kind(self) -> str:
        """``"uvloop"`` or ``"asyncio"``."""
        return "uvloop" if type(self.loop).__module__.startswith("uvloop") else "asyncio"

    def here(self) -> bool:
        """True on the loop's own thread: *the* test of "the loop thread" everywhere.

        ``ident`` is the thread that runs the loop -- the provider's own, or the
        program's when the provider is embedded in a running loop.  The send and
        post paths compare ``threading.get_ident()`` with it inline (their frame's
        sake); that is this test, not another one."""
        return threading.get_ident() == self.ident

    def call(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(*args)`` on the loop and return its result (or raise its error)."""
        if self.here():
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

    def run(self, coro: Coroutine[Any, Any, T], alertable: bool = False) -> T:
        """Run a coroutine on the loop from another thread and wait for its result.

        ``alertable``: the wait of a blocking Winsock call (accept, connect), which
        runs the calling thread's APCs meanwhile (S6.3).
        """
        try:
            future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        except RuntimeError:
            coro.close()
            raise WSAError(WSAErr.WSAENETDOWN, "the provider's I/O loop is closed") from None
        if alertable:
            signal = threading.Event()
            future.add_done_callback(lambda _future: signal.set())
            wait_alertably(future.done, signal)
        return future.result()

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        """Start a coroutine on the loop without waiting for it (any thread)."""
        if self.here():
            self.loop.create_task(coro)
        else:
            self.loop.call_soon_threadsafe(lambda: self.loop.create_task(coro))

    def stop(self) -> None:
        if not self.embedded:
            self.loop.stop()

    @staticmethod
    def refuse_blocking(what: str) -> WSAError:
        log.warning(
            "%s would block the provider's I/O loop thread; failing with WSAEWOULDBLOCK "
            "instead of deadlocking (SPEC S7.3; use the asyncio face to await it)",
            what,
        )
        return WSAError(WSAErr.WSAEWOULDBLOCK, f"{what} on the I/O loop thread")
