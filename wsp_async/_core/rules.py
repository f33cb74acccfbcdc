"""The rules a post meets before anything starts: the socket's life cycle states and the
rows of the S9 table that read them (SPEC S9, S2.3).

Each row is ``(test, code, why)``: when ``test(engine, flags, to, total)`` holds, the post
fails with ``code`` and nothing starts.  The engine walks them in the order a Windows
provider meets them (``SocketEngine.check``); a table, not branches, so that the order
can be read in one place.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import Any

from ..constants import MSG_DONTROUTE, MSG_OOB, MSG_PARTIAL, MSG_PEEK
from ..errors import WSAErr

__all__ = [
    "DATAGRAM_SEND_ROWS",
    "TRANSITIONS",
    "Event",
    "next_state",
    "RECV_FLAGS",
    "RECV_ROWS",
    "SEND_FLAGS",
    "SEND_FLAG_ROWS",
    "STREAM_SEND_ROWS",
    "Row",
    "SocketState",
]

SEND_FLAGS = MSG_OOB | MSG_DONTROUTE | MSG_PARTIAL
RECV_FLAGS = MSG_OOB | MSG_PEEK | MSG_PARTIAL


class SocketState(enum.IntEnum):
    """Where a socket is in its life; stream sockets walk it in order, datagrams skip LISTENING."""

    CREATED = 0
    BOUND = 1
    LISTENING = 2
    CONNECTING = 3
    CONNECTED = 4


class Event(enum.Enum):
    """What moves a socket along its life: one row of :data:`TRANSITIONS` each."""

    #: WSPBind, or the implicit bind of a datagram sent from an unbound socket.
    BIND = "bind"
    #: WSPListen (again on a listener: a new backlog).
    LISTEN = "listen"
    #: A stream connect starts (WSPConnect, the asyncio face's connect).
    CONNECT = "connect"
    #: ConnectEx starts: only a bound socket, and WSAEINVAL where connect says
    #: WSAEALREADY (sock.c: test_connecting_socket).
    CONNECT_EX = "ConnectEx"
    #: The connection is made.
    CONNECTED = "connected"
    #: The connection attempt failed or was cancelled, the socket bound (or not).
    GAVE_UP_BOUND = "gave up, bound"
    GAVE_UP = "gave up, unbound"
    #: AcceptEx's accept socket takes the connection it waited for.
    ACCEPTED = "accepted"
    #: A datagram socket's connect: a default peer, from any state but listening.
    PEER = "peer"


_S = SocketState
_E = Event
_INVAL = WSAErr.WSAEINVAL

#: ``(state, event) -> next state``, or the S9 code that refuses the event in that state
#: (nothing changes).  A pair not listed is refused with WSAEINVAL, Winsock's answer for
#: a call the socket's state does not allow.  One table instead of assignments spread
#: over the entry points, so that the life cycle can be read, and tested, in one place.
TRANSITIONS: dict[tuple[SocketState, Event], SocketState | WSAErr] = {
    (_S.CREATED, _E.BIND): _S.BOUND,
    (_S.BOUND, _E.LISTEN): _S.LISTENING,
    (_S.LISTENING, _E.LISTEN): _S.LISTENING,
    (_S.CREATED, _E.CONNECT): _S.CONNECTING,
    (_S.BOUND, _E.CONNECT): _S.CONNECTING,
    (_S.CONNECTING, _E.CONNECT): WSAErr.WSAEALREADY,
    (_S.CONNECTED, _E.CONNECT): WSAErr.WSAEISCONN,
    (_S.BOUND, _E.CONNECT_EX): _S.CONNECTING,
    (_S.CONNECTED, _E.CONNECT_EX): WSAErr.WSAEISCONN,
    (_S.CONNECTING, _E.CONNECTED): _S.CONNECTED,
    (_S.CONNECTING, _E.GAVE_UP_BOUND): _S.BOUND,
    (_S.CONNECTING, _E.GAVE_UP): _S.CREATED,
    (_S.CREATED, _E.ACCEPTED): _S.CONNECTED,
    (_S.BOUND, _E.ACCEPTED): _S.CONNECTED,
    (_S.CREATED, _E.PEER): _S.CONNECTED,
    (_S.BOUND, _E.PEER): _S.CONNECTED,
    (_S.CONNECTED, _E.PEER): _S.CONNECTED,
}


def next_state(state: SocketState, event: Event) -> SocketState | WSAErr:
    """Where ``event`` takes a socket in ``state``: a state, or the code refusing it."""
    return TRANSITIONS.get((state, event), _INVAL)


#: A row of the S9 table: when ``test(engine, flags, to, total)`` holds, the post fails
#: with ``code`` (``None``: the socket's sticky connection error; -1: its receive error)
#: and nothing starts.
Row = tuple[Callable[[Any, int, Any, int], object], "int | None", str]

SEND_FLAG_ROWS: tuple[Row, ...] = (
    (lambda e, f, to, n: f & ~SEND_FLAGS, WSAErr.WSAEOPNOTSUPP, "unknown flag bits"),
    (
        lambda e, f, to, n: f & MSG_PARTIAL,
        WSAErr.WSAEOPNOTSUPP,
        "MSG_PARTIAL: TCP and UDP have no partial messages",
    ),
    (
        lambda e, f, to, n: f & MSG_OOB and not e.stream,
        WSAErr.WSAEOPNOTSUPP,
        "MSG_OOB on a datagram socket",
    ),
)
STREAM_SEND_ROWS: tuple[Row, ...] = (
    (lambda e, f, to, n: e.send_shut, WSAErr.WSAESHUTDOWN, "the socket was shut down for sending"),
    (lambda e, f, to, n: e.error, None, "the connection failed earlier"),
    (lambda e, f, to, n: e.state != SocketState.CONNECTED, WSAErr.WSAENOTCONN, "not connected"),
)
DATAGRAM_SEND_ROWS: tuple[Row, ...] = (
    (lambda e, f, to, n: e.send_shut, WSAErr.WSAESHUTDOWN, "the socket was shut down for sending"),
    (
        lambda e, f, to, n: to is None and e.state != SocketState.CONNECTED,
        WSAErr.WSAENOTCONN,
        "no default peer: use WSPSendTo",
    ),
    (lambda e, f, to, n: n > e.max_message, WSAErr.WSAEMSGSIZE, "larger than SO_MAX_MSG_SIZE"),
)
RECV_ROWS: tuple[Row, ...] = (
    (lambda e, f, to, n: not n, WSAErr.WSAEINVAL, "a receive needs buffers"),
    (lambda e, f, to, n: f & ~RECV_FLAGS, WSAErr.WSAEOPNOTSUPP, "unknown flag bits"),
    (
        lambda e, f, to, n: f & (MSG_OOB | MSG_PARTIAL),
        WSAErr.WSAEOPNOTSUPP,
        "MSG_OOB and MSG_PARTIAL receives are not emulated",
    ),
    (
        lambda e, f, to, n: e.recv_shut,
        WSAErr.WSAESHUTDOWN,
        "the socket was shut down for receiving",
    ),
    (
        lambda e, f, to, n: e.stream and e.state != SocketState.CONNECTED,
        WSAErr.WSAENOTCONN,
        "not connected",
    ),
    (
        lambda e, f, to, n: e.stream and e.recv_error and not e.receiver.available(),
        -1,
        "the connection failed earlier",
    ),
    (
        lambda e, f, to, n: not e.stream and e.state == SocketState.CREATED,
        WSAErr.WSAEINVAL,
        "the datagram socket is not bound",
    ),
)
