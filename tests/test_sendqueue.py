"""The I/O-free send queue, checked against a model with hypothesis (SPEC S4, S5.3)."""

from __future__ import annotations

import attrs
from hypothesis import given, settings
from hypothesis import strategies as st

from wsp_async._core.sendqueue import SendQueue


@attrs.define(eq=False)
class Op:
    nbytes: int
    end: int = 0
    urgent: bool = False
    fault: int = 0
    parts: None = None
    direct: int = 0
    status: int = 259  # pending (STATUS_PENDING): no test record is held complete
    buffers: list[bytes] = attrs.field(
        default=attrs.Factory(lambda self: [bytes(self.nbytes)], takes_self=True)
    )


def test_send_completes_only_when_within_capacity() -> None:  # SPEC S4.1
    q: SendQueue[Op] = SendQueue(capacity=100)
    a, b = Op(80), Op(80)
    q.post(a)
    q.post(b)
    batch = q.next_batch()
    assert batch == [a]  # b would push the estimate past the capacity
    assert q.handed(batch, buffered=80) == [a]  # 80 <= 100: held within capacity
    batch = q.next_batch()
    assert batch == [b]
    assert q.handed(batch, buffered=160) == []  # 60 bytes of b are over the capacity
    assert q.next_batch() == []  # nothing more goes while over capacity (S4.4)
    assert q.observe(100) == [b]


def test_the_rest_of_an_urgent_send_is_held_first_and_goes_alone() -> None:
    # SPEC S4.1, S5.3: the rest of an urgent send the kernel had no room for goes back
    # before everything, its bytes held (counted in the buffer) -- and out alone, first.
    q: SendQueue[Op] = SendQueue(capacity=100)
    after = Op(10)
    q.post(after)
    rest = Op(1, urgent=True, status=0)
    q.hold_front(rest)
    assert (q.held, q.used) == (1, 1)
    assert q.next_batch() == [rest] and q.held == 0  # alone, then no longer held here
    assert q.handed([rest], buffered=0) == [rest]
    assert q.next_batch() == [after]


def test_a_batch_consumed_whole_leaves_the_next_ones_placed_right() -> None:  # SPEC S4.1
    # handed() settles a batch the buffer holds whole without recording where each
    # send ends; the sends handed on after it must still be consumed only once the
    # transport's reading says so, never early.
    q: SendQueue[Op] = SendQueue(capacity=100)
    a, b = Op(60), Op(30)
    q.post(a)
    q.post(b)
    assert q.handed(q.next_batch(), buffered=90) == [a, b]  # 90 <= 100: both consumed
    c, d = Op(50), Op(40)
    q.post(c)
    q.post(d)
    batch = q.next_batch()
    assert batch == [c]  # 90 in the transport + 50 passes the capacity; one send always goes
    assert q.handed(batch, buffered=140) == []  # 40 bytes of c over the capacity
    assert q.observe(101) == []  # c's last byte is still one over
    assert q.observe(100) == [c]
    assert q.handed(q.next_batch(), buffered=140) == []  # d over the capacity
    assert q.observe(100) == [d]


def test_zero_capacity_waits_for_an_empty_buffer() -> None:  # SPEC S4.2
    q: SendQueue[Op] = SendQueue(capacity=0)
    a = Op(10)
    q.post(a)
    assert q.handed(q.next_batch(), buffered=1) == []
    assert q.observe(0) == [a]


def test_a_send_begun_by_another_thread_is_never_withdrawn() -> None:  # SPEC S15.1, S5.3
    # Another thread wrote the first bytes of ``a`` straight to the kernel; its rest waits
    # first.  A cancel, a flush or a thread's exit withdraws what is behind it, never it:
    # the stream would hold a piece of ``a`` followed by later sends.
    q: SendQueue[Op] = SendQueue(capacity=100)
    a, b, c = Op(50, direct=30), Op(10), Op(10)
    q.post(b)
    q.post(c)
    q.waiting.appendleft(a)  # how the adapter queues the rest of a direct write
    assert q.remove_waiting() == [b, c]
    assert list(q.waiting) == [a]
    assert q.remove_waiting(lambda op: op is a) == []
    assert list(q.waiting) == [a]
    fresh = Op(50)
    q.waiting.appendleft(fresh)  # not begun: withdrawn like any other
    assert q.remove_waiting(lambda op: op is fresh) == [fresh]


@settings(max_examples=300, deadline=None)
@given(
    capacity=st.integers(0, 300),
    steps=st.lists(
        st.one_of(
            st.tuples(st.just("post"), st.integers(0, 200)),
            st.tuples(st.just("hand"), st.integers(0, 1000)),
            st.tuples(st.just("drain"), st.integers(0, 1000)),
            st.tuples(st.just("gather"), st.integers(0, 1000)),
        ),
        max_size=60,
    ),
)
def test_completions_are_in_order_never_early_and_exactly_once(capacity, steps) -> None:  # type: ignore[no-untyped-def]
    # SPEC S4.1, S4.4, S5.3, S2.4: a model of the transport's buffer drives the queue;
    # "gather" offers a batch to the kernel first when the transport holds nothing.
    q: SendQueue[Op] = SendQueue(capacity)
    posted: list[Op] = []
    completed: list[Op] = []
    written = 0
    buffered = 0  # what the model transport holds
    for action, n in steps:
        if action == "post":
            op = Op(n, buffers=[bytes([len(posted) % 256]) * n])
            posted.append(op)
            q.post(op)
        elif action == "gather":
            if buffered:
                continue  # only offered to the kernel when the transport holds nothing
            batch = q.next_batch(gather=True)
            size = sum(op.nbytes for op in batch)
            kernel_takes = min(n, size)
            reached, rest = q.reached(batch, kernel_takes)
            # The sends not reached are waiting again, first, in order.
            assert list(q.waiting)[: len(batch) - len(reached)] == batch[len(reached) :]
            assert reached == batch[: len(reached)] and (reached or not batch)
            assert (
                b"".join(rest) == b"".join(b for op in reached for b in op.buffers)[kernel_takes:]
            )
            # S4.4: the kernel's part is consumed; only the rest of one send is held here.
            buffered = sum(len(b) for b in rest)
            assert buffered <= max((op.nbytes for op in reached), default=0)
            written += sum(op.nbytes for op in reached)
            completed += q.handed(reached, buffered)
        elif action == "hand":
            batch = q.next_batch()
            size = sum(op.nbytes for op in batch)
            if batch:
                assert buffered <= capacity  # only handed on while within capacity
                # S4.4: what the transport may hold stays within SO_SNDBUF plus one send.
                assert buffered + size <= capacity + max(op.nbytes for op in batch)
            written += size
            kernel_takes = min(n, buffered + size)
            buffered = buffered + size - kernel_takes
            completed += q.handed(batch, buffered)
        else:
            buffered = max(0, buffered - n)
            completed += q.observe(buffered)
        consumed = written - max(0, buffered - capacity)
        # Never early: every completed op's bytes are consumed.
        assert all(op.end <= consumed for op in completed)
        # In posting order, each exactly once.
        assert completed == posted[: len(completed)]
    buffered = 0
    completed += q.observe(0)
    while q.waiting:
        batch = q.next_batch()
        completed += q.handed(batch, 0)
    assert completed == posted
