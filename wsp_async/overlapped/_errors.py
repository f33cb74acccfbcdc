"""The constants of CPython's ``_overlapped`` and its errors: ``OSError`` with the
Win32 or Winsock code in ``winerror`` and the POSIX meaning in ``errno``."""

from __future__ import annotations

import errno as _errno
import socket as _socket

from ..errors import ERRNO_TO_WSA, Win32Err, describe

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
ERROR_NETNAME_DELETED = int(Win32Err.ERROR_NETNAME_DELETED)
ERROR_SEM_TIMEOUT = int(Win32Err.ERROR_SEM_TIMEOUT)
ERROR_PIPE_BUSY = int(Win32Err.ERROR_PIPE_BUSY)
ERROR_BROKEN_PIPE = int(Win32Err.ERROR_BROKEN_PIPE)
ERROR_IO_INCOMPLETE = int(Win32Err.ERROR_IO_INCOMPLETE)
ERROR_INVALID_HANDLE = int(Win32Err.ERROR_INVALID_HANDLE)
WAIT_TIMEOUT = int(Win32Err.WAIT_TIMEOUT)
ERROR_ABANDONED_WAIT_0 = int(Win32Err.ERROR_ABANDONED_WAIT_0)
SO_UPDATE_ACCEPT_CONTEXT = 0x700B
_WSABASEERR = 10000
#: Windows' value is 0x7010, which Linux refuses at ``SOL_SOCKET``.  The Proactor calls
#: ``conn.setsockopt(SOL_SOCKET, SO_UPDATE_CONNECT_CONTEXT, 0)`` on the caller's own
#: socket after ConnectEx; ``SO_DEBUG`` set to 0 is what Linux does by default, so the
#: call succeeds and changes nothing (see docs/proactor.md).
SO_UPDATE_CONNECT_CONTEXT = _socket.SO_DEBUG

#: The POSIX meaning of the Win32 and Winsock codes these calls report.
_ERRNO_OF: dict[int, int] = {
    Win32Err.ERROR_NETNAME_DELETED: _errno.ECONNRESET,
    Win32Err.ERROR_OPERATION_ABORTED: _errno.ECANCELED,
    Win32Err.ERROR_CONNECTION_REFUSED: _errno.ECONNREFUSED,
    Win32Err.ERROR_CONNECTION_ABORTED: _errno.ECONNABORTED,
    Win32Err.ERROR_PORT_UNREACHABLE: _errno.ECONNREFUSED,
    Win32Err.ERROR_SEM_TIMEOUT: _errno.ETIMEDOUT,
    Win32Err.ERROR_BROKEN_PIPE: _errno.EPIPE,
    Win32Err.ERROR_INVALID_HANDLE: _errno.EBADF,
    Win32Err.ERROR_INVALID_PARAMETER: _errno.EINVAL,
    Win32Err.ERROR_CONNECTION_INVALID: _errno.ENOTCONN,
    Win32Err.ERROR_INVALID_NETNAME: _errno.EINVAL,
    Win32Err.ERROR_NETWORK_UNREACHABLE: _errno.ENETUNREACH,
    Win32Err.ERROR_HOST_UNREACHABLE: _errno.EHOSTUNREACH,
    Win32Err.ERROR_IO_INCOMPLETE: _errno.EINPROGRESS,
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
    if _WSABASEERR <= error_code < _WSABASEERR + 2000:
        return describe(error_code)
    text = _WIN32_TEXT.get(error_code)
    return text if text is not None else f"Windows error {error_code}."


_WIN32_TEXT = {int(code): code.message for code in Win32Err}
