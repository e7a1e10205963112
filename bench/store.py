"""Benchmark: the store queries the bot runs per request, approval and tick, at 1k / 10k / 100k
historic rollbacks, side by side; and what housekeeping leaves of an ended rollback.

Run: ``.venv/bin/python bench/store.py`` (~1-2 min: three databases on one embedded
PostgreSQL seeded with 1k, 10k and 100k ended rollbacks by ``tests.support.history_seed``,
its lean shape of ~18 rows per rollback; 400 timed calls of each query on each, in
interleaved rounds). ``--full`` seeds the ~85 rows per rollback issue 16 measured (slower);
``--sizes 1000,100000 --n 1000`` for other runs.

Each query goes through the bot's own code (``Store``, ``JobStore`` on ``open_pool``), warmed
past psycopg's prepare threshold so the server-side prepared statement (and the plan
PostgreSQL settles on for it) is what is timed. Prints p50/p99 per size and the ratios of
the largest size to the smallest; goal: p50 ratio <= 2 for every query (flat: indexed).

Then retention: a separate database with 10k rollbacks of the full shape, all ended 30 to
400 days ago, before and after one ``Housekeeping.run()`` with the default windows: rows
and bytes per rollback of each table (bytes after ``VACUUM FULL`` of the purged tables, so
the figure is what the rows occupy, not the free space PostgreSQL keeps for reuse). Goal:
no jobs, posts or samples left of rollbacks past every window; the audit trail whole.
Exit status 1 when a goal is missed.
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
import uuid
from collections.abc import Callable
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import percentile, quiet_logging, record  # noqa: E402
from bot.domain.config import RetentionSettings  # noqa: E402
from bot.domain.lifecycle import ACTIVE  # noqa: E402
from bot.persistence.db import open_pool  # noqa: E402
from bot.persistence.housekeeping import Housekeeping  # noqa: E402
from bot.persistence.jobs import JobStore  # noqa: E402
from bot.persistence.store import Store  # noqa: E402
from tests.support import database  # noqa: E402
from tests.support.history_seed import SERVICES, Shape, seed_active, seed_history  # noqa: E402

RATIO_GOAL = 2.0
WARMUP = 12  # > psycopg's prepare_threshold (5) + PostgreSQL's five custom plans
TABLES = ("rollbacks", "rollback_steps", "audit_events", "scheduled_jobs", "outbox",
          "monitors", "monitor_samples", "aftercare", "processed_requests")
BOOKKEEPING = ("scheduled_jobs", "outbox", "monitor_samples")


def queries(store: Store, jobs: JobStore, newest: int) -> dict[str, Callable[[], object]]:
    """What the bot runs: a request (dedupe, one-active check), ``status`` / ``history``, the
    executor's claim, the scheduler's tick and a leader takeover."""
    keys = (f"bench:{uuid.uuid4().hex}:{i}" for i in itertools.count())
    ids = itertools.cycle(range(max(1, newest - 500), newest + 1))
    return {
        "first_delivery": lambda: store.first_delivery(next(keys)),
        "active_for_service": lambda: store.active_for_service(SERVICES[0]),
        "status (active list)": lambda: store.in_states(ACTIVE),
        "status RB-n (get)": lambda: store.get(next(ids)),
        "history": lambda: store.history(SERVICES[0], limit=10),
        "claim_next": lambda: store.claim_next(owner="bench", lease_seconds=30),
        "due jobs": lambda: jobs.due(datetime.now(UTC)),
        "recover_running": lambda: jobs.recover_running(older_than_seconds=3600),
    }


def timed(call: Callable[[], object], n: int) -> list[float]:
    out = []
    for _ in range(n):
        began = time.perf_counter()
        call()
        out.append(time.perf_counter() - began)
    return out


def measure(dsns: dict[int, str], *, n: int, rounds: int) -> dict[int, dict[str, list[float]]]:
    """Interleaved rounds: every size runs every query n/rounds times per round, the order
    of sizes alternating, so machine noise hits all sizes alike."""
    with ExitStack() as stack:
        subjects = {}
        for size, dsn in dsns.items():
            pool = open_pool(dsn, min_size=1, max_size=1)  # one connection: its statements
            stack.callback(pool.close)
            store, jobs = Store(pool), JobStore(pool)
            newest = seed_active(dsn, SERVICES[1]) - 1
            subjects[size] = queries(store, jobs, newest)
        times: dict[int, dict[str, list[float]]] = {s: {} for s in dsns}
        for qs in subjects.values():
            for call in qs.values():
                timed(call, WARMUP)
        per_round = max(1, n // rounds)
        order = list(dsns)
        for r in range(rounds):
            for size in order if r % 2 == 0 else reversed(order):
                for name, call in subjects[size].items():
                    times[size].setdefault(name, []).extend(timed(call, per_round))
        return times


def table_rows(dsn: str) -> dict[str, tuple[int, int]]:
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        return {t: tuple(conn.execute(  # type: ignore[misc]
            f"SELECT count(*), pg_total_relation_size('{t}') FROM {t}").fetchone())
            for t in TABLES}


def retention(admin: str, *, shape: Shape, count: int) -> tuple[list[dict[str, object]], bool]:
    import psycopg

    with database.fresh_database(admin, prefix="benchret", migrated=True,
                                 quiet_drop=True) as dsn:
        seed_history(dsn, count, shape=shape, oldest_days=400, newest_days=31)
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("VACUUM FULL")
        before = table_rows(dsn)
        pool = open_pool(dsn, min_size=1, max_size=2)
        try:
            began = time.perf_counter()
            done = Housekeeping(store=Store(pool), jobs=JobStore(pool),
                                settings=RetentionSettings()).run()
            took = time.perf_counter() - began
        finally:
            pool.close()
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("VACUUM FULL")
        after = table_rows(dsn)
    print(f"\nretention: {count:,} rollbacks ended 31-400 days ago, {shape.rows} rows each; "
          f"one housekeeping run took {took:.1f} s: {done}")
    print(f"{'table':20} {'rows/rb before':>15} {'after':>8} {'bytes/rb before':>16} "
          f"{'after':>8}")
    for t in TABLES:
        (rb, bb), (ra, ba) = before[t], after[t]
        print(f"{t:20} {rb / count:15.1f} {ra / count:8.1f} {bb / count:16.0f} {ba / count:8.0f}")
    total_b = sum(b for _, b in before.values()) / count
    total_a = sum(b for _, b in after.values()) / count
    print(f"{'total':20} {sum(r for r, _ in before.values()) / count:15.1f} "
          f"{sum(r for r, _ in after.values()) / count:8.1f} {total_b:16.0f} {total_a:8.0f}")
    left = {t: after[t][0] for t in (*BOOKKEEPING, "processed_requests")}
    audit_kept = after["audit_events"][0] == before["audit_events"][0] \
        and after["rollbacks"][0] == before["rollbacks"][0]
    ok = not any(left.values()) and audit_kept
    rows: list[dict[str, object]] = [
        {"what": "bookkeeping rows per ended rollback after housekeeping",
         "result": f"{sum(left.values()) / count:.1f} (before "
                   f"{sum(before[t][0] for t in left) / count:.1f})",
         "target": "0 past every retention window", "ok": not any(left.values())},
        {"what": "bytes per ended rollback after housekeeping",
         "result": f"{total_a:,.0f} (before {total_b:,.0f})",
         "target": "the record only (rollback, steps, audit, monitor)", "ok": audit_kept},
    ]
    return rows, ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument("--n", type=int, default=400, help="timed calls per query and size")
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--full", action="store_true",
                        help="seed ~85 rows per rollback (issue 16's shape) for the timings")
    parser.add_argument("--retention-count", type=int, default=10_000)
    args = parser.parse_args()
    quiet_logging()
    sizes = sorted(int(s) for s in args.sizes.split(","))
    shape = Shape.full() if args.full else Shape()
    with database.postgres_server(prefix="rbbench-", cleanup_mode="delete",
                                  quiet_cleanup=True) as admin, ExitStack() as stack:
        dsns = {}
        for size in sizes:
            dsn = stack.enter_context(database.fresh_database(
                admin, prefix=f"benchstore{size}", migrated=True, quiet_drop=True))
            began = time.perf_counter()
            seed_history(dsn, size, shape=shape)
            print(f"seeded {size:>7,} rollbacks x {shape.rows} rows in "
                  f"{time.perf_counter() - began:5.1f} s", flush=True)
            dsns[size] = dsn
        times = measure(dsns, n=args.n, rounds=args.rounds)
        small, large = sizes[0], sizes[-1]
        print(f"\n{'query':22}" + "".join(f"{f'{s:,} p50/p99 ms':>22}" for s in sizes)
              + f"{'p50 ratio':>11}{'p99 ratio':>11}")
        rows: list[dict[str, object]] = []
        ok = True
        for name in times[small]:
            p50 = {s: percentile(times[s][name], 50) for s in sizes}
            p99 = {s: percentile(times[s][name], 99) for s in sizes}
            r50, r99 = p50[large] / p50[small], p99[large] / p99[small]
            met = r50 <= RATIO_GOAL
            ok &= met
            print(f"{name:22}" + "".join(f"{p50[s] * 1e3:12.2f} /{p99[s] * 1e3:7.2f}"
                                          for s in sizes)
                  + f"{r50:11.2f}{r99:11.2f}" + ("" if met else "  MISSED"))
            rows.append({"what": f"{name}: p50 {large:,} / {small:,} rollbacks",
                         "result": f"{r50:.2f} (p50 {p50[small] * 1e3:.2f} -> "
                                   f"{p50[large] * 1e3:.2f} ms, p99 ratio {r99:.2f})",
                         "target": f"<= {RATIO_GOAL:g}", "ok": met})
        ret_rows, ret_ok = retention(admin, shape=Shape.full(), count=args.retention_count)
    rows += ret_rows
    ok = record("store", rows) and ok and ret_ok
    print("\nall goals met" if ok else "\nMISSED a goal")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
