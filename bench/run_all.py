"""Run every bench in turn (``make bench``), then say which missed its goal.

Each bench exits 0 when it met its goals and non-zero when it missed one (or could not
run); a miss does not stop the others. The exit status is 1 when any bench missed. Each
bench writes its figures to ``bench/results/<name>.json``; ``bench/readme_table.py``
turns them into README's performance table.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

# In the order README lists them: what users wait on first.
BENCHES = (
    "ack_latency.py",
    "approval_latency.py",
    "ack_saturation.py",
    "mass_rollback.py",
    "thousand_in_flight.py",
    "monitors.py",
    "store.py",
    "hostile.py",
    "charts.py",
    "k8s_rollback.py",
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("only", nargs="*", help="bench scripts to run (default: all)")
    args = parser.parse_args()
    chosen = args.only or [b for b in BENCHES if (HERE / b).exists()]
    outcome: dict[str, tuple[int, float]] = {}
    for bench in chosen:
        print(f"=== {bench}", flush=True)
        began = time.perf_counter()
        rc = subprocess.run([sys.executable, str(HERE / bench)], check=False).returncode
        outcome[bench] = (rc, time.perf_counter() - began)
    print("=== summary")
    for bench, (rc, took) in outcome.items():
        print(f"  {bench:22} {'met its goals' if rc == 0 else f'MISSED (exit {rc})':20} "
              f"{took:7.1f}s")
    missed = [b for b, (rc, _) in outcome.items() if rc != 0]
    if missed:
        print(f"{len(missed)} of {len(outcome)} benches missed: {', '.join(missed)}")
        return 1
    print(f"all {len(outcome)} benches met their goals; "
          f"`python bench/readme_table.py` writes README's table")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
