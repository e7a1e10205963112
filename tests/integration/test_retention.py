"""Retention: housekeeping keeps bookkeeping tables bounded and the audit trail whole.

The real bot (``make_harness``) on real PostgreSQL; housekeeping runs on the leader
scheduler's ticks with the injected clock. Rows are aged by moving their database
timestamps back (the purge compares with the database clock that stamped them).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import psycopg

from bot.execution.scheduler import LeaderScheduler
from bot.persistence.housekeeping import Housekeeping
from handlers import ids
from tests.e2e.conftest import Harness
from tests.e2e.conftest import make_harness as make_harness  # noqa: F401  (fixture)

SERVICE = "hotel-voice-bot"


def _sql(db: str, query: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    with psycopg.connect(db, autocommit=True) as conn:
        cur = conn.execute(query.encode(), params)
        return cur.fetchall() if cur.description else []


def _count(db: str, table: str, where: str = "true") -> int:
    return int(_sql(db, f"SELECT count(*) FROM {table} WHERE {where}")[0][0])


def _completed_then_pending(h: Harness) -> tuple[int, int]:
    """One rollback that ended (completed) and one still waiting for approval."""
    h.request(f"{SERVICE} --severity P0 --scope app", user="bob")
    msg = h.rollback_message()
    done = h.bot.store.history(SERVICE)[0].id
    h.click(msg, ids.APPROVE, "bob")
    h.wait_state(done, "completed")
    h.request(f"{SERVICE} --severity P1 --to 1 --reason again", user="alice")
    h.emulator.wait_for(lambda: len(h.bot.store.history(SERVICE)) == 2, timeout=15)
    return done, h.bot.store.history(SERVICE)[0].id


def test_housekeeping_purges_old_bookkeeping_and_keeps_the_audit_trail(
        make_harness: Callable[..., Harness], db: str) -> None:
    h = make_harness()
    assert isinstance(h.bot.scheduler.maintenance, Housekeeping)  # wired in create_app
    done, pending = _completed_then_pending(h)
    # 3,116 delivery ids from a fuzz run two days ago, and the ones of this test (fresh).
    fresh_keys = _count(db, "processed_requests")
    _sql(db, "INSERT INTO processed_requests (key, created_at) SELECT 'fuzz:' || g,"
             " now() - interval '2 days' FROM generate_series(1, 3116) g")
    # The ended rollback finished 15 days ago, and so did jobs and posts of both; the
    # pending one's must stay (its dedupe keys still guard it).
    _sql(db, "UPDATE rollbacks SET finished_at = now() - interval '15 days' WHERE id = %s",
         (done,))
    _sql(db, "INSERT INTO outbox (key, rollback_id, status, sent_at)"
             " VALUES ('old-post', %s, 'sent', now())", (pending,))
    _sql(db, "UPDATE outbox SET sent_at = now() - interval '15 days'")
    for rid in (done, pending):
        _sql(db, "INSERT INTO scheduled_jobs (kind, rollback_id, due_at, status, finished_at)"
                 " SELECT 'old_job', %s, now() - interval '15 days', s,"
                 " now() - interval '15 days'"
                 " FROM unnest(ARRAY['done', 'cancelled', 'failed']) s",
             (rid,))
    _sql(db, "INSERT INTO scheduled_jobs (kind, due_at, status, finished_at) VALUES"
             " ('old_job', now(), 'done', now() - interval '15 days'),"
             " ('recent_job', now(), 'done', now() - interval '13 days')")
    audit = _count(db, "audit_events")
    assert _count(db, "outbox", f"rollback_id = {done}") >= 1 and audit > 0

    h.tick()  # the leader's first tick runs housekeeping (after this tick's jobs)

    assert _count(db, "processed_requests") == fresh_keys
    assert _count(db, "scheduled_jobs", "kind = 'old_job'") == 3  # the pending rollback's
    assert _count(db, "scheduled_jobs", f"kind = 'old_job' AND rollback_id = {pending}") == 3
    assert _count(db, "scheduled_jobs", "kind = 'recent_job'") == 1
    old = "sent_at < now() - interval '14 days'"
    assert _count(db, "outbox", f"rollback_id = {done} AND {old}") == 0
    assert _count(db, "outbox", f"rollback_id = {pending} AND {old}") == 1  # still active
    assert _count(db, "audit_events") >= audit  # the audit trail is never purged
    assert _count(db, "audit_events", f"rollback_id = {done}") > 0
    assert _count(db, "rollback_steps", f"rollback_id = {done}") > 0

    # The next run is an interval later (60 min by default), not before.
    _sql(db, "INSERT INTO processed_requests (key, created_at)"
             " VALUES ('late', now() - interval '25 hours')")
    h.clock.advance(minutes=59)
    h.tick()
    assert _count(db, "processed_requests", "key = 'late'") == 1
    h.clock.advance(minutes=1)
    h.tick()
    assert _count(db, "processed_requests", "key = 'late'") == 0


def test_retention_ages_come_from_the_configuration(
        make_harness: Callable[..., Harness], db: str) -> None:
    h = make_harness(config_overrides=lambda d: d.update(retention={
        "interval_minutes": 15, "processed_requests_hours": 48, "finished_jobs_days": 30}))
    _sql(db, "INSERT INTO processed_requests (key, created_at) VALUES"
             " ('day-old', now() - interval '30 hours'), ('old', now() - interval '50 hours')")
    assert h.tick() == 0  # upkeep is not a job: the count of jobs run is unchanged
    assert _keys(db) == ["day-old"]
    _sql(db, "INSERT INTO processed_requests (key, created_at)"
             " VALUES ('old-2', now() - interval '50 hours')")
    h.clock.advance(minutes=14)
    h.tick()
    assert _keys(db) == ["day-old", "old-2"]
    h.clock.advance(minutes=1)
    h.tick()
    assert _keys(db) == ["day-old"]


def test_only_the_leader_does_the_upkeep(make_harness: Callable[..., Harness], db: str) -> None:
    h = make_harness()
    h.tick()  # the harness's scheduler takes the leader lock
    other = LeaderScheduler(database_url=db, jobs=h.bot.service.jobs,
                            run_job=h.bot.job_router.run, clock=h.clock,
                            maintenance=Housekeeping(
                                store=h.bot.store, jobs=h.bot.service.jobs,
                                settings=h.bot.config.retention))
    try:
        _sql(db, "INSERT INTO processed_requests (key, created_at)"
                 " VALUES ('old', now() - interval '50 hours')")
        assert other.tick(now=h.clock()) == 0
        assert _keys(db) == ["old"]  # a replica that is not the leader touched nothing
    finally:
        other.stop()


def test_a_failing_upkeep_never_fails_the_tick(make_harness: Callable[..., Harness],
                                               db: str) -> None:
    h = make_harness()
    _sql(db, "ALTER TABLE processed_requests RENAME TO processed_requests_gone")
    try:
        h.tick()  # logged, retried later; the jobs of this tick still ran
    finally:
        _sql(db, "ALTER TABLE processed_requests_gone RENAME TO processed_requests")
    _sql(db, "INSERT INTO processed_requests (key, created_at)"
             " VALUES ('old', now() - interval '50 hours')")
    h.clock.advance(minutes=5)
    h.tick()  # the retry after a failure comes sooner than the interval
    assert _keys(db, "key = 'old'") == []


def _keys(db: str, where: str = "position(':' in key) = 0") -> list[str]:
    return sorted(str(r[0]) for r in _sql(db, f"SELECT key FROM processed_requests WHERE {where}"))
