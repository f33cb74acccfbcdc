"""The API of CPython's ``_overlapped`` module over this engine (SPEC S17.1).

``asyncio.windows_events`` -- the Proactor -- drives Windows' overlapped I/O through
``_overlapped``: an :class:`Overlapped` per operation, started with a method named
after the Winsock call (``WSARecv``, ``AcceptEx``, ...), collected from a completion
port with :func:`GetQueuedCompletionStatus` by its ``address``, and read with
``getresult()``.  This module offers the same names, signatures, results and
exceptions, with the operations run by a wsp_async :class:`~wsp_async.Provider` of
its own (one per process, on the stock selector loop).  While a Proactor's loop runs,
that provider's loop is lent to the Proactor's thread and runs inside its waits on the
port, so the Proactor's own operations complete without crossing threads (S17.3);
otherwise the provider's own I/O thread runs it.

File descriptors stand for handles
----------------------------------
The Proactor passes ``sock.fileno()`` where Windows code passes a ``SOCKET``.  The
first time a descriptor is named, the provider adopts a *duplicate* of it
(:meth:`Provider.adopt`): its own descriptor for the same socket, so that the
number the program holds can be closed and reused by the OS without ever reaching
the emulated socket behind it (S16.1).  Each entry remembers the socket's identity
(device and inode): a descriptor whose identity changed, or that was closed, no
longer names the old socket -- its emulated socket is closed (its pending operations
abort, S10.2) when the module next looks (each call, and each wait on a port).

``AcceptEx`` on Windows turns the *given* socket into the accepted connection.  Here
the provider accepts into its duplicate; ``getresult()`` then puts the connection
behind the caller's descriptor with ``dup2``, so ``conn.getpeername()`` and every
later call on ``conn`` see it, as the Proactor expects.

Errors are ``OSError`` with ``winerror`` set -- the Win32 code for what
``GetOverlappedResult`` reports (S16.2), the Winsock code for a call that failed to
start -- and ``errno`` set to its POSIX meaning, so that the usual subclasses
(``ConnectionResetError``, ...) come out on Linux as they do on Windows.

Named pipes (``ConnectNamedPipe``, ``ReadFile`` on pipes, ...) are not emulated:
those names raise ``NotImplementedError``.
"""

from __future__ import annotations

import socket as _socket
import time
from typing import Any

from .. import iocp
from .._completion.port import CompletionPort, Packet
from ..constants import (
    ERROR_IO_PENDING,
    ERROR_OPERATION_ABORTED,
    ERROR_PORT_UNREACHABLE,
    INFINITE,
    SOCKET_ERROR,
    TF_REUSE_SOCKET,
)
from ..constants import INVALID_HANDLE_VALUE as _NO_FILE
from ..iocp import GetLastError
from ..ntstatus import win32_of
from ..structs import INT
from ._descriptors import (
    accepted_peer,
    descriptors,
    handle_of,
    provider,
    use_provider,
)
from ._errors import (
    ERROR_ABANDONED_WAIT_0,
    ERROR_BROKEN_PIPE,
    ERROR_INVALID_HANDLE,
    ERROR_IO_INCOMPLETE,
    ERROR_NETNAME_DELETED,
    ERROR_PIPE_BUSY,
    ERROR_SEM_TIMEOUT,
    INVALID_HANDLE_VALUE,
    NULL,
    SO_UPDATE_ACCEPT_CONTEXT,
    SO_UPDATE_CONNECT_CONTEXT,
    WAIT_TIMEOUT,
    FormatMessage,
    windows_error,
)
from ._events import (
    CloseHandle,
    CreateEvent,
    RegisterWaitWithQueue,
    ResetEvent,
    SetEvent,
    UnregisterWait,
    UnregisterWaitEx,
    WaitForSingleObject,
)
from ._operation import (
    NO_PIPES,
    Overlapped,
    check_address,
)

__all__ = [
    "ERROR_ABANDONED_WAIT_0",
    "ERROR_BROKEN_PIPE",
    "ERROR_INVALID_HANDLE",
    "ERROR_IO_INCOMPLETE",
    "ERROR_IO_PENDING",
    "ERROR_NETNAME_DELETED",
    "ERROR_OPERATION_ABORTED",
    "ERROR_PIPE_BUSY",
    "ERROR_PORT_UNREACHABLE",
    "ERROR_SEM_TIMEOUT",
    "INFINITE",
    "INVALID_HANDLE_VALUE",
    "NULL",
    "SO_UPDATE_ACCEPT_CONTEXT",
    "SO_UPDATE_CONNECT_CONTEXT",
    "TF_REUSE_SOCKET",
    "WAIT_TIMEOUT",
    "BindLocal",
    "CloseHandle",
    "ConnectPipe",
    "CreateEvent",
    "CreateIoCompletionPort",
    "FormatMessage",
    "GetQueuedCompletionStatus",
    "Overlapped",
    "PostQueuedCompletionStatus",
    "RegisterWaitWithQueue",
    "ResetEvent",
    "SetEvent",
    "UnregisterWait",
    "UnregisterWaitEx",
    "WSAConnect",
    "WaitForSingleObject",
    "accepted_peer",
    "provider",
    "use_provider",
    "windows_error",
]


# --- completion ports ------------------------------------------------------------------------
def CreateIoCompletionPort(handle: int, port: int, key: int, concurrency: int) -> int:
    """Create a port (``handle`` INVALID_HANDLE_VALUE) or associate a descriptor with one."""
    target = _NO_FILE if handle in (INVALID_HANDLE_VALUE, -1) else handle_of(handle)
    result = iocp.CreateIoCompletionPort(target, port or None, key, concurrency & 0xFFFFFFFF)
    if not result:
        raise windows_error(GetLastError())
    return result


def GetQueuedCompletionStatus(port: int, msecs: int) -> tuple[int, int, int, int] | None:
    """``(err, transferred, key, address)`` of the next packet; None when ``msecs`` passed.

    The Proactor calls this from its own loop's ``select``: it may wait even on a thread
    whose loop also runs a provider (``wsp_async.aio`` embeds one), because that loop's
    work arrives as packets here.
    """
    if not isinstance(msecs, int):
        raise TypeError(f"an integer is required, not {type(msecs).__name__}")
    if not 0 <= msecs <= 0xFFFFFFFF:
        raise OverflowError("msecs is outside the range of a DWORD")  # as CPython's
    target = iocp.port_object(port)
    if target is None:
        raise windows_error(ERROR_INVALID_HANDLE)
    if time.monotonic() >= descriptors.next_sweep:
        descriptors.sweep()
    got = target.take_now(1, msecs)
    if got is None:
        got = _wait_for_packet(target, msecs)
        if got is None:
            return None
    elif isinstance(got, int):
        if got == WAIT_TIMEOUT:
            return None
        raise windows_error(got)
    transferred, key, packet_ov, status = got[0]
    address = packet_ov if isinstance(packet_ov, int) else id(packet_ov)
    return (win32_of(status) if status else 0), transferred, key or 0, address


def _wait_for_packet(port: CompletionPort, msecs: int) -> list[Packet] | None:
    """Wait on the port, in slices (on the thread the provider's loop is lent to, the
    wait runs that loop: ``CompletionPort.take``)."""
    got: Any = WAIT_TIMEOUT
    deadline = None if msecs == INFINITE else time.monotonic() + msecs / 1000
    while isinstance(got, int):
        # Wait in slices, so that descriptors closed meanwhile are noticed (and their
        # pending operations aborted) while nothing else happens.
        if deadline is None:
            slice_ms = 50
        else:
            slice_ms = max(0, min(50, int((deadline - time.monotonic()) * 1000)))
        got = port.take(1, slice_ms, alertable=False)
        if not isinstance(got, int):
            break
        if got != WAIT_TIMEOUT:
            raise windows_error(got)
        if deadline is not None and time.monotonic() >= deadline:
            return None
        descriptors.sweep()
    return got  # type: ignore[no-any-return]


def PostQueuedCompletionStatus(port: int, transferred: int, key: int, address: int) -> None:
    if not iocp.PostQueuedCompletionStatus(port, transferred, key, address):
        raise windows_error(GetLastError())


# --- sockets outside overlapped operations ----------------------------------------------------
def BindLocal(handle: int, family: int) -> None:
    """Bind to the wildcard address and an ephemeral port (before ConnectEx); WSAEINVAL
    if it is bound already."""
    address: Any = ("0.0.0.0", 0) if family == _socket.AF_INET else ("::", 0)
    err = INT()
    if provider().WSPBind(handle_of(handle), address, None, err) == SOCKET_ERROR:
        raise windows_error(err.value)


def WSAConnect(handle: int, address: Any) -> None:
    """Connect a datagram socket (it completes at once)."""
    check_address(address)
    err = INT()
    rc = provider().WSPConnect(handle_of(handle), address, None, None, None, None, None, err)
    if rc == SOCKET_ERROR:
        raise windows_error(err.value)


def ConnectPipe(address: str) -> int:
    raise NotImplementedError(NO_PIPES)
