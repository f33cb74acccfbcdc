"""Sends posted on a thread other than the loop's: ``STAGE`` (a copy joins the hand-off,
complete) and ``DIRECT`` (written straight to the kernel from the posting thread), or the
queue through the hand-off (SPEC S2.1, S8.2).  The route is
:func:`~wsp_async._core.admission.admit_other`'s; the locks are taken in the writer's
order (:mod:`~wsp_async._io.writer`): ``write_lock``, then the hand-off's ``lock``.
"""

from __future__ import annotations

from collections.abc import Callable

from .._core import admission
from .._core.admission import DIRECT, STAGE
from .._core.arguments import skip
from .._core.engine import ABORTED
from .._core.operation import Operation, held_send
from .writer import Writer

__all__ = ["send_other"]


def send_other(
    adapter: Writer,
    op: Operation,
    plain: bool,
    blocking: bool,
    prepare: Callable[[Operation], object],
) -> bool:
    """A stream send posted on another thread: True when it completed inside the call.

    The route is :func:`~wsp_async._core.admission.admit_other`'s, asked under the
    hand-off's lock, and for ``DIRECT`` again under ``write_lock`` too: ``STAGE`` copies
    the send into the hand-off already complete, ``DIRECT`` writes it straight to the
    kernel.  A send that does not complete so has ``prepare(op)`` called (the caller
    counts it, or hooks its wait) and is queued -- through the hand-off, or, the rest of
    a direct send the kernel took in part, at its front -- and completes through the
    door.  Raises ``WSAError`` when the hand-off is closed (nothing started).
    """
    if adapter.transport is not None:
        # STAGE, asked and done under the hand-off's lock, here rather than in a
        # function of its own: an IOCP server's every send passes (issue 26).  A copy
        # of the send (a ``bytes`` buffer is shared) joins the hand-off in order,
        # complete (S4.1: held within SO_SNDBUF is consumed), for the loop's next batch.
        handoff = adapter.handoff
        lock = handoff.lock
        wake = False
        lock.acquire()
        try:
            route = admission.admit_other(adapter.engine, handoff, op.nbytes, plain, blocking)
            if route is STAGE:
                buffers = op.buffers
                data = (
                    buffers[0]
                    if len(buffers) == 1 and type(buffers[0]) is bytes
                    else b"".join(buffers)
                )
                wake = handoff.stage_locked(data, op.nbytes, held_send)
        finally:
            lock.release()
        if route is STAGE:
            if wake:
                handoff.wake()
            return True
        if route is DIRECT:
            wrote = _direct(adapter, op, plain, blocking, prepare)
            if wrote is not None:
                return wrote  # all of it, or the rest queued at the front (or aborted)
    prepare(op)
    adapter.post_foreign(op)
    return False


def _direct(
    adapter: Writer,
    op: Operation,
    plain: bool,
    blocking: bool,
    prepare: Callable[[Operation], object],
) -> bool | None:
    """``DIRECT``: write the send straight to the kernel from this thread; True when the
    kernel took all of it, False when the rest was queued, None when the answer under
    the locks is no longer ``DIRECT`` (nothing written: the caller queues it).

    Asked again under ``write_lock`` and the hand-off's lock, with the transport's own
    count read too: a transport may show nothing while it is between two writes of its
    own (the Proactor's does, inside ``_loop_writing``), and the loop's last reading is
    taken only between callbacks.  If the kernel takes part, the rest becomes the
    hand-off's *front*, before every send posted meanwhile (S5.3), after ``prepare(op)``.
    """
    engine = adapter.engine
    handoff = adapter.handoff
    with adapter.write_lock:
        transport = adapter.transport
        with handoff.lock:
            if (
                transport is None
                or admission.admit_other(engine, handoff, op.nbytes, plain, blocking) != DIRECT
                or transport.is_closing()
                or transport.get_write_buffer_size()
            ):
                return None
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
