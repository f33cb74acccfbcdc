"""The asyncio face (SPEC S0, S1): awaitable overlapped sockets over the same engine.

``await sock.send([header, body])`` posts one overlapped ``WSPSend`` with a
completion routine that resolves a future on the calling loop, so the face has
the SPI's ordering and exactly-once guarantees by construction: it *is* the SPI,
called on the provider's own loop thread (the fast path).  Failures raise
:class:`~wsp_async.errors.WSAError` with the Winsock code in ``.winerror``.

The provider behind the face is embedded in the running loop, one per loop,
made on first use (:func:`get_provider`), and closed when the loop closes.
Cancelling a task that awaits an operation withdraws the operation if it has
not been handed to the transport yet (it completes with
``WSA_OPERATION_ABORTED``); otherwise the operation completes normally and the
result is dropped -- never lost, never doubled.
"""

from __future__ import annotations

from ..aioports import CompletionPortReader
from ._servers import (
    Listener,
    Server,
    connect,
    connect_ex,
    listen,
    open_connection,
    open_datagram,
    start_server,
)
from ._socket import OverlappedSocket, get_provider

__all__ = [
    "CompletionPortReader",
    "Listener",
    "OverlappedSocket",
    "Server",
    "connect",
    "connect_ex",
    "get_provider",
    "listen",
    "open_connection",
    "open_datagram",
    "start_server",
]
