"""Sends posted on threads other than the I/O loop's that can complete at once (SPEC S2.1,
S8.2; issue 10): Windows completes a send that fits the send buffer inside the call,
whichever thread makes it.

* :func:`send_staged` copies a send that fits the emulated send buffer into the
  hand-off, as a send already complete (a ``bytes`` buffer is shared, not copied); the
  loop writes it with its next batch.  A copy costs less than a system call on the
  posting thread, and the loop's write runs in parallel with the poster.
* :func:`send_direct` writes a send straight to the kernel from the posting thread when
  the socket is idle, under the adapter's ``write_lock``; if the kernel takes part, the
  rest becomes the hand-off's *front*, before every send posted meanwhile (S5.3).

Both read and write the adapter's public state only, under the locks it documents.
"""

from __future__ import annotations

from collections.abc import Callable

from .._core.arguments import skip
from .._core.engine import ABORTED
from .._core.operation import Operation, held_send
from .adapter import SocketAdapter

__all__ = ["send_direct", "send_staged"]


def send_direct(
    adapter: SocketAdapter, op: Operation, prepare: Callable[[Operation], object]
) -> bool:
    """A blocking stream send from another thread: straight to the kernel when idle.

    Idle means nothing queued, in flight or buffered here and no drain fault.
    Returns True when the kernel took all of it.  Otherwise ``prepare(op)`` is
    called (the caller hooks its wait) and the rest is queued at the front (see
    the module docstring) or, when not idle, the whole send is posted as usual;
    it then completes through the door.
    """
    engine = adapter.engine
    sendq = engine.sendq
    handoff = adapter.handoff
    with adapter.write_lock:
        transport = adapter.transport
        with handoff.lock:
            idle = not (
                transport is None
                or not adapter.foreign_writes  # no other thread's send reached the loop yet
                or handoff.closed
                or engine.error
                or engine.send_shut
                or handoff.sends  # pending sends on their way to the loop
                or handoff.staged  # complete ones copied there, not yet written
                or handoff.front is not None
                or sendq.waiting
                or sendq.inflight
                or engine.drain_delay is not None
                or transport.is_closing()
                # Both: the transport's count is read from this thread, and a transport
                # may show none while it is between two writes of its own (the
                # Proactor's does, inside _loop_writing); the loop's own last reading
                # is taken only between callbacks, so 0 there means all of it went out.
                or sendq.buffered
                or transport.get_write_buffer_size()
            )
        if idle:
            try:
                sent = adapter.sock.sendmsg(op.buffers)
            except OSError:
                sent = 0  # EAGAIN, or an error the queued path meets through the transport
            if sent == op.nbytes:
                return True
            if sent:
                op.buffers = skip(op.buffers, sent)
                op.nbytes -= sent
            op.direct = sent
            prepare(op)
            if not handoff.put_front(op):
                # Closed meanwhile: part of it went out, so it started; it is aborted.
                adapter.door.complete(op, ABORTED, 0)
            return False
    prepare(op)
    adapter.post_foreign(op)
    return False


def send_staged(adapter: SocketAdapter, op: Operation) -> bool:
    """Another thread's small send, copied into the emulated send buffer: True when it
    fits there, so it is complete at once (S4.1: held within SO_SNDBUF is consumed).

    The caller has checked that nothing of the socket is outstanding, so this completion
    cannot overtake an earlier one (S6.4).  The copy (a ``bytes`` buffer is shared, not
    copied) joins the hand-off in order
    as a send that is already complete; the loop writes it with the next batch.  It
    costs a copy instead of a system call and a loop wake-up per send.
    """
    engine = adapter.engine
    if adapter.transport is None or engine.drain_delay is not None:
        return False
    buffers = op.buffers
    data = buffers[0] if len(buffers) == 1 and type(buffers[0]) is bytes else b"".join(buffers)
    carrier = held_send([data], op.nbytes)
    sendq = engine.sendq
    handoff = adapter.handoff
    with handoff.lock:
        if (
            handoff.closed
            or engine.send_shut
            or engine.error
            or handoff.front is not None
            or handoff.sends
            or sendq.waiting
            or sendq.inflight
            or handoff.staged + sendq.buffered + op.nbytes > engine.capacity
        ):
            return False
        handoff.incoming.append(carrier)
        handoff.staged += op.nbytes
        wake = handoff.schedule_locked()
    if wake:
        handoff.wake()
    return True
