"""The runbook's "Rollback Completion": stakeholder messages and the status page, per phase.

Phases: restored (the completion template), verification_failed, regression, stable, resolved.
The stakeholder messages are facts (``StakeholderUpdate``), worded by the Slack layer. The
status page follows the rollback itself (``bot.aftercare.status_lifecycle``); each phase
here only nudges it (``statuspage``), so an update a crash kept from being scheduled
after its transition is still made.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from bot.aftercare.stakeholder_mail import StakeholderMail
from bot.domain import incident_times
from bot.domain.config import RollbackConfig, ServiceConfig, Severity
from bot.domain.messages import (
    Completion,
    Message,
    StakeholdersNotEmailed,
    StakeholdersNotUpdated,
    StakeholderUpdate,
)
from bot.domain.models import Rollback
from bot.domain.ports import Notice
from bot.domain.time_words import duration
from bot.persistence.aftercare_store import AftercareStore, Facts
from bot.persistence.outbox import Outbox

log = logging.getLogger(__name__)

def display_name(service: str) -> str:
    """``hotel-voice-bot`` -> ``Hotel Voice Bot`` (the runbook's heading)."""
    return " ".join(w.capitalize() for w in service.replace("_", "-").split("-") if w)


def deadlines(config: RollbackConfig, rb: Rollback, since: datetime
              ) -> tuple[datetime, datetime | None]:
    """(review due, post-mortem due or None) counted from when the steps finished."""
    policy = config.policy_for(rb.service)
    review = since + timedelta(hours=policy.review_within_hours)
    needs_pm = rb.severity in (Severity.P0.value, Severity.P1.value)
    return review, (since + timedelta(hours=policy.postmortem_within_hours) if needs_pm
                    else None)


def completion_facts(config: RollbackConfig, svc: ServiceConfig, rb: Rollback, facts: Facts,
                     *, checks_passed: int) -> Completion:
    """What the runbook's completion template is filled in with."""
    assert facts.restored_at is not None
    start = incident_times.recorded(rb.incident_started_at, rb.incident_start_source,
                                    requested_at=rb.created_at)
    policy = config.policy_for(rb.service)
    review, postmortem = deadlines(config, rb, facts.steps_completed_at)
    return Completion(
        target=rb.target_revision.label(),
        current=rb.current_revision.label() if rb.current_revision else "unknown",
        completed_at=facts.steps_completed_at, restored_at=facts.restored_at,
        downtime=duration(facts.restored_at - start.at),
        since=incident_times.counted_from(start), start_source=start.source_text,
        data_loss_from=rb.data_loss_from, data_loss_to=rb.data_loss_to,
        started_at=start.at, checks_passed=checks_passed,
        monitoring_seconds=svc.monitoring.duration_seconds,
        monitoring_interval_seconds=svc.monitoring.interval_seconds,
        review_hours=policy.review_within_hours, review_due=review,
        postmortem_hours=policy.postmortem_within_hours if postmortem is not None else None,
        postmortem_due=postmortem, template=svc.stakeholders.notice_template,
        service=rb.service, ref=rb.ref)


HEADLINES = {
    "restored": "{name} Rollback Completed",
    "verification_failed": "{name} rollback did not restore service",
    "regression": "{name} unstable after the rollback",
    "stable": "{name} stable",
    "resolved": "{name} incident closed",
}


def headline(phase: str, service: str) -> str:
    """A phase's headline: the stakeholder update's title and the status page's first words."""
    return HEADLINES.get(phase, HEADLINES["resolved"]).format(name=display_name(service))


class Notifier:
    def __init__(self, *, config: RollbackConfig, aftercare_store: AftercareStore,
                 outbox: Outbox, mail: StakeholderMail | None = None,
                 statuspage: Callable[[Rollback, str], None] | None = None) -> None:
        self.config = config
        self.aftercare_store = aftercare_store
        self.outbox = outbox
        self.mail = mail  # the same update by e-mail, for services with an e-mail list
        self.statuspage = statuspage  # (rollback, phase): bring the status page up to date

    def send(self, rb: Rollback, svc: ServiceConfig, *, phase: str, attempt: int,
             detail: str = "", checks_passed: int = 0) -> None:
        facts = self.aftercare_store.facts(rb.id)
        completion = None
        if phase == "restored":
            assert facts is not None
            completion = completion_facts(self.config, svc, rb, facts,
                                          checks_passed=checks_passed)
        title = headline(phase, rb.service)
        update = StakeholderUpdate(phase, title, rb.ref, detail, rb.requester, rb.approver,
                                   completion)
        failed = []
        for channel in svc.stakeholders.channels:
            notice = Notice(f"stakeholders:{rb.id}:{phase}:{attempt}:{channel}", update)
            try:
                self.outbox.notice(rb, notice, channel=channel)
            except Exception as exc:  # one unreachable channel must not hide the others
                log.warning("stakeholder update to %s failed: %s", channel, exc)
                failed.append(channel)
        if failed:
            self._warn(rb, f"stakeholders:{rb.id}:{phase}:{attempt}",
                       StakeholdersNotUpdated(phase, tuple(failed)))
        if self.mail is not None and svc.stakeholders.email:
            key = f"email:stakeholders:{rb.id}:{phase}:{attempt}"
            try:  # rendered and queued now; a job of its own sends it (and retries)
                self.mail.queue(rb, svc, update, key=key)
            except Exception as exc:
                log.warning("stakeholder e-mail %s not queued: %s", key, exc)
                self._warn(rb, key, StakeholdersNotEmailed(
                    phase, tuple(svc.stakeholders.email), f"not queued: {exc}"))
        if self.statuspage is not None:
            self.statuspage(rb, phase)  # never raises (StatusPageLifecycle.follow)

    def _warn(self, rb: Rollback, key: str, message: Message) -> None:
        try:
            self.outbox.notice(rb, Notice(f"warn:{key}", message))
        except Exception:
            log.exception("could not post a warning for %s", rb.ref)
