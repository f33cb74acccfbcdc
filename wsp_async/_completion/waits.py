"""Threads blocked until an operation's result is written: ``WSPGetOverlappedResult`` and
``GetOverlappedResult`` with ``fWait`` (SPEC S7.2), and ``Provider.wait_until``.

Waiting is process-wide: whichever provider completes a structure wakes its waiters.  Two
kinds of waiter, woken two ways by the completion door:

* :func:`wait_result` waits for one structure.  It is listed under that structure, and
  the door wakes the waiters of each structure it completes (:func:`wake_structure`):
  a program with a thread per connection in ``GetOverlappedResult(bWait=TRUE)`` wakes
  one thread per completion, not every waiting one.
* :func:`wait_until` waits for any predicate (a test counting routines, say); the door
  wakes all of them after every completion and every batch of routines
  (:func:`wake_all`), and each looks again.

The door reads :data:`WAITING` to know whether either kind waits at all: with nobody
waiting a completion pays two attribute reads.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from .. import apc
from ..structs import WSAOVERLAPPED, operation_of

__all__ = [
    "WAITING",
    "unwatch_structure",
    "wait_result",
    "wait_until",
    "wake_all",
    "wake_structure",
    "watch_structure",
]


class _Waiting:
    """Who waits: ``count`` threads in :func:`wait_until`, and ``by_structure``, the
    wake-ups (callables) of threads in :func:`wait_result` -- or of a drive of a lent
    loop, :func:`watch_structure` -- by the structure each waits for (written under
    ``lock``)."""

    __slots__ = ("by_structure", "count", "lock")

    def __init__(self) -> None:
        self.count = 0
        self.by_structure: dict[WSAOVERLAPPED, list[Callable[[], object]]] = {}
        self.lock = threading.Lock()


WAITING = _Waiting()
_results = threading.Condition()


def wait_result(ov: WSAOVERLAPPED, timeout: float | None = None) -> bool:
    """Block until ``ov`` is no longer pending (any provider completes it); False on timeout.

    The waiter is listed under ``ov`` before it looks, and the door wakes a structure's
    waiters after writing its result: one that completes between the look and the wait
    still wakes it."""
    if operation_of(ov) is None:
        return True
    wake = apc.Wakeup()
    watch_structure(ov, wake.set)
    try:
        return _until(lambda: operation_of(ov) is None, wake.wait, timeout)
    finally:
        unwatch_structure(ov, wake.set)


def watch_structure(ov: WSAOVERLAPPED, wake: Callable[[], object]) -> None:
    """Have ``wake()`` called each time the door writes ``ov``'s result (or undoes its
    claim), on the completing thread, until :func:`unwatch_structure`."""
    with WAITING.lock:
        WAITING.by_structure.setdefault(ov, []).append(wake)


def unwatch_structure(ov: WSAOVERLAPPED, wake: Callable[[], object]) -> None:
    """Undo :func:`watch_structure` (``wake`` compared by equality: a bound method is
    a new object each time it is read)."""
    with WAITING.lock:
        waiting = WAITING.by_structure.get(ov)
        if waiting is not None:
            waiting.remove(wake)
            if not waiting:
                del WAITING.by_structure[ov]


def wake_structure(ov: WSAOVERLAPPED) -> None:
    """Wake the threads waiting for ``ov`` (its result was written, or its claim undone)."""
    with WAITING.lock:
        waiting = WAITING.by_structure.get(ov)
        wakes = list(waiting) if waiting else []
    for wake in wakes:
        wake()


def wait_until(predicate: Callable[[], bool], timeout: float | None = None) -> bool:
    """Block until ``predicate()`` holds, re-checked after every completion and after
    every batch of completion routines ran (a predicate may count routines: they run
    later than their completion, on their own thread); False on timeout."""
    with _results:
        WAITING.count += 1
        try:
            return _until(predicate, _results.wait, timeout)
        finally:
            WAITING.count -= 1


def _until(
    done: Callable[[], bool], wait: Callable[[float | None], object], timeout: float | None
) -> bool:
    """Call ``wait`` (with the time left, or None) until ``done()``; False on timeout."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while not done():
        if deadline is None:
            wait(None)
            continue
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        wait(left)
    return True


def wake_all() -> None:
    """Wake every thread in :func:`wait_until` to look at its predicate again."""
    with _results:
        _results.notify_all()
