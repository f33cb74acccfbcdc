"""The API of CPython's ``_overlapped`` module over this engine (SPEC S17.1).

``asyncio.windows_events`` -- the Proactor -- drives Windows' overlapped I/O through
``_overlapped``: an :class:`Overlapped` per operation, started with a method named
after the Winsock call (``WSARecv``, ``AcceptEx``, ...), collected from a completion
port with :func:`GetQueuedCompletionStatus` by its ``address``, and read with
``getresult()``.  This module offers the same names, signatures, results and
exceptions, with the operations run by a wsp_async :class:`~wsp_async.Provider` of
its own (one per process, on its own I/O thread).

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

import errno as _errno
import os
import socket as _socket
import struct
import threading
import time
from typing import Any

import attrs

from . import iocp, kernel32
from ._core.handles import new_handle
from .constants import (
    ERROR_IO_PENDING,
    ERROR_MORE_DATA,
    ERROR_NOT_FOUND,
    ERROR_OPERATION_ABORTED,
    ERROR_PORT_UNREACHABLE,
    INFINITE,
    SOCKET_ERROR,
    TF_REUSE_SOCKET,
)
from .constants import INVALID_HANDLE_VALUE as _NO_FILE
from .errors import ERRNO_TO_WSA, WSA_IO_PENDING, WSAErr, WSAError, describe
from .events import WSAEVENT, WSAGetLastError
from .iocp import GetLastError
from .mswsock import decode_sockaddr
from .ntstatus import win32_of
from .provider import Provider
from .structs import DWORD, INT, WSABUF, WSAOVERLAPPED

__all__ = [
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
    "provider",
    "use_provider",
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


# --- the provider and the descriptors it stands behind ------------------------------------
_provider: Provider | None = None
_provider_lock = threading.Lock()


def use_provider(new: Provider | None) -> Provider | None:
    """Run this module's operations on ``new`` from now on (None: a default one made on first
    use); returns the previous one, which the caller closes.  The descriptors known so far
    are forgotten (their emulated sockets belong to the previous provider)."""
    global _provider
    with _provider_lock:
        previous, _provider = _provider, new
    _descriptors.forget()
    return previous


def provider() -> Provider:
    """The provider that runs this module's operations (made on first use, own I/O thread)."""
    global _provider
    p = _provider
    if p is None:
        with _provider_lock:
            if _provider is None:
                _provider = Provider()
            p = _provider
    return p


@attrs.define(eq=False)
class _Entry:
    handle: int
    identity: tuple[int, int]
    #: The peer's address as AcceptEx reported it, for a connection accepted here.
    peer: Any = None


class _Descriptors:
    """Which emulated socket each of the program's descriptors stands for (see the module doc)."""

    #: Sweep every entry at most this often (seconds): a ``fstat`` each.
    SWEEP_EVERY = 0.02

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.entries: dict[int, _Entry] = {}
        self.last_sweep = 0.0

    def handle(self, fd: object) -> int:
        """The handle behind descriptor ``fd``, adopting a duplicate the first time."""
        if type(fd) is not int:
            if not isinstance(fd, int):
                raise windows_error(ERROR_INVALID_HANDLE)
            fd = int(fd)
        identity = _identity(fd)
        if identity is None:
            raise windows_error(WSAErr.WSAENOTSOCK)
        with self.lock:
            entry = self.entries.get(fd)
            if entry is not None:
                if entry.identity == identity:
                    return entry.handle
                self._release(fd, entry)  # the number names another socket now
            sock = _adoptable(fd)
            try:
                # The program calls shutdown() and close() on its own descriptor, beside
                # the provider: a send counts as complete only once the kernel holds it
                # (S4.2), or a FIN could overtake bytes held here; and every send comes
                # from the program's threads, so the first one may go straight to the
                # kernel and complete inside the call, as on Windows (S17.3).
                handle = provider().adopt(sock, duplicate=False, kernel_completes=True)
            except WSAError as exc:
                sock.close()
                raise windows_error(exc.winerror) from None
            self.entries[fd] = _Entry(handle, identity)
            return handle

    def forget(self) -> None:
        with self.lock:
            self.entries.clear()

    def rebind(self, fd: int, handle: int, peer: Any = None) -> None:
        """``fd`` now holds the socket of ``handle`` (after AcceptEx's ``dup2``)."""
        identity = _identity(fd)
        if identity is not None:
            with self.lock:
                self.entries[fd] = _Entry(handle, identity, peer)

    def peer(self, fd: int) -> Any:
        """The address AcceptEx reported for the connection behind ``fd`` (None: unknown)."""
        with self.lock:
            entry = self.entries.get(fd)
        if entry is None or entry.peer is None or _identity(fd) != entry.identity:
            return None
        return entry.peer

    def sweep(self, force: bool = False) -> None:
        """Close the emulated sockets whose descriptor was closed or names another socket."""
        now = time.monotonic()
        if not force and now - self.last_sweep < self.SWEEP_EVERY:
            return
        self.last_sweep = now
        with self.lock:
            for fd, entry in list(self.entries.items()):
                if _identity(fd) != entry.identity:
                    self._release(fd, entry)

    def _release(self, fd: int, entry: _Entry) -> None:
        del self.entries[fd]
        provider().WSPCloseSocket(entry.handle, INT())


class _Borrowed(_socket.socket):
    """A socket object over the program's own descriptor of a listening socket.

    A listener is not duplicated: once the program closes it, it must refuse
    connections at once, as a closed socket does (a duplicate would keep it
    listening).  Nothing of the provider waits on it while no AcceptEx is pending,
    and a pending one asks :meth:`lost` before each accept, so a number the OS reuses
    for another socket of the program reaches nothing; closing this object lets go of
    the descriptor without closing it -- it is the program's to close.
    """

    def __init__(self, fileno: int) -> None:
        super().__init__(fileno=fileno)
        self._identity = _identity(fileno)

    def lost(self) -> bool:
        """Whether the program closed this descriptor (its number may name another socket
        now): the provider must not accept on it any more (S16.4)."""
        return _identity(self.fileno()) != self._identity

    def close(self) -> None:
        self.detach()

    def __del__(self) -> None:
        self.detach()


def _adoptable(fd: int) -> _socket.socket:
    """The socket object the provider adopts for ``fd``: the program's own descriptor for
    a listener, a duplicate for any other socket (see the module doc)."""
    try:
        borrowed = _Borrowed(fileno=fd)
    except OSError as exc:
        raise windows_error(WSAErr.WSAENOTSOCK, str(exc)) from None
    try:
        if borrowed.getsockopt(_socket.SOL_SOCKET, _socket.SO_ACCEPTCONN):
            return borrowed
        duplicate = _socket.socket(fileno=os.dup(fd))
    except OSError as exc:
        borrowed.detach()
        raise windows_error(WSAErr.WSAENOTSOCK, str(exc)) from None
    borrowed.detach()
    return duplicate


def _reset_connection(family: int) -> _socket.socket:
    """A TCP socket on loopback whose peer has reset it (what a reset accept socket is)."""
    host = "::1" if family == _socket.AF_INET6 else "127.0.0.1"
    with _socket.socket(family) as listener:
        listener.bind((host, 0))
        listener.listen(1)
        client = _socket.socket(family)
        client.connect(listener.getsockname())
        server, _ = listener.accept()
    server.setsockopt(_socket.SOL_SOCKET, _socket.SO_LINGER, struct.pack("ii", 1, 0))
    server.close()
    return client


def accepted_peer(fd: int) -> Any:
    """The peer's address that ``AcceptEx`` reported for the connection now behind
    descriptor ``fd``, or None.  Windows still answers ``getpeername`` on an accepted
    socket whose peer reset it; Linux does not, so the Proactor's own sockets ask here
    (:mod:`wsp_async.proactor`)."""
    return _descriptors.peer(fd)


def _identity(fd: int) -> tuple[int, int] | None:
    try:
        st = os.fstat(fd)
    except OSError:
        return None
    return st.st_dev, st.st_ino


_descriptors = _Descriptors()


def _handle(fd: object) -> int:
    _descriptors.sweep()
    return _descriptors.handle(fd)


# --- Overlapped ------------------------------------------------------------------------------
_NONE, _NOT_STARTED, _READ, _READINTO, _WRITE, _ACCEPT, _CONNECT, _DISCONNECT = range(8)
_READ_FROM, _READ_FROM_INTO, _TRANSMIT, _WAIT = range(8, 12)


class Overlapped:
    """One overlapped operation, as ``_overlapped.Overlapped``.

    ``address`` identifies it in completion packets; ``pending`` is true while it
    runs; ``error`` is the last Win32 code it reported; ``event`` the event handle
    given (``NULL``: none).  Start it with one of the methods named after the
    Winsock call; read its outcome with :meth:`getresult`.
    """

    def __init__(self, event: int = INVALID_HANDLE_VALUE) -> None:
        #: The event this object made for itself, closed when it goes away (as CPython's
        #: does); an event the program passed stays the program's.
        self._own_event = 0
        if event == INVALID_HANDLE_VALUE:
            event = self._own_event = CreateEvent(None, True, False, None)
        self.event = event
        self._ov = WSAOVERLAPPED(hEvent=_events.get(event) if event else None)
        self.address = id(self._ov)
        self.error = 0
        self._type = _NONE
        self._handle = 0
        self._buffer: Any = None
        self._source = _Box()
        self._accept_fd = -1
        self._accept_identity: tuple[int, int] | None = None
        self._acceptor = 0
        self._rebound = False

    # -- state ---------------------------------------------------------------------------
    @property
    def pending(self) -> bool:
        return self._type not in (_NONE, _NOT_STARTED) and self._ov.pending

    def _start(self, kind: int, handle: int) -> None:
        if self._type != _NONE:
            raise ValueError("operation already attempted")
        self._type = kind
        self._handle = handle

    def _started(self, ok: bool) -> None:
        """After the call: pending or done, else raise with the Winsock code (not started)."""
        code = 0 if ok else WSAGetLastError()
        self.error = code
        if code in (0, WSA_IO_PENDING):
            return
        self._type = _NOT_STARTED
        raise windows_error(code)

    def _spi(self, rc: int, err: INT) -> None:
        if rc == SOCKET_ERROR and err.value != WSA_IO_PENDING:
            self.error = err.value
            self._type = _NOT_STARTED
            raise windows_error(err.value)
        self.error = ERROR_IO_PENDING if rc == SOCKET_ERROR else 0

    # -- receives ------------------------------------------------------------------------
    def WSARecv(self, handle: int, size: int, flags: int = 0) -> None:
        self._start(_READ, _handle(handle))
        self._buffer = bytearray(size)
        self._recv([WSABUF(size, self._buffer)], flags)

    def WSARecvInto(self, handle: int, buf: Any, flags: int = 0) -> None:
        self._start(_READINTO, _handle(handle))
        self._buffer = buf
        view = memoryview(buf).cast("B")
        self._recv([WSABUF(len(view), view)], flags)

    def _recv(self, buffers: list[WSABUF], flags: int) -> None:
        err = INT()
        rc = provider().WSPRecv(
            self._handle, buffers, 1, None, DWORD(flags), self._ov, None, None, err
        )
        self._spi(rc, err)

    def WSARecvFrom(self, handle: int, size: int, flags: int = 0) -> None:
        self._start(_READ_FROM, _handle(handle))
        self._buffer = bytearray(size)
        self._recv_from([WSABUF(size, self._buffer)], flags)

    def WSARecvFromInto(self, handle: int, buf: Any, size: int, flags: int = 0) -> None:
        self._start(_READ_FROM_INTO, _handle(handle))
        self._buffer = buf
        view = memoryview(buf).cast("B")[:size]
        self._recv_from([WSABUF(len(view), view)], flags)

    def _recv_from(self, buffers: list[WSABUF], flags: int) -> None:
        err = INT()
        rc = provider().WSPRecvFrom(
            self._handle, buffers, 1, None, DWORD(flags), self._source, None, self._ov,
            None, None, err,
        )  # fmt: skip
        self._spi(rc, err)

    # -- sends ---------------------------------------------------------------------------
    def WSASend(self, handle: int, buf: Any, flags: int = 0) -> None:
        self._start(_WRITE, _handle(handle))
        data = _bytes_like(buf)
        self._buffer = data
        err = INT()
        rc = provider().WSPSend(
            self._handle, [WSABUF(len(data), data)], 1, None, flags, self._ov, None, None, err
        )
        self._spi(rc, err)

    def WSASendTo(self, handle: int, buf: Any, flags: int, address: Any) -> None:
        _check_address(address)
        self._start(_WRITE, _handle(handle))
        data = _bytes_like(buf)
        self._buffer = data
        err = INT()
        rc = provider().WSPSendTo(
            self._handle, [WSABUF(len(data), data)], 1, None, flags, address, None, self._ov,
            None, None, err,
        )  # fmt: skip
        self._spi(rc, err)

    def TransmitFile(
        self, socket: int, file: int, offset: int, offset_high: int, count_to_write: int,
        count_per_send: int, flags: int
    ) -> None:  # fmt: skip
        self._start(_TRANSMIT, _handle(socket))
        self._ov.Offset, self._ov.OffsetHigh = offset, offset_high
        ok = provider().TransmitFile(
            self._handle, file or None, count_to_write, count_per_send, self._ov, None, flags
        )
        self._started(ok)

    # -- connections ---------------------------------------------------------------------
    def AcceptEx(self, listen_handle: int, accept_handle: int) -> None:
        self._start(_ACCEPT, _handle(listen_handle))
        self._acceptor = _handle(accept_handle)
        self._accept_fd = accept_handle
        self._accept_identity = _identity(accept_handle)
        self._buffer = bytearray(2 * _ADDRESS_BLOCK)
        ok = provider().AcceptEx(
            self._handle, self._acceptor, self._buffer, 0, _ADDRESS_BLOCK, _ADDRESS_BLOCK,
            None, self._ov,
        )  # fmt: skip
        self._started(ok)

    def ConnectEx(self, client_handle: int, address: Any) -> None:
        _check_address(address)
        self._start(_CONNECT, _handle(client_handle))
        ok = provider().ConnectEx(self._handle, address, None, None, 0, None, self._ov)
        self._started(ok)

    def DisconnectEx(self, handle: int, flags: int) -> None:
        self._start(_DISCONNECT, _handle(handle))
        ok = provider().DisconnectEx(self._handle, self._ov, flags, 0)
        self._started(ok)

    # -- named pipes and files: not emulated --------------------------------------------
    def ReadFile(self, handle: int, size: int) -> None:
        raise NotImplementedError(_NO_PIPES)

    def ReadFileInto(self, handle: int, buf: Any) -> None:
        raise NotImplementedError(_NO_PIPES)

    def WriteFile(self, handle: int, buf: Any) -> None:
        raise NotImplementedError(_NO_PIPES)

    def ConnectNamedPipe(self, handle: int) -> bool:
        raise NotImplementedError(_NO_PIPES)

    # -- outcome -------------------------------------------------------------------------
    def cancel(self) -> None:
        """CancelIoEx for this operation; nothing if it is not pending (or finished meanwhile)."""
        if not self.pending:
            return
        if not kernel32.CancelIoEx(self._handle, self._ov) and GetLastError() != ERROR_NOT_FOUND:
            raise windows_error(GetLastError())

    def getresult(self, wait: bool = False) -> Any:
        """The operation's result: bytes read, ``(bytes, address)``, a count; or OSError."""
        if self._type == _NONE:
            raise ValueError("operation not yet attempted")
        if self._type == _NOT_STARTED:
            raise ValueError("operation failed to start")
        if self._ov.pending:
            if not wait:
                self.error = ERROR_IO_INCOMPLETE
                raise windows_error(ERROR_IO_INCOMPLETE)
            Provider.wait_until(lambda: not self._ov.pending, None)  # type: ignore[arg-type]
        status = self._ov.Internal
        code = win32_of(status) if status else 0
        self.error = code
        if code not in (0, ERROR_MORE_DATA):
            raise windows_error(code)
        transferred = self._ov.InternalHigh
        kind = self._type
        if kind == _READ:
            return bytes(self._buffer[:transferred])
        if kind == _READ_FROM:
            return bytes(self._buffer[:transferred]), self._source.value
        if kind == _READ_FROM_INTO:
            return transferred, self._source.value
        if kind == _ACCEPT:
            self._take_connection()
        return transferred

    def _take_connection(self) -> None:
        """Put the accepted connection behind the caller's descriptor (see the module doc)."""
        if self._rebound:
            return
        self._rebound = True
        if _identity(self._accept_fd) != self._accept_identity:
            # The program closed its accept socket, and the number may name a file of its
            # own now: never dup2 onto it (S16.4).  The sweep closes the emulated socket
            # that holds the connection, as closing the accept socket does on Windows.
            _descriptors.sweep(force=True)
            return
        host = provider().socket_of(self._acceptor).sock
        if host.fileno() >= 0:
            os.dup2(host.fileno(), self._accept_fd)
        else:
            # The peer reset the connection and its socket is gone already; on Windows the
            # AcceptEx had it (it completes when the connection is made) and the reset
            # meets the program's next call.  The descriptor gets a connection in the same
            # state: one reset by its peer.
            with _reset_connection(host.family) as dead:
                os.dup2(dead.fileno(), self._accept_fd)
        try:
            peer = decode_sockaddr(bytes(self._buffer[_ADDRESS_BLOCK:]))
        except (struct.error, ValueError, OSError):  # a block the program shortened
            peer = None
        _descriptors.rebind(self._accept_fd, self._acceptor, peer)

    def __del__(self) -> None:
        try:
            if self.pending:
                self.cancel()
        except Exception:
            pass
        own = getattr(self, "_own_event", 0)
        if own:
            # Nobody can wait on it any more; an operation still completing sets a
            # closed event, which is harmless.
            event = _events.pop(own, None)
            if event is not None:
                event.close()


#: An address block large enough for either family: sizeof(SOCKADDR_IN6) + 16.
_ADDRESS_BLOCK = 28 + 16
_NO_PIPES = "named pipes and files are not emulated by wsp_async (sockets only)"


class _Box:
    value: Any = None


def _check_address(address: Any) -> None:
    """CPython's module parses a socket address from a tuple, or raises TypeError."""
    if not isinstance(address, tuple):
        raise TypeError(f"address must be a tuple, not {type(address).__name__}")


def _bytes_like(buf: Any) -> Any:
    if isinstance(buf, bytes):
        return buf
    try:
        return memoryview(buf).cast("B")
    except TypeError:
        raise TypeError(f"a bytes-like object is required, not {type(buf).__name__!r}") from None


# --- completion ports ------------------------------------------------------------------------
def CreateIoCompletionPort(handle: int, port: int, key: int, concurrency: int) -> int:
    """Create a port (``handle`` INVALID_HANDLE_VALUE) or associate a descriptor with one."""
    target = _NO_FILE if handle in (INVALID_HANDLE_VALUE, -1) else _handle(handle)
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
    _descriptors.sweep()
    got: Any = WAIT_TIMEOUT
    deadline = None if msecs == INFINITE else time.monotonic() + msecs / 1000
    while isinstance(got, int):
        # Wait in slices, so that descriptors closed meanwhile are noticed (and their
        # pending operations aborted) while nothing else happens.
        if deadline is None:
            slice_ms = 50
        else:
            slice_ms = max(0, min(50, int((deadline - time.monotonic()) * 1000)))
        got = target.take(1, slice_ms, alertable=False)
        if not isinstance(got, int):
            break
        if got != WAIT_TIMEOUT:
            raise windows_error(got)
        if deadline is not None and time.monotonic() >= deadline:
            return None
        _descriptors.sweep()
    transferred, key, packet_ov, status = got[0]
    address = packet_ov if isinstance(packet_ov, int) else id(packet_ov)
    return (win32_of(status) if status else 0), transferred, key or 0, address


def PostQueuedCompletionStatus(port: int, transferred: int, key: int, address: int) -> None:
    if not iocp.PostQueuedCompletionStatus(port, transferred, key, address):
        raise windows_error(GetLastError())


# --- events and waits ----------------------------------------------------------------------
_events: dict[int, WSAEVENT] = {}


def CreateEvent(attributes: Any, manual_reset: bool, initial_state: bool, name: Any) -> int:
    event = kernel32.CreateEvent(attributes, manual_reset, initial_state, name)
    if event is None:
        raise windows_error(GetLastError())
    handle = new_handle()
    _events[handle] = event
    return handle


def _event(handle: int) -> WSAEVENT:
    event = _events.get(handle)
    if event is None:
        raise windows_error(ERROR_INVALID_HANDLE)
    return event


def SetEvent(handle: int) -> None:
    _event(handle).set()


def ResetEvent(handle: int) -> None:
    _event(handle).reset()


def WaitForSingleObject(handle: int, milliseconds: int) -> int:
    """``WAIT_OBJECT_0`` (0) or ``WAIT_TIMEOUT`` for an event handle of this module."""
    result = kernel32.WaitForSingleObject(_event(handle), milliseconds)
    return 0 if result == 0 else WAIT_TIMEOUT


def CloseHandle(handle: int) -> None:
    """Close a port (its descriptors are swept: emulated sockets of closed ones go) or an
    event of this module."""
    event = _events.pop(handle, None)
    if event is not None:
        event.close()
        return
    if not iocp.CloseHandle(handle):
        raise windows_error(GetLastError())
    _descriptors.sweep(force=True)


@attrs.define(eq=False)
class _Wait:
    thread: threading.Thread
    cancelled: threading.Event


_waits: dict[int, _Wait] = {}


def RegisterWaitWithQueue(obj: int, port: int, address: int, timeout: int) -> int:
    """When event ``obj`` is set (or ``timeout`` ms pass), post a packet for ``address``."""
    event = _event(obj)
    cancelled = threading.Event()
    handle = new_handle()

    def wait() -> None:
        deadline = None if timeout == INFINITE else time.monotonic() + timeout / 1000
        while not cancelled.is_set():
            left = 50 if deadline is None else min(50, (deadline - time.monotonic()) * 1000)
            if kernel32.WaitForSingleObject(event, max(0, int(left))) == 0 or (
                deadline is not None and time.monotonic() >= deadline
            ):
                if not cancelled.is_set():
                    iocp.PostQueuedCompletionStatus(port, 0, 0, address)
                return

    thread = threading.Thread(target=wait, name="wsp_async-wait", daemon=True)
    _waits[handle] = _Wait(thread, cancelled)
    thread.start()
    return handle


def UnregisterWait(wait_handle: int) -> None:
    wait = _waits.pop(wait_handle, None)
    if wait is None:
        raise windows_error(ERROR_INVALID_HANDLE)
    wait.cancelled.set()


def UnregisterWaitEx(wait_handle: int, event: int) -> None:
    """Unregister; ``event`` (if any) is set once the wait's callback cannot run any more."""
    wait = _waits.pop(wait_handle, None)
    if wait is None:
        raise windows_error(ERROR_INVALID_HANDLE)
    wait.cancelled.set()
    if event and event != INVALID_HANDLE_VALUE:
        target = _event(event)

        def signal() -> None:
            wait.thread.join()
            target.set()

        threading.Thread(target=signal, daemon=True).start()


# --- sockets outside overlapped operations ----------------------------------------------------
def BindLocal(handle: int, family: int) -> None:
    """Bind to the wildcard address and an ephemeral port (before ConnectEx); WSAEINVAL
    if it is bound already."""
    address: Any = ("0.0.0.0", 0) if family == _socket.AF_INET else ("::", 0)
    err = INT()
    if provider().WSPBind(_handle(handle), address, None, err) == SOCKET_ERROR:
        raise windows_error(err.value)


def WSAConnect(handle: int, address: Any) -> None:
    """Connect a datagram socket (it completes at once)."""
    _check_address(address)
    err = INT()
    rc = provider().WSPConnect(_handle(handle), address, None, None, None, None, None, err)
    if rc == SOCKET_ERROR:
        raise windows_error(err.value)


def ConnectPipe(address: str) -> int:
    raise NotImplementedError(_NO_PIPES)
