import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from harness import sims  # noqa: E402, F401  (the fixture: bots that are stopped after the test)
