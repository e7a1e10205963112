"""Escalation: the runbook's emergency contacts called in the incident thread, and paged.

Rules (``bot.domain.contacts``): the decision deadline passed -> incident commander and
technical lead; execution stopped in ``needs_attention`` or a destructive step failed ->
the DBA (when a database step was involved) and the incident commander; the request's
reason mentions security -> the security team. Each rule fires at most once per rollback:
its thread post goes through the outbox (keyed ``escalation:<id>:<rule>``) and its audit
event is written once.

Paging (when the service has ``pagerduty:``): every escalation of a rollback triggers the
same PagerDuty alert (dedup key ``rollback-bot/RB-<n>``, ``bot.integrations.pagerduty``) on
the routing key of each role it calls (a contact's own, else the service's); the alert is
acknowledged when the rollback is approved and resolved when it completes, is cancelled,
rejected, expires, or a person resolves it. Each event is a durable ``pagerduty_event``
job keyed by rollback, action and routing key, run on the scheduler leader: a crash
re-sends at most the one event, which PagerDuty applies to the same alert (its dedup key).
A trigger that would arrive after the alert's resolve is dropped here, never re-opening it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import httpx

from bot.domain.config import CONTACT_TITLES, PagerDutyConfig, RollbackConfig
from bot.domain.contacts import DATABASE_STEPS, Rule, mentions_security, roles_for
from bot.domain.lifecycle import Event, State
from bot.domain.messages import Escalated, EscalatedContact, PageFailed
from bot.domain.models import Rollback
from bot.domain.ports import Clock, Directory, Notice
from bot.domain.words import GroupMention
from bot.integrations.pagerduty import (
    Alert,
    PagerDutyClient,
    PagerDutyError,
    PagerDutyRejected,
    dedup_key,
)
from bot.persistence.jobs import Job, JobStore
from bot.persistence.outbox import Outbox
from bot.persistence.store import Store

log = logging.getLogger(__name__)

PAGE_JOB = "pagerduty_event"
# Transitions after which nobody needs paging any more for the rollback.
_RESOLVING = frozenset({Event.STABLE, Event.CANCEL, Event.REJECT, Event.EXPIRE, Event.RESOLVE})


def escalation_key(rollback_id: int, rule: Rule) -> str:
    return f"escalation:{rollback_id}:{rule.value}"


def page_key(rollback_id: int, action: str, routing_key_env: str, rule: str = "") -> str:
    return f"{PAGE_JOB}:{rollback_id}:{action}:{routing_key_env}" + (f":{rule}" if rule else "")


class Escalation:
    def __init__(self, *, config: RollbackConfig, store: Store, jobs: JobStore,
                 outbox: Outbox, directory: Directory, clock: Clock,
                 http: httpx.Client | None = None,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.config = config
        self.store = store
        self.jobs = jobs
        self.outbox = outbox
        self.directory = directory  # resolves a group handle to the id Slack mentions
        self.clock = clock
        self.http = http  # the process's (bot.integrations.http_client); else one per page
        self.sleep = sleep  # the client's backoff between attempts of one event

    def job_handlers(self) -> dict[str, Callable[[Job], None]]:
        return {PAGE_JOB: self.page_job}

    # ------------------------------------------------------------------ the rules
    def decision_due(self, rb: Rollback) -> None:
        """The decision deadline passed (``bot.usecases.timers``)."""
        self.escalate(rb, Rule.DECISION_DUE)

    def requested(self, rb: Rollback) -> None:
        """A request was posted: its reason may call the security team."""
        if mentions_security(rb.reason):
            self.escalate(rb, Rule.SECURITY)

    def execution_ended(self, rb: Rollback) -> None:
        """Execution ended badly (the executor's end hook): needs_attention, or a failed
        destructive step."""
        steps = self.store.steps(rb.id)
        stopped = [s for s in steps if s.status in ("failed", "started")]
        database = any(s.kind in DATABASE_STEPS for s in stopped) or any(
            s.kind in DATABASE_STEPS and s.destructive and s.status == "done" for s in steps)
        detail = ", ".join(f"step {s.seq} {s.description}" for s in stopped)
        if rb.state == State.NEEDS_ATTENTION:
            self.escalate(rb, Rule.NEEDS_ATTENTION, database_step=database, detail=detail)
        elif rb.state == State.FAILED and any(s.destructive for s in stopped):
            self.escalate(rb, Rule.DESTRUCTIVE_FAILED, database_step=database, detail=detail)

    def transitioned(self, rb: Rollback, event: Event) -> None:
        """Every state change (the store's listener): acknowledge the alert at approval,
        resolve it when the rollback is over. Cheap unless the service pages."""
        svc = self.config.service(rb.service)
        if svc is None or svc.pagerduty is None:
            return
        if event == Event.APPROVE:
            action = "acknowledge"
        elif event in _RESOLVING and rb.state in (State.COMPLETED, State.CANCELLED,
                                                  State.REJECTED, State.EXPIRED, State.FAILED):
            action = "resolve"
            # A trigger not sent yet has nothing left to say (an acknowledge still goes first).
            unsent = [page_key(rb.id, "trigger", str(j.payload.get("routing_key_env")),
                               str(j.payload.get("rule") or ""))
                      for j in self.jobs.pending(rollback_id=rb.id, kinds=[PAGE_JOB])
                      if j.payload.get("action") == "trigger"]
            if unsent:
                self.jobs.cancel(rollback_id=rb.id, kinds=[PAGE_JOB], dedupe_keys=unsent)
        else:
            return
        for env in self._triggered(rb.id):
            # Not tied to the rollback's row: ending a rollback cancels its pending jobs
            # (``JobStore.cancel(rollback_id=…)``) right after this transition.
            self.jobs.schedule(kind=PAGE_JOB, due_at=self.clock(), rollback_id=None,
                               payload={"action": action, "routing_key_env": env,
                                        "rollback_id": rb.id},
                               dedupe_key=page_key(rb.id, action, env))

    # ------------------------------------------------------------------ escalating
    def escalate(self, rb: Rollback, rule: Rule, *, database_step: bool = False,
                 detail: str = "") -> None:
        svc = self.config.service(rb.service)
        contacts = self.config.contacts_for(rb.service)
        roles = roles_for(rule, database_step=database_step)
        called = [(role, c) for role in roles if (c := contacts.get(role)) is not None]
        paging = svc is not None and svc.pagerduty is not None
        if not called and not paging:
            return  # nobody configured to call: the thread already says what happened
        if svc is not None and svc.pagerduty is not None:
            # Queued first: the page goes out even if Slack refuses the post below.
            envs = {c.pagerduty_routing_key_env or svc.pagerduty.routing_key_env
                    for _, c in called} or {svc.pagerduty.routing_key_env}
            for env in sorted(envs):
                self.jobs.schedule(kind=PAGE_JOB, due_at=self.clock(), rollback_id=rb.id,
                                   payload={"action": "trigger", "routing_key_env": env,
                                            "rule": rule.value, "detail": detail,
                                            "roles": [CONTACT_TITLES[r] for r in roles]},
                                   dedupe_key=page_key(rb.id, "trigger", env, rule.value))
        key = escalation_key(rb.id, rule)
        self.outbox.notice(rb, Notice(key, Escalated(
            rb.ref, rule.value,
            tuple(EscalatedContact(CONTACT_TITLES[role], c.name,
                                   c.slack if c.slack and not c.slack_group else None,
                                   self._group(c.slack) if c.slack_group else None,
                                   c.phone, c.email) for role, c in called),
            tuple(CONTACT_TITLES[r] for r in roles if contacts.get(r) is None),
            paging, detail)))
        if not any(e.event == "escalated" and e.detail.get("key") == key
                   for e in self.store.audit_events(rb.id)):
            self.store.audit(rb.id, actor="bot", event="escalated",
                             detail={"key": key, "rule": rule.value,
                                     "roles": [r.value for r, _ in called], "paging": paging})

    def _group(self, slack: str | None) -> GroupMention | None:
        if not slack:
            return None
        if slack.startswith("S"):
            return GroupMention(slack, slack)
        try:
            group_id = self.directory.usergroup_id(slack.lstrip("@"))
        except Exception as exc:  # the escalation goes out anyway, naming the group
            log.warning("could not resolve usergroup %s: %s", slack, exc)
            group_id = None
        return GroupMention(slack, group_id)

    # ------------------------------------------------------------------ paging
    def _triggered(self, rollback_id: int) -> list[str]:
        """Routing key variables an alert of this rollback was triggered on (sent, or
        still to be sent)."""
        sent = {str(e.detail.get("routing_key_env")) for e in self.store.audit_events(rollback_id)
                if e.event == "pagerduty_trigger"}
        queued = {str(j.payload.get("routing_key_env")) for j in
                  self.jobs.pending(rollback_id=rollback_id, kinds=[PAGE_JOB])
                  if j.payload.get("action") == "trigger"}
        return sorted(sent | queued)

    def page_job(self, job: Job) -> None:
        rollback_id = job.rollback_id or job.payload.get("rollback_id")
        assert rollback_id is not None
        rb = self.store.get(int(rollback_id))
        svc = self.config.service(rb.service)
        if svc is None or svc.pagerduty is None:
            return  # the configuration no longer pages this service
        action, env = str(job.payload["action"]), str(job.payload["routing_key_env"])
        events = self.store.audit_events(rb.id)

        def done(act: str) -> bool:
            return any(e.event == f"pagerduty_{act}" and e.detail.get("routing_key_env") == env
                       and (act != "trigger" or e.detail.get("rule") == job.payload.get("rule"))
                       for e in events)

        if done(action) or (action == "trigger" and done("resolve")):
            return  # sent before a crash, or the alert was resolved meanwhile
        key = dedup_key(rb.ref)
        client = PagerDutyClient(svc.pagerduty, routing_key_env=env, client=self.http,
                                 sleep=self.sleep)
        try:
            if action == "trigger":
                client.trigger(key, self._alert(rb, svc.pagerduty, job.payload))
            elif action == "acknowledge":
                client.acknowledge(key)
            else:
                client.resolve(key)
        except PagerDutyRejected as exc:  # the event is wrong: sending it again cannot help
            self._failed(rb, action, env, str(exc), retrying=False)
            return
        except PagerDutyError as exc:
            self._failed(rb, action, env, str(exc), retrying=True)
            raise  # the scheduler retries the job with backoff
        finally:
            client.close()
        self.store.audit(rb.id, actor="bot", event=f"pagerduty_{action}",
                         detail={"dedup_key": key, "routing_key_env": env,
                                 "rule": job.payload.get("rule")})

    def _failed(self, rb: Rollback, action: str, env: str, error: str, *,
                retrying: bool) -> None:
        log.warning("PagerDuty %s for %s failed: %s", action, rb.ref, error)
        try:
            self.outbox.notice(rb, Notice(f"page-failed:{rb.id}:{action}:{env}",
                                          PageFailed(rb.ref, action, error, retrying)))
        except Exception as exc:  # Slack down too: the job's retry still pages
            log.warning("could not say the page failed for %s: %s", rb.ref,
                        type(exc).__name__)

    def _alert(self, rb: Rollback, cfg: PagerDutyConfig, payload: dict[str, Any]) -> Alert:
        rule = str(payload.get("rule") or "")
        roles = [str(r) for r in payload.get("roles") or []]
        detail = str(payload.get("detail") or "")
        summary = (f"{rb.ref} {rb.service} ({rb.severity}) rollback escalated: "
                   f"{rule.replace('_', ' ')}" + (f" ({detail})" if detail else ""))
        return Alert(
            summary=summary, source="rollback-bot", severity=cfg.severity,
            timestamp=self.clock(), component=rb.service, group=rb.target.describe(),
            event_class=f"rollback {rule.replace('_', ' ')}".strip(),
            custom_details={"rollback": rb.ref, "service": rb.service,
                            "severity": rb.severity, "state": rb.state.value,
                            "reason": rb.reason, "target": rb.target_revision.label(),
                            "requester": rb.requester, "escalated_to": roles})
