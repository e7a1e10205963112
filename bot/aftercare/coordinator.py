"""After the steps: verify, notify stakeholders, watch the service, then chase the review.

The executor runs verification here; the rest are re-runnable jobs on the scheduler leader.
The notices the executor's run ends with (verification, monitoring started, completed) are
queued behind its thread lines (``Progress.notice``): they are decorations, and Slack
refusing one must not keep the rollback ``verifying``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from bot.aftercare import monitoring
from bot.aftercare.notifications import Notifier
from bot.aftercare.reminders import REMINDER_JOB, Reminders
from bot.aftercare.verification import (
    failed,
    failure_summary,
    run_verification,
    verification_notice,
)
from bot.checks.runner import CheckResult, summarize
from bot.domain.authority import Action
from bot.domain.config import ServiceConfig
from bot.domain.errors import NotAllowed
from bot.domain.lifecycle import Event, State
from bot.domain.messages import (
    ClosedBy,
    Completed,
    DecorationFailed,
    Message,
    MonitoringResumed,
    VerificationRetried,
)
from bot.domain.models import Rollback
from bot.domain.policy import Policy
from bot.domain.ports import NO_CRASH_POINTS, Chat, Clock, CrashPoints, Notice
from bot.domain.time_words import span
from bot.execution.progress import Progress
from bot.persistence.aftercare_store import AftercareStore, Monitor
from bot.persistence.errors import StaleState
from bot.persistence.jobs import Job, JobStore
from bot.persistence.outbox import Outbox
from bot.persistence.store import Store
from bot.usecases.catalog import Catalog
from bot.usecases.service import RollbackService
from platforms.base import Capability, Unsupported

log = logging.getLogger(__name__)

MONITOR_TICK_JOB = "monitor_tick"
NOTIFY_JOB = "aftercare_notify"
# Completes a rollback verified with no monitoring window, should the process that moved it
# into monitoring die before completing it inline (nothing else would: the executor never
# claims a monitoring rollback, and no window means no tick).
COMPLETE_JOB = "aftercare_complete"
# After the inline completion, which it only backs up, has long been made.
COMPLETE_JOB_SECONDS = 5.0
DEFER_SECONDS = 1.0
RESUME_GRACE = timedelta(seconds=60)  # a resumed window whose transition never happened
# Runs of the deciding tick that may fail on a decoration (report, chart) before the
# rollback moves on without it; the scheduler's backoff between runs is 2 s, then 4 s.
DECORATION_ATTEMPTS = 3


class Aftercare:
    """The runbook's last third. Jobs (``monitor_tick`` per interval, ``aftercare_notify``
    per phase, ``reminder``) are scheduled *before* the transition they follow and defer
    themselves while the rollback is still ``verifying``, so a crash in between loses
    nothing; every job may run twice (a tick's sample is stored once, posts go through
    the outbox)."""

    def __init__(self, service: RollbackService, *, catalog: Catalog, rollback_store: Store,
                 jobs: JobStore, chat: Chat, policy: Policy, clock: Clock,
                 on_approved: Callable[[int], None], store: AftercareStore, outbox: Outbox,
                 notifier: Notifier, reminders: Reminders, progress: Progress,
                 on_completed: tuple[Callable[[Rollback], None], ...] = (),
                 crash_points: CrashPoints = NO_CRASH_POINTS) -> None:
        self.service = service  # the use cases aftercare finishes with: get, resolve
        self.catalog = catalog
        self.rollback_store = rollback_store
        self.jobs = jobs
        self.chat = chat
        self.policy = policy
        self.clock = clock
        self.on_approved = on_approved
        self.store = store
        self.outbox = outbox
        self.notifier = notifier
        self.reminders = reminders
        # Notices and renders after a bot's transition, posted by the deliverer once Slack
        # takes them (bot.usecases.thread_delivery): none of them holds the transition.
        self.progress = progress
        # After a completion (re-run by a retried tick too, so each must be idempotent):
        # the forward-fix ask (bot.aftercare.forward_fix).
        self.on_completed = on_completed
        self.crash_points = crash_points

    def job_handlers(self) -> dict[str, Callable[[Job], None]]:
        """The job kinds aftercare runs, for the composition root's router."""
        return {MONITOR_TICK_JOB: self._tick_job, NOTIFY_JOB: self._notify_job,
                COMPLETE_JOB: self._complete_job, REMINDER_JOB: self.reminders.run_job}

    # ------------------------------------------------------------------ verification
    def __call__(self, rb: Rollback) -> None:
        svc: ServiceConfig = self.catalog.service_config(rb.service)
        self.store.begin(rb.id, steps_completed_at=self.clock())
        attempt = self.attempt(rb.id)
        results = run_verification(
            svc, platform=self.catalog.platforms.get(rb.platform), rb=rb,
            timeout=self.catalog.config.aftercare.verification_timeout_seconds,
            client=self.catalog.http)
        detail: dict[str, Any] = {
            "attempt": attempt, "summary": summarize(results) if results else "no checks",
            "checks": [{"name": r.name, "status": r.status, "summary": r.summary,
                        "duration_ms": round(r.duration_ms, 1)} for r in results]}
        if failed(results):
            self._verification_failed(rb, results, attempt, detail)
            return
        restored = self.clock()
        self.store.set_restored(rb.id, restored)
        self.progress.notice(rb, verification_notice(rb, results, attempt=attempt))
        self._schedule_notify(rb, "restored", attempt, checks_passed=len(results))
        monitor = None
        if svc.monitoring.duration_seconds > 0:
            monitor = self._open_monitor(rb, svc, key=f"{rb.id}:verify:{attempt}",
                                         start=restored)
        else:  # scheduled before the transition, like a window's first tick
            self.jobs.schedule(
                kind=COMPLETE_JOB, rollback_id=rb.id, payload={"attempt": attempt},
                due_at=self.clock() + timedelta(seconds=COMPLETE_JOB_SECONDS),
                dedupe_key=f"{COMPLETE_JOB}:{rb.id}:{attempt}")
        detail["restored_at"] = restored.isoformat()
        rb = self._move(rb, Event.VERIFIED, State.VERIFYING, actor="bot", detail=detail)
        if rb.state != State.MONITORING:
            return
        if monitor is None:
            self.crash_points.verified(rb.ref)
            self._complete(rb, svc, None)
        else:
            self.progress.notice(rb, monitoring.start_notice(rb, svc, monitor))

    def _verification_failed(self, rb: Rollback, results: list[CheckResult], attempt: int,
                             detail: dict[str, Any]) -> None:
        what = failure_summary(results)
        self._schedule_notify(rb, "verification_failed", attempt, detail=what)
        self.progress.notice(rb, verification_notice(rb, results, attempt=attempt))
        rb = self._move(rb, Event.VERIFICATION_FAILED, State.VERIFYING, actor="bot",
                        detail=detail, updates={"last_error": f"verification failed: {what}"[:500]})
        if rb.state == State.VERIFICATION_FAILED:
            self.reminders.create(rb)

    def attempt(self, rollback_id: int) -> int:
        """How many times the rollback entered ``verifying`` (keys notices per attempt)."""
        events = self.rollback_store.audit_events(rollback_id)
        return max(1, sum(1 for e in events if e.to_state == State.VERIFYING.value))

    # ------------------------------------------------------------------ monitoring
    def _open_monitor(self, rb: Rollback, svc: ServiceConfig, *, key: str,
                      start: datetime) -> Monitor:
        cfg = svc.monitoring
        m = self.store.open_monitor(rollback_id=rb.id, key=key, started_at=start,
                                    ends_at=start + timedelta(seconds=cfg.duration_seconds),
                                    interval_seconds=cfg.interval_seconds)
        self._schedule_tick(m, 1)
        return m

    def _schedule_tick(self, m: Monitor, seq: int) -> None:
        self.jobs.schedule(
            kind=MONITOR_TICK_JOB, rollback_id=m.rollback_id,
            due_at=m.started_at + timedelta(seconds=m.interval_seconds * seq),
            payload={"monitor": m.id, "seq": seq}, dedupe_key=f"{MONITOR_TICK_JOB}:{m.id}:{seq}")

    def _tick_job(self, job: Job) -> None:
        m = self.store.monitor(int(job.payload["monitor"]))
        seq = int(job.payload["seq"])
        rb = self.rollback_store.get(m.rollback_id)
        now = self.clock()
        if m.status == "superseded":
            return
        if m.status == "running" and rb.state != State.MONITORING:
            # The window opens before the transition into monitoring commits.
            if rb.state == State.VERIFYING or (rb.state == State.UNSTABLE
                                               and now - m.started_at < RESUME_GRACE):
                self._defer(job)
                return
            self.store.finish_monitor(m.id, status="superseded", at=now, result={})
            return
        svc = self.catalog.service_config(rb.service)
        if m.status != "running":
            if m.result.get("seq") == seq:  # a re-run of the tick that decided: finish it
                if m.status == "unstable":
                    self._regress(rb, svc, m, seq, attempts=job.attempts)
                else:
                    self._stable(rb, svc, m, seq, attempts=job.attempts)
            return
        sample = self.store.sample(m.id, seq)
        if sample is None:
            sample = monitoring.measure(svc, seq=seq, at=now, client=self.catalog.http)
            sample = self.store.add_sample(m.id, sample)
        samples = self.store.recent_samples(  # all the rule reads; the window's can be long
            m.id, up_to=seq, count=svc.monitoring.consecutive_health_failures)
        found = monitoring.regression(svc, samples)
        if found is not None:
            self.store.finish_monitor(m.id, status="unstable", at=now, result={
                "seq": seq, "reason": found.reason, "kind": found.kind,
                "summary": f"regression at check {seq}: {found.reason}"})
            self._regress(rb, svc, self.store.monitor(m.id), seq, attempts=job.attempts)
            return
        if svc.monitoring.post_each_check:
            self.outbox.notice(rb, monitoring.tick_notice(m, sample))
        if seq >= m.total_ticks:
            figures = monitoring.figures(svc, m, self.store.samples(m.id))
            self.store.finish_monitor(m.id, status="stable", at=now, result={
                "seq": seq, "figures": [list(item) for item in figures.items()],  # ordered
                "summary": "; ".join(f"{k}: {v}" for k, v in figures.items())})
            self._stable(rb, svc, self.store.monitor(m.id), seq, attempts=job.attempts)
            return
        # After an outage of the leader run the oldest missed check, then the latest due
        # one: catching up every missed interval would only measure "now" several times.
        elapsed = int((now - m.started_at).total_seconds() // m.interval_seconds)
        self._schedule_tick(m, min(m.total_ticks, max(seq + 1, elapsed)))

    def _complete_job(self, job: Job) -> None:
        """A rollback verified with no window whose inline completion did not run to its end
        (``COMPLETE_JOB``; the completion cancels this job as its last act): the process
        that moved it into ``monitoring`` died before the move to ``completed``, or after it
        and before the card, the notices, the reminders and the hooks. Either way
        ``_complete`` runs again: each of its steps is keyed or idempotent (a retried tick
        re-runs it too), and a stale move returns the rollback as it is."""
        assert job.rollback_id is not None
        rb = self.rollback_store.get(job.rollback_id)
        if int(job.payload["attempt"]) != self.attempt(rb.id) or self.store.monitors(rb.id):
            return  # an older attempt's, or a window decides this rollback
        if rb.state == State.VERIFYING:
            self._defer(job)  # the transition this follows has not committed yet
            return
        if rb.state in (State.MONITORING, State.COMPLETED):
            self._complete(rb, self.catalog.service_config(rb.service), None)

    def _defer(self, job: Job, *, payload: dict[str, Any] | None = None) -> None:
        self.jobs.schedule(
            kind=job.kind, rollback_id=job.rollback_id, payload=payload or job.payload,
            due_at=self.clock() + timedelta(seconds=DEFER_SECONDS),
            dedupe_key=f"{job.kind}:defer:{job.id}")

    def _regress(self, rb: Rollback, svc: ServiceConfig, m: Monitor, seq: int, *,
                 attempts: int = 0) -> None:
        # The transition first: a refused alert post must not keep the rollback "monitoring".
        # A retried tick finds it unstable already and only posts what is missing.
        rb = self._move(rb, Event.REGRESSION, State.MONITORING, actor="bot", detail={
            "reason": m.result.get("reason"), "monitor": m.id, "seq": seq})
        if rb.state != State.UNSTABLE:
            return
        self._decorate(rb, f"alert:{m.id}", "the regression alert", attempts,
                       lambda: self.outbox.notice(rb, monitoring.alert_notice(rb, m)))
        self._schedule_notify(rb, "regression", m.id, detail=str(m.result.get("reason")))
        self.reminders.create(rb)

    def _stable(self, rb: Rollback, svc: ServiceConfig, m: Monitor, seq: int, *,
                attempts: int = 0) -> None:
        self._decorate(rb, f"report:{m.id}", "the stability report", attempts, lambda: (
            self.outbox.notice(rb, monitoring.report_notice(rb, m))))
        self._decorate(rb, f"chart:{m.id}", "the stability chart", attempts, lambda: (
            self.outbox.upload(rb, filename=f"stability-{rb.ref}-{m.id}.png",
                               content=self._chart(rb, svc, m),
                               title=f"Error rate and latency after {rb.ref}")))
        self._complete(rb, svc, m)

    def _chart(self, rb: Rollback, svc: ServiceConfig, m: Monitor) -> bytes:
        """The stability chart, the rollback marked when its steps completed (the window
        itself opens after verification, or at *Resume monitoring*)."""
        facts = self.store.facts(rb.id)
        return monitoring.chart(
            svc, m, self.store.samples(m.id),
            rolled_back_at=facts.steps_completed_at if facts else m.started_at,
            title=f"{rb.service} after {rb.ref}")

    def _decorate(self, rb: Rollback, key: str, what: str, attempts: int,
                  post: Callable[[], object]) -> None:
        """Post a decoration (a report, a chart) that must never hold a transition: a
        failure re-raises (the scheduler retries the tick with backoff) until the
        ``DECORATION_ATTEMPTS``-th run, which goes on without it and says so in the thread."""
        try:
            post()
            return
        except Exception as exc:
            if attempts + 1 < DECORATION_ATTEMPTS:
                raise
            # Slack's error code ("internal_error"), not the client's "request failed (url …)"
            response: Any = getattr(exc, "response", None)
            code = response.get("error") if hasattr(response, "get") else None
            error = (f"Slack said {code}" if isinstance(code, str) and code
                     else f"{type(exc).__name__}: {exc}".splitlines()[0][:200])
            log.warning("giving up on %s for %s after %d attempts: %s", what, rb.ref,
                        attempts + 1, error)
        try:
            self.outbox.notice(rb, Notice(f"decoration-failed:{rb.id}:{key}",
                                          DecorationFailed(what, rb.ref, attempts + 1, error)))
        except Exception as exc:  # Slack is refusing everything: the transition still happens
            log.warning("could not say that %s was not posted for %s: %s", what, rb.ref,
                        type(exc).__name__)

    def _complete(self, rb: Rollback, svc: ServiceConfig, m: Monitor | None) -> None:
        summary = str(m.result.get("summary")) if m else "no stability monitoring configured"
        # The known-good configuration is recorded in the completion's own transaction, so a
        # config-scope plan made the moment anything shows "completed" pins the new record
        # (``restore_config`` refuses one that changed since the plan). A re-run of the
        # deciding tick finds the rollback completed: no snapshot, the record stays as is.
        known_good = self._known_good_snapshot(rb) if rb.state == State.MONITORING else None
        rb = self._move(rb, Event.STABLE, State.MONITORING, actor="bot",
                        detail={"monitor": m.id if m else None, "summary": summary},
                        known_good=known_good)
        if rb.state != State.COMPLETED:
            return
        self.crash_points.completed(rb.ref)
        self.progress.notice(rb, Notice(f"complete:{rb.id}", Completed(
            rb.ref, rb.service, rb.target_revision.label())))
        window = span(svc.monitoring.duration_seconds)
        detail = (f"No regression in {window} of monitoring after the rollback" if m
                  else "Rollback verified; no stability monitoring configured")
        self._schedule_notify(rb, "stable", 1, detail=detail)
        self.reminders.create(rb)
        for hook in self.on_completed:
            hook(rb)
        if m is None:  # all done: its backup is not needed (a no-op when it runs this)
            self.jobs.cancel(rollback_id=rb.id, kinds=[COMPLETE_JOB])

    def _known_good_snapshot(self, rb: Rollback) -> dict[str, Any] | None:
        """A stable rollback's configuration, what a later ``restore_config`` returns to
        (recorded with the completion). None for a platform without config snapshots (its
        spec says so): its configuration travels with the revision, and an empty record
        would read as one."""
        spec = self.catalog.spec(rb.platform)
        if spec is not None and not spec.supports(Capability.CONFIG_SNAPSHOTS):
            return None
        try:
            return self.catalog.platform(rb.platform).snapshot_config(rb.target).to_dict()
        except Unsupported as exc:  # out of reach right now: nothing to record, no alarm
            log.info("no known-good config recorded for %s: %s", rb.ref, exc)
        except Exception as exc:  # a missing snapshot must not hold up a good rollback
            log.warning("could not record known-good config for %s: %s", rb.ref, exc)
        return None

    # ------------------------------------------------------------------ notifications
    def _schedule_notify(self, rb: Rollback, phase: str, attempt: int, **payload: Any) -> None:
        self.jobs.schedule(
            kind=NOTIFY_JOB, rollback_id=rb.id, due_at=self.clock(),
            payload={"phase": phase, "attempt": attempt, **payload},
            dedupe_key=f"{NOTIFY_JOB}:{rb.id}:{phase}:{attempt}")

    def _notify_job(self, job: Job) -> None:
        assert job.rollback_id is not None
        rb = self.rollback_store.get(job.rollback_id)
        phase, attempt = str(job.payload["phase"]), int(job.payload["attempt"])
        if phase in ("restored", "verification_failed") and rb.state == State.VERIFYING:
            if attempt == self.attempt(rb.id):
                self._defer(job)  # the transition this follows has not committed yet
            return
        if phase == "resolved" and rb.state == State.UNSTABLE:
            if any(e.event == Event.RESOLVE.value for e in self.rollback_store.audit_events(rb.id)):
                return  # resolved and later unstable again: this notice is stale
            defers = int(job.payload.get("defers", 0))
            if defers < 30:  # the click has not committed yet; give up if it never does
                self._defer(job, payload={**job.payload, "defers": defers + 1})
            return
        wanted = {"restored": {State.MONITORING, State.UNSTABLE, State.COMPLETED},
                  "verification_failed": {State.VERIFICATION_FAILED, State.FAILED},
                  "resolved": {State.COMPLETED, State.FAILED}}
        if phase in wanted and rb.state not in wanted[phase]:
            return  # a re-verification after a crash decided otherwise
        self.notifier.send(rb, self.catalog.service_config(rb.service), phase=phase,
                           attempt=attempt, detail=str(job.payload.get("detail", "")),
                           checks_passed=int(job.payload.get("checks_passed", 0)))

    # ------------------------------------------------------------------ buttons
    def retry_verification(self, ref: str | int, *, user: str) -> Rollback:
        rb = self._decider(ref, user, Action.RETRY_VERIFICATION)
        attempt = self.attempt(rb.id)
        rb = self._move(rb, Event.RETRY_VERIFICATION, State.VERIFICATION_FAILED, actor=user,
                        refuse=True)
        self._close_verification(rb, attempt, VerificationRetried(user))
        self.on_approved(rb.id)  # wake an executor: verifying is claimable
        return rb

    def resume_monitoring(self, ref: str | int, *, user: str) -> Rollback:
        rb = self._decider(ref, user, Action.RESUME_MONITORING)
        svc = self.catalog.service_config(rb.service)
        previous = self.store.monitors(rb.id)
        n = 1 + sum(1 for e in self.rollback_store.audit_events(rb.id)
                    if e.event == Event.RESUME_MONITORING.value)
        m = self._open_monitor(rb, svc, key=f"{rb.id}:resume:{n}", start=self.clock())
        try:
            rb = self._move(rb, Event.RESUME_MONITORING, State.UNSTABLE, actor=user,
                            detail={"monitor": m.id}, refuse=True)
        except NotAllowed:
            self.store.finish_monitor(m.id, status="superseded", at=self.clock(),
                                      result={})
            raise
        for old in previous:
            if old.status == "unstable":
                self.outbox.edit(rb, monitoring.alert_notice(
                    rb, old, closed=MonitoringResumed(user)))
        self.outbox.notice(rb, monitoring.start_notice(rb, svc, m))
        return rb

    def resolve(self, ref: str | int, *, user: str) -> Rollback:
        before = self.service.get(ref)
        if before.state == State.UNSTABLE:
            # Scheduled before the transition (like every aftercare job): a crash between
            # the two can defer the notice, never lose it. The job waits for the outcome.
            self.service.check_can_resolve(before, user=user)  # all of it, before a write
            self._schedule_notify(before, "resolved", 1)
        rb = self.service.resolve(ref, user=user)
        footer = ClosedBy(user, rb.ref, rb.state.value)
        if before.state == State.VERIFICATION_FAILED:
            self._close_verification(rb, self.attempt(rb.id), footer)
        elif before.state == State.UNSTABLE:
            for m in self.store.monitors(rb.id):
                if m.status == "unstable":
                    self.outbox.edit(rb, monitoring.alert_notice(rb, m, closed=footer))
        return rb

    def _close_verification(self, rb: Rollback, attempt: int, footer: Message) -> None:
        events = [e for e in self.rollback_store.audit_events(rb.id)
                  if e.event == Event.VERIFICATION_FAILED.value
                  and e.detail.get("attempt") == attempt]
        if not events:
            return
        results = [CheckResult(c["name"], c["status"], c["summary"], {}, c["duration_ms"])
                   for c in events[-1].detail.get("checks", [])]
        self.outbox.edit(rb, verification_notice(rb, results, attempt=attempt, closed=footer))

    def _decider(self, ref: str | int, user: str, action: Action) -> Rollback:
        """The authority table's row for ``action`` (state and who); these buttons sit in
        the thread's notices, so any channel the rollback's notices reach is fine."""
        rb = self.service.get(ref)
        self.policy.authorize(action, rb, user=user, channel_id=None)
        return rb

    def _move(self, rb: Rollback, event: Event, expected: State, *, actor: str,
              detail: dict[str, Any] | None = None, updates: dict[str, Any] | None = None,
              refuse: bool = False, known_good: dict[str, Any] | None = None) -> Rollback:
        """CAS transition + re-render; a lost race returns the current rollback (or, for a
        person's click, refuses with what happened)."""
        try:
            rb = self.rollback_store.transition(rb.id, event, actor=actor, expected=expected,
                                               detail=detail, updates=updates,
                                               known_good=known_good)
        except StaleState as exc:
            if refuse:
                raise NotAllowed(f"{exc.current.ref} is already "
                                 f"{exc.current.state.value.replace('_', ' ')}.") from None
            return exc.current
        try:
            self.chat.refresh(rb)
        except Exception as exc:  # committed: the deliverer renders it once Slack answers
            log.warning("re-rendering %s failed (retried): %s", rb.ref, type(exc).__name__)
            self.progress.refresh(rb)
        return rb
