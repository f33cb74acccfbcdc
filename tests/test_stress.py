"""Stress and fuzz: many sockets, many cycles, hostile arguments (SPEC S2.4, S9, S10).

Bounded in time and loopback only.  ``WSP_SOAK=1`` (``make soak``) multiplies
the counts.
"""

from __future__ import annotations

import ctypes
import gc
import math
import os
import resource
import socket
import tracemalloc

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import wsp_async as w
from wsp_async import DWORD, INT, WSABUF, WSAOVERLAPPED, WSATHREADID

from .conftest import close_peer, connect, make_socket, recv_exact, run_in_loop

SOAK = int(os.environ.get("WSP_SOAK", "0") or 0)


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.fixture
def many_fds():  # type: ignore[no-untyped-def]
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, max(soft, 8192))
    resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    if want < 4096:
        pytest.skip(f"needs 4096 file descriptors, the hard limit is {hard}")
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


@pytest.mark.timeout(300)
def test_a_thousand_sockets_with_pending_sends(provider, many_fds):  # type: ignore[no-untyped-def]
    # SPEC S2.4, S10.2, S12.1: 1000 sockets, 2000 pending sends; half released and
    # delivered, half closed and aborted -- every send completes exactly once.
    count = 1000 * (4 if SOAK else 1)
    srv = socket.create_server(("127.0.0.1", 0), backlog=count)
    srv.settimeout(30)
    sockets, peers, ovs = [], [], []
    try:
        for i in range(count):
            s, peer = connect(provider, srv)
            provider.inject(s, delay_drain=math.inf)
            sockets.append(s)
            peers.append(peer)
            pair = []
            for j in range(2):
                ov = WSAOVERLAPPED(hEvent=w.WSACreateEvent())
                data = f"{i:06d}:{j}".encode() * 64
                err = INT()
                rc = provider.WSPSend(s, [WSABUF(len(data), data)], 1, None, 0, ov, None, None, err)
                assert rc == 0 or err.value == w.WSA_IO_PENDING
                pair.append(ov)
            ovs.append(pair)
        assert all(ov.pending for pair in ovs for ov in pair)
        for i, s in enumerate(sockets):
            if i % 2:
                provider.WSPCloseSocket(s, INT())
            else:
                provider.inject(s, delay_drain=None)
        for i, pair in enumerate(ovs):
            for ov in pair:
                assert w.WSAWaitForMultipleEvents(1, [ov.hEvent], False, 30_000, False) == 0
                assert ov.Internal == (w.STATUS_CANCELLED if i % 2 else 0)
        for i in range(0, count, 2):
            expected = b"".join(f"{i:06d}:{j}".encode() * 64 for j in range(2))
            assert recv_exact(peers[i], len(expected)) == expected
    finally:
        for peer in peers:
            peer.close()
        srv.close()


@pytest.mark.timeout(300)
def test_open_close_cycles_do_not_leak(loop_kind, listener):  # type: ignore[no-untyped-def]
    # SPEC S10.2: 10,000 socket open/close cycles (1,000 of them connected): no growth
    # in open file descriptors, and Python memory bounded (measured with tracemalloc).
    cycles = 10_000 * (5 if SOAK else 1)
    with w.Provider(use_uvloop=loop_kind == "uvloop") as p:

        def cycle(i: int) -> None:
            err = INT()
            if i % 10 == 0:
                s, peer = connect(p, listener)
                p.WSPSend(s, [WSABUF(4, b"ping")], 1, DWORD(), 0, None, None, None, err)
                assert p.WSPCloseSocket(s, err) == 0
                assert recv_exact(peer, 4) == b"ping"
                close_peer(peer)  # not kept by the helper: its list would count as growth
            else:
                s = p.WSPSocket(
                    w.AF_INET,
                    w.SOCK_DGRAM if i % 2 else w.SOCK_STREAM,
                    0,
                    None,
                    0,
                    w.WSA_FLAG_OVERLAPPED,
                    err,
                )
                assert s != w.INVALID_SOCKET
                if i % 3 == 0:
                    assert p.WSPBind(s, ("127.0.0.1", 0), None, err) == 0
                assert p.WSPCloseSocket(s, err) == 0

        for i in range(200):  # warm-up: caches, free lists, the loop's own structures
            cycle(i)
        run_in_loop(p.loop, lambda: None)
        gc.collect()
        fds_before = _open_fds()
        tracemalloc.start()
        before = tracemalloc.take_snapshot()
        for i in range(cycles):
            cycle(i)
        run_in_loop(p.loop, lambda: None)
        gc.collect()
        after = tracemalloc.take_snapshot()
        tracemalloc.stop()
        growth = sum(stat.size_diff for stat in after.compare_to(before, "filename"))
        assert p.sockets() == []
        assert _open_fds() - fds_before <= 5  # a few sockets may still be closing
        assert growth < 512 * 1024, f"{growth} bytes kept after {cycles} cycles"


# --- fuzzing every SPI entry point ------------------------------------------------------


def _released() -> memoryview:
    view = memoryview(b"gone")
    view.release()
    return view


_JUNK = st.sampled_from(
    [
        None,
        0,
        -1,
        1,
        2**31,
        2**64,
        1.5,
        "text",
        b"bytes",
        bytearray(3),
        [],
        [WSABUF(1, b"x")],
        [WSABUF(5, b"x")],
        [WSABUF(-1, b"x")],
        [WSABUF(1, 7)],
        (WSABUF(1, b"y"),),
        WSABUF(1, b"z"),
        [object()],
        object(),
        WSAOVERLAPPED(),
        WSAOVERLAPPED(hEvent=w.WSACreateEvent()),
        DWORD(),
        INT(),
        ctypes.c_ulong(),
        ("127.0.0.1", 9),
        ("127.0.0.1",),
        ("::1", 9, 0, 0),
        WSATHREADID.current(),
        lambda *a: None,
        w.MSG_OOB,
        w.MSG_PEEK | w.MSG_PARTIAL,
        0xFFFFFFFF,
        [WSABUF(2, memoryview(bytearray(b"abcd"))[::2])],
        [WSABUF(4, _released())],
        ("127.0.0.1", 70000),
        ("no host", 9),
    ]
)

#: Every SPI entry point and its arity, but WSPAccept: on a socket the fuzz made
#: listen it would (correctly) block for a connection that never comes.
_ENTRY_POINTS = {
    "WSPSocket": 7,
    "WSPBind": 4,
    "WSPListen": 3,
    "WSPConnect": 8,
    "WSPSend": 9,
    "WSPSendTo": 11,
    "WSPRecv": 9,
    "WSPRecvFrom": 11,
    "WSPShutdown": 3,
    "WSPCloseSocket": 2,
    "WSPIoctl": 11,
    "WSPSetSockOpt": 6,
    "WSPGetSockOpt": 6,
    "WSPGetOverlappedResult": 6,
    "WPUQueueApc": 4,
    "WSPGetSockName": 4,
    "WSPGetPeerName": 4,
}


@pytest.mark.timeout(300)
def test_fuzzed_arguments_never_escape_as_exceptions(provider, listener, caplog):  # type: ignore[no-untyped-def]
    # SPEC S0, S9: no Python exception leaves an SPI call, and bad input logs no
    # traceback (it is the caller's error, reported as its S9 code); the loop keeps
    # running; data already accepted is not lost.
    good, peer = connect(provider, listener)
    ev = w.WSACreateEvent()
    ov = WSAOVERLAPPED(hEvent=ev)
    provider.WSPSend(good, [WSABUF(8, b"accepted")], 1, None, 0, ov, None, None, INT())
    victims = [
        make_socket(provider),
        make_socket(provider, w.SOCK_DGRAM),
        connect(provider, listener)[0],
    ]
    codes = {int(m) for m in w.WSAErr}

    @settings(
        max_examples=3000 if SOAK else 400,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(
        name=st.sampled_from(sorted(_ENTRY_POINTS)),
        handle=st.sampled_from([*victims, 0xBAD, -1, None, "s", float(victims[0]), [1]]),
        args=st.lists(_JUNK, min_size=11, max_size=11),
        use_box=st.booleans(),
    )
    def call(name: str, handle: object, args: list[object], use_box: bool) -> None:
        arity = _ENTRY_POINTS[name]
        err = INT(-7)
        values = [handle, *args[: arity - 2], err if use_box else args[-1]]
        if name == "WPUQueueApc":
            values[0] = args[0]
        if name == "WSPSocket":
            values[0] = args[1]
        result = getattr(provider, name)(*values)
        assert isinstance(result, int)  # bool is an int too
        if use_box and err.value != -7:
            assert err.value in codes

    call()
    assert not [r for r in caplog.records if "internal error" in r.getMessage()]
    w.SleepEx(0, True)  # run any APCs the fuzz queued to us
    assert run_in_loop(provider.loop, lambda: "alive") == "alive"
    assert w.WSAWaitForMultipleEvents(1, [ev], False, 10_000, False) == 0 and ov.Internal == 0
    assert recv_exact(peer, 8) == b"accepted"
    # The provider still works end to end after the abuse.
    s2, peer2 = connect(provider, listener)
    sent = DWORD()
    assert provider.WSPSend(s2, [WSABUF(5, b"after")], 1, sent, 0, None, None, None, INT()) == 0
    assert recv_exact(peer2, 5) == b"after"
