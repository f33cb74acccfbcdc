"""One record per overlapped (or blocking) operation, and how its completion is delivered.

An :class:`Operation` bundles everything that must stay alive from post to
completion: the captured buffers (references to the caller's data, S5.2), the
``WSAOVERLAPPED``, the routine and the thread it must run on, the event, and
the issuing thread (for S10.4).  It is compared by identity.

Exactly once (S2.4) rests on one fact: :func:`finish` is the only place that
moves an operation out of ``STATUS_PENDING``, it runs on the I/O loop thread
only, and it returns at once for an operation that already left that state.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import attrs

from .constants import STATUS_PENDING

if TYPE_CHECKING:
    from .apc import ApcTarget
    from .events import WSAEVENT
    from .structs import WSAOVERLAPPED

SEND = 0
RECV = 1
IOCTL = 2

#: Called with the operation once it completed (blocking waiters, asyncio futures).
Notify = Callable[["Operation"], object]


@attrs.define(eq=False, slots=True)
class Operation:
    """An operation between its post and its completion."""

    kind: int
    buffers: list[Any]
    nbytes: int
    overlapped: WSAOVERLAPPED | None
    routine: Callable[[int, int, Any, int], object] | None
    thread: ApcTarget | None
    event: WSAEVENT | None
    issuer: ApcTarget | None
    flags: int = 0
    address: Any = None
    notify: Notify | None = None
    #: MSG_OOB send: bypasses the transport's buffer, so it waits until that is empty.
    urgent: bool = False
    #: Stream offset just past this send's last byte, set when handed to the transport.
    end: int = 0
    status: int = STATUS_PENDING
    transferred: int = 0
    #: Output flags of a receive (MSG_PARTIAL), reported through the routine/S7.2.
    out_flags: int = 0
    #: Sender of a datagram receive.
    source: Any = None
    #: An injected completion-time fault (S12.1): completes with it at the head of its queue.
    fault: int = 0
    #: Counted in the socket's outstanding operations (max_pending, max_pending_bytes).
    counted: bool = False
    #: Checksum of the data at post time (verifier, S12.3).
    checksum: int | None = None

    @property
    def pending(self) -> bool:
        return self.status == STATUS_PENDING
