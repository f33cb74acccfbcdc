"""wsp_async: Winsock overlapped-I/O completion semantics for asyncio programs.

The public names are re-exported here (SPEC S1): constants with their Windows
values, the error codes (also as the :class:`WSAErr` enum), the structures, the
event functions, and -- from :mod:`wsp_async.provider` -- the ``Provider``.
"""

from __future__ import annotations

from importlib import metadata as _metadata

from . import constants as _constants
from .apc import queue_apc
from .constants import *  # noqa: F403
from .errors import *  # noqa: F403
from .errors import ERRNO_TO_WSA, Win32Err, WSAErr, WSAError, describe, wsa_code_of
from .events import (
    WSAEVENT,
    SleepEx,
    WSACloseEvent,
    WSACreateEvent,
    WSAGetLastError,
    WSAResetEvent,
    WSASetEvent,
    WSASetLastError,
    WSAWaitForMultipleEvents,
    wait_for_events,
)
from .iocp import (
    OVERLAPPED_ENTRY,
    CloseHandle,
    CreateIoCompletionPort,
    GetLastError,
    GetQueuedCompletionStatus,
    GetQueuedCompletionStatusEx,
    NoPortPacket,
    PostQueuedCompletionStatus,
    SetFileCompletionNotificationModes,
    SetLastError,
)
from .kernel32 import (
    CancelIo,
    CancelIoEx,
    CreateEvent,
    GetOverlappedResult,
    ResetEvent,
    SetEvent,
    WaitForMultipleObjects,
    WaitForMultipleObjectsEx,
    WaitForSingleObject,
    WaitForSingleObjectEx,
)
from .mswsock import (
    SIO_GET_EXTENSION_FUNCTION_POINTER,
    WSAID_ACCEPTEX,
    WSAID_CONNECTEX,
    WSAID_DISCONNECTEX,
    WSAID_GETACCEPTEXSOCKADDRS,
    WSAID_TRANSMITFILE,
    GetAcceptExSockaddrs,
)
from .ntstatus import NTSTATUS, ntstatus_of, win32_of, wsa_of
from .provider import Provider
from .structs import (
    DWORD,
    INT,
    TRANSMIT_FILE_BUFFERS,
    WSABUF,
    WSAOVERLAPPED,
    WSATHREADID,
    is_box,
    store,
)

try:
    __version__: str = _metadata.version("wsp_async")
except _metadata.PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

__all__ = [
    "DWORD",
    "ERRNO_TO_WSA",
    "INT",
    "NTSTATUS",
    "OVERLAPPED_ENTRY",
    "CancelIo",
    "CancelIoEx",
    "CloseHandle",
    "CreateEvent",
    "GetOverlappedResult",
    "CreateIoCompletionPort",
    "GetAcceptExSockaddrs",
    "GetLastError",
    "GetQueuedCompletionStatus",
    "GetQueuedCompletionStatusEx",
    "NoPortPacket",
    "PostQueuedCompletionStatus",
    "ResetEvent",
    "SIO_GET_EXTENSION_FUNCTION_POINTER",
    "SetEvent",
    "SetFileCompletionNotificationModes",
    "SetLastError",
    "WSAID_ACCEPTEX",
    "WSAID_CONNECTEX",
    "WSAID_DISCONNECTEX",
    "WSAID_GETACCEPTEXSOCKADDRS",
    "WSAID_TRANSMITFILE",
    "WaitForMultipleObjects",
    "WaitForMultipleObjectsEx",
    "WaitForSingleObject",
    "WaitForSingleObjectEx",
    "Provider",
    "TRANSMIT_FILE_BUFFERS",
    "WSABUF",
    "WSAEVENT",
    "WSAOVERLAPPED",
    "WSATHREADID",
    "SleepEx",
    "WSACloseEvent",
    "WSACreateEvent",
    "Win32Err",
    "WSAErr",
    "WSAError",
    "WSAGetLastError",
    "WSAResetEvent",
    "WSASetEvent",
    "WSASetLastError",
    "WSAWaitForMultipleEvents",
    "describe",
    "is_box",
    "queue_apc",
    "store",
    "wait_for_events",
    "ntstatus_of",
    "win32_of",
    "wsa_code_of",
    "wsa_of",
    *(name for name in dir(_constants) if name.isupper()),
    *(member.name for member in WSAErr),
    # STATUS_PENDING is a constant already (S1): listed once.
    *(member.name for member in NTSTATUS if not hasattr(_constants, member.name)),
]

# The NTSTATUS values are importable by name too (STATUS_CANCELLED, ...), SPEC S2.5.
globals().update({member.name: member for member in NTSTATUS})
