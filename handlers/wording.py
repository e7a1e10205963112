"""Every sentence the bot says in Slack, worded from the core's messages.

The core says what happened as a kind with facts (``bot.domain.messages``); this module owns
how it reads in Slack: emoji, *bold*, mentions, links and escaping. Facts that people or
platforms wrote (reasons, revision labels, errors, service names) are escaped here piece by
piece (``handlers.mrkdwn``), so only the mentions and links built here render as markup.
The decision matrix's words (help text, policy phrases) come from the configuration
(``bot.domain.config``), never from literals. Pure functions: facts in, text out.

``line`` words a thread line, a channel post or a notice's footer; ``card`` words an
aftercare notice (title, body, who is told, buttons, footer) for ``handlers.views_aftercare``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

from bot.domain import messages as m
from bot.domain import notice_template
from bot.domain.authority import BOT_REQUESTER
from bot.domain.compensation import Undo
from bot.domain.config import Policy, PolicyMode, Severity
from bot.domain.figure_words import REMINDER_LABELS, pct
from bot.domain.time_words import duration, in_utc, span
from bot.domain.words import GroupMention
from handlers import ids
from handlers.mrkdwn import escape as e
from handlers.mrkdwn import handle, mention, permalink, usergroup, web_link, words

_M = TypeVar("_M", bound=m.Message)
_LINES: dict[type[m.Message], Callable[[Any], str]] = {}
_CARDS: dict[type[m.Message], Callable[[Any], Card]] = {}


@dataclass(frozen=True)
class Button:
    label: str
    action_id: str
    value: str
    style: str | None = None  # primary | danger


@dataclass(frozen=True)
class Card:
    """A notice as Slack shows it; every text is mrkdwn, already escaped."""

    text: str
    title: str | None = None
    mention: str | None = None  # a user id, told at the top
    buttons: tuple[Button, ...] = ()
    footer: str | None = None


def line(message: m.Message) -> str:
    """``message`` as one mrkdwn text: a thread line, a channel post or a notice's footer."""
    render = _LINES.get(type(message))
    if render is None:
        raise TypeError(f"no Slack wording for {type(message).__name__}")
    return render(message)


def card(message: m.Message) -> Card:
    """``message`` as an aftercare notice; a one-line kind is a card with only a body."""
    render = _CARDS.get(type(message))
    return render(message) if render is not None else Card(text=line(message))


def _says(kind: type[_M]) -> Callable[[Callable[[_M], str]], Callable[[_M], str]]:
    def register(render: Callable[[_M], str]) -> Callable[[_M], str]:
        _LINES[kind] = render
        return render
    return register


def _shows(kind: type[_M]) -> Callable[[Callable[[_M], Card]], Callable[[_M], Card]]:
    def register(render: Callable[[_M], Card]) -> Callable[[_M], Card]:
        _CARDS[kind] = render
        return render
    return register


def _utc(at: datetime) -> str:
    return f"{in_utc(at):%Y-%m-%d %H:%M:%S} UTC"


# ---------------------------------------------------------------------- the decision matrix
def policy_words(mode: str, deadline_minutes: float | None = None) -> str:
    """What a severity's policy mode means, with its configured decision deadline."""
    window = span(deadline_minutes * 60) if deadline_minutes else None
    if mode == PolicyMode.IMMEDIATE:
        return "immediate rollback" + (f" (decide within {window})" if window else "")
    if mode == PolicyMode.HOTFIX_WINDOW:
        return "roll back unless a hotfix lands" + (f" in {window}" if window else "")
    if mode == PolicyMode.EVALUATE:
        return "evaluate" + (f" within {window}" if window else "")
    return "plan for next deployment" + (f" (decide within {window})" if window else "")


def severity_policy(policy: Policy) -> str:
    """The help text's decision matrix, e.g. ``P1 roll back unless a hotfix lands in 15 min``."""
    rows = []
    for severity in Severity:
        row = policy.for_severity(severity)
        rows.append(f"{severity.value} {policy_words(row.mode, row.deadline_minutes)}")
    return "Severity policy: " + " · ".join(rows) + "."


# ---------------------------------------------------------------------- request and decisions
@_says(m.ImmediatePolicy)
def _immediate(msg: m.ImmediatePolicy) -> str:
    head = f":rotating_light: *{e(msg.severity)}*: {policy_words(msg.mode)}."
    if not msg.self_approval:
        return f"{head} Four-eyes rule: someone other than the requester must approve it."
    return (f"{head} An approver may approve their own request (break glass, audited)"
            + (", except the destructive steps: those need a second person."
               if msg.destructive else "."))


@_says(m.KnownBadTargetRequested)
def _known_bad_target(msg: m.KnownBadTargetRequested) -> str:
    origin = f" by RB-{msg.marked_by_rollback}" if msg.marked_by_rollback else ""
    return (f":rotating_light: *{e(msg.ref)} targets a KNOWN-BAD revision.* "
            f"{mention(msg.requested_by)} asked to roll `{e(msg.service)}` to {e(msg.target)}, "
            f"which was rolled back from{origin}. Only an approver can execute it, with an "
            "explicit override.")


@_says(m.RollbackRequested)
def _requested(msg: m.RollbackRequested) -> str:
    return (f":warning: {e(msg.service)}: rollback {e(msg.ref)} to {e(msg.target)} requested "
            f"({e(msg.severity)}).")


@_says(m.StakeholdersNotNotified)
def _not_notified(msg: m.StakeholdersNotNotified) -> str:
    return (f":warning: Could not notify {e(', '.join(msg.channels))}; tell stakeholders by "
            "hand.")


@_says(m.KnownBadOverride)
def _known_bad_override(msg: m.KnownBadOverride) -> str:
    return (f":rotating_light: *KNOWN-BAD OVERRIDE*: {mention(msg.user)} approved {e(msg.ref)}, "
            f"rolling `{e(msg.service)}` to {e(msg.target)}, a revision marked known-bad. This "
            "is recorded in the audit log.")


@_says(m.BreakGlass)
def _break_glass(msg: m.BreakGlass) -> str:
    return (f":rotating_light: BREAK GLASS: {mention(msg.user)} approved their own "
            f"{e(msg.severity)} rollback. This is recorded in the audit log.")


@_says(m.AutomationApproved)
def _automation_approved(msg: m.AutomationApproved) -> str:
    return (f":robot_face: Approved by the automation `{e(msg.identity)}`: "
            f"`automation.self_approve` allows it for {e(msg.severity)} without a second "
            "person. This is recorded in the audit log.")


@_says(m.PolicyOverridden)
def _overridden(msg: m.PolicyOverridden) -> str:
    return (f":warning: {mention(msg.user)} overrode the {e(msg.severity)} policy "
            f"({policy_words(msg.mode)}) and approved execution now.")


@_says(m.Rejected)
def _rejected(msg: m.Rejected) -> str:
    return f"{mention(msg.user)} rejected {e(msg.ref)}: {e(msg.reason)}"


@_says(m.Cancelled)
def _cancelled(msg: m.Cancelled) -> str:
    return f"{mention(msg.user)} cancelled {e(msg.ref)}."


_AFTER_CANCEL = {
    Undo.HUMAN: "the database restore has started, so the service stays scaled down until a "
                "human decides (you will get instructions)",
    Undo.RESTORE_REPLICAS: "the service is scaled back up",
    Undo.NOTHING: "steps already done stay done",
}


@_says(m.CancelAsked)
def _cancel_asked(msg: m.CancelAsked) -> str:
    return (f"{mention(msg.user)} asked to cancel {e(msg.ref)}: it stops after the current "
            f"step; {_AFTER_CANCEL[msg.undo]}.")


@_says(m.ScaledBackUp)
def _scaled_back_up(msg: m.ScaledBackUp) -> str:
    return f"{mention(msg.user)} scaled {e(msg.target)} back up to {msg.replicas} replicas."


@_says(m.Resolved)
def _resolved(msg: m.Resolved) -> str:
    return f"{mention(msg.user)} closed {e(msg.ref)} as {e(msg.state)}."


def _hhmm(at: datetime) -> str:
    return f"{in_utc(at):%H:%M} UTC"


def _unapproved(ref: str, expires_at: datetime | None) -> str:
    return f" Unapproved, {e(ref)} expires at {_hhmm(expires_at)}." if expires_at else ""


@_says(m.HotfixReported)
def _hotfix(msg: m.HotfixReported) -> str:
    moved = (f"from {_hhmm(msg.was)} to {_hhmm(msg.due)}" if msg.was is not None
             else f"to {_hhmm(msg.due)}")
    return (f"{mention(msg.user)} reports a hotfix in progress on {e(msg.ref)}: its decision "
            f"deadline moves {moved} ({span(msg.minutes * 60)} more for the hotfix; the deadline "
            "moves once per rollback). If no "
            f"hotfix has landed by {_hhmm(msg.due)}, I will ask the approvers to roll back."
            + _unapproved(msg.ref, msg.expires_at))


# ---------------------------------------------------------------------- decision-matrix timers
@_says(m.Expired)
def _expired(msg: m.Expired) -> str:
    due = f" (its decision was due {_hhmm(msg.due)})" if msg.due else ""
    return f"{e(msg.ref)} expired without approval{due}. Request it again if needed."


def _group(group: GroupMention) -> str:
    """A group Slack resolved is mentioned; one it did not is named, saying that nobody in
    it was notified (the reader must not take the plain ``@handle`` for a mention)."""
    return usergroup(group) or (f"{handle(group)} (a Slack group I could not resolve: "
                                "nobody in it was notified)")


def _asked(msg: m.DecisionDue) -> str:
    """The approvers (group, then users) and the incident commander (else the requester)."""
    people = [_group(msg.approver_group)] if msg.approver_group else []
    for user in (*msg.approvers, msg.commander):
        if mention(user) not in people:
            people.append(mention(user))
    return ", ".join(people)


@_says(m.DecisionDue)
def _decision_due(msg: m.DecisionDue) -> str:
    ref, sev, who, target = e(msg.ref), e(msg.severity), _asked(msg), e(msg.target)
    if msg.mode == PolicyMode.HOTFIX_WINDOW:
        why = ("no hotfix reported" if msg.hotfix_by is None else
               f"the hotfix {mention(msg.hotfix_by)} reported is not confirmed by its extended "
               f"deadline ({_hhmm(msg.due)})")
        text = (f":rotating_light: *{ref} ({sev}): {why}: roll back now?* {who}: approve the "
                f"rollback to {target}, or reject it with the reason (the hotfix landed).")
    elif msg.mode == PolicyMode.EVALUATE:
        text = (f":alarm_clock: *Evaluation window for {ref} ({sev}) has ended* (decision due "
                f"{_hhmm(msg.due)}). {who}: decide now: approve, reject or cancel it.")
    elif msg.mode == PolicyMode.NEXT_DEPLOYMENT:
        text = (f":spiral_note_pad: *{ref} ({sev}): plan for the next deployment* (decision "
                f"due {_hhmm(msg.due)}). {who}: ship the pinned revision {target} with the next "
                "deployment, or execute it now with *Override and approve*; reject it if it is "
                "not needed.")
    else:
        text = (f":rotating_light: *{ref} ({sev}): immediate rollback, still not approved.* "
                f"{who}: approve the rollback to {target} now.")
    return text + _unapproved(msg.ref, msg.expires_at)


# ---------------------------------------------------------------------- execution
@_says(m.ExecutionStarted)
def _started(msg: m.ExecutionStarted) -> str:
    return f":arrow_forward: Executing {e(msg.ref)}: {msg.steps} steps."


@_says(m.ExecutionResumed)
def _resumed(msg: m.ExecutionResumed) -> str:
    return (f":recycle: Resuming {e(msg.ref)} after an interruption "
            f"(executor {e(msg.executor)}).")


@_says(m.DidNotStart)
def _did_not_start(msg: m.DidNotStart) -> str:
    return (f":no_entry: {e(msg.ref)} did not start: {e(msg.why)}. Nothing was changed. "
            "Request a new rollback to review a plan for what runs now.")


@_says(m.MarkedKnownBad)
def _marked_known_bad(msg: m.MarkedKnownBad) -> str:
    return (f":no_entry: {e(msg.revision)} is now marked known-bad for `{e(msg.service)}`: no "
            "later rollback picks it unless an approver overrides.")


@_says(m.StepNote)
def _step_note(msg: m.StepNote) -> str:
    return f"_{e(msg.text)}_"


@_says(m.StepRetrying)
def _retrying(msg: m.StepRetrying) -> str:
    capped = " (the platform asked for longer; waits are capped)" if msg.capped else ""
    return (f":hourglass: Step {msg.seq}/{msg.total} {e(msg.description)}: {e(msg.error)}; "
            f"retrying in {msg.delay:.0f}s{capped} (attempt {msg.attempts}).")


@_says(m.StepDone)
def _step_done(msg: m.StepDone) -> str:
    return (f":white_check_mark: Step {msg.seq}/{msg.total} {e(msg.description)}"
            + (f": {e(msg.note)}" if msg.note else ""))


def _compensation(msg: m.Compensated) -> str:
    return (f"Compensation ({e(msg.why)}): scaled {e(msg.target)} back to {msg.replicas} "
            "replicas, the count recorded before the scale-down.")


def _undone(msg: m.Compensated | None) -> str:
    """What compensation undid, as a sentence of the final message ("" for nothing)."""
    return _compensation(msg) + "\n" if msg is not None else ""


@_says(m.Compensated)
def _compensated(msg: m.Compensated) -> str:
    return f":leftwards_arrow_with_hook: {_compensation(msg)}"


@_says(m.ExecutionFailed)
def _failed(msg: m.ExecutionFailed) -> str:
    return (f":x: {e(msg.ref)} failed at step {msg.seq} ({e(msg.description)}): {e(msg.error)}\n"
            + _undone(msg.compensated) + "Next: check the platform state, then request a new "
            "rollback or fix forward. Completed steps are listed above.")


@_says(m.CancelledBeforeStep)
def _cancelled_before(msg: m.CancelledBeforeStep) -> str:
    return (f":heavy_multiplication_x: {e(msg.ref)} cancelled by {words(msg.by)} before step "
            f"{msg.seq} ({e(msg.description)}). " + _undone(msg.compensated)
            + "Steps already done stay done; the revision it moved away from stays marked "
            "known-bad.")


def _database_checks(restore: m.InterruptedRestore) -> list[str]:
    """What a person checks after a restore was cut off (pg_restore names itself to the
    server, so a restore still running is visible in pg_stat_activity)."""
    backup = e(restore.backup_path or "BACKUP_FILE")
    return [
        "Make sure no restore is still running: on the service's database run `SELECT pid, "
        "state, query_start FROM pg_stat_activity WHERE application_name = 'pg_restore';` "
        "and wait for it to finish (or stop it with `SELECT pg_terminate_backend(pid)`).",
        "Check the database: run the service's verify queries and compare with the backup. "
        "If the restore did not land, run it by hand (`pg_restore --clean --if-exists "
        f"--single-transaction --no-owner -d \"$DSN\" {backup}`) or decide to keep the data "
        "as it is.",
    ]


def _restore_state(restore: m.InterruptedRestore) -> list[str]:
    """Where the database may stand when the executor died inside ``restore_db``."""
    backup = e(Path(restore.backup_path or "the pinned backup").name)
    if not restore.begun:
        return [f"• Database: probably untouched — the executor died during the checks "
                f"before pg_restore of `{backup}` was launched, but nothing journaled that it "
                "was not; check it."]
    return [
        f"• Database: the restore of `{backup}` may be partial. pg_restore may have run to "
        "completion or stopped part-way. It runs as one transaction and is killed with the "
        "process that ran it, so a restore stopped part-way is rolled back: the database is "
        "then either as it was before the restore or fully restored. If that executor lost "
        "its lease without dying (a network partition rather than a crash), its pg_restore "
        "may still be running and can still change the database.",
    ]


def _numbered(steps: list[str]) -> list[str]:
    return [f"{n}. {step}" for n, step in enumerate((s for s in steps if s), start=1)]


@_says(m.HandedOver)
def _handed_over(msg: m.HandedOver) -> str:
    """Stop loudly: where things stand and exactly what to run."""
    state = [
        f"• Service: left at 0 replicas (it had {msg.replicas} replicas before the "
        "scale-down); nothing starts it again until a person decides."
        if msg.replicas is not None else "",
        *(_restore_state(msg.restore) if msg.restore else []),
    ]
    checks = _database_checks(msg.restore) if msg.restore else None
    if not checks and msg.check_database:
        checks = ["Check the database: run the service's verify queries and look at the "
                  "restore output in the step list above."]
    steps = [
        *(checks or []),
        f"When it is safe, an approver clicks *Scale back up*, or run "
        f"`{e(msg.manual_command)}`." if msg.replicas is not None else "",
        "Close the rollback with *Mark resolved*.",
    ]
    lines = [
        "*Where things stand:*" if any(state) else "",
        *state,
        f"Why I did not scale it back: {e(msg.reason)}." if msg.reason else "",
        *_numbered(steps),
    ]
    return (f":warning: {e(msg.ref)} needs attention: {words(msg.cause)}.\n"
            + "\n".join(text for text in lines if text))


@_says(m.Interrupted)
def _interrupted(msg: m.Interrupted) -> str:
    checks = _database_checks(msg.restore) if msg.restore else None
    steps = [*(checks or ["Check the database and the platform by hand."]),
             "Close the rollback with *Mark resolved*."]
    database = _restore_state(msg.restore) if msg.restore else []
    return (f":warning: {e(msg.ref)} needs attention: {words(msg.cause)}.\n"
            + "\n".join([*(["*Where things stand:*", *database] if database else []),
                         *_numbered(steps)]))


# ---------------------------------------------------------------------- footers
@_says(m.VerificationRetried)
def _retried(msg: m.VerificationRetried) -> str:
    return f":repeat: {mention(msg.user)} retried verification"


@_says(m.MonitoringResumed)
def _monitoring_resumed(msg: m.MonitoringResumed) -> str:
    return f":eyes: {mention(msg.user)} resumed monitoring"


@_says(m.ClosedBy)
def _closed_by(msg: m.ClosedBy) -> str:
    return f":white_check_mark: {mention(msg.user)} closed {e(msg.ref)} as {e(msg.state)}"


_REMINDER_CLOSED = {"scheduled": ":calendar: Scheduled", "done": ":white_check_mark: Done"}


@_says(m.ReminderClosed)
def _reminder_closed(msg: m.ReminderClosed) -> str:
    return (f"{_REMINDER_CLOSED[msg.status]} — {mention(msg.user)} at "
            f"{in_utc(msg.at):%H:%M} UTC")


@_says(m.ReminderSnoozed)
def _reminder_snoozed(msg: m.ReminderSnoozed) -> str:
    return f":zzz: Snoozed by {mention(msg.user)} until {in_utc(msg.until):%H:%M} UTC"


# ---------------------------------------------------------------------- aftercare notices
@_shows(m.Verification)
def _verification(msg: m.Verification) -> Card:
    again = f" (attempt {msg.attempt})" if msg.attempt > 1 else ""
    ref = e(msg.ref)
    if msg.outcome == "none":
        title = f":grey_question: Verification of {ref}{again}: no checks configured"
        body = ("No health, database, probe or resource checks are configured for "
                f"`{e(msg.service)}`; the rollback is treated as verified.")
    elif msg.outcome == "failed":
        title = f":x: Verification of {ref} failed{again}: {e(msg.summary)}"
        body = (e(msg.checks) + f"\n\n*{ref} is now verification failed.* "
                f"Failed: {e(msg.failures)}.")
    else:
        title = f":white_check_mark: Verification of {ref} passed{again}: {e(msg.summary)}"
        body = e(msg.checks)
    buttons: tuple[Button, ...] = ()
    footer = line(msg.closed) if msg.closed is not None else None
    if msg.outcome == "failed" and msg.closed is None:
        value = str(msg.rollback_id)
        buttons = (Button("Retry verification", ids.RETRY, value, "primary"),
                   Button("Mark resolved", ids.ALERT_RESOLVE, value, "danger"))
        footer = ("Retry once the cause is fixed, or close the rollback as failed and "
                  "fix forward.")
    return Card(title=title, text=body, mention=msg.mention, buttons=buttons, footer=footer)


@_says(m.MonitoringStarted)
def _monitoring_started(msg: m.MonitoringStarted) -> str:
    watched = []
    if msg.error_rate_threshold is not None:
        watched.append(f"error rate (alert over {pct(msg.error_rate_threshold)})")
    if msg.health_failures is not None:
        watched.append(f"health and latency (alert after {msg.health_failures} failed checks "
                       "in a row)")
    what = ", ".join(watched) or "nothing (no Prometheus or health check configured)"
    return (f":eyes: Monitoring {e(msg.service)} until {in_utc(msg.until):%H:%M} UTC, every "
            f"{span(msg.interval_seconds)}: {what}.")


@_says(m.MonitoringCheck)
def _monitoring_check(msg: m.MonitoringCheck) -> str:
    parts = []
    if msg.error_rate is not None:
        parts.append(f"error rate {pct(msg.error_rate)}")
    if msg.health_ok is not None:
        parts.append(f"health {'ok' if msg.health_ok else 'FAILED'}: {e(msg.health_detail)}")
    if msg.notes:
        parts.append(e(msg.notes))
    return (f":eyes: Check {msg.seq}/{msg.total}: "
            + ("; ".join(parts) or "no checks configured"))


@_shows(m.RegressionAlert)
def _regression(msg: m.RegressionAlert) -> Card:
    ref, service = e(msg.ref), e(msg.service)
    buttons: tuple[Button, ...] = ()
    if msg.closed is None:
        value = str(msg.rollback_id)
        buttons = (Button("Resume monitoring", ids.RESUME_MONITORING, value, "primary"),
                   Button("Mark resolved", ids.ALERT_RESOLVE, value))
    return Card(
        title=f":rotating_light: {ref}: {service} is unstable after the rollback",
        text=(f"Regression at check {e(msg.seq)}/{msg.total} ({in_utc(msg.at):%H:%M:%S} UTC): "
              f"{e(msg.reason)}.\n*{ref} is now unstable.* Resume monitoring if it was a blip, "
              "or mark it resolved once you have fixed forward or rolled back further "
              f"(`{ids.COMMAND} {service} --to &lt;rev&gt;`)."),
        mention=msg.mention, buttons=buttons,
        footer=line(msg.closed) if msg.closed is not None
        else "Monitoring stopped at the regression.")


@_shows(m.StabilityReport)
def _report(msg: m.StabilityReport) -> Card:
    lines = [f"• *{e(name)}:* {e(value)}" for name, value in msg.figures]
    return Card(title=f":bar_chart: Stability report for {e(msg.ref)}: stable, no regression",
                text="\n".join(lines) or "No checks configured.",
                footer="Chart of error rate and latency over the window below.")


@_says(m.Completed)
def _completed(msg: m.Completed) -> str:
    return (f":large_green_circle: {e(msg.ref)} completed: {e(msg.service)} is on "
            f"{e(msg.target)}.")


@_says(m.DecorationFailed)
def _decoration_failed(msg: m.DecorationFailed) -> str:
    return (f":warning: I could not post {e(msg.what)} for {e(msg.ref)} after {msg.attempts} "
            f"attempts ({e(msg.error)}). {e(msg.ref)} goes on without it.")


# ---------------------------------------------------------------------- stakeholders
_PHASE_ICONS = {"restored": ":white_check_mark:", "verification_failed": ":x:",
                "regression": ":warning:", "stable": ":large_green_circle:"}


def completion_text(c: m.Completion) -> str:
    """The runbook's completion template (or the service's own), filled in."""
    until = c.restored_at + timedelta(seconds=c.monitoring_seconds)
    status = f"Service restored and verified ({c.checks_passed} checks passed)"
    steps = ["Root cause analysis and fix development"]
    if c.monitoring_seconds > 0:
        steps.append(f"Stability monitoring for {span(c.monitoring_seconds)} (until "
                     f"{in_utc(until):%H:%M} UTC): error rate, health and latency every "
                     f"{span(c.monitoring_interval_seconds)}")
        status += "; monitoring stability"
    steps.append(f"Post-incident review within {c.review_hours:g} h (by {_utc(c.review_due)})")
    if c.postmortem_hours is not None and c.postmortem_due is not None:
        steps.append(f"Post-mortem within {c.postmortem_hours:g} h (by "
                     f"{_utc(c.postmortem_due)})")
    counted_from_request = c.since == "rollback request"
    values = {
        "service": c.service, "rollback": c.ref, "version": c.target,
        "previous_version": c.current, "completed_at": _utc(c.completed_at),
        "restored_at": _utc(c.restored_at), "incident_started_at": _utc(c.started_at),
        "counted_from": c.since, "total_downtime": c.downtime,
        "start_source": "" if counted_from_request else c.start_source,
        "data_loss": _data_loss(c), "current_status": status, "next_steps": steps,
    }
    # A section holds 3,000 characters; views cut a longer one (the template's length is
    # bounded when the catalog loads).
    return notice_template.render(c.template or notice_template.DEFAULT_NOTICE, values,
                                  escape=e)


def _data_loss(c: m.Completion) -> str:
    """The database restore's data-loss window in words, "" when none ran."""
    if c.data_loss_from is None or c.data_loss_to is None:
        return ""
    return (f"writes between {_utc(c.data_loss_from)} (the backup) and "
            f"{_utc(c.data_loss_to)} (the restore) are not in the restored database "
            f"({duration(c.data_loss_to - c.data_loss_from)})")


def _phase_body(msg: m.StakeholderUpdate) -> str:
    ref, detail = e(msg.ref), e(msg.detail)
    if msg.phase == "verification_failed":
        return f"Verification after {ref} failed: {detail}. The incident team is on it."
    if msg.phase == "regression":
        return f"{detail}. The incident commander has been alerted ({ref})."
    if msg.phase == "stable":
        return f"{detail} ({ref})."
    return f"{ref} was closed by the incident team."


@_shows(m.StakeholderUpdate)
def _stakeholder_update(msg: m.StakeholderUpdate) -> Card:
    icon = _PHASE_ICONS.get(msg.phase, ":large_green_circle:")
    footer = f"Rollback {e(msg.ref)} · requested by {mention(msg.requester)}" + (
        f" · approved by {mention(msg.approver)}" if msg.approver else "")
    body = completion_text(msg.completion) if msg.completion else _phase_body(msg)
    return Card(title=f"{icon} {e(msg.headline)}", text=body, footer=footer)


@_says(m.StakeholdersNotUpdated)
def _not_updated(msg: m.StakeholdersNotUpdated) -> str:
    return (f":warning: Could not post the {e(msg.phase.replace('_', ' '))} update to "
            f"{e(', '.join(msg.channels))}; tell stakeholders by hand.")


@_says(m.StatuspageNotUpdated)
def _statuspage(msg: m.StatuspageNotUpdated) -> str:
    return (f":warning: Status page not updated ({e(msg.phase.replace('_', ' '))}): "
            f"{e(msg.error)}")


@_says(m.StakeholdersNotEmailed)
def _not_emailed(msg: m.StakeholdersNotEmailed) -> str:
    what = ("post-mortem meeting invitation" if msg.phase == "postmortem_meeting" else
            f"{msg.phase.replace('_', ' ')} update")
    return (f":warning: The {e(what)} was not e-mailed to "
            f"{e(', '.join(msg.recipients))} ({e(msg.error)}); tell them by hand.")


# ---------------------------------------------------------------------- reminders
@_shows(m.Reminder)
def _reminder(msg: m.Reminder) -> Card:
    label = REMINDER_LABELS[msg.kind]
    icon = ":spiral_note_pad:" if msg.kind == "review" else ":memo:"
    again = "Reminder: " if msg.again else ""
    body = (f"{label} of the {e(msg.severity)} rollback of `{e(msg.service)}` to "
            f"{e(msg.target)}, within {msg.within_hours:g} h of the rollback.")
    if msg.kind == "postmortem" and msg.document:
        body += (f"\nA skeleton with the timeline from the audit log is attached as "
                 f"`{e(msg.document)}`. Fill in root cause and lessons learned.")
    buttons: tuple[Button, ...] = ()
    if msg.closed is None:
        buttons = (Button("Scheduled", ids.REMINDER_SCHEDULED, msg.value, "primary"),
                   Button("Done", ids.REMINDER_DONE, msg.value),
                   Button(f"Snooze {msg.snooze_hours:g} h", ids.REMINDER_SNOOZE, msg.value))
    return Card(title=f"{icon} {again}{label} for {e(msg.ref)} due by {_utc(msg.due_at)}",
                text=body, mention=msg.mention, buttons=buttons,
                footer=line(msg.closed) if msg.closed is not None else None)


@_says(m.PostmortemPullRequest)
def _postmortem_pr(msg: m.PostmortemPullRequest) -> str:
    # A link only for a plain http(s) URL: anything that could close or re-open Slack's
    # <url|label> markup is shown as escaped text instead.
    safe = re.fullmatch(r"https?://[^\s<>|&]+", msg.url)
    link = f"<{msg.url}|pull request>" if safe else f"pull request {e(msg.url)}"
    return (f":memo: Post-mortem skeleton for {e(msg.ref)} is up for review in "
            f"`{e(msg.repository)}`: {link} (`{e(msg.path)}`).")


@_says(m.PostmortemPullRequestFailed)
def _postmortem_pr_failed(msg: m.PostmortemPullRequestFailed) -> str:
    return (f":warning: I could not open the post-mortem pull request for {e(msg.ref)} in "
            f"`{e(msg.repository)}`: {e(msg.error)}. The skeleton is still attached to the "
            "post-mortem reminder; check the service's `postmortem.github` settings.")


@_says(m.SkeletonNotUploaded)
def _skeleton_not_uploaded(msg: m.SkeletonNotUploaded) -> str:
    return (f":warning: I could not upload the post-mortem skeleton for {e(msg.ref)} "
            f"({e(msg.error)}); `{e(msg.filename)}` stays in the bot's post-mortem folder "
            "(`aftercare.postmortem_dir`).")


@_shows(m.ForwardFixAsk)
def _forward_fix_ask(msg: m.ForwardFixAsk) -> Card:
    again = "Reminder: " if msg.again else ""
    moved = (f"`{e(msg.service)}` was rolled back from {e(msg.bad_revision)} (now known-bad). "
             if msg.bad_revision else f"`{e(msg.service)}` was rolled back. ")
    body = (moved + "Plan the forward fix: record the issue or pull request that fixes it "
            "and the root cause, or waive it with a reason "
            f"(`{ids.COMMAND} forward-fix {e(msg.ref)} <url> [root cause]` · "
            f"`{ids.COMMAND} forward-fix {e(msg.ref)} --waive <reason>`).")
    if msg.final:
        body += ("\n:hourglass_flowing_sand: Last reminder: I stop asking now. The link can "
                 "still be recorded.")
    buttons: tuple[Button, ...] = ()
    if msg.closed is None:
        buttons = (Button("Record forward fix", ids.FORWARD_FIX_RECORD, msg.value, "primary"),
                   Button("Waive", ids.FORWARD_FIX_WAIVE, msg.value))
    return Card(title=f":wrench: {again}Forward fix for {e(msg.ref)}", text=body,
                mention=msg.mention, buttons=buttons,
                footer=line(msg.closed) if msg.closed is not None else None)


@_says(m.ForwardFixRecorded)
def _forward_fix_recorded(msg: m.ForwardFixRecorded) -> str:
    who = mention(msg.user) if msg.user else "nobody"
    at = f"{in_utc(msg.at):%Y-%m-%d %H:%M} UTC"
    if msg.status == "given":
        cause = f"\nRoot cause: {e(msg.root_cause)}" if msg.root_cause else ""
        return (f":white_check_mark: Forward fix of {e(msg.ref)}: {web_link(msg.link or '')} "
                f"— recorded by {who} at {at}{cause}")
    if msg.status == "waived":
        return (f":heavy_minus_sign: Forward fix of {e(msg.ref)} waived by {who} at {at}: "
                f"{e(msg.reason)}")
    return f":hourglass_flowing_sand: Forward fix of {e(msg.ref)}: no longer chased ({at})"


# ---------------------------------------------------------------------------- diagnosis
_OUTCOME_ICON = {"ok": ":white_check_mark:", "problem": ":x:", "unchecked": ":grey_question:"}


def diagnosis_title(msg: m.Diagnosis) -> str:
    svc, at = e(msg.service), f"{in_utc(msg.at):%H:%M} UTC"
    if msg.findings:
        n = len(msg.findings)
        return (f":mag: *Diagnosis of {svc}* at {at}: {n} runbook scenario"
                f"{'s apply' if n > 1 else ' applies'}")
    if not msg.checked:
        return (f":grey_question: *Nothing to check for {svc}*: no Prometheus error rate, "
                "database or external checks are configured for it")
    unchecked = [c for c in msg.checked if c.outcome == "unchecked"]
    if unchecked:
        return (f":grey_question: *Nothing wrong found with {svc}* at {at}, but "
                f"{len(unchecked)} of {len(msg.checked)} checks could not be done")
    return f":white_check_mark: *Nothing wrong with {svc}* in what I checked at {at}"


def finding_text(msg: m.Finding, *, at: datetime) -> str:
    scope = ", ".join(f"`{e(s)}`" for s in msg.scope)
    if msg.scenario == "app":
        head = ":chart_with_upwards_trend: *Error rate above the threshold*: roll the app back"
    elif msg.scenario == "db":
        head = ":floppy_disk: *Database checks failing*: roll the database back"
    else:
        repoint = " and re-point the webhooks" if "external" in msg.scope else ""
        head = f":electric_plug: *External checks failing*: roll the configuration back{repoint}"
    lines = [f"{head} (scope {scope})", *(f"• {e(x)}" for x in msg.evidence)]
    if msg.scenario == "db":
        if msg.backup is not None and msg.backup_created is not None:
            age = duration(at - msg.backup_created)
            lines.append(f"Backup a request would pin (once verified): `{e(msg.backup)}`, "
                         f"taken {_utc(msg.backup_created)} ({age} ago)")
        else:
            lines.append(f":warning: No backup found in `{e(msg.backup_location or '?')}`: "
                         "a database rollback needs a verified backup")
    if msg.taken_by:  # instead of its button (``views.diagnosis_blocks``)
        who = ", ".join(mention(u) for u in msg.taken_by)
        lines.append(f":arrow_right: Taken by {who}: request form opened with scope {scope}")
    return "\n".join(lines)


def finding_button(service: str, msg: m.Finding, *, record: int | None = None) -> Button:
    """Opens the request form with the finding's scope; the value carries ids only:
    ``<service>:<scope,…>``, then ``:<record>`` naming the diagnosis' audit record."""
    label = {"app": "Request app rollback", "db": "Request database rollback"}.get(
        msg.scenario, "Request config rollback")
    value = f"{service}:{','.join(msg.scope)}" + (f":{record}" if record is not None else "")
    return Button(label, ids.DIAGNOSIS_REQUEST, value, "primary")


def diagnosis_checked(msg: m.Diagnosis) -> str:
    return "\n".join(f"{_OUTCOME_ICON.get(c.outcome, '?')} {e(c.what)}: {e(c.detail)}"
                     for c in msg.checked)


@_says(m.Diagnosis)
def _diagnosis(msg: m.Diagnosis) -> str:
    parts = [diagnosis_title(msg), *(finding_text(f, at=msg.at) for f in msg.findings)]
    if msg.checked:
        parts.append("*Checked*\n" + diagnosis_checked(msg))
    return "\n\n".join(parts)


# ---------------------------------------------------------------------- release watcher
@_says(m.ReleaseProposal)
def _proposal_line(msg: m.ReleaseProposal) -> str:
    return (f":rotating_light: Release watcher: {e(msg.service)} error rate over "
            f"{pct(msg.threshold)} for {span(msg.duration_seconds)}: consider a rollback")


@_shows(m.ReleaseProposal)
def _proposal(msg: m.ReleaseProposal) -> Card:
    service = e(msg.service)
    lines = [f"The error rate has been over *{pct(msg.threshold)}* at every check for "
             f"*{span(msg.duration_seconds)}* (lowest {pct(msg.lowest)}, now "
             f"{pct(msg.latest)}; since {_utc(msg.since)}).",
             f"• *Running:* {e(msg.current) if msg.current else 'unknown'}"
             + (f", deployed {_utc(msg.deployed_at)}" if msg.deployed_at else ""),
             f"• *Previous:* {e(msg.previous) if msg.previous else 'unknown'}"]
    if msg.revisions_note:
        lines.append(f"• _Revisions not read: {e(msg.revisions_note)}_")
    if msg.health:
        lines.append(f"• *Health:* {e(msg.health)}")
    buttons: tuple[Button, ...] = ()
    if msg.request is not None:
        if msg.requested_by == BOT_REQUESTER:
            lines.append(f":white_check_mark: I requested the rollback myself "
                         f"(`auto_request`): {permalink(msg.request)}, severity "
                         f"{e(msg.severity)}. Nothing has been changed; it still needs an "
                         "approver.")
        else:
            lines.append(f":white_check_mark: Rollback requested: {permalink(msg.request)} by "
                         f"{mention(msg.requested_by or '')}. Follow it there.")
    else:
        if msg.auto_refused:
            lines.append(f":warning: I did not request the rollback myself (`auto_request`): "
                         f"{e(msg.auto_refused)}")
        lines.append(f"Nothing has been changed. *Request rollback* opens the usual request "
                     f"(severity {e(msg.severity)} suggested); it still needs an approver.")
        buttons = (Button("Request rollback", ids.WATCH_REQUEST, msg.request_value, "danger"),
                   Button(f"Snooze {span(msg.snooze_seconds)}", ids.WATCH_SNOOZE,
                          msg.service))
    return Card(title=f":rotating_light: Release watcher: {service} looks unhealthy",
                text="\n".join(lines), buttons=buttons,
                footer="Chart of the last 30 minutes in the thread. One proposal per "
                       "episode; silenced while a rollback of the service is active.")


@_says(m.WatchReading)
def _watch_reading(msg: m.WatchReading) -> str:
    """The request message's line while the request is pending."""
    rate, minutes = msg.figures()
    threshold = f"{msg.threshold * 100:.1f}".removesuffix(".0")
    if minutes is None:
        how = f"at or under {threshold} %"
    else:
        how = f"over {threshold} % for " + (f"{minutes} min" if minutes else "under a minute")
    return (f":chart_with_upwards_trend: Release watcher: error rate {rate} % ({how}), "
            f"updated {in_utc(msg.at):%H:%M} UTC")


@_says(m.ProposalSnoozed)
def _proposal_snoozed(msg: m.ProposalSnoozed) -> str:
    return (f":zzz: {mention(msg.by)} snoozed the release watcher for {e(msg.service)} "
            f"until {_utc(msg.until)}.")


# ---------------------------------------------------------------------- escalation
_ESCALATION_WHY = {
    "decision_due": "the decision deadline passed with no decision",
    "needs_attention": "the rollback stopped and needs a human",
    "destructive_failed": "a destructive step failed",
    "security": "the reason mentions security",
}


def contact_line(title: str, *, name: str = "", slack: str = "", phone: str | None = None,
                 email: str | None = None) -> str:
    """One contact as a line: *role* name, Slack (already markup), phone, e-mail."""
    parts = [f"*{e(title)}*" + (f" {e(name)}" if name else "")]
    if slack:
        parts.append(slack)
    if phone:
        parts.append(f":telephone_receiver: {e(phone)}")
    if email:
        parts.append(f":email: {e(email)}")
    return " · ".join(parts)


def _escalated_slack(c: m.EscalatedContact) -> str:
    if c.user:
        return mention(c.user)
    return _group(c.group) if c.group else ""


@_says(m.Escalated)
def _escalated(msg: m.Escalated) -> str:
    why = _ESCALATION_WHY.get(msg.rule) or e(msg.rule.replace("_", " "))
    detail = f" ({e(msg.detail)})" if msg.detail else ""
    text = f":sos: *Escalation for {e(msg.ref)}: {why}*{detail}."
    lines = [text] + ["• " + contact_line(c.title, name=c.name, slack=_escalated_slack(c),
                                          phone=c.phone, email=c.email)
                      for c in msg.contacts]
    if msg.unconfigured:
        lines.append(f"No contact configured for: {e(', '.join(msg.unconfigured))} "
                     "(`contacts:` in the service's configuration).")
    if msg.paging:
        lines.append(":pager: Paging through PagerDuty.")
    return "\n".join(lines)


@_says(m.PageFailed)
def _page_failed(msg: m.PageFailed) -> str:
    then = " Retrying with backoff." if msg.retrying else " Call the contacts above directly."
    return (f":warning: PagerDuty did not accept the {e(msg.action)} for {e(msg.ref)}: "
            f"{e(msg.error)}.{then}")
