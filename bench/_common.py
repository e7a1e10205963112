"""Shared bench helpers: percentiles, a fresh PostgreSQL database per run, quiet logging."""

from __future__ import annotations

import contextlib
import logging
import statistics
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def percentile(values: Sequence[float], pct: float) -> float:
    """Linear-interpolated percentile (numpy's default method)."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    pos = pct / 100 * (len(ordered) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def summary(values: Sequence[float]) -> dict[str, float]:
    return {"p50": percentile(values, 50), "p90": percentile(values, 90),
            "p99": percentile(values, 99), "mean": statistics.fmean(values) if values else 0.0,
            "max": max(values) if values else 0.0}


def ms(seconds: float) -> str:
    return f"{seconds * 1000:7.2f}"


def quiet_logging() -> None:
    """Benchmarks print their own table; keep the bot's INFO chatter out of it."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)  # c=20 > threads is on purpose


@contextlib.contextmanager
def fresh_database() -> Iterator[str]:
    """A new, migrated database for this run (``bench_<random>``), dropped afterwards.

    ``DATABASE_URL`` (an admin DSN) wins; otherwise an embedded PostgreSQL (pgserver, the
    same as ``bot.persistence.db.embedded_database_url``) runs under a fresh mkdtemp
    directory that is removed at the end. The same helpers as the tests'
    (``tests.support.database``).
    """
    from tests.support import database

    with database.postgres_server(prefix="rbbench-", cleanup_mode="delete",
                                  quiet_cleanup=True) as admin, \
            database.fresh_database(admin, prefix="bench", migrated=True,
                                    quiet_drop=True) as url:
        yield url
