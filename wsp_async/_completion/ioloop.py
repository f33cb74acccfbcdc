"""The provider's I/O loop: who owns it, which thread runs it, and running code on it.

A provider either owns its loop (started here in a daemon thread, uvloop when
it imports) or is *embedded* in a loop that already runs.  Either way every
transport lives on that loop, and the rest of the provider reaches it through
three doors: :meth:`IoLoop.call` (run a function there and wait for its
result), :meth:`IoLoop.run` (a coroutine), and :meth:`IoLoop.wake` (schedule,
from any thread, without waiting).  Blocking on the loop's own thread would
deadlock, so :meth:`IoLoop.refuse_blocking` is how a blocking wait says no
there (SPEC S7.3).

A loop the provider owns can also be *lent* to a program thread that waits for its
completions anyway -- the Proactor's, which waits in ``GetQueuedCompletionStatus`` once
per iteration (SPEC S17.3): while lent, that thread runs the loop inside its waits
(:meth:`IoLoop.drive`), the provider's own thread sleeps, and no completion of that
thread's operations crosses threads.  See :meth:`IoLoop.lend`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
from asyncio import events
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from .. import apc
from ..errors import WSAErr, WSAError
from ..events import wait_alertably
from ..structs import WSAOVERLAPPED
from .waits import unwatch_structure, watch_structure

__all__ = ["BORROWERS", "IO_THREADS", "IoLoop"]

#: The threads that run a provider's I/O loop: no blocking wait may run there (S7.3),
#: whichever provider it waits on (a completion port is process-wide).
IO_THREADS: set[int] = set()

#: The program threads a provider's loop is lent to, each with that loop (see
#: ``IoLoop.lend``): a wait on a completion port there runs the loop instead of sleeping.
BORROWERS: dict[int, IoLoop] = {}

log = logging.getLogger("wsp_async")
T = TypeVar("T")

_FORKED = "the provider's I/O thread stayed in the parent process (fork)"


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
        #: The program thread the loop is lent to (None: not lent); see :meth:`lend`.
        self.borrower: int | None = None
        #: Told the thread that runs the loop whenever it changes (the APC target's).
        self.on_move: Callable[[int], object] | None = None
        self._lend_lock = threading.Lock()
        self._lending = False  # the own thread's run_forever returns to park, not to end
        self._finished = False
        self._parked = threading.Event()
        self._resume = threading.Event()
        self._step: Callable[[], object] | None = None  # set with the loop, below
        #: True while the borrower runs the loop (a drive does not nest).
        self.driving = False
        #: In a child made by fork: the loop's thread stayed in the parent.
        self.gone = False
        if loop is None:
            self.loop = _new_loop(use_uvloop)
            self.embedded = False
            self._keep_closing_to_own_thread()
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
        self._step = getattr(self.loop, "_run_once", None)
        IO_THREADS.add(self.ident)

    def after_fork(self) -> None:
        """In a child made by ``fork``, which has only the thread that forked: a loop run
        by any other thread -- the provider's own, a borrower, the program's loop of
        another thread -- is left as it is (its selector and wake-up pipe are shared with
        the parent, whose loop still runs on them) and marked gone, so that a call that
        would wait for it fails with ``WSAENETDOWN`` instead of waiting forever (a
        library's worker process that made a Proactor hung in :meth:`lend`: aiohttp's
        suite, through proxy.py).  A loop embedded in the forking thread's goes on."""
        self._lend_lock = threading.Lock()  # a thread now gone may have held it
        if self.embedded and self.ident == threading.get_ident():
            return
        self.gone = True
        self._finished = True
        IO_THREADS.discard(self.ident)
        if self.borrower is not None:
            BORROWERS.pop(self.borrower, None)

    def release(self) -> None:
        """The provider is closed: its loop's thread may block again."""
        IO_THREADS.discard(self.ident)

    @staticmethod
    def _learn_thread(loop: asyncio.AbstractEventLoop) -> int:
        box: concurrent.futures.Future[int] = concurrent.futures.Future()
        loop.call_soon_threadsafe(lambda: box.set_result(threading.get_ident()))
        return box.result(30)

    def _keep_closing_to_own_thread(self) -> None:
        """The provider's own loop is closed by its own thread, as the provider closes;
        ``close()`` from any other thread is ignored.  A program never made this loop,
        but it can find it -- anyio's tests close every loop the garbage collector
        knows of -- and on Windows there is no such loop to find: closing it, or the
        ``RuntimeError`` asyncio raises for a running one, would be the emulator's."""
        loop = self.loop
        close = loop.close

        def close_on_own_thread() -> None:
            thread = self.thread
            if thread is None or thread.ident == threading.get_ident():
                close()

        loop.close = close_on_own_thread  # type: ignore[method-assign]

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
                while self._lending and not self._finished:
                    # Lent (see lend): sleep until the borrower gives the loop back.
                    self._parked.set()
                    self._resume.wait()
                    self._resume.clear()
                    if self.finished():
                        break
                    loop.run_forever()
                # Let closing transports finish their callbacks before the loop goes.
                for _ in range(3):
                    loop.run_until_complete(asyncio.sleep(0))
                loop.run_until_complete(loop.shutdown_asyncgens())
            finally:
                self._finished = True
                self._parked.set()  # a lender waiting for the park gives up
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
        if self.gone:
            raise WSAError(WSAErr.WSAENETDOWN, _FORKED)
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
        """Run a coroutine on the loop from another thread and wait for its result (on
        the thread the loop is lent to, outside a drive: run the loop until it is done).

        ``alertable``: the wait of a blocking Winsock call (accept, connect), which
        runs the calling thread's APCs meanwhile (S6.3).
        """
        if self.gone:
            coro.close()
            raise WSAError(WSAErr.WSAENETDOWN, _FORKED)
        if self.lent_here() and not self.driving:
            # The borrower waits by running the loop (it would wait for itself otherwise);
            # the task's end wakes that drive, which on a loop run whole (uvloop) would
            # otherwise go on to its time limit (a second per socket adopted, once).
            task = self.loop.create_task(coro)
            task.add_done_callback(self._wake_own_drive)
            self.drive_until(task.done)
            return task.result()
        try:
            future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        except RuntimeError:
            coro.close()
            raise WSAError(WSAErr.WSAENETDOWN, "the provider's I/O loop is closed") from None
        if alertable:
            signal = apc.Wakeup()
            future.add_done_callback(lambda _future: signal.set())
            wait_alertably(future.done, signal)
        return future.result()

    def run_or_start(self, coro: Coroutine[Any, Any, Any]) -> None:
        """Run ``coro`` on the loop, from any thread: the borrower outside a drive runs
        the loop until it is done (S17.3's moments); a plain thread waits for it; the
        loop's own thread, or one running an event loop of its own (a second
        Proactor's, whose wait the lease holder may itself be waiting for), only
        starts it -- neither may wait for this loop (S15.2)."""
        if self.lent_here() and not self.driving:
            self.run(coro)
            return
        if not self.here():
            try:
                asyncio.get_running_loop()
            except RuntimeError:
                self.run(coro)
                return
        self.spawn(coro)

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        """Start a coroutine on the loop without waiting for it (any thread)."""
        if self.here():
            self.loop.create_task(coro)
        else:
            self.loop.call_soon_threadsafe(lambda: self.loop.create_task(coro))

    def stop(self) -> None:
        if self.embedded:
            return
        self._finished = True
        if self.borrower is None:
            self.loop.stop()
        # Lent: the borrower gives the loop back when its own loop stops, and the
        # provider's thread then ends instead of running it again.

    # -- lending the loop to a program thread (the Proactor's) ----------------------------
    def lend(self) -> bool:
        """Run the loop on the calling thread from now on, inside its :meth:`drive` calls.

        The Proactor's thread asks this while its loop runs (``run_forever``): it waits
        for packets once per iteration anyway, so the provider's I/O can happen in that
        wait, on that thread.  The provider's own thread finishes its iteration and
        sleeps.  False (nothing changed) when the loop is embedded, already lent, or
        closing.  Until :meth:`give_back`, the calling thread is *the* loop thread
        (:meth:`here`): a blocking Winsock call there is refused (S7.3), and a wait on a
        completion port runs the loop (``CompletionPort.take``) instead of sleeping, so
        the thread is not among ``IO_THREADS``.  Other threads reach the loop as before,
        and their work runs in the borrower's drives.
        """
        if self.embedded or self.thread is None:
            return False
        me = threading.get_ident()
        with self._lend_lock:
            if self.borrower is not None or self._finished or me == self.ident:
                return False
            own = self.ident
            self._parked.clear()
            self._lending = True
            try:
                self.loop.call_soon_threadsafe(self.loop.stop)
            except RuntimeError:
                self._lending = False
                return False
            self._parked.wait()
            if self.finished():
                self._lending = False
                return False
            self.borrower = me
            IO_THREADS.discard(own)
            BORROWERS[me] = self
            self._move(me)
            return True

    def give_back(self) -> None:
        """The borrower's loop stopped: the provider's own thread runs the loop again."""
        with self._lend_lock:
            if self.borrower is None or self.borrower != threading.get_ident():
                return
            assert self.thread is not None and self.thread.ident is not None
            self.borrower = None
            self._lending = False
            BORROWERS.pop(threading.get_ident(), None)
            IO_THREADS.add(self.thread.ident)
            self._move(self.thread.ident)
            self._resume.set()

    def _move(self, new: int) -> None:
        self.ident = new
        if self.on_move is not None:
            self.on_move(new)

    def finished(self) -> bool:
        """The loop's own thread is ending (or ended): it is not lent again."""
        return self._finished

    def lent_here(self) -> bool:
        """True on the thread the loop is lent to."""
        return self.borrower is not None and self.borrower == threading.get_ident()

    def wake_driver(self) -> None:
        """Make the borrower's current :meth:`drive` look at its ``done`` (any thread).

        On the driving thread itself a stepped loop looks after each step anyway: nothing
        to do (the common case, asked on every packet the lent loop queues)."""
        here = threading.get_ident() == self.ident
        if here and self._step is not None:
            return
        try:
            if self._step is None:  # run_forever until a stop
                if here:
                    self.loop.stop()
                else:
                    self.loop.call_soon_threadsafe(self.loop.stop)
            else:
                self.loop.call_soon_threadsafe(_nothing)  # ends the wait in select
        except RuntimeError:
            pass  # the loop closed meanwhile

    def _wake_own_drive(self, _future: object) -> None:
        """A done callback: :meth:`wake_driver` (the callback's argument dropped)."""
        self.wake_driver()

    def turn(self) -> None:
        """On the borrower, outside a drive: turns of the loop that do not wait, while
        callbacks are ready (at most a few), so that what was just started there begins
        now -- a task that starts another one needs two (anywhere else: nothing)."""
        if self.lent_here() and not self.driving:
            ready = getattr(self.loop, "_ready", None)
            for _ in range(4):
                self.drive(0)
                if not ready:
                    break

    def drive_until(self, done: Callable[[], bool]) -> None:
        """On the borrower, outside a drive: run the loop until ``done()`` -- which
        whatever makes it true wakes (:meth:`wake_driver`), or a loop run whole (uvloop)
        goes on to the drive's second."""
        while not done():
            self.drive(1.0, done)

    def drive_until_result(self, ov: WSAOVERLAPPED) -> None:
        """:meth:`drive_until` ``ov`` is no longer pending: the door's write of its
        result wakes the drive (a blocking ``getresult`` on the Proactor's thread)."""
        wake = self.wake_driver
        watch_structure(ov, wake)
        try:
            self.drive_until(lambda: not ov.pending)
        finally:
            unwatch_structure(ov, wake)

    def drive(self, seconds: float, done: Callable[[], bool] = lambda: False) -> None:
        """On the borrower: run the loop until ``done()`` or ``seconds`` passed.

        Whatever makes ``done()`` true calls :meth:`wake_driver`.  ``seconds`` 0 is one
        iteration that does not wait (a loop with callbacks ready polls so).  The
        borrower's own running loop (the Proactor) is set aside meanwhile, so that code
        run by this loop's callbacks sees this loop as the running one.  A stock asyncio
        loop is stepped directly (``_run_once``, about 1.3 us a step here; ``run_forever``
        costs 6 us); another one (uvloop) runs ``run_forever`` until a stop.
        """
        loop = self.loop
        outer = events._get_running_loop()
        step = self._step
        self.driving = True
        try:
            if step is None:
                events._set_running_loop(None)  # run_forever refuses to nest
                deadline = loop.time() + seconds
                while True:
                    handle = loop.call_at(deadline, loop.stop)
                    try:
                        loop.run_forever()
                    finally:
                        handle.cancel()
                    if done() or loop.time() >= deadline:
                        return
            events._set_running_loop(loop)
            loop._thread_id = threading.get_ident()  # type: ignore[attr-defined]
            try:
                if seconds <= 0:
                    loop._stopping = True  # type: ignore[attr-defined]  # select, no wait
                    try:
                        step()
                    finally:
                        loop._stopping = False  # type: ignore[attr-defined]
                    return
                deadline = loop.time() + seconds
                timer = loop.call_at(deadline, _nothing)
                try:
                    while not done() and loop.time() < deadline:
                        step()
                finally:
                    timer.cancel()
            finally:
                loop._thread_id = None  # type: ignore[attr-defined]
        finally:
            self.driving = False
            events._set_running_loop(outer)

    @staticmethod
    def refuse_blocking(what: str) -> WSAError:
        log.warning(
            "%s would block the provider's I/O loop thread; failing with WSAEWOULDBLOCK "
            "instead of deadlocking (SPEC S7.3; use the asyncio face to await it)",
            what,
        )
        return WSAError(WSAErr.WSAEWOULDBLOCK, f"{what} on the I/O loop thread")


def _nothing() -> None:
    """A callback that only wakes a loop."""
