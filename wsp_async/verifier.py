"""The verifier (SPEC S12.3, ``Provider(debug=True)``): misuse reported through ``warnings``.

It checks what Winsock leaves undefined and a real provider cannot see: a data
buffer changed while the provider owns it (a checksum at post compared with
one when the bytes are handed on), a pending ``WSAOVERLAPPED`` posted again, and
``fWait=True`` on an operation that has a completion routine.

Each finding goes to ``warnings`` (category :class:`VerifierWarning`) and, when
a tracer is set, into the trace.  The callers run these functions through the
completion door's ``isolated``: under ``-W error`` the warning becomes an
exception, which is reported and never strands an operation.
"""

from __future__ import annotations

import warnings
import zlib
from collections.abc import Callable
from typing import Any

from ._core.operation import Operation
from .trace import verifier_record

__all__ = ["VerifierWarning"]

Tracer = Callable[[Any], object] | None


class VerifierWarning(UserWarning):
    """A misuse of the overlapped contract found by the verifier."""


def _checksum(buffers: list[Any]) -> int:
    crc = 0
    for buf in buffers:
        crc = zlib.crc32(buf, crc)
    return crc


def remember(op: Operation) -> None:
    op.checksum = _checksum(op.buffers)


def report(tracer: Tracer, handle: int, op: Operation | None, message: str) -> None:
    """Every finding goes to the trace (when tracing) and to ``warnings``."""
    if tracer is not None:
        tracer(verifier_record(handle, op, message))
    warnings.warn(f"socket {handle:#x}: {message}", VerifierWarning, stacklevel=4)


def check_unchanged(tracer: Tracer, op: Operation) -> None:
    """At hand-on: the data must be what it was at post."""
    if op.checksum is not None and _checksum(op.buffers) != op.checksum:
        report(
            tracer,
            op.handle,
            op,
            "a send's data buffer was modified while the provider owned it (SPEC S5.2)",
        )


def report_reused_overlapped(tracer: Tracer, handle: int) -> None:
    report(
        tracer, handle, None, "a WSAOVERLAPPED that is still pending was posted again (SPEC S3.4)"
    )


def report_wait_with_routine(tracer: Tracer, handle: int) -> None:
    report(
        tracer,
        handle,
        None,
        "WSPGetOverlappedResult(fWait=True) on an operation that has a completion routine: "
        "its hEvent is the caller's, so the wait is undefined on Windows (SPEC S12.3)",
    )


def report_slow_routine(tracer: Tracer, op: Operation, seconds: float, threshold: float) -> None:
    report(
        tracer,
        op.handle,
        op,
        f"a completion routine blocked its event loop for {seconds * 1000:.1f} ms "
        f"(threshold {threshold * 1000:.0f} ms)",
    )
