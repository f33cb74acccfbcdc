"""Tracing (SPEC S12.2): one record per post and per completion, to a hook of yours.

``Provider(tracer=records.append)`` hands every record to the callable, on the
thread where the post or the completion happened.  With no tracer the provider
pays one ``is not None`` test per post and per completion.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterable
from typing import Any

import attrs

from ._core.operation import Operation, OpKind

__all__ = ["JsonLinesTracer", "TraceRecord", "format_timeline", "read_trace"]

_KINDS = {OpKind.SEND: "send", OpKind.RECV: "recv"}


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
    #: The thread that will run the routine (routine mechanism only).
    delivering_thread: int | None
    #: The thread on which this post or completion happened.
    thread: int
    time: float
    #: For ``event == "verifier"``: what the verifier found (S12.3).
    message: str = ""


def _mechanism(op: Operation) -> str:
    if op.routine is not None:
        return "routine"
    if op.event is not None:
        return "event"
    return "poll"


def _issuer(op: Operation) -> int | None:
    issuer: Any = op.issuer
    return None if issuer is None else int(issuer.thread_ident)


def _record(event: str, op: Operation, nbytes: int, message: str = "") -> TraceRecord:
    target: Any = op.thread
    return TraceRecord(
        event,
        op.handle,
        id(op),
        _KINDS.get(op.kind, "ioctl"),
        nbytes,
        op.status,
        _mechanism(op),
        _issuer(op),
        None if target is None else int(target.thread_ident),
        threading.get_ident(),
        time.monotonic(),
        message,
    )


def post_record(op: Operation) -> TraceRecord:
    return _record("post", op, op.nbytes)


def completion_record(op: Operation) -> TraceRecord:
    return _record("complete", op, op.transferred)


def verifier_record(handle: int, op: Operation | None, message: str) -> TraceRecord:
    if op is None:
        return TraceRecord(
            "verifier",
            handle,
            0,
            "-",
            0,
            0,
            "-",
            None,
            None,
            threading.get_ident(),
            time.monotonic(),
            message,
        )
    return _record("verifier", op, op.nbytes, message)


class JsonLinesTracer:
    """A tracer that appends one JSON object per record to a file (thread-safe).

    ``Provider(tracer=JsonLinesTracer("trace.jsonl"))``, then
    ``python -m wsp_async timeline trace.jsonl`` prints the timeline.
    """

    def __init__(self, path: str) -> None:
        self._file = open(path, "a", encoding="utf-8")
        self._lock = threading.Lock()

    def __call__(self, record: TraceRecord) -> None:
        line = json.dumps(attrs.asdict(record))
        with self._lock:
            self._file.write(line + "\n")

    def close(self) -> None:
        with self._lock:
            self._file.close()


def read_trace(path: str) -> list[TraceRecord]:
    with open(path, encoding="utf-8") as f:
        return [TraceRecord(**json.loads(line)) for line in f if line.strip()]


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
