"""A wake-up that its thread waits for in ``select``, for threads that run an event loop.

A completion port's waiting thread sleeps on :class:`wsp_async.apc.Wakeup`, a lock.  On
a thread that runs an event loop of its own -- a second Proactor's, whose
``GetQueuedCompletionStatus`` is that loop's ``select`` while the first Proactor's thread
holds the provider's loop -- that is a blocking ``lock.acquire`` inside a loop's
iteration, which is what blocking-call detectors (blockbuster, run by anyio's tests) look
for, and what SPEC S15.2 says no call on a loop's thread does.  On Windows that wait is in
the kernel; here it is in ``select`` on a pipe, as an event loop's own wait is.

One pipe per thread, made on its first such wait and closed when the thread ends; both
ends are non-blocking.  The semantics are ``Wakeup``'s: ``set`` twice is set once, a set
before the wait wakes it at once, and the wait consumes it.  A set meant for an earlier
wait of the same thread can wake a later one early: the port's waits look again after
every wake-up, so that costs one more look, never a packet.
"""

from __future__ import annotations

import os
import select
import threading
import weakref

__all__ = ["FdWakeup", "thread_fd_wakeup"]


class FdWakeup:
    """``set`` / ``clear`` / ``wait`` over a non-blocking pipe (see the module doc)."""

    __slots__ = ("__weakref__", "_read", "_write")

    def __init__(self) -> None:
        self._read, self._write = os.pipe()
        os.set_blocking(self._read, False)
        os.set_blocking(self._write, False)
        weakref.finalize(self, _close_both, self._read, self._write)

    def set(self) -> None:
        try:
            os.write(self._write, b"\0")
        except OSError:
            pass  # full (set many times over, not yet waited for) or closed (thread gone)

    def clear(self) -> None:
        try:
            while os.read(self._read, 512):
                pass
        except OSError:
            pass  # empty

    def wait(self, timeout: float | None = None) -> None:
        select.select([self._read], [], [], timeout)
        self.clear()


def _close_both(read: int, write: int) -> None:
    os.close(read)
    os.close(write)


_local = threading.local()


def thread_fd_wakeup() -> FdWakeup:
    """The calling thread's :class:`FdWakeup`, cleared (made on its first use)."""
    wakeup: FdWakeup | None = getattr(_local, "wakeup", None)
    if wakeup is None:
        wakeup = _local.wakeup = FdWakeup()
    else:
        wakeup.clear()
    return wakeup


def _forget_in_child() -> None:
    # The pipe is shared with the parent after a fork: the child's thread makes its own.
    _local.__dict__.pop("wakeup", None)


os.register_at_fork(after_in_child=_forget_in_child)
