"""Retention over a real rollback and a seeded history: what a rollback leaves behind is
bounded, its record is not.

A real rollback runs through the bot (``make_harness``: Slack emulator, fake platform, the
demo service's health endpoint) to a stability report and completion; then its timestamps
are moved back in the database (retention compares ages with the database clock that
stamped them) and the leader's housekeeping tick runs. Next to it, a seeded history
(``tests.support.history_seed``) spans 60 to 5 days ago, so each retention window has rows
on both sides of it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg

from bot.persistence.aftercare_store import AftercareStore
from bot.persistence.timeline_reads import TimelineReads
from bot.usecases.timeline import TimelineReader
from sandbox.demo import DemoService
from tests.e2e.conftest import Harness
from tests.e2e.conftest import make_harness as make_harness  # noqa: F401  (fixture)
from tests.support.history_seed import Shape, seed_history

BOOKKEEPING = ("scheduled_jobs", "outbox", "monitor_samples")
RECORD = ("rollbacks", "rollback_steps", "audit_events", "aftercare", "monitors")


def _sql(db: str, query: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    with psycopg.connect(db, autocommit=True) as conn:
        cur = conn.execute(query.encode(), params)
        return cur.fetchall() if cur.description else []


def _rows_of(db: str, rollback_id: int) -> dict[str, int]:
    """Rows per table that belong to one rollback."""
    counts = {t: int(_sql(db, f"SELECT count(*) FROM {t} WHERE "
                              f"{'id' if t == 'rollbacks' else 'rollback_id'} = %s",
                          (rollback_id,))[0][0])
              for t in (*RECORD, "scheduled_jobs", "outbox")}
    counts["monitor_samples"] = int(_sql(
        db, "SELECT count(*) FROM monitor_samples s JOIN monitors m ON m.id = s.monitor_id"
            " WHERE m.rollback_id = %s", (rollback_id,))[0][0])
    return counts


def _monitoring(demo_url: str) -> Callable[[dict[str, Any]], None]:
    def change(data: dict[str, Any]) -> None:
        svc = data["services"]["hotel-voice-bot"]
        svc["health"] = {"url": f"{demo_url}/api/health", "timeout_seconds": 2, "samples": 3}
        svc["monitoring"] = {"duration_seconds": 600, "interval_seconds": 300}
    return change


def _complete_with_a_report(h: Harness) -> int:
    """A P1 rollback through a 10-minute window (two checks) to completed."""
    rid, _ = h.request_and_approve_p1()
    h.wait_state(rid, "monitoring")
    for _ in range(2):
        h.clock.advance(minutes=5)
        h.tick()
    h.wait_state(rid, "completed")
    h.tick()  # what completion schedules (stakeholder update, reminders)
    return rid


def test_an_old_rollback_keeps_its_record_and_sheds_its_bookkeeping(
        make_harness: Callable[..., Harness], demo: DemoService, db: str) -> None:
    h = make_harness(config_overrides=_monitoring(demo.url))
    rid = _complete_with_a_report(h)
    before = _rows_of(db, rid)
    # What a real rollback leaves: every one of these tables has its rows.
    assert all(before[t] > 0 for t in (*RECORD, *BOOKKEEPING)), before
    monitor = AftercareStore(h.bot.store.pool).monitors(rid)[0]
    assert monitor.status == "stable" and monitor.result.get("summary")

    # Forty days later (past the 14-day job/post window and the 30-day sample window);
    # open reminders keep their pending jobs, which are not bookkeeping yet.
    _sql(db, "UPDATE rollbacks SET finished_at = now() - interval '40 days' WHERE id = %s",
         (rid,))
    _sql(db, "UPDATE monitors SET finished_at = now() - interval '40 days'"
             " WHERE rollback_id = %s", (rid,))
    _sql(db, "UPDATE outbox SET sent_at = now() - interval '40 days' WHERE rollback_id = %s",
         (rid,))
    _sql(db, "UPDATE scheduled_jobs SET finished_at = now() - interval '40 days'"
             " WHERE rollback_id = %s AND status <> 'pending'", (rid,))
    pending = int(_sql(db, "SELECT count(*) FROM scheduled_jobs WHERE rollback_id = %s"
                           " AND status = 'pending'", (rid,))[0][0])
    sent_posts = int(_sql(db, "SELECT count(*) FROM outbox WHERE rollback_id = %s"
                              " AND status = 'sent'", (rid,))[0][0])

    h.clock.advance(hours=2)  # the next housekeeping run is due
    h.tick()

    after = _rows_of(db, rid)
    assert after["monitor_samples"] == 0
    assert after["scheduled_jobs"] == pending  # finished ones gone, open timers kept
    assert after["outbox"] == before["outbox"] - sent_posts == 0
    assert {t: after[t] for t in RECORD} == {t: before[t] for t in RECORD} | {
        "audit_events": after["audit_events"]}
    assert after["audit_events"] >= before["audit_events"]  # never purged
    pruned = AftercareStore(h.bot.store.pool).monitors(rid)[0]
    assert pruned.samples_pruned_at is not None and pruned.result == monitor.result
    # The timeline says the per-check lines were pruned instead of silently lacking them.
    pool = h.bot.store.pool
    reader = TimelineReader(store=h.bot.store, aftercare_store=AftercareStore(pool),
                            reads=TimelineReads(pool))
    window = [e for e in reader.timeline(rid).entries if e.name == "window stable"]
    assert window and "checks_pruned_at" in window[0].facts


def test_each_window_keeps_what_is_younger_than_it(
        make_harness: Callable[..., Harness], db: str) -> None:
    h = make_harness()
    # 56 rollbacks created evenly from 60 to 4 days ago, each ended two hours after.
    first, last = seed_history(db, 56, shape=Shape(), oldest_days=60, newest_days=4)
    ended_age = ("extract(epoch FROM now() - r.finished_at) / 86400")

    def ages(table: str, join: str) -> list[float]:
        return [float(a) for (a,) in _sql(
            db, f"SELECT DISTINCT {ended_age} FROM {table} {join}"
                " WHERE r.id BETWEEN %s AND %s", (first, last))]

    samples = ("monitor_samples s JOIN monitors m ON m.id = s.monitor_id"
               " JOIN rollbacks r ON r.id = m.rollback_id")
    assert min(ages("monitor_samples", samples.split(" ", 1)[1])) < 30 < max(
        ages("monitor_samples", samples.split(" ", 1)[1]))
    audit = int(_sql(db, "SELECT count(*) FROM audit_events")[0][0])

    h.tick()  # the leader's first tick does the upkeep

    kept_samples = ages("monitor_samples", samples.split(" ", 1)[1])
    kept_jobs = ages("scheduled_jobs", "JOIN rollbacks r ON r.id = scheduled_jobs.rollback_id")
    kept_posts = ages("outbox", "JOIN rollbacks r ON r.id = outbox.rollback_id")
    assert kept_samples and max(kept_samples) < 30  # retention.monitor_samples_days
    assert kept_jobs and max(kept_jobs) < 14        # retention.finished_jobs_days
    assert kept_posts and max(kept_posts) < 14
    assert int(_sql(db, "SELECT count(*) FROM rollbacks WHERE id BETWEEN %s AND %s",
                    (first, last))[0][0]) == 56
    assert int(_sql(db, "SELECT count(*) FROM audit_events")[0][0]) >= audit
    assert int(_sql(db, "SELECT count(*) FROM monitors m WHERE m.rollback_id"
                        " BETWEEN %s AND %s AND samples_pruned_at IS NOT NULL",
                    (first, last))[0][0]) == sum(
        1 for (a,) in _sql(db, "SELECT extract(epoch FROM now() - finished_at) / 86400"
                               " FROM rollbacks WHERE id BETWEEN %s AND %s", (first, last))
        if float(a) > 30)


def test_the_sample_window_comes_from_the_configuration(
        make_harness: Callable[..., Harness], db: str) -> None:
    h = make_harness(config_overrides=lambda d: d.update(retention={
        "monitor_samples_days": 50}))
    first, last = seed_history(db, 56, shape=Shape(), oldest_days=60, newest_days=4)
    h.tick()
    kept = [float(a) for (a,) in _sql(
        db, "SELECT DISTINCT extract(epoch FROM now() - r.finished_at) / 86400"
            " FROM monitor_samples s JOIN monitors m ON m.id = s.monitor_id"
            " JOIN rollbacks r ON r.id = m.rollback_id")]
    assert 30 < max(kept) < 50


def test_check_config_names_a_bad_retention_key(tmp_path: Path) -> None:
    import subprocess
    import sys

    import yaml

    root = Path(__file__).resolve().parents[2]
    data = yaml.safe_load((root / "rollback.example.yml").read_text())
    for bad, needle in (({"monitor_samples_days": 0}, "retention.monitor_samples_days"),
                        ({"samples_days": 30}, "retention.samples_days")):
        data["retention"] = bad
        path = tmp_path / "bad.yml"
        path.write_text(yaml.safe_dump(data))
        out = subprocess.run([sys.executable, "-m", "bot.runtime.cli", "check-config",
                              str(path)], capture_output=True, text=True, cwd=root,
                             timeout=60, check=False)
        assert out.returncode == 2 and needle in out.stderr, out.stderr
