"""The asyncio protocols of an emulated socket: they relay transport events, deciding nothing.

Each relays to a *receiver* (the socket adapter) through the few methods of
:class:`TransportEvents`, so this module knows nothing of the adapter.
"""

from __future__ import annotations

import asyncio
from typing import Any, Protocol

from ..errors import wsa_code_of

__all__ = ["DatagramProtocol", "Detached", "StreamProtocol", "TransportEvents"]


class TransportEvents(Protocol):
    """What a transport can tell the socket behind it."""

    def attach(self, transport: asyncio.BaseTransport) -> None: ...
    def drained(self) -> None: ...
    def received(self, data: bytes, source: Any) -> None: ...
    def ended(self) -> None: ...
    def lost(self, exc: BaseException | None) -> None: ...
    def icmp_error(self, code: int) -> None: ...


class Detached:
    """Where a transport's events go once its socket moved on (DisconnectEx with
    TF_REUSE_SOCKET, S14.4): nowhere -- the old connection no longer concerns it.

    It keeps the old host socket object and closes it when the transport lets go: stock
    asyncio's transport has closed it by then, uvloop's only drops its reference, and a
    socket object left open would close its number again when collected (S16.4)."""

    def __init__(self, host: Any = None) -> None:
        self.host = host

    def attach(self, transport: asyncio.BaseTransport) -> None:
        pass

    def drained(self) -> None:
        pass

    def received(self, data: bytes, source: Any) -> None:
        pass

    def ended(self) -> None:
        pass

    def lost(self, exc: BaseException | None) -> None:
        if self.host is not None:
            self.host.close()

    def icmp_error(self, code: int) -> None:
        pass


class StreamProtocol(asyncio.Protocol):
    """Relays transport events to the adapter; decides nothing itself."""

    __slots__ = ("sock",)

    def __init__(self, sock: TransportEvents) -> None:
        self.sock = sock

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.sock.attach(transport)

    def pause_writing(self) -> None:
        pass  # the send queue reads the buffer size itself after every write

    def resume_writing(self) -> None:
        self.sock.drained()

    def data_received(self, data: bytes) -> None:
        self.sock.received(data, None)

    def eof_received(self) -> bool:
        self.sock.ended()
        return True  # keep our half open: the peer's FIN does not stop our sends

    def connection_lost(self, exc: Exception | None) -> None:
        self.sock.lost(exc)


class DatagramProtocol(asyncio.DatagramProtocol):
    __slots__ = ("sock",)

    def __init__(self, sock: TransportEvents) -> None:
        self.sock = sock

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.sock.attach(transport)

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.sock.received(data, addr)

    def error_received(self, exc: Exception) -> None:
        # An ICMP error for an earlier datagram: Winsock reports it on a later
        # receive, if at all; we keep it as the pending socket error.
        self.sock.icmp_error(wsa_code_of(exc))

    def connection_lost(self, exc: Exception | None) -> None:
        self.sock.lost(exc)
