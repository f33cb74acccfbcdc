"""Hearing that a thread is gone, for SPEC S10.4.

When a thread that issued overlapped operations exits (or, for a thread that
runs an asyncio loop, when its loop closes), its operations not yet handed on
are cancelled with ``WSA_OPERATION_ABORTED``.  The APC module tells us of the
exit through an exit hook on the thread's target; this part keeps one hook per
target and, on exit, asks the I/O loop to run the cancellation.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable

from .. import apc

__all__ = ["ThreadWatch"]


class ThreadWatch:
    """The APC targets a provider listens to for their end."""

    def __init__(self, wake: Callable[..., object], gone: Callable[[apc.ApcTarget], object]):
        self._wake = wake
        self._gone = gone
        #: The targets already watched (read without the lock as a fast first test).
        self.watched: set[object] = set()
        self._lock = threading.Lock()
        self.closed = False

    def watch(self, target: apc.ApcTarget) -> None:
        if target in self.watched:
            return
        with self._lock:
            if target in self.watched:
                return
            self.watched.add(target)
        if not target.add_exit_hook(self._exited):
            self.watched.discard(target)

    def _exited(self, target: apc.ApcTarget) -> None:
        self.watched.discard(target)
        if not self.closed:
            with contextlib.suppress(RuntimeError):  # the loop itself closed
                self._wake(self._gone, target)
