"""Which way a stream send goes: the one admission decision of every send route. No I/O.

A send on a stream socket either completes inside the call that posts it -- its bytes
consumed, that is in the kernel or held within ``SO_SNDBUF`` (SPEC S4.1, S2.1) -- or takes
its turn in the send queue and completes through the door when they are.  Which one, and
by which way, is decided here and nowhere else; the routes *ask* and carry the answer out.

The answer is a :class:`Route`:

==========  ===============  ==============================================================
route       asked from       what the caller does
==========  ===============  ==============================================================
``QUEUE``   any thread       posts the send in order (the send queue, or the hand-off from
                             another thread); it completes when its bytes are consumed
``WRITE``   the loop thread  writes it to the transport now, and it is complete
``HOLD``    the loop thread  adds it to the record held complete at the queue's head,
                             for the gather write at the end of the loop iteration (only
                             the asyncio face's lean send, ``lean``)
``MEASURE`` the loop thread  the last reading of the transport says no room: read it
                             (:meth:`SendQueue.report`) and ask again, once
``THROUGH`` the loop thread  an emulated buffer of 0 (S4.2: complete once the kernel
                             holds it): writes it now and hands it on as the queue would;
                             it is complete if the transport then holds nothing
``STAGE``   another thread   copies it into the hand-off as a record already complete
``DIRECT``  another thread   writes it straight to the kernel from the posting thread;
                             the rest, if the kernel takes part, goes before everything
==========  ===============  ==============================================================

The rules, each one place:

* **Nothing overtaken** (S5.3, S6.4).  A send completes at once only when no earlier
  send of the socket is pending anywhere: waiting or in flight in the send queue (a
  record held complete does not count: its notice is out), on its way from another
  thread (``crossing.sends``, ``crossing.incoming`` seen from the loop thread), the rest
  of a direct send (``crossing.front``), or counted and not yet queued (the pending
  count's ``sends``, for another thread's post racing this one).
* **Room** (S4.1): the bytes fit the emulated send buffer beside what is there --
  ``SendQueue.used``, the transport's last reading plus what went to it or was held
  since, an upper bound.  Another thread also counts what it staged that the loop has
  not taken.
* **Plain** (the caller's word): no ``MSG_OOB``, no injected fault, no TransmitFile
  pieces, nothing watching every post.  Anything else queues, where its rule lives.
* **Open**: a connected socket, not shut for sending, no error, and no slowed drain
  (S12.1) -- the engine's ``send_ready`` -- and not closed.  Otherwise it queues, and
  the queue reports what happened.
* **One writer at a time**: from another thread, ``DIRECT`` only once other threads'
  sends reach the kernel that way at all (``crossing.foreign_writes``) and nothing at
  all is in the emulated buffer -- a record held complete keeps it out, so held bytes
  never land behind bytes written after them.  On the loop thread, a ``WRITE`` then
  takes ``write_lock`` (the adapter's business).

There is one kind of held bytes, in one place once the loop has them: a record
already complete at the head of the send queue, counted in ``SendQueue.held``.  The
face's holds are made there; another thread's staged copies travel through the
hand-off as one such record per burst (counted in ``crossing.staged`` meanwhile), join
the queue when the loop takes them in, and the face may add to such a record like to
its own.

Whether there is a transport to write to at all, and whether ``write_lock`` is free
when other threads may write, are the adapter's facts: it asks only when there is one,
and a write it cannot make takes the queue.  Every answer other than ``QUEUE`` is asked
again under the locks by a caller on another thread, since the state may move between
its first look and the lock.
"""

from __future__ import annotations

import enum
from collections import deque
from typing import Any, Protocol

from .engine import SocketEngine

__all__ = [
    "Crossing",
    "Route",
    "admit_here",
    "admit_nonblocking",
    "admit_other",
    "urgent_goes_now",
]


class Route(enum.IntEnum):
    """The way one stream send goes (see the module's table)."""

    QUEUE = 0
    WRITE = 1
    HOLD = 2
    MEASURE = 3
    STAGE = 4
    DIRECT = 5
    THROUGH = 6


QUEUE, WRITE, HOLD, MEASURE, STAGE, DIRECT, THROUGH = Route


class Crossing(Protocol):
    """What the decision reads of a socket's cross-thread hand-off."""

    #: Posts from other threads the loop has not taken yet, in order.
    incoming: deque[Any]
    #: The rest of a direct send, to go before everything.
    front: Any
    #: Of ``incoming``, the sends still pending.
    sends: int
    #: Bytes of ``incoming`` staged complete.
    staged: int
    #: Closed: nothing more enters.
    closed: bool
    #: ``incoming``, ``front`` or ``closed``: kept current by the hand-off.
    busy: bool
    #: Other threads' sends have reached this socket: they may write to the kernel.
    foreign_writes: bool


def admit_here(
    engine: SocketEngine, crossing: Crossing, nbytes: int, plain: bool, lean: bool, coalesce: bool
) -> Route:
    """The route of a stream send posted on the loop thread.

    ``lean``: the asyncio face's send, which may be held; ``coalesce``: a send after the
    first of a loop iteration joins the gather write at its end (held when ``lean``,
    queued otherwise) instead of going out at once.  The hand-off's posts are taken into
    the queue before the full path asks, so ``busy`` there means they are not yet.

    Every send of the face asks this, so it reads flags kept current by their owners
    (``send_ready``, ``busy``, ``used``) rather than recomputing them.
    """
    sendq = engine.sendq
    if not (plain and engine.send_ready) or crossing.busy or sendq.inflight:
        return QUEUE
    waiting = sendq.waiting
    if waiting:
        # Only a record held complete may be before it, and only the face joins it --
        # never the rest of an urgent send, whose last byte must stay the urgent one.
        if not lean or len(waiting) > 1 or waiting[0].status or waiting[0].urgent:
            return QUEUE
        return HOLD if sendq.used + nbytes <= sendq.capacity else MEASURE
    if not lean and not sendq.capacity:
        # No emulated buffer (the Proactor's sockets): no room to judge, nothing to
        # gather; what the queue would do with it -- write it, see what the kernel
        # took -- done at once, without the queue's turn (issue 26).
        return THROUGH
    if sendq.used + nbytes > sendq.capacity:
        return MEASURE
    if coalesce and engine.coalescing:
        if not lean:
            return QUEUE
        if nbytes * 2 < sendq.capacity:
            return HOLD
        # Half the buffer or more: held, it would leave no room for the next send, which
        # would then take the full path and wait for the end of the iteration -- a loop
        # turn per two messages where asyncio streams write each one (issue 26: 48 Python
        # calls per 64 KiB message, 6 written at once).
    return WRITE


def admit_other(
    engine: SocketEngine, crossing: Crossing, nbytes: int, plain: bool, blocking: bool
) -> Route:
    """The route of a stream send posted on another thread (overlapped, or ``blocking``).

    When both would do, an overlapped send is staged (its call returns without a system
    call on its thread) and a blocking one writes itself (its thread waits anyway, and a
    copy of a large send into the hand-off, written again by the loop, cost the
    ``blocking-thread`` bench row 40% at 64 KiB).

    Read without the loop: the caller that acts on ``STAGE`` or ``DIRECT`` asks again
    under the hand-off's lock (and ``write_lock`` for ``DIRECT``), where the loop cannot
    move the queue or the hand-off between the answer and the act.
    """
    if (
        not (plain and nbytes and engine.send_ready)
        # Counted, perhaps not yet queued: its notice comes first.  (The count's two
        # tallies read as its ``sends`` would, without the property's call.)
        or engine.pending.here_sends + engine.pending.other_sends
        or crossing.closed
        or crossing.sends
        or crossing.front is not None
    ):
        return QUEUE
    sendq = engine.sendq
    if sendq.waiting or sendq.inflight:
        return QUEUE
    staged = crossing.staged
    fits = sendq.used + staged + nbytes <= sendq.capacity
    if (blocking or not fits) and crossing.foreign_writes and not staged and not sendq.used:
        return DIRECT
    return STAGE if fits else QUEUE


def urgent_goes_now(engine: SocketEngine, crossing: Crossing, nbytes: int) -> bool:
    """Would a ``MSG_OOB`` send posted on the loop thread complete inside its call?

    An urgent send goes alone, and only once the transport holds nothing (the kernel
    marks urgent data at the end of what it has), so: nothing queued, in flight or on its
    way before it, nothing in the emulated buffer, and it fits (S4.1).  A blocking one
    that would not is refused on the loop thread, which may not wait (S7.3).
    """
    sendq = engine.sendq
    return (
        engine.send_ready
        and not crossing.busy
        and not sendq.waiting
        and not sendq.inflight
        and not sendq.used
        and nbytes <= sendq.capacity
    )


def admit_nonblocking(engine: SocketEngine, crossing: Crossing) -> bool:
    """May a non-blocking send (S8.1), all or nothing, go now from the loop thread?

    Yes while nothing is queued before it and the emulated buffer is not over its
    capacity: like Windows, a non-blocking send that finds room takes the whole send,
    even past ``SO_SNDBUF``; one that finds the buffer full is ``WSAEWOULDBLOCK``.
    The caller has taken the hand-off in, handed held sends on and read the transport.
    """
    sendq = engine.sendq
    return not (sendq.waiting or crossing.busy or sendq.used > sendq.capacity)
