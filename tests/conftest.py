"""Fixtures shared by the suite: both event loops, loop threads, loopback peers.

Every test that touches an event loop runs once on stock asyncio and once on
uvloop: async tests through the parametrised ``event_loop_policy`` fixture
(pytest-asyncio), sync tests through ``loop_kind``.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator

import pytest

try:
    import uvloop
except ImportError:  # pragma: no cover - uvloop is a dependency off Windows
    uvloop = None

LOOP_KINDS = ["asyncio", "uvloop"] if uvloop is not None else ["asyncio"]


def new_loop(kind: str) -> asyncio.AbstractEventLoop:
    if kind == "uvloop":
        return uvloop.new_event_loop()
    return asyncio.new_event_loop()


@pytest.fixture(params=LOOP_KINDS)
def loop_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def pytest_asyncio_loop_factories(config: pytest.Config, item: pytest.Item) -> dict[str, object]:
    """Every async test runs on each loop kind (pytest-asyncio parametrises by this)."""
    return {kind: (lambda kind=kind: new_loop(kind)) for kind in LOOP_KINDS}


@contextlib.contextmanager
def loop_thread(kind: str) -> Iterator[tuple[asyncio.AbstractEventLoop, threading.Thread]]:
    """A loop of ``kind`` running in its own thread; stopped and closed on exit."""
    loop = new_loop(kind)
    started = threading.Event()

    def main() -> None:
        asyncio.set_event_loop(loop)
        loop.call_soon(started.set)
        loop.run_forever()

    thread = threading.Thread(target=main, name=f"loop-{kind}", daemon=True)
    thread.start()
    assert started.wait(10)
    try:
        yield loop, thread
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


def run_in_loop(loop: asyncio.AbstractEventLoop, fn, *args, timeout: float = 10):  # type: ignore[no-untyped-def]
    """Run ``fn(*args)`` on ``loop``'s thread and return its result."""
    import concurrent.futures

    fut: concurrent.futures.Future[object] = concurrent.futures.Future()

    def call() -> None:
        try:
            fut.set_result(fn(*args))
        except BaseException as exc:
            fut.set_exception(exc)

    loop.call_soon_threadsafe(call)
    return fut.result(timeout)
