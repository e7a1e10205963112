"""The status page from declaration to resolution: one incident per rollback, one update
per step of it, the component's status following.

A request of a severity in ``statuspage.open_at`` (default P0, P1) opens an incident as
*investigating*; approval makes it *identified*, a verified rollback *monitoring*, the end
of the stability window *resolved* (Statuspage's four incident statuses, in their order).
Each is one incident update, i.e. one entry of the incident's timeline (``incident_updates``
in Statuspage's API: https://doers.statuspage.io/api/v1/incidents/, where a PATCH of
``incident[status]`` and ``incident[body]`` adds one).

The source of truth is the rollback's audit trail, written in the same transaction as every
transition: a ``statuspage_sync`` job (scheduled after each transition that matters, and by
the stakeholder notice jobs, which are scheduled before theirs) walks the trail from where
the page was last brought (``bot.persistence.statuspage_store``) and sends what is missing,
in order, one call per event. So an update is never lost (a later run catches up), never
sent twice (the cursor moves once per event; a call whose answer was lost is looked up on
the page before it is sent again) and never holds a transition (the job runs on the
scheduler leader, after the fact). A refused update (a 4xx) is audited and said in the
thread and the page moves on; a 429 waits for its ``Retry-After``; other failures retry
with the scheduler's backoff, then give up the same way.

Component status: Statuspage's component statuses are ``operational``,
``degraded_performance``, ``partial_outage``, ``major_outage`` (and ``under_maintenance``,
for planned work). While the cause is being looked for or fixed the component shows an
outage (``major_outage`` for a P0, the runbook's "service down"; ``partial_outage``
otherwise); once the previous version is back and verified but still watched, it is
``degraded_performance`` (working, not yet trusted); at *resolved*, ``operational``.

A request that is rejected, cancelled or expires does not end the incident (the service is
still broken; the team is handling it another way): the page gets an update saying the
rollback was not carried out, with its status and component left as they were. A failed
rollback leaves the incident *identified* with what failed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from bot.aftercare.notifications import display_name
from bot.aftercare.statuspage import StatuspageClient, StatuspageError
from bot.domain import notice_template
from bot.domain.config import RollbackConfig, ServiceConfig, Severity, StatuspageConfig
from bot.domain.lifecycle import Event
from bot.domain.messages import StatuspageNotUpdated
from bot.domain.models import AuditEvent, Rollback
from bot.domain.ports import NO_CRASH_POINTS, Clock, CrashPoints, Notice
from bot.domain.time_words import span
from bot.observability.scrub import scrub
from bot.persistence.jobs import Job, JobStore
from bot.persistence.outbox import Outbox
from bot.persistence.statuspage_store import PageProgress, StatuspageStore
from bot.persistence.store import Store

log = logging.getLogger(__name__)

SYNC_JOB = "statuspage_sync"
# Runs of one sync job before a transient failure (5xx, unreachable) counts as final for the
# event it is stuck on; the scheduler backs off 2 s, 4 s, 8 s, 16 s between them.
SYNC_ATTEMPTS = 5
BUSY_RETRY = timedelta(seconds=2)  # another run holds the rollback's page
DEFAULT_RATE_LIMIT_WAIT = 60.0  # a 429 without Retry-After (Statuspage's example value)

# The audit events that change the page (the request itself is audited as "requested").
FOLLOWED = frozenset({
    "requested", Event.APPROVE.value, Event.REJECT.value, Event.CANCEL.value,
    Event.EXPIRE.value, Event.STEP_FAILED.value, Event.INTERRUPTED.value,
    Event.HAND_OVER.value, Event.VERIFIED.value, Event.VERIFICATION_FAILED.value,
    Event.REGRESSION.value, Event.RESUME_MONITORING.value, Event.STABLE.value,
    Event.RESOLVE.value})


@dataclass(frozen=True)
class PageUpdate:
    """One incident update: the incident's status after it, the component's, the text."""

    status: str
    component: str | None  # None: the component is left as it is
    body: str
    opens: bool = True  # may open the incident (False: says something only about an open one)


def opens_incident(svc: ServiceConfig, severity: str) -> bool:
    cfg = svc.stakeholders.statuspage
    return cfg is not None and severity in {s.value for s in cfg.open_at}


def outage(severity: str) -> str:
    return "major_outage" if severity == Severity.P0.value else "partial_outage"


def incident_name(rb: Rollback) -> str:
    """The incident's title; the rollback's ref in it finds an incident whose create
    answer was lost."""
    return f"{display_name(rb.service)}: problems after a release [{rb.ref}]"


def plan(events: list[AuditEvent], rb: Rollback, svc: ServiceConfig
         ) -> list[tuple[int, PageUpdate]]:
    """Every update the page should have had, by audit event id, in order. Deterministic:
    the same trail always gives the same texts (a lost answer is recognised by its text)."""
    name = display_name(rb.service)
    down = outage(rb.severity)
    status = "investigating"
    out: list[tuple[int, PageUpdate]] = []
    for e in events:
        if e.event not in FOLLOWED:
            continue
        if e.event == "requested" and rb.message_ts is None:
            continue  # the request was never shown (its message was refused): not declared
        update = _update(e, name=name, down=down, current=status, svc=svc)
        if update is not None:
            status = update.status
            out.append((e.id, update))
    return out


def _update(e: AuditEvent, *, name: str, down: str, current: str, svc: ServiceConfig
            ) -> PageUpdate | None:
    page = svc.stakeholders.statuspage
    templates = page.templates if page is not None else {}

    def text(kind: str, **values: str) -> str:  # the service's template, else the default
        return notice_template.render_status(kind, templates, {"service": name, **values})

    why = _failure_text(e)
    if e.event == "requested":
        return PageUpdate("investigating", down, text("requested"))
    if e.event == Event.APPROVE.value:
        return PageUpdate("identified", down, text("approved"))
    if e.event in (Event.REJECT.value, Event.CANCEL.value, Event.EXPIRE.value):
        how = {Event.REJECT.value: "declined", Event.CANCEL.value: "cancelled",
               Event.EXPIRE.value: "not approved in time"}[e.event]
        return PageUpdate(current, None, text("not_carried_out", how=how), opens=False)
    if e.event in (Event.STEP_FAILED.value, Event.INTERRUPTED.value, Event.HAND_OVER.value):
        return PageUpdate("identified", down, text("rollback_failed", failure=why))
    if e.event == Event.VERIFICATION_FAILED.value:
        return PageUpdate("identified", down, text("verification_failed", failure=why))
    if e.event in (Event.VERIFIED.value, Event.RESUME_MONITORING.value):
        return PageUpdate("monitoring", "degraded_performance", text("verified"))
    if e.event == Event.REGRESSION.value:
        return PageUpdate("identified", down, text("regression", failure=why))
    if e.event == Event.STABLE.value:
        monitored = e.detail.get("monitor") is not None
        return PageUpdate("resolved", "operational", text(
            "stable", monitored_for=span(svc.monitoring.duration_seconds) if monitored else ""))
    if e.event == Event.RESOLVE.value:
        return PageUpdate("resolved", "operational", text("resolved"))
    return None


def _failure_text(e: AuditEvent) -> str:
    """What failed, as the audit recorded it (scrubbed, one line, short): ` (…)` or ''."""
    d = e.detail
    raw = d.get("error") or d.get("reason") or d.get("summary") or ""
    if e.event == Event.VERIFICATION_FAILED.value:
        failed = [c.get("name") for c in d.get("checks", []) if c.get("status") == "fail"]
        raw = ", ".join(str(n) for n in failed if n) or raw
    text = scrub(str(raw)).splitlines()[0][:160] if raw else ""
    return f" ({text})" if text else ""


class StatusPageLifecycle:
    def __init__(self, *, config: RollbackConfig, store: Store, page_store: StatuspageStore,
                 jobs: JobStore, outbox: Outbox, clock: Clock,
                 client: Callable[[StatuspageConfig], StatuspageClient] = StatuspageClient,
                 crash_points: CrashPoints = NO_CRASH_POINTS) -> None:
        self.config = config
        self.store = store
        self.page_store = page_store
        self.jobs = jobs
        self.outbox = outbox
        self.clock = clock
        self.client = client
        self.crash_points = crash_points

    def job_handlers(self) -> dict[str, Callable[[Job], None]]:
        return {SYNC_JOB: self.run_job}

    # ------------------------------------------------------------------ triggers
    def requested(self, rb: Rollback) -> None:
        """A request was made (``RollbackService.when_requested``)."""
        self.follow(rb, "requested")

    def transitioned(self, rb: Rollback, event: Event) -> None:
        """A transition committed (``Store.when_transitioned``)."""
        self.follow(rb, event.value)

    def nudge(self, rb: Rollback, phase: str) -> None:
        """A stakeholder notice's job ran (``Notifier``): those are scheduled before their
        transition, so this catches an update whose own scheduling a crash prevented."""
        self.follow(rb, phase, always=True)

    def follow(self, rb: Rollback, event: str, *, always: bool = False) -> None:
        """Schedule a sync when ``event`` may change the page. Never raises: the status page
        is a decoration and must not fail what triggered it (the next trigger catches up)."""
        try:
            if (event not in FOLLOWED and not always) or not self._wanted(rb):
                return
            self.jobs.schedule(kind=SYNC_JOB, rollback_id=rb.id, due_at=self.clock(),
                               payload={"event": event})
        except Exception:
            log.exception("could not schedule the status page update for %s", rb.ref)

    def _wanted(self, rb: Rollback) -> bool:
        svc = self.config.services.get(rb.service)
        return svc is not None and opens_incident(svc, rb.severity)

    # ------------------------------------------------------------------ the job
    def run_job(self, job: Job) -> None:
        assert job.rollback_id is not None
        rb = self.store.get(job.rollback_id)
        if not self._wanted(rb):
            return
        svc = self.config.services[rb.service]
        with self.page_store.holding(rb.id) as held:
            if not held:  # another run is at it; look again shortly (it may miss our event)
                self._again(job, BUSY_RETRY)
                return
            self._bring_up_to_date(job, rb, svc)

    def _bring_up_to_date(self, job: Job, rb: Rollback, svc: ServiceConfig) -> None:
        cfg = svc.stakeholders.statuspage
        assert cfg is not None
        progress = self.page_store.progress(rb.id)
        todo = [(i, u) for i, u in plan(self.store.audit_events(rb.id), rb, svc)
                if i > progress.applied_through]
        if not todo:
            return
        incident = progress.incident_id
        with self.client(cfg) as page:
            for event_id, update in todo:
                try:
                    incident = self._apply(page, rb, progress, event_id, update, incident)
                except StatuspageError as exc:
                    if exc.status is not None:  # answered: a refusal, not a lost answer
                        self.page_store.sending(rb.id, None)
                    if exc.status == 429:  # the page asked us to wait: wait, then go on
                        wait = exc.retry_after if exc.retry_after is not None else (
                            DEFAULT_RATE_LIMIT_WAIT)
                        self._again(job, timedelta(seconds=wait))
                        return
                    if not exc.permanent and job.attempts + 1 < SYNC_ATTEMPTS:
                        raise  # the scheduler runs the job again with its backoff
                    self._give_up(rb, event_id, update, exc, incident=incident)

    def _apply(self, page: StatuspageClient, rb: Rollback, progress: PageProgress,
               event_id: int, update: PageUpdate, incident: str | None) -> str | None:
        if progress.sending_event == event_id:  # sent before, answer lost: is it there?
            found = self._already_sent(page, rb, update, incident)
            if found is not None:
                self._done(rb, event_id, update, found, reconciled=True)
                return found
        if incident is None and (update.status == "resolved" or not update.opens):
            self.page_store.applied(rb.id, event_id, incident_id=None)  # nothing was open
            return None
        self.page_store.sending(rb.id, event_id)
        if incident is None:
            incident = page.create_incident(name=incident_name(rb), status=update.status,
                                            body=update.body, component_status=update.component)
        else:
            page.update_incident(incident, status=update.status, body=update.body,
                                 component_status=update.component)
        # A crash test may die here: the page has the update, our record does not.
        self.crash_points.posted(f"statuspage:{rb.id}:{event_id}")
        self._done(rb, event_id, update, incident, reconciled=False)
        return incident

    def _already_sent(self, page: StatuspageClient, rb: Rollback, update: PageUpdate,
                      incident: str | None) -> str | None:
        if incident is None:
            return page.find_unresolved(f"[{rb.ref}]")
        return incident if update.body in page.incident_bodies(incident) else None

    def _done(self, rb: Rollback, event_id: int, update: PageUpdate, incident: str, *,
              reconciled: bool) -> None:
        # Audited first: whoever sees the cursor past the event finds the record of it.
        self.store.audit(rb.id, actor="bot", event="statuspage_updated", detail={
            "incident": incident, "status": update.status, "component": update.component,
            "for_event": event_id, **({"reconciled": True} if reconciled else {})})
        self.page_store.applied(rb.id, event_id, incident_id=incident)

    def _give_up(self, rb: Rollback, event_id: int, update: PageUpdate, exc: StatuspageError,
                 *, incident: str | None) -> None:
        log.warning("status page update for %s (%s) not made: %s", rb.ref, update.status, exc)
        self.store.audit(rb.id, actor="bot", event="statuspage_update_failed", detail={
            "incident": incident, "status": update.status, "for_event": event_id,
            "error": str(exc), **({"code": exc.status} if exc.status else {})})
        self.page_store.applied(rb.id, event_id, incident_id=None)
        try:  # a decoration about a decoration: never fails the job
            self.outbox.notice(rb, Notice(f"warn:statuspage:{rb.id}:{event_id}",
                                          StatuspageNotUpdated(update.status, str(exc))))
        except Exception:
            log.exception("could not say that the status page was not updated for %s", rb.ref)

    def _again(self, job: Job, after: timedelta) -> None:
        self.jobs.schedule(kind=SYNC_JOB, rollback_id=job.rollback_id, payload=job.payload,
                           due_at=self.clock() + after, dedupe_key=f"{SYNC_JOB}:again:{job.id}")
