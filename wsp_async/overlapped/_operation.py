"""The ``Overlapped`` type: one operation, started by the method named after its
Winsock call, read with ``getresult()``."""

from __future__ import annotations

import os
import struct
from typing import Any

from .. import kernel32
from ..constants import (
    ERROR_IO_PENDING,
    ERROR_MORE_DATA,
    ERROR_NOT_FOUND,
    SOCKET_ERROR,
    STATUS_PENDING,
)
from ..errors import WSA_IO_PENDING
from ..events import WSAGetLastError
from ..iocp import GetLastError
from ..mswsock import decode_sockaddr
from ..ntstatus import win32_of
from ..provider import Provider
from ..structs import DWORD, INT, WSABUF, WSAOVERLAPPED
from ._descriptors import (
    descriptors,
    handle_of,
    identity_of,
    provider,
    reset_connection,
)
from ._errors import (
    ERROR_IO_INCOMPLETE,
    INVALID_HANDLE_VALUE,
    windows_error,
)
from ._events import (
    CreateEvent,
    events_by_handle,
)

__all__ = ["NO_PIPES", "Overlapped", "check_address"]

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
        self._ov = WSAOVERLAPPED(hEvent=events_by_handle.get(event) if event else None)
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
        # ``Internal`` holds STATUS_PENDING exactly while the structure is pending (the door
        # writes the result there before it lets go, S2.5); the structure is this object's
        # own, so nobody else writes it.  Read directly: the Proactor asks several times
        # per operation.
        return self._ov.Internal == STATUS_PENDING and self._type > _NOT_STARTED

    def _start(self, kind: int, handle: int) -> None:
        if self._type != _NONE:
            raise ValueError("operation already attempted")
        self._type = kind
        self._handle = handle

    def _started(self, ok: bool) -> None:
        """After the call: pending or done, else raise with the Winsock code (not started).

        These calls (AcceptEx, ConnectEx, DisconnectEx, TransmitFile) start a task on the
        provider's loop.  On the thread the loop is lent to, that task gets one turn at
        once: Windows starts the operation in the call (a connect's SYN is on its way when
        ConnectEx returns), and a program may block on that before its loop turns again
        (CPython's ``test_sock_client_racing`` accepts with a blocking call).
        """
        code = 0 if ok else WSAGetLastError()
        self.error = code
        if code in (0, WSA_IO_PENDING):
            provider().io_loop.turn()
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
        self._start(_READ, handle_of(handle))
        self._buffer = bytearray(size)
        self._recv([WSABUF(size, self._buffer)], flags)

    def WSARecvInto(self, handle: int, buf: Any, flags: int = 0) -> None:
        self._start(_READINTO, handle_of(handle))
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
        self._start(_READ_FROM, handle_of(handle))
        self._buffer = bytearray(size)
        self._recv_from([WSABUF(size, self._buffer)], flags)

    def WSARecvFromInto(self, handle: int, buf: Any, size: int, flags: int = 0) -> None:
        self._start(_READ_FROM_INTO, handle_of(handle))
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
        self._start(_WRITE, handle_of(handle))
        data = _bytes_like(buf)
        self._buffer = data
        err = INT()
        rc = provider().WSPSend(
            self._handle, [WSABUF(len(data), data)], 1, None, flags, self._ov, None, None, err
        )
        self._spi(rc, err)

    def WSASendTo(self, handle: int, buf: Any, flags: int, address: Any) -> None:
        check_address(address)
        self._start(_WRITE, handle_of(handle))
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
        self._start(_TRANSMIT, handle_of(socket))
        self._ov.Offset, self._ov.OffsetHigh = offset, offset_high
        ok = provider().TransmitFile(
            self._handle, file or None, count_to_write, count_per_send, self._ov, None, flags
        )
        self._started(ok)

    # -- connections ---------------------------------------------------------------------
    def AcceptEx(self, listen_handle: int, accept_handle: int) -> None:
        self._start(_ACCEPT, handle_of(listen_handle))
        self._acceptor = handle_of(accept_handle)
        self._accept_fd = accept_handle
        self._accept_identity = identity_of(accept_handle)
        self._buffer = bytearray(2 * _ADDRESS_BLOCK)
        ok = provider().AcceptEx(
            self._handle, self._acceptor, self._buffer, 0, _ADDRESS_BLOCK, _ADDRESS_BLOCK,
            None, self._ov,
        )  # fmt: skip
        self._started(ok)

    def ConnectEx(self, client_handle: int, address: Any) -> None:
        check_address(address)
        self._start(_CONNECT, handle_of(client_handle))
        ok = provider().ConnectEx(self._handle, address, None, None, 0, None, self._ov)
        self._started(ok)

    def DisconnectEx(self, handle: int, flags: int) -> None:
        self._start(_DISCONNECT, handle_of(handle))
        ok = provider().DisconnectEx(self._handle, self._ov, flags, 0)
        self._started(ok)

    # -- named pipes and files: not emulated --------------------------------------------
    def ReadFile(self, handle: int, size: int) -> None:
        raise NotImplementedError(NO_PIPES)

    def ReadFileInto(self, handle: int, buf: Any) -> None:
        raise NotImplementedError(NO_PIPES)

    def WriteFile(self, handle: int, buf: Any) -> None:
        raise NotImplementedError(NO_PIPES)

    def ConnectNamedPipe(self, handle: int) -> bool:
        raise NotImplementedError(NO_PIPES)

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
        if self._ov.Internal == STATUS_PENDING:
            if not wait:
                self.error = ERROR_IO_INCOMPLETE
                raise windows_error(ERROR_IO_INCOMPLETE)
            io = provider().io_loop
            if io.lent_here() and not io.driving:
                # This thread runs the provider's loop (the Proactor's, while its loop
                # runs): waiting here means running it until the operation is done.
                io.drive_until_result(self._ov)
            else:
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
        if identity_of(self._accept_fd) != self._accept_identity:
            # The program closed its accept socket, and the number may name a file of its
            # own now: never dup2 onto it (S16.4).  The sweep closes the emulated socket
            # that holds the connection, as closing the accept socket does on Windows.
            descriptors.sweep(force=True)
            return
        host = provider().socket_of(self._acceptor).sock
        if host.fileno() >= 0:
            os.dup2(host.fileno(), self._accept_fd)
        else:
            # The peer reset the connection and its socket is gone already; on Windows the
            # AcceptEx had it (it completes when the connection is made) and the reset
            # meets the program's next call.  The descriptor gets a connection in the same
            # state: one reset by its peer.
            with reset_connection(host.family) as dead:
                os.dup2(dead.fileno(), self._accept_fd)
        try:
            peer = decode_sockaddr(bytes(self._buffer[_ADDRESS_BLOCK:]))
        except (struct.error, ValueError, OSError):  # a block the program shortened
            peer = None
        descriptors.rebind(self._accept_fd, self._acceptor, peer)

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
            event = events_by_handle.pop(own, None)
            if event is not None:
                event.close()


#: An address block large enough for either family: sizeof(SOCKADDR_IN6) + 16.
_ADDRESS_BLOCK = 28 + 16
NO_PIPES = "named pipes and files are not emulated by wsp_async (sockets only)"


class _Box:
    value: Any = None


def check_address(address: Any) -> None:
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
