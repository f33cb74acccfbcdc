"""The Winsock structures of the SPI face, as attrs classes (SPEC S1).

Field names keep their C spelling (``Internal``, ``hEvent``) so ported code
reads the same.  Everything is compared by identity (``eq=False``): a
``WSAOVERLAPPED`` *is* its identity -- two structures with equal fields are two
different operations.
"""

from __future__ import annotations

import threading
from typing import Any

import attrs

from .apc import ApcTarget, current_target
from .constants import STATUS_PENDING
from .ntstatus import ntstatus_of

__all__ = [
    "DWORD",
    "INT",
    "NoPortPacket",
    "TRANSMIT_FILE_BUFFERS",
    "WSABUF",
    "WSAOVERLAPPED",
    "WSATHREADID",
    "is_box",
    "store",
]


@attrs.define(eq=False)
class WSABUF:
    """One buffer of a scatter/gather list: ``len`` bytes of ``buf``.

    ``buf`` is any bytes-like object (writable for receives).  The provider
    captures the list before ``WSPSend`` returns (SPEC S5.1) but keeps a
    reference to ``buf`` itself until the operation completes (SPEC S5.2).
    """

    len: int
    buf: Any


@attrs.define(eq=False)
class TRANSMIT_FILE_BUFFERS:
    """``TransmitFile``'s head and tail: ``HeadLength`` bytes of ``Head`` go before the
    file, ``TailLength`` bytes of ``Tail`` after it (SPEC S14.5).  Either may be None."""

    Head: Any = None
    HeadLength: int = 0
    Tail: Any = None
    TailLength: int = 0


@attrs.define(eq=False)
class WSAOVERLAPPED:
    """The per-operation structure; the provider writes ``Internal``/``InternalHigh``.

    While the operation is pending ``Internal == STATUS_PENDING``; afterwards it
    holds the operation's NTSTATUS (``STATUS_SUCCESS`` 0, ``STATUS_CANCELLED``,
    ``STATUS_CONNECTION_RESET``, ...), as Windows' base provider leaves it, and
    ``InternalHigh`` the byte count (SPEC S2.5).  The Winsock code is
    ``wsa_of(Internal)``, the Win32 one ``win32_of(Internal)``.  ``hEvent`` is an event to set on completion, or -- when a
    completion routine is given -- any context the caller likes (SPEC S6.6).
    """

    Internal: int = 0
    InternalHigh: int = 0
    Offset: int = 0
    OffsetHigh: int = 0
    hEvent: Any = None
    # Output flags of the completed operation (MSG_PARTIAL for a truncated datagram).
    _flags: int = attrs.field(default=0, init=False, repr=False)

    @property
    def pending(self) -> bool:
        """True while an operation posted with this structure has not completed."""
        return self in _pending


#: The provider's record of each pending structure's operation.  It is how S3.4 (no
#: second post of a pending structure) and S7.2 find the operation; an entry lives
#: from the claim to the completion, so structure and record never outlive each other.
#: ``setdefault`` on it is one atomic step, which is what makes the claim atomic.
_pending: dict[WSAOVERLAPPED, Any] = {}


#: :func:`claim_structure`'s atomic step, for the send path that claims inline (a frame
#: per send, issue 26): ``tie_structure(ov, op) is op`` when ``ov`` was not pending and
#: now is, for ``op``; the caller then sets ``Internal`` to ``STATUS_PENDING`` itself.
tie_structure = _pending.setdefault


def claim_structure(ov: WSAOVERLAPPED, op: Any) -> tuple[int, int] | None:
    """Tie ``ov`` to the pending ``op`` and mark it pending, atomically (S2.5, S3.4).

    Returns what ``Internal``/``InternalHigh`` held (to restore if the post fails),
    or None when ``ov`` is already pending for another operation.
    """
    if _pending.setdefault(ov, op) is not op:
        return None
    saved = (ov.Internal, ov.InternalHigh)
    ov.Internal = STATUS_PENDING
    return saved


def pending_operations() -> list[Any]:
    """Every operation pending on a structure now, of any provider and socket (any
    thread): one copy of the table's values, taken in a single step under the
    interpreter lock, so it is what was pending at one instant."""
    return list(_pending.values())


def operation_of(ov: WSAOVERLAPPED) -> Any:
    """The provider's record of the operation pending on ``ov`` (None when not pending)."""
    return _pending.get(ov)


def release_structure(ov: WSAOVERLAPPED, saved: tuple[int, int]) -> None:
    """Undo :func:`claim_structure` for a post that failed before anything started."""
    ov.Internal, ov.InternalHigh = saved
    _pending.pop(ov, None)


def write_result(ov: WSAOVERLAPPED, status: int, nbytes: int, flags: int) -> None:
    """Fill in a completed operation's result (S2.5) and untie the structure from it.

    ``Internal`` is written before the structure stops being pending, so a waiter
    that sees it done reads a complete result.
    """
    ov.InternalHigh = nbytes
    ov._flags = flags
    ov.Internal = status
    _pending.pop(ov, None)


def write_results(ops: list[Any]) -> None:
    """:func:`write_result` for a batch of completed operations, each with its ``status``
    (a Winsock code, 0 for success) and ``transferred`` set, in one loop: a burst of
    routine sends completes a few hundred at a time, and a call per structure was a
    tenth of a send's Python (issue 26)."""
    pending = _pending
    for op in ops:
        ov = op.overlapped
        if ov is not None:
            ov.InternalHigh = op.transferred
            ov._flags = op.out_flags
            status = op.status
            ov.Internal = ntstatus_of(status) if status else 0
            pending.pop(ov, None)


def result_flags(ov: WSAOVERLAPPED) -> int:
    """Output flags of the completed operation (``MSG_PARTIAL`` for a truncated datagram)."""
    return ov._flags


@attrs.frozen(eq=False)
class WSATHREADID:
    """Names the thread on which a completion routine must run (SPEC S6.1).

    ``ThreadHandle`` is the thread's ident.  ``target`` is where its APCs go
    (its loop, when it was running one at capture time); the provider keeps
    this structure, not a pointer to it, as ``ws2spi.h`` requires.
    """

    ThreadHandle: int
    Reserved: int = 0
    target: ApcTarget | None = attrs.field(default=None, repr=False)

    @classmethod
    def current(cls) -> WSATHREADID:
        """The calling thread (with its running event loop, if it runs one)."""
        return cls(threading.get_ident(), 0, current_target())


@attrs.frozen(eq=False)
class NoPortPacket:
    """An ``hEvent`` with its low bit set (SPEC S13.2): ``event`` is still set when the
    operation completes, but no packet goes to the socket's completion port.

    Windows code writes ``(HANDLE)((ULONG_PTR)hEvent | 1)``; here an ``int`` handle with
    bit 0 set means the same, and an event object is wrapped in this.
    """

    event: Any


@attrs.define(eq=False)
class DWORD:
    """An out-parameter box for an unsigned 32-bit value (``LPDWORD``)."""

    value: int = 0


@attrs.define(eq=False)
class INT:
    """An out-parameter box for a signed int (``LPINT``, e.g. ``lpErrno``)."""

    value: int = 0


_BOXES = (DWORD, INT)


def is_box(obj: object) -> bool:
    """True when ``obj`` can serve as an out-parameter: it has a writable ``.value``.

    The one check every SPI entry point uses (``DWORD()``, ``INT()``,
    ``ctypes.c_ulong()``, or anything of the same shape).  Writing the current
    value back proves writability without changing what the caller put there.
    """
    if type(obj) in _BOXES:
        return True
    try:
        obj.value = obj.value  # type: ignore[attr-defined]
    except Exception:
        return False
    return True


def store(box: object, value: Any) -> bool:
    """Write ``value`` into an out-parameter box (if there is one); ``False`` on failure."""
    if box is None:
        return True
    try:
        box.value = value  # type: ignore[attr-defined]
    except Exception:
        return False
    return True
