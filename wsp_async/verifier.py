"""The verifier (SPEC S12.3, ``Provider(debug=True)``): misuse reported through ``warnings``.

It checks what Winsock leaves undefined and a real provider cannot see: a data
buffer changed while the provider owns it (a checksum at post compared with
one when the bytes are handed on), a pending ``WSAOVERLAPPED`` posted again, and
``fWait=True`` on an operation that has a completion routine.
"""

from __future__ import annotations

import warnings
import zlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._base import ProviderBase as Provider
    from ._ops import Operation
    from ._socket import Socket

__all__ = ["VerifierWarning"]


class VerifierWarning(UserWarning):
    """A misuse of the overlapped contract found by the verifier."""


def _checksum(buffers: list[Any]) -> int:
    crc = 0
    for buf in buffers:
        crc = zlib.crc32(buf, crc)
    return crc


def remember(op: Operation) -> None:
    op.checksum = _checksum(op.buffers)


def _report(sock: Socket, op: Operation | None, message: str) -> None:
    """Every finding goes to ``warnings`` and, when tracing is on, into the trace."""
    tracer = sock.provider.tracer
    if tracer is not None:
        from .trace import verifier_record

        tracer(verifier_record(sock, op, message))
    warnings.warn(f"socket {sock.handle:#x}: {message}", VerifierWarning, stacklevel=4)


def check_unchanged(sock: Socket, op: Operation) -> None:
    """At hand-on: the data must be what it was at post."""
    if op.checksum is not None and _checksum(op.buffers) != op.checksum:
        _report(
            sock, op, "a send's data buffer was modified while the provider owned it (SPEC S5.2)"
        )


def report_reused_overlapped(provider: Provider, sock: Socket, ov: object) -> None:
    _report(sock, None, "a WSAOVERLAPPED that is still pending was posted again (SPEC S3.4)")


def report_wait_with_routine(provider: Provider, sock: Socket) -> None:
    _report(
        sock,
        None,
        "WSPGetOverlappedResult(fWait=True) on an operation that has a completion routine: "
        "its hEvent is the caller's, so the wait is undefined on Windows (SPEC S12.3)",
    )


def report_slow_routine(sock: Socket, op: Operation, seconds: float) -> None:
    _report(
        sock,
        op,
        f"a completion routine blocked its event loop for {seconds * 1000:.1f} ms "
        f"(threshold {sock.provider.slow_routine * 1000:.0f} ms)",
    )
