"""Four threads using every newer surface at once, at random, as a careless program would.

Each thread picks, again and again, one of: a new socket (half of them associated with a
completion port), ``ConnectEx`` (mostly bound first), ``AcceptEx`` (the socket made a
listener first, whether or not that makes sense), ``DisconnectEx``, ``TransmitFile``, an
overlapped send or receive, ``CancelIoEx`` of a recent structure or of everything,
``CancelIo``, ``WSPShutdown``, ``WSPCloseSocket``, ``GetOverlappedResult`` and
``WSPGetOverlappedResult``, ``SIO_FLUSH``, a ``TransmitFile`` that disconnects and reuses its
socket, a packet posted to the port by hand, non-blocking ``WSPConnect`` and ``WSPAccept``, a
linger of 0, a receive with a routine and an alertable ``SleepEx`` -- on any socket of the
pool, in whatever state another thread left it.  Half the connects go to the pool's own
sockets, so that some connections have both ends here.  Most calls fail, with a Winsock
error; the ones that start are the subject (SPEC S2.4): once the provider is closed, every
structure whose call returned success or ``WSA_IO_PENDING`` holds a result, none is left
``STATUS_PENDING``, and every one on a socket with a port gave exactly one packet (S13.2).
No call lets a Python exception out (S9).  The peer is a plain listening socket that
accepts everything; a drainer thread reads the port.

Found, before its fix: a ConnectEx or DisconnectEx left pending for ever when its socket
was closed between two of its steps (``test_surfaces_hostile``'s "close at any moment"
tests pin each case).  With the last four kinds, three ways for the loop to go on watching
a descriptor that was closed -- on uvloop a libuv abort of the whole process, about one run
of three under ``WSP_SOAK``: an AcceptEx and a bind racing for one fresh socket, a
DisconnectEx overtaken by another reuse, a lazy host socket's late maker closing the one in
use (each pinned in ``test_surfaces_hostile``).  The same walk on datagram sockets found a
socket bound and connected at once given two transports on one descriptor.  ``WSP_SOAK=1``
(``make soak``) runs more seeds, longer.
"""

from __future__ import annotations

import collections
import contextlib
import os
import random
import socket
import struct
import tempfile
import threading
import traceback
from collections.abc import Iterator
from typing import Any

import pytest

import wsp_async as w
from wsp_async import DWORD, INT, WSABUF, WSAOVERLAPPED

from .conftest import eventually

SOAK = bool(os.environ.get("WSP_SOAK"))
SEEDS = range(40) if SOAK else range(4)
STEPS = 800 if SOAK else 500
THREADS = 4


class _Box:
    value: object = None


class _Program:
    """The shared state of the four threads: the provider, the pool, what started."""

    def __init__(self, provider: w.Provider, peer: tuple[str, int], path: str) -> None:
        self.p = provider
        self.peer = peer
        self.path = path
        self.port = w.CreateIoCompletionPort(w.INVALID_HANDLE_VALUE, None, 0, 0)
        self.lock = threading.Lock()
        self.sockets: list[int] = []
        self.on_port: set[int] = set()
        #: (structure, socket, started, what): started when the call returned 0 / TRUE or
        #: WSA_IO_PENDING.
        self.posted: list[tuple[WSAOVERLAPPED, int, bool, str]] = []
        self.packets: collections.Counter[int] = collections.Counter()
        self.failures: list[str] = []

    #: The pool's sockets, and how often a new one is bound at once.
    KIND = w.SOCK_STREAM
    BOUND = 0.0

    def new_socket(self, rng: random.Random) -> None:
        s = self.p.WSPSocket(w.AF_INET, self.KIND, 0, None, 0, w.WSA_FLAG_OVERLAPPED, INT())
        if s == w.INVALID_SOCKET:
            return
        if rng.random() < self.BOUND:
            self.p.WSPBind(s, ("127.0.0.1", 0), None, INT())
        with self.lock:
            self.sockets.append(s)
            if rng.random() < 0.5 and w.CreateIoCompletionPort(s, self.port, s, 0):
                self.on_port.add(s)

    def pick(self, rng: random.Random, kinds: int) -> tuple[int, list[WSAOVERLAPPED], int] | None:
        """A socket of the pool, the structures posted last, and what to do (0 to
        ``kinds - 1``); None when this step made a new socket instead (kind 0)."""
        with self.lock:
            s = rng.choice(self.sockets) if self.sockets else None
            recent = [entry[0] for entry in self.posted[-20:]]
        kind = rng.randrange(kinds)
        if kind == 0 or s is None:
            self.new_socket(rng)
            return None
        return s, recent, kind

    def withdraw(self, rng: random.Random, s: int, recent: list[WSAOVERLAPPED], kind: int) -> None:
        """Kinds 7 to 10 of both walks: a cancel of one or all, a close, a shutdown."""
        err = INT()
        if kind == 7:
            w.CancelIoEx(s, rng.choice(recent) if recent and rng.random() < 0.7 else None)
        elif kind == 8:
            self.p.WSPCloseSocket(s, err)
            with self.lock:
                if s in self.sockets:
                    self.sockets.remove(s)
        elif kind == 9:
            w.CancelIo(s)
        else:
            self.p.WSPShutdown(s, rng.choice([0, 1, 2]), err)

    def step(self, rng: random.Random) -> None:
        picked = self.pick(rng, 22)
        if picked is None:
            return
        s, recent, kind = picked
        p, err = self.p, INT()
        ov = WSAOVERLAPPED(hEvent=w.WSACreateEvent() if rng.random() < 0.5 else None)
        if kind == 1:
            if rng.random() < 0.8:
                p.WSPBind(s, ("127.0.0.1", 0), None, err)
            data = rng.choice([None, b"hello"])
            ok = p.ConnectEx(s, self.target(rng), 16, data, 5 if data else 0, None, ov)
        elif kind == 2:
            p.WSPBind(s, ("127.0.0.1", 0), None, err)
            p.WSPListen(s, 8, err)
            with self.lock:  # (the others may have closed every other socket: then itself)
                accept_into = self.sockets[-1] if self.sockets else s
            ok = p.AcceptEx(s, accept_into, bytearray(100), rng.choice([0, 10]), 32, 32, DWORD(), ov)  # fmt: skip
        elif kind == 3:
            ok = p.DisconnectEx(s, ov, rng.choice([0, w.TF_REUSE_SOCKET]), 0)
        elif kind == 4:
            with open(self.path, "rb") as f:
                ok = p.TransmitFile(s, f, rng.choice([0, 100, 5000]), 0, ov, None, rng.choice([0, w.TF_DISCONNECT]))  # fmt: skip
        elif kind in (5, 6):
            if kind == 5:
                rc = p.WSPSend(s, [WSABUF(64, b"x" * 64)], 1, None, 0, ov, None, None, err)
            else:
                rc = p.WSPRecv(s, [WSABUF(64, bytearray(64))], 1, None, DWORD(0), ov, None, None, err)  # fmt: skip
            with self.lock:
                began = rc == 0 or err.value == w.WSA_IO_PENDING
                self.posted.append((ov, s, began, "WSPSend" if kind == 5 else "WSPRecv"))
            return
        else:
            if kind in (7, 8, 9, 10):
                self.withdraw(rng, s, recent, kind)
            elif kind == 11 and recent:
                w.GetOverlappedResult(s, rng.choice(recent), DWORD(), False)
            elif kind == 12:
                p.WSPIoctl(s, w.SIO_FLUSH, None, 0, None, 0, DWORD(), None, None, None, err)
            elif kind == 13 and recent:
                p.WSPGetOverlappedResult(s, rng.choice(recent), DWORD(), False, DWORD(), err)
            elif kind == 14:
                w.PostQueuedCompletionStatus(self.port, 0, None, None)  # a packet of no call's
            elif kind == 15:
                self.transmit_and_reuse(s)
            elif kind == 16:
                p.WSPIoctl(s, w.FIONBIO, 1, 4, None, 0, DWORD(), None, None, None, err)
                p.WSPConnect(s, self.target(rng), None, None, None, None, None, err)
            elif kind == 17:
                p.WSPIoctl(s, w.FIONBIO, 1, 4, None, 0, DWORD(), None, None, None, err)
                child = p.WSPAccept(s, None, None, None, None, err)
                if child != w.INVALID_SOCKET:
                    with self.lock:
                        self.sockets.append(child)
            elif kind == 18:
                linger = struct.pack("HH", 1, 0)  # Windows' LINGER: on, 0 s (a reset)
                p.WSPSetSockOpt(s, w.SOL_SOCKET, w.SO_LINGER, linger, 4, err)
            elif kind == 19:  # a routine for this thread, run (or not) by its SleepEx
                ov = WSAOVERLAPPED()
                buffers = [WSABUF(64, bytearray(64))]
                rc = p.WSPRecv(s, buffers, 1, None, DWORD(0), ov, lambda *_: None, None, err)
                with self.lock:
                    began = rc == 0 or err.value == w.WSA_IO_PENDING
                    self.posted.append((ov, s, began, "WSPRecv with a routine"))
            elif kind == 20:
                w.SleepEx(0, True)
            elif kind == 21:
                p.WSPGetPeerName(s, _Box(), None, err)
            return
        began = bool(ok) or w.WSAGetLastError() == w.WSA_IO_PENDING
        what = ("ConnectEx", "AcceptEx", "DisconnectEx", "TransmitFile")[kind - 1]
        with self.lock:
            self.posted.append((ov, s, began, what))

    def target(self, rng: random.Random) -> Any:
        """Where a connect goes: the plain peer, or half the time one of the pool's own
        sockets (a listener, when it is one: both ends of that connection are ours)."""
        if rng.random() < 0.5:
            with self.lock:
                if not self.sockets:
                    return self.peer  # the other threads closed every one
                other = rng.choice(self.sockets)
            name = _Box()
            if self.p.WSPGetSockName(other, name, None, INT()) == 0:
                return name.value
        return self.peer

    def transmit_and_reuse(self, s: int) -> None:
        """TransmitFile that disconnects and makes the socket fresh at its end (S14.5)."""
        with open(self.path, "rb") as f:
            ov = WSAOVERLAPPED(hEvent=w.WSACreateEvent())
            flags = w.TF_DISCONNECT | w.TF_REUSE_SOCKET
            ok = self.p.TransmitFile(s, f, 100, 0, ov, None, flags)
            began = bool(ok) or w.WSAGetLastError() == w.WSA_IO_PENDING
        with self.lock:
            self.posted.append((ov, s, began, "TransmitFile reuse"))

    def run(self, seed: int, k: int) -> None:
        rng = random.Random(seed * 101 + k)
        for _ in range(STEPS):
            try:
                self.step(rng)
            except BaseException:
                self.failures.append(traceback.format_exc())
                return

    def drain(self, stop: threading.Event) -> None:
        entries = [w.OVERLAPPED_ENTRY() for _ in range(32)]
        removed = DWORD()
        while not stop.is_set():
            if w.GetQueuedCompletionStatusEx(self.port, entries, 32, removed, 50, False):
                with self.lock:
                    for entry in entries[: removed.value]:
                        if entry.lpOverlapped is not None:
                            self.packets[id(entry.lpOverlapped)] += 1


@pytest.fixture
def peer() -> Iterator[tuple[str, int]]:
    """A plain listener that accepts every connection and keeps it until the end."""
    server = socket.create_server(("127.0.0.1", 0), backlog=256)
    kept: list[socket.socket] = []

    def accept() -> None:
        while True:
            try:
                conn = server.accept()[0]
            except OSError:
                return
            kept.append(conn)
            with contextlib.suppress(OSError):
                conn.send(b"y" * 300)  # bytes that wait for the walk's receives

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield server.getsockname()
    with contextlib.suppress(OSError):
        server.shutdown(socket.SHUT_RDWR)  # wakes the accept (a close alone does not)
    server.close()
    thread.join(10)
    for conn in kept:
        conn.close()


class _DatagramProgram(_Program):
    """The same walk on datagram sockets: datagrams to the pool's own sockets (or to a
    port nobody listens on), receives, connects, binds -- with the cancels, closes and
    shutdowns of the stream walk."""

    KIND = w.SOCK_DGRAM
    BOUND = 0.7

    def step(self, rng: random.Random) -> None:
        picked = self.pick(rng, 12)
        if picked is None:
            return
        s, recent, kind = picked
        p, err = self.p, INT()
        ov = WSAOVERLAPPED(hEvent=w.WSACreateEvent() if rng.random() < 0.5 else None)
        if kind in (1, 2):
            size = rng.choice([0, 10, 1000, 70_000])  # the last too big for a datagram
            buffers = [WSABUF(size, b"x" * size)]
            to = self.target(rng)
            rc = p.WSPSendTo(s, buffers, 1, None, 0, to, 16, ov, None, None, err)
            what = "WSPSendTo"
        elif kind in (3, 4):
            buffers = [WSABUF(100, bytearray(100))]
            rc = p.WSPRecvFrom(s, buffers, 1, None, DWORD(0), _Box(), INT(16), ov, None, None, err)  # fmt: skip
            what = "WSPRecvFrom"
        elif kind == 5:
            rc = p.WSPSend(s, [WSABUF(5, b"hello")], 1, None, 0, ov, None, None, err)
            what = "WSPSend"
        else:
            if kind == 6:
                p.WSPConnect(s, self.target(rng), None, None, None, None, None, err)
            elif kind in (7, 8, 9, 10):
                self.withdraw(rng, s, recent, kind)
            elif kind == 11 and recent:
                p.WSPGetOverlappedResult(s, rng.choice(recent), DWORD(), False, DWORD(), err)
            return
        with self.lock:
            self.posted.append((ov, s, rc == 0 or err.value == w.WSA_IO_PENDING, what))


def _play(program: _Program, seed: int) -> None:
    """Run the four threads and the port's drainer; then check every started call."""
    stop = threading.Event()
    drainer = threading.Thread(target=program.drain, args=(stop,), daemon=True)
    drainer.start()
    threads = [threading.Thread(target=program.run, args=(seed, k)) for k in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(600)
    assert not any(t.is_alive() for t in threads)
    program.p.close()
    started = [(ov, s, what) for ov, s, began, what in program.posted if began]
    on_port = [ov for ov, s, _ in started if s in program.on_port]

    def lost() -> list[tuple[str, int]]:
        return [(what, ov.Internal) for ov, _, what in started if ov.pending]

    try:
        assert program.failures == []
        assert eventually(lambda: not lost(), 30), lost()
        assert eventually(lambda: all(program.packets[id(ov)] >= 1 for ov in on_port), 30)
        with program.lock:  # exactly one: none twice, none for a call that failed
            twice = [(what, program.packets[id(ov)]) for ov, _, what in started if program.packets[id(ov)] > 1]  # fmt: skip
            stray = [what for ov, _, began, what in program.posted if not began and program.packets[id(ov)]]  # fmt: skip
        assert twice == [] and stray == []
    finally:
        stop.set()
        drainer.join(10)
        w.CloseHandle(program.port)
    assert max(program.packets.values(), default=0) <= 1
    assert started  # the random walk did start operations


@pytest.mark.timeout(1800 if SOAK else 240)
@pytest.mark.parametrize("seed", SEEDS)
def test_four_careless_threads_lose_and_double_nothing(loop_kind: str, peer: Any, seed: int) -> None:  # fmt: skip
    # SPEC S2.4, S9, S10.2, S13.2, S14.2-S14.5, S15.1
    with tempfile.NamedTemporaryFile() as file:
        file.write(os.urandom(20_000))
        file.flush()
        _play(_Program(w.Provider(use_uvloop=loop_kind == "uvloop"), peer, file.name), seed)


@pytest.mark.timeout(1800 if SOAK else 240)
@pytest.mark.parametrize("seed", SEEDS)
def test_four_careless_threads_on_datagram_sockets_lose_and_double_nothing(
    loop_kind: str, seed: int
) -> None:
    # SPEC S2.4, S9, S10.2, S13.2, S5.1
    provider = w.Provider(use_uvloop=loop_kind == "uvloop")
    _play(_DatagramProgram(provider, ("127.0.0.1", 9), ""), seed)
