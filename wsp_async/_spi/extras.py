"""The provider's calls beyond the SPI entry points: fault injection (S12.1), existing
sockets (S16.1), and the calls the asyncio face makes on the loop thread.

:class:`ProviderExtras` is a base of :class:`wsp_async.Provider`; the parts it names
are the provider's, set by its constructor.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Coroutine
from typing import Any

from .._completion.ioloop import IoLoop
from .._io import face as _face
from ..structs import WSAOVERLAPPED, operation_of
from .control import Controls
from .lifecycle import Lifecycle
from .parts import Parts
from .sends import Sends

__all__ = ["ProviderExtras"]


class ProviderExtras:
    """Fault injection, adoption, and the asyncio face's calls (a base of ``Provider``)."""

    _controls: Controls
    _io: IoLoop
    _lifecycle: Lifecycle
    _parts: Parts
    _sends: Sends

    # ------------------------------------------------------------------ beyond Winsock (S12)
    def inject(
        self,
        s: int | None = None,
        *,
        op: str = "send",
        error: int | None = None,
        at: str = "post",
        nth: int = 1,
        every: bool = False,
        delay_drain: float | str | None = "unchanged",
    ) -> None:
        """Arm a fault on socket ``s`` (every socket with None), SPEC S12.1: the ``nth``
        operation of kind ``op`` (or, with ``every``, all from the ``nth``) fails with
        ``error`` at ``"post"`` (nothing started, S2.3) or at ``"completion"`` (S2.2);
        ``delay_drain`` slows (``math.inf``: stalls; None: restores) the socket's drain.
        See :mod:`wsp_async.faults` for examples."""
        self._controls.inject(s, op, error, at, nth, every, delay_drain)

    def clear_faults(self, s: int | None = None) -> None:
        """Disarm the faults of socket ``s`` (or the provider-wide ones)."""
        plan = self._parts.faults if s is None else self._parts.sockets.get(s).engine.faults
        if plan is not None:
            plan.clear()

    # ------------------------------------------------------------------ existing sockets (S16.1)
    def adopt(
        self, sock: socket.socket, *, duplicate: bool = True, kernel_completes: bool = False
    ) -> int:
        """A handle for an existing OS socket: AF_INET, AF_INET6 or AF_UNIX, stream or datagram.

        The emulated socket works on a *duplicate* of the object's descriptor: one open
        socket, two descriptors, so the provider never reads, writes or closes the
        program's number (S16.4).  From now on do I/O through the handle only.
        Closing either side closes both: ``WSPCloseSocket`` closes the object too, and
        the object's ``close()`` is ``closesocket`` of the handle -- its pending
        operations complete with ``WSA_OPERATION_ABORTED``, once, and the connection
        closes gracefully after what was buffered.  Adopting the object again gives the
        same handle; another provider's ``adopt`` of it fails with ``WSAEINVAL`` while
        the handle is open.  Connected, listening and bound states carry over.  Raises
        ``WSAError`` for anything that is not an open socket, and leaves nothing
        registered when it fails.

        ``duplicate=False`` hands the object itself over instead (for a caller that made
        it for the provider alone): no duplicate, and its ``close`` is left as it is.

        ``kernel_completes=True`` is for a program that calls ``shutdown()`` and
        ``close()`` on its own descriptor beside the provider (the ``_overlapped`` face):
        the emulated send buffer is 0 from the start (S4.2), so a send completes once the
        kernel holds it and a FIN never overtakes bytes held here, and sends from the
        program's threads may go straight to the kernel from the first one.  The kernel's
        own buffer is left as it is (it is the program's socket).
        """
        return self._lifecycle.adopt(sock, duplicate, kernel_completes)

    def handle_of_fd(self, fd: int) -> int | None:
        """The handle of the adopted socket that holds ``fd`` now; an fd number the OS
        reused after that socket closed gives None, never the old handle."""
        return self._lifecycle.handle_of_fd(fd)

    # ------------------------------------------------------------------ for the asyncio face
    def send_now(self, s: int, buffers: object, count: int, flags: int, ov: WSAOVERLAPPED) -> None:
        """An overlapped send on the loop thread that skips end-of-iteration coalescing.

        What ``WSPSend`` does with ``lpOverlapped=ov`` and no routine, for a caller
        that awaits each send; raises ``WSAError`` when nothing started.  The send
        is pending while ``ov.pending``; its result is then in ``ov``.
        """
        self._sends.send(s, buffers, count, None, flags, ov, None, None, None, None, False)

    def face_sender(
        self, s: int, posted: Callable[..., Coroutine[Any, Any, int]]
    ) -> Callable[..., Coroutine[Any, Any, int]]:
        """For socket ``s``: the asyncio face's ``send(buffers, flags=0)`` coroutine
        function.  A send that completes at once on the loop thread (nothing of the
        socket's sends queued or pending, room in the send buffer) is written there and
        then; anything else is ``await posted(buffers, flags)``.  Raises ``WSAError`` for
        a bad handle."""
        return _face.sender(self._parts.sockets.get(s), self._parts, self._io.ident, posted)

    def face_receiver(
        self, s: int, posted: Callable[..., Coroutine[Any, Any, int]]
    ) -> Callable[..., Coroutine[Any, Any, int]]:
        """For socket ``s``: the asyncio face's ``recv_into(buffer, flags=0)``.  Bytes
        already arrived fill the buffer there and then, when no receive waits before it;
        anything else is ``await posted(buffer, flags)``."""
        return _face.receiver(self._parts.sockets.get(s), self._parts, self._io.ident, posted)

    def when_complete(self, ov: WSAOVERLAPPED, callback: Callable[[], object]) -> bool:
        """Call ``callback()`` on the I/O loop when ``ov`` completes; False if it is not pending.

        Only on the loop thread, where completions happen, so that none can slip
        between the check and the hook.
        """
        op = operation_of(ov)
        if op is None:
            return False
        previous = op.listener

        def both(done: Any) -> None:
            if previous is not None:
                previous(done)
            callback()

        op.listener = both
        return True

    async def connect_async(self, s: int, name: tuple[Any, ...]) -> None:
        """Connect a stream socket on the loop (the asyncio face's connect)."""
        await self._lifecycle.connect_async(self._parts.sockets.get(s), name)

    async def accept_async(self, s: int) -> tuple[int, Any]:
        """Accept on the loop: the new handle and the peer's address."""
        child, peer = await self._lifecycle.accept_async(self._parts.sockets.get(s))
        return child.handle, peer
