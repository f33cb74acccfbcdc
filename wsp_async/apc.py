"""Asynchronous procedure calls: how a completion reaches the thread that asked for it.

Theory of operation
-------------------
On Windows a completion routine runs as a user-mode APC: the provider calls
``WPUQueueApc(lpThreadId, fn, context)`` and the kernel runs ``fn(context)`` on
that thread the next time it sits in an *alertable* wait (``SleepEx(…, TRUE)``,
``WSAWaitForMultipleEvents(…, fAlertable=TRUE)``).  Never earlier, never on
another thread, and in FIFO order (SPEC S6.1–S6.3).

Python threads come in two kinds, and each gets an *APC target*:

* A thread that runs an asyncio loop never blocks in an alertable wait: its
  loop is its wait.  Its target is a :class:`LoopTarget`, which turns APCs into
  loop callbacks (``call_soon`` from the loop's own thread,
  ``call_soon_threadsafe`` from any other).  APCs queued while a drain is
  already scheduled join that drain, so a burst of N completions costs one
  wake-up of the loop, not N (stock asyncio's ``call_soon_threadsafe`` writes to
  a self-pipe every time, ~10x dearer than uvloop's).
* Any other thread has a :class:`ThreadTarget`: a FIFO that only that thread
  drains, from inside an alertable wait (:mod:`wsp_async.events`).

A ``WSATHREADID`` captures the target of the thread that made it, so the
provider never has to look a thread up by its id: ids are reused by the OS,
targets are not.

Thread exit (SPEC S10.4)
------------------------
The send path must cancel the I/O of a thread that goes away.  A plain thread's
target dies when the thread's ``threading.local`` storage is torn down (a
``weakref.finalize`` on an object only that storage holds); a loop's target dies
when the loop closes (we wrap the loop's ``close``; ``asyncio.run`` ends with it).
Either way the target drops what is still queued -- nobody can run it any
more -- and calls its exit hooks, once.

Exceptions raised by an APC are reported (the loop's exception handler, or
``logging`` for plain threads) and never stop the APCs after it (SPEC S6.7).
"""

from __future__ import annotations

import asyncio
import collections
import logging
import os
import threading
import weakref
from collections.abc import Callable
from typing import Any, Protocol

__all__ = [
    "ApcTarget",
    "LoopTarget",
    "ThreadTarget",
    "current_target",
    "queue_apc",
    "loop_target",
    "thread_target",
]

log = logging.getLogger("wsp_async.apc")

Apc = tuple[Callable[..., object], tuple[Any, ...]]
ExitHook = Callable[["ApcTarget"], object]


class Wakeup:
    """One waiting thread's wake-up: a raw lock, held while nothing has woken it.

    ``set`` releases it (set twice is set once), ``wait`` takes it (with a timeout in
    seconds, or None), ``clear`` takes it without waiting: a set that came before the
    wait wakes it at once, and the wait consumes it.  The waits of this package -- an
    alertable wait for APCs, ``WSAWaitForMultipleEvents``, ``SleepEx``, a blocking
    call's, a port's -- each have one waiting thread, which is all this serves: for them
    it does what a ``threading.Event`` does without that class's ``Condition``, written
    in Python, whose making, wait and set cost about 8 us per blocked wait (issue 26).
    """

    __slots__ = ("_lock",)

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._lock.acquire()

    def set(self) -> None:
        try:
            self._lock.release()
        except RuntimeError:
            pass  # set already, not waited for yet

    def clear(self) -> None:
        self._lock.acquire(False)

    def wait(self, timeout: float | None = None) -> None:
        if timeout is None:
            self._lock.acquire()
        else:
            self._lock.acquire(True, timeout)


class ApcTarget(Protocol):
    """Where APCs for one thread (or one thread's loop) are delivered."""

    thread_ident: int

    @property
    def alive(self) -> bool: ...

    def post(self, fn: Callable[..., object], args: tuple[Any, ...]) -> bool:
        """Queue ``fn(*args)``; ``False`` when the target is gone (the APC is dropped)."""
        ...

    def post_joined(self, fn: Callable[[list[Any]], object], item: Any) -> bool:
        """Queue ``fn([item])``, or join ``item`` to the last queued call of ``fn``."""
        ...

    def add_exit_hook(self, hook: ExitHook) -> bool:
        """Call ``hook(target)`` once when the thread exits or its loop closes.

        Returns ``False`` (and never calls the hook) when the target is already gone.
        """
        ...


#: Every APC target of the process, for the child of a fork.
_TARGETS: weakref.WeakSet[_TargetBase] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    """A child made by ``fork`` has only the thread that forked: every other thread's
    target is gone there, as a thread that exited (its APCs dropped, a post naming it
    refused, S10.4) -- without its exit hooks, which would act on providers whose loops
    stayed in the parent.  Each lock is a new one: a thread now gone may have held it."""
    me = threading.get_ident()
    for target in list(_TARGETS):
        target._lock = threading.Lock()
        if target.thread_ident != me:
            target._dead = True
            target.alive = False
            target._queue.clear()
            target._exit_hooks = []


os.register_at_fork(after_in_child=_after_fork_in_child)


class _TargetBase:
    """Exit-hook bookkeeping shared by both kinds of target.

    ``post`` and the drain, once per completion, take the lock with ``acquire`` and
    ``release``: a third of what ``with`` costs on CPython 3.11 (issue 26)."""

    def __init__(self, thread_ident: int) -> None:
        self.thread_ident = thread_ident
        _TARGETS.add(self)
        self._lock = threading.Lock()
        self._queue: collections.deque[Apc] = collections.deque()
        self._dead = False
        #: ``not _dead``, kept as a plain attribute: every post that names a thread reads it.
        self.alive = True
        self._exit_hooks: list[ExitHook] = []

    def post_joined(self, fn: Callable[[list[Any]], object], item: Any) -> bool:
        """Queue ``fn([item])``; a target that can see its queue joins ``item`` to the list
        of the last APC queued there instead, when that is a call of ``fn`` too (see
        :meth:`ThreadTarget.post_joined`).  ``False`` when the target is gone."""
        return self.post(fn, ([item],))  # type: ignore[attr-defined,no-any-return]

    def add_exit_hook(self, hook: ExitHook) -> bool:
        with self._lock:
            if self._dead:
                return False
            self._exit_hooks.append(hook)
            return True

    def _die(self) -> None:
        """Mark the target gone, drop its queued APCs, run its exit hooks (once)."""
        with self._lock:
            if self._dead:
                return
            self._dead = True
            self.alive = False
            dropped = len(self._queue)
            self._queue.clear()
            hooks, self._exit_hooks = self._exit_hooks, []
        if dropped:
            log.debug("thread %#x gone: %d queued APC(s) dropped", self.thread_ident, dropped)
        for hook in hooks:
            try:
                hook(self)  # type: ignore[arg-type]
            except Exception:
                log.exception("thread-exit hook %r failed", hook)


class ThreadTarget(_TargetBase):
    """The APC queue of a thread that does not run an event loop.

    Only the owning thread drains it, from an alertable wait; other threads only
    append.  ``_waiters`` are the wake-up callables of an alertable wait in
    progress (a :class:`Wakeup`'s ``set`` each), called after every append.
    """

    def __init__(self, thread_ident: int) -> None:
        super().__init__(thread_ident)
        self._waiters: list[Callable[[], object]] = []

    def post(self, fn: Callable[..., object], args: tuple[Any, ...]) -> bool:
        lock = self._lock
        lock.acquire()
        try:
            if self._dead:
                return False
            self._queue.append((fn, args))
            waiters = self._waiters[:] if self._waiters else None
        finally:
            lock.release()
        if waiters:
            for wake in waiters:
                wake()
        return True

    def post_joined(self, fn: Callable[[list[Any]], object], item: Any) -> bool:
        """Queue ``fn([item])``, or, when the last APC still queued here is a call of
        ``fn`` (not yet taken by the thread's alertable wait, so not running), add ``item``
        to its list: completions of one lane that follow one another reach the thread as
        one APC, in the same order (S6.2, S6.4), as the door's batches already do."""
        lock = self._lock
        lock.acquire()
        try:
            if self._dead:
                return False
            queue = self._queue
            if queue:
                last_fn, last_args = queue[-1]
                if last_fn == fn:
                    last_args[0].append(item)
                    return True  # its thread was woken for that APC already
            queue.append((fn, ([item],)))
            waiters = self._waiters[:] if self._waiters else None
        finally:
            lock.release()
        if waiters:
            for wake in waiters:
                wake()
        return True

    def pending(self) -> int:
        """How many APCs are queued (read without the lock: a hint, not a promise)."""
        return len(self._queue)

    def add_waiter(self, wake: Callable[[], object]) -> None:
        with self._lock:
            self._waiters.append(wake)

    def remove_waiter(self, wake: Callable[[], object]) -> None:
        with self._lock:
            try:
                self._waiters.remove(wake)
            except ValueError:
                pass

    def drain(self) -> int:
        """Run queued APCs, oldest first, until none is left; return how many ran.

        APCs queued by the APCs themselves run too, as on Windows, where an
        alertable wait returns only once the thread's APC queue is empty.
        """
        ran = 0
        while True:
            with self._lock:
                if not self._queue:
                    return ran
                fn, args = self._queue.popleft()
            ran += 1
            try:
                fn(*args)
            except Exception as exc:
                report(fn, exc)


class LoopTarget(_TargetBase):
    """The APC queue of a thread while it runs an asyncio loop: APCs become callbacks.

    ``_scheduled`` is true while one ``_drain`` callback is on its way; posts made
    meanwhile only append, which is what batches the wake-ups.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, thread_ident: int) -> None:
        super().__init__(thread_ident)
        self.loop = loop
        self._scheduled = False

    def post(self, fn: Callable[..., object], args: tuple[Any, ...]) -> bool:
        lock = self._lock
        lock.acquire()
        try:
            if self._dead:
                return False
            self._queue.append((fn, args))
            if self._scheduled:
                return True
            self._scheduled = True
        finally:
            lock.release()
        try:
            if threading.get_ident() == self.thread_ident:
                self.loop.call_soon(self._drain)
            else:
                self.loop.call_soon_threadsafe(self._drain)
        except RuntimeError:
            # The loop closed under us without our close hook (someone bypassed it).
            self._die()
            return False
        return True

    def _drain(self) -> None:
        lock = self._lock
        lock.acquire()
        try:
            batch, self._queue = self._queue, collections.deque()
            self._scheduled = False
        finally:
            lock.release()
        while batch:
            fn, args = batch.popleft()
            try:
                fn(*args)
            except Exception as exc:
                report(fn, exc)
            except BaseException:
                # KeyboardInterrupt and the like propagate, but the APCs behind
                # this one keep their turn.
                with self._lock:
                    self._queue.extendleft(reversed(batch))
                    if self._queue and not self._scheduled:
                        self._scheduled = True
                        self.loop.call_soon(self._drain)
                raise


# --- finding the target of the calling thread --------------------------------------

_local = threading.local()


class _ExitSentinel:
    """Held only by a thread's ``threading.local``: collected when the thread ends."""

    __slots__ = ("__weakref__",)


def thread_target() -> ThreadTarget:
    """The plain-thread APC target of the calling thread (made on first use)."""
    try:
        target: ThreadTarget = _local.target
        return target
    except AttributeError:
        pass
    target = ThreadTarget(threading.get_ident())
    sentinel = _ExitSentinel()
    weakref.finalize(sentinel, target._die)
    _local.target = target
    _local.sentinel = sentinel
    return target


_LOOP_ATTR = "_wsp_async_apc_target"
_loop_targets_lock = threading.Lock()


def loop_target(loop: asyncio.AbstractEventLoop, thread_ident: int | None = None) -> LoopTarget:
    """The APC target of ``loop`` (made on first use; ``thread_ident`` defaults to the caller).

    The target is stored on the loop itself and the loop's ``close`` is wrapped
    so that closing the loop ends the target (SPEC S10.4).  Both stock asyncio
    and uvloop loops accept the extra attribute.
    """
    target: LoopTarget | None = getattr(loop, _LOOP_ATTR, None)
    if target is not None:
        return target
    with _loop_targets_lock:
        existing: LoopTarget | None = getattr(loop, _LOOP_ATTR, None)
        if existing is not None:
            return existing
        target = LoopTarget(loop, threading.get_ident() if thread_ident is None else thread_ident)
        original_close = loop.close

        def close() -> None:
            try:
                original_close()
            finally:
                # Only a loop that did close ends its target: a close refused (a
                # running loop's, asked from another thread) leaves the loop running,
                # and its routines must still run there.
                live: LoopTarget | None = getattr(loop, _LOOP_ATTR, None)
                if live is not None and loop.is_closed():
                    live._die()

        setattr(loop, _LOOP_ATTR, target)
        loop.close = close  # type: ignore[method-assign]
        if loop.is_closed():
            target._die()
        return target


def current_target() -> ApcTarget:
    """The target of the calling thread: its running loop's if it runs one."""
    loop = asyncio._get_running_loop()
    if loop is not None:
        target: LoopTarget | None = getattr(loop, _LOOP_ATTR, None)
        return target if target is not None else loop_target(loop)
    # thread_target()'s first step, read here: every post from a plain thread asks.
    known: ThreadTarget | None = getattr(_local, "target", None)
    return known if known is not None else thread_target()


def on_loop_thread() -> bool:
    """True when the calling thread is running an asyncio loop (it must never block)."""
    return asyncio._get_running_loop() is not None


def queue_apc(thread_id: object, fn: Callable[..., object], *args: Any) -> bool:
    """Queue ``fn(*args)`` to run on the thread named by ``thread_id`` (SPEC S6.1-S6.3).

    ``thread_id`` is a ``WSATHREADID`` (or an APC target).  The call never runs
    ``fn`` itself, even for the calling thread (S6.2).  Returns ``False`` when
    the thread has exited or its loop has closed: the APC is dropped, as the
    kernel drops APCs queued to a thread that is gone.
    """
    target = getattr(thread_id, "target", thread_id)
    post: Callable[[Callable[..., object], tuple[Any, ...]], bool] | None = getattr(
        target, "post", None
    )
    if post is None:
        return False  # no thread of ours (a bare number, a dead one): nothing to queue to
    return post(fn, args)


def report(fn: object, exc: BaseException) -> None:
    """Report an exception raised by an APC or routine without stopping later ones (S6.7).

    On a loop thread it goes to the loop's exception handler; elsewhere to ``logging``.
    """
    loop = asyncio._get_running_loop()
    if loop is not None:
        loop.call_exception_handler({"message": f"exception in APC {fn!r}", "exception": exc})
    else:
        log.error("exception in APC %r", fn, exc_info=exc)
