"""How the asyncio face awaits an overlapped operation and reads its end: the one await
(:func:`overlapped_result`), what a cancel of it keeps, and the S2 and S14.1 answers of a
posting call turned into exceptions."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from ..constants import SOCKET_ERROR
from ..errors import WSAErr, WSAError
from ..events import WSAGetLastError
from ..kernel32 import CancelIoEx
from ..ntstatus import wsa_of
from ..provider import Provider
from ..structs import DWORD, INT, WSAOVERLAPPED

__all__ = [
    "kept_after_cancel",
    "overlapped_result",
    "raise_unless_pending",
    "raise_unless_started",
    "resolve",
    "socket_name",
]


def resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


async def overlapped_result(
    provider: Provider, ov: WSAOVERLAPPED, handle: int | None = None, keep: bool = False
) -> int:
    """Await ``ov``'s completion: its byte count, or WSAError.  With ``handle``, cancelling
    the await cancels the operation (CancelIoEx, S15.1: recorded, never waited for).

    ``keep``, for receives: a receive that already holds its bytes when the await is
    cancelled completed normally (S15.1), and its bytes are in the caller's buffer and
    nowhere else -- raising ``CancelledError`` then lost them, and the stream had a hole
    (found by a fuzz on the Proactor, where a completion and a cancel often meet in one
    iteration).  The cancellation is refused instead (``Task.uncancel``) and the count
    returned, as ``asyncio.wait_for`` returns a result that came with its timeout.

    The face's one way to await a posted operation: nothing is awaited when ``ov``
    completed inside its call; on the provider's loop thread a completion hook
    resolves the future (completions run on that thread, so none can come before the
    hook is on); elsewhere the hook is put on from the loop."""
    if ov.pending:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        if provider.loop is loop and provider.on_loop_thread():
            # Completions run on this thread: none can come before the hook is on.
            provider.when_complete(ov, lambda: resolve(future))
        else:

            def wake() -> None:
                loop.call_soon_threadsafe(resolve, future)

            def hook() -> None:
                if not provider.when_complete(ov, wake):
                    wake()  # it completed before the hook got there

            provider.loop.call_soon_threadsafe(hook)
        if ov.pending:
            try:
                await future
            except asyncio.CancelledError:
                if not kept_after_cancel(handle, ov, keep):
                    raise
    if ov.Internal:
        raise WSAError(wsa_of(ov.Internal))
    return ov.InternalHigh


def kept_after_cancel(handle: int | None, ov: WSAOVERLAPPED, keep: bool) -> bool:
    """The await of ``ov`` was cancelled: cancel the operation if it still pends; True
    when ``keep`` and it had already completed with bytes, which are the caller's now
    (the cancellation is then refused: see :func:`overlapped_result`)."""
    if handle is not None and ov.pending:
        CancelIoEx(handle, ov)  # recorded, never waited for (S15.2); takes nothing more
    if keep and not ov.pending and not ov.Internal and ov.InternalHigh:
        task = asyncio.current_task()
        if task is not None:
            task.uncancel()
        return True
    return False


def raise_unless_pending(started: bool) -> None:
    """An extension function's BOOL: True (done) or False with WSA_IO_PENDING is started."""
    if not started:
        code = WSAGetLastError()
        if code != WSAErr.WSA_IO_PENDING:
            raise WSAError(code)


def raise_unless_started(rc: int, err: INT) -> None:
    """S2: 0 or WSA_IO_PENDING means started; any other code is the error."""
    if rc == SOCKET_ERROR and err.value != WSAErr.WSA_IO_PENDING:
        raise WSAError(err.value)


def socket_name(call: Callable[[int, DWORD, None, INT], int], handle: int) -> Any:
    box, err = DWORD(), INT()
    if call(handle, box, None, err) == SOCKET_ERROR:
        raise WSAError(err.value)
    return box.value
