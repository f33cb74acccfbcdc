"""The I/O-free send queue, checked against a model with hypothesis (SPEC S4, S5.3)."""

from __future__ import annotations

import attrs
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from wsp_async._core import sendqueue
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


@attrs.define(eq=False)
class Labelled(Op):
    label: int = 0


#: The ways into the send queue other than a plain post, and the ways out of it.
JOINS = ["urgent", "fault", "held", "front", "hold", "held front"]
LEAVES = ["withdraw", "cancel", "drain"]


@settings(max_examples=300, deadline=None)
@given(
    capacity=st.integers(0, 300),
    steps=st.lists(
        st.one_of(
            st.tuples(st.just("post"), st.integers(0, 120), st.integers(1, 4)),
            st.tuples(st.sampled_from(JOINS), st.integers(0, 80), st.just(1)),
            st.tuples(st.sampled_from(["gather", "hand"]), st.integers(0, 1000), st.just(0)),
            st.tuples(st.sampled_from(LEAVES), st.integers(0, 1000), st.just(0)),
        ),
        max_size=60,
    ),
)
# Each way into the queue but post's, once: a send joins ahead of or among a run, one
# of the run is withdrawn, and the run counts as many sends as wait -- not the same ones.
@example(100, [("held", 10, 1), ("post", 20, 1), ("post", 30, 1), ("cancel", 1, 0), ("gather", 1000, 0)])  # fmt: skip
@example(100, [("hold", 10, 1), ("post", 20, 1), ("post", 30, 1), ("cancel", 1, 0), ("gather", 1000, 0)])  # fmt: skip
@example(100, [("post", 20, 1), ("urgent", 5, 1), ("post", 30, 1), ("cancel", 0, 0), ("gather", 1000, 0)])  # fmt: skip
@example(100, [("post", 20, 1), ("post", 30, 1), ("front", 10, 1), ("cancel", 1, 0), ("gather", 1000, 0)])  # fmt: skip
@example(100, [("post", 20, 1), ("post", 30, 1), ("held front", 10, 1), ("cancel", 1, 0), ("gather", 1000, 0)])  # fmt: skip
# A run past either gather limit is cut where the look cuts it.
@example(100, [("post", 120, 1), ("post", 120, 1), ("post", 120, 1), ("gather", 1000, 0)])
@example(100, [("post", 20, 4), ("post", 20, 4), ("gather", 1000, 0)])
def test_a_run_taken_whole_is_the_batch_the_look_at_each_send_makes(capacity, steps) -> None:  # type: ignore[no-untyped-def]
    # SPEC S5.3, S4.1 (issue 26): next_batch takes a run of plain pending sends whole
    # without looking at each.  A second queue, whose run is spoilt before every batch,
    # always looks: the two must hand on the same batches and keep the same accounts,
    # whatever joined or left the queue between batches.  The gather limits are made
    # small so that runs pass them.
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(sendqueue, "GATHER_BYTES", 300)
        patch.setattr(sendqueue, "GATHER_BUFFERS", 6)
        _compare_with_the_look(capacity, steps)


def _compare_with_the_look(capacity: int, steps: list[tuple[str, int, int]]) -> None:
    fast: SendQueue[Labelled] = SendQueue(capacity)
    looking: SendQueue[Labelled] = SendQueue(capacity)
    buffered = 0
    label = 0

    def both(action: str, n: int, pieces: int) -> tuple[Labelled, Labelled]:
        nonlocal label
        label += 1
        made = []
        for _ in range(2):
            size = max(n, pieces)
            cut = [bytes(size // pieces)] * (pieces - 1)
            buffers = [*cut, bytes(size - sum(len(b) for b in cut))]
            made.append(
                Labelled(
                    size,
                    urgent=action == "urgent",
                    fault=10054 if action == "fault" else 0,
                    status=0 if action in ("held", "hold") else 259,
                    buffers=buffers,
                    label=label,
                )
            )
        return made[0], made[1]

    def labels(ops: object) -> list[int]:
        return [op.label for op in ops]  # type: ignore[attr-defined]

    for action, n, pieces in steps:
        if action in ("post", "urgent", "fault", "held"):
            a, b = both(action, n, pieces)
            fast.post(a)
            looking.post(b)
        elif action == "front":
            a, b = both(action, n, pieces)
            fast.push_front(a)
            looking.push_front(b)
        elif action == "held front":
            a, b = both("held", n, pieces)
            fast.hold_front(a)
            looking.hold_front(b)
        elif action == "hold":
            if fast.waiting and fast.waiting[0].status:
                continue  # held only onto a held record, or into an empty queue
            a, b = both(action, n, pieces)
            fast.hold(a.buffers[0], a.nbytes, lambda bufs, size, a=a: a)
            looking.hold(b.buffers[0], b.nbytes, lambda bufs, size, b=b: b)
        elif action in ("withdraw", "cancel"):
            # Some of them (a close's shutdown), or one (its CancelIo), as withdrawals do.
            chosen = {op.label for op in fast.waiting if op.label % 3 == n % 3}
            if action == "cancel":
                chosen = {fast.waiting[n % len(fast.waiting)].label} if fast.waiting else set()
            assert labels(fast.remove_waiting(lambda op, c=chosen: op.label in c)) == labels(
                looking.remove_waiting(lambda op, c=chosen: op.label in c)
            )
        elif action == "drain":
            buffered = max(0, buffered - n)
            assert labels(fast.observe(buffered)) == labels(looking.observe(buffered))
        else:
            gather = action == "gather"
            if gather:  # the transport emptied: what it held is consumed
                buffered = 0
                assert labels(fast.observe(0)) == labels(looking.observe(0))
            if fast.waiting and fast.waiting[0].fault:
                a, b = fast.waiting.popleft(), looking.waiting.popleft()  # next_hand_on's
                assert a.label == b.label
                continue
            looking.run = -1
            batch, reference = fast.next_batch(gather), looking.next_batch(gather)
            assert labels(batch) == labels(reference)
            assert (fast.offer, fast.offered) == (looking.offer, looking.offered)
            if gather and fast.offer:
                sent = min(n, fast.offered)
                reached, rest = fast.reached(batch, sent)
                reached_b, rest_b = looking.reached(reference, sent)
                assert labels(reached) == labels(reached_b) and rest == rest_b
                batch, reference = reached, reached_b
                buffered = sum(len(b) for b in rest)
            else:
                buffered += sum(op.nbytes for op in batch)
            assert labels(fast.handed(batch, buffered)) == labels(
                looking.handed(reference, buffered)
            )
        assert labels(fast.waiting) == labels(looking.waiting)
        assert (fast.held, fast.used) == (looking.held, looking.used)


def test_a_burst_of_plain_sends_is_taken_whole_without_a_look_at_each() -> None:
    # Issue 26 (SPEC S5.3): the sends of one loop iteration leave in one gather batch,
    # in order, and next_batch reads none of them to decide it; anything put back in
    # front spoils the run, and the batch after it is decided by looking.
    reads = [0]

    @attrs.define(eq=False)
    class Watched(Op):
        def __getattribute__(self, name: str) -> object:
            if name == "fault":
                reads[0] += 1
            return object.__getattribute__(self, name)

    q: SendQueue[Op] = SendQueue(capacity=1000)
    burst = [Watched(10) for _ in range(50)]
    for op in burst:
        q.post(op)
    reads[0] = 0
    assert q.next_batch(gather=True) == burst and (q.offer, q.offered) == (True, 500)
    assert reads[0] == 0 and not q.waiting
    later = [Watched(10) for _ in range(3)]
    for op in later:
        q.post(op)
    q.push_front(burst[-1])  # say the kernel had no room for the last one's rest
    reads[0] = 0
    assert q.next_batch(gather=True) == [burst[-1], *later]
    assert reads[0] == 4
