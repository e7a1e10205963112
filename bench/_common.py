"""Shared bench helpers: percentiles, a fresh PostgreSQL database per run, quiet logging."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import statistics
import sys
import tempfile
import uuid
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
    """A new, migrated database for this run, dropped afterwards.

    ``DATABASE_URL`` (an admin DSN) wins; otherwise an embedded PostgreSQL (pgserver, the
    same as ``bot.persistence.db.embedded_database_url``) runs under a fresh mkdtemp
    directory that is
    removed at the end.
    """
    import psycopg
    from psycopg import sql
    from psycopg.conninfo import make_conninfo

    from bot.persistence.db import migrate

    admin = os.environ.get("DATABASE_URL")
    server = None
    directory: Path | None = None
    if not admin:
        from pgserver.postgres_server import get_server

        # Short path: the Unix socket lives in it (socket paths are limited to ~100 bytes).
        directory = Path(tempfile.mkdtemp(prefix="rbbench-"))
        server = get_server(directory / "pgdata", cleanup_mode="delete")
        admin = str(server.get_uri())
    name = f"bench_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = make_conninfo(admin, dbname=name)
    migrate(url)
    try:
        yield url
    finally:
        with contextlib.suppress(Exception), psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)")
                         .format(sql.Identifier(name)))
        if server is not None:
            with contextlib.suppress(Exception):
                server.cleanup()
        if directory is not None:
            shutil.rmtree(directory, ignore_errors=True)
