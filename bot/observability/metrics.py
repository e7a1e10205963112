"""The bot's own Prometheus metrics, exported on ``/metrics`` next to the process ones."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

TRANSITIONS = Counter(
    "rollback_bot_transitions_total", "Rollback state transitions applied (CAS won)",
    ["event", "to_state"])
STALE_TRANSITIONS = Counter(
    "rollback_bot_transitions_lost_total",
    "Transitions refused because another actor moved the rollback first", ["event"])
STEP_SECONDS = Histogram(
    "rollback_bot_step_seconds", "Wall time of one rollback step attempt", ["kind", "outcome"],
    buckets=(0.05, 0.1, 0.5, 1, 5, 15, 60, 300, 900, 3600))
DUPLICATE_DELIVERIES = Counter(
    "rollback_bot_duplicate_deliveries_total", "Slack retries dropped by the dedupe table")
JOB_FAILURES = Counter(
    "rollback_bot_job_failures_total", "Timed jobs that raised (retried with backoff)", ["kind"])
