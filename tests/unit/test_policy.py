"""The approval decision matrix (``bot.domain.policy``): what each severity's mode allows,
four-eyes and break glass, checklist gates, destructive plans, known-bad targets, and who
may approve, read from the directory at each decision. Real config models, a tiny
in-memory ``Directory``; no Slack, no database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from bot.domain.authority import Action
from bot.domain.config import RollbackConfig, parse_config
from bot.domain.errors import NotAllowed
from bot.domain.lifecycle import State
from bot.domain.models import Rollback
from bot.domain.policy import ApprovalDecision, Policy
from bot.domain.words import Mention
from platforms.base import Revision, Target
from platforms.registry import PRODUCTION

T0 = datetime(2026, 11, 29, 3, 0, tzinfo=UTC)
SERVICE = "svc"
CHANNEL_ID, CHANNEL = "C0INC", "inc-svc"
REQUESTER, APPROVER, OTHER_APPROVER, STRANGER, LEAD = "U_REQ", "U_APP", "U_APP2", "U_X", "U_LEAD"
MODES = {"P0": "immediate", "P1": "hotfix_window", "P2": "evaluate", "P3": "next_deployment"}


class Directory:
    """The ``Directory`` port (``bot.domain.ports``) over a dict; counts group reads."""

    def __init__(self, groups: dict[str, set[str]]) -> None:
        self.groups = groups
        self.reads = 0

    def usergroup_members(self, usergroup: str) -> set[str]:
        self.reads += 1
        return set(self.groups.get(usergroup, set()))

    def channel_name(self, channel_id: str) -> str:
        return CHANNEL if channel_id == CHANNEL_ID else "random"


def _config(**service: Any) -> RollbackConfig:
    svc = {"kubernetes": {"namespace": "prod", "deployment": SERVICE}, **service}
    return parse_config({"slack": {"approvers": {"usergroup": "sre", "users": [REQUESTER]}},
                         "services": {SERVICE: svc}}, platforms=PRODUCTION)


def _policy(config: RollbackConfig | None = None,
            members: set[str] | None = None) -> tuple[Policy, Directory]:
    directory = Directory({"sre": {APPROVER, OTHER_APPROVER} if members is None else members})
    return Policy(config or _config(), directory), directory


def _done(*items: str) -> dict[str, Any]:
    return {item: {"done": True, "by": "bot"} for item in items}


def _rb(severity: str = "P1", **kw: Any) -> Rollback:
    base: dict[str, Any] = dict(
        id=7, service=SERVICE, platform="kubernetes", severity=severity,
        policy_mode=MODES[severity], scope=["app"], reason="5xx", state=State.PENDING_APPROVAL,
        requester=REQUESTER, channel_id=CHANNEL_ID, channel_name=CHANNEL, message_ts="1.1",
        thread_ts="1.1", current_revision=Revision("rs-3", 3, ("app:1.3",), current=True),
        target_revision=Revision("rs-2", 2, ("app:1.2",)), target=Target("kubernetes", "prod",
                                                                          SERVICE),
        checklist=_done("previous_version", "incident_commander", "decision_approved"),
        assessment={}, approver=None, break_glass=False, incident_commander=None,
        incident_started_at=None, created_at=T0, updated_at=T0,
        expires_at=T0 + timedelta(minutes=30), approved_at=None, finished_at=None,
        last_error=None)
    base.update(kw)
    return Rollback(**base)


def _approve(policy: Policy, rb: Rollback, user: str = APPROVER, **kw: Any) -> ApprovalDecision:
    args: dict[str, Any] = {"channel_id": CHANNEL_ID, "channel_name": CHANNEL,
                            "now": T0 + timedelta(minutes=1), "override": False, **kw}
    return policy.check_approve(rb, user=user, **args)


# ------------------------------------------------------------------ the matrix
@pytest.mark.parametrize(("severity", "self_approval"), [
    ("P0", True), ("P1", False), ("P2", False),
])
def test_break_glass_is_the_severitys_call(severity: str, self_approval: bool) -> None:
    """The requester (an approver) approving their own request: only P0 allows it."""
    policy, _ = _policy(members={REQUESTER})
    rb = _rb(severity)
    if self_approval:
        assert _approve(policy, rb, REQUESTER) == ApprovalDecision(break_glass=True,
                                                                   override=False)
    else:
        with pytest.raises(NotAllowed, match="Four-eyes rule: you requested RB-7"):
            _approve(policy, rb, REQUESTER)


@pytest.mark.parametrize("severity", ["P0", "P1", "P2"])
def test_a_second_approver_is_never_break_glass(severity: str) -> None:
    policy, _ = _policy()
    assert _approve(policy, _rb(severity)) == ApprovalDecision(break_glass=False,
                                                               override=False)


@pytest.mark.parametrize(("severity", "missing", "names"), [
    ("P0", {"previous_version"}, "Previous stable version identified"),
    ("P1", {"incident_commander"}, "Incident commander assigned"),
    ("P1", {"incident_commander", "previous_version"},
     "Incident commander assigned; Previous stable version identified"),
    ("P2", {"decision_approved"}, "Rollback decision approved by technical lead"),
])
def test_each_severity_gates_on_its_checklist(severity: str, missing: set[str],
                                              names: str) -> None:
    policy, _ = _policy()
    done = {"previous_version", "incident_commander", "decision_approved"} - missing
    rb = _rb(severity, checklist={**_done(*done), **{m: {"done": False} for m in missing}})
    with pytest.raises(NotAllowed) as refused:
        _approve(policy, rb)
    assert str(refused.value) == f"Checklist items required before approval: {names}."


def test_p0_needs_neither_an_incident_commander_nor_a_tech_lead() -> None:
    policy, _ = _policy()
    rb = _rb("P0", checklist=_done("previous_version"))
    assert _approve(policy, rb).break_glass is False


def test_p3_is_planned_for_the_next_deployment_and_needs_the_override() -> None:
    policy, _ = _policy()
    rb = _rb("P3", checklist={})
    with pytest.raises(NotAllowed, match="plan the rollback for the next deployment"):
        _approve(policy, rb)
    assert _approve(policy, rb, override=True) == ApprovalDecision(break_glass=False,
                                                                   override=True)


def test_the_p3_override_is_refused_for_any_other_severity() -> None:
    policy, _ = _policy()
    with pytest.raises(NotAllowed, match="no \u201cnext deployment\u201d policy"):
        _approve(policy, _rb("P1"), override=True)


def test_a_services_own_policy_replaces_the_defaults() -> None:
    """P1 with break glass and no checklist, for this service only."""
    own = {"severities": {"P1": {"mode": "hotfix_window", "window_minutes": 15,
                                 "allow_self_approval": True}}}
    policy, _ = _policy(_config(policy=own), members={REQUESTER})
    rb = _rb("P1", checklist={})
    assert _approve(policy, rb, REQUESTER).break_glass is True
    strict, _ = _policy(members={REQUESTER})
    with pytest.raises(NotAllowed, match="Four-eyes"):
        _approve(strict, rb, REQUESTER)


# ------------------------------------------------------------------ known-bad targets
KNOWN_BAD = {"known_bad_target": {"marked_by": "RB-3", "at": T0.isoformat()}}


def test_a_known_bad_target_is_approved_only_through_its_own_button() -> None:
    policy, _ = _policy()
    rb = _rb("P1", plan_facts=KNOWN_BAD, checklist=_done("incident_commander"))
    with pytest.raises(NotAllowed, match="KNOWN-BAD"):
        _approve(policy, rb)
    # The override is the approver's own identification: "previous version" is waived.
    decision = _approve(policy, rb, known_bad_override=True)
    assert decision == ApprovalDecision(break_glass=False, override=False,
                                        known_bad_override=True)


def test_the_known_bad_button_on_a_plain_target_is_refused() -> None:
    policy, _ = _policy()
    with pytest.raises(NotAllowed, match="not marked known-bad"):
        _approve(policy, _rb("P1"), known_bad_override=True)


def test_a_known_bad_p3_target_counts_as_the_p3_override_too() -> None:
    policy, _ = _policy()
    rb = _rb("P3", plan_facts=KNOWN_BAD, checklist={})
    assert _approve(policy, rb, known_bad_override=True) == ApprovalDecision(
        break_glass=False, override=True, known_bad_override=True)


# ------------------------------------------------------------------ destructive plans
DESTRUCTIVE = {"destructive": [{"kind": "restore_db", "description": "Restore the database"}]}


def test_break_glass_never_covers_a_destructive_step() -> None:
    policy, _ = _policy(members={REQUESTER})
    rb = _rb("P0", plan_facts=DESTRUCTIVE)
    with pytest.raises(NotAllowed, match="two people are needed"):
        _approve(policy, rb, REQUESTER, typed_confirmation=SERVICE)


@pytest.mark.parametrize("typed", [None, "", "sv", "SVC", "other"])
def test_a_destructive_plan_needs_the_service_name_typed(typed: str | None) -> None:
    policy, _ = _policy()
    with pytest.raises(NotAllowed, match=f"typing the service name `{SERVICE}`"):
        _approve(policy, _rb("P0", plan_facts=DESTRUCTIVE), typed_confirmation=typed)


def test_the_typed_name_may_carry_surrounding_blanks() -> None:
    policy, _ = _policy()
    rb = _rb("P0", plan_facts=DESTRUCTIVE)
    assert _approve(policy, rb, typed_confirmation=f"  {SERVICE}\n").break_glass is False


# ------------------------------------------------------------------ who, where, when
def test_only_members_of_the_approver_group_may_approve() -> None:
    policy, _ = _policy()
    with pytest.raises(NotAllowed, match=f"Only approvers for `{SERVICE}` can approve RB-7"):
        _approve(policy, _rb("P1"), STRANGER)


def test_membership_is_read_at_every_decision() -> None:
    """Removed from the group a second ago: refused now, not after a cache expires."""
    policy, directory = _policy()
    rb = _rb("P1")
    _approve(policy, rb)
    reads = directory.reads
    assert reads >= 1
    directory.groups["sre"].discard(APPROVER)
    with pytest.raises(NotAllowed, match="Only approvers"):
        _approve(policy, rb)
    assert directory.reads > reads


def test_listed_users_approve_without_being_in_the_group() -> None:
    policy, _ = _policy(members=set())
    assert policy.approvers(SERVICE) == {REQUESTER}
    other = _rb("P1", requester=STRANGER)
    assert _approve(policy, other, REQUESTER).break_glass is False


def test_a_services_own_approvers_replace_the_global_ones() -> None:
    policy, _ = _policy(_config(approvers={"users": [STRANGER]}))
    assert policy.approvers(SERVICE) == {STRANGER}
    with pytest.raises(NotAllowed, match="Only approvers"):
        _approve(policy, _rb("P1"), APPROVER)
    assert _approve(policy, _rb("P1"), STRANGER).break_glass is False


def test_an_expired_request_is_refused_at_its_expiry() -> None:
    policy, _ = _policy()
    rb = _rb("P1")
    assert rb.expires_at is not None
    with pytest.raises(NotAllowed, match="expired at 03:30 UTC"):
        _approve(policy, rb, now=rb.expires_at)
    assert _approve(policy, rb, now=rb.expires_at - timedelta(seconds=1)).override is False


def test_a_decided_request_says_who_decided() -> None:
    policy, _ = _policy()
    rb = _rb("P1", state=State.APPROVED, approver=OTHER_APPROVER)
    with pytest.raises(NotAllowed) as refused:
        _approve(policy, rb)
    # the approver is a fact (a Mention the Slack layer renders); str() is the plain words
    assert str(refused.value) == f"RB-7 is already approved by @{OTHER_APPROVER}."
    assert Mention(OTHER_APPROVER) in refused.value.parts


def test_approval_happens_in_the_requests_channel_only() -> None:
    policy, _ = _policy()
    with pytest.raises(NotAllowed, match="only in #inc-svc, the channel where it was"):
        _approve(policy, _rb("P1"), channel_id="C0OTHER", channel_name="inc-other")
    with pytest.raises(NotAllowed, match="direct message is not one of them"):
        _approve(policy, _rb("P1"), channel_id="D0DM", channel_name="direct message")


def test_requests_come_from_incident_channels_or_the_services_pattern() -> None:
    policy, _ = _policy()
    policy.check_request(SERVICE, user=STRANGER, channel_name="inc-anything")
    policy.check_request(SERVICE, user=STRANGER, channel_name="incident-42")
    with pytest.raises(NotAllowed, match=r"\(inc-\*, incident-\*\); #general is not"):
        policy.check_request(SERVICE, user=STRANGER, channel_name="general")
    own, _ = _policy(_config(incident_channel_pattern="svc-war-*"))
    own.check_request(SERVICE, user=STRANGER, channel_name="svc-war-room")
    with pytest.raises(NotAllowed, match="svc-war-\\*"):
        own.check_request(SERVICE, user=STRANGER, channel_name="general")


# ------------------------------------------------------------------ other rows
def test_the_tech_leads_tick_is_theirs_and_never_the_requesters() -> None:
    policy, _ = _policy(_config(tech_leads={"users": [LEAD, REQUESTER]}))
    rb = _rb("P2", checklist={})
    policy.check_tick(rb, item="decision_approved", user=LEAD, channel_id=CHANNEL_ID)
    with pytest.raises(NotAllowed, match="Ask a technical lead"):
        policy.check_tick(rb, item="decision_approved", user=REQUESTER, channel_id=CHANNEL_ID)
    with pytest.raises(NotAllowed, match="Only a technical lead"):
        policy.check_tick(rb, item="decision_approved", user=APPROVER, channel_id=CHANNEL_ID)


def test_tech_leads_default_to_the_approvers() -> None:
    policy, _ = _policy()
    assert policy.tech_leads(SERVICE) == {APPROVER, OTHER_APPROVER, REQUESTER}


def test_the_bots_checklist_items_refuse_every_click() -> None:
    policy, _ = _policy()
    rb = _rb("P1", checklist={})
    for item in ("backup_verified", "stakeholders_notified", "incident_commander"):
        with pytest.raises(NotAllowed):
            policy.check_tick(rb, item=item, user=APPROVER, channel_id=CHANNEL_ID)
    with pytest.raises(NotAllowed, match="Nobody ticks"):
        policy.check_tick(rb, item="made_up", user=APPROVER, channel_id=CHANNEL_ID)


def test_a_requester_who_took_command_gets_no_incident_commander_grants() -> None:
    policy, _ = _policy(members=set())
    rb = _rb("P1", state=State.UNSTABLE, incident_commander=STRANGER, requester="U_R2")
    policy.authorize(Action.RESOLVE, rb, user=STRANGER, channel_id=None)  # the IC
    own = _rb("P1", state=State.UNSTABLE, incident_commander="U_R2", requester="U_R2")
    with pytest.raises(NotAllowed):
        policy.authorize(Action.RESOLVE, own, user="U_R2", channel_id=None)


def test_cancel_is_open_to_the_requester_and_approvers_but_not_to_others() -> None:
    policy, _ = _policy()
    for state in (State.PENDING_APPROVAL, State.APPROVED, State.EXECUTING):
        rb = _rb("P1", state=state)
        policy.check_cancel(rb, user=REQUESTER)
        policy.check_cancel(rb, user=APPROVER)
        with pytest.raises(NotAllowed):
            policy.check_cancel(rb, user=STRANGER)
    with pytest.raises(NotAllowed, match="you can cancel RB-7 only while"):
        policy.check_cancel(_rb("P1", state=State.COMPLETED), user=REQUESTER)


# ------------------------------------------------------------------ the automation
AUTO = "rollback-bot-auto"


def _auto_policy(self_approve: list[str]) -> Policy:
    config = parse_config({"slack": {"approvers": {"usergroup": "sre"}},
                           "automation": {"self_approve": self_approve},
                           "services": {SERVICE: {"kubernetes": {"namespace": "prod",
                                                                 "deployment": SERVICE}}}},
                          platforms=PRODUCTION)
    return _policy(config)[0]


def test_the_automation_approves_its_own_request_only_for_the_listed_severities() -> None:
    policy = _auto_policy(["P0"])
    now = T0 + timedelta(minutes=1)
    policy.check_automation_approve(_rb("P0", requester=AUTO), identity=AUTO, now=now)
    with pytest.raises(NotAllowed, match=r"P1 requests need a person's approval "
                                         r"\(automation.self_approve: P0\)"):
        policy.check_automation_approve(_rb("P1", requester=AUTO), identity=AUTO, now=now)


@pytest.mark.parametrize(("change", "refusal"), [
    ({"requester": REQUESTER}, "only its own requests"),
    ({"plan_facts": DESTRUCTIVE}, "two people are needed"),
    ({"state": State.APPROVED}, "already approved"),
    ({"expires_at": T0}, "expired"),
    ({"checklist": {}}, "Checklist items required"),
])
def test_the_automation_never_approves_what_a_person_must(change: dict[str, Any],
                                                          refusal: str) -> None:
    policy = _auto_policy(["P0", "P1"])
    rb = _rb("P1", **{"requester": AUTO, **change})
    with pytest.raises(NotAllowed, match=refusal):
        policy.check_automation_approve(rb, identity=AUTO, now=T0 + timedelta(minutes=1))


def test_another_identity_cannot_pass_for_the_automation() -> None:
    policy = _auto_policy(["P0"])
    with pytest.raises(NotAllowed, match="only its own requests"):
        policy.check_automation_approve(_rb("P0", requester=REQUESTER), identity=REQUESTER,
                                        now=T0 + timedelta(minutes=1))


def test_the_automation_never_plans_a_database_restore() -> None:
    with pytest.raises(Exception, match="a database restore needs two people"):
        parse_config({"automation": {"scope": ["app", "db"]},
                      "services": {SERVICE: {"kubernetes": {"namespace": "prod",
                                                            "deployment": SERVICE}}}},
                     platforms=PRODUCTION)


@pytest.mark.parametrize("identity", ["rollback-bot", "bot", "U0ALICE12", "W0123ABCD"])
def test_the_automation_is_named_neither_as_the_bot_nor_as_a_person(identity: str) -> None:
    with pytest.raises(Exception, match="the bot's own name or a Slack user id"):
        parse_config({"automation": {"identity": identity},
                      "services": {SERVICE: {"kubernetes": {"namespace": "prod",
                                                            "deployment": SERVICE}}}},
                     platforms=PRODUCTION)


@pytest.mark.parametrize("requester", ["rollback-bot", AUTO])
def test_a_destructive_request_the_bot_filed_is_never_one_persons_approval(
        requester: str) -> None:
    policy, _ = _policy()
    rb = _rb("P0", requester=requester, plan_facts=DESTRUCTIVE)
    with pytest.raises(NotAllowed, match="was filed by the bot and has destructive steps"):
        _approve(policy, rb, APPROVER, typed_confirmation=SERVICE)
