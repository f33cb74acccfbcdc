"""A hypothesis state machine over the send path, checked against a model (SPEC S2.4, S5.3, S10).

Rules post sends (random sizes, scatter/gather, all three mechanisms, from the
main thread or from worker threads; bursts of the asyncio face's awaited sends made in
one loop step, which after the first are held complete), stall and release the drain, flush, shut
down, close, reset the peer, end worker threads, and reconnect; teardown closes
the provider.  The model then checks, for every connection:

* every call that returned 0 or WSA_IO_PENDING completed exactly once, with a
  status the model allows, and no failed call ever completed (S2.3, S2.4);
* the peer's byte stream is the posting-order concatenation of the sends, where
  every successful send is present whole and a failed one is absent, whole, or
  (only as the last thing on the stream) cut short (S5.3, S10);
* successful completions of one socket came in posting order (S6.4).

``WSP_SOAK=1`` (``make soak``) runs many more and longer examples.
"""

from __future__ import annotations

import asyncio
import os
import queue
import socket
import struct
import tempfile
import threading
from collections.abc import Callable
from typing import Any

import attrs
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

import wsp_async as w
from wsp_async import DWORD, INT, WSABUF, WSAOVERLAPPED, aio

SOAK = bool(os.environ.get("WSP_SOAK"))

#: What the runs exercised, printed at the end of each test (``make soak`` shows it).
TOTALS: dict[str, int] = {}


def _count(key: str, n: int = 1) -> None:
    TOTALS[key] = TOTALS.get(key, 0) + n


#: Mechanisms that complete through an event object.
EVENTS = ("event", "transmit")
ALLOWED_FAILURES = {w.WSA_OPERATION_ABORTED, w.WSAECONNRESET, w.WSAECONNABORTED}


@attrs.define(eq=False)
class Posted:
    seq: int
    data: bytes
    mechanism: str
    ov: WSAOVERLAPPED
    rc: int
    err: int
    routine_calls: list[tuple[int, int]] = attrs.field(factory=list)
    #: Order in which completions were observed (routines only; events/poll have no order).
    completed_at: int = -1
    #: Aborted by SIO_FLUSH: it was never handed on, so none of its bytes may arrive (S10.3).
    flushed: bool = False
    #: Posted after its socket was associated with a completion port (S13.2).
    via_port: bool = False

    @property
    def started(self) -> bool:
        return self.rc == 0 or self.err == w.WSA_IO_PENDING


@attrs.define(eq=False)
class Connection:
    handle: int
    peer: socket.socket
    reader: threading.Thread
    received: bytearray
    #: Cleared to stop the peer reading (a stalled peer: sends then pend in flight).
    reading: threading.Event
    posted: list[Posted] = attrs.field(factory=list)
    open: bool = True
    #: The peer reset it: what was consumed but not yet read is lost (S4.3).
    reset: bool = False
    #: The completion port it is associated with (S13), if any.
    port: int | None = None


class Worker:
    """A thread that posts on request; ending it exercises S10.4."""

    def __init__(self) -> None:
        self.jobs: queue.SimpleQueue[Callable[[], object] | None] = queue.SimpleQueue()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while (job := self.jobs.get()) is not None:
            job()

    def call(self, fn: Callable[[], object]) -> None:
        done = threading.Event()
        self.jobs.put(lambda: (fn(), done.set()))
        assert done.wait(30)

    def end(self) -> None:
        self.jobs.put(None)
        self.thread.join(30)


class _Box:
    value: object = None


def _raising_tracer(record: object) -> None:
    raise ValueError("a tracer that raises (its file was closed)")


def make_machine(loop_kind: str) -> type[RuleBasedStateMachine]:
    class SendPath(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.provider = w.Provider(use_uvloop=loop_kind == "uvloop")
            self.listener = socket.create_server(("127.0.0.1", 0))
            self.listener.settimeout(10)
            self.connections: list[Connection] = []
            self.workers = [Worker(), Worker()]
            self.main = w.WSATHREADID.current()
            self.seq = 0
            self.completions = 0
            self.stalled = False
            self.hooks_raise = False
            #: The asyncio face's socket object of each connection, and its sends' tasks.
            self.faces: dict[int, aio.OverlappedSocket] = {}
            self.face_tasks: set[asyncio.Task[int]] = set()
            self.faces_idle = threading.Event()  # set while no face send is unanswered
            self.faces_idle.set()
            box: list[w.WSATHREADID] = []
            gone = threading.Thread(target=lambda: box.append(w.WSATHREADID.current()))
            gone.start()
            gone.join(10)
            self.dead = box[0]
            #: The files TransmitFile posts read from (open until the teardown).
            self.files: list[Any] = []
            self.connect()

        # -- plumbing -------------------------------------------------------------
        @property
        def conn(self) -> Connection:
            return self.connections[-1]

        def connect(self) -> None:
            err = INT()
            s = self.provider.WSPSocket(
                w.AF_INET, w.SOCK_STREAM, 0, None, 0, w.WSA_FLAG_OVERLAPPED, err
            )
            assert (
                self.provider.WSPConnect(
                    s, self.listener.getsockname(), None, None, None, None, None, err
                )
                == 0
            )
            peer, _ = self.listener.accept()
            peer.settimeout(30)
            peer.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
            self.provider.socket_of(s).sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 65536)
            received = bytearray()
            reading = threading.Event()
            reading.set()

            def read() -> None:
                try:
                    while reading.wait(60) and (chunk := peer.recv(1 << 16)):
                        received.extend(chunk)
                except OSError:
                    pass

            reader = threading.Thread(target=read, daemon=True)
            reader.start()
            self.stalled = False
            self.connections.append(Connection(s, peer, reader, received, reading))

        def _post(self, sizes: list[int], mechanism: str, conn: Connection | None = None) -> None:
            conn = conn or self.conn
            self.seq += 1
            seq = self.seq
            header = struct.pack("!I", seq)
            body = bytes([seq % 251]) * sum(sizes)
            data = header + body
            cut = [0]
            for n in sizes:
                cut.append(cut[-1] + n)
            pieces = [header] + [body[cut[i] : cut[i + 1]] for i in range(len(sizes))]
            bufs = [WSABUF(len(p), p) for p in pieces]
            ov = WSAOVERLAPPED(hEvent=w.WSACreateEvent() if mechanism == "event" else seq)
            record = Posted(seq, data, mechanism, ov, 0, 0)
            record.via_port = conn.port is not None

            def routine(error: int, n: int, got: WSAOVERLAPPED, flags: int) -> None:
                self.completions += 1
                record.completed_at = self.completions
                record.routine_calls.append((error, n))
                if self.hooks_raise:
                    raise RuntimeError("a routine that raises (S6.7)")

            err = INT()
            if mechanism == "transmit":
                # S14.5: the same bytes as one TransmitFile -- the header as its head
                # buffer, the body from a file -- completing through its event.
                ov.hEvent = w.WSACreateEvent()
                file = tempfile.TemporaryFile()
                file.write(body)
                file.flush()
                self.files.append(file)
                head = w.TRANSMIT_FILE_BUFFERS(header, len(header), None, 0)
                done = self.provider.TransmitFile(conn.handle, file, 0, 0, ov, head, 0)
                record.rc = 0 if done else w.SOCKET_ERROR
                record.err = 0 if done else w.WSAGetLastError()
                conn.posted.append(record)
                _count("transmit files")
                return
            record.rc = self.provider.WSPSend(
                conn.handle,
                bufs,
                len(bufs),
                None,
                0,
                ov,
                routine if mechanism == "routine" else None,
                self.main if mechanism == "routine" else None,
                err,
            )
            record.err = err.value
            conn.posted.append(record)

        # -- rules ------------------------------------------------------------------
        @rule(
            posts=st.lists(
                st.tuples(
                    st.lists(st.sampled_from([0, 1, 100, 5000, 70000]), min_size=0, max_size=3),
                    st.sampled_from(["routine", "event", "poll", "transmit"]),
                    st.sampled_from(["main", "main", "loop", 0, 1]),
                ),
                min_size=1,
                max_size=8,
            )
        )
        def post(self, posts: list[tuple[list[int], str, Any]]) -> None:
            for sizes, mechanism, who in posts:
                if who == "main":
                    self._post(sizes, mechanism)
                elif who == "loop":
                    self._on_loop(
                        lambda sizes=sizes, mechanism=mechanism: self._post(sizes, mechanism)
                    )
                else:
                    self.workers[who].call(
                        lambda sizes=sizes, mechanism=mechanism: self._post(sizes, mechanism)
                    )

        @rule(
            sizes=st.lists(st.sampled_from([0, 1, 64, 5000, 70000]), min_size=1, max_size=12),
            before=st.sampled_from([0, 0, 1, 2]),
            after=st.sampled_from([None, None, "routine", "event", "poll"]),
        )
        def face_burst(self, sizes: list[int], before: int, after: str | None) -> None:
            # Issue 13 (S4.1, S5.3, S2.4): the asyncio face's awaited sends, one task each,
            # all making their send in one loop iteration: the first goes out at once, the
            # ones after it are held complete for the gather write (or take the full path
            # behind a pending send).  Each await returns its length once, or raises once.
            # ``before``: SPI sends posted on the loop thread first, in the same iteration
            # (the second of them waits for the gather write, and the face's must not
            # overtake or join it); ``after``: one posted behind the face's.
            conn = self.conn
            if not conn.open:
                return
            records: list[Posted] = []
            for size in sizes:
                self.seq += 1
                data = struct.pack("!I", self.seq) + bytes([self.seq % 251]) * size
                ov = WSAOVERLAPPED()
                ov.Internal = w.STATUS_PENDING  # until its task has an answer
                records.append(Posted(self.seq, data, "face", ov, 0, 0))
            loop = self.provider.loop
            made = threading.Event()

            def launch() -> None:
                sock = self.faces.get(conn.handle)
                if sock is None:
                    sock = self.faces[conn.handle] = aio.OverlappedSocket(
                        self.provider, conn.handle
                    )
                self.faces_idle.clear()

                async def first(data: bytes) -> int:
                    # In the same iteration as every task's first step, before them.
                    for _ in range(before):
                        self._post([5000], "event", conn)
                    conn.posted.extend(records)  # posting order: after those
                    return await sock.send(data)

                for i, record in enumerate(records):
                    task = loop.create_task(
                        first(record.data) if i == 0 else sock.send(record.data)
                    )
                    self.face_tasks.add(task)
                    task.add_done_callback(lambda t, r=record: self._face_done(r, t))

                def then() -> None:  # after every task's first step: all of them posted
                    if after is not None:
                        self._post([100], after, conn)
                    made.set()

                loop.call_soon(then)

            loop.call_soon_threadsafe(launch)
            assert made.wait(30)
            _count("face sends", len(sizes))

        def _on_loop(self, fn: Callable[[], object]) -> None:
            done = threading.Event()
            self.provider.loop.call_soon_threadsafe(lambda: (fn(), done.set()))
            assert done.wait(30)

        def _face_done(self, record: Posted, task: asyncio.Task[int]) -> None:
            self.face_tasks.discard(task)
            if not self.face_tasks:
                self.faces_idle.set()
            exc = task.exception()
            if exc is None:
                record.ov.InternalHigh = task.result()
                record.ov.Internal = 0
            elif isinstance(exc, w.WSAError) and exc.winerror in ALLOWED_FAILURES:
                record.ov.Internal = w.ntstatus_of(exc.winerror)  # started, then failed
            else:
                # Refused at once (shut down, closed): nothing started (S2.3).
                assert isinstance(exc, w.WSAError), repr(exc)
                record.rc, record.err = w.SOCKET_ERROR, exc.winerror
                record.ov.Internal = 0

        @rule()
        def deliver(self) -> None:
            w.SleepEx(0, True)

        @rule()
        def stall(self) -> None:
            if self.conn.open:
                self.provider.inject(self.conn.handle, delay_drain=float("inf"))
                self.stalled = True

        @rule()
        def release(self) -> None:
            if self.conn.open:
                self.provider.inject(self.conn.handle, delay_drain=None)
                self.stalled = False

        @rule(on=st.booleans())
        def peer_reads(self, on: bool) -> None:
            (self.conn.reading.set if on else self.conn.reading.clear)()

        @rule()
        def flush(self) -> None:
            pending = [p for p in self.conn.posted if p.started and p.ov.pending]
            self.provider.WSPIoctl(
                self.conn.handle, w.SIO_FLUSH, None, 0, None, 0, DWORD(), None, None, None, INT()
            )
            for p in pending:  # the flush completes what it aborts before it returns
                p.flushed = not p.ov.pending and p.ov.Internal == w.STATUS_CANCELLED

        @rule(how=st.sampled_from(["shutdown", "close", "reset"]))
        def end_connection(self, how: str) -> None:
            {
                "shutdown": self.shutdown_and_reconnect,
                "close": self.close_and_reconnect,
                "reset": self.reset_and_reconnect,
            }[how]()

        def shutdown_and_reconnect(self) -> None:
            conn = self.conn
            conn.reading.set()
            if conn.open:
                self.provider.inject(conn.handle, delay_drain=None)
                self.provider.WSPShutdown(conn.handle, w.SD_SEND, INT())
                conn.reader.join(30)  # the FIN arrives after every posted byte
                self.provider.WSPCloseSocket(conn.handle, INT())
                conn.open = False
            self.connect()

        def close_and_reconnect(self) -> None:
            conn = self.conn
            self.provider.WSPCloseSocket(conn.handle, INT())
            conn.reading.set()
            conn.open = False
            self.connect()

        def reset_and_reconnect(self) -> None:
            conn = self.conn
            conn.peer.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            conn.peer.shutdown(socket.SHUT_RD)  # wakes the reader; linger 0 makes close() an RST
            conn.reading.set()
            conn.reader.join(30)
            conn.peer.close()
            conn.reset = True
            self.provider.WSPCloseSocket(conn.handle, INT())
            conn.open = False
            self.connect()

        @rule(on=st.booleans())
        def hooks_raise_or_not(self, on: bool) -> None:
            # S6.7, S12.2: a tracer and routines that raise lose and double nothing.
            self.hooks_raise = on
            self.provider.tracer = _raising_tracer if on else None
            _count("raising hooks on" if on else "raising hooks off")

        @rule(kind=st.sampled_from(["strided", "released", "short", "not a buffer"]))
        def post_bad_buffer(self, kind: str) -> None:
            # S9 (WSAEFAULT), S2.3: nothing starts, the structure is untouched.
            if kind == "strided":
                buf: Any = WSABUF(2, memoryview(bytearray(b"abcd"))[::2])
            elif kind == "released":
                view = memoryview(b"gone")
                view.release()
                buf = WSABUF(4, view)
            elif kind == "short":
                buf = WSABUF(9, b"short")
            else:
                buf = WSABUF(1, 42)
            ov = WSAOVERLAPPED()
            err = INT()
            rc = self.provider.WSPSend(self.conn.handle, [buf], 1, None, 0, ov, None, None, err)
            assert (rc, err.value) == (w.SOCKET_ERROR, w.WSAEFAULT)
            assert not ov.pending and ov.Internal == 0
            _count("bad buffers refused")

        @rule()
        def post_to_a_dead_thread(self) -> None:
            # S6.1, S2.3: a routine target that is gone is refused at post.
            ov = WSAOVERLAPPED()
            err = INT()
            rc = self.provider.WSPSend(
                self.conn.handle, [WSABUF(1, b"d")], 1, None, 0, ov, lambda *a: None, self.dead, err
            )
            assert (rc, err.value) == (w.SOCKET_ERROR, w.WSAEINVAL)
            assert not ov.pending
            _count("dead thread targets refused")

        @rule(count=st.integers(1, 30), index=st.sampled_from([0, 1]))
        def shutdown_racing_a_worker(self, count: int, index: int) -> None:
            # S10.1, S2.3, S2.4: posts racing WSPShutdown either fail at once or
            # complete exactly once before the FIN.
            conn = self.conn
            done = threading.Event()

            def burst() -> None:
                for _ in range(count):
                    self._post([100], "event", conn)
                done.set()

            self.workers[index].jobs.put(burst)
            self.shutdown_and_reconnect()
            assert done.wait(30)
            _count("shutdown races")

        @rule()
        def associate_port(self) -> None:
            # S13.1, S13.2: from now on each started operation queues one packet (and
            # routines are refused at post, nothing started).
            conn = self.conn
            if conn.port is None and conn.open:
                conn.port = w.CreateIoCompletionPort(conn.handle, None, conn.handle, 0)
                assert conn.port
                _count("ports")

        @rule(which=st.sampled_from(["one", "all"]), index=st.integers(0, 50))
        def cancel(self, which: str, index: int) -> None:
            # S15.1, S2.4: what was not handed on completes aborted, exactly once.
            conn = self.conn
            pending = [p for p in conn.posted if p.started and p.ov.pending]
            target = None if which == "all" or not pending else pending[index % len(pending)].ov
            ok = w.CancelIoEx(conn.handle, target)
            assert ok or w.GetLastError() in (w.ERROR_NOT_FOUND, w.ERROR_INVALID_HANDLE)
            _count("cancels")

        @rule(index=st.sampled_from([0, 1]))
        def end_worker(self, index: int) -> None:
            self.workers[index].end()
            self.workers[index] = Worker()

        @invariant()
        def failed_calls_never_complete(self) -> None:
            for conn in self.connections:
                for p in conn.posted:
                    if not p.started:
                        assert p.routine_calls == []
                        assert not (p.mechanism in EVENTS and p.ov.hEvent.signaled)

        # -- the model's verdict ------------------------------------------------------
        def teardown(self) -> None:
            try:
                for worker in self.workers:
                    worker.end()
                for conn in self.connections:
                    conn.reading.set()
                    if conn.open:  # the face's tasks hear of their aborts while the loop runs
                        self.provider.WSPCloseSocket(conn.handle, INT())
                assert self.faces_idle.wait(30), "a face send was never answered"
                self.provider.close()  # everything still pending completes now (S2.4)
                self._check_all()
                everything = [p for c in self.connections for p in c.posted]
                _count("examples")
                _count("connections", len(self.connections))
                _count("posts", len(everything))
                _count(
                    "completed ok", sum(1 for p in everything if p.started and p.ov.Internal == 0)
                )
                _count(
                    "completed with an error",
                    sum(1 for p in everything if p.started and p.ov.Internal),
                )
                _count("refused at post", sum(1 for p in everything if not p.started))
                _count("flushed", sum(1 for p in everything if p.flushed))
                _count("resets", sum(1 for c in self.connections if c.reset))
            finally:
                for conn in self.connections:
                    conn.peer.close()
                self.listener.close()
                for file in self.files:
                    file.close()

        def _check_all(self) -> None:
            everything = [p for c in self.connections for p in c.posted]
            routines = [p for p in everything if p.started and p.mechanism == "routine"]
            assert self.provider.wait_until(lambda: all(not p.ov.pending for p in everything), 30)
            deadline_ok = True
            for _ in range(1000):
                if all(p.routine_calls for p in routines):
                    break
                w.SleepEx(20, True)
            else:
                deadline_ok = False
            assert deadline_ok, "routines never delivered"
            w.SleepEx(0, True)
            for conn in self.connections:
                conn.reading.set()
                conn.reader.join(30)
                self._check_connection(conn)
                if conn.port is not None:
                    self._check_packets(conn)

        def _check_packets(self, conn: Connection) -> None:
            """S13.2: exactly one packet per operation started after the association,
            none for one refused, each with the connection's key and its status."""
            packets: dict[int, int] = {}
            n, key, ov = w.DWORD(), _Box(), _Box()
            while True:
                ok = w.GetQueuedCompletionStatus(conn.port, n, key, ov, 0)
                if ov.value is None:
                    break
                assert key.value == conn.handle
                packets[id(ov.value)] = packets.get(id(ov.value), 0) + 1
                status = ov.value.Internal
                assert ok == (status == 0)
                if not ok:
                    assert w.GetLastError() == w.win32_of(status)
            assert all(count == 1 for count in packets.values()), "a doubled packet"
            for p in conn.posted:
                # An int hEvent with its low bit set (odd poll seqs) asks for no packet.
                wanted = (
                    p.started
                    and p.via_port
                    and not (isinstance(p.ov.hEvent, int) and p.ov.hEvent & 1)
                )
                got = packets.get(id(p.ov), 0)
                if wanted or p.via_port or not p.started or p.mechanism == "routine":
                    assert got == int(wanted), f"send {p.seq}: packets"
                elif isinstance(p.ov.hEvent, int) and p.ov.hEvent & 1:
                    assert got == 0, f"send {p.seq}: packets"
                else:
                    # Posted before the association: its packet goes to the port if it
                    # completed after it (the target is read at completion, as on
                    # Windows), else there is none -- at most one either way.
                    assert got in (0, 1), f"send {p.seq}: packets"
            _count("packets", len(packets))
            w.CloseHandle(conn.port)

        def _check_connection(self, conn: Connection) -> None:
            stream = bytes(conn.received)
            pos = 0
            cut_short = False
            last_ok_completion = 0
            for p in conn.posted:
                if not p.started:
                    continue
                status = w.wsa_of(p.ov.Internal)  # S2.5: Internal is the NTSTATUS
                if p.mechanism == "routine":
                    assert len(p.routine_calls) == 1, (
                        f"send {p.seq}: {len(p.routine_calls)} completions"
                    )
                    assert p.routine_calls[0] == (status, p.ov.InternalHigh)
                if p.mechanism in EVENTS:
                    assert p.ov.hEvent.signaled
                if status == 0:
                    assert p.ov.InternalHigh == len(p.data)
                    if p.mechanism == "routine":
                        assert p.completed_at > last_ok_completion, (
                            "successful completions out of order"
                        )
                        last_ok_completion = p.completed_at
                else:
                    assert status in ALLOWED_FAILURES, f"send {p.seq}: status {status}"
                if p.flushed:
                    assert stream[pos : pos + 4] != p.data[:4], (
                        f"flushed send {p.seq} reached the peer"
                    )
                    continue
                if pos == len(stream) and (conn.reset or status != 0):
                    continue  # never arrived: lost in a reset, or aborted before hand-on
                if cut_short:
                    raise AssertionError(f"send {p.seq} arrived after a torn send")
                if stream[pos : pos + len(p.data)] == p.data:
                    pos += len(p.data)
                    continue
                if status == 0 and not conn.reset:
                    raise AssertionError(f"send {p.seq} missing or out of order")
                if stream[pos : pos + 4] == p.data[:4]:
                    # Torn: handed on in part before an abort, or cut by a reset.
                    assert p.data.startswith(stream[pos:]), (
                        f"send {p.seq}: torn bytes are not its prefix"
                    )
                    pos = len(stream)
                    cut_short = True
            assert pos == len(stream), f"{len(stream) - pos} unexplained bytes on the stream"

    return SendPath


@pytest.mark.timeout(600 if SOAK else 240)
def test_send_path_against_the_model(loop_kind: str) -> None:  # SPEC S2.4, S5.3, S6.4, S10
    TOTALS.clear()
    run_state_machine_as_test(
        make_machine(loop_kind),
        settings=settings(
            max_examples=300 if SOAK else 60,
            stateful_step_count=80 if SOAK else 30,
            deadline=None,
            suppress_health_check=list(HealthCheck),
        ),
    )
    print(f"\n[{loop_kind}] model checked: " + ", ".join(f"{v} {k}" for k, v in TOTALS.items()))
    assert TOTALS.get("posts", 0) > 0 and TOTALS.get("completed ok", 0) > 0
