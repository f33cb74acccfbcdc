"""Every example runs to completion (smoke tests over real loopback sockets)."""

from __future__ import annotations

import pathlib
import subprocess
import sys

import pytest

EXAMPLES = sorted((pathlib.Path(__file__).parent.parent / "examples").glob("*.py"))


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_runs(path: pathlib.Path) -> None:  # SPEC S2, S6, S7
    proc = subprocess.run([sys.executable, str(path)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.strip()


def test_overlapped_send_example_output() -> None:  # SPEC S2, S6.6, S7.1, S7.2
    path = pathlib.Path(__file__).parent.parent / "examples" / "overlapped_send.py"
    out = subprocess.run(
        [sys.executable, str(path)], capture_output=True, text=True, timeout=120
    ).stdout
    assert "routine: 0 10 context: any context" in out
    assert "event: 0 5" in out
    assert "result: True 4" in out
    assert "peer got: b'headerbodyeventpoll'" in out


def test_the_benchmark_entry_of_a_checkout_starts() -> None:
    # benchmarks/run.py forwards to the package's harness; it once named a module that
    # had moved (issue 25).  --help proves the import path without running a benchmark.
    path = pathlib.Path(__file__).parent.parent / "benchmarks" / "run.py"
    proc = subprocess.run(
        [sys.executable, str(path), "--help"], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert "--quick" in proc.stdout
