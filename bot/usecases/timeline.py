"""A rollback's timeline: every recorded transition, event, step, check, notice and job.

``/rollback timeline RB-n`` and the *Timeline* button of a finished request read it
(``handlers/timeline.py`` renders it: an ephemeral summary and the whole of it as a
Markdown file). It shows only what the database recorded, from these sources:

* ``audit_events``: transitions (with from/to state) and every other audited event
  (checklist ticks, reminders, known-bad marks…), with actor and time. The verification
  checks a ``verified``/``verification_failed`` row carries become entries of their own.
* ``rollback_steps``: when each step started and how it ended (attempts, error).
* ``monitors`` and ``monitor_samples``: the stability windows and each check in them.
* ``outbox``: every keyed post (notices, files) and where it went.
* ``scheduled_jobs``: the rollback's durable timers and how they ended.
* ``reminders``: the review and post-mortem reminders, and who closed them.

Rows retention already purged (sent outbox rows, finished jobs of long-finished
rollbacks) are gone, so they are not shown; the audit trail is never purged. Every text
value passes ``bot.observability.scrub`` again here: it was scrubbed when stored (a job's
result is not), and a secret must not reach Slack through a row written before a scrub
rule existed.

Reading a timeline is open to anyone who can run the command, like ``status`` and
``history``: it changes nothing and shows no more than the request message and its thread.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from bot.domain.errors import ParseError
from bot.domain.models import AuditEvent, Rollback, Step
from bot.domain.ports import Clock, utcnow
from bot.observability.scrub import scrub_data
from bot.persistence.aftercare_store import AftercareStore, Monitor, Reminder
from bot.persistence.store import Store
from bot.persistence.timeline_reads import JobRow, OutboxRow, TimelineReads

_RB_ID = re.compile(r"(?:RB-)?([0-9]{1,9})", re.IGNORECASE)


class Kind(StrEnum):
    """What an entry is; the order is the tie-break for entries at the same instant."""

    TRANSITION = "transition"
    EVENT = "event"
    STEP = "step"
    CHECK = "check"
    MONITOR = "monitor"
    NOTICE = "notice"
    JOB = "job"
    REMINDER = "reminder"


_ORDER = {k: i for i, k in enumerate(Kind)}


@dataclass(frozen=True)
class Entry:
    """One line of the timeline: facts only, worded by the Slack layer.

    ``source`` names the row it was read from (``audit #12``, ``step 3``, ``job #40``,
    ``outbox``, ``monitor #2``), so a reader can find it in the database."""

    at: datetime
    kind: Kind
    name: str  # the audit event, step kind, check name, outbox key, job kind…
    actor: str  # a Slack user id, "bot", an executor's id, "rollback-bot"…
    source: str
    from_state: str | None = None
    to_state: str | None = None
    facts: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Timeline:
    rollback: Rollback
    entries: list[Entry]
    generated_at: datetime


def rollback_id(ref: str | int) -> int:
    """``RB-12``, ``rb-12`` or ``12`` as 12; anything else is a ParseError."""
    match = _RB_ID.fullmatch(str(ref).strip())
    if not match or int(match.group(1)) == 0:
        shown = str(ref) if len(str(ref)) <= 20 else str(ref)[:20] + "…"
        raise ParseError(f"`{shown}` is not a rollback ID (like RB-12).")
    return int(match.group(1))


class TimelineReader:
    """Assembles a rollback's timeline from the stores; reads only."""

    def __init__(self, *, store: Store, aftercare_store: AftercareStore,
                 reads: TimelineReads, clock: Clock = utcnow) -> None:
        self.store = store
        self.aftercare_store = aftercare_store
        self.reads = reads
        self.clock = clock

    def timeline(self, ref: str | int) -> Timeline:
        """The timeline of ``ref``; ``NotFound`` for a rollback that does not exist."""
        rb = self.store.get(rollback_id(ref))
        entries: list[Entry] = []
        for event in self.store.audit_events(rb.id):
            entries.extend(audit_entries(event))
        for step in self.store.steps(rb.id):
            entries.extend(step_entries(step))
        for monitor in self.aftercare_store.monitors(rb.id):
            entries.extend(monitor_entries(monitor))
            entries.extend(
                Entry(s.at, Kind.CHECK, f"monitoring check {s.seq}", "bot",
                      f"monitor #{monitor.id}", facts=_clean({
                          "error_rate": s.error_rate, "health_ok": s.health_ok,
                          "health": s.health_detail, "latency_ms": s.latency_ms,
                          "notes": s.notes}))
                for s in self.aftercare_store.samples(monitor.id))
        entries.extend(outbox_entry(row) for row in self.reads.outbox(rb.id))
        entries.extend(job_entry(job) for job in self.reads.jobs(rb.id))
        for reminder in self.aftercare_store.reminders(rb.id):
            entries.extend(reminder_entries(reminder))
        entries.sort(key=lambda e: (e.at, _ORDER[e.kind]))  # stable: sources keep their order
        return Timeline(rollback=rb, entries=entries, generated_at=self.clock())


# ---------------------------------------------------------------------- one source each (pure)
def audit_entries(event: AuditEvent) -> list[Entry]:
    """The audit row itself, then one entry per verification check it carries."""
    detail = dict(event.detail or {})
    checks = detail.pop("checks", None)
    kind = Kind.TRANSITION if event.to_state else Kind.EVENT
    source = f"audit #{event.id}"
    out = [Entry(event.at, kind, event.event, event.actor, source,
                 from_state=event.from_state, to_state=event.to_state, facts=_clean(detail))]
    for check in checks if isinstance(checks, list) else []:
        if isinstance(check, dict):
            out.append(Entry(event.at, Kind.CHECK, str(check.get("name", "check")), event.actor,
                             source, facts=_clean({k: v for k, v in check.items()
                                                   if k != "name"})))
    return out


def step_entries(step: Step) -> list[Entry]:
    """When the step started and how it ended; a step that never ran has no entry."""
    source = f"step {step.seq}"
    base = {"description": step.description, **({"destructive": True}
                                                 if step.destructive else {})}
    out = []
    if step.started_at is not None:
        out.append(Entry(step.started_at, Kind.STEP, step.kind, "executor", source,
                         facts=_clean({**base, "status": "started"})))
    if step.finished_at is not None:
        out.append(Entry(step.finished_at, Kind.STEP, step.kind, "executor", source,
                         facts=_clean({**base, "status": step.status, "attempts": step.attempts,
                                       "error": step.error, "result": step.result or None})))
    return out


def monitor_entries(m: Monitor) -> list[Entry]:
    source = f"monitor #{m.id}"
    out = [Entry(m.started_at, Kind.MONITOR, "window opened", "bot", source,
                 facts={"until": m.ends_at, "interval_seconds": m.interval_seconds})]
    if m.finished_at is not None:
        out.append(Entry(m.finished_at, Kind.MONITOR, f"window {m.status}", "bot", source,
                         facts=_clean({**m.result,  # retention deleted the per-check lines
                                       "checks_pruned_at": m.samples_pruned_at})))
    return out


def outbox_entry(row: OutboxRow) -> Entry:
    """A post is timed when Slack accepted it; one never confirmed, when it was claimed."""
    return Entry(row.sent_at or row.created_at, Kind.NOTICE, row.key, "bot", "outbox",
                 facts=_clean({"to": row.channel or "the rollback's thread",
                               "status": row.status, "attempts": row.attempts}))


def job_entry(job: JobRow) -> Entry:
    """A finished job at its end, a pending one at its due time."""
    return Entry(job.finished_at or job.due_at, Kind.JOB, job.kind, "scheduler",
                 f"job #{job.id}", facts=_clean({
                     "status": job.status, "due": job.due_at,
                     "attempts": job.attempts or None, "error": job.last_error,
                     "result": job.result or None}))


def reminder_entries(r: Reminder) -> list[Entry]:
    source = f"reminder #{r.id}"
    out = [Entry(r.created_at, Kind.REMINDER, f"{r.kind} reminder created", "bot", source,
                 facts=_clean({"due": r.due_at, "document": r.document}))]
    if r.closed_at is not None:
        out.append(Entry(r.closed_at, Kind.REMINDER, f"{r.kind} reminder {r.status}",
                         r.closed_by or "bot", source))
    return out


def _clean(facts: dict[str, Any]) -> dict[str, Any]:
    """Facts without empty values, text scrubbed (again: see the module docstring)."""
    return scrub_data({k: v for k, v in facts.items() if v is not None and v != ""})
