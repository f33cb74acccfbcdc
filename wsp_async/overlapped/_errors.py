"""The constants of CPython's ``_overlapped`` and its errors: ``OSError`` with the
Win32 or Winsock code in ``winerror`` and the POSIX meaning in ``errno``."""

from __future__ import annotations

import errno as _errno
import socket as _socket

from ..constants import (
    ERROR_MORE_DATA,
    ERROR_OPERATION_ABORTED,
    ERROR_PORT_UNREACHABLE,
)
from ..errors import ERRNO_TO_WSA, describe

__all__ = [
    "ERROR_ABANDONED_WAIT_0",
    "ERROR_BROKEN_PIPE",
    "ERROR_INVALID_HANDLE",
    "ERROR_IO_INCOMPLETE",
    "ERROR_NETNAME_DELETED",
    "ERROR_PIPE_BUSY",
    "ERROR_SEM_TIMEOUT",
    "FormatMessage",
    "INVALID_HANDLE_VALUE",
    "NULL",
    "SO_UPDATE_ACCEPT_CONTEXT",
    "SO_UPDATE_CONNECT_CONTEXT",
    "WAIT_TIMEOUT",
    "windows_error",
]

# --- constants (the values of CPython's module on Windows, except where noted) ----------
NULL = 0
#: ``(HANDLE)-1`` as CPython's module gives it: an unsigned pointer.
INVALID_HANDLE_VALUE = (1 << 64) - 1
ERROR_NETNAME_DELETED = 64
ERROR_SEM_TIMEOUT = 121
ERROR_PIPE_BUSY = 231
ERROR_BROKEN_PIPE = 109
ERROR_IO_INCOMPLETE = 996
ERROR_INVALID_HANDLE = 6
WAIT_TIMEOUT = 258
ERROR_ABANDONED_WAIT_0 = 735
SO_UPDATE_ACCEPT_CONTEXT = 0x700B
_WSABASEERR = 10000
#: Windows' value is 0x7010, which Linux refuses at ``SOL_SOCKET``.  The Proactor calls
#: ``conn.setsockopt(SOL_SOCKET, SO_UPDATE_CONNECT_CONTEXT, 0)`` on the caller's own
#: socket after ConnectEx; ``SO_DEBUG`` set to 0 is what Linux does by default, so the
#: call succeeds and changes nothing (see docs/proactor.md).
SO_UPDATE_CONNECT_CONTEXT = _socket.SO_DEBUG

#: The POSIX meaning of the Win32 and Winsock codes these calls report.
_ERRNO_OF = {
    ERROR_NETNAME_DELETED: _errno.ECONNRESET,
    ERROR_OPERATION_ABORTED: _errno.ECANCELED,
    1225: _errno.ECONNREFUSED,  # ERROR_CONNECTION_REFUSED
    1236: _errno.ECONNABORTED,  # ERROR_CONNECTION_ABORTED
    ERROR_PORT_UNREACHABLE: _errno.ECONNREFUSED,
    ERROR_SEM_TIMEOUT: _errno.ETIMEDOUT,
    ERROR_BROKEN_PIPE: _errno.EPIPE,
    ERROR_INVALID_HANDLE: _errno.EBADF,
    87: _errno.EINVAL,  # ERROR_INVALID_PARAMETER
    1229: _errno.ENOTCONN,  # ERROR_CONNECTION_INVALID
    1214: _errno.EINVAL,  # ERROR_INVALID_NETNAME
    1231: _errno.ENETUNREACH,  # ERROR_NETWORK_UNREACHABLE
    1232: _errno.EHOSTUNREACH,  # ERROR_HOST_UNREACHABLE
    ERROR_IO_INCOMPLETE: _errno.EINPROGRESS,
}


def windows_error(code: int, message: str | None = None) -> OSError:
    """``OSError`` for a Win32 or Winsock ``code``: ``winerror`` set, ``errno`` its POSIX
    meaning (which picks the subclass, as CPython does on Windows)."""
    number = _ERRNO_OF.get(code)
    if number is None and _WSABASEERR <= code < _WSABASEERR + 2000:
        number = _errno_of_wsa(code)
    text = message or FormatMessage(code)
    exc = OSError(number, text) if number is not None else OSError(_errno.EINVAL, text)
    exc.winerror = code  # type: ignore[attr-defined]
    return exc


def _errno_of_wsa(code: int) -> int | None:
    for number, wsa in ERRNO_TO_WSA.items():
        if wsa == code:
            return number
    return None


def FormatMessage(error_code: int) -> str:
    """The message text of a Win32 or Winsock code."""
    text = _WIN32_TEXT.get(error_code)
    if text is not None:
        return text
    if _WSABASEERR <= error_code < _WSABASEERR + 2000:
        return describe(error_code)
    return f"Windows error {error_code}."


_WIN32_TEXT = {
    ERROR_NETNAME_DELETED: "The specified network name is no longer available.",
    ERROR_OPERATION_ABORTED: "The I/O operation has been aborted because of either a thread "
    "exit or an application request.",
    1225: "The remote computer refused the network connection.",
    1236: "The network connection was aborted by the local system.",
    ERROR_PORT_UNREACHABLE: "No service is operating at the destination network endpoint on "
    "the remote system.",
    ERROR_IO_INCOMPLETE: "Overlapped I/O event is not in a signaled state.",
    ERROR_INVALID_HANDLE: "The handle is invalid.",
    ERROR_MORE_DATA: "More data is available.",
}
