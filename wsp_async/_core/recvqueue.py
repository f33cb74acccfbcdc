"""Matching arrived data to posted receives (SPEC S11). No I/O here.

Rules of this module:

* Receives are filled in posting order (S11.1); data is copied into the
  caller's buffers, scattered across them in ``WSABUF`` order.
* A stream receive completes once at least one byte is there, or with 0 bytes
  at a graceful close (end of stream).  A datagram receive takes exactly one
  datagram; one larger than the buffers fills them, is marked ``MSG_PARTIAL``
  and completes with ``WSAEMSGSIZE``, and the rest of it is discarded (S11.2).
* ``MSG_PEEK`` copies without consuming.

The adapter reports arrivals (``feed``), the end of stream (``end``) and asks
``take`` whether a new receive can complete at once; every method returns the
receives that completed, as ``(op, status, nbytes)``, for the adapter to deliver.
"""

from __future__ import annotations

import collections
from typing import Any, Generic, Protocol, TypeVar

from ..constants import MSG_PARTIAL, MSG_PEEK
from ..errors import WSAErr
from .sendqueue import withdraw


class Receivable(Protocol):
    buffers: list[Any]
    nbytes: int
    flags: int
    out_flags: int
    source: Any
    fault: int


Op = TypeVar("Op", bound=Receivable)
Completion = tuple[Op, int, int]


def scatter(data: memoryview, buffers: list[Any]) -> int:
    """Copy ``data`` into ``buffers`` in order; return the number of bytes copied."""
    copied = 0
    remaining = len(data)
    for buf in buffers:
        if not remaining:
            break
        n = min(len(buf), remaining)
        buf[:n] = data[copied : copied + n]
        copied += n
        remaining -= n
    return copied


class StreamReceiver(Generic[Op]):
    """A stream socket's arrived bytes and waiting receives."""

    def __init__(self) -> None:
        self.chunks: collections.deque[memoryview] = collections.deque()
        self.size = 0
        self.ended = False
        self.waiting: collections.deque[Op] = collections.deque()

    def available(self) -> int:
        return self.size

    def _fill(self, op: Op) -> int:
        n = min(op.nbytes, self.size)
        if n == 0:
            return 0
        peek = bool(op.flags & MSG_PEEK)
        first = self.chunks[0]
        if len(first) >= n:  # the common case: one chunk serves the whole receive
            data = first[:n]
            if not peek:
                if len(first) == n:
                    self.chunks.popleft()
                else:
                    self.chunks[0] = first[n:]
        else:
            parts: list[memoryview] = []
            need = n
            index = 0
            while need:
                chunk = self.chunks[index]
                part = chunk[:need]
                parts.append(part)
                need -= len(part)
                if peek:
                    index += 1
                elif len(part) == len(chunk):
                    self.chunks.popleft()
                else:
                    self.chunks[0] = chunk[len(part) :]
            data = memoryview(b"".join(parts))
        if not peek:
            self.size -= n
        buffers = op.buffers
        if len(buffers) == 1 and len(buffers[0]) >= n:
            buffers[0][:n] = data  # one buffer that takes it all: scatter's first step
            return n
        return scatter(data, buffers)

    def _ready(self) -> bool:
        return self.size > 0 or self.ended

    def ready(self) -> bool:
        """True when a new receive would complete at once: bytes, or the end of stream,
        are there and no receive waits before it."""
        return not self.waiting and (self.size > 0 or self.ended)

    def take(self, op: Op) -> tuple[int, int] | None:
        """Complete ``op`` at once if nothing waits before it and data (or the end) is there."""
        if self.waiting:
            return None
        if op.fault:
            return op.fault, 0
        if not self._ready():
            return None
        return 0, self._fill(op)

    def post(self, op: Op) -> None:
        self.waiting.append(op)

    def _match(self) -> list[Completion[Op]]:
        done: list[Completion[Op]] = []
        waiting = self.waiting
        # _ready(), read inline: this runs for every arrival
        while waiting and (waiting[0].fault or self.size > 0 or self.ended):
            op = waiting.popleft()
            done.append((op, op.fault, 0) if op.fault else (op, 0, self._fill(op)))
        return done

    def feed(self, data: bytes) -> list[Completion[Op]]:
        if data:
            self.chunks.append(memoryview(data))
            self.size += len(data)
        return self._match()

    def end(self) -> list[Completion[Op]]:
        self.ended = True
        return self._match()

    def remove(self, which: Any = None) -> list[Op]:
        """Withdraw waiting receives (all, or those ``which(op)`` selects)."""
        return withdraw(self.waiting, which)


class DatagramReceiver(Generic[Op]):
    """A datagram socket's arrived datagrams and waiting receives."""

    #: Datagrams kept while no receive is posted; later ones are dropped, as a
    #: full socket receive buffer drops them.
    limit = 1024

    def __init__(self) -> None:
        self.datagrams: collections.deque[tuple[bytes, Any]] = collections.deque()
        self.waiting: collections.deque[Op] = collections.deque()
        self.dropped = 0

    def ready(self) -> bool:
        """True when a new receive would complete at once (a datagram waits for it)."""
        return not self.waiting and bool(self.datagrams)

    def available(self) -> int:
        """FIONREAD on a datagram socket: the size of the first datagram."""
        return len(self.datagrams[0][0]) if self.datagrams else 0

    def _fill(self, op: Op) -> tuple[int, int]:
        data, source = self.datagrams[0]
        if not op.flags & MSG_PEEK:
            self.datagrams.popleft()
        copied = scatter(memoryview(data), op.buffers)
        op.source = source
        if copied < len(data):
            op.out_flags |= MSG_PARTIAL
            return WSAErr.WSAEMSGSIZE, copied
        return 0, copied

    def take(self, op: Op) -> tuple[int, int] | None:
        if self.waiting:
            return None
        if op.fault:
            return op.fault, 0
        if not self.datagrams:
            return None
        return self._fill(op)

    def post(self, op: Op) -> None:
        self.waiting.append(op)

    def feed(self, data: bytes, source: Any) -> list[Completion[Op]]:
        if len(self.datagrams) >= self.limit and not self.waiting:
            self.dropped += 1
            return []
        self.datagrams.append((data, source))
        done: list[Completion[Op]] = []
        waiting = self.waiting
        while waiting and (waiting[0].fault or self.datagrams):
            op = waiting.popleft()
            if op.fault:
                done.append((op, op.fault, 0))
                continue
            status, n = self._fill(op)
            done.append((op, status, n))
        return done

    def end(self) -> list[Completion[Op]]:
        return []

    def remove(self, which: Any = None) -> list[Op]:
        return withdraw(self.waiting, which)
