"""Retention: periodic housekeeping on the scheduler leader keeps bookkeeping tables bounded.

Purged: Slack delivery ids (``processed_requests``) past the retry horizon, finished
``scheduled_jobs`` and sent ``outbox`` rows of rollbacks that ended long ago, and the
``monitor_samples`` of their finished monitors (``bot.persistence.retention``), and the
``claims`` rows of claimants that died or whose claim expired (``bot.persistence.claims``,
which a killed process never deletes itself). Kept for
good: rollbacks, their steps and the audit trail (``audit_events``), monitors with their
report figures, reminders, known-bad marks. The same run seals known-good Secret
snapshots that are still in plain form or under a rotated-away key
(``bot.persistence.sealing``).

``LeaderScheduler`` runs it on the leader only, at its first tick and then every
``retention.interval_minutes`` of its clock. It is maintenance, not a timer row: every step
is idempotent, so a new leader simply runs it again, and it never shows up among (or
delays) the jobs of a rollback.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from bot.domain.config import RetentionSettings
from bot.persistence import claims
from bot.persistence.jobs import JobStore
from bot.persistence.retention import purge_monitor_samples
from bot.persistence.store import Store

log = logging.getLogger(__name__)


class Housekeeping:
    def __init__(self, *, store: Store, jobs: JobStore, settings: RetentionSettings) -> None:
        self.store = store
        self.jobs = jobs
        self.settings = settings

    @property
    def interval(self) -> timedelta:
        return timedelta(minutes=self.settings.interval_minutes)

    def run(self) -> dict[str, int]:
        """Purge and re-seal once; returns what was done (also logged)."""
        s = self.settings
        store, jobs = self.store, self.jobs
        # Ages are compared with the database clock: the rows were stamped with it.
        done = {
            "processed_requests": store.purge_processed_requests(
                older_than_seconds=s.processed_requests_hours * 3600),
            "scheduled_jobs": jobs.purge_finished(
                older_than_seconds=s.finished_jobs_days * 86400),
            "outbox": store.purge_outbox(older_than_seconds=s.finished_jobs_days * 86400),
            "monitor_samples": purge_monitor_samples(
                store.pool, older_than_seconds=s.monitor_samples_days * 86400),
            "claims": claims.purge_dead(store.pool),
            "known_good_config_resealed": store.reseal_known_good_configs(),
        }
        log.info("housekeeping: purged %d delivery ids, %d finished jobs, %d outbox rows, "
                 "%d monitor samples, %d dead claims; re-sealed %d known-good snapshots",
                 done["processed_requests"], done["scheduled_jobs"], done["outbox"],
                 done["monitor_samples"], done["claims"], done["known_good_config_resealed"])
        return done
