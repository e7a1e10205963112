"""Who may do what to a rollback, in which state and from which channel: the one table.

Every decision a person can take on a rollback (a slash command, a button, a dialog) is a
row of ``RULES``. ``bot.domain.policy`` enforces the rows and ``bot.usecases.service``
asks it before any change, so a forged click of a button the message does not show is
refused exactly like a click of one it shows: the rendered buttons are a courtesy, this
table is the rule.
``docs/architecture.md`` ("Authority") is :func:`markdown_table`, checked by a test.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from enum import StrEnum

from bot.domain.config import PolicyMode
from bot.domain.lifecycle import State
from bot.domain.models import Rollback
from bot.domain.time_words import in_utc
from bot.domain.words import Mention, Words, as_words

# The requester of a rollback the bot files itself (the release watcher's ``auto_request``):
# no Slack user id looks like it, so it never holds a role and never approves anything.
BOT_REQUESTER = "rollback-bot"

# A refusal: plain words, or words naming people (``Mention``) the Slack layer renders.
Refusal = str | Words


class Role(StrEnum):
    """A relation between a person and one rollback (approver and tech lead: of its service,
    read from Slack at the moment of the decision, never from a cache)."""

    ANYONE = "anyone"
    REQUESTER = "requester"
    APPROVER = "approver"
    TECH_LEAD = "tech lead"
    INCIDENT_COMMANDER = "incident commander"  # never the requester (four eyes)
    ITS_APPROVER = "its approver"  # whoever approved this rollback, even if since removed
    BOT = "bot only"


class Where(StrEnum):
    INCIDENT_CHANNEL = "an incident channel"  # policy.allowed_channels or the service's pattern
    REQUEST_CHANNEL = "the request's channel"  # rb.channel_id, nowhere else
    ANYWHERE = "anywhere"


class Action(StrEnum):
    REQUEST = "request"
    APPROVE = "approve"
    APPROVE_OVERRIDE = "override and approve (P3)"
    APPROVE_KNOWN_BAD = "approve a known-bad target"
    REJECT = "reject"
    CANCEL = "cancel"
    HOTFIX = "report a hotfix in progress"
    TAKE_IC = "take incident command"
    TICK_INCIDENT_COMMANDER = "tick incident_commander"
    TICK_DECISION_APPROVED = "tick decision_approved"
    TICK_STAKEHOLDERS_NOTIFIED = "tick stakeholders_notified"
    TICK_BACKUP_VERIFIED = "tick backup_verified"
    TICK_PREVIOUS_VERSION = "tick previous_version"
    TICK_TEAM_ASSEMBLED = "tick team_assembled"
    SCALE_BACK_UP = "scale back up"
    RESOLVE = "resolve"
    RETRY_VERIFICATION = "retry verification"
    RESUME_MONITORING = "resume monitoring"
    REMINDER = "update a reminder"
    CLEAR_KNOWN_BAD = "clear a known-bad mark"
    FORWARD_FIX = "record the forward fix"
    WAIVE_FORWARD_FIX = "waive the forward fix"


class Guard(StrEnum):
    """Conditions beyond role, state and channel. The value is the documentation; the pure
    ones are checked here (:func:`guard_refusal`), the others where the comment says."""

    NO_ACTIVE = "no other active rollback of the service"  # service.request
    NOT_EXPIRED = "not expired"  # policy.check_approve
    # policy.check_approve:
    BREAK_GLASS = "the requester: break glass only (severity allows it, nothing destructive)"
    CHECKLIST = "required checklist items done"  # policy.check_approve
    TYPED_NAME = "destructive plan: service name typed"  # policy.check_approve
    PLAIN_PLAN = "target not known-bad, severity not P3"
    P3_PLAN = "severity P3 (next deployment), target not known-bad"
    KNOWN_BAD_PLAN = "the target is known-bad"
    REASON = "a reason"  # service.reject, service.clear_known_bad
    HOTFIX_POLICY = ("severity P1 (hotfix window); moves the decision deadline once per "
                     "rollback")
    NO_IC = "nobody is incident commander yet (no takeover)"
    NOT_REQUESTER = "not the requester"
    BOT_COULD_NOT = "only when the bot could not tick it, target not known-bad; no undo"
    ONE_CANCEL = "executing: asks the executor to stop, once"  # service.cancel
    LEFT_AT_ZERO = "the rollback left the service at 0 replicas"  # service.scale_back_up
    NOT_AT_ZERO = "not while the rollback left the service at 0"  # service.resolve


@dataclass(frozen=True)
class Rule:
    action: Action
    who: tuple[Role, ...]  # in the order refusals name them
    states: frozenset[State]  # empty: not about one rollback (request, known-bad marks)
    where: Where
    does: str  # the refusal's verb phrase: "cancel {ref}" ({ref}, {service} filled in)
    how: str  # the surface in Slack, for the documentation
    guards: tuple[Guard, ...] = ()
    refusal: str = ""  # a fixed refusal instead of "Only … can …" (bot-only items)
    checklist_item: str | None = None


S = State
R = Role
PENDING = frozenset({S.PENDING_APPROVAL})
ALL_STATES = frozenset(State)

RULES: tuple[Rule, ...] = (
    Rule(Action.REQUEST, (R.ANYONE,), frozenset(), Where.INCIDENT_CHANNEL,
         "request a rollback of `{service}`", "`/rollback <service>` or the request dialog",
         (Guard.NO_ACTIVE,)),
    Rule(Action.APPROVE, (R.APPROVER,), PENDING, Where.REQUEST_CHANNEL,
         "approve {ref}", "*Approve* (destructive plan: the typed-name dialog)",
         (Guard.PLAIN_PLAN, Guard.NOT_EXPIRED, Guard.BREAK_GLASS, Guard.CHECKLIST,
          Guard.TYPED_NAME)),
    Rule(Action.APPROVE_OVERRIDE, (R.APPROVER,), PENDING, Where.REQUEST_CHANNEL,
         "approve {ref}", "*Override and approve*",
         (Guard.P3_PLAN, Guard.NOT_EXPIRED, Guard.BREAK_GLASS, Guard.CHECKLIST,
          Guard.TYPED_NAME)),
    Rule(Action.APPROVE_KNOWN_BAD, (R.APPROVER,), PENDING, Where.REQUEST_CHANNEL,
         "approve {ref}", "*Roll back to known-bad anyway*",
         (Guard.KNOWN_BAD_PLAN, Guard.NOT_EXPIRED, Guard.BREAK_GLASS, Guard.CHECKLIST,
          Guard.TYPED_NAME)),
    Rule(Action.REJECT, (R.APPROVER,), PENDING, Where.REQUEST_CHANNEL,
         "reject {ref}", "*Reject*, then the reason dialog (channel checked at the click)",
         (Guard.REASON,)),
    Rule(Action.CANCEL, (R.REQUESTER, R.INCIDENT_COMMANDER, R.APPROVER),
         frozenset({S.PENDING_APPROVAL, S.APPROVED, S.EXECUTING}), Where.ANYWHERE,
         "cancel {ref}", "*Cancel* or `/rollback cancel RB-n`", (Guard.ONE_CANCEL,)),
    Rule(Action.HOTFIX, (R.APPROVER, R.INCIDENT_COMMANDER), PENDING, Where.REQUEST_CHANNEL,
         "extend the decision deadline of {ref} for a hotfix", "*Hotfix in progress*",
         (Guard.HOTFIX_POLICY,)),
    Rule(Action.TAKE_IC, (R.REQUESTER, R.APPROVER), PENDING, Where.REQUEST_CHANNEL,
         "take incident command of {ref}", "*I'm incident commander*", (Guard.NO_IC,)),
    Rule(Action.TICK_INCIDENT_COMMANDER, (R.BOT,), PENDING, Where.REQUEST_CHANNEL,
         "tick the checklist of {ref}", "(no button: set by *I'm incident commander*)",
         refusal="\u201cIncident commander assigned\u201d is ticked by taking incident command "
                 "(*I'm incident commander*), not by hand.",
         checklist_item="incident_commander"),
    Rule(Action.TICK_DECISION_APPROVED, (R.TECH_LEAD,), PENDING, Where.REQUEST_CHANNEL,
         "record the technical lead's approval of {ref}", "*Decision approved* / *Undo*",
         (Guard.NOT_REQUESTER,), checklist_item="decision_approved"),
    Rule(Action.TICK_STAKEHOLDERS_NOTIFIED, (R.BOT,), PENDING, Where.REQUEST_CHANNEL,
         "tick the checklist of {ref}", "(no button: the bot, after posting to them)",
         refusal="Only the bot ticks \u201cStakeholders notified\u201d, once it has posted to "
                 "the stakeholder channels.",
         checklist_item="stakeholders_notified"),
    Rule(Action.TICK_BACKUP_VERIFIED, (R.BOT,), PENDING, Where.REQUEST_CHANNEL,
         "tick the checklist of {ref}", "(no button: the bot, when it pins the backup)",
         refusal="Only the bot ticks \"Database backup verified\": it pins and checks the "
                 "backup when the plan is made.",
         checklist_item="backup_verified"),
    Rule(Action.TICK_PREVIOUS_VERSION, (R.APPROVER,), PENDING, Where.REQUEST_CHANNEL,
         "confirm the previous stable version of {ref}", "*Previous version checked*",
         (Guard.BOT_COULD_NOT,), checklist_item="previous_version"),
    Rule(Action.TICK_TEAM_ASSEMBLED,
         (R.REQUESTER, R.INCIDENT_COMMANDER, R.APPROVER, R.TECH_LEAD), PENDING,
         Where.REQUEST_CHANNEL, "tick \u201cTeam assembled\u201d for {ref}",
         "*Team assembled* / *Undo*", checklist_item="team_assembled"),
    Rule(Action.SCALE_BACK_UP, (R.APPROVER,), frozenset({S.NEEDS_ATTENTION}),
         Where.REQUEST_CHANNEL, "scale the service of {ref} back up", "*Scale back up*",
         (Guard.LEFT_AT_ZERO,)),
    Rule(Action.RESOLVE, (R.APPROVER, R.INCIDENT_COMMANDER),
         frozenset({S.NEEDS_ATTENTION, S.UNSTABLE, S.VERIFICATION_FAILED}), Where.ANYWHERE,
         "close {ref}", "*Mark resolved* (request message or alert notice)",
         (Guard.NOT_AT_ZERO,)),
    Rule(Action.RETRY_VERIFICATION, (R.APPROVER, R.INCIDENT_COMMANDER),
         frozenset({S.VERIFICATION_FAILED}), Where.ANYWHERE,
         "retry verification of {ref}", "*Retry verification* (verification notice)"),
    Rule(Action.RESUME_MONITORING, (R.APPROVER, R.INCIDENT_COMMANDER),
         frozenset({S.UNSTABLE}), Where.ANYWHERE,
         "resume monitoring of {ref}", "*Resume monitoring* (alert notice)"),
    Rule(Action.REMINDER, (R.REQUESTER, R.ITS_APPROVER, R.INCIDENT_COMMANDER, R.APPROVER),
         ALL_STATES, Where.ANYWHERE, "update reminders of {ref}",
         "*Scheduled* / *Done* / *Snooze* (reminder notices)"),
    Rule(Action.CLEAR_KNOWN_BAD, (R.APPROVER,), frozenset(), Where.ANYWHERE,
         "clear a known-bad mark of `{service}`",
         "`/rollback known-bad <service> clear REV --reason`", (Guard.REASON,)),
    # The runbook's "Plan forward fix" (bot.aftercare.forward_fix): whoever ran the incident
    # records the link; waiving it ("no fix needed") is a decision for the people
    # accountable for the rollback, never the requester alone, and it needs a reason.
    Rule(Action.FORWARD_FIX, (R.REQUESTER, R.INCIDENT_COMMANDER, R.ITS_APPROVER, R.APPROVER),
         frozenset({S.COMPLETED}), Where.ANYWHERE, "record the forward fix of {ref}",
         "*Record forward fix* (its ask) or `/rollback forward-fix RB-n <url> [root cause]`"),
    Rule(Action.WAIVE_FORWARD_FIX, (R.INCIDENT_COMMANDER, R.ITS_APPROVER, R.APPROVER),
         frozenset({S.COMPLETED}), Where.ANYWHERE, "waive the forward fix of {ref}",
         "*Waive* (its ask) or `/rollback forward-fix RB-n --waive <reason>`",
         (Guard.REASON,)),
)

TABLE: dict[Action, Rule] = {r.action: r for r in RULES}
CHECKLIST_ACTIONS: dict[str, Action] = {
    r.checklist_item: r.action for r in RULES if r.checklist_item is not None}


def rule(action: Action) -> Rule:
    return TABLE[action]


def approve_action(*, override: bool, known_bad_override: bool) -> Action:
    """Which approve button a click or dialog stands for."""
    if known_bad_override:
        return Action.APPROVE_KNOWN_BAD
    return Action.APPROVE_OVERRIDE if override else Action.APPROVE


def tick_action(item: str) -> Action:
    return CHECKLIST_ACTIONS[item]


# ------------------------------------------------------------------ refusals (pure)
def _words(items: Iterable[str]) -> str:
    items = list(items)
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} or {items[-1]}"


def _state(state: State) -> str:
    return state.value.replace("_", " ")


def does(r: Rule, rb: Rollback | None = None, *, service: str = "") -> str:
    return r.does.format(ref=rb.ref if rb else "it", service=rb.service if rb else service)


def state_refusal(r: Rule, rb: Rollback) -> str | None:
    if not r.states or rb.state in r.states:
        return None
    allowed = _words([_state(s) for s in State if s in r.states])
    return f"{rb.ref} is {_state(rb.state)}; you can {does(r, rb)} only while it is {allowed}."


def channel_refusal(r: Rule, rb: Rollback, channel_id: str) -> str | None:
    """The request's channel, and nowhere else, for the rows that say so. (The incident
    channel rule needs the configuration: ``Policy.check_channel``.)"""
    if r.where != Where.REQUEST_CHANNEL or channel_id == rb.channel_id:
        return None
    where = f"#{rb.channel_name}" if rb.channel_name else "the channel"
    return (f"You can {does(r, rb)} only in {where}, the channel where it was requested, "
            "not from another conversation.")


_ROLE_WORDS = {R.ANYONE: "anyone", R.REQUESTER: "the requester", R.APPROVER: "an approver",
               R.TECH_LEAD: "a technical lead", R.INCIDENT_COMMANDER: "the incident commander",
               R.ITS_APPROVER: "its approver", R.BOT: "the bot"}


def who_refusal(r: Rule, *, service: str, rb: Rollback | None = None) -> str:
    if r.refusal:
        return r.refusal
    if r.who == (R.APPROVER,):
        who = f"approvers for `{service}`"
    else:
        who = _words([_ROLE_WORDS[role] for role in r.who])
    return f"Only {who} can {does(r, rb, service=service)}."


def _hotfix(rb: Rollback, user: str) -> Refusal | None:
    if rb.policy_mode != PolicyMode.HOTFIX_WINDOW:
        return f"{rb.ref} is not waiting on a hotfix decision (its policy is {rb.severity})."
    if rb.hotfix_reported_by:
        due = (f"; its decision is due {in_utc(rb.decision_due_at):%H:%M} UTC"
               if rb.decision_due_at else "")
        return (Mention(rb.hotfix_reported_by), " already reported a hotfix in progress on "
                f"{rb.ref}{due}. The deadline moves once per rollback; nothing changed.")
    return None


def _no_ic(rb: Rollback, user: str) -> Refusal | None:
    if not rb.incident_commander:
        return None
    if rb.incident_commander == user:
        return f"You are already the incident commander of {rb.ref}."
    return (Mention(rb.incident_commander), f" is already the incident commander of {rb.ref}; "
            "incident command is not taken over by a click.")


def _not_requester(rb: Rollback, user: str) -> str | None:
    if user != rb.requester:
        return None
    return f"You requested {rb.ref}, so you cannot record the technical lead's approval of it."


def _bot_could_not(rb: Rollback, user: str) -> Refusal | None:
    if rb.known_bad_target:
        return (f"The target of {rb.ref} is KNOWN-BAD: it is not a previous stable version. "
                "An approver can override at approval.")
    item = rb.checklist.get("previous_version") or {}
    if item.get("done"):
        by = "the bot" if item.get("by") == "bot" else Mention(str(item.get("by")))
        return (f"\u201cPrevious stable version identified\u201d is already ticked for {rb.ref} "
                "(by ", by, "); it is not unticked by a click.")
    return None


def _plain_plan(rb: Rollback, user: str) -> str | None:
    if rb.known_bad_target:
        return (f"The pinned target {rb.target_revision.label()} of {rb.ref} is KNOWN-BAD. "
                "Only an approver can execute it, with *Roll back to known-bad anyway*.")
    if rb.policy_mode == PolicyMode.NEXT_DEPLOYMENT:
        return (f"{rb.ref} is {rb.severity}: the policy is to plan the rollback for the next "
                "deployment. An approver can use *Override and approve* to execute it now.")
    return None


def _p3_plan(rb: Rollback, user: str) -> str | None:
    if rb.known_bad_target:
        return _plain_plan(rb, user)
    if rb.policy_mode == PolicyMode.NEXT_DEPLOYMENT:
        return None
    return (f"{rb.ref} is {rb.severity}: there is no \u201cnext deployment\u201d policy to "
            "override. Use *Approve*.")


def _known_bad_plan(rb: Rollback, user: str) -> str | None:
    if rb.known_bad_target:
        return None
    return f"The target of {rb.ref} is not marked known-bad: there is nothing to override."


PURE_GUARDS: dict[Guard, Callable[[Rollback, str], Refusal | None]] = {
    Guard.HOTFIX_POLICY: _hotfix, Guard.NO_IC: _no_ic, Guard.NOT_REQUESTER: _not_requester,
    Guard.BOT_COULD_NOT: _bot_could_not, Guard.PLAIN_PLAN: _plain_plan,
    Guard.P3_PLAN: _p3_plan, Guard.KNOWN_BAD_PLAN: _known_bad_plan,
}


def hotfix_refusal(rb: Rollback) -> Words:
    """Why a "Hotfix in progress" on ``rb`` (as it stands now) does nothing."""
    return as_words(_hotfix(rb, "") or f"{rb.ref} is {_state(rb.state)}.")


def guard_refusal(r: Rule, rb: Rollback, user: str) -> Refusal | None:
    """The first pure guard of the row that refuses, else None."""
    for guard in r.guards:
        check = PURE_GUARDS.get(guard)
        refusal = check(rb, user) if check else None
        if refusal:
            return refusal
    return None


# ------------------------------------------------------------------ documentation
@dataclass(frozen=True)
class _Column:
    title: str
    cell: Callable[[Rule], str] = field(repr=False)


def _states_cell(r: Rule) -> str:
    if not r.states:
        return "—"
    if r.states == ALL_STATES:
        return "any"
    return ", ".join(f"`{s.value}`" for s in State if s in r.states)


COLUMNS = (
    _Column("action", lambda r: r.action.value),
    _Column("who", lambda r: ", ".join(role.value for role in r.who)),
    _Column("states", _states_cell),
    _Column("channel", lambda r: r.where.value),
    _Column("conditions", lambda r: "; ".join(g.value for g in r.guards) or "—"),
    _Column("in Slack", lambda r: r.how),
)


def markdown_table() -> str:
    """The table as docs/architecture.md shows it (one row per action)."""
    lines = ["| " + " | ".join(c.title for c in COLUMNS) + " |",
             "|" + "---|" * len(COLUMNS)]
    for r in RULES:
        lines.append("| " + " | ".join(c.cell(r).replace("|", "\\|") for c in COLUMNS) + " |")
    return "\n".join(lines)
