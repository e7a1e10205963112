"""The runbook's "Rollback Completion": stakeholder messages and the status page, per phase.

Phases: restored (the completion template), verification_failed, regression, stable, resolved.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from bot.aftercare.monitoring import span
from bot.aftercare.postmortem import duration, in_utc
from bot.aftercare.statuspage import StatuspageClient, StatuspageError
from bot.domain.config import RollbackConfig, ServiceConfig, Severity
from bot.domain.models import Rollback
from bot.domain.ports import Notice
from bot.persistence.aftercare_store import AftercareStore, Facts
from bot.persistence.outbox import Outbox

log = logging.getLogger(__name__)

# phase -> (incident status, component status); None: leave the status page alone
STATUSPAGE = {
    "restored": ("monitoring", "operational"),
    "verification_failed": ("investigating", "major_outage"),
    "regression": ("identified", "degraded_performance"),
    "stable": ("resolved", "operational"),
    "resolved": ("resolved", "operational"),
}


def display_name(service: str) -> str:
    """``hotel-voice-bot`` -> ``Hotel Voice Bot`` (the runbook's heading)."""
    return " ".join(w.capitalize() for w in service.replace("_", "-").split("-") if w)


def utc(at: datetime) -> str:
    return f"{in_utc(at):%Y-%m-%d %H:%M:%S} UTC"


def deadlines(config: RollbackConfig, rb: Rollback, since: datetime
              ) -> tuple[datetime, datetime | None]:
    """(review due, post-mortem due or None) counted from when the steps finished."""
    policy = config.policy_for(rb.service)
    review = since + timedelta(hours=policy.review_within_hours)
    needs_pm = rb.severity in (Severity.P0.value, Severity.P1.value)
    return review, (since + timedelta(hours=policy.postmortem_within_hours) if needs_pm
                    else None)


def completion_text(config: RollbackConfig, svc: ServiceConfig, rb: Rollback, facts: Facts,
                    *, checks_passed: int) -> str:
    """The runbook's completion template, filled in."""
    assert facts.restored_at is not None
    start = rb.incident_started_at or rb.created_at
    since = "incident start" if rb.incident_started_at else "rollback request"
    current = rb.current_revision.label() if rb.current_revision else "unknown"
    window = svc.monitoring.duration_seconds
    until = facts.restored_at + timedelta(seconds=window)
    status = f"Service restored and verified ({checks_passed} checks passed)"
    review, postmortem = deadlines(config, rb, facts.steps_completed_at)
    steps = []
    if window > 0:
        steps.append(f"Stability monitoring for {span(window)} (until {in_utc(until):%H:%M}"
                     f" UTC): error rate, health and latency every "
                     f"{span(svc.monitoring.interval_seconds)}")
        status += "; monitoring stability"
    steps.append(f"Post-incident review within "
                 f"{config.policy_for(rb.service).review_within_hours:g} h (by {utc(review)})")
    if postmortem is not None:
        steps.append(f"Post-mortem within {config.policy_for(rb.service).postmortem_within_hours:g}"
                     f" h (by {utc(postmortem)})")
    return "\n".join([
        "*Rollback details*",
        f"• Version rolled back to: {rb.target_revision.label()} (from {current})",
        f"• Rollback completed at: {utc(facts.steps_completed_at)}",
        f"• Service restored at: {utc(facts.restored_at)}",
        f"• Total downtime: {duration(facts.restored_at - start)} (since the {since} at "
        f"{utc(start)})",
        f"*Current status:* {status}.",
        "*Next steps:*",
        *(f"• {s}" for s in steps),
    ])


def phase_text(phase: str, rb: Rollback, detail: str) -> tuple[str, str]:
    """(title, body) for the short stakeholder updates after the completion message."""
    name = display_name(rb.service)
    if phase == "verification_failed":
        return (f":x: {name} rollback did not restore service",
                f"Verification after {rb.ref} failed: {detail}. The incident team is on it.")
    if phase == "regression":
        return (f":warning: {name} unstable after the rollback",
                f"{detail}. The incident commander has been alerted ({rb.ref}).")
    if phase == "stable":
        return (f":large_green_circle: {name} stable", f"{detail} ({rb.ref}).")
    return (f":large_green_circle: {name} incident closed",
            f"{rb.ref} was closed by the incident team.")


class Notifier:
    def __init__(self, *, config: RollbackConfig, aftercare: AftercareStore,
                 outbox: Outbox) -> None:
        self.config = config
        self.aftercare = aftercare
        self.outbox = outbox

    def send(self, rb: Rollback, svc: ServiceConfig, *, phase: str, attempt: int,
             detail: str = "", checks_passed: int = 0) -> None:
        facts = self.aftercare.facts(rb.id)
        if phase == "restored":
            assert facts is not None
            title = f":white_check_mark: {display_name(rb.service)} Rollback Completed"
            body = completion_text(self.config, svc, rb, facts, checks_passed=checks_passed)
        else:
            title, body = phase_text(phase, rb, detail)
        footer = f"Rollback {rb.ref} · requested by <@{rb.requester}>" + (
            f" · approved by <@{rb.approver}>" if rb.approver else "")
        failed = []
        for channel in svc.stakeholders.channels:
            notice = Notice(key=f"stakeholders:{rb.id}:{phase}:{attempt}:{channel}",
                            title=title, text=body, footer=footer)
            try:
                self.outbox.notice(rb, notice, channel=channel)
            except Exception as exc:  # one unreachable channel must not hide the others
                log.warning("stakeholder update to %s failed: %s", channel, exc)
                failed.append(channel)
        if failed:
            self._warn(rb, f"stakeholders:{rb.id}:{phase}:{attempt}",
                       f"Could not post the {phase.replace('_', ' ')} update to "
                       f"{', '.join(failed)}; tell stakeholders by hand.")
        if svc.stakeholders.statuspage is not None and phase in STATUSPAGE:
            try:
                self._statuspage(rb, svc, phase, f"{title.split(' ', 1)[1]}. {detail}".strip())
            except StatuspageError as exc:
                self._warn(rb, f"statuspage:{rb.id}:{phase}:{attempt}",
                           f"Status page not updated ({phase.replace('_', ' ')}): {exc}")

    def _statuspage(self, rb: Rollback, svc: ServiceConfig, phase: str, body: str) -> None:
        cfg = svc.stakeholders.statuspage
        assert cfg is not None
        status, component = STATUSPAGE[phase]
        facts = self.aftercare.facts(rb.id)
        incident = facts.statuspage_incident_id if facts else None
        with StatuspageClient(cfg) as page:
            if incident is None and facts is not None and facts.statuspage_creating:
                incident = page.find_unresolved(f"[{rb.ref}]")  # a create whose answer we lost
                if incident:
                    self.aftercare.set_statuspage_incident(rb.id, incident)
            if incident is None:
                if status == "resolved":
                    return  # nothing was ever open: nothing to resolve
                self.aftercare.statuspage_creating(rb.id)
                name = f"{display_name(rb.service)}: rollback after a bad release [{rb.ref}]"
                incident = page.create_incident(name=name, status=status, body=body,
                                                component_status=component)
                self.aftercare.set_statuspage_incident(rb.id, incident)
                return
            page.update_incident(incident, status=status, body=body, component_status=component)

    def _warn(self, rb: Rollback, key: str, text: str) -> None:
        try:
            self.outbox.notice(rb, Notice(key=f"warn:{key}", text=f":warning: {text}"))
        except Exception:
            log.exception("could not post a warning for %s", rb.ref)
