"""The host socket of a connection the provider accepts (``AcceptEx``, SPEC S14.2, and
``WSPAccept`` when it need not wait).

``socket.socket`` keeps a socket's family and type as numbers and makes an enum member
of them on every read of ``family`` or ``type`` -- three Python calls each.  An accept
read them four or five times: twice in the socket module's ``accept`` (the listener's,
to build the new object), two or three times as the loop makes a transport of it
(uvloop's checks of the socket it is given; stock asyncio's test for ``TCP_NODELAY``):
about a twentieth of an awaited ``AcceptEx``'s Python (issue 26,
``benchmarks/README.md``).  So the accepted socket takes a subclass whose family and
type are plain class attributes -- the same values, read without a call -- and only the
listener's two reads remain.  (Accepting through the socket's private C method would
save those two as well, for a reach into the standard library's internals.)

A listening socket the program lent (``Provider.adopt``) is the program's object: its
own ``accept`` is called, as it is for every listener, and a socket it returns of a
class of its own keeps it.
"""

from __future__ import annotations

import socket as _pysocket
from typing import Any

__all__ = ["accept_connection"]


def _accepted_class(family: _pysocket.AddressFamily) -> type[_pysocket.socket]:
    namespace = {
        "__slots__": (),
        "__doc__": f"An accepted {family.name} stream socket (see the module doc).",
        "family": family,
        "type": _pysocket.SocketKind.SOCK_STREAM,
    }
    return type(f"Accepted{family.name}", (_pysocket.socket,), namespace)


#: The accepted socket's class, by the listener's family; others accept as they are.
_ACCEPTED: dict[int, type[_pysocket.socket]] = {
    family: _accepted_class(family)
    for family in (_pysocket.AddressFamily.AF_INET, _pysocket.AddressFamily.AF_INET6)
}


def accept_connection(host: _pysocket.socket, family: int) -> tuple[_pysocket.socket, Any]:
    """Accept the next connection on the non-blocking listening ``host`` of ``family``:
    the accepted socket (non-blocking) and the peer's address.  Raises what ``accept``
    raises (``BlockingIOError`` when none is waiting)."""
    conn, peer = host.accept()
    cls = _ACCEPTED.get(family)
    if cls is not None and type(conn) is _pysocket.socket:
        conn.__class__ = cls  # (the same layout: only the two reads change)
    conn.setblocking(False)
    return conn, peer
