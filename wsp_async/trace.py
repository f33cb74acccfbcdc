"""Tracing (SPEC S12.2): one record per post and per completion, to a hook of yours.

``Provider(tracer=records.append)`` hands every record to the callable, on the
thread where the post or the completion happened.  With no tracer the provider
pays one ``is not None`` test per post and per completion.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import attrs

from ._ops import RECV, SEND

if TYPE_CHECKING:
    from ._ops import Operation
    from ._socket import Socket

__all__ = ["TraceRecord", "format_timeline"]

_KINDS = {SEND: "send", RECV: "recv"}


@attrs.frozen
class TraceRecord:
    """One post or completion of an overlapped operation."""

    event: str  # "post" or "complete"
    socket: int
    op_id: int
    kind: str
    nbytes: int
    status: int
    mechanism: str  # "routine", "event", "poll"
    issuing_thread: int | None
    thread: int
    time: float


def _mechanism(op: Operation) -> str:
    if op.routine is not None:
        return "routine"
    if op.event is not None:
        return "event"
    return "poll"


def _issuer(op: Operation) -> int | None:
    issuer: Any = op.issuer
    return None if issuer is None else int(issuer.thread_ident)


def _record(event: str, sock: Socket, op: Operation, nbytes: int) -> TraceRecord:
    return TraceRecord(
        event,
        sock.handle,
        id(op),
        _KINDS.get(op.kind, "ioctl"),
        nbytes,
        op.status,
        _mechanism(op),
        _issuer(op),
        threading.get_ident(),
        time.monotonic(),
    )


def post_record(sock: Socket, op: Operation) -> TraceRecord:
    return _record("post", sock, op, op.nbytes)


def completion_record(sock: Socket, op: Operation) -> TraceRecord:
    return _record("complete", sock, op, op.transferred)


def format_timeline(records: Iterable[TraceRecord]) -> str:
    """A trace as a table: time since the first record, event, socket, op, bytes, status."""
    rows = sorted(records, key=lambda r: r.time)
    if not rows:
        return "(empty trace)"
    start = rows[0].time
    ids: dict[int, int] = {}
    lines = [
        f"{'t (ms)':>10}  {'event':<8} {'socket':>7} {'op':>5} {'kind':<5} "
        f"{'bytes':>8} {'status':>6} {'via':<8}"
    ]
    for r in rows:
        op = ids.setdefault(r.op_id, len(ids) + 1)
        lines.append(
            f"{(r.time - start) * 1000:>10.3f}  {r.event:<8} {r.socket:>#7x} {op:>5} {r.kind:<5} "
            f"{r.nbytes:>8} {r.status:>6} {r.mechanism:<8}"
        )
    return "\n".join(lines)
