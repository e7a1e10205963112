"""The stakeholder notice by e-mail: queued once per phase, sent by a job, retried, audited.

``queue`` renders the notice (the Slack notice's words, by the renderer the composition
root hands in) into an outbox row with its Message-ID fixed (``bot.persistence.mail_outbox``)
and schedules a ``stakeholder_email`` job for it. The job sends it through the relay
(``bot.integrations.mail``): a transient failure (4xx, connection) raises, so the scheduler
runs it again with its backoff; a permanent one (5xx), or the last transient one, marks the
row failed, audits it and says so in the rollback's thread. E-mail is a decoration: nothing
here ever holds or undoes a transition.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from bot.domain.config import RollbackConfig, ServiceConfig
from bot.domain.messages import StakeholdersNotEmailed, StakeholderUpdate
from bot.domain.models import Rollback
from bot.domain.ports import NO_CRASH_POINTS, Clock, CrashPoints, Notice
from bot.integrations.errors import MailError
from bot.integrations.mail import SmtpSender, new_mail
from bot.observability.scrub import scrub
from bot.persistence.jobs import Job, JobStore
from bot.persistence.mail_outbox import MailOutbox
from bot.persistence.outbox import Outbox
from bot.persistence.store import Store

log = logging.getLogger(__name__)

MAIL_JOB = "stakeholder_email"
# Runs of one e-mail job before a transient failure counts as final. The scheduler backs off
# 2 s, 4 s, ... between runs (``JobStore.retry_later``, which parks a job after 8): the last
# of these runs gives up itself, so the thread is told instead of the job going quiet.
MAIL_ATTEMPTS = 8

# (service, update) -> (subject, plain-text body): the Slack layer's words, without Slack.
MailText = Callable[[str, StakeholderUpdate], tuple[str, str]]


class StakeholderMail:
    def __init__(self, *, config: RollbackConfig, outbox: Outbox, mail_outbox: MailOutbox,
                 jobs: JobStore, store: Store, render: MailText, clock: Clock,
                 sender: SmtpSender | None = None,
                 crash_points: CrashPoints = NO_CRASH_POINTS) -> None:
        self.config = config
        self.outbox = outbox
        self.mail_outbox = mail_outbox
        self.jobs = jobs
        self.store = store
        self.render = render
        self.clock = clock
        self.sender = sender or (SmtpSender(config.smtp) if config.smtp else None)
        self.crash_points = crash_points

    def job_handlers(self) -> dict[str, Callable[[Job], None]]:
        return {MAIL_JOB: self.run_job}

    def queue(self, rb: Rollback, svc: ServiceConfig, update: StakeholderUpdate, *,
              key: str) -> bool:
        """Render ``update`` for ``svc``'s e-mail list once under ``key`` and schedule its
        sending; False when the service has no list (or no relay is configured)."""
        smtp = self.config.smtp
        if not svc.stakeholders.email or smtp is None:
            return False
        # Scrubbed like every Slack post (``ScrubbedChat``): a detail may quote an error.
        subject, body = (scrub(text) for text in self.render(rb.service, update))
        # A row already there keeps its rendering and Message-ID (a re-run of the notify job).
        self.mail_outbox.add(key, rollback_id=rb.id, mail=new_mail(
            smtp, recipients=tuple(svc.stakeholders.email), subject=subject, body=body))
        self.jobs.schedule(kind=MAIL_JOB, rollback_id=rb.id, due_at=self.clock(),
                           payload={"key": key, "phase": update.phase},
                           dedupe_key=f"{MAIL_JOB}:{key}")
        return True

    def queue_invitation(self, rb: Rollback, *, key: str, subject: str, body: str,
                         calendar: str, filename: str) -> bool:
        """The post-mortem meeting by e-mail, to the service's emergency contacts that have
        an address (the people who run the post-mortem), through the same outbox and job as
        a notice; False when there is no relay or nobody to send it to."""
        smtp = self.config.smtp
        recipients = tuple(dict.fromkeys(
            c.email for _, c in self.config.contacts_for(rb.service).configured() if c.email))
        if smtp is None or not recipients:
            return False
        self.mail_outbox.add(key, rollback_id=rb.id, mail=new_mail(
            smtp, recipients=recipients, subject=scrub(subject), body=scrub(body),
            calendar=calendar, calendar_name=filename))
        self.jobs.schedule(kind=MAIL_JOB, rollback_id=rb.id, due_at=self.clock(),
                           payload={"key": key, "phase": "postmortem_meeting"},
                           dedupe_key=f"{MAIL_JOB}:{key}")
        return True

    def run_job(self, job: Job) -> None:
        key, phase = str(job.payload["key"]), str(job.payload.get("phase", ""))
        if self.sender is None:  # the relay was removed from the config since: say so once
            self._give_up(job, key, phase, "no smtp relay configured any more", recipients=())
            return
        with self.mail_outbox.sending(key, wait=False) as pending:
            if pending is None:
                return  # sent (or given up) by an earlier run
            self.crash_points.sending(key)  # a crash test may die here: rendered, not sent
            try:
                refused = self.sender.send(pending.mail)
            except MailError as exc:
                last = job.attempts + 1 >= MAIL_ATTEMPTS
                if exc.transient and not last:
                    self.mail_outbox.note_error(key, error=str(exc), claim=pending.claim)
                    log.warning("stakeholder e-mail %s: attempt %d failed, retrying: %s",
                                key, pending.attempt, exc)
                    raise  # the scheduler runs the job again with its backoff
                error = str(exc) if not exc.transient else (
                    f"gave up after {pending.attempt} attempts: {exc}")
                self.mail_outbox.mark_failed(key, error=error, claim=pending.claim)
                self._give_up(job, key, phase, error, recipients=pending.mail.recipients,
                              code=exc.code)
                return
            self.crash_points.posted(key)  # the relay said 250; the row is not marked yet
            # Audited first: whoever sees the row sent finds the record of it.
            self.store.audit(job.rollback_id, actor="bot", event="stakeholder_email_sent",
                             detail={"phase": phase, "message_id": pending.mail.message_id,
                                     "to": list(pending.mail.recipients),
                                     "attempt": pending.attempt,
                                     **({"refused": refused} if refused else {})})
            self.mail_outbox.mark_sent(key, message_id=pending.mail.message_id,
                                       claim=pending.claim)
        if refused:  # taken for some recipients, refused for these: tell the thread
            self._tell(job, key, StakeholdersNotEmailed(
                phase, tuple(refused), "; ".join(refused.values())))

    def _give_up(self, job: Job, key: str, phase: str, error: str, *,
                 recipients: tuple[str, ...], code: int | None = None) -> None:
        log.warning("stakeholder e-mail %s not sent: %s", key, error)
        self.store.audit(job.rollback_id, actor="bot", event="stakeholder_email_failed",
                         detail={"phase": phase, "to": list(recipients), "error": error,
                                 **({"code": code} if code is not None else {})})
        self._tell(job, key, StakeholdersNotEmailed(phase, recipients, error))

    def _tell(self, job: Job, key: str, message: StakeholdersNotEmailed) -> None:
        if job.rollback_id is None:
            return
        try:  # a decoration about a decoration: never fails the job
            rb = self.store.get(job.rollback_id)
            self.outbox.notice(rb, Notice(f"warn:{key}", message))
        except Exception:
            log.exception("could not post the e-mail warning for %s", key)
