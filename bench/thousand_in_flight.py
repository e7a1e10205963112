"""Benchmark: a thousand rollouts in flight on one instance.

``bench/mass_rollback.py`` at 1,000 services whose rollouts take 300 s, one wave, no held
baseline (the held worker bound, workers x 60 / 300 s, is the baseline): every one of
the thousand approved rollbacks must be waiting on its rollout at the same time, each
must finish, and the parked rate must stay >= 5x the bound. Acks are measured all along
with the same goal as at 50 services (p99 < 300 ms).

Run: ``.venv/bin/python bench/thousand_in_flight.py`` (~10 minutes).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.mass_rollback import main  # noqa: E402

ARGS = ["--services", "1000", "--rollout-seconds", "300", "--held-services", "0",
        "--waves", "1"]

if __name__ == "__main__":
    raise SystemExit(main([*ARGS, *sys.argv[1:]], name="thousand_in_flight"))
