"""`make demo` runs and verifies its bytes (SPEC S0: the two faces over real loopback sockets)."""

from __future__ import annotations

import subprocess
import sys


def test_demo_runs_and_verifies_every_mechanism() -> None:  # SPEC S6, S7, S8
    proc = subprocess.run(
        [sys.executable, "-m", "wsp_async", "demo"], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for mechanism in ("routine", "event", "poll", "blocking"):
        assert any(
            line.startswith(mechanism) and line.endswith("ok") for line in proc.stdout.splitlines()
        )
    assert "all bytes verified" in proc.stdout
