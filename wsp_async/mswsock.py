"""The ``mswsock.h`` names (SPEC S14.1): extension-function GUIDs and the address layout
of ``AcceptEx``'s output buffer.

``WSPIoctl(s, SIO_GET_EXTENSION_FUNCTION_POINTER, guid, ...)`` hands out the provider's
``AcceptEx``, ``ConnectEx`` and ``GetAcceptExSockaddrs`` for these GUIDs (the real
values of ``mswsock.h``).  ``AcceptEx`` writes the first data, then the local and the
remote address, into its output buffer; each address block starts with the binary
``SOCKADDR_IN`` (16 bytes) or ``SOCKADDR_IN6`` (28 bytes) Windows puts there, which
:func:`GetAcceptExSockaddrs` reads back as sockaddr tuples.
"""

from __future__ import annotations

import operator
import socket as _pysocket
import struct
import uuid
from typing import Any, Final

from .constants import AF_INET, AF_INET6
from .errors import WSAErr, WSAError
from .structs import store

__all__ = [
    "SIO_GET_EXTENSION_FUNCTION_POINTER",
    "WSAID_ACCEPTEX",
    "WSAID_CONNECTEX",
    "WSAID_DISCONNECTEX",
    "WSAID_GETACCEPTEXSOCKADDRS",
    "WSAID_TRANSMITFILE",
    "GetAcceptExSockaddrs",
    "decode_sockaddr",
    "encode_sockaddr",
]

SIO_GET_EXTENSION_FUNCTION_POINTER: Final = 0xC8000006
WSAID_ACCEPTEX: Final = uuid.UUID("b5367df1-cbac-11cf-95ca-00805f48a192")
WSAID_GETACCEPTEXSOCKADDRS: Final = uuid.UUID("b5367df2-cbac-11cf-95ca-00805f48a192")
WSAID_CONNECTEX: Final = uuid.UUID("25a207b9-ddf3-4660-8ee9-76e58c74063e")
WSAID_DISCONNECTEX: Final = uuid.UUID("7fda2e11-8630-436f-a031-f536a6eec157")
WSAID_TRANSMITFILE: Final = uuid.UUID("b5367df0-cbac-11cf-95ca-00805f48a192")

#: The smallest address block AcceptEx accepts: the largest sockaddr it writes, plus 16.
MIN_ADDRESS_LENGTH: Final = 16 + 16


def encode_sockaddr(address: tuple[Any, ...]) -> bytes:
    """The binary SOCKADDR_IN / SOCKADDR_IN6 of a sockaddr tuple (Windows' family values)."""
    host, port = address[0], address[1]
    if ":" in host:
        flowinfo = address[2] if len(address) > 2 else 0
        scope = address[3] if len(address) > 3 else 0
        packed = _pysocket.inet_pton(_pysocket.AF_INET6, host.partition("%")[0])
        return struct.pack("<H", AF_INET6) + struct.pack("!H", port) + struct.pack("<I", flowinfo) + packed + struct.pack("<I", scope)  # fmt: skip
    packed = _pysocket.inet_pton(_pysocket.AF_INET, host)
    return struct.pack("<H", AF_INET) + struct.pack("!H", port) + packed + bytes(8)


def decode_sockaddr(data: bytes | bytearray | memoryview) -> tuple[Any, ...]:
    """The sockaddr tuple of a binary SOCKADDR_IN / SOCKADDR_IN6."""
    family = struct.unpack_from("<H", data)[0]
    port = struct.unpack_from("!H", data, 2)[0]
    if family == AF_INET6:
        flowinfo = struct.unpack_from("<I", data, 4)[0]
        host = _pysocket.inet_ntop(_pysocket.AF_INET6, bytes(data[8:24]))
        scope = struct.unpack_from("<I", data, 24)[0]
        return (host, port, flowinfo, scope)
    return (_pysocket.inet_ntop(_pysocket.AF_INET, bytes(data[4:8])), port)


def GetAcceptExSockaddrs(
    lpOutputBuffer: object,
    dwReceiveDataLength: int,
    dwLocalAddressLength: int,
    dwRemoteAddressLength: int,
    LocalSockaddr: object,
    LocalSockaddrLength: object,
    RemoteSockaddr: object,
    RemoteSockaddrLength: object,
) -> None:
    """Read the local and remote addresses ``AcceptEx`` wrote after the first data (S14.2).

    Like Windows' (a VOID function), it does not fail on a block: one too short for the
    address it should hold gives ``None`` and a length of 0; a local block of length 0
    leaves ``LocalSockaddr`` and its length untouched (Wine's test_AcceptEx).  A
    buffer that is not a buffer at all, or lengths that are not lengths, raise
    ``WSAError(WSAEFAULT)`` -- the bad pointer Windows would crash on.
    """
    try:
        view = memoryview(lpOutputBuffer).cast("B")  # type: ignore[arg-type]
        receive, local_size, remote_size = (
            operator.index(n)
            for n in (dwReceiveDataLength, dwLocalAddressLength, dwRemoteAddressLength)
        )
    except Exception:  # not a buffer, a released one, or an __index__ that raises
        raise WSAError(
            WSAErr.WSAEFAULT, "GetAcceptExSockaddrs: not a buffer, or not a length"
        ) from None
    if min(receive, local_size, remote_size) < 0:
        raise WSAError(WSAErr.WSAEFAULT, "GetAcceptExSockaddrs: a negative length")
    local = _decode_block(view[receive : receive + local_size])
    start = receive + local_size
    remote = _decode_block(view[start : start + remote_size])
    if local_size:  # a block of 0 was never asked for: Windows leaves both untouched
        store(LocalSockaddr, local)
        store(LocalSockaddrLength, _length_of(local))
    store(RemoteSockaddr, remote)
    store(RemoteSockaddrLength, _length_of(remote))


def _decode_block(block: memoryview) -> tuple[Any, ...] | None:
    """The address in one block, or None when the block cannot hold one."""
    if len(block) < 2:
        return None
    family = struct.unpack_from("<H", block)[0]
    if (family == AF_INET and len(block) >= 16) or (family == AF_INET6 and len(block) >= 28):
        return decode_sockaddr(block)
    return None


def _length_of(address: tuple[Any, ...] | None) -> int:
    if address is None:
        return 0
    return 28 if len(address) == 4 else 16
