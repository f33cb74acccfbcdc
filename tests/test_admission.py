"""The admission decision with no socket at all: posts go in, routes come out.

``wsp_async._core.admission`` decides, for every stream send, whether it completes inside
its call and by which way.  Here it is driven the way the adapter drives it -- the loop
thread's posts, other threads' posts, the pump handing the queue to a transport, the
kernel draining it -- against a model kept by this test alone: the sends posted, in
order, and which of them are complete.  The properties are the contract's, not the
implementation's: nothing completes ahead of an earlier send still pending (SPEC S5.3,
S6.4), and what completed at once never exceeds the send buffer (S4.1).
"""

from __future__ import annotations

import collections
from typing import Any

from hypothesis import event, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

import wsp_async as w
from wsp_async._core.admission import (
    DIRECT,
    HOLD,
    MEASURE,
    QUEUE,
    STAGE,
    THROUGH,
    WRITE,
    Route,
    admit_here,
    admit_nonblocking,
    admit_other,
    urgent_goes_now,
)
from wsp_async._core.engine import SocketEngine, SocketState
from wsp_async._core.operation import Operation, OpKind, PendingCount, held_send


class Crossing:
    """What the decision reads of a hand-off, kept by hand (no lock, no loop)."""

    def __init__(self) -> None:
        self.incoming: collections.deque[Any] = collections.deque()
        self.front: Any = None
        self.sends = 0
        self.staged = 0
        self.closed = False
        self.foreign_writes = False

    @property
    def busy(self) -> bool:
        return bool(self.incoming) or self.front is not None or self.closed


def engine(capacity: int = 100) -> SocketEngine:
    e = SocketEngine(stream=True, family=w.AF_INET, overlapped=True, pending=PendingCount(64, None))
    e.state = SocketState.CONNECTED
    e.capacity = capacity
    return e


def test_a_plain_send_on_an_idle_socket_goes_out_at_once() -> None:
    # SPEC S2.1, S4.1: it fits, nothing before it: complete inside the call.
    e, c = engine(), Crossing()
    assert admit_here(e, c, 10, True, False, True) == WRITE
    assert admit_here(e, c, 10, True, True, True) == WRITE
    assert admit_other(e, c, 10, True, False) == STAGE


def test_what_is_not_plain_or_not_open_always_queues() -> None:
    # SPEC S12.1 (faults, slowed drain), S9 (shut, error), S10.2 (closed): the queue's rules.
    for spoil in ("plain", "shut", "error", "drain", "closed", "state"):
        e, c = engine(), Crossing()
        plain = spoil != "plain"
        if spoil == "shut":
            e.send_shut = True
        elif spoil == "error":
            e.error = w.WSAECONNRESET
        elif spoil == "drain":
            e.drain_delay = 0.0
        elif spoil == "closed":
            c.closed = True
        elif spoil == "state":
            e.state = SocketState.BOUND
        assert admit_here(e, c, 10, plain, True, False) == QUEUE, spoil
        assert admit_other(e, c, 10, plain, False) == QUEUE, spoil


def test_a_send_after_the_first_of_an_iteration_is_held_or_queued() -> None:
    # SPEC S5.3: coalescing only delays; the face holds (complete, S4.1), the SPI queues.
    e, c = engine(), Crossing()
    e.begin_iteration()
    assert admit_here(e, c, 10, True, True, True) == HOLD
    assert admit_here(e, c, 10, True, False, True) == QUEUE
    assert admit_here(e, c, 10, True, False, False) == WRITE  # the face's awaits never gather
    e.sendq.post(held_send([b"s" * 10], 10))  # another thread's staged copy, taken in
    c.foreign_writes = True
    assert admit_here(e, c, 10, True, True, True) == HOLD  # one kind of held bytes
    assert admit_other(e, c, 500, True, False) == QUEUE  # held bytes keep a direct write out
    e.sendq.post(Operation(OpKind.SEND, [b"p"], 1))
    assert admit_here(e, c, 10, True, True, True) == QUEUE  # a pending send is before it


def test_a_face_send_of_half_the_buffer_or_more_is_written_not_held() -> None:
    # SPEC S4.1, S5.3: a held send of half the emulated buffer or more would leave no room
    # for the next one, which would then wait for the end of the iteration; with nothing
    # before it, it goes out at once instead, as asyncio streams write each message.
    e, c = engine(100), Crossing()
    e.begin_iteration()
    assert admit_here(e, c, 49, True, True, True) == HOLD
    assert admit_here(e, c, 50, True, True, True) == WRITE
    assert admit_here(e, c, 50, True, False, True) == QUEUE  # the SPI's coalescing unchanged
    e.sendq.hold(b"h" * 10, 10, held_send)
    assert admit_here(e, c, 50, True, True, True) == HOLD  # joins what is held: never before it


def test_the_face_never_joins_the_rest_of_an_urgent_send() -> None:
    # SPEC S5.3 (MSG_OOB): the rest of an urgent send held at the head keeps its last byte
    # the urgent one -- a face send behind it queues instead of joining it.
    e, c = engine(100), Crossing()
    rest = held_send([b"!"], 1)
    rest.urgent = True
    e.sendq.hold_front(rest)
    assert admit_here(e, c, 10, True, True, True) == QUEUE
    assert admit_here(e, c, 10, True, True, False) == QUEUE


def test_no_room_asks_the_transport_once_and_a_fresh_reading_decides() -> None:
    # SPEC S4.1: the last reading is an upper bound; a fresh one may show room.
    e, c = engine(100), Crossing()
    e.sendq.wrote(95)
    assert admit_here(e, c, 10, True, True, False) == MEASURE
    e.sendq.report(0)  # the kernel took it all meanwhile
    assert admit_here(e, c, 10, True, True, False) == WRITE
    e.sendq.report(95)
    assert admit_here(e, c, 10, True, True, False) == MEASURE  # the caller then queues


def test_a_send_in_flight_is_never_overtaken_even_when_the_transport_drained() -> None:
    # SPEC S6.4: handed on but not consumed is still pending; a fresh reading showing
    # room does not let a later send complete before it.
    e, c = engine(100), Crossing()
    big = Operation(OpKind.SEND, [b"x" * 150], 150)
    e.post_send(big, coalesce=False)
    assert e.handed(e.next_hand_on()[1], 150) == []  # 50 beyond SO_SNDBUF: in flight
    e.sendq.report(50)  # the kernel took 100 meanwhile
    assert admit_here(e, c, 10, True, True, False) == QUEUE
    assert admit_other(e, c, 10, True, False) == QUEUE


def test_another_threads_large_send_goes_direct_only_when_nothing_is_buffered() -> None:
    # SPEC S2.1, S5.3: straight to the kernel only when nothing here could go before it.
    e, c = engine(100), Crossing()
    assert (
        admit_other(e, c, 500, True, False) == QUEUE
    )  # no other thread's send reached the loop yet
    c.foreign_writes = True
    assert admit_other(e, c, 500, True, False) == DIRECT
    e.sendq.wrote(1)
    assert admit_other(e, c, 500, True, False) == QUEUE
    e.sendq.report(0)
    c.staged = 1
    assert admit_other(e, c, 500, True, False) == QUEUE
    assert admit_other(e, c, 99, True, False) == STAGE
    assert admit_other(e, c, 100, True, False) == QUEUE  # staged bytes take room too
    c.staged = 0
    assert admit_other(e, c, 10, True, False) == STAGE  # overlapped: returns without a write
    assert admit_other(e, c, 10, True, True) == DIRECT  # blocking: its thread writes it


def test_a_counted_send_not_yet_queued_keeps_its_place() -> None:
    # SPEC S6.4: a send counted on another thread, not yet queued, is still earlier.
    e, c = engine(), Crossing()
    op = Operation(OpKind.SEND, [b"x"], 1)
    e.pending.add(op)
    assert admit_other(e, c, 10, True, False) == QUEUE
    e.pending.remove(op)
    assert admit_other(e, c, 10, True, False) == STAGE


def test_a_non_blocking_send_takes_all_while_the_buffer_is_not_full() -> None:
    # SPEC S8.1: all or nothing; room means the buffer is not over its capacity.
    e, c = engine(100), Crossing()
    e.sendq.wrote(100)
    assert admit_nonblocking(e, c)  # full, not over: a non-blocking send still goes
    e.sendq.wrote(1)
    assert not admit_nonblocking(e, c)
    e.sendq.report(0)
    e.post_send(Operation(OpKind.SEND, [b"x"], 1))
    assert not admit_nonblocking(e, c)


def test_an_urgent_send_goes_at_once_only_on_an_empty_buffer() -> None:
    # SPEC S7.3 (the loop thread never waits), S4.1: MSG_OOB goes alone, once the
    # transport holds nothing; anything in the emulated buffer or queued makes it wait.
    e, c = engine(100), Crossing()
    assert urgent_goes_now(e, c, 10)
    assert not urgent_goes_now(e, c, 101)  # larger than SO_SNDBUF: not at once
    e.sendq.wrote(1)
    assert not urgent_goes_now(e, c, 10)  # bytes still in the transport
    e.sendq.report(0)
    e.post_send(Operation(OpKind.SEND, [b"x"], 1))
    assert not urgent_goes_now(e, c, 10)


class AdmissionModel(RuleBasedStateMachine):
    """The adapter's moves, and a ledger of sends kept apart from the engine."""

    def __init__(self) -> None:
        super().__init__()
        self.e = engine(100)
        self.c = Crossing()
        #: The transport's buffer, as the model sees it (the engine only hears readings).
        self.transport = 0
        #: Every send posted, in posting order: [size, complete].
        self.ledger: list[list[Any]] = []
        self.ops: dict[int, list[Any]] = {}

    # -- what the test checks every time a send completes inside its call
    def _complete_at_once(self, route: Route, size: int) -> None:
        pending_before = [entry for entry in self.ledger if not entry[1]]
        assert not pending_before, f"{route.name} overtook an earlier pending send"  # S6.4
        self.ledger.append([size, True])

    def _queue(self, size: int, op: Operation) -> None:
        entry = [size, False]
        self.ledger.append(entry)
        self.ops[id(op)] = entry

    def _settle(self, done: list[Any]) -> None:
        for op in done:
            entry = self.ops.pop(id(op), None)
            if entry is not None:
                entry[1] = True

    @initialize(capacity=st.sampled_from([100, 100, 0]))
    def emulated_buffer(self, capacity: int) -> None:
        # 0: the Proactor's sockets (S4.2, S17.3), where a loop-thread send goes THROUGH.
        self.e.capacity = capacity
        self.e.sendq.capacity = capacity

    @rule(size=st.integers(0, 150), lean=st.booleans(), coalesce=st.booleans(), plain=st.booleans())
    def post_here(self, size: int, lean: bool, coalesce: bool, plain: bool) -> None:
        if self.c.incoming or self.c.front is not None:
            self.take_incoming()
        e = self.e
        route = admit_here(e, self.c, size, plain, lean, coalesce)
        if route == MEASURE:
            e.sendq.report(self.transport)
            route = admit_here(e, self.c, size, plain, lean, coalesce)
            if route == MEASURE:
                route = QUEUE  # no room even by a fresh reading: the adapter queues it
        assert route in (QUEUE, WRITE, HOLD, THROUGH)
        assert route != HOLD or lean
        assert route != THROUGH or (not lean and e.sendq.capacity == 0)
        event(f"route {route.name}")
        if route == THROUGH:
            # Written now and handed on as the pump would; complete in the call only if
            # the kernel then holds it all -- and never ahead of an earlier send (S6.4).
            op = Operation(OpKind.SEND, [b"x" * size], size)
            self._queue(size, op)
            self.transport += size
            done = e.handed([op], self.transport)
            if op in done:
                entry = self.ops[id(op)]
                assert all(earlier[1] for earlier in self.ledger if earlier is not entry)
            self._settle(done)
        elif route == WRITE:
            self._complete_at_once(route, size)
            e.sendq.wrote(size)
            self.transport += size
            e.begin_iteration()
        elif route == HOLD:
            self._complete_at_once(route, size)
            e.sendq.hold(b"x" * size, size, held_send)
        else:
            op = Operation(OpKind.SEND, [b"x" * size], size)
            if not plain:
                op.fault = w.WSAENETRESET
            self._queue(size, op)
            e.post_send(op, coalesce)

    @rule(size=st.integers(0, 150), blocking=st.booleans())
    def post_other(self, size: int, blocking: bool) -> None:
        route = admit_other(self.e, self.c, size, True, blocking)
        assert route in (QUEUE, STAGE, DIRECT)
        if route == STAGE:
            self._complete_at_once(route, size)
            self.c.incoming.append(held_send([b"x" * size], size))
            self.c.staged += size
        elif route == DIRECT:
            self._complete_at_once(route, size)  # the kernel took it all
        else:
            op = Operation(OpKind.SEND, [b"x" * size], size)
            self._queue(size, op)
            self.c.incoming.append(op)
            self.c.sends += 1

    @rule()
    def take_incoming(self) -> None:
        c = self.c
        for op in c.incoming:
            self.e.sendq.post(op)
            c.foreign_writes = True
        c.incoming.clear()
        c.staged = c.sends = 0

    @rule()
    def pump(self) -> None:
        e = self.e
        faulted, batch = e.next_hand_on()
        if faulted is not None:
            self._settle([faulted])
            return
        if batch:
            self.transport += sum(op.nbytes for op in batch)
            self._settle(e.handed(batch, self.transport))

    @rule(taken=st.integers(0, 200))
    def kernel_drains(self, taken: int) -> None:
        self.transport = max(0, self.transport - taken)

    @rule()
    def observe(self) -> None:
        self._settle(self.e.observe(self.transport))

    @rule()
    def end_iteration(self) -> None:
        if self.e.end_iteration():
            self.pump()

    @precondition(lambda self: not self.e.drain_delay)
    @rule()
    def slow_drain_toggles(self) -> None:
        self.e.drain_delay = None if self.e.drain_delay is not None else 0.0

    @invariant()
    def what_completed_at_once_fits_the_send_buffer(self) -> None:
        # SPEC S4.1: bytes complete but still in user space -- held here, staged in the
        # hand-off, or in the transport beyond what the kernel took -- stay within
        # SO_SNDBUF plus the one send that may overshoot it (S4.4).
        sendq = self.e.sendq
        held = sum(op.nbytes for op in sendq.waiting if not op.status)
        assert held == sendq.held
        complete_in_user_space = held + self.c.staged
        largest = max((entry[0] for entry in self.ledger), default=0)
        assert complete_in_user_space <= sendq.capacity + largest


TestAdmissionModel = AdmissionModel.TestCase
TestAdmissionModel.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)


def test_the_hand_offs_busy_flag_follows_what_it_sums_up() -> None:
    # SPEC S5.3: the loop thread's sends read one flag for "posts from other threads wait
    # here, or the rest of a direct send, or the socket closed"; it must never lag them.
    from wsp_async._io.handoff import HandOff

    wakes: list[object] = []
    h = HandOff(wakes.append, lambda: None, lambda op: 0, lambda op: False)

    def agrees() -> bool:
        return h.busy == (bool(h.incoming) or h.front is not None or h.closed)

    op = Operation(OpKind.SEND, [b"x"], 1)
    assert agrees() and not h.busy
    h.post(op)
    assert agrees() and h.busy
    with h.lock:
        h.take_locked()
    assert agrees() and not h.busy
    h.put_front(op)
    assert agrees() and h.busy
    assert h.take_front() is op and agrees() and not h.busy
    h.post(op)
    assert h.withdraw(lambda o: True) == [op] and agrees() and not h.busy
    with h.lock:
        h.stage_locked(b"y", 1, held_send)
    assert agrees() and h.busy and h.staged == 1
    h.close()
    with h.lock:
        h.take_locked()
    assert agrees() and h.busy  # closed stays busy: nothing is admitted at once any more
