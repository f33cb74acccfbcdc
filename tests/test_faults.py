"""Fault injection (SPEC S12.1): every S9 row reachable, through the real completion path."""

from __future__ import annotations

import math
import threading

import pytest

import wsp_async as w
from wsp_async import DWORD, INT, WSABUF, WSAOVERLAPPED

from .conftest import Completions, connect, recv_exact
from .test_interop import load_example

#: The error rows of the S9 table.
S9_CODES = [
    w.WSAENOTSOCK,
    w.WSAEFAULT,
    w.WSAENOTCONN,
    w.WSAESHUTDOWN,
    w.WSAEINVAL,
    w.WSAEOPNOTSUPP,
    w.WSAEMSGSIZE,
    w.WSAEWOULDBLOCK,
    w.WSAEACCES,
    w.WSAEINPROGRESS,
    w.WSAENOBUFS,
    w.WSAENETDOWN,
    w.WSAENETRESET,
    w.WSAECONNRESET,
    w.WSAECONNABORTED,
    w.WSA_OPERATION_ABORTED,
]


def post(p, s, data, ov=None, routine=None):  # type: ignore[no-untyped-def]
    err = INT()
    rc = p.WSPSend(s, [WSABUF(len(data), data)], 1, DWORD(), 0, ov, routine, None, err)
    return rc, err.value


def test_nth_send_fails_at_once_and_never_completes(provider, listener):  # type: ignore[no-untyped-def]
    # SPEC S12.1, S2.3
    s, conn = connect(provider, listener)
    provider.inject(s, op="send", error=w.WSAENETRESET, nth=3)
    calls = Completions()
    results = [post(provider, s, bytes([i]), WSAOVERLAPPED(), calls) for i in range(5)]
    assert results[2] == (w.SOCKET_ERROR, w.WSAENETRESET)
    assert all(rc == 0 or err == w.WSA_IO_PENDING for rc, err in results[:2] + results[3:])
    assert calls.wait(4)
    assert w.SleepEx(50, True) == 0
    assert len(calls.calls) == 4 and all(c[0] == 0 for c in calls.calls)
    assert recv_exact(conn, 4) == bytes([0, 1, 3, 4])  # the failed send sent nothing


def test_completion_fault_pends_then_completes_in_posting_order(provider, listener):  # type: ignore[no-untyped-def]
    # SPEC S12.1, S2.2, S6.4
    s, conn = connect(provider, listener)
    provider.inject(s, op="send", error=w.WSAENETDOWN, at="completion", nth=2)
    order: list[tuple[object, int]] = []

    def routine(error: int, n: int, ov: WSAOVERLAPPED, flags: int) -> None:
        order.append((ov.hEvent, error))

    for i in range(4):
        rc, err = post(provider, s, b"x", WSAOVERLAPPED(hEvent=i), routine)
        assert rc == 0 or err == w.WSA_IO_PENDING
    while len(order) < 4:
        assert w.SleepEx(10_000, True) == w.WAIT_IO_COMPLETION
    assert order == [(0, 0), (1, w.WSAENETDOWN), (2, 0), (3, 0)]
    assert recv_exact(conn, 3) == b"xxx"


def test_every_and_provider_wide_faults(provider, listener):  # type: ignore[no-untyped-def]
    # SPEC S12.1
    s1, _ = connect(provider, listener)
    s2, _ = connect(provider, listener)
    provider.inject(None, op="send", error=w.WSAENOBUFS, nth=2, every=True)
    assert post(provider, s1, b"a") == (0, 0)  # the first send counts, and passes
    assert post(provider, s2, b"b") == (w.SOCKET_ERROR, w.WSAENOBUFS)
    assert post(provider, s1, b"c") == (w.SOCKET_ERROR, w.WSAENOBUFS)
    provider.clear_faults()
    assert post(provider, s1, b"d")[0] == 0


def test_receive_faults_both_ways(provider, listener):  # type: ignore[no-untyped-def]
    # SPEC S12.1, S11.1
    s, conn = connect(provider, listener)
    err = INT()
    provider.inject(s, op="recv", error=w.WSAECONNRESET)
    rc = provider.WSPRecv(s, [WSABUF(4, bytearray(4))], 1, DWORD(), DWORD(0), None, None, None, err)
    assert (rc, err.value) == (w.SOCKET_ERROR, w.WSAECONNRESET)
    provider.inject(s, op="recv", error=w.WSAECONNABORTED, at="completion")
    ev = w.WSACreateEvent()
    ov = WSAOVERLAPPED(hEvent=ev)
    provider.WSPRecv(s, [WSABUF(4, bytearray(4))], 1, None, DWORD(0), ov, None, None, err)
    assert w.WSAWaitForMultipleEvents(1, [ev], False, 10_000, False) == 0
    assert ov.Internal == w.STATUS_CONNECTION_ABORTED
    conn.sendall(b"data")  # later receives are not affected
    buf = bytearray(4)
    got = DWORD()
    assert provider.WSPRecv(s, [WSABUF(4, buf)], 1, got, DWORD(0), None, None, None, err) == 0
    assert bytes(buf[: got.value]) == b"data"[: got.value] and got.value > 0


def test_stalled_drain_without_a_second_process(provider, listener):  # type: ignore[no-untyped-def]
    # SPEC S12.1 (delay_drain), S4.1
    s, conn = connect(provider, listener)
    provider.inject(s, delay_drain=math.inf)
    ovs = [WSAOVERLAPPED(hEvent=w.WSACreateEvent()) for _ in range(3)]
    for i, ov in enumerate(ovs):
        post(provider, s, bytes([i]) * 10, ov)
    assert (
        w.WSAWaitForMultipleEvents(3, [ov.hEvent for ov in ovs], False, 100, False)
        == w.WSA_WAIT_TIMEOUT
    )
    assert all(ov.pending for ov in ovs)
    provider.inject(s, delay_drain=0.001)  # slow, then...
    assert w.WSAWaitForMultipleEvents(3, [ov.hEvent for ov in ovs], True, 10_000, False) == 0
    provider.inject(s, delay_drain=None)  # ...back to full speed
    assert recv_exact(conn, 30) == b"\0" * 10 + b"\1" * 10 + b"\2" * 10


def test_bad_fault_arguments_are_refused(provider, listener):  # type: ignore[no-untyped-def]
    # SPEC S12.1
    s, _ = connect(provider, listener)
    with pytest.raises(ValueError):
        provider.inject(s, error=12345)
    with pytest.raises(ValueError):
        provider.inject(s, error=w.WSAENETDOWN, nth=0)
    with pytest.raises(w.WSAError):
        provider.inject(0xDEAD, error=w.WSAENETDOWN)


@pytest.mark.parametrize("at", ["post", "completion"])
@pytest.mark.parametrize("code", S9_CODES, ids=[w.WSAErr(c).name for c in S9_CODES])
def test_echo_client_meets_every_s9_row(provider, code, at):  # type: ignore[no-untyped-def]
    # SPEC S9, S12.1: the examples' echo client, driven through each error row, sees it.
    echo = load_example("echo_routines")
    ready, stop, address = threading.Event(), threading.Event(), []
    # The server has a provider of its own, so that the provider-wide fault below
    # counts the client's sends only.
    server_side = w.Provider(use_uvloop=provider.loop_kind == "uvloop")
    server = threading.Thread(target=echo.echo_server, args=(server_side, ready, address, stop))
    server.start()
    assert ready.wait(10)
    provider.inject(None, op="send", error=code, at=at, nth=2)
    try:
        with pytest.raises(w.WSAError) as info:
            echo.echo_client(provider, address[0], [b"one", b"two", b"three"])
        assert info.value.winerror == code
    finally:
        provider.clear_faults()
        stop.set()
        server.join(10)
        server_side.close()
