"""The asyncio face's calls of every message (issue 13): a send that completes at once, or a
receive of bytes already arrived, without a structure or a future -- and, for a send, at most
one record per loop iteration.

At 64 B the face's cost is its Python frames and checks (``benchmarks/README.md``), so each
socket object of :mod:`wsp_async.aio` has its ``send`` and ``recv_into`` made here, once:
one coroutine function each, which does the lean thing when the engine's state allows it
and otherwise awaits the face's full path (``posted``), which does everything -- and sees
every post that tracing, the verifier or injected faults must see.

Like :mod:`wsp_async._io.writer`, this reads and writes the adapter's public state only, under
the rules the adapter documents; everything here runs on the I/O loop's thread.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Coroutine
from typing import Any

from .._core.admission import HOLD, MEASURE, WRITE, admit_here
from .._core.engine import SocketState
from .._core.operation import Operation, OpKind, held_send
from .adapter import SocketAdapter
from .writer import kept

__all__ = ["FaceCall", "receiver", "sender"]

#: A call of the asyncio face on one socket: ``send(buffers, flags)``, ``recv_into(buffer, flags)``.
FaceCall = Callable[..., Coroutine[Any, Any, int]]

#: What the lean send takes besides ``bytes`` (the others go as a WSABUF list).
_BYTES_LIKE = (bytearray, memoryview)


#: A gather list of at most this many bytes is joined into one buffer by the lean send.
JOIN_BELOW = 16384


def _joined(buffers: list[Any] | tuple[Any, ...]) -> bytes | None:
    """A small gather list (a header and a body, say) as one ``bytes``, or None when it is
    not one of live contiguous buffers within ``JOIN_BELOW`` bytes (the full path then
    sends it as it is, or reports ``WSAEFAULT``).

    The copy is the one Winsock makes into the socket's send buffer, made once here: the
    send is then one buffer that can be written at once or held like any other.  Left
    to the full path, each such message was one system call and the full path's Python
    (0.17x raw at 64 B in three buffers, ``benchmarks/README.md``).
    """
    parts: list[Any] = []
    size = 0
    for item in buffers:
        if type(item) is not bytes:
            if not isinstance(item, _BYTES_LIKE):
                return None
            item = _byte_view(item)
            if item is None:
                return None
        size += len(item)
        if size > JOIN_BELOW:
            return None
        parts.append(item)
    return b"".join(parts)


def _byte_view(buffer: Any) -> memoryview | None:
    """A flat byte view of one bytes-like buffer, or None when it is not one live
    contiguous buffer (released, strided: the full path reports WSAEFAULT)."""
    try:
        view = memoryview(buffer)
    except (TypeError, ValueError):
        return None
    if not view.c_contiguous:
        return None
    return view if view.ndim == 1 and view.format == "B" else view.cast("B")


def sender(
    adapter: SocketAdapter, provider_wide: Any, loop_thread: int, posted: FaceCall
) -> FaceCall:
    """The asyncio face's ``send(buffers, flags=0)`` for ``adapter``'s socket.

    A send of one bytes-like buffer (or of a small gather list, joined into one),
    without flags, on the loop thread, that completes at once -- held within the
    emulated send buffer (S4.1) -- returns its length without a structure or a future.
    The first of a loop iteration goes straight to ``transport.write`` and marks the
    iteration (the adapter's coalescing); each one after it, smaller than half the
    emulated buffer, is *held*: added to one record already complete at the head of the
    send queue (the kind another thread's staged send uses, so close, SD_SEND, SIO_FLUSH,
    CancelIoEx and thread exit already treat it as consumed bytes), which the
    end-of-iteration pump offers to the kernel in one gather write.  A task that sends
    in a loop never suspends on a send that fits, so its whole train is one iteration:
    one system call per ``SO_SNDBUF``'s worth instead of one per message.  When the
    room runs out the next send takes the full path, which hands the held bytes on
    before it.  A send of half the buffer or more is written as the first one is: held,
    it would leave the next no room, and every other message would wait for the end of
    the iteration (0.9x asyncio streams at 64 KiB; written, 1.0x).  Everything else is
    awaited through ``posted`` (the full path).  A datagram socket's is ``posted``
    itself.

    Which sends complete at once, and how, is :func:`~wsp_async._core.admission.admit_here`'s
    answer (asked as ``lean``), so the rules are those of every other route: nothing
    earlier pending (S5.3, S6.4), room in the emulated buffer (S4.1) -- judged on the
    transport's last reading plus what was written or held since, the transport asked
    again only when that bound says no (a train of small sends asks once per buffer's
    worth) -- and, once other threads may write straight to the kernel, ``write_lock``
    tried for a write, never waited for.  Tracing, the verifier and injected
    faults see every post, so with any of them on the send takes the full path:
    ``provider_wide.watched`` is the one flag for all of them, set also by a fault or a
    slowed drain armed on any socket.

    One coroutine function made here, bound on the face's socket object, so that a
    send costs few Python frames: its own, admission's answer, and the write or the
    queue's hold.  At 64 B the frames *are* the cost: asking the one decision instead
    of checking inline costs about 90 ns a send (``benchmarks/README.md``, issue 24).
    """
    engine = adapter.engine
    if not engine.stream:
        return posted
    handoff = adapter.handoff
    get_ident = threading.get_ident
    write_alone = adapter.write_alone
    measure = adapter.measure

    async def send(buffers: Any, flags: int = 0) -> int:
        if flags:
            return await posted(buffers, flags)
        if type(buffers) is bytes:
            data: Any = buffers
        elif isinstance(buffers, _BYTES_LIKE):
            data = _byte_view(buffers)
            if data is None:
                return await posted(buffers, flags)
        elif type(buffers) is list or type(buffers) is tuple:
            data = _joined(buffers)  # the full path is given the list, never this copy
            if data is None:
                return await posted(buffers, flags)
        else:
            return await posted(buffers, flags)
        transport = adapter.transport
        if transport is None or provider_wide.watched or get_ident() != loop_thread:
            return await posted(buffers, flags)
        size = len(data)  # 0 as well: a transport writes nothing for it, and it is done
        route = admit_here(engine, handoff, size, True, True, True)
        if route is MEASURE:
            route = measure(size, True, True)
        if route is HOLD:
            engine.sendq.hold(data if data is buffers else kept(data), size, held_send)
            return size
        if route is not WRITE:
            return await posted(buffers, flags)
        if data is not buffers:
            data = kept(data)  # the transport may keep it; the caller's buffer is its own
        if not handoff.foreign_writes:
            transport.write(data)
        elif not write_alone(transport.write, data):
            return await posted(buffers, flags)
        sendq = engine.sendq
        sendq.wrote(size)
        if engine.coalescing:
            # Written while the sends of this iteration gather: one of half the buffer or
            # more (admission's rule).  Read the transport now, so that the next such send
            # finds its room without a MEASURE round (8 -> 6 calls per 64 KiB message).
            sendq.report(transport.get_write_buffer_size())
        else:
            adapter.mark_iteration()
        return size

    return send


def receiver(
    adapter: SocketAdapter, provider_wide: Any, loop_thread: int, posted: FaceCall
) -> FaceCall:
    """The asyncio face's ``recv_into(buffer, flags=0)`` for ``adapter``'s socket.

    A receive without flags, on the loop thread, of bytes already arrived fills the
    caller's buffer and returns the count; everything else is awaited through
    ``posted``.  A datagram socket's is ``posted`` itself.

    At once only when no receive waits before it (S11.1 keeps posting order) and none
    is on its way from another thread, the socket is connected and open for receiving,
    and data is there (an end of stream or an error takes the full path, which reports
    it).  Tracing, the verifier and faults take the full path, as for
    :func:`sender`.
    """
    engine = adapter.engine
    if not engine.stream:
        return posted
    handoff = adapter.handoff
    get_ident = threading.get_ident
    connected = SocketState.CONNECTED

    async def recv_into(buffer: Any, flags: int = 0) -> int:
        if not flags:
            receiver = engine.receiver
            if not (
                receiver.waiting
                or not receiver.available()
                or engine.state != connected
                or engine.recv_shut
                or handoff.incoming
                or handoff.closed
                or provider_wide.watched  # also this socket's faults
                or get_ident() != loop_thread
            ):
                try:
                    view = memoryview(buffer).cast("B")
                except (TypeError, ValueError):  # released, strided, not bytes-like
                    return await posted(buffer, flags)
                if len(view) and not view.readonly:
                    op = Operation(OpKind.RECV, [view], len(view))
                    got = engine.receive_now(op)  # data is there: (0, count)
                    if got is not None:
                        adapter.maybe_resume_reading()
                        return got[1]
        return await posted(buffer, flags)

    return recv_into
