"""The chaos table: every fault scenario passes (scripts/chaos.py)."""

from __future__ import annotations

import os
import subprocess
import sys

from harness import ROOT


def test_every_chaos_scenario_passes() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "chaos.py"), "--kills", "3"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
        env={**os.environ, "POND_NO_VENV": "1"},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    rows = [line for line in result.stdout.splitlines() if line.startswith("| ") and "PASS" in line]
    assert len(rows) == 12
