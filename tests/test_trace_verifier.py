"""Tracing (SPEC S12.2) and the verifier (SPEC S12.3)."""

from __future__ import annotations

import asyncio
import math
import subprocess
import sys
import threading
import time

import pytest

import wsp_async as w
from wsp_async import DWORD, INT, WSABUF, WSAOVERLAPPED
from wsp_async.trace import JsonLinesTracer, TraceRecord, format_timeline, read_trace
from wsp_async.verifier import VerifierWarning

from .conftest import Completions, connect, recv_exact, run_script


def test_one_record_per_post_and_completion(loop_kind, listener):  # type: ignore[no-untyped-def]
    # SPEC S12.2
    records: list[TraceRecord] = []
    with w.Provider(use_uvloop=loop_kind == "uvloop", tracer=records.append) as p:
        s, conn = connect(p, listener)
        calls = Completions()
        ev = w.WSACreateEvent()
        p.WSPSend(s, [WSABUF(3, b"abc")], 1, None, 0, WSAOVERLAPPED(), calls, None, INT())
        p.WSPSend(s, [WSABUF(2, b"de")], 1, None, 0, WSAOVERLAPPED(hEvent=ev), None, None, INT())
        assert calls.wait(1)
        assert w.WSAWaitForMultipleEvents(1, [ev], False, 10_000, False) == 0
        assert recv_exact(conn, 5) == b"abcde"
    posts = [r for r in records if r.event == "post"]
    completions = [r for r in records if r.event == "complete"]
    assert [(r.mechanism, r.nbytes) for r in posts] == [("routine", 3), ("event", 2)]
    assert sorted((r.mechanism, r.nbytes, r.status) for r in completions) == [
        ("event", 2, 0),
        ("routine", 3, 0),
    ]
    me = threading.get_ident()
    assert all(r.issuing_thread == me for r in records)
    routine_done = next(r for r in completions if r.mechanism == "routine")
    assert routine_done.delivering_thread == me
    assert all(r.socket == s for r in records)
    table = format_timeline(records)
    assert table.count("\n") == 4 and "routine" in table and "event" in table


def test_json_lines_trace_and_timeline_tool(provider, listener, tmp_path):  # type: ignore[no-untyped-def]
    # SPEC S12.2
    path = str(tmp_path / "trace.jsonl")
    tracer = JsonLinesTracer(path)
    provider.tracer = tracer
    s, _conn = connect(provider, listener)
    calls = Completions()
    for _ in range(3):
        provider.WSPSend(s, [WSABUF(1, b"t")], 1, None, 0, WSAOVERLAPPED(), calls, None, INT())
    assert calls.wait(3)
    provider.tracer = None
    tracer.close()
    records = read_trace(path)
    assert [r.event for r in records].count("post") == 3
    assert [r.event for r in records].count("complete") == 3
    out = subprocess.run(
        [sys.executable, "-m", "wsp_async", "timeline", path],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0 and out.stdout.count("complete") == 3


def test_verifier_reports_a_buffer_changed_while_owned(loop_kind, listener):  # type: ignore[no-untyped-def]
    # SPEC S12.3, S5.2
    records: list[TraceRecord] = []
    with w.Provider(use_uvloop=loop_kind == "uvloop", debug=True, tracer=records.append) as p:
        s, conn = connect(p, listener)
        p.inject(s, delay_drain=math.inf)
        data = bytearray(b"original")
        ev = w.WSACreateEvent()
        p.WSPSend(
            s, [WSABUF(len(data), data)], 1, None, 0, WSAOVERLAPPED(hEvent=ev), None, None, INT()
        )
        data[0:1] = b"O"  # the caller breaks S5.2
        with pytest.warns(VerifierWarning, match="modified while the provider owned it"):
            p.inject(s, delay_drain=None)
        assert w.WSAWaitForMultipleEvents(1, [ev], False, 10_000, False) == 0
        assert recv_exact(conn, 8) == b"Original"
    assert any(r.event == "verifier" and "modified" in r.message for r in records)


def test_verifier_reports_a_pending_overlapped_posted_again(provider, listener):  # type: ignore[no-untyped-def]
    # SPEC S12.3, S3.4
    provider.debug = True
    s, _ = connect(provider, listener)
    provider.inject(s, delay_drain=math.inf)
    ov = WSAOVERLAPPED()
    provider.WSPSend(s, [WSABUF(1, b"1")], 1, None, 0, ov, None, None, INT())
    err = INT()
    with pytest.warns(VerifierWarning, match="still pending was posted again"):
        rc = provider.WSPSend(s, [WSABUF(1, b"2")], 1, None, 0, ov, None, None, err)
    assert (rc, err.value) == (w.SOCKET_ERROR, w.WSAEINVAL)
    provider.inject(s, delay_drain=None)


def test_verifier_reports_fwait_on_an_operation_with_a_routine(provider, listener):  # type: ignore[no-untyped-def]
    # SPEC S12.3, S7.2
    provider.debug = True
    s, _ = connect(provider, listener)
    provider.inject(s, delay_drain=math.inf)
    ov = WSAOVERLAPPED()
    provider.WSPSend(s, [WSABUF(1, b"r")], 1, None, 0, ov, lambda *a: None, None, INT())
    threading.Timer(0.05, provider.inject, (s,), {"delay_drain": None}).start()
    with pytest.warns(
        VerifierWarning, match=r"fWait=True\) on an operation that has a completion routine"
    ):
        assert provider.WSPGetOverlappedResult(s, ov, DWORD(), True, DWORD(), INT())


async def test_verifier_reports_a_routine_that_blocks_its_loop() -> None:
    # SPEC S12.3
    srv = __import__("socket").create_server(("127.0.0.1", 0))
    p = w.Provider(loop=asyncio.get_running_loop(), debug=True, slow_routine=0.01)
    err = INT()
    s = p.WSPSocket(w.AF_INET, w.SOCK_STREAM, 0, None, 0, w.WSA_FLAG_OVERLAPPED, err)
    await p.connect_async(s, srv.getsockname())
    done = asyncio.get_running_loop().create_future()

    def slow(*args: object) -> None:
        time.sleep(0.03)  # the misbehaviour under test: blocking the loop
        done.set_result(None)

    with pytest.warns(VerifierWarning, match="blocked its event loop"):
        p.WSPSend(s, [WSABUF(1, b"s")], 1, None, 0, WSAOVERLAPPED(), slow, None, err)
        await asyncio.wait_for(done, 10)
    p.close()
    srv.close()


def test_no_tracer_means_no_tracing_code_runs() -> None:
    # SPEC S12.2: off costs one ``is not None`` test per post and completion: no
    # record is ever built (the record builders are booby-trapped here).
    script = """
import socket, sys, wsp_async as w
import wsp_async._completion.door as door

def boom(*args):
    raise SystemExit("a trace record was built with no tracer")

door.post_record = door.completion_record = boom
srv = socket.create_server(("127.0.0.1", 0))
with w.Provider() as p:
    err = w.INT()
    s = p.WSPSocket(w.AF_INET, w.SOCK_STREAM, 0, None, 0, w.WSA_FLAG_OVERLAPPED, err)
    p.WSPConnect(s, srv.getsockname(), None, None, None, None, None, err)
    ov = w.WSAOVERLAPPED(hEvent=w.WSACreateEvent())
    p.WSPSend(s, [w.WSABUF(1, b"x")], 1, None, 0, ov, None, None, err)
    w.WSAWaitForMultipleEvents(1, [ov.hEvent], False, 10000, False)
    assert ov.Internal == 0
print("untraced")
"""
    assert run_script(script).stdout.strip() == "untraced"
