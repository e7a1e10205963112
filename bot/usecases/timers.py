"""Decision-matrix timers: each request's decision deadline and its approval expiry.

Every severity's response time from the runbook (P0 immediate, P1 15 min, P2 1 h, P3 4 h,
``SeverityPolicy.deadline_minutes``) is a deadline stored on the rollback
(``decision_due_at``) from the moment it is requested. At the deadline the bot escalates
in the thread (``DecisionDue``: the approvers and the incident commander, else the
requester); the request expires no sooner than ``expiry_grace_minutes`` after it
(``Policy.expires_at``), so the escalation is never cut off by the expiry, and the expiry
says so in the thread. "Hotfix in progress" (P1) moves the deadline once
(``RollbackService.hotfix_in_progress``).

Each timer is a durable ``scheduled_jobs`` row keyed by rollback and time
(``schedule_deadlines``), so scheduling it twice is a no-op. The handlers run once on the
scheduler leader and do nothing if the rollback has moved on (approved, rejected,
cancelled, expired) or if the time they were scheduled for is no longer the rollback's (a
deadline moved later); such a stale job makes sure the current time has its job, so a
crash between moving a deadline and scheduling it loses no escalation.

The escalation is posted through the outbox, keyed by rollback and deadline
(``decision_key``): a leader that dies between the post and marking its job done, or two
job rows for the same deadline (a row of an earlier kind next to today's), post it once;
its audit event is written once per deadline too.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Protocol

from bot.domain.errors import NotAllowed
from bot.domain.lifecycle import Event, State
from bot.domain.messages import DecisionDue, Expired
from bot.domain.models import Rollback
from bot.domain.policy import Policy
from bot.domain.ports import Chat, Notice
from bot.domain.time_words import in_utc
from bot.domain.words import GroupMention
from bot.persistence.jobs import Job, JobStore
from bot.persistence.outbox import Outbox
from bot.persistence.store import Store

log = logging.getLogger(__name__)


class Transition(Protocol):
    """A checked state change that re-renders the request message (the service's)."""

    def __call__(self, rb: Rollback, event: Event, *, actor: str) -> Rollback: ...


EXPIRE_JOB, DECISION_JOB = "expire_approval", "decision_due"
# Kinds an earlier version scheduled (the P1 hotfix window from the click, the P2
# evaluation reminder): rows of pending requests still run, as decision deadlines.
HOTFIX_JOB, EVALUATE_JOB = "hotfix_escalation", "evaluate_reminder"
POLICY_JOBS = (EXPIRE_JOB, DECISION_JOB, HOTFIX_JOB, EVALUATE_JOB)


def decision_key(rollback_id: int, due_at: datetime) -> str:
    return f"{DECISION_JOB}:{rollback_id}:{in_utc(due_at).isoformat()}"


def expiry_key(rollback_id: int, expires_at: datetime) -> str:
    return f"{EXPIRE_JOB}:{rollback_id}:{in_utc(expires_at).isoformat()}"


def schedule_deadlines(jobs: JobStore, rb: Rollback) -> None:
    """The jobs of ``rb``'s current decision deadline and expiry (as stored on the row).
    Idempotent: one job per rollback and time, whoever schedules it and how often."""
    if rb.decision_due_at is not None:
        jobs.schedule(kind=DECISION_JOB, due_at=rb.decision_due_at, rollback_id=rb.id,
                      payload={"due_at": in_utc(rb.decision_due_at).isoformat()},
                      dedupe_key=decision_key(rb.id, rb.decision_due_at))
    if rb.expires_at is not None:
        jobs.schedule(kind=EXPIRE_JOB, due_at=rb.expires_at, rollback_id=rb.id,
                      payload={"expires_at": in_utc(rb.expires_at).isoformat()},
                      dedupe_key=expiry_key(rb.id, rb.expires_at))


class PolicyTimers:
    def __init__(self, *, store: Store, jobs: JobStore, chat: Chat, outbox: Outbox,
                 transition: Transition, policy: Policy,
                 escalate: Callable[[Rollback], None] | None = None) -> None:
        self.store = store
        # The emergency contacts' escalation (``bot.aftercare.escalation``), after the post.
        self.escalate = escalate or (lambda _rb: None)
        self.jobs = jobs
        self.chat = chat
        self.outbox = outbox  # the escalation: posted once per rollback and deadline
        self.transition = transition
        self.policy = policy  # the configuration's approvers, the directory's group ids

    def job_handlers(self) -> dict[str, Callable[[Job], None]]:
        """The job kinds these timers run, for the composition root's router."""
        return {EXPIRE_JOB: self.expire, DECISION_JOB: self.decision_due,
                HOTFIX_JOB: self.decision_due, EVALUATE_JOB: self.decision_due}

    def _pending(self, job: Job) -> Rollback | None:
        assert job.rollback_id is not None
        rb = self.store.get(job.rollback_id)
        return rb if rb.state == State.PENDING_APPROVAL else None

    def _current(self, job: Job, rb: Rollback, field: str, stored: datetime | None) -> bool:
        """Whether ``job`` was scheduled for ``rb``'s current ``field`` time. A job for a time
        that has moved does nothing but make sure the current time has its job."""
        scheduled = job.payload.get(field)
        if scheduled is None or stored is None:  # a row of an earlier version
            return True
        if datetime.fromisoformat(str(scheduled)) == stored:
            return True
        schedule_deadlines(self.jobs, rb)
        return False

    def expire(self, job: Job) -> None:
        rb = self._pending(job)
        if rb is None or not self._current(job, rb, "expires_at", rb.expires_at):
            return
        try:
            rb = self.transition(rb, Event.EXPIRE, actor="bot")
        except NotAllowed:  # approved (or cancelled) at the last moment: nothing expires
            return
        self.jobs.cancel(rollback_id=rb.id)
        self.chat.thread(rb, Expired(rb.ref, rb.decision_due_at))

    def decision_due(self, job: Job) -> None:
        """The deadline came and nobody decided: ask the approvers and the incident
        commander (else the requester) in the thread, in the words of the severity."""
        rb = self._pending(job)
        if rb is None or not self._current(job, rb, "due_at", rb.decision_due_at):
            return
        approvers = self.policy.config.approvers_for(rb.service)
        due = rb.decision_due_at or job.due_at
        key = decision_key(rb.id, due)  # every row for this deadline shares it
        self.outbox.notice(rb, Notice(key, DecisionDue(
            rb.ref, rb.severity, rb.policy_mode, due,
            approver_group=self._group(approvers.usergroup), approvers=tuple(approvers.users),
            commander=rb.incident_commander or rb.requester,
            target=rb.target_revision.label(), hotfix_by=rb.hotfix_reported_by,
            expires_at=rb.expires_at)))
        # After the post (a crash before it must not leave an escalation audited but never
        # seen), and once: a re-run after a crash finds the post and must not audit again.
        if not any(e.event == "decision_due" and e.detail.get("key") == key
                   for e in self.store.audit_events(rb.id)):
            self.store.audit(rb.id, actor="bot", event="decision_due",
                             detail={"severity": rb.severity, "mode": rb.policy_mode,
                                     "due_at": in_utc(due).isoformat(),
                                     "hotfix_reported_by": rb.hotfix_reported_by, "key": key})
        self.escalate(rb)  # once per rollback: the incident commander and technical lead

    def _group(self, usergroup: str | None) -> GroupMention | None:
        """The approvers' group with its id when Slack resolves it (to mention it); without
        one the escalation still goes out, saying the group was not notified."""
        if not usergroup:
            return None
        try:
            group_id = self.policy.directory.usergroup_id(usergroup)
        except Exception as exc:  # the escalation goes out anyway, naming the group
            log.warning("could not resolve usergroup %s: %s", usergroup, exc)
            group_id = None
        if group_id is None:
            log.warning("usergroup %s is not known to Slack: the escalation cannot mention it",
                        usergroup)
        return GroupMention(usergroup, group_id)
