"""The asyncio face of completion ports (SPEC S13): packets awaited without a thread.

Re-exported by :mod:`wsp_async.aio`.
"""

from __future__ import annotations

import asyncio
from typing import Any

from . import iocp
from .constants import ERROR_ABANDONED_WAIT_0, ERROR_INVALID_HANDLE
from .errors import WSAError
from .iocp import OVERLAPPED_ENTRY

__all__ = ["CompletionPortReader"]


class CompletionPortReader:
    """``async for entry in CompletionPortReader(port)``: a completion port's packets (S13),
    awaited without a thread; the loop ends when the port is closed.

    Each ``OVERLAPPED_ENTRY`` carries the key, the overlapped, the NTSTATUS in
    ``Internal`` and the bytes transferred.  The coroutine waits on the port like a
    thread does (last in, first out, S13.7); cancelling a wait gives back a packet it
    was already handed, at the head of the queue, and so does a loop closed before it
    took one: none is lost or reordered.
    """

    def __init__(self, port: int) -> None:
        self.port = port

    async def get(self) -> OVERLAPPED_ENTRY:
        """The next packet; ``WSAError`` with ``ERROR_ABANDONED_WAIT_0`` once the port closes."""
        port = iocp.port_object(self.port)
        if port is None:
            raise WSAError(ERROR_INVALID_HANDLE, "not an open completion port")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()

        def notify(waiter: Any) -> bool:
            if loop.is_closed():
                return False  # the port hands the packet to the next waiter (S13.7)
            loop.call_soon_threadsafe(_settle, port, future, waiter)
            return True

        got = port.take_or_wait(notify, loop.is_closed)
        if isinstance(got, tuple):
            return _entry(got)
        if isinstance(got, int):
            raise WSAError(got, "the completion port was closed")
        try:
            waiter = await future
        except asyncio.CancelledError:
            packet = port.withdraw(got)
            if packet is not None:
                # Handed to us as we gave up: back at the head, so that the packets
                # queued since do not overtake it.
                port.queue(packet, front=True)
            raise
        # Taken for good only now, as this coroutine runs again: a loop stopped and closed
        # between the hand-over and this step (the future set, the task never resumed)
        # leaves the packet to the port, which gives it back (S2.4: none is lost).
        port.delivered(waiter)
        if waiter.packet is None:
            raise WSAError(ERROR_ABANDONED_WAIT_0, "the completion port was closed")
        return _entry(waiter.packet)

    def __aiter__(self) -> CompletionPortReader:
        return self

    async def __anext__(self) -> OVERLAPPED_ENTRY:
        try:
            return await self.get()
        except WSAError as exc:
            if exc.winerror in (ERROR_ABANDONED_WAIT_0, ERROR_INVALID_HANDLE):
                raise StopAsyncIteration from None
            raise


def _settle(port: Any, future: asyncio.Future[Any], waiter: Any) -> None:
    """On the reader's loop: wake the coroutine the packet was handed to.  The packet is
    its own only once it runs (:meth:`CompletionPortReader.get`); until then a loop that
    closes leaves it to the port, which gives it back (no loss)."""
    if not future.done():
        future.set_result(waiter)


def _entry(packet: tuple[int, Any, Any, int]) -> OVERLAPPED_ENTRY:
    nbytes, key, overlapped, status = packet
    return OVERLAPPED_ENTRY(key, overlapped, status, nbytes)
