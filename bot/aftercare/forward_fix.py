"""The runbook's "Plan forward fix": ask for the fix's link and root cause, chase until answered.

A completed rollback gets one ``forward_fixes`` row. The ask is posted in the rollback's
thread at once and again every ``forward_fix_repeat_hours`` until someone records the link
(``give``) or waives it with a reason (``waive``); after ``forward_fix_stop_after_days`` a
final note says the bot stops asking. Like ``bot.aftercare.reminders``: durable keyed jobs
(survive a restart, run on the scheduler leader), only the job whose ``seq`` is current may
post, and every post goes through the outbox (exactly once).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from bot.domain.authority import Action
from bot.domain.errors import NotAllowed, NotFound
from bot.domain.forward_fix import ForwardFixInput
from bot.domain.lifecycle import State
from bot.domain.messages import ForwardFixAsk, ForwardFixRecorded, Message
from bot.domain.models import Rollback
from bot.domain.policy import Policy
from bot.domain.ports import Clock, Notice
from bot.domain.words import Mention
from bot.persistence.forward_fix_store import ForwardFixRecord, ForwardFixStore
from bot.persistence.jobs import Job, JobStore
from bot.persistence.outbox import Outbox
from bot.persistence.store import Store
from bot.usecases.timeline import rollback_id as parse_ref

log = logging.getLogger(__name__)

FORWARD_FIX_JOB = "forward_fix_reminder"
ASK_KEY = "forward-fix"


class ForwardFixTracker:
    def __init__(self, *, rollback_store: Store, jobs: JobStore, policy: Policy,
                 clock: Clock, store: ForwardFixStore, outbox: Outbox,
                 repeat_hours: float, stop_after_days: float) -> None:
        self.rollback_store = rollback_store
        self.jobs = jobs
        self.policy = policy
        self.clock = clock
        self.store = store
        self.outbox = outbox
        self.repeat = timedelta(hours=repeat_hours)
        self.stop_after = timedelta(days=stop_after_days)

    def job_handlers(self) -> dict[str, Callable[[Job], None]]:
        """The job kind this runs, for the composition root's router."""
        return {FORWARD_FIX_JOB: self.run_job}

    # ------------------------------------------------------------------ creation
    def create(self, rb: Rollback) -> None:
        """Idempotent (a re-run of the completion finds the row): a completed rollback's
        forward fix is tracked and its next ask scheduled."""
        if rb.state != State.COMPLETED:
            return
        now = self.clock()
        self.store.add(rollback_id=rb.id, next_at=now, give_up_at=now + self.stop_after,
                       created_at=now)
        rec = self.store.get(rb.id)
        if rec is not None and rec.status == "open":
            self._schedule(rec.rollback_id, rec.seq, rec.next_at)

    def _schedule(self, rollback_id: int, seq: int, due_at: datetime) -> None:
        self.jobs.schedule(kind=FORWARD_FIX_JOB, rollback_id=rollback_id, due_at=due_at,
                           payload={"seq": seq},
                           dedupe_key=f"{FORWARD_FIX_JOB}:{rollback_id}:{seq}")

    # ------------------------------------------------------------------ the job
    def run_job(self, job: Job) -> None:
        if job.rollback_id is None:
            return
        rec = self.store.get(job.rollback_id)
        seq = int(job.payload["seq"])
        if rec is None or rec.status != "open" or seq < rec.seq:
            return  # answered, waived, or a superseded job
        rb = self.rollback_store.get(rec.rollback_id)
        next_at = self.clock() + self.repeat
        final = next_at > rec.give_up_at
        if not final:
            # The next one first: a refused post (or a crash) costs this post, not the series.
            self._schedule(rb.id, seq + 1, next_at)
        self.outbox.notice(rb, self.notice(rb, rec, seq, final=final))
        self.rollback_store.audit(rb.id, actor="bot", event="forward_fix_asked",
                                  detail={"seq": seq, "final": final})
        self.store.advance(rb.id, from_seq=seq, next_at=next_at)
        if final:
            self.store.decide(rb.id, status="expired", by="bot", at=self.clock())

    def notice(self, rb: Rollback, rec: ForwardFixRecord, seq: int, *, final: bool = False,
               closed: Message | None = None) -> Notice:
        bad = _rolled_back_from(rb)
        return Notice(f"{ASK_KEY}:{rb.id}:{seq}", ForwardFixAsk(
            str(rb.id), rb.ref, rb.service, bad, again=seq != 1, final=final,
            give_up_at=rec.give_up_at,
            mention=None if closed else (rb.incident_commander or rb.requester),
            closed=closed))

    # ------------------------------------------------------------------ answers
    def check(self, ref: str | int, *, user: str, waive: bool) -> Rollback:
        """At the click that opens the dialog: refused now, not after typing the answer."""
        rb = self.rollback_store.get(parse_ref(ref))
        self.policy.authorize(Action.WAIVE_FORWARD_FIX if waive else Action.FORWARD_FIX, rb,
                              user=user, channel_id=None)
        self._open(rb)
        return rb

    def _open(self, rb: Rollback) -> ForwardFixRecord:
        rec = self.store.get(rb.id)
        if rec is None:
            raise NotFound(f"{rb.ref} has no forward fix to track yet (it is asked for once "
                           "the rollback completes).")
        if rec.status in ("given", "waived"):
            raise NotAllowed(f"The forward fix of {rb.ref} was already {rec.status} by ",
                             Mention(rec.decided_by or ""), ".")
        return rec

    def record(self, ref: str | int, given: ForwardFixInput, *, user: str) -> ForwardFixRecord:
        """``given`` (already validated: ``bot.domain.forward_fix``) for rollback ``ref``:
        a link with its root cause, or a waiver with its reason. Refused unless the table
        (``bot.domain.authority``) lets ``user`` do it; the first answer wins."""
        waive = given.waive_reason is not None
        rb = self.rollback_store.get(parse_ref(ref))
        action = Action.WAIVE_FORWARD_FIX if waive else Action.FORWARD_FIX
        self.policy.authorize(action, rb, user=user, channel_id=None)
        self._open(rb)
        now = self.clock()
        decided = self.store.decide(
            rb.id, status="waived" if waive else "given", by=user, at=now,
            link=given.link, root_cause=given.root_cause or None, reason=given.waive_reason,
            reopen_expired=True)
        if decided is None:
            raise NotAllowed(f"The forward fix of {rb.ref} was answered meanwhile.")
        footer = ForwardFixRecorded(decided.status, rb.ref, user, now, link=decided.link,
                                    root_cause=decided.root_cause, reason=decided.reason)
        for seq in range(1, decided.seq):  # posted ones only
            try:
                self.outbox.edit(rb, self.notice(rb, decided, seq, closed=footer))
            except Exception:
                log.exception("could not update the forward-fix ask %s/%s", rb.ref, seq)
        self.outbox.notice(rb, Notice(f"{ASK_KEY}-recorded:{rb.id}", footer))
        return decided

    def for_rollbacks(self, rollbacks: list[Rollback]) -> dict[int, ForwardFixRecord]:
        return self.store.for_rollbacks(rb.id for rb in rollbacks)


def _rolled_back_from(rb: Rollback) -> str | None:
    """The revision the rollback moved away from (the one marked known-bad); None for a
    plan that did not change the version (config or webhook only)."""
    cur = rb.current_revision
    return cur.label() if cur is not None and cur.id != rb.target_revision.id else None
