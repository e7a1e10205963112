"""Decision-matrix timers: approval expiry, the P1 hotfix window, the P2 evaluation deadline.

Each is a durable ``scheduled_jobs`` row; these handlers run once on the scheduler leader
and do nothing if the rollback has moved on (approved, cancelled) in the meantime.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from bot.domain.errors import NotAllowed
from bot.domain.lifecycle import Event, State
from bot.domain.messages import EvaluationDue, Expired, HotfixWindowOver, Message
from bot.domain.models import Rollback
from bot.domain.ports import Chat
from bot.persistence.jobs import Job, JobStore
from bot.persistence.store import Store


class Transition(Protocol):
    """A checked state change that re-renders the request message (the service's)."""

    def __call__(self, rb: Rollback, event: Event, *, actor: str) -> Rollback: ...


EXPIRE_JOB, HOTFIX_JOB, EVALUATE_JOB = "expire_approval", "hotfix_escalation", "evaluate_reminder"


class PolicyTimers:
    def __init__(self, *, store: Store, jobs: JobStore, chat: Chat,
                 transition: Transition) -> None:
        self.store = store
        self.jobs = jobs
        self.chat = chat
        self.transition = transition

    def job_handlers(self) -> dict[str, Callable[[Job], None]]:
        """The job kinds these timers run, for the composition root's router."""
        return {EXPIRE_JOB: self.expire, HOTFIX_JOB: self.hotfix_elapsed,
                EVALUATE_JOB: self.evaluation_due}

    def _pending(self, job: Job) -> Rollback | None:
        assert job.rollback_id is not None
        rb = self.store.get(job.rollback_id)
        return rb if rb.state == State.PENDING_APPROVAL else None

    def expire(self, job: Job) -> None:
        rb = self._pending(job)
        if rb is None:
            return
        try:
            rb = self.transition(rb, Event.EXPIRE, actor="bot")
        except NotAllowed:  # approved (or cancelled) at the last moment: nothing expires
            return
        self.jobs.cancel(rollback_id=rb.id)
        self.chat.thread(rb, Expired(rb.ref))

    def hotfix_elapsed(self, job: Job) -> None:
        self._remind(job, "hotfix_window_elapsed", HotfixWindowOver)

    def evaluation_due(self, job: Job) -> None:
        self._remind(job, "evaluation_due", EvaluationDue)

    def _remind(self, job: Job, event: str,
                say: Callable[[str, str], Message]) -> None:
        """Tell the incident commander (else the requester) that a window ended."""
        rb = self._pending(job)
        if rb is None:
            return
        self.store.audit(rb.id, actor="bot", event=event, detail={})
        self.chat.thread(rb, say(rb.ref, rb.severity),
                         mention=rb.incident_commander or rb.requester)
