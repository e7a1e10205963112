"""The runbook's "Post-Rollback Actions": review and post-mortem reminders until done.

Post at once, at the deadline, then every ``reminder_repeat_hours``; Snooze moves, Done stops.
The first post-mortem reminder carries the skeleton and a 30-minute meeting invitation
(``.ics``, ``bot.aftercare.meeting``); with ``postmortem.github`` the skeleton also becomes a
pull request (``bot.aftercare.postmortem_pr``).
"""

from __future__ import annotations

import logging
from datetime import timedelta
from pathlib import Path

from bot.aftercare import meeting, postmortem
from bot.aftercare.notifications import deadlines
from bot.aftercare.postmortem_pr import PostmortemPullRequests
from bot.aftercare.stakeholder_mail import StakeholderMail
from bot.domain.authority import Action
from bot.domain.config import RollbackConfig
from bot.domain.errors import NotAllowed
from bot.domain.figure_words import REMINDER_LABELS as LABELS
from bot.domain.messages import Message, ReminderClosed, ReminderSnoozed, SkeletonNotUploaded
from bot.domain.messages import Reminder as ReminderMessage
from bot.domain.models import Rollback
from bot.domain.policy import Policy
from bot.domain.ports import Clock, Notice
from bot.persistence.aftercare_store import AftercareStore, Reminder
from bot.persistence.jobs import Job, JobStore
from bot.persistence.outbox import Outbox
from bot.persistence.store import Store

log = logging.getLogger(__name__)

REMINDER_JOB = "reminder"


class Reminders:
    """A post-incident review for every rollback that reached verification; a post-mortem
    (with the generated skeleton attached) for P0/P1. Only the job whose ``seq`` is
    current may post, so a snoozed or closed reminder stays quiet."""

    def __init__(self, *, config: RollbackConfig, rollback_store: Store, jobs: JobStore,
                 policy: Policy, clock: Clock, aftercare_store: AftercareStore,
                 outbox: Outbox, pull_requests: PostmortemPullRequests | None = None,
                 mail: StakeholderMail | None = None) -> None:
        self.config = config
        self.mail = mail  # the meeting by e-mail too, when a relay and addresses are set
        self.pull_requests = pull_requests  # the skeleton as a pull request, when configured
        self.rollback_store = rollback_store
        self.jobs = jobs
        self.policy = policy
        self.clock = clock
        self.aftercare_store = aftercare_store
        self.outbox = outbox
        self.settings = config.aftercare
        self._installation_id: str | None = None  # the database's; read once

    # ------------------------------------------------------------------ creation
    def create(self, rb: Rollback) -> None:
        """Idempotent: the rollback's reminders exist and their next posting is scheduled."""
        facts = self.aftercare_store.facts(rb.id)
        since = facts.steps_completed_at if facts else self.clock()
        review, pm = deadlines(self.config, rb, since)
        now = self.clock()
        if pm is not None and self.pull_requests is not None:
            # Keyed, so once per rollback however often called; scheduled before the first
            # reminder so that one (and its meeting invitation) can carry the link.
            self.pull_requests.create(rb)
        for kind, due in (("review", review), ("postmortem", pm)):
            if due is not None:
                self.aftercare_store.add_reminder(rollback_id=rb.id, kind=kind, due_at=due,
                                            created_at=now)
        for r in self.aftercare_store.reminders(rb.id):
            if r.status == "open":
                self._schedule(r)

    def _schedule(self, r: Reminder) -> None:
        self.jobs.schedule(kind=REMINDER_JOB, rollback_id=r.rollback_id,
                                   due_at=r.next_at, payload={"reminder": r.id, "seq": r.seq},
                                   dedupe_key=f"{REMINDER_JOB}:{r.id}:{r.seq}")

    # ------------------------------------------------------------------ the job
    def run_job(self, job: Job) -> None:
        r = self.aftercare_store.reminder(int(job.payload["reminder"]))
        seq = int(job.payload["seq"])
        if r.status != "open" or seq < r.seq:
            return  # closed, or superseded by a snooze
        rb = self.rollback_store.get(r.rollback_id)
        now = self.clock()
        repeat = timedelta(hours=self.settings.reminder_repeat_hours)
        next_at = r.due_at if now < r.due_at else now + repeat
        # Schedule the next one first: a refused post (or a crash) then costs this post,
        # never the series. The job is keyed, so a retry of this one schedules nothing new.
        self.jobs.schedule(kind=REMINDER_JOB, rollback_id=rb.id, due_at=next_at,
                                   payload={"reminder": r.id, "seq": seq + 1},
                                   dedupe_key=f"{REMINDER_JOB}:{r.id}:{seq + 1}")
        document = None
        if r.kind == "postmortem":
            try:  # the skeleton is a decoration of the reminder: never its schedule
                document = self._document(rb, r)
            except Exception as exc:
                log.warning("post-mortem skeleton for %s not written: %s", rb.ref,
                            type(exc).__name__)
        self.outbox.notice(rb, self.notice(rb, r, seq, document=document))
        if document is not None and seq == 1:
            try:
                self.outbox.upload(rb, filename=document.name, content=document.read_bytes(),
                                   title=f"Post-mortem skeleton {rb.ref}")
            except Exception as exc:
                log.warning("post-mortem skeleton for %s not uploaded: %s", rb.ref,
                            type(exc).__name__)
                self._say_not_uploaded(rb, document, exc)
        if r.kind == "postmortem" and seq == 1:
            self._invite(rb, r)
        self.rollback_store.audit(rb.id, actor="bot", event="reminder_posted",
                                 detail={"kind": r.kind, "seq": seq})
        self.aftercare_store.advance_reminder(r.id, from_seq=seq, next_at=next_at)

    def _invite(self, rb: Rollback, r: Reminder) -> None:
        """The 30-minute post-mortem meeting as an ``.ics`` file in the thread, once (the
        upload is keyed by its file name); a decoration of the reminder like the skeleton."""
        try:
            opened = [e for e in self.rollback_store.audit_events(rb.id)
                      if e.event == "postmortem_pr_opened"]
            content = meeting.invitation(
                rb, installation=self._installation(), created=r.created_at, deadline=r.due_at,
                pull_request=str(opened[-1].detail["url"]) if opened else None)
            self.outbox.upload(rb, filename=meeting.filename(rb), content=content,
                               title=f"Post-mortem meeting {rb.ref} (30 min)")
        except Exception as exc:
            log.warning("post-mortem meeting for %s not attached: %s", rb.ref,
                        type(exc).__name__)
            return
        if self.mail is None:
            return
        try:  # keyed per rollback: a re-run of this reminder queues nothing twice
            self.mail.queue_invitation(
                rb, key=f"email:postmortem-meeting:{rb.id}", filename=meeting.filename(rb),
                calendar=content.decode("utf-8"),
                subject=f"Post-mortem meeting: {rb.service} {rb.ref} (30 min)",
                body=(f"A 30-minute post-mortem meeting for {rb.ref} ({rb.service}), before "
                      f"the post-mortem deadline {r.due_at:%Y-%m-%d %H:%M} UTC. The "
                      "invitation is attached (open it to add it to your calendar)."))
        except Exception as exc:
            log.warning("post-mortem meeting for %s not e-mailed: %s", rb.ref,
                        type(exc).__name__)

    def _say_not_uploaded(self, rb: Rollback, document: Path, exc: Exception) -> None:
        try:
            self.outbox.notice(rb, Notice(f"skeleton-not-uploaded:{rb.id}", SkeletonNotUploaded(
                rb.ref, type(exc).__name__, document.name)))
        except Exception:  # Slack refuses everything: the reminder series goes on anyway
            log.warning("could not say the skeleton for %s was not uploaded", rb.ref)

    def _document(self, rb: Rollback, r: Reminder) -> Path:
        """This rollback's skeleton: the file written before (by this replica), or a new
        one. ``write`` never returns another rollback's file."""
        installation = self._installation()
        if r.document and postmortem.belongs(Path(r.document), rb, installation=installation):
            return Path(r.document)
        store = self.rollback_store
        text = postmortem.render(rb, events=store.audit_events(rb.id), steps=store.steps(rb.id),
                                 facts=self.aftercare_store.facts(rb.id),
                                 monitors=self.aftercare_store.monitors(rb.id))
        path = postmortem.write(postmortem.directory(self.settings.postmortem_dir), rb, text,
                                installation=installation)
        self.aftercare_store.set_document(r.id, str(path))
        return path

    def _installation(self) -> str:
        if self._installation_id is None:
            self._installation_id = self.aftercare_store.installation_id()
        return self._installation_id

    def notice(self, rb: Rollback, r: Reminder, seq: int, *, document: Path | None = None,
               closed: Message | None = None) -> Notice:
        """Posting ``seq`` of ``r``; ``closed`` (who closed or snoozed it) replaces the buttons."""
        policy = self.config.policy_for(rb.service)
        hours = policy.review_within_hours if r.kind == "review" else \
            policy.postmortem_within_hours
        where = None
        if r.kind == "postmortem":
            where = document or (Path(r.document) if r.document else None)
        return Notice(f"{REMINDER_JOB}:{r.id}:{seq}", ReminderMessage(
            f"{r.id}:{seq}", r.kind, rb.ref, rb.severity, rb.service,
            rb.target_revision.label(), r.due_at, hours, again=seq != 1,
            document=where.name if where is not None else None,  # never the bot's local path
            snooze_hours=self.settings.reminder_snooze_hours,
            mention=None if closed else (rb.incident_commander or rb.requester), closed=closed))

    # ------------------------------------------------------------------ buttons
    def close(self, value: str, *, user: str, status: str) -> Reminder:
        """*Scheduled* or *Done*: the reminder stops; its messages lose their buttons."""
        r, rb = self._clicked(value, user)
        now = self.clock()
        closed = self.aftercare_store.close_reminder(r.id, status=status, by=user, at=now)
        if closed is None:
            raise NotAllowed(f"The {LABELS[r.kind].lower()} reminder for {rb.ref} is already "
                             f"{r.status}.")
        self.rollback_store.audit(rb.id, actor=user, event=f"{r.kind}_{status}", detail={})
        self._rerender(rb, closed, ReminderClosed(status, user, now))
        return closed

    def snooze(self, value: str, *, user: str) -> Reminder:
        r, rb = self._clicked(value, user)
        if r.status != "open":
            raise NotAllowed(f"The {LABELS[r.kind].lower()} reminder for {rb.ref} is "
                             f"already {r.status}.")
        now = self.clock()
        until = now + timedelta(hours=self.settings.reminder_snooze_hours)
        self.jobs.schedule(kind=REMINDER_JOB, rollback_id=rb.id, due_at=until,
                                   payload={"reminder": r.id, "seq": r.seq + 1},
                                   dedupe_key=f"{REMINDER_JOB}:{r.id}:{r.seq + 1}")
        moved = self.aftercare_store.snooze_reminder(r.id, next_at=until)
        if moved is None:
            raise NotAllowed(f"The reminder for {rb.ref} was closed meanwhile.")
        self.rollback_store.audit(rb.id, actor=user, event=f"{r.kind}_snoozed",
                                 detail={"until": until.isoformat()})
        self._rerender(rb, moved, ReminderSnoozed(user, until))
        return moved

    def _clicked(self, value: str, user: str) -> tuple[Reminder, Rollback]:
        reminder_id, _, _seq = value.partition(":")
        r = self.aftercare_store.reminder(int(reminder_id))
        rb = self.rollback_store.get(r.rollback_id)
        self.policy.check_who(Action.REMINDER, rb, user=user)  # the authority table
        return r, rb

    def _rerender(self, rb: Rollback, r: Reminder, footer: Message) -> None:
        for seq in range(1, r.seq + 1):  # posted ones only: an unposted key edits nothing
            try:
                self.outbox.edit(rb, self.notice(rb, r, seq, closed=footer))
            except Exception:
                log.exception("could not update reminder %s/%s", r.id, seq)
