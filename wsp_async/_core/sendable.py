"""What the send queue holds (SPEC S5.3, S14.5). No I/O here.

The queue (:mod:`wsp_async._core.sendqueue`) asks three things of an operation --
its size, its place in the stream, and whether it is one that goes alone or in parts
-- and nothing else: :class:`Sendable` names them, so that the queue can be checked
with records of the tests' own making.  An operation handed on in parts (a
``TransmitFile``) carries a :class:`PartSource`, and travels as :class:`Piece` objects,
the last of which names it as ``owner``.
"""

from __future__ import annotations

from typing import Any, Generic, Protocol, TypeVar

import attrs

from ..constants import STATUS_PENDING

__all__ = ["Op", "PartSource", "Piece", "Sendable", "owners"]


class PartSource(Protocol):
    """Hands out one operation's bytes piece by piece (a TransmitFile, S14.5)."""

    #: Bytes handed out so far.
    sent: int
    #: Once the last piece is out: 0, or the WSA code the operation completes with.
    error: int

    def take(self) -> tuple[Any, bool]:
        """The next piece's buffer, and True when it is the last one."""


class Sendable(Protocol):
    """What the queue needs of an operation: its size, its place, and OOB-ness."""

    nbytes: int
    end: int
    urgent: bool
    fault: int
    parts: PartSource | None
    #: Bytes the completion reports beyond ``nbytes`` (negative: fewer).
    direct: int
    #: Its data (a gather write offers them to the kernel whole).
    buffers: list[Any]
    #: 0 for a record held complete (its bytes are consumed), else pending.
    status: int


Op = TypeVar("Op", bound=Sendable)


@attrs.define(eq=False, slots=True)
class Piece(Generic[Op]):
    """One part of an operation handed on in parts; the last one names its ``owner``.

    Every piece knows its ``source``: a piece the transport refused ends its operation
    (:meth:`SendQueue.refused`), whichever piece it was."""

    buffers: list[Any]
    nbytes: int
    source: Op
    owner: Op | None = None
    end: int = 0
    urgent: bool = False
    fault: int = 0
    parts: None = None
    direct: int = 0
    #: Nothing to verify or trace: the owner is the operation the caller sees.
    checksum: None = None
    pending: bool = False
    #: Never 0: a piece is handed on as it is made, never held (see :meth:`SendQueue.post`).
    status: int = STATUS_PENDING


def owners(items: Any) -> list[Any]:
    """The operations among handed-on items: a piece stands for its owner, or for nothing."""
    return [
        item.owner if type(item) is Piece else item
        for item in items
        if type(item) is not Piece or item.owner is not None
    ]
