"""The host socket of a connection the provider accepts (``AcceptEx``, SPEC S14.2, and
``WSPAccept`` when it need not wait).

``socket.socket`` keeps a socket's family and type as numbers and makes an enum member
of them on every read of ``family`` or ``type`` -- three Python calls each.  An accept
read them five times: twice in the socket module's ``accept`` (to build the new object)
and three times in uvloop's ``connect_accepted_socket`` (its checks of the socket it is
given), about a twentieth of an awaited ``AcceptEx``'s Python (issue 26,
``benchmarks/README.md``).  So the provider's own listening sockets accept through the
socket's C method, and the accepted socket is of a subclass whose family and type are
plain class attributes: the same values, read without a call.

A listening socket the program lent (``Provider.adopt``) is the program's object: its
own ``accept`` is called, as the program may have given it one.
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
    cls = _ACCEPTED.get(family)
    if cls is None or type(host) is not _pysocket.socket:
        conn, peer = host.accept()
    else:
        # What ``socket.accept`` does, with the numbers the provider knows already.
        fd, peer = host._accept()  # type: ignore[attr-defined]
        conn = cls(family, _pysocket.SOCK_STREAM, host.proto, fd)
    conn.setblocking(False)
    return conn, peer
