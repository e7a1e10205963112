"""What the core tells people, as facts: one frozen dataclass per kind of message.

The core never writes Slack text. It says *what* happened (a kind) and hands over the facts
a person needs (refs, user ids, revisions, errors, times); the Slack layer
(``handlers/wording.py``) words every kind: emoji, bold, mentions, escaping. A thread line
goes through ``Chat.thread``, a channel post through ``Chat.post_channel``, an aftercare
notice as ``Notice(key, message)`` through the outbox. ``ScrubbedChat``
(``bot.domain.ports``) scrubs every string fact before the Slack layer sees it.

Facts stay facts: a user is a user id (``requester``, ``by``), never a mention; a time is a
``datetime``, formatted by the renderer. Plain-words pieces the core also stores or audits
(a step's error, a hand-over cause, a refusal) are ``Words``: text with the people it names
(``Mention``) and the rollbacks it links (``RollbackLink``) kept as facts, so the same words
can be stored as plain text (``plain``) and shown in Slack with working mentions.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from bot.domain.words import GroupMention, RollbackLink, Words

if TYPE_CHECKING:  # annotations only: compensation imports the models, which import errors
    from bot.domain.compensation import Undo


class Message:
    """Base of every kind of message; the Slack layer has one rendering per subclass."""

    __slots__ = ()


# ---------------------------------------------------------------------- request and decisions
@dataclass(frozen=True)
class ImmediatePolicy(Message):
    """Thread: the severity's policy is to roll back at once, and whether break glass (an
    approver approving their own request) is allowed."""

    severity: str
    mode: str  # PolicyMode value
    destructive: bool  # a destructive step still needs a second person
    self_approval: bool  # the severity's ``allow_self_approval``


@dataclass(frozen=True)
class KnownBadTargetRequested(Message):
    """Channel: a request targets a revision someone rolled back from before."""

    ref: str
    requested_by: str
    service: str
    target: str
    marked_by_rollback: int | None


@dataclass(frozen=True)
class RollbackRequested(Message):
    """Stakeholder channel: a rollback was requested."""

    service: str
    ref: str
    target: str
    severity: str


@dataclass(frozen=True)
class StakeholdersNotNotified(Message):
    """Thread: the request could not be posted to these stakeholder channels."""

    channels: tuple[str, ...]


@dataclass(frozen=True)
class KnownBadOverride(Message):
    """Channel: an approver approved a known-bad target."""

    user: str
    ref: str
    service: str
    target: str


@dataclass(frozen=True)
class BreakGlass(Message):
    user: str
    severity: str


@dataclass(frozen=True)
class AutomationApproved(Message):
    """``rollback-bot auto`` approved its own request (``automation.self_approve``)."""

    identity: str
    severity: str


@dataclass(frozen=True)
class PolicyOverridden(Message):
    """An approver executes now what the severity's policy would leave for later."""

    user: str
    severity: str
    mode: str  # PolicyMode value


@dataclass(frozen=True)
class Rejected(Message):
    user: str
    ref: str
    reason: str


@dataclass(frozen=True)
class Cancelled(Message):
    user: str
    ref: str


@dataclass(frozen=True)
class CancelAsked(Message):
    """Someone pressed Cancel on an executing rollback; ``undo`` says what happens next."""

    user: str
    ref: str
    undo: Undo


@dataclass(frozen=True)
class ScaledBackUp(Message):
    user: str
    target: str  # the platform target, described
    replicas: int


@dataclass(frozen=True)
class Resolved(Message):
    """Thread: a person closed the rollback."""

    user: str
    ref: str
    state: str


@dataclass(frozen=True)
class HotfixReported(Message):
    """Thread: ``user`` reported a hotfix in progress on a P1 request. The decision deadline
    moved once, from ``was`` to ``due`` (``minutes`` later than it was, or than the click if
    the deadline had passed); unapproved, the request expires at ``expires_at``."""

    user: str
    ref: str
    was: datetime | None  # None: a request made before deadlines were kept
    due: datetime
    minutes: float
    expires_at: datetime | None


# ---------------------------------------------------------------------- decision-matrix timers
@dataclass(frozen=True)
class Expired(Message):
    """Thread: a pending request expired; ``due`` was its decision deadline."""

    ref: str
    due: datetime | None = None


@dataclass(frozen=True)
class DecisionDue(Message):
    """Thread: a request's decision deadline (its severity's response time) has come and
    nobody decided: the approvers and the incident commander (else the requester) are asked.
    P1: roll back now, no hotfix reported (or the reported one's extra time is over); P2:
    evaluation over, decide; P3: plan the pinned revision for the next deployment; P0: an
    immediate rollback still waiting for its approver."""

    ref: str
    severity: str
    mode: str  # PolicyMode value
    due: datetime
    approver_group: GroupMention | None  # the approvers' Slack usergroup, resolved or not
    approvers: tuple[str, ...]  # approver user ids from the configuration
    commander: str  # the incident commander, else the requester
    target: str  # the pinned target revision, labelled
    hotfix_by: str | None  # P1: who reported a hotfix in progress (the deadline moved)
    expires_at: datetime | None


# ---------------------------------------------------------------------- execution
@dataclass(frozen=True)
class ExecutionStarted(Message):
    ref: str
    steps: int


@dataclass(frozen=True)
class ExecutionResumed(Message):
    ref: str
    executor: str


@dataclass(frozen=True)
class DidNotStart(Message):
    ref: str
    why: str


@dataclass(frozen=True)
class MarkedKnownBad(Message):
    revision: str
    service: str


@dataclass(frozen=True)
class StepNote(Message):
    """A step's own progress line (``StepContext.progress``)."""

    text: str


@dataclass(frozen=True)
class StepRetrying(Message):
    seq: int
    total: int
    description: str
    error: str
    delay: float
    capped: bool  # the platform asked for a longer wait than the cap
    attempts: int


@dataclass(frozen=True)
class StepDone(Message):
    seq: int
    total: int
    description: str
    note: str


@dataclass(frozen=True)
class Compensated(Message):
    """The executor undid the scale-down (``why``: plain words, also audited)."""

    why: str
    target: str
    replicas: int


@dataclass(frozen=True)
class ExecutionFailed(Message):
    ref: str
    seq: int
    description: str
    error: str
    compensated: Compensated | None


@dataclass(frozen=True)
class CancelledBeforeStep(Message):
    """The executor stopped at a Cancel and compensated."""

    ref: str
    by: Words
    seq: int
    description: str
    compensated: Compensated | None


@dataclass(frozen=True)
class InterruptedRestore:
    """Where the database may stand after the executor died inside ``restore_db``."""

    backup_path: str | None
    begun: bool  # pg_restore had been launched


@dataclass(frozen=True)
class HandedOver(Message):
    """Needs attention, the service left scaled down (or the database unknown): where things
    stand and exactly what to run."""

    ref: str
    cause: Words
    replicas: int | None  # the count before the scale-down; None: not scaled down
    manual_command: str | None  # how to scale back up by hand
    check_database: bool  # the database may have changed (a restore began)
    reason: str | None  # why the executor did not scale back itself
    restore: InterruptedRestore | None


@dataclass(frozen=True)
class Interrupted(Message):
    """Needs attention after a crash inside a destructive step, nothing left scaled down."""

    ref: str
    cause: Words
    restore: InterruptedRestore | None


# ---------------------------------------------------------------------- aftercare notices
@dataclass(frozen=True)
class VerificationRetried(Message):
    """Footer of a verification notice once someone retried."""

    user: str


@dataclass(frozen=True)
class MonitoringResumed(Message):
    """Footer of a regression alert once someone resumed monitoring."""

    user: str


@dataclass(frozen=True)
class ClosedBy(Message):
    """Footer of a notice once someone closed the rollback from it."""

    user: str
    ref: str
    state: str


@dataclass(frozen=True)
class ReminderClosed(Message):
    """Footer of a reminder marked scheduled or done."""

    status: str  # scheduled | done
    user: str
    at: datetime


@dataclass(frozen=True)
class ReminderSnoozed(Message):
    user: str
    until: datetime


@dataclass(frozen=True)
class Verification(Message):
    """The one verification notice of an attempt."""

    rollback_id: int
    ref: str
    service: str
    attempt: int
    outcome: str  # passed | failed | none (no checks configured)
    summary: str  # "3 passed, 1 failed"
    checks: str  # one plain line per check
    failures: str  # what failed, one phrase per check
    mention: str | None  # who is told when it failed
    closed: Message | None  # who acted on it (replaces the buttons)


@dataclass(frozen=True)
class MonitoringStarted(Message):
    service: str
    until: datetime
    interval_seconds: float
    error_rate_threshold: float | None  # None: no Prometheus configured
    health_failures: int | None  # failed checks in a row that alert; None: no health check


@dataclass(frozen=True)
class MonitoringCheck(Message):
    seq: int
    total: int
    error_rate: float | None
    health_ok: bool | None
    health_detail: str
    notes: str


@dataclass(frozen=True)
class RegressionAlert(Message):
    rollback_id: int
    ref: str
    service: str
    seq: int | str  # the check that found it ("?" if unknown)
    total: int
    at: datetime
    reason: str
    mention: str
    closed: Message | None


@dataclass(frozen=True)
class StabilityReport(Message):
    ref: str
    figures: tuple[tuple[str, str], ...]  # label, value


@dataclass(frozen=True)
class Completed(Message):
    ref: str
    service: str
    target: str


@dataclass(frozen=True)
class DecorationFailed(Message):
    """A report or chart could not be posted; the rollback went on without it."""

    what: str
    ref: str
    attempts: int
    error: str


@dataclass(frozen=True)
class Completion:
    """The runbook's completion template, filled in."""

    target: str
    current: str
    completed_at: datetime
    restored_at: datetime
    downtime: str
    since: str  # "incident start" | "rollback request"
    started_at: datetime
    checks_passed: int
    monitoring_seconds: float
    monitoring_interval_seconds: float
    review_hours: float
    review_due: datetime
    postmortem_hours: float | None  # None: no post-mortem for this severity
    postmortem_due: datetime | None
    start_source: str = ""  # where the incident start came from, in words ("" unknown)
    # A database restore's data-loss window (backup timestamp to restore); None: no restore.
    data_loss_from: datetime | None = None
    data_loss_to: datetime | None = None
    # The service's own notice template (``stakeholders.notice_template``, checked when the
    # catalog loads); None: the runbook's (bot.domain.notice_template.DEFAULT_NOTICE).
    template: str | None = None
    service: str = ""
    ref: str = ""


@dataclass(frozen=True)
class StakeholderUpdate(Message):
    """A stakeholder channel's update for one phase; ``headline`` is also the status page's."""

    phase: str  # restored | verification_failed | regression | stable | resolved
    headline: str
    ref: str
    detail: str
    requester: str
    approver: str | None
    completion: Completion | None  # the "restored" phase's template


@dataclass(frozen=True)
class StakeholdersNotUpdated(Message):
    phase: str
    channels: tuple[str, ...]


@dataclass(frozen=True)
class StatuspageNotUpdated(Message):
    phase: str
    error: str


@dataclass(frozen=True)
class StakeholdersNotEmailed(Message):
    """The relay refused the phase's e-mail (for ``recipients``), or kept failing until the
    bot gave up; the thread is told so people can tell them by hand."""

    phase: str
    recipients: tuple[str, ...]
    error: str


@dataclass(frozen=True)
class Reminder(Message):
    """A review or post-mortem reminder; ``value`` identifies it on its buttons."""

    value: str
    kind: str  # review | postmortem
    ref: str
    severity: str
    service: str
    target: str
    due_at: datetime
    within_hours: float
    again: bool  # a repeat, not the first posting
    document: str | None  # the attached skeleton's file name
    snooze_hours: float
    mention: str | None
    closed: Message | None


@dataclass(frozen=True)
class PostmortemPullRequest(Message):
    """Thread: the post-mortem skeleton is a pull request in the service's repository."""

    ref: str
    repository: str
    path: str
    url: str


@dataclass(frozen=True)
class PostmortemPullRequestFailed(Message):
    """Thread: no pull request could be opened (bad token, no access, gave up retrying)."""

    ref: str
    repository: str
    error: str


@dataclass(frozen=True)
class SkeletonNotUploaded(Message):
    ref: str
    error: str  # the exception's type name
    filename: str


@dataclass(frozen=True)
class ForwardFixAsk(Message):
    """The runbook's "Plan forward fix": asks for the issue or PR link and the root cause
    (``bot.aftercare.forward_fix``); ``value`` (the rollback id) identifies it on buttons."""

    value: str
    ref: str
    service: str
    bad_revision: str | None  # the revision rolled back from (known-bad now); None: no move
    again: bool  # a repeat, not the first posting
    final: bool  # the last reminder: nobody is chased after this one
    give_up_at: datetime
    mention: str | None
    closed: Message | None


@dataclass(frozen=True)
class ForwardFixRecorded(Message):
    """Footer (and thread line) of a forward fix given, waived, or no longer chased."""

    status: str  # given | waived | expired
    ref: str
    user: str | None  # None: expired (the bot stopped asking)
    at: datetime
    link: str | None = None
    root_cause: str | None = None
    reason: str | None = None


# ---------------------------------------------------------------------------- diagnosis
@dataclass(frozen=True)
class Checked:
    """One thing ``/rollback diagnose`` looked at and what it found, in plain words."""

    what: str  # "error rate", "database", an external check's name
    outcome: str  # ok | problem | unchecked (failed to answer, timed out, not set up)
    detail: str


@dataclass(frozen=True)
class Finding:
    """One of the runbook's scenarios that applies, with its evidence and the scope a
    request for it would take."""

    scenario: str  # app (error rate) | db (verify or migration check) | external
    scope: tuple[str, ...]
    evidence: tuple[str, ...]
    backup: str | None = None  # db: file name of the newest backup, None when there is none
    backup_created: datetime | None = None
    backup_location: str | None = None  # db: where backups were looked for
    taken_by: tuple[str, ...] = ()  # user ids who opened the request form for it


@dataclass(frozen=True)
class Diagnosis(Message):
    """Ephemeral answer to ``/rollback diagnose <service>``: the scenarios found (none:
    nothing wrong with what was checked) and every check with its outcome."""

    service: str
    at: datetime
    findings: tuple[Finding, ...]
    checked: tuple[Checked, ...]
    record: int | None = None  # its audit record, which a finding's button names


# ---------------------------------------------------------------------- release watcher
@dataclass(frozen=True)
class ReleaseProposal(Message):
    """The release watcher's proposal (channel notice): the error-rate rule held for
    ``duration_seconds``; the evidence, and buttons to request a rollback or snooze."""

    service: str
    since: datetime  # the episode's first holding check
    duration_seconds: float
    threshold: float
    lowest: float  # the lowest error rate of the window (every point was above threshold)
    latest: float
    current: str | None  # the current revision's label, if the platform said
    previous: str | None
    deployed_at: datetime | None
    revisions_note: str  # why revisions are missing ("" when read)
    health: str | None  # the latest health check, if configured
    severity: str  # suggested
    snooze_seconds: float
    request_value: str  # the Request button's value (service, severity, evidence)
    # ``watcher.auto_request``: why the bot's own request was refused (the buttons stay)
    auto_refused: str | None = None
    # Once a request answers the proposal (its button, auto_request, or a typed request
    # while the episode is open): which one and who asked; the buttons go.
    request: RollbackLink | None = None
    requested_by: str | None = None


@dataclass(frozen=True)
class ProposalSnoozed(Message):
    """Channel: someone snoozed the release watcher's proposals for a service."""

    service: str
    by: str
    until: datetime


@dataclass(frozen=True)
class WatchReading(Message):
    """Request message: the release watcher's latest figures for a pending request of a
    watched service (``rollbacks.watch_reading``), stored when the rounded figures change."""

    latest: float  # the error rate of the newest point
    threshold: float
    over_seconds: float | None  # how long every point has been over; None: the newest is not
    at: datetime  # when it was read

    def figures(self) -> tuple[str, int | None]:
        """What the message shows, rounded: the rate to 0.1 percentage point, the time over
        the threshold in whole minutes. A new reading re-renders the message only when
        these change."""
        minutes = None if self.over_seconds is None else int(self.over_seconds // 60)
        return f"{self.latest * 100:.1f}", minutes

    def to_json(self) -> dict[str, object]:
        return {"latest": self.latest, "threshold": self.threshold,
                "over_seconds": self.over_seconds, "at": self.at.isoformat()}

    @classmethod
    def from_json(cls, data: dict[str, object]) -> WatchReading:
        over = data.get("over_seconds")
        return cls(float(str(data["latest"])), float(str(data["threshold"])),
                   None if over is None else float(str(over)),
                   datetime.fromisoformat(str(data["at"])))


# ---------------------------------------------------------------------- escalation
@dataclass(frozen=True)
class EscalatedContact:
    """One person or group an escalation calls: the role's title, how Slack reaches them
    (a user id, or a group resolved or not), and how to reach them off Slack."""

    title: str
    name: str
    user: str | None
    group: GroupMention | None
    phone: str | None
    email: str | None


@dataclass(frozen=True)
class Escalated(Message):
    """Thread: an escalation rule fired (``rule``: ``bot.domain.contacts.Rule``); the
    contacts it calls are mentioned, the roles nobody configured are named, and whether a
    PagerDuty page goes out."""

    ref: str
    rule: str
    contacts: tuple[EscalatedContact, ...]
    unconfigured: tuple[str, ...]  # role titles the rule calls that have no contact
    paging: bool
    detail: str = ""  # e.g. the step that failed


@dataclass(frozen=True)
class PageFailed(Message):
    """Thread: PagerDuty did not accept a page (``action``); the error is safe to show."""

    ref: str
    action: str
    error: str
    retrying: bool
