"""The control entry points: ``WSPIoctl``, ``WSPSetSockOpt``, ``WSPGetSockOpt``, and the
fault-injection switch of S12.1.  Bodies only: :mod:`wsp_async.provider` wraps them.
"""

from __future__ import annotations

import contextlib
import socket as _pysocket
import struct
import uuid
from collections.abc import Callable
from typing import Any

from .._core.arguments import check_box, option_int
from .._core.engine import SocketState
from .._core.operation import OpKind
from .._io.adapter import SocketAdapter
from ..constants import (
    FIONBIO,
    FIONREAD,
    IPPROTO_IP,
    IPPROTO_IPV6,
    IPPROTO_TCP,
    IPPROTO_UDP,
    SIO_FLUSH,
    SO_ACCEPTCONN,
    SO_BROADCAST,
    SO_ERROR,
    SO_KEEPALIVE,
    SO_LINGER,
    SO_MAX_MSG_SIZE,
    SO_RCVBUF,
    SO_REUSEADDR,
    SO_SNDBUF,
    SO_TYPE,
    SOCK_DGRAM,
    SOCK_STREAM,
    SOL_SOCKET,
    TCP_NODELAY,
)
from ..errors import WSAErr, WSAError
from ..faults import Fault, FaultPlan
from ..mswsock import SIO_GET_EXTENSION_FUNCTION_POINTER
from ..structs import store
from .entry import PENDING
from .parts import Parts
from .posting import Posting

__all__ = ["Controls"]

#: Winsock socket options that pass straight through to the host socket.
PASSTHROUGH = {
    (SOL_SOCKET, SO_RCVBUF): (_pysocket.SOL_SOCKET, _pysocket.SO_RCVBUF),
    (SOL_SOCKET, SO_REUSEADDR): (_pysocket.SOL_SOCKET, _pysocket.SO_REUSEADDR),
    (SOL_SOCKET, SO_KEEPALIVE): (_pysocket.SOL_SOCKET, _pysocket.SO_KEEPALIVE),
    (IPPROTO_TCP, TCP_NODELAY): (_pysocket.IPPROTO_TCP, _pysocket.TCP_NODELAY),
}

#: Option levels Winsock knows; another level is WSAEINVAL (Wine's test_set_getsockopt,
#: run on Windows), an unknown option at a known level WSAENOPROTOOPT.
LEVELS = frozenset({SOL_SOCKET, IPPROTO_IP, IPPROTO_TCP, IPPROTO_UDP, IPPROTO_IPV6})

#: SO_SNDBUF is an ``int`` on Windows; beyond that no transport can hold it.
MAX_SNDBUF = 0x7FFFFFFF


class Controls:
    """Ioctl, option and fault-injection bodies over the provider's parts."""

    def __init__(self, parts: Parts, posting: Posting) -> None:
        self.parts = parts
        self.io = parts.io
        self.posting = posting
        #: SIO_GET_EXTENSION_FUNCTION_POINTER's answers by GUID (S14.1), set by the provider.
        self.extension_functions: dict[object, Callable[..., object]] = {}

    def ioctl(
        self,
        s: object,
        code: object,
        lpvInBuffer: object,
        lpvOutBuffer: object,
        lpcbBytesReturned: object,
        lpOverlapped: object,
        lpCompletionRoutine: object,
        lpThreadId: object,
    ) -> Any:
        """``FIONBIO``, ``FIONREAD`` and ``SIO_FLUSH`` (S10.3).

        These complete at once; with ``lpOverlapped`` or a routine the completion
        notice is issued before the call returns 0 (S2.1).
        """
        sock = self.parts.sockets.get(s)
        op = self.posting.overlapped(
            sock, OpKind.IOCTL, [], 0, 0, lpOverlapped, lpCompletionRoutine, lpThreadId
        )
        check_box(lpcbBytesReturned, "lpcbBytesReturned", optional=False)
        saved = None if op is None else self.posting.claim(sock, op)
        try:
            returned = self._control(sock, code, lpvInBuffer, lpvOutBuffer)
        except BaseException as exc:
            if op is None or saved is None:
                if isinstance(exc, WSAError) and exc.winerror == WSAErr.WSAEOPNOTSUPP:
                    store(lpcbBytesReturned, 0)  # Windows writes 0 (test_unsupported_ioctls)
                raise
            if isinstance(exc, WSAError) and exc.winerror == WSAErr.WSAEOPNOTSUPP:
                # Overlapped, an unknown code pends and completes with the error, as on
                # Windows (the routine gets WSAEOPNOTSUPP).
                self.parts.door.complete(op, exc.winerror, 0)
                return PENDING
            self.posting.undo(sock, op, saved)
            raise
        store(lpcbBytesReturned, returned)
        if op is not None:
            # The value went to the out-buffer; the completion transfers nothing.
            op.in_call = True
            self.parts.door.complete(op, 0, 0)
        return 0

    def _control(
        self, sock: SocketAdapter, code: object, lpvInBuffer: object, lpvOutBuffer: object
    ) -> int:
        """Carry out one control code; the bytes returned."""
        returned = 0
        if code == FIONBIO:
            value = getattr(lpvInBuffer, "value", lpvInBuffer)
            if isinstance(value, bytes | bytearray):
                value = int.from_bytes(value[:4], "little")
            if not isinstance(value, int):
                raise WSAError(WSAErr.WSAEFAULT, "FIONBIO takes an int")
            sock.engine.nonblocking = bool(value)
        elif code == FIONREAD:
            check_box(lpvOutBuffer, "lpvOutBuffer", optional=False)
            store(lpvOutBuffer, self.io.call(sock.engine.receiver.available))
            returned = 4
        elif code == SIO_FLUSH:
            if not sock.engine.stream:
                raise WSAError(WSAErr.WSAEOPNOTSUPP)
            self.io.call(sock.flush)
        elif code == SIO_GET_EXTENSION_FUNCTION_POINTER:
            guid = getattr(lpvInBuffer, "value", lpvInBuffer)
            function = self.extension_functions.get(guid) if isinstance(guid, uuid.UUID) else None
            if function is None:
                raise WSAError(WSAErr.WSAEINVAL, "no extension function has that GUID")
            check_box(lpvOutBuffer, "lpvOutBuffer", optional=False)
            store(lpvOutBuffer, function)
            returned = 8  # sizeof a function pointer
        else:
            raise WSAError(WSAErr.WSAEOPNOTSUPP, f"unsupported ioctl {code!r}")
        return returned

    def set_option(self, s: object, level: object, name: object, optval: object) -> int:
        """``SO_SNDBUF`` sets the emulated send-buffer capacity (S4.1); others pass to the host."""
        sock = self.parts.sockets.get(s)
        key = _option(level, name)
        if key == (SOL_SOCKET, SO_SNDBUF):
            value = option_int(optval)
            if not 0 <= value <= MAX_SNDBUF:
                raise WSAError(WSAErr.WSAEINVAL, "SO_SNDBUF is 0 to 2**31-1")
            if self.io.here():
                sock.set_capacity(value)
            else:
                # Recorded, not waited for (S15.2): the caller's next sends see the new
                # capacity at once, and the loop applies it to the transport before it
                # takes any of them (one queue of callbacks, in order).
                sock.engine.capacity = value
                try:
                    self.io.wake(sock.set_capacity, value)
                except RuntimeError:
                    sock.set_capacity(value)  # the loop is closed: nothing else runs
            if sock.engine.stream:
                # The kernel's buffer behind the transport is bounded too when the program
                # asks for less than it holds (Linux raises a small value to its own
                # minimum), so a large send pends as on Windows, where SO_SNDBUF is the
                # one buffer (sock.c: test_send).  A larger value leaves it as it is.
                with contextlib.suppress(OSError):
                    host = sock.sock
                    if value < host.getsockopt(_pysocket.SOL_SOCKET, _pysocket.SO_SNDBUF) // 2:
                        host.setsockopt(_pysocket.SOL_SOCKET, _pysocket.SO_SNDBUF, value)
        elif key == (SOL_SOCKET, SO_BROADCAST):
            value = option_int(optval)
            sock.sock.setsockopt(_pysocket.SOL_SOCKET, _pysocket.SO_BROADCAST, int(bool(value)))
            sock.engine.broadcast = bool(value)
        elif key == (SOL_SOCKET, SO_LINGER):
            onoff, seconds = _linger(optval)
            sock.sock.setsockopt(
                _pysocket.SOL_SOCKET, _pysocket.SO_LINGER, struct.pack("ii", onoff, seconds)
            )
        elif key in PASSTHROUGH:
            host_level, host_name = PASSTHROUGH[key]
            value = option_int(optval)
            if not -0x80000000 <= value <= 0x7FFFFFFF:
                raise WSAError(WSAErr.WSAEINVAL, "an option value is a 32-bit int")
            sock.sock.setsockopt(host_level, host_name, value)
            if key == (IPPROTO_TCP, TCP_NODELAY) and sock.nodelay is not None:
                sock.nodelay = bool(value)  # kept across the transport's own setting
        else:
            raise WSAError(WSAErr.WSAENOPROTOOPT)
        return 0

    def get_option(
        self, s: object, level: object, name: object, optval: object, optlen: object
    ) -> int:
        sock = self.parts.sockets.get(s)
        check_box(optval, "optval", optional=False)
        check_box(optlen, "optlen")
        engine = sock.engine
        key = _option(level, name)
        value: int
        if key == (SOL_SOCKET, SO_SNDBUF):
            value = engine.capacity
        elif key == (SOL_SOCKET, SO_BROADCAST):
            value = int(engine.broadcast)
        elif key == (SOL_SOCKET, SO_MAX_MSG_SIZE):
            if engine.stream:
                raise WSAError(WSAErr.WSAENOPROTOOPT, "SO_MAX_MSG_SIZE means nothing on a stream")
            value = engine.max_message
        elif key == (SOL_SOCKET, SO_TYPE):
            value = SOCK_STREAM if engine.stream else SOCK_DGRAM
        elif key == (SOL_SOCKET, SO_ERROR):
            value, engine.so_error = engine.so_error, 0
        elif key == (SOL_SOCKET, SO_ACCEPTCONN):
            value = int(engine.state == SocketState.LISTENING)
        elif key in PASSTHROUGH:
            host_level, host_name = PASSTHROUGH[key]
            value = sock.sock.getsockopt(host_level, host_name)
        else:
            raise WSAError(WSAErr.WSAENOPROTOOPT)
        store(optval, value)
        store(optlen, 4)
        return 0

    def inject(
        self,
        s: int | None,
        op: str,
        error: int | None,
        at: str,
        nth: int,
        every: bool,
        delay_drain: float | str | None,
    ) -> None:
        sock = None if s is None else self.parts.sockets.get(s)
        if error is not None:
            fault = Fault(op, int(error), at, nth, every)  # type: ignore[arg-type]
            if sock is None:
                self.parts.faults.add(fault)
            else:
                if sock.engine.faults is None:
                    sock.engine.faults = FaultPlan()
                sock.engine.faults.add(fault)
            self.parts.faulty = True
            self.parts.rewatch()
        if delay_drain != "unchanged":
            if sock is None:
                raise ValueError("delay_drain needs a socket")
            delay = None if delay_drain is None else float(delay_drain)
            if delay is not None:
                self.parts.slowed = True
                self.parts.rewatch()
            self.io.call(sock.set_drain_delay, delay)


def _option(level: object, name: object) -> tuple[int, int]:
    """The (level, name) key of an option, with the S9 code for one Winsock lacks."""
    if not isinstance(level, int) or level not in LEVELS:
        raise WSAError(WSAErr.WSAEINVAL, "unknown option level")
    if not isinstance(name, int):
        raise WSAError(WSAErr.WSAENOPROTOOPT)
    return int(level), int(name)


def _linger(optval: object) -> tuple[int, int]:
    raw: Any = getattr(optval, "value", optval)
    if isinstance(raw, tuple) and len(raw) == 2 and all(isinstance(x, int) for x in raw):
        onoff, seconds = raw
    elif isinstance(raw, bytes | bytearray) and len(raw) >= 4:
        onoff, seconds = struct.unpack("<HH", bytes(raw[:4]))
    else:
        raise WSAError(WSAErr.WSAEFAULT, "SO_LINGER takes (onoff, seconds)")
    if not (0 <= onoff <= 0xFFFF and 0 <= seconds <= 0xFFFF):
        raise WSAError(WSAErr.WSAEINVAL, "SO_LINGER fields are 16-bit")
    return onoff, seconds
