"""Retention of the rows a stability monitor leaves: one sample per check, ~24 per rollback.

Once a rollback has ended and its monitor finished more than the retention window ago, the
report is long posted (its figures stay on the monitor row, ``monitors.result``) and
nothing reads the samples but the timeline's per-check lines, so they are deleted and the
monitor is stamped ``samples_pruned_at`` (the timeline says so instead of showing
nothing). Run by ``bot.persistence.housekeeping`` on the scheduler leader.
"""

from __future__ import annotations

from psycopg_pool import ConnectionPool

from bot.domain.lifecycle import TERMINAL

# Monitors per statement: a first run on a large history deletes in short transactions
# instead of one that holds millions of row locks.
BATCH = 2000


def purge_monitor_samples(pool: ConnectionPool, *, older_than_seconds: float,
                          batch: int = BATCH) -> int:
    """Delete the samples of finished monitors of rollbacks that ended more than
    ``older_than_seconds`` ago (database clock); returns how many samples were deleted."""
    ended = sorted(s.value for s in TERMINAL)
    deleted = 0
    while True:
        with pool.connection() as conn, conn.transaction():
            # The stamp and the delete commit together: a monitor is never stamped with
            # its samples still there, nor left unstamped with them gone.
            cur = conn.execute(
                "WITH pruned AS ("
                " UPDATE monitors SET samples_pruned_at = now() WHERE id IN ("
                "  SELECT m.id FROM monitors m JOIN rollbacks r ON r.id = m.rollback_id"
                "  WHERE m.samples_pruned_at IS NULL AND m.status <> 'running'"
                "  AND m.finished_at < now() - make_interval(secs => %s)"
                "  AND r.state = ANY(%s) AND r.finished_at < now() - make_interval(secs => %s)"
                "  ORDER BY m.finished_at LIMIT %s FOR UPDATE OF m SKIP LOCKED)"
                " RETURNING id),"
                " gone AS (DELETE FROM monitor_samples s USING pruned p"
                "  WHERE s.monitor_id = p.id RETURNING 1)"
                " SELECT (SELECT count(*) FROM pruned), (SELECT count(*) FROM gone)",
                (older_than_seconds, ended, older_than_seconds, batch))
            row = cur.fetchone()
        assert row is not None
        monitors, samples = int(row[0]), int(row[1])
        deleted += samples
        if monitors < batch:
            return deleted
