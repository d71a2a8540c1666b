"""The report benchmark runs end to end and prints every figure (no timing is asserted)."""

from __future__ import annotations

import os
import re
import subprocess
import sys

from harness import ROOT


def test_bench_report_smoke_prints_every_figure() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "bench_report.py"), "--smoke", "--repeat", "2"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
        env={**os.environ, "POND_NO_VENV": "1", "DATABASE_URL": ""},
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "| contacts | 2,000 |" in out
    # Topped up to issue 12's 10 events a contact when the demo gives fewer by itself.
    gen = re.search(r"已生成：2,000 位客户，([\d,]+) 条演示事件 \+ ([\d,]+) 条补充的", out)
    assert gen is not None, out
    demo, extra = (int(g.replace(",", "")) for g in gen.groups())
    assert demo > 2000 and demo + extra == max(demo, 20_000)
    assert f"| events (all kinds) | {demo + extra:,} |" in out
    assert out.count("  第 ") == 2 and "轮：基线全表扫描" in out
    for figure in [
        "| generation events/s |",
        "| baseline full scan (min / median) |",
        "| report compute (min / median) |",
        "| report rows/s (events / compute min) |",
        "| report / baseline (min / min) |",
        "| write HTML + CSV (min / median) |",
        "| whole process, scripts/report.py |",
        "| whole process peak RSS |",
    ]:
        assert figure in out, figure
    assert re.search(r"\| report total, compute \+ write \(median, \d+ CSV\) \| [\d.]+ s \|", out)
    assert re.search(r"\| report / baseline \(min / min\) \| \d+\.\d\d x \|", out)
    last = out.strip().splitlines()[-1]
    assert last.startswith("目标：< 60 秒")
    assert last.endswith(("：达到", "：未达到"))
