"""Shared bench helpers: percentiles, a fresh PostgreSQL database per run, quiet logging."""

from __future__ import annotations

import contextlib
import logging
import statistics
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

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


RESULTS_DIR = ROOT / "bench" / "results"


def commit_described() -> str:
    """The short commit the figures describe, ``+dirty`` when the tree has local changes
    (such figures describe no commit: ``bench/readme_table.py`` refuses them)."""
    import subprocess

    def git(*argv: str) -> str:
        return subprocess.run(["git", *argv], cwd=ROOT, capture_output=True, text=True,
                              check=False).stdout.strip()

    sha = git("rev-parse", "--short=7", "HEAD") or "unknown"
    # The results a bench run writes are not local changes to what it measures: without
    # this exclusion every bench after the first of a ``make bench`` saw a dirty tree.
    changed = git("status", "--porcelain", "--untracked-files=no", "--", ".",
                  ":(exclude)bench/results")
    return sha + ("+dirty" if changed else "")


def record(bench: str, rows: Sequence[dict[str, object]]) -> bool:
    """Write this run's figures to ``bench/results/<bench>.json`` (README's table is
    generated from these files by ``bench/readme_table.py``); True when every row met its
    goal. Each row: ``what`` (the case), ``result`` (the figure as printed), ``target``
    (the goal in words) and ``ok`` (bool)."""
    import json
    import shlex

    for row in rows:
        missing = {"what", "result", "target", "ok"} - set(row)
        if missing:
            raise ValueError(f"bench row lacks {sorted(missing)}: {row}")
    script = Path(sys.argv[0]).resolve()
    try:
        shown = script.relative_to(ROOT)
    except ValueError:
        shown = Path(script.name)
    command = " ".join(["python", str(shown), *map(shlex.quote, sys.argv[1:])])
    ok = all(bool(row["ok"]) for row in rows)
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    (RESULTS_DIR / f"{bench}.json").write_text(json.dumps(
        {"bench": bench, "command": command, "commit": commit_described(), "ok": ok,
         "rows": list(rows)}, indent=1) + "\n")
    return ok


def slash_fields(stack: Any, user: str, text: str,
                 channel: str = "inc-hotel-voice-bot") -> dict[str, str]:
    """The form fields Slack posts for ``/rollback <text>`` typed by ``user`` in ``channel``
    of a ``SandboxStack``'s emulator (a fresh response_url each time)."""
    from sandbox.slack import payloads

    em = stack.emulator
    ws = em.ws
    who, where = ws.resolve_user(user), ws.resolve_channel(channel)
    return payloads.slash_command(
        ws, app_id=em.app_id, verification_token="sandbox-verification-token", user=who,
        channel=where, command="/rollback", text=text,
        response_url=em.issue_response_url(channel=where.id, user=who.id),
        trigger_id="(unique per request)")
