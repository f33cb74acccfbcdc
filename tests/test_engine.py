"""The engine's policies with no socket at all: posts go in, decisions come out (SPEC S4-S10)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

import wsp_async as w
from wsp_async._core.engine import SocketEngine, SocketState
from wsp_async._core.operation import Operation, OpKind, PendingCount
from wsp_async._core.recvqueue import DatagramReceiver, StreamReceiver


def engine(stream: bool = True) -> SocketEngine:
    e = SocketEngine(stream=stream, family=w.AF_INET, overlapped=True, pending=PendingCount(4, 100))
    e.state = SocketState.CONNECTED
    return e


def send(n: int, *, fault: int = 0, urgent: bool = False, issuer: object = None) -> Operation:
    op = Operation(OpKind.SEND, [b"x" * n], n, issuer=issuer)  # type: ignore[arg-type]
    op.fault, op.urgent = fault, urgent
    return op


def recv(n: int, flags: int = 0) -> Operation:
    return Operation(OpKind.RECV, [bytearray(n)], n, flags=flags)


def test_send_rows_follow_the_s9_table_order() -> None:
    # SPEC S9: shutdown before the sticky error before "not connected"; flags first.
    e = engine()
    e.send_shut, e.error, e.state = True, w.WSAECONNRESET, SocketState.CREATED
    for expected in (w.WSAESHUTDOWN, w.WSAECONNRESET, w.WSAENOTCONN):
        try:
            e.check_send(0, None, 1)
        except w.WSAError as exc:
            assert exc.winerror == expected
        else:
            raise AssertionError("no row applied")
        e.send_shut, e.error = False, e.error if expected == w.WSAESHUTDOWN else 0
    for flags in (0x10000, w.MSG_PARTIAL):
        try:
            engine().check_send(flags, None, 1)
        except w.WSAError as exc:
            assert exc.winerror == w.WSAEOPNOTSUPP
    d = engine(stream=False)
    for flags, to, total, code in [
        (w.MSG_OOB, ("127.0.0.1", 9), 1, w.WSAEOPNOTSUPP),
        (0, ("127.0.0.1", 9), 65508, w.WSAEMSGSIZE),
    ]:
        try:
            d.check_send(flags, to, total)
        except w.WSAError as exc:
            assert exc.winerror == code
        else:
            raise AssertionError("no row applied")


def test_first_send_of_an_iteration_goes_out_and_the_ones_after_it_wait() -> None:
    # SPEC S2.1, S5.3: coalescing never reorders, it only delays the sends after the first.
    e = engine()
    assert e.post_send(send(10))
    assert e.begin_iteration() and not e.begin_iteration()
    assert not e.post_send(send(10))
    assert not e.post_send(send(1 << 16))  # a large one too: it joins the gather write
    assert e.post_send(send(10), coalesce=False)  # the asyncio face's awaits never wait
    assert e.end_iteration()


def test_an_injected_fault_waits_for_the_sends_before_it() -> None:
    # SPEC S12.1, S6.4: it completes at the head of the queue, in posting order.
    e = engine()
    first, faulty = send(10), send(5, fault=w.WSAENETRESET)
    e.post_send(first)
    e.post_send(faulty)
    failed, batch = e.next_hand_on()
    assert failed is None and batch == [first]
    assert e.handed(batch, 10) == [first]  # within capacity: consumed
    failed, batch = e.next_hand_on()
    assert failed is faulty and batch == []


def test_an_urgent_send_waits_for_an_empty_transport() -> None:
    # SPEC S5.3: OOB bypasses the transport's buffer, so it goes only when that is empty.
    e = engine()
    e.capacity = e.sendq.capacity = 4
    plain, urgent = send(10), send(1, urgent=True)
    e.post_send(plain)
    e.post_send(urgent)
    assert e.next_hand_on() == (None, [plain])
    e.handed([plain], 10)
    assert e.wants_empty_transport
    assert e.observe(0) == [plain]
    assert e.next_hand_on() == (None, [urgent])


ops = st.lists(st.tuples(st.integers(1, 5000), st.booleans(), st.sampled_from("ab")), max_size=30)


@settings(max_examples=200, deadline=None)
@given(ops, st.integers(0, 30), st.sampled_from(["close", "flush", "reset", "thread", "cancel"]))
def test_each_abort_takes_exactly_what_its_rule_names(posts, handed_on, abort) -> None:  # type: ignore[no-untyped-def]
    # SPEC S10.2-S10.5, S2.4: every operation comes out exactly once, from the
    # abort or from the queues' later completion; which ones the abort takes
    # follows its rule.
    e = engine()
    e.capacity = e.sendq.capacity = 1 << 30
    threads = {"a": object(), "b": object()}
    sends = [send(n, issuer=threads[t]) for n, _, t in posts]
    receives = [recv(4) for n, is_recv, _ in posts if is_recv]
    for op in sends:
        e.post_send(op)
    for op in receives:
        e.post_receive(op)
    handed: list[Operation] = []
    while len(handed) < handed_on:
        _, batch = e.next_hand_on()
        if not batch:
            break
        e.handed(batch, sum(op.nbytes for op in batch) + (1 << 30))  # all held beyond capacity
        handed.extend(batch)
    waiting = [op for op in sends if op not in handed]
    if abort == "close":
        taken, kept = e.close()
        expected = handed + waiting + receives
        assert kept == []  # nothing here was complete before it was handed on
    elif abort == "flush":
        taken, expected = e.flush(), waiting
    elif abort == "reset":
        sends_taken, status, done = e.lost(w.WSAECONNRESET)
        taken, expected = sends_taken + [op for op, *_ in done], handed + waiting + receives
        assert status == w.WSAECONNRESET and e.error == w.WSAECONNRESET
    elif abort == "thread":
        gone = threads["a"]
        taken = e.cancel_issued_by(gone)
        expected = [op for op in waiting if op.issuer is gone]
    else:
        target = waiting[0] if waiting else (handed[0] if handed else None)
        taken = e.cancel(target) if target is not None else []  # type: ignore[arg-type]
        expected = [target] if waiting else []
    assert taken == expected
    assert len(set(map(id, taken))) == len(taken)
    left = list(e.sendq.inflight) + list(e.sendq.waiting) + list(e.receiver.waiting)  # type: ignore[union-attr]
    assert not {id(op) for op in left} & {id(op) for op in taken}
    assert len(left) + len(taken) == len(sends) + len(receives)


def test_close_keeps_the_bytes_of_sends_already_complete() -> None:
    # SPEC S10.2, S4.1: a send copied into the emulated send buffer completed at once;
    # a graceful close still sends its bytes, and aborts only what is pending.
    e = engine()
    pending, done = send(10), send(5)
    done.status = 0
    e.post_send(pending)
    e.post_send(done)
    aborted, kept = e.close()
    assert aborted == [pending] and kept == [done]
    assert e.flush() == []


def test_flush_leaves_sends_already_complete() -> None:
    # SPEC S10.3
    e = engine()
    pending, done = send(10), send(5)
    done.status = 0
    e.post_send(done)
    e.post_send(pending)
    assert e.flush() == [pending]
    assert list(e.sendq.waiting) == [done]


def test_pending_count_enforces_both_limits() -> None:
    # SPEC S9 (WSAEWOULDBLOCK, WSAENOBUFS)
    count = PendingCount(2, 10)
    a, b = send(6), send(6)
    count.add(a)
    try:
        count.add(b)
    except w.WSAError as exc:
        assert exc.winerror == w.WSAENOBUFS
    count.add(send(1))
    try:
        count.add(send(1))
    except w.WSAError as exc:
        assert exc.winerror == w.WSAEWOULDBLOCK
    count.remove(a)
    count.remove(a)  # once only
    assert (count.count, count.bytes) == (1, 1)


# --- the receive queues ---------------------------------------------------------------------


def test_stream_receives_fill_in_posting_order_and_see_the_end() -> None:
    # SPEC S11.1
    r: StreamReceiver[Operation] = StreamReceiver()
    first, second, third = recv(3), recv(10), recv(4)
    for op in (first, second, third):
        r.post(op)
    done = r.feed(b"abcdefgh")
    assert [(op, status, n) for op, status, n in done] == [(first, 0, 3), (second, 0, 5)]
    assert bytes(first.buffers[0]) == b"abc" and bytes(second.buffers[0][:5]) == b"defgh"
    assert r.end() == [(third, 0, 0)]


def test_peek_leaves_the_data_for_the_next_receive() -> None:
    # SPEC S11.1 (MSG_PEEK)
    r: StreamReceiver[Operation] = StreamReceiver()
    r.feed(b"hello")
    peek = recv(5, w.MSG_PEEK)
    assert r.take(peek) == (0, 5) and r.available() == 5
    take = recv(5)
    assert r.take(take) == (0, 5) and r.available() == 0


def test_a_truncated_datagram_is_partial_and_msgsize() -> None:
    # SPEC S11.2: the rest of the datagram is discarded.
    r: DatagramReceiver[Operation] = DatagramReceiver()
    small = recv(4)
    r.post(small)
    assert r.feed(b"too long", ("127.0.0.1", 9)) == [(small, w.WSAEMSGSIZE, 4)]
    assert small.out_flags & w.MSG_PARTIAL and small.source == ("127.0.0.1", 9)
    assert r.available() == 0


class ListParts:
    """A part source over a list of pieces (the engine never reads files itself)."""

    def __init__(self, pieces: list[bytes], error: int = 0) -> None:
        self.pieces = list(pieces)
        self.sent = 0
        self.error = 0
        self._error = error

    def take(self) -> tuple[bytes, bool]:
        data = self.pieces.pop(0)
        self.sent += len(data)
        if not self.pieces:
            self.error = self._error
        return data, not self.pieces


def transmit(pieces: list[bytes], error: int = 0) -> Operation:
    op = Operation(OpKind.SEND, [], sum(map(len, pieces)))
    op.parts = ListParts(pieces, error)
    return op


def written(batch: list[object]) -> bytes:
    return b"".join(buf for op in batch for buf in op.buffers)  # type: ignore[attr-defined]


def test_a_transmit_file_goes_in_pieces_as_room_appears_and_nothing_lands_inside() -> None:
    # SPEC S14.5, S4.4: pieces are taken only while the buffer has room; a send posted
    # after it goes after its last piece; it completes when that piece is consumed.
    e = engine()
    e.capacity = e.sendq.capacity = 100
    first, tf, last = send(10), transmit([b"h" * 5, b"f" * 80, b"f" * 80, b"t" * 5]), send(3)
    for op in (first, tf, last):
        e.post_send(op, coalesce=False)
    _none, batch = e.next_hand_on()
    assert written(batch) == b"x" * 10 + b"h" * 5 + b"f" * 80 + b"f" * 80  # one overshoot
    assert e.handed(batch, 175) == [first]  # 175 - 100 over: the first 100 bytes consumed
    assert e.next_hand_on() == (None, [])  # no room: nothing read
    assert e.observe(0) == []  # its pieces are consumed, but not its last one
    _none, batch = e.next_hand_on()
    assert written(batch) == b"t" * 5 + b"x" * 3
    assert e.handed(batch, 0) == [tf, last]
    assert tf.direct == 0 and e.sendq.outstanding() == []


def test_a_transmit_file_with_no_room_left_waits_and_an_abort_takes_it_once() -> None:
    # SPEC S14.5 with S10.2: handed on in part, it is still pending; close takes it once,
    # and its pieces already written stand for nothing.
    e = engine()
    e.capacity = e.sendq.capacity = 10
    tf = transmit([b"a" * 20, b"b" * 20, b"c"])
    e.post_send(tf, coalesce=False)
    _none, batch = e.next_hand_on()
    assert written(batch) == b"a" * 20
    assert e.handed(batch, 20) == []
    assert e.sendq.outstanding() == [tf]
    assert e.has_pending(lambda op: op is tf)
    aborted, kept = e.close()
    assert aborted == [tf] and kept == []


def test_a_transmit_file_whose_read_failed_carries_its_code() -> None:
    # SPEC S14.5, S2.4: the source's error rides on the operation to its completion.
    e = engine()
    tf = transmit([b"abc", b""], error=w.WSAEFAULT)
    e.post_send(tf, coalesce=False)
    _none, batch = e.next_hand_on()
    assert e.handed(batch, 0) == [tf] and tf.fault == w.WSAEFAULT


def test_a_gather_batch_is_plain_sends_and_a_transmit_file_is_never_offered_whole() -> None:
    # SPEC S14.5, S5.3, S4.4: with the transport empty, the sends waiting are offered to
    # the kernel in one batch past SO_SNDBUF; the kernel's part is consumed, the sends
    # it did not reach wait again first.  A TransmitFile ends such a batch, and a batch
    # of its pieces is never offered whole: a piece handed on never comes back.
    e = engine()
    e.capacity = e.sendq.capacity = 100
    a, b, c, tf = send(80), send(80), send(80), transmit([b"h" * 5, b"f" * 80, b"t" * 5])
    for op in (a, b, c, tf):
        e.post_send(op, coalesce=False)
    _none, batch = e.next_hand_on(gather=True)
    assert batch == [a, b, c] and e.sendq.offer  # 240 bytes: past the capacity
    reached, rest = e.sendq.reached(batch, 100)  # the kernel took a and 20 bytes of b
    assert reached == [a, b] and b"".join(rest) == b"x" * 60
    assert list(e.sendq.waiting) == [c, tf]
    assert e.handed(reached, 60) == [a, b]  # b's rest is held within the capacity
    _none, batch = e.next_hand_on(gather=False)  # the transport holds b's rest
    assert batch == [c] and not e.sendq.offer
    assert e.handed(batch, 0) == [c]
    _none, batch = e.next_hand_on(gather=True)
    assert written(batch) == b"h" * 5 + b"f" * 80 + b"t" * 5 and not e.sendq.offer
    assert e.handed(batch, 0) == [tf] and not e.sendq.waiting


def test_the_life_cycle_is_one_table_and_a_refused_event_changes_nothing() -> None:
    # SPEC S9 (state rows), S2.3 (a refused call starts nothing); sock.c:
    # test_connecting_socket (a second connect is WSAEALREADY, ConnectEx's WSAEINVAL).
    from wsp_async._core.rules import Event

    e = SocketEngine(stream=True, family=w.AF_INET, overlapped=True, pending=PendingCount(4, 100))
    walk = [
        (Event.LISTEN, w.WSAEINVAL),  # not bound
        (Event.CONNECT_EX, w.WSAEINVAL),  # ConnectEx wants a bound socket
        (Event.BIND, SocketState.BOUND),
        (Event.BIND, w.WSAEINVAL),  # bound already
        (Event.CONNECT_EX, SocketState.CONNECTING),
        (Event.CONNECT, w.WSAEALREADY),
        (Event.CONNECT_EX, w.WSAEINVAL),
        (Event.LISTEN, w.WSAEINVAL),
        (Event.GAVE_UP_BOUND, SocketState.BOUND),
        (Event.CONNECT, SocketState.CONNECTING),
        (Event.CONNECTED, SocketState.CONNECTED),
        (Event.CONNECT, w.WSAEISCONN),
        (Event.CONNECT_EX, w.WSAEISCONN),
        (Event.ACCEPTED, w.WSAEINVAL),
    ]
    for event, expected in walk:
        before = e.state
        try:
            e.move(event)
        except w.WSAError as exc:
            assert exc.winerror == expected, event
            assert e.state == before, event  # nothing changed
        else:
            assert e.state == expected, event
    assert not e.send_ready or e.state == SocketState.CONNECTED
    assert e.send_ready  # connected, open: the admission may complete sends at once


@settings(max_examples=400, deadline=None)
@given(
    stream=st.booleans(),
    state=st.sampled_from(list(SocketState)),
    recv_shut=st.booleans(),
    recv_error=st.sampled_from([0, 0, w.WSAECONNRESET]),
    arrived=st.booleans(),
    flags=st.sampled_from([0, 0, w.MSG_PEEK, w.MSG_OOB, w.MSG_PARTIAL, 0x4000]),
    buffers=st.integers(0, 3),
)
def test_a_receive_s9_shortcut_answers_as_the_rows_do(  # type: ignore[no-untyped-def]
    stream, state, recv_shut, recv_error, arrived, flags, buffers
) -> None:
    # SPEC S9, S11.1: check_recv reads the engine at once when no row can apply (issue
    # 26); whatever the state, it must raise exactly what walking RECV_ROWS raises.
    from wsp_async._core.rules import RECV_ROWS

    e = SocketEngine(
        stream=stream, family=w.AF_INET, overlapped=True, pending=PendingCount(8, None)
    )
    e.state = state
    e.recv_shut = recv_shut
    e.recv_error = recv_error
    if arrived and stream:
        e.arrived(b"data", None)

    def outcome(check) -> int:  # type: ignore[no-untyped-def]
        try:
            check()
        except w.WSAError as exc:
            return exc.winerror
        return 0

    assert outcome(lambda: e.check_recv(flags, buffers)) == outcome(
        lambda: e.check(RECV_ROWS, flags, None, buffers)
    )
