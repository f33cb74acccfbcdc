"""The provider behind the face, and the program's descriptors it stands behind (see
:mod:`wsp_async.overlapped`, "File descriptors stand for handles")."""

from __future__ import annotations

import os
import socket as _socket
import struct
import threading
import time
from typing import Any

import attrs

from ..errors import WSAErr, WSAError
from ..provider import Provider
from ..structs import INT
from ._errors import (
    ERROR_INVALID_HANDLE,
    windows_error,
)

__all__ = [
    "accepted_peer",
    "descriptors",
    "handle_of",
    "identity_of",
    "provider",
    "reset_connection",
    "use_provider",
]

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
    descriptors.forget()
    return previous


#: Providers a child made by fork inherited: never used nor closed there (see below).
_left_in_the_parent: list[Provider] = []


def _after_fork_in_child() -> None:
    """A child made by ``fork`` has no copy of the provider's I/O thread: it makes its
    own provider on first use.  The inherited one is kept, unused, never closed nor
    collected -- its loop's descriptors are shared with the parent's -- and so are the
    locks a thread now gone may have held: new ones."""
    global _provider, _provider_lock
    if _provider is not None:
        _left_in_the_parent.append(_provider)
    _provider = None
    _provider_lock = threading.Lock()
    descriptors.after_fork()


def provider() -> Provider:
    """The provider that runs this module's operations (made on first use, own I/O thread)."""
    global _provider
    p = _provider
    if p is None:
        with _provider_lock:
            if _provider is None:
                _provider = Provider(use_uvloop=False)
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
        #: When the next sweep is due (``time.monotonic()``).  Every operation and every
        #: wait on a port asks ``time.monotonic() >= next_sweep`` before calling
        #: :meth:`sweep`: one comparison, not a call, on the Proactor's path.
        self.next_sweep = 0.0

    def handle(self, fd: object) -> int:
        """The handle behind descriptor ``fd``, adopting a duplicate the first time; the
        table is swept first when a sweep is due."""
        if time.monotonic() >= self.next_sweep:
            self.sweep()
        if type(fd) is not int:
            if not isinstance(fd, int):
                raise windows_error(ERROR_INVALID_HANDLE)
            fd = int(fd)
        identity = identity_of(fd)
        if identity is None:
            raise windows_error(WSAErr.WSAENOTSOCK)
        # Read without the lock (one dict lookup is atomic): every operation asks this,
        # and an entry is only ever replaced whole.
        entry = self.entries.get(fd)
        if entry is not None and entry.identity == identity:
            return entry.handle
        # No lock is held from here on while the provider works: adopting, or closing
        # an emulated socket, may wait for the thread that runs the provider's loop --
        # the Proactor's own while its loop runs -- and that thread names descriptors too.
        if entry is not None:
            self._release_if(fd, entry)  # the number names another socket now
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
        with self.lock:
            entry = self.entries.get(fd)
            if entry is None or entry.identity != identity:
                self.entries[fd] = _Entry(handle, identity)
                return handle
        # Another thread adopted the same socket meanwhile: its handle stands.
        provider().WSPCloseSocket(handle, INT())
        return entry.handle

    def forget(self) -> None:
        with self.lock:
            self.entries.clear()

    def after_fork(self) -> None:
        """In a child made by fork: no entry names a socket of the child's provider."""
        self.lock = threading.RLock()
        self.entries = {}
        self.next_sweep = 0.0

    def rebind(self, fd: int, handle: int, peer: Any = None) -> None:
        """``fd`` now holds the socket of ``handle`` (after AcceptEx's ``dup2``)."""
        identity = identity_of(fd)
        if identity is not None:
            with self.lock:
                self.entries[fd] = _Entry(handle, identity, peer)

    def peer(self, fd: int) -> Any:
        """The address AcceptEx reported for the connection behind ``fd`` (None: unknown)."""
        with self.lock:
            entry = self.entries.get(fd)
        if entry is None or entry.peer is None or identity_of(fd) != entry.identity:
            return None
        return entry.peer

    def sweep(self, force: bool = False) -> None:
        """Close the emulated sockets whose descriptor was closed or names another socket."""
        now = time.monotonic()
        if not force and now < self.next_sweep:
            return
        self.next_sweep = now + self.SWEEP_EVERY
        with self.lock:
            gone = [(fd, e) for fd, e in self.entries.items() if identity_of(fd) != e.identity]
        for fd, entry in gone:
            self._release_if(fd, entry)

    def _release_if(self, fd: int, entry: _Entry) -> None:
        """Forget ``entry`` (if it still stands for ``fd``) and close its emulated socket,
        outside the lock (see :meth:`handle`)."""
        with self.lock:
            if self.entries.get(fd) is not entry:
                return
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
        self._identity = identity_of(fileno)

    def lost(self) -> bool:
        """Whether the program closed this descriptor (its number may name another socket
        now): the provider must not accept on it any more (S16.4)."""
        return identity_of(self.fileno()) != self._identity

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


def reset_connection(family: int) -> _socket.socket:
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
    return descriptors.peer(fd)


def identity_of(fd: int) -> tuple[int, int] | None:
    try:
        st = os.fstat(fd)
    except OSError:
        return None
    return st.st_dev, st.st_ino


descriptors = _Descriptors()


#: The handle behind a descriptor (see :meth:`_Descriptors.handle`).
handle_of = descriptors.handle


os.register_at_fork(after_in_child=_after_fork_in_child)
