"""The queries that grow with history use indexes at 100k historic rollbacks: the plans the
server actually runs, not a guess from a hand-written EXPLAIN.

psycopg prepares a statement on the server once it has run ``prepare_threshold`` (5)
times on a connection, and after five executions PostgreSQL may switch that prepared
statement to a generic plan, which knows no parameter values: a partial index whose
predicate sits behind a parameter is then out of reach. So each query runs through the
bot's own code (``Store``, ``JobStore``, ``TimelineReads`` on the bot's pool, one
connection) until psycopg has prepared it; the prepared statement is found in
``pg_prepared_statements`` and explained with ``EXPLAIN EXECUTE`` under
``plan_cache_mode = force_generic_plan`` (what the server may settle on) and
``force_custom_plan`` (the first executions). Plans are asserted, never timings.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any, cast

import psycopg
import pytest
from psycopg import sql
from psycopg_pool import ConnectionPool

from bot.domain.lifecycle import ACTIVE
from bot.persistence.db import open_pool
from bot.persistence.jobs import JobStore
from bot.persistence.outbox import Outbox
from bot.persistence.store import Store
from bot.persistence.timeline_reads import TimelineReads
from tests.support.database import fresh_database
from tests.support.history_seed import SERVICES, seed_active, seed_history

HISTORY = 100_000
RUNS = 8  # > psycopg's prepare_threshold (5): the statement is prepared by then


@pytest.fixture(scope="module")
def history_db(pg_url: str) -> Iterator[tuple[str, int]]:
    """100k ended rollbacks with their rows, one live rollback, ANALYZEd; yields (dsn, the
    live rollback's id)."""
    with fresh_database(pg_url, prefix="plans", migrated=True) as dsn:
        seed_history(dsn, HISTORY, analyze=False)
        live = seed_active(dsn, SERVICES[1])
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("ANALYZE")
        yield dsn, live


@pytest.fixture
def pool(history_db: tuple[str, int]) -> Iterator[ConnectionPool]:
    """The bot's pool (``open_pool``) held to one connection: prepared statements live per
    connection, and the explain must look at the one the code prepared."""
    p = open_pool(history_db[0], min_size=1, max_size=1)
    try:
        yield p
    finally:
        p.close()


def _prepared(pool: ConnectionPool, starts_with: str) -> str:
    with pool.connection() as conn:
        rows = conn.execute("SELECT name, statement FROM pg_prepared_statements"
                            " WHERE NOT from_sql").fetchall()
    found = [name for name, text in rows if text.lstrip().startswith(starts_with)]
    assert len(found) == 1, f"no single prepared statement starting {starts_with!r}: {rows}"
    return str(found[0])


def _plan(pool: ConnectionPool, name: str, params: tuple[Any, ...], mode: str) -> dict[str, Any]:
    args = sql.SQL("({})").format(sql.SQL(", ").join(sql.Literal(v) for v in params)) \
        if params else sql.SQL("")
    query = sql.SQL("EXPLAIN (FORMAT JSON) EXECUTE {}{}").format(sql.Identifier(name), args)
    with pool.connection() as conn, conn.transaction():
        conn.execute(sql.SQL("SET LOCAL plan_cache_mode = {}").format(sql.SQL(mode)))
        row = conn.execute(query).fetchone()
    assert row is not None
    plan: dict[str, Any] = row[0][0]["Plan"]
    return plan


def _nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", ()):
        yield from _nodes(child)


def _assert_indexed(pool: ConnectionPool, starts_with: str, params: tuple[Any, ...], *,
                    table: str, index: str | tuple[str, ...]) -> None:
    """Both plans of the prepared statement read ``table`` through ``index`` (one of them),
    never by a sequential scan."""
    name = _prepared(pool, starts_with)
    indexes = (index,) if isinstance(index, str) else index
    for mode in ("force_generic_plan", "force_custom_plan"):
        nodes = list(_nodes(_plan(pool, name, params, mode)))
        on_table = [n for n in nodes if n.get("Relation Name") == table]
        shown = [(n["Node Type"], n.get("Relation Name"), n.get("Index Name")) for n in nodes]
        assert not [n for n in on_table if n["Node Type"] == "Seq Scan"], (mode, shown)
        assert any(n.get("Index Name") in indexes for n in nodes), (mode, shown)


def _run(times: int, call: Callable[[], object]) -> list[object]:
    return [call() for _ in range(times)]


def test_active_for_service_uses_the_partial_index_in_the_generic_plan(
        pool: ConnectionPool, history_db: tuple[str, int]) -> None:
    store = Store(pool)
    live = history_db[1]
    assert {rb.id if rb else None for rb in _run(RUNS, lambda: store.active_for_service(
        SERVICES[1]))} == {live}  # the query still answers what it did
    assert _run(RUNS, lambda: store.active_for_service(SERVICES[0])) == [None] * RUNS
    _assert_indexed(pool, "SELECT * FROM rollbacks WHERE service = $1 AND state ",
                    (SERVICES[0],), table="rollbacks",
                    index="rollbacks_one_active_per_service")


def test_leader_takeover_reads_only_running_jobs(pool: ConnectionPool) -> None:
    jobs = JobStore(pool)
    recovered = _run(RUNS, lambda: jobs.recover_running(older_than_seconds=3600))
    assert recovered == [0] * RUNS  # the live running job is younger than an hour
    _assert_indexed(pool, "UPDATE scheduled_jobs SET status = 'pending', claimed_by = NULL"
                    " WHERE status = 'running'", (3600.0, None), table="scheduled_jobs",
                    index="scheduled_jobs_running")


def test_status_lists_active_rollbacks_through_the_partial_index(
        pool: ConnectionPool, history_db: tuple[str, int]) -> None:
    store = Store(pool)
    assert [[rb.id for rb in found] for found in _run(RUNS, lambda: store.in_states(ACTIVE))
            ] == [[history_db[1]]] * RUNS
    _assert_indexed(pool, "SELECT * FROM rollbacks WHERE state ", (), table="rollbacks",
                    index="rollbacks_one_active_per_service")
    # What ``/rollback status`` runs: the newest twenty, and the count when there are more.
    assert [[rb.id for rb in found] for found in _run(
        RUNS, lambda: store.in_states(ACTIVE, newest=20))] == [[history_db[1]]] * RUNS
    assert _run(RUNS, lambda: store.count_in_states(ACTIVE)) == [1] * RUNS
    _assert_indexed(pool, "SELECT * FROM (SELECT * FROM rollbacks WHERE state ", (20,),
                    table="rollbacks", index="rollbacks_one_active_per_service")
    _assert_indexed(pool, "SELECT count(*) FROM rollbacks WHERE state ", (),
                    table="rollbacks", index="rollbacks_one_active_per_service")


def test_history_of_a_service_reads_its_newest_rows_only(pool: ConnectionPool) -> None:
    store = Store(pool)
    newest = _run(RUNS, lambda: [rb.id for rb in store.history(SERVICES[2], limit=10)])
    assert len(newest[0]) == 10 and newest[0] == sorted(newest[0], reverse=True)
    _assert_indexed(pool, "SELECT * FROM rollbacks WHERE service = $1 ORDER BY id DESC",
                    (SERVICES[2], 10), table="rollbacks",
                    # newest ids backwards until ten match (a common service), or the
                    # service's own rows by 001's index (a rare one): both stop early
                    index=("rollbacks_pkey", "rollbacks_service_created"))


def test_claim_next_and_due_jobs_stay_on_their_partial_indexes(pool: ConnectionPool) -> None:
    store, jobs = Store(pool), JobStore(pool)
    assert _run(RUNS, lambda: store.claim_next(owner="plans", lease_seconds=30)) == [None] * RUNS
    now = datetime.now(UTC)
    assert _run(RUNS, lambda: jobs.due(now)) == [[]] * RUNS  # the live job is due later
    # Either partial index holds only live rollbacks (claimable ones are among the active).
    _assert_indexed(pool, "SELECT id FROM rollbacks WHERE state IN", (), table="rollbacks",
                    index=("rollbacks_claimable", "rollbacks_one_active_per_service"))
    _assert_indexed(pool, "SELECT * FROM scheduled_jobs WHERE status = 'pending' AND due_at",
                    (now, 100), table="scheduled_jobs", index="scheduled_jobs_due")


def test_a_rollbacks_timeline_reads_its_posts_and_jobs_by_index(
        pool: ConnectionPool, history_db: tuple[str, int]) -> None:
    reads = TimelineReads(pool)
    some = history_db[1] - 1  # a historic rollback with posts and jobs
    assert {len(rows) for rows in _run(RUNS, lambda: reads.outbox(some))} == {2}
    assert {len(rows) for rows in _run(RUNS, lambda: reads.jobs(some))} == {4}
    _assert_indexed(pool, "SELECT key, channel, status, attempts, created_at, sent_at FROM",
                    (some,), table="outbox", index="outbox_rollback")
    _assert_indexed(pool, "SELECT id, kind, due_at, status, attempts, finished_at",
                    (some,), table="scheduled_jobs", index="scheduled_jobs_rollback")


def test_per_request_lookups_stay_on_their_keys(
        pool: ConnectionPool, history_db: tuple[str, int]) -> None:
    """The delivery dedupe, an outbox lookup by key and the cancel of a rollback's timers:
    flat already (primary keys, the pending-jobs index), kept that way."""
    store, jobs = Store(pool), JobStore(pool)
    outbox = Outbox(pool, cast(Any, None))  # sent_ts reads the table only, never Slack
    live = history_db[1]
    assert _run(RUNS, lambda: outbox.sent_ts(f"seed:{live - 1}:1")) == [
        "1700000000.000001"] * RUNS
    assert _run(RUNS, lambda: jobs.cancel(rollback_id=live - 1)) == [0] * RUNS
    assert sum(1 for n in range(RUNS) if store.first_delivery(f"plans:{n}")) == RUNS
    _assert_indexed(pool, "SELECT ts FROM outbox WHERE key = $1", (f"seed:{live - 1}:1",),
                    table="outbox", index="outbox_pkey")
    _assert_indexed(pool, "UPDATE scheduled_jobs SET status = 'cancelled'", (live - 1,),
                    table="scheduled_jobs",
                    index=("scheduled_jobs_due", "scheduled_jobs_rollback"))
    name = _prepared(pool, "INSERT INTO processed_requests")
    for mode in ("force_generic_plan", "force_custom_plan"):
        plan = _plan(pool, name, ("plans:x",), mode)
        # An insert of one row whose conflict check is a probe of the unique key: no scan.
        assert [n["Node Type"] for n in _nodes(plan)] == ["ModifyTable", "Result"], plan
        assert plan["Conflict Resolution"] == "NOTHING"
