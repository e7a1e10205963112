"""Historic rollbacks in bulk, for the query-plan test, the retention test and the store bench.

``seed_history(dsn, count)`` appends ``count`` ended rollbacks with the bookkeeping rows a
real one leaves behind (steps, audit events, finished jobs, sent posts, a monitor with its
samples, Slack delivery ids), in a handful of set-based ``INSERT … SELECT
generate_series`` statements: 100k rollbacks take seconds, not the hours the bot would.
``Shape`` says how many rows of each kind a rollback gets; ``Shape.full()`` is what the
issue measured (~90 rows per rollback), ``Shape()`` a leaner one that keeps a test quick
with the same tables populated. Then ``ANALYZE`` so plans see the sizes.
"""

from __future__ import annotations

from dataclasses import dataclass

import psycopg

__all__ = ["SERVICES", "Shape", "seed_active", "seed_history"]

# The first is the runbook's service; the others share the history round robin.
SERVICES = ("hotel-voice-bot", "payments-api", "search-api", "checkout-web", "notifier")

_TERMINAL = ("completed", "completed", "completed", "failed", "rejected", "cancelled",
             "expired")  # mostly completed, like a real history


@dataclass(frozen=True)
class Shape:
    """Rows per historic rollback (the rollback row itself aside)."""

    steps: int = 2
    audit: int = 3
    jobs: int = 4          # finished scheduled_jobs (monitor ticks, reminders, posts)
    posts: int = 2         # sent outbox rows
    samples: int = 3       # monitor_samples of its one monitor
    deliveries: int = 1    # processed_requests (Slack delivery ids)

    @classmethod
    def full(cls) -> Shape:
        """A two-hour monitor every 5 min (24 samples and tick jobs) and the posts, jobs
        and deliveries around it: ~85 rows per rollback, as measured in issue 16."""
        return cls(steps=3, audit=8, jobs=30, posts=12, samples=24, deliveries=4)

    @property
    def rows(self) -> int:
        """Rows per rollback, aftercare and monitor rows and the rollback included."""
        return (3 + self.steps + self.audit + self.jobs + self.posts + self.samples
                + self.deliveries)


def seed_history(dsn: str, count: int, *, shape: Shape = Shape(),
                 services: tuple[str, ...] = SERVICES, oldest_days: float = 400,
                 newest_days: float = 30, analyze: bool = True) -> tuple[int, int]:
    """Append ``count`` ended rollbacks, created evenly from ``oldest_days`` to
    ``newest_days`` ago, each finished two hours after it was made; returns the (first,
    last) rollback id seeded."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute("SELECT COALESCE(max(id), 0) FROM rollbacks").fetchone()
        assert row is not None
        start = int(row[0])
        span = f"{oldest_days} days"
        step = (oldest_days - newest_days) / max(1, count)
        with conn.transaction():
            conn.execute(
                "INSERT INTO rollbacks (service, platform, severity, policy_mode, scope,"
                " reason, state, requester, channel_id, channel_name, current_revision,"
                " target_revision, target, created_at, updated_at, approved_at, finished_at,"
                " approver)"
                " SELECT (%(services)s::text[])[1 + g %% %(nservices)s], 'kubernetes',"
                " 'P1', 'standard', ARRAY['app'], 'seeded history',"
                " (%(states)s::text[])[1 + g %% %(nstates)s], 'U0SEED', 'C0SEED', 'incident',"
                " jsonb_build_object('id', 'rev-' || (g + 1), 'number', g + 1),"
                " jsonb_build_object('id', 'rev-' || g, 'number', g),"
                " jsonb_build_object('platform', 'kubernetes', 'scope', 'prod',"
                "   'name', (%(services)s::text[])[1 + g %% %(nservices)s]),"
                " t.at, t.at + interval '2 hours', t.at + interval '5 minutes',"
                " t.at + interval '2 hours', 'U0APPROVER'"
                " FROM generate_series(1, %(count)s) g,"
                " LATERAL (SELECT now() - %(span)s::interval"
                "   + make_interval(secs => g * %(step)s * 86400) AS at) t",
                {"services": list(services), "nservices": len(services),
                 "states": list(_TERMINAL), "nstates": len(_TERMINAL), "count": count,
                 "span": span, "step": step})
            new = "FROM rollbacks r WHERE r.id > %(start)s"
            p = {"start": start}
            conn.execute(
                "INSERT INTO rollback_steps (rollback_id, seq, kind, description, status,"
                " started_at, finished_at) SELECT r.id, s, 'undo', 'roll back', 'done',"
                " r.approved_at, r.approved_at + interval '1 minute' "
                + new.replace("FROM rollbacks r", f"FROM rollbacks r, generate_series(1, "
                              f"{shape.steps}) s"), p)
            conn.execute(
                "INSERT INTO audit_events (rollback_id, at, actor, event, detail)"
                " SELECT r.id, r.created_at + make_interval(secs => s), 'U0SEED', 'seeded',"
                " '{}'::jsonb "
                + new.replace("FROM rollbacks r", f"FROM rollbacks r, generate_series(1, "
                              f"{shape.audit}) s"), p)
            conn.execute(
                "INSERT INTO scheduled_jobs (kind, rollback_id, due_at, status, claimed_by,"
                " claimed_at, finished_at, dedupe_key)"
                " SELECT 'monitor_tick', r.id, r.approved_at + make_interval(mins => 5 * s),"
                " 'done', 'seed', r.approved_at + make_interval(mins => 5 * s),"
                " r.approved_at + make_interval(mins => 5 * s), 'seed:' || r.id || ':' || s "
                + new.replace("FROM rollbacks r", f"FROM rollbacks r, generate_series(1, "
                              f"{shape.jobs}) s"), p)
            conn.execute(
                "INSERT INTO outbox (key, rollback_id, channel, status, attempts, ts,"
                " created_at, sent_at)"
                " SELECT 'seed:' || r.id || ':' || s, r.id, 'C0SEED', 'sent', 1,"
                " '1700000000.' || lpad(s::text, 6, '0'), r.created_at, r.created_at "
                + new.replace("FROM rollbacks r", f"FROM rollbacks r, generate_series(1, "
                              f"{shape.posts}) s"), p)
            conn.execute(
                "INSERT INTO aftercare (rollback_id, steps_completed_at, restored_at)"
                " SELECT r.id, r.approved_at + interval '2 minutes',"
                " r.approved_at + interval '3 minutes' " + new, p)
            conn.execute(
                "INSERT INTO monitors (rollback_id, key, started_at, ends_at,"
                " interval_seconds, status, finished_at, result)"
                " SELECT r.id, 'seed:' || r.id, r.approved_at, r.finished_at, 300, 'stable',"
                " r.finished_at, '{\"summary\": \"seeded\"}'::jsonb " + new, p)
            conn.execute(
                "INSERT INTO monitor_samples (monitor_id, seq, at, error_rate, health_ok)"
                " SELECT m.id, s, m.started_at + make_interval(mins => 5 * s), 0.001, true"
                f" FROM monitors m, generate_series(1, {shape.samples}) s"
                " WHERE m.rollback_id > %(start)s", p)
            conn.execute(
                "INSERT INTO processed_requests (key, created_at)"
                " SELECT 'seed:' || r.id || ':' || s, r.created_at "
                + new.replace("FROM rollbacks r", f"FROM rollbacks r, generate_series(1, "
                              f"{shape.deliveries}) s"), p)
        if analyze:
            conn.execute("ANALYZE")
        return start + 1, start + count


def seed_active(dsn: str, service: str, *, state: str = "monitoring") -> int:
    """One live rollback of ``service`` with a job that is due soon and one that is
    running (claimed by a leader): what a busy day adds on top of the history."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute(
            "INSERT INTO rollbacks (service, platform, severity, policy_mode, scope, reason,"
            " state, requester, channel_id, target_revision, target, approved_at)"
            " VALUES (%s, 'kubernetes', 'P1', 'standard', ARRAY['app'], 'live', %s,"
            " 'U0SEED', 'C0SEED', '{\"id\": \"rev-1\", \"number\": 1}',"
            " jsonb_build_object('platform', 'kubernetes', 'scope', 'prod', 'name', %s::text),"
            " now()) RETURNING id", (service, state, service)).fetchone()
        assert row is not None
        rid = int(row[0])
        conn.execute(
            "INSERT INTO scheduled_jobs (kind, rollback_id, due_at, status, claimed_by,"
            " claimed_at) VALUES ('monitor_tick', %s, now() + interval '5 minutes',"
            " 'pending', NULL, NULL), ('monitor_tick', %s, now(), 'running', 'leader-1',"
            " now())", (rid, rid))
        return rid
