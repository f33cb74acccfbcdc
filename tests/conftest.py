"""Fixtures shared by the suite: both event loops, loop threads, loopback peers.

Every test that touches an event loop runs once on stock asyncio and once on
uvloop: async tests through the parametrised ``event_loop_policy`` fixture
(pytest-asyncio), sync tests through ``loop_kind``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Iterator
from typing import NamedTuple

import pytest

# ``WSP_SWITCH=1e-5``: the interpreter hands itself between threads that often (every
# 5 ms by default), so that a race between another thread's call and the loop shows in
# the ordinary tests too (``make soak``: a send racing a reset, left waiting for ever, was
# found so, by the reset fidelity test).
if os.environ.get("WSP_SWITCH"):
    sys.setswitchinterval(float(os.environ["WSP_SWITCH"]))

try:
    import uvloop
except ImportError:  # pragma: no cover - uvloop is a dependency off Windows
    uvloop = None

LOOP_KINDS = ["asyncio", "uvloop"] if uvloop is not None else ["asyncio"]


def new_loop(kind: str) -> asyncio.AbstractEventLoop:
    if kind == "uvloop":
        return uvloop.new_event_loop()
    # Not the policy's loop: the Proactor run sets the Proactor's policy for every loop
    # third-party code makes, but a test's "asyncio" kind stays the selector loop.
    return asyncio.SelectorEventLoop()


@pytest.fixture(params=LOOP_KINDS)
def loop_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def pytest_asyncio_loop_factories(config: pytest.Config, item: pytest.Item) -> dict[str, object]:
    """Every async test runs on each loop kind (pytest-asyncio parametrises by this)."""
    return {kind: (lambda kind=kind: new_loop(kind)) for kind in LOOP_KINDS}


@contextlib.contextmanager
def loop_thread(kind: str) -> Iterator[tuple[asyncio.AbstractEventLoop, threading.Thread]]:
    """A loop of ``kind`` running in its own thread; stopped and closed on exit."""
    loop = new_loop(kind)
    started = threading.Event()

    def main() -> None:
        asyncio.set_event_loop(loop)
        loop.call_soon(started.set)
        loop.run_forever()

    thread = threading.Thread(target=main, name=f"loop-{kind}", daemon=True)
    thread.start()
    assert started.wait(10)
    try:
        yield loop, thread
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


def run_in_loop(loop: asyncio.AbstractEventLoop, fn, *args, timeout: float = 10):  # type: ignore[no-untyped-def]
    """Run ``fn(*args)`` on ``loop``'s thread and return its result."""
    import concurrent.futures

    fut: concurrent.futures.Future[object] = concurrent.futures.Future()

    def call() -> None:
        try:
            fut.set_result(fn(*args))
        except BaseException as exc:
            fut.set_exception(exc)

    loop.call_soon_threadsafe(call)
    return fut.result(timeout)


# --- providers and loopback peers ---------------------------------------------------

import socket  # noqa: E402

import wsp_async as w  # noqa: E402


@pytest.fixture
def provider(loop_kind: str) -> Iterator[w.Provider]:
    """A provider with its own I/O loop of the parametrised kind."""
    p = w.Provider(use_uvloop=(loop_kind == "uvloop"))
    assert p.loop_kind == loop_kind
    try:
        yield p
    finally:
        p.close()


@pytest.fixture
def face(loop_kind: str) -> Iterator[object]:
    """The ``_overlapped`` face (``wsp_async.overlapped``) over a provider of the
    parametrised loop kind, restored afterwards."""
    from wsp_async import overlapped as ov_face

    p = w.Provider(use_uvloop=loop_kind == "uvloop")
    previous = ov_face.use_provider(p)
    try:
        yield ov_face
    finally:
        ov_face.use_provider(previous)
        p.close()


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    """A plain socket listening on 127.0.0.1 (the independent peer)."""
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.bind(("127.0.0.1", 0))
    srv.listen(16)
    srv.settimeout(10)
    try:
        yield srv
    finally:
        srv.close()


@pytest.fixture
def refusing_address() -> Iterator[tuple[str, int]]:
    """An address on 127.0.0.1 that refuses connections, and keeps refusing.

    A port taken from a socket that is then closed is free for anyone: the kernel may
    hand it to the very connect that tests it as the local port, and a TCP connect to
    itself on loopback then *succeeds* (simultaneous open). A socket bound there but
    not listening holds the port for the whole test and answers a SYN with a reset.
    """
    holder = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    holder.bind(("127.0.0.1", 0))
    try:
        yield holder.getsockname()
    finally:
        holder.close()


def make_socket(
    p: w.Provider, kind: int = w.SOCK_STREAM, flags: int = w.WSA_FLAG_OVERLAPPED
) -> int:
    err = w.INT()
    s = p.WSPSocket(w.AF_INET, kind, 0, None, 0, flags, err)
    assert s != w.INVALID_SOCKET, err.value
    return s


class FacePair(NamedTuple):
    """An asyncio-face socket and the plain socket that accepted its connection."""

    sock: object
    peer: socket.socket


@pytest.fixture
async def face_pair() -> AsyncIterator[FacePair]:
    """``aio.connect`` to a plain loopback listener: the face socket and the accepted
    plain socket (non-blocking; an independent peer, SPEC S0).  Both are closed at the
    end whether the test passed or not, so a failed assertion leaks nothing into the
    tests after it (``-W error`` would blame them); a test may close them itself."""
    from wsp_async import aio

    server = socket.create_server(("127.0.0.1", 0))
    server.setblocking(False)
    with server:
        accepting = asyncio.ensure_future(asyncio.get_running_loop().sock_accept(server))
        sock = await aio.connect(*server.getsockname())
        peer, _ = await accepting
        peer.setblocking(False)
        # The handle's number may be reused once the test closes it: close it at the
        # end only while this socket is open (then the number is still its own).
        adapter = sock.provider.socket_of(sock.handle)
        try:
            yield FacePair(sock, peer)
        finally:
            peer.close()
            if not adapter.closed:
                sock.close()


#: Peers made by :func:`connect`, closed after each test (``-W error`` runs stay clean).
_PEERS: list[socket.socket] = []


@pytest.fixture(autouse=True)
def _close_peers() -> Iterator[None]:
    yield
    while _PEERS:
        _PEERS.pop().close()


def udp_peer() -> socket.socket:
    """A plain UDP socket (an independent peer), closed after the test."""
    peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    _PEERS.append(peer)
    return peer


def connect(
    p: w.Provider, srv: socket.socket, flags: int = w.WSA_FLAG_OVERLAPPED
) -> tuple[int, socket.socket]:
    """An emulated stream socket connected to a plain accepted socket."""
    s = make_socket(p, w.SOCK_STREAM, flags)
    err = w.INT()
    assert p.WSPConnect(s, srv.getsockname(), None, None, None, None, None, err) == 0, err.value
    conn, _ = srv.accept()
    conn.settimeout(10)
    _PEERS.append(conn)
    return s, conn


def close_peer(conn: socket.socket) -> None:
    """Close a peer :func:`connect` made, and forget it: a test of memory growth over many
    connections measures the provider's, not this module's list of peers."""
    conn.close()
    _PEERS.remove(conn)


def eventually(predicate, timeout: float = 10.0) -> bool:  # type: ignore[no-untyped-def]
    """Poll ``predicate`` until it holds (for states no completion announces)."""
    import time

    deadline = time.monotonic() + timeout
    pause = threading.Event()
    while not predicate():
        if time.monotonic() > deadline:
            return False
        pause.wait(0.001)
    return True


def recv_exact(conn: socket.socket, n: int) -> bytes:
    out = bytearray()
    while len(out) < n:
        chunk = conn.recv(min(1 << 20, n - len(out)))
        if not chunk:
            break
        out.extend(chunk)
    return bytes(out)


def recv_all(conn: socket.socket) -> bytes:
    out = bytearray()
    while True:
        chunk = conn.recv(1 << 20)
        if not chunk:
            return bytes(out)
        out.extend(chunk)


def stall(p: w.Provider, s: int, conn: socket.socket) -> None:
    """Make the kernel buffers between us and the peer small, so sends pend quickly.

    Not tiny: a receive window of a few KiB makes loopback TCP crawl once the
    peer does read (delayed ACKs), which would make the draining half slow.
    """
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    p.socket_of(s).sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 65536)


class Completions:
    """Collects completion-routine calls; wait with an alertable loop on this thread."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, int, object, int, int]] = []

    def __call__(self, error: int, transferred: int, ov: object, flags: int) -> None:
        self.calls.append((error, transferred, ov, flags, threading.get_ident()))

    def wait(self, count: int, timeout: float = 20.0) -> bool:
        import time

        deadline = time.monotonic() + timeout
        while len(self.calls) < count:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            w.SleepEx(int(left * 1000), True)
        return True


@contextlib.contextmanager
def loop_held(loop: asyncio.AbstractEventLoop) -> Iterator[threading.Event]:
    """The provider's loop kept busy in one callback until the block ends (30 s at most).

    Yields an event set once the hold has let go: a check inside the block that finds
    it set ran only because the hold gave up waiting, i.e. something waited for the loop.
    """
    busy, release, ended = threading.Event(), threading.Event(), threading.Event()

    def hold() -> None:
        busy.set()
        release.wait(30)
        ended.set()

    loop.call_soon_threadsafe(hold)
    assert busy.wait(10)
    try:
        yield ended
    finally:
        release.set()


@contextlib.contextmanager
def unanswering() -> Iterator[tuple[str, int]]:
    """An address on 127.0.0.1 whose listener's backlog is full: a connect to it pends
    (the kernel leaves its SYN unanswered and retries) until the block ends."""
    full = socket.socket()
    full.bind(("127.0.0.1", 0))
    full.listen(0)
    fillers = [socket.socket() for _ in range(8)]
    try:
        for filler in fillers:
            filler.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                filler.connect(full.getsockname())
        yield full.getsockname()
    finally:
        for filler in fillers:
            filler.close()
        full.close()


def run_script(code: str, *options: str) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter (``options`` before ``-c``), and check that it
    exited 0 (otherwise the assertion shows its standard error)."""
    out = subprocess.run(
        [sys.executable, *options, "-c", code], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    return out


def fork_quietly() -> int:
    """``os.fork`` in this multi-threaded process (the tests of what a child meets):
    Python 3.12 warns that such a child may deadlock -- what those tests check for -- so
    the warning is not an error there."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return os.fork()


def child_exit(pid: int, seconds: float = 30.0) -> int | str:
    """The exit code of the forked child ``pid``, or ``"hung: killed"`` when it has not
    ended within ``seconds`` (it is killed then, so that no test run waits for it)."""
    import time

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.05)
    os.kill(pid, 9)
    os.waitpid(pid, 0)
    return "hung: killed"
