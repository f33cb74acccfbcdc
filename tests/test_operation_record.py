"""The record of a post made two ways: ``Operation(...)`` and the posting path's own.

``Posting.overlapped`` writes the record's fields itself instead of calling the class
(issue 26), so the two must not drift apart: a field added to the class and forgotten
there would be missing on every overlapped post (an ``AttributeError`` far from its
cause), one given another default would change what a post starts from.  No socket I/O:
a fresh stream socket's host socket is made only when first needed.
"""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

import wsp_async as w
from wsp_async._core.operation import Operation, OpKind
from wsp_async.constants import STATUS_PENDING
from wsp_async.structs import WSAOVERLAPPED, NoPortPacket


def fields(op: Operation) -> dict[str, Any]:
    return {name: getattr(op, name) for name in Operation.__slots__}  # every slot is set


def routine(error: int, nbytes: int, overlapped: object, flags: int) -> None:
    pass


def test_a_posted_record_is_the_one_the_class_makes() -> None:
    # SPEC S2.4: every post starts pending, from the same record
    with w.Provider() as provider:
        err = w.INT()
        s = provider.WSPSocket(w.AF_INET, w.SOCK_STREAM, 0, None, 0, w.WSA_FLAG_OVERLAPPED, err)
        sock = provider.socket_of(s)
        posting = provider._sends.posting

        @given(
            kind=st.sampled_from(OpKind),
            nbytes=st.integers(0, 1 << 20),
            flags=st.integers(0, 0xFFFF),
            with_routine=st.booleans(),
            thread_named=st.booleans(),
            here=st.booleans(),
            hevent=st.sampled_from(["none", "event", "no packet", "odd int"]),
        )
        def check(
            kind: OpKind,
            nbytes: int,
            flags: int,
            with_routine: bool,
            thread_named: bool,
            here: bool,
            hevent: str,
        ) -> None:
            event = w.WSACreateEvent()
            ov = WSAOVERLAPPED(
                hEvent={
                    "none": None,
                    "event": event,
                    "no packet": NoPortPacket(event),
                    "odd int": 7,
                }[hevent]
            )
            thread_id = w.WSATHREADID.current() if thread_named else None
            buffers = [b"x" * 3]
            quick = posting.overlapped(
                sock, kind, buffers, nbytes, flags, ov, routine if with_routine else None,
                thread_id, here,
            )  # fmt: skip
            assert quick is not None and type(quick) is Operation
            made = Operation(
                kind, buffers, nbytes, ov, quick.routine, quick.thread, quick.event,
                quick.issuer, flags, None, sock.handle, None, sock.lane,
            )  # fmt: skip
            made.port_link = quick.port_link
            made.port_later = quick.port_later
            assert fields(quick) == fields(made)
            assert quick.status == STATUS_PENDING and quick.pending
            assert quick.handle == s and quick.lane is sock.lane

        check()
        provider.WSPCloseSocket(s, err)
