"""Structures and out-parameter boxes (SPEC S1)."""

from __future__ import annotations

import asyncio
import ctypes
import threading

import wsp_async as w


def test_overlapped_defaults_and_identity() -> None:  # SPEC S1
    a, b = w.WSAOVERLAPPED(), w.WSAOVERLAPPED()
    assert (a.Internal, a.InternalHigh, a.Offset, a.OffsetHigh, a.hEvent) == (0, 0, 0, 0, None)
    assert a != b and a == a
    assert not a.pending


def test_any_object_with_writable_value_is_a_box() -> None:  # SPEC S1
    for box in (w.DWORD(), w.INT(), ctypes.c_ulong(), ctypes.c_int()):
        assert w.is_box(box)
        assert w.store(box, 7)
        assert box.value == 7
    assert not w.is_box(object())
    assert not w.is_box(5)
    assert not w.is_box((1,))


def test_store_reports_a_box_that_refuses_the_value() -> None:  # SPEC S9 (WSAEFAULT)
    class ReadOnly:
        @property
        def value(self) -> int:
            return 0

    assert not w.is_box(ReadOnly())
    assert not w.store(ReadOnly(), 1)
    assert w.store(None, 1)


def test_threadid_current_names_the_calling_thread() -> None:  # SPEC S6.1
    here = w.WSATHREADID.current()
    assert here.ThreadHandle == threading.get_ident()
    seen: list[w.WSATHREADID] = []
    t = threading.Thread(target=lambda: seen.append(w.WSATHREADID.current()))
    t.start()
    t.join()
    assert seen[0].ThreadHandle != here.ThreadHandle
    assert seen[0].target is not here.target


async def test_threadid_current_captures_the_running_loop() -> None:  # SPEC S6.3
    tid = w.WSATHREADID.current()
    assert getattr(tid.target, "loop", None) is asyncio.get_running_loop()


def test_wsabuf_fields() -> None:  # SPEC S1
    data = bytearray(b"hello")
    buf = w.WSABUF(5, data)
    assert buf.len == 5 and buf.buf is data
