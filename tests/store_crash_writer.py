"""Crash-test writer: writes to a pond Store until it is killed (see test_store_crash.py).

    python tests/store_crash_writer.py DATA_DIR [--start N] [--mode all|events]

Prints ``ready`` once the store is open, then:

- mode ``all``: for i = N, N+1, ...: insert the document {"i": i} in namespace "crash",
  ``kv_set("crash", f"k{i}", i)`` and ``flush()`` (key/values are group-committed: the
  flush is their durability point), ``mark_seen(f"m{i}")``, then prints ``ack i``. A write
  is acknowledged only once all of them have returned.
- mode ``events``: records events of kind ``flood<N>`` with data {"i": i}; after every 200
  it calls ``flush()`` and prints ``flushed <count>``.

Only ``pond.store`` is imported: the ``pond`` package object is stubbed so that the
kernel's ``pond/__init__`` (and everything it imports) is not loaded. Start-up time is
most of the cost of each crash run.
"""

from __future__ import annotations

import argparse
import sys
import types
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
_pond = types.ModuleType("pond")
_pond.__path__ = [str(ROOT / "pond")]
sys.modules.setdefault("pond", _pond)

from pond.store import Store  # noqa: E402  (after the sys.path set-up)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("data_dir", type=Path)
    parser.add_argument("--start", type=int, default=0)
    parser.add_argument("--mode", choices=["all", "events"], default="all")
    args = parser.parse_args()

    store = Store(args.data_dir)
    print("ready", flush=True)
    i = args.start
    if args.mode == "all":
        table = store.namespace("crash").table()
        while True:
            table.insert({"i": i})
            store.sql.kv_set("crash", f"k{i}", i)
            store.sql.flush()
            store.sql.mark_seen(f"m{i}", datetime.now(UTC))
            print(f"ack {i}", flush=True)
            i += 1
    else:
        kind = f"flood{args.start}"
        count = 0
        while True:
            store.sql.record_event(kind, ts=datetime.now(UTC), contact_id="u1", data={"i": count})
            count += 1
            if count % 200 == 0:
                store.sql.flush()
                print(f"flushed {count}", flush=True)


if __name__ == "__main__":
    main()
