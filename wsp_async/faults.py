"""Fault injection (SPEC S12.1): drive application code through every Winsock failure.

Rules of this module:

* A :class:`Fault` says *which* operations fail (kind, the next / the Nth /
  every one), *how* (``at="post"``: the call itself fails, nothing starts and no
  completion comes, S2.3; ``at="completion"``: the call pends and the operation
  completes with the error, S2.2) and *with what* (any WSA code).
* Injected failures take the real paths: a post-time fault is raised where the
  provider raises its own argument and state errors; a completion-time fault
  rides on the operation to the head of its socket's queue and completes there,
  in posting order, through the same ``finish`` as a reset or an abort.
* This file decides, it does no I/O: the provider asks :meth:`FaultPlan.draw`
  for each operation it is about to start.

Usage::

    provider.inject(s, op="send", error=WSAENETRESET, nth=3)           # the 3rd send fails at once
    provider.inject(s, op="recv", error=WSAECONNRESET, at="completion")  # the next receive completes with it
    provider.inject(None, op="send", error=WSAENOBUFS, every=True)      # every send on every socket
    provider.inject(s, delay_drain=0.05)    # hand sends to the transport one batch per 50 ms
    provider.inject(s, delay_drain=None)    # back to full speed
"""

from __future__ import annotations

from typing import Literal

import attrs

from .errors import is_code

__all__ = ["Fault", "FaultPlan"]

Kind = Literal["send", "recv", "any"]
When = Literal["post", "completion"]


@attrs.define(eq=False)
class Fault:
    """One injected failure rule."""

    op: Kind
    error: int
    at: When = "post"
    nth: int = 1
    every: bool = False
    #: Operations of the matching kind seen so far by this rule.
    seen: int = 0
    spent: bool = False

    def matches(self, kind: str) -> bool:
        if self.spent or (self.op != "any" and self.op != kind):
            return False
        self.seen += 1
        if self.every:
            return self.seen >= self.nth
        if self.seen == self.nth:
            self.spent = True
            return True
        return False


@attrs.define
class FaultPlan:
    """The faults armed on one socket (or on the whole provider)."""

    faults: list[Fault] = attrs.field(factory=list)

    def add(self, fault: Fault) -> None:
        if fault.nth < 1:
            raise ValueError("nth counts from 1")
        if fault.at not in ("post", "completion"):
            raise ValueError("at is 'post' or 'completion'")
        if not is_code(fault.error):
            raise ValueError(f"{fault.error} is not a Winsock error code")
        self.faults.append(fault)

    def draw(self, kind: str) -> Fault | None:
        """The fault that applies to the next operation of ``kind`` (each rule counts it)."""
        hit: Fault | None = None
        for fault in self.faults:
            if fault.matches(kind) and hit is None:
                hit = fault
        if any(f.spent for f in self.faults):
            self.faults = [f for f in self.faults if not f.spent]
        return hit

    def clear(self) -> None:
        self.faults.clear()

    def __bool__(self) -> bool:
        return bool(self.faults)
