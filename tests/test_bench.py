"""The benchmark script runs and reports every figure (no timing is asserted)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from harness import ROOT


def test_bench_smoke_prints_and_writes_the_table(tmp_path: Path) -> None:
    out = tmp_path / "bench.md"
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "bench.py"), "--smoke", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
        env={**os.environ, "POND_NO_VENV": "1"},
    )
    assert result.returncode == 0, result.stderr
    table = out.read_text(encoding="utf-8")
    for figure in [
        "pond private / jinja2 baseline",
        "pond private p99",
        "scale ratio",
        "RSS",
        "startup to first reply",
        "restart to first reply",
        "msgs/s, bursts of 25",
        "bursts of 25: receipt -> durable enqueue p99",
        "commits per message",
    ]:
        assert figure in table
