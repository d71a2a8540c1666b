"""The whole check, as CI runs it: `python3 scripts/test.py` (installs what it needs first).

ruff on all Python code, mypy --strict on pond/ and plugins/, then pytest. Extra arguments
go to pytest (e.g. `python3 scripts/test.py -k outbox`)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _env import ROOT, ensure_venv

ensure_venv(dev=True)


def run(*cmd: str) -> int:
    print("$", " ".join(cmd), flush=True)
    return subprocess.run([sys.executable, "-m", *cmd], cwd=ROOT).returncode


def main() -> int:
    steps = [
        ("ruff", "check", "pond", "plugins", "scripts", "tests", "bot.py"),
        ("mypy", "pond", "plugins"),
        ("pytest", "-q", *sys.argv[1:]),
    ]
    failed = [step[0] for step in steps if run(*step) != 0]
    if failed:
        print("FAILED:", ", ".join(failed), flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
