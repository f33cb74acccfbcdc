"""The record of a post made two ways: ``Operation(...)`` and the posting path's ``posted``.

``posted`` writes the fields itself instead of calling the class (issue 26), so the two
must not drift apart: a field added to the class and forgotten there would be missing on
every overlapped post (an ``AttributeError`` far from its cause), one given another
default would change what a post starts from.  No I/O.
"""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from wsp_async._core.operation import Operation, OpKind, posted
from wsp_async.constants import STATUS_PENDING
from wsp_async.structs import WSAOVERLAPPED

anything = st.one_of(st.none(), st.integers(), st.text(max_size=3), st.just(object()))


def fields(op: Operation) -> dict[str, Any]:
    return {name: getattr(op, name) for name in Operation.__slots__}


@given(
    kind=st.sampled_from(OpKind),
    nbytes=st.integers(0, 1 << 20),
    flags=st.integers(0, 0xFFFF),
    handle=st.integers(1, 1 << 30),
    routine=anything,
    thread=anything,
    event=anything,
    issuer=anything,
    lane=anything,
    link=anything,
    later=anything,
)
def test_a_posted_record_is_the_one_the_class_makes(
    kind: OpKind,
    nbytes: int,
    flags: int,
    handle: int,
    routine: Any,
    thread: Any,
    event: Any,
    issuer: Any,
    lane: Any,
    link: Any,
    later: Any,
) -> None:
    # SPEC S2.4: every post starts pending, from the same record
    buffers = [b"x" * 3]
    ov = WSAOVERLAPPED()
    made = Operation(
        kind, buffers, nbytes, ov, routine, thread, event, issuer, flags, None, handle, None, lane
    )
    made.port_link = link
    made.port_later = later
    quick = posted(
        kind, buffers, nbytes, ov, routine, thread, event, issuer, flags, handle, lane, link, later
    )
    assert type(quick) is Operation
    assert fields(quick) == fields(made)
    assert quick.status == STATUS_PENDING and quick.pending


def test_every_field_of_a_posted_record_is_set() -> None:
    # A slot left unset reads as AttributeError: every one is written.
    op = posted(OpKind.SEND, [], 0, WSAOVERLAPPED(), None, None, None, None, 0, 1, None, None, None)
    for name in Operation.__slots__:
        getattr(op, name)
