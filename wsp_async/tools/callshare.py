"""Whose Python a program runs on the Proactor: calls per unit of work, by owner (issue 23).

The Proactor over wsp_async is bound by the interpreter: the process's CPU time equals its
wall time while an echo runs (``docs/proactor.md``, "Speed").  So the question for its
speed is whose Python runs per unit of work, and how much of it would run on Windows too.
:func:`call_shares` counts every Python function call (``sys.setprofile``) of three
programs -- an echo round trip through asyncio streams against a peer in another process,
a websocket echo, an HTTP request (the real programs of :mod:`~wsp_async.tools.realbench`)
-- on the selector loop and on CPython's ``ProactorEventLoop`` over wsp_async, and sorts
each call by whose code it is:

``emulator``
    wsp_async itself (with the ``attrs`` classes it defines), and the stock asyncio loop
    lent to the Proactor's thread with its transports: the emulator's own I/O.
``asyncio``
    asyncio as the program's own loop runs it: on the Proactor, ``windows_events`` and
    ``proactor_events`` among it, the code Windows runs as well.
``other``
    the libraries and the rest of the standard library.

A call of asyncio's code is the emulator's when the object it runs on (``self``, or the
loop a handle or transport belongs to) belongs to a loop other than the program's own.
"""

from __future__ import annotations

import asyncio
import collections
import gc
import sys
from collections.abc import Callable, Coroutine
from types import FrameType
from typing import Any

__all__ = ["call_shares"]

_OURS = ("/wsp_async/", "<attrs generated")
_ASYNCIO = ("/asyncio/", "/selectors.py")
_PROGRAMS = "/wsp_async/tools/"


class _Shares:
    """A profile function counting calls by owner (see the module doc)."""

    def __init__(self, outer: asyncio.AbstractEventLoop) -> None:
        self.outer = outer
        #: A selector's calls are the program's loop's when it selects, else the lent one's.
        self.outer_selects = hasattr(outer, "_selector")
        self.counts: collections.Counter[str] = collections.Counter()

    def __call__(self, frame: FrameType, event: str, arg: Any) -> None:
        if event != "call":
            return
        name = frame.f_code.co_filename
        if _PROGRAMS in name:
            self.counts["other"] += 1  # the programs themselves (this module, realbench)
        elif name.startswith(_OURS[1]) or _OURS[0] in name:
            self.counts["emulator"] += 1
        elif name.endswith(_ASYNCIO[1]):
            self.counts["asyncio" if self.outer_selects else "emulator"] += 1
        elif _ASYNCIO[0] in name:
            owner = frame.f_locals.get("self")
            loop = owner if isinstance(owner, asyncio.AbstractEventLoop) else None
            if loop is None and owner is not None:
                loop = getattr(owner, "_loop", None)
            lent = loop is not None and loop is not self.outer
            self.counts["emulator" if lent else "asyncio"] += 1
        else:
            self.counts["other"] += 1


async def _counted(
    program: Callable[[int], Coroutine[Any, Any, Any]], units: int
) -> dict[str, float]:
    await program(max(1, units // 10))  # warm: imports, adoption, pools
    gc.collect()  # no finalizer of an earlier run's objects is counted in this one
    shares = _Shares(asyncio.get_running_loop())
    sys.setprofile(shares)
    try:
        await program(units)
    finally:
        sys.setprofile(None)
    return {owner: count / units for owner, count in sorted(shares.counts.items())}


def _echo_program(port: int) -> Callable[[int], Coroutine[Any, Any, None]]:
    async def echo(rounds: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        for _ in range(rounds):
            writer.write(b"e" * 64)
            await reader.readexactly(64)
        writer.close()
        await writer.wait_closed()

    return echo


def call_shares(units: int = 1000) -> dict[str, dict[str, dict[str, float]]]:
    """``{program: {loop: {owner: calls per unit}}}`` for the echo, websocket and HTTP
    programs on the selector loop and on the Proactor (a program whose library is not
    installed is left out)."""
    from .. import proactor
    from .benchrates import ECHO_SERVER, peer_process
    from .realbench import http_requests, websocket_echoes

    loops: dict[str, Callable[[], asyncio.AbstractEventLoop]] = {
        "selector": asyncio.SelectorEventLoop,
        "proactor": proactor.ProactorEventLoop,
    }
    with peer_process(ECHO_SERVER) as port:
        programs: dict[str, Callable[[int], Coroutine[Any, Any, Any]]] = {
            "echo": _echo_program(port)
        }
        libraries = {
            "websocket": ("websockets", websocket_echoes),
            "http": ("aiohttp", http_requests),
        }
        for name, (library, real) in libraries.items():
            try:
                __import__(library)
            except ImportError:
                continue
            programs[name] = real
        shares: dict[str, dict[str, dict[str, float]]] = {}
        for name, program in programs.items():
            shares[name] = {}
            for kind, factory in loops.items():
                with asyncio.Runner(loop_factory=factory) as runner:
                    shares[name][kind] = runner.run(_counted(program, units))
        return shares
