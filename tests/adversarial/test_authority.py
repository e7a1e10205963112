"""The authority table (``bot/domain/authority.py``) held against every action × role × state.

Three layers: the table agrees with an expectation written out here by hand and with
docs/architecture.md; every action, role and state goes through the real service and
aftercare objects of a running bot (real PostgreSQL, the Slack emulator) and a refusal
changes nothing; and the forged clicks and cross-channel approvals of the measured
failures (issue 10, item 7) go through the wire as signed Slack requests.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.types.json import Jsonb
from slack_sdk import WebClient

from bot.domain import authority
from bot.domain.authority import Action, Role, Where
from bot.domain.config import CHECKLIST_ITEMS
from bot.domain.errors import NotAllowed, NotFound
from bot.domain.lifecycle import State
from bot.domain.models import Rollback
from bot.usecases.timers import DECISION_JOB
from handlers import ids
from sandbox.config import USERGROUP, parse_sandbox_config, sandbox_config_dict
from sandbox.fake_platform import FakePlatform
from sandbox.slack import DEFAULT_BOT_TOKEN, SlackEmulator
from sandbox.stack import SandboxStack
from tests.e2e.conftest import CHANNEL, Harness, MutableClock, action_ids
from tests.e2e.conftest import make_harness as make_harness  # noqa: F401  (fixture)
from tests.secret_scan import register_secret
from tests.support.database import fresh_database

DOC = Path(__file__).resolve().parents[2] / "docs" / "architecture.md"
SERVICE = "hotel-voice-bot"
OTHER_CHANNEL = "inc-hotel-voice-bot-2"  # an incident channel too, but not the request's

# ------------------------------------------------------------------ the expectation
# Written out independently of bot/domain/authority.py: what an SRE team expects. The table must
# say the same (test_table_matches_the_expectation), and the bot must do it (the matrix).
REQUESTER, APPROVER, IC, TECH_LEAD, NOBODY = (
    "requester", "approver", "incident commander", "tech lead", "nobody")
ROLES = (REQUESTER, APPROVER, IC, TECH_LEAD, NOBODY)
PENDING = {State.PENDING_APPROVAL}
DECIDERS = {APPROVER, IC}

EXPECTED: dict[Action, tuple[set[str], set[State]]] = {
    Action.APPROVE: ({APPROVER}, PENDING),
    Action.APPROVE_OVERRIDE: ({APPROVER}, PENDING),
    Action.APPROVE_KNOWN_BAD: ({APPROVER}, PENDING),
    Action.REJECT: ({APPROVER}, PENDING),
    Action.CANCEL: ({REQUESTER, APPROVER, IC},
                    {State.PENDING_APPROVAL, State.APPROVED, State.EXECUTING}),
    Action.HOTFIX: (DECIDERS, PENDING),
    Action.TAKE_IC: ({REQUESTER, APPROVER}, PENDING),
    Action.TICK_INCIDENT_COMMANDER: (set(), PENDING),
    Action.TICK_DECISION_APPROVED: ({TECH_LEAD}, PENDING),
    Action.TICK_STAKEHOLDERS_NOTIFIED: (set(), PENDING),
    Action.TICK_BACKUP_VERIFIED: (set(), PENDING),
    Action.TICK_PREVIOUS_VERSION: ({APPROVER}, PENDING),
    Action.TICK_TEAM_ASSEMBLED: ({REQUESTER, APPROVER, IC, TECH_LEAD}, PENDING),
    Action.SCALE_BACK_UP: ({APPROVER}, {State.NEEDS_ATTENTION}),
    Action.RESOLVE: (DECIDERS, {State.NEEDS_ATTENTION, State.UNSTABLE,
                                State.VERIFICATION_FAILED}),
    Action.RETRY_VERIFICATION: (DECIDERS, {State.VERIFICATION_FAILED}),
    Action.RESUME_MONITORING: (DECIDERS, {State.UNSTABLE}),
}
# Buttons on the request message, and the approvals: the request's channel only.
REQUEST_CHANNEL_ONLY = {
    Action.APPROVE, Action.APPROVE_OVERRIDE, Action.APPROVE_KNOWN_BAD, Action.REJECT,
    Action.HOTFIX, Action.TAKE_IC, Action.SCALE_BACK_UP,
    *(a for a in Action if a.name.startswith("TICK_"))}
# Every button the app registers, and the row that governs it.
BUTTONS: dict[str, Action] = {
    ids.APPROVE: Action.APPROVE, ids.APPROVE_OVERRIDE: Action.APPROVE_OVERRIDE,
    ids.APPROVE_KNOWN_BAD: Action.APPROVE_KNOWN_BAD, ids.SCALE_BACK_UP: Action.SCALE_BACK_UP,
    ids.REJECT: Action.REJECT, ids.CANCEL: Action.CANCEL, ids.HOTFIX: Action.HOTFIX,
    ids.ASSIGN_IC: Action.TAKE_IC, ids.RESOLVE: Action.RESOLVE,
    ids.ALERT_RESOLVE: Action.RESOLVE, ids.RETRY: Action.RETRY_VERIFICATION,
    ids.RESUME_MONITORING: Action.RESUME_MONITORING, ids.REMINDER_SCHEDULED: Action.REMINDER,
    ids.REMINDER_DONE: Action.REMINDER, ids.REMINDER_SNOOZE: Action.REMINDER,
    ids.DIAGNOSIS_REQUEST: Action.REQUEST,  # opens the request form, under the request's rules
    ids.WATCH_REQUEST: Action.REQUEST,  # the release watcher's proposal: the same
    ids.WATCH_SNOOZE: Action.REQUEST,  # silencing proposals: whoever may request may snooze
    ids.FORWARD_FIX_RECORD: Action.FORWARD_FIX, ids.FORWARD_FIX_WAIVE: Action.WAIVE_FORWARD_FIX,
    **{f"{ids.CHECKLIST}:{item}": authority.tick_action(item) for item in CHECKLIST_ITEMS},
}
_ROLE_NAMES = {Role.REQUESTER: REQUESTER, Role.APPROVER: APPROVER, Role.TECH_LEAD: TECH_LEAD,
               Role.INCIDENT_COMMANDER: IC}


# ------------------------------------------------------------------ 1. the table itself
def test_every_button_and_checklist_item_has_a_row() -> None:
    # Read-only buttons (the timeline) decide nothing: anyone may click them, no row.
    registered = {a for a in ids.ALL_ACTIONS
                  if a != ids.CHECKLIST and a not in ids.READ_ONLY_ACTIONS}
    assert registered <= set(BUTTONS), f"buttons without a row: {registered - set(BUTTONS)}"
    assert set(authority.CHECKLIST_ACTIONS) == set(CHECKLIST_ITEMS)
    assert {r.action for r in authority.RULES} == set(Action)
    assert len(authority.RULES) == len(Action)  # one row per action


def test_table_matches_the_expectation() -> None:
    for action, (who, states) in EXPECTED.items():
        rule = authority.rule(action)
        assert {_ROLE_NAMES[r] for r in rule.who if r in _ROLE_NAMES} == who, action
        assert set(rule.who) <= set(_ROLE_NAMES) | {Role.BOT}, action
        assert (rule.who == (Role.BOT,)) == (not who), action
        assert set(rule.states) == states, action
        expected_where = Where.REQUEST_CHANNEL if action in REQUEST_CHANNEL_ONLY \
            else Where.ANYWHERE
        assert rule.where == expected_where, action
    assert authority.rule(Action.REQUEST).where == Where.INCIDENT_CHANNEL
    assert authority.rule(Action.CLEAR_KNOWN_BAD).who == (Role.APPROVER,)
    # The forward fix: whoever ran the incident records it; waiving it is for those
    # accountable (never the requester alone), on a completed rollback only.
    fix, waive = authority.rule(Action.FORWARD_FIX), authority.rule(Action.WAIVE_FORWARD_FIX)
    assert Role.REQUESTER in fix.who and Role.REQUESTER not in waive.who
    assert fix.states == waive.states == {State.COMPLETED}


def test_the_documented_table_is_the_modules() -> None:
    text = DOC.read_text()
    section = text.split("## Authority", 1)[1].split("\n## ", 1)[0]
    documented = [line for line in section.splitlines() if line.startswith("|")]
    assert documented == authority.markdown_table().splitlines()


# ------------------------------------------------------------------ 2. the matrix
USERS = {REQUESTER: "alice", APPROVER: "bob", IC: "erin", TECH_LEAD: "frank", NOBODY: "dave"}
SLACK_WRITES = {"chat.postMessage", "chat.update", "chat.postEphemeral", "pins.add",
                "views.open", "files.completeUploadExternal"}


@dataclass
class Matrix:
    h: Harness
    url: str
    rid: int
    aftercare: Any
    facts: dict[str, Any]  # the plan facts as requested
    users: dict[str, str]  # role -> Slack user id

    @property
    def service(self) -> Any:
        return self.h.bot.service

    def rb(self) -> Rollback:
        return self.h.bot.store.get(self.rid)

    def shape(self, action: Action, state: State) -> None:
        """The rollback in ``state`` with a plan on which ``action``'s other conditions
        hold, so only who, state and channel decide."""
        severity, mode, facts = "P1", "hotfix_window", dict(self.facts)
        ic: str | None = self.users[IC]
        checklist = {"incident_commander": {"done": True, "by": ic},
                     "previous_version": {"done": True, "by": "bot", "note": "rev 2"},
                     "stakeholders_notified": {"done": True, "by": "bot"}}
        if action == Action.APPROVE_OVERRIDE:
            severity, mode = "P3", "next_deployment"
        if action == Action.APPROVE_KNOWN_BAD:
            facts["known_bad_target"] = {"revision_id": "rs-2", "rollback_id": None,
                                         "marked_at": "2026-11-29T02:00:00+00:00"}
        if action == Action.TAKE_IC:
            ic = None
            checklist.pop("incident_commander")
        if action == Action.TICK_PREVIOUS_VERSION:
            checklist["previous_version"] = {"done": False, "by": "bot", "note": "newer"}
        scaled = {"before": 2} if action == Action.SCALE_BACK_UP else {}
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(
                "UPDATE rollbacks SET state = %s, severity = %s, policy_mode = %s,"
                " plan_facts = %s, checklist = %s, incident_commander = %s, approver = NULL,"
                " cancel_requested_by = NULL, finished_at = NULL, expires_at = %s,"
                " hotfix_reported_by = NULL WHERE id = %s",
                (state.value, severity, mode, Jsonb(facts), Jsonb(checklist), ic,
                 datetime.now(UTC) + timedelta(hours=1), self.rid))
            conn.execute("DELETE FROM scheduled_jobs WHERE rollback_id = %s", (self.rid,))
            conn.execute("UPDATE rollback_steps SET result = %s WHERE rollback_id = %s"
                         " AND kind = 'scale_down'", (Jsonb(scaled), self.rid))
        if action == Action.SCALE_BACK_UP:  # the state the button exists for: left at 0
            self.h.platform.scale(self.h.bot.store.get(self.rid).target, 0)

    def snapshot(self) -> tuple[Any, ...]:
        store = self.h.bot.store
        # An earlier case's approval holds the message's re-render until the first platform
        # write (at most 2 s, then the deliverer posts it): post it now, not inside this case.
        if self.h.bot.delivery is not None:
            self.h.bot.delivery.flush(self.rid)
        with psycopg.connect(self.url) as conn:
            jobs = conn.execute("SELECT id, kind, status FROM scheduled_jobs WHERE"
                                " rollback_id = %s ORDER BY id", (self.rid,)).fetchall()
        writes = sum(1 for c in self.h.emulator.calls() if c.method in SLACK_WRITES)
        return (store.get(self.rid), len(store.audit_events(self.rid)), jobs,
                store.steps(self.rid), writes)


def _call(m: Matrix, action: Action, user: str) -> Any:
    s, ac, ch = m.service, m.aftercare, CHANNEL_ID
    item = next((k for k, a in authority.CHECKLIST_ACTIONS.items() if a == action), None)
    calls: dict[Action, Callable[[], Any]] = {
        Action.APPROVE: lambda: s.approve(m.rid, user=user, channel_id=ch),
        Action.APPROVE_OVERRIDE: lambda: s.approve(m.rid, user=user, channel_id=ch,
                                                   override=True),
        Action.APPROVE_KNOWN_BAD: lambda: s.approve(m.rid, user=user, channel_id=ch,
                                                    known_bad_override=True),
        Action.REJECT: lambda: s.reject(m.rid, user=user, reason="no", channel_id=ch),
        Action.CANCEL: lambda: s.cancel(m.rid, user=user, channel_id=ch),
        Action.HOTFIX: lambda: s.hotfix_in_progress(m.rid, user=user, channel_id=ch),
        Action.TAKE_IC: lambda: s.assign_incident_commander(m.rid, user=user, channel_id=ch),
        Action.SCALE_BACK_UP: lambda: s.scale_back_up(m.rid, user=user, channel_id=ch),
        # The aftercare buttons' own paths (handlers/aftercare_buttons.py calls these).
        Action.RESOLVE: lambda: ac.resolve(m.rid, user=user),
        Action.RETRY_VERIFICATION: lambda: ac.retry_verification(m.rid, user=user),
        Action.RESUME_MONITORING: lambda: ac.resume_monitoring(m.rid, user=user),
    }
    if item is not None:
        return s.tick_checklist(m.rid, item=item, user=user, channel_id=ch)
    return calls[action]()


def _effect(action: Action, before: Rollback, after: Rollback, user: str,
            m: Matrix) -> bool:
    """The allowed action did what it says (besides its audit row)."""
    item = next((k for k, a in authority.CHECKLIST_ACTIONS.items() if a == action), None)
    if item is not None:
        old, new = before.checklist.get(item) or {}, after.checklist.get(item) or {}
        return bool(new.get("done")) != bool(old.get("done")) and new.get("by") == user
    if action in (Action.APPROVE, Action.APPROVE_OVERRIDE, Action.APPROVE_KNOWN_BAD):
        return after.state == State.APPROVED and after.approver == user
    if action == Action.CANCEL:
        return after.state == State.CANCELLED or after.cancel_requested_by == user
    return {
        Action.REJECT: lambda: after.state == State.REJECTED,
        Action.HOTFIX: lambda: after.hotfix_reported_by == user and bool(
            m.service.jobs.pending(rollback_id=m.rid, kinds=[DECISION_JOB])),
        Action.TAKE_IC: lambda: after.incident_commander == user
        and after.checklist["incident_commander"]["done"],
        Action.SCALE_BACK_UP: lambda: any(s.result.get("restored_to") == 2
                                          for s in m.h.bot.store.steps(m.rid)),
        Action.RESOLVE: lambda: after.state in (State.FAILED, State.COMPLETED),
        Action.RETRY_VERIFICATION: lambda: after.state == State.VERIFYING,
        Action.RESUME_MONITORING: lambda: after.state == State.MONITORING,
    }[action]()


CHANNEL_ID = "C0INCHVB01"  # the emulator's inc-hotel-voice-bot


@pytest.fixture(scope="module")
def matrix(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Matrix]:
    """One bot, one rollback, reshaped per case: 1,100 cases in seconds, not harnesses."""
    with fresh_database(database_url, migrated=True) as url:
        emulator = SlackEmulator().start()
        for name in ("erin", "frank"):
            emulator.add_user(name)
        emulator.add_channel(OTHER_CHANNEL)
        users = {role: emulator.user_id(name) for role, name in USERS.items()}
        data = sandbox_config_dict(postmortem_dir=str(tmp_path_factory.mktemp("pm")))
        data["slack"]["tech_leads"] = {"users": [users[TECH_LEAD]]}
        clock = MutableClock(datetime.now(UTC))
        platform = FakePlatform()
        stack = SandboxStack(config=parse_sandbox_config(data), database_url=url,
                             platforms={"fake": platform}, clock=clock, background=False,
                             scheduler=False, emulator=emulator).start()
        register_secret(stack.signing_secret, "a sandbox stack's signing secret")
        try:
            h = Harness(stack, platform, clock)
            h.request(f'{SERVICE} --severity P1 --reason "matrix"', user="alice")
            msg = h.rollback_message()
            rid = int(msg["text"].split()[0].removeprefix("RB-"))
            assert h.bot.store.get(rid).channel_id == CHANNEL_ID
            with psycopg.connect(url, autocommit=True) as conn:  # what Scale back up needs
                conn.execute("INSERT INTO rollback_steps (rollback_id, seq, kind, description,"
                             " status) VALUES (%s, 100, 'scale_down', 'Scale down', 'done')",
                             (rid,))
            yield Matrix(h, url, rid, h.bot.executor.aftercare,
                         facts=dict(h.bot.store.get(rid).plan_facts), users=users)
        finally:
            stack.stop()
            emulator.stop()


MATRIX_ACTIONS = list(EXPECTED)


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("state", list(State), ids=lambda s: s.value)
@pytest.mark.parametrize("action", MATRIX_ACTIONS, ids=lambda a: a.name.lower())
def test_every_action_role_and_state(matrix: Matrix, action: Action, state: State,
                                     role: str) -> None:
    m, user = matrix, matrix.users[role]
    m.shape(action, state)
    before = m.snapshot()
    try:
        _call(m, action, user)
        refusal = None
    except NotAllowed as exc:
        refusal = str(exc)
    who, states = EXPECTED[action]
    holds = role in who and not (action == Action.TAKE_IC and role == IC)  # nobody is IC
    after = m.snapshot()
    if holds and state in states:
        assert refusal is None, f"{role} refused {action} in {state}: {refusal}"
        new = m.h.bot.store.audit_events(m.rid)[before[1]:]
        assert any(e.actor == user for e in new), f"no audit row by {role}: {new}"
        assert _effect(action, before[0], after[0], user, m), f"{action}: no effect"
    else:
        assert refusal, f"{role} was allowed to {action.value} a {state.value} rollback"
        assert after == before, f"refused {action} by {role} in {state} changed something"


def test_an_approver_cannot_close_an_unstable_rollback_that_left_the_service_at_0(
        matrix: Matrix) -> None:
    """Allowed by role and state, refused by the "not at 0" rule: and refused before the
    aftercare path schedules its "resolved" notice, so nothing at all is written."""
    m = matrix
    m.shape(Action.SCALE_BACK_UP, State.UNSTABLE)  # a journaled scale-down, service at 0
    before = m.snapshot()
    with pytest.raises(NotAllowed, match="still scaled to 0"):
        _call(m, Action.RESOLVE, m.users[APPROVER])
    assert m.snapshot() == before


def test_clearing_a_known_bad_mark_is_for_approvers(matrix: Matrix) -> None:
    s = matrix.service
    for role in (REQUESTER, IC, TECH_LEAD, NOBODY):
        with pytest.raises(NotAllowed, match="Only approvers"):
            s.clear_known_bad(SERVICE, 3, user=matrix.users[role], reason="fixed")
    with pytest.raises(NotFound, match="not marked known-bad"):  # allowed: reached the marks
        s.clear_known_bad(SERVICE, 3, user=matrix.users[APPROVER], reason="fixed")


def test_reminder_buttons_follow_the_table(matrix: Matrix) -> None:
    """Reminders outlive the rollback: its requester, its approver (frank here, no approver
    of the service) and incident commander, and the service's approvers."""
    m = matrix
    m.shape(Action.REMINDER, State.COMPLETED)
    with psycopg.connect(m.url, autocommit=True) as conn:
        conn.execute("UPDATE rollbacks SET approver = %s WHERE id = %s",
                     (m.users[TECH_LEAD], m.rid))
    m.aftercare.reminders.create(m.rb())
    reminder = m.aftercare.store.reminders(m.rid)[0]
    rule = authority.rule(Action.REMINDER)
    assert rule.who == (Role.REQUESTER, Role.ITS_APPROVER, Role.INCIDENT_COMMANDER,
                        Role.APPROVER)
    for role in ROLES:
        before = m.snapshot()
        try:
            m.aftercare.reminders.snooze(f"{reminder.id}:1", user=m.users[role])
            refusal = None
        except NotAllowed as exc:
            refusal = str(exc)
        if role == NOBODY:
            assert refusal and m.snapshot() == before
        else:
            assert refusal is None, f"{role}: {refusal}"


# ------------------------------------------------------------------ 3. through the wire
def _p1(h: Harness, *, requester: str = "alice") -> tuple[int, dict[str, Any]]:
    h.request(f'{SERVICE} --severity P1 --reason "5xx after v1.3.0"', user=requester)
    msg = h.rollback_message()
    return int(msg["text"].split()[0].removeprefix("RB-")), msg


def _forge(message: dict[str, Any], action_id: str, value: str) -> dict[str, Any]:
    """The message as a hostile client claims to see it: with a button it does not show."""
    forged = copy.deepcopy(message)
    block = next(b for b in forged["blocks"] if b.get("type") == "actions")
    block["elements"].append({"type": "button", "action_id": action_id, "value": value,
                              "text": {"type": "plain_text", "text": "forged"}})
    return forged


def _refused(h: Harness, user: str, click: Callable[[], Any], needle: str) -> str:
    """Click, and return the refusal only ``user`` sees (waited for, never slept on)."""
    seen = len(h.emulator.ephemerals(user=user))
    reply = click()
    assert reply.status == 200
    h.emulator.wait_for(lambda: len(h.emulator.ephemerals(user=user)) > seen, timeout=10)
    text = "".join(str(e.get("text", "")) for e in h.emulator.ephemerals(user=user)[seen:])
    assert needle in text, text
    assert "went wrong" not in text
    return text


def _facts(h: Harness, rid: int) -> tuple[Any, ...]:
    store = h.bot.store
    return (store.get(rid), [(e.event, e.actor) for e in store.audit_events(rid)],
            h.bot.service.jobs.pending(rollback_id=rid))


def test_forged_clicks_of_hidden_buttons_change_nothing(
        make_harness: Callable[..., Harness]) -> None:
    h = make_harness(background=False)
    rid, msg = _p1(h)
    v, ts = str(rid), msg["ts"]
    carol, dave = h.emulator.user_id("carol"), h.emulator.user_id("dave")

    # A non-approver cannot make himself incident commander, so cannot use its rights.
    state = _facts(h, rid)
    _refused(h, "dave", lambda: h.click(msg, ids.ASSIGN_IC, "dave"),
             "Only the requester or an approver can take incident command")
    _refused(h, "dave", lambda: h.click(msg, ids.CANCEL, "dave"),
             "Only the requester, the incident commander or an approver can cancel")
    _refused(h, "dave", lambda: h.request(f"cancel RB-{rid}", user="dave"), "Only the requester")
    for clicker in ("dave", "alice"):  # alice requested it but is no approver
        _refused(h, clicker, lambda c=clicker: h.click(msg, ids.HOTFIX, c),
                 "Only an approver or the incident commander can extend the decision "
                 "deadline")
    assert _facts(h, rid) == state

    h.click(msg, ids.ASSIGN_IC, "carol")
    h.emulator.wait_for(lambda: ids.ASSIGN_IC not in action_ids(h.message_now(ts)))
    assert h.bot.store.get(rid).incident_commander == carol
    shown = h.message_now(ts)
    state = _facts(h, rid)

    # The hidden "I'm incident commander", clicked anyway: no takeover, not even by an
    # approver or the requester.
    for clicker, needle in (("bob", f"<@{carol}> is already the incident commander"),
                            ("alice", "not taken over by a click"),
                            ("carol", "You are already the incident commander"),
                            ("dave", "Only the requester or an approver")):
        _refused(h, clicker, lambda c=clicker: h.driver.click(
            CHANNEL, ts, ids.ASSIGN_IC, c, seen=_forge(shown, ids.ASSIGN_IC, v)), needle)
    # The bot's own checklist items, and "previous version" the bot already ticked.
    for item, needle in (("previous_version", "is already ticked"),
                         ("backup_verified", "Only the bot ticks"),
                         ("incident_commander", "ticked by taking incident command"),
                         ("stakeholders_notified", "Only the bot ticks")):
        action_id = f"{ids.CHECKLIST}:{item}"
        _refused(h, "bob", lambda a=action_id, i=item: h.driver.click(
            CHANNEL, ts, a, "bob", seen=_forge(shown, a, f"{rid}:{i}")), needle)
    # Approve buttons that do not fit this plan (P1, target not known-bad).
    _refused(h, "bob", lambda: h.driver.click(
        CHANNEL, ts, ids.APPROVE_OVERRIDE, "bob", seen=_forge(shown, ids.APPROVE_OVERRIDE, v)),
        "no \u201cnext deployment\u201d policy to override")
    _refused(h, "bob", lambda: h.driver.click(
        CHANNEL, ts, ids.APPROVE_KNOWN_BAD, "bob", seen=_forge(shown, ids.APPROVE_KNOWN_BAD, v)),
        "not marked known-bad")
    # Buttons of later states, on a pending rollback.
    for action_id in (ids.RESOLVE, ids.SCALE_BACK_UP, ids.RETRY, ids.RESUME_MONITORING):
        _refused(h, "carol", lambda a=action_id: h.driver.click(
            CHANNEL, ts, a, "carol", seen=_forge(shown, a, v)), "pending approval")
    after = _facts(h, rid)
    assert after == state, "a refused click changed the rollback, its audit or its timers"
    assert after[0].checklist["previous_version"]["done"] is True
    assert after[0].incident_commander == carol and dave not in str(after[1])

    h.click(msg, ids.APPROVE, "bob")  # the shown button, in the request's channel, works
    assert h.wait_state(rid, "approved").approver == h.emulator.user_id("bob")


def test_approvals_and_request_buttons_only_in_the_requests_own_channel(
        make_harness: Callable[..., Harness]) -> None:
    h = make_harness(background=False)
    rid, msg = _p1(h)
    h.click(msg, ids.ASSIGN_IC, "carol")
    h.emulator.wait_for(lambda: ids.ASSIGN_IC not in action_ids(h.message_now(msg["ts"])))
    h.emulator.add_channel(OTHER_CHANNEL)  # another incident channel: inc-* matches it
    pending = h.message_now(msg["ts"])
    web = WebClient(token=DEFAULT_BOT_TOKEN, base_url=h.emulator.base_url)
    copy_ts = web.chat_postMessage(channel=h.emulator.channel_id(OTHER_CHANNEL),
                                   text=pending["text"], blocks=pending["blocks"])["ts"]
    state = _facts(h, rid)
    own = f"#{CHANNEL}"
    for action_id in (ids.APPROVE, ids.REJECT, ids.HOTFIX, f"{ids.CHECKLIST}:team_assembled",
                      f"{ids.CHECKLIST}:decision_approved"):
        text = _refused(h, "bob", lambda a=action_id: h.driver.click(
            OTHER_CHANNEL, copy_ts, a, "bob"), f"only in {own}")
        assert "where it was requested" in text
    # A forged payload naming another channel for the request's own message is the same.
    shown = h.message_now(msg["ts"])
    _refused(h, "carol", lambda: h.driver.click(
        OTHER_CHANNEL, copy_ts, ids.APPROVE, "carol", seen=shown), f"only in {own}")
    assert _facts(h, rid) == state
    assert not h.emulator.open_views("bob"), "the reject dialog opened from another channel"
    assert h.platform.mutations() == {}

    h.click(msg, ids.APPROVE, "bob")
    assert h.wait_state(rid, "approved").approver == h.emulator.user_id("bob")


def test_an_approver_removed_from_the_group_cannot_approve_a_moment_later(
        make_harness: Callable[..., Harness]) -> None:
    h = make_harness(background=False)
    rid, msg = _p1(h)
    h.click(msg, ids.ASSIGN_IC, "carol")
    h.emulator.wait_for(lambda: ids.ASSIGN_IC not in action_ids(h.message_now(msg["ts"])))
    h.click(msg, ids.REJECT, "bob")  # bob is an approver: his reject dialog opens
    h.emulator.wait_for(lambda: h.emulator.open_views("bob"))
    group = h.emulator.ws.usergroups[h.emulator.usergroup_id(USERGROUP)]
    with h.emulator.ws.lock:
        group.users.remove(h.emulator.user_id("bob"))
    state = _facts(h, rid)
    _refused(h, "bob", lambda: h.click(msg, ids.APPROVE, "bob"), "Only approvers")
    assert _facts(h, rid) == state
    h.click(msg, ids.APPROVE, "carol")
    assert h.wait_state(rid, "approved").approver == h.emulator.user_id("carol")


def test_a_rate_limited_membership_read_waits_once_instead_of_refusing(
        make_harness: Callable[..., Harness]) -> None:
    """Membership is read at every decision; Slack's 429 on it (Tier 2) is waited out once,
    so a valid approver is not refused on a busy incident."""
    h = make_harness(background=False)
    rid, msg = _p1(h)
    h.click(msg, ids.ASSIGN_IC, "carol")  # P1's checklist gate
    h.emulator.wait_for(lambda: ids.ASSIGN_IC not in action_ids(h.message_now(msg["ts"])))
    h.emulator.fail_next("usergroups.users.list", times=1, retry_after=0)
    h.click(msg, ids.APPROVE, "bob")
    assert h.wait_state(rid, "approved").approver == h.emulator.user_id("bob")
    assert any(c.method == "usergroups.users.list" and c.error == "ratelimited"
               for c in h.emulator.calls())


def test_only_deciders_resolve_a_failed_verification(
        make_harness: Callable[..., Harness]) -> None:
    h = make_harness(background=False)
    rid, msg = _p1(h)
    _refused(h, "dave", lambda: h.click(msg, ids.ASSIGN_IC, "dave"), "Only the requester")
    with psycopg.connect(h.stack.database_url, autocommit=True) as conn:
        conn.execute("UPDATE rollbacks SET state = 'verification_failed', approver = %s"
                     " WHERE id = %s", (h.emulator.user_id("bob"), rid))
    h.bot.service.chat.refresh(h.bot.store.get(rid))
    h.emulator.wait_for(lambda: ids.RESOLVE in action_ids(h.message_now(msg["ts"])))
    state = _facts(h, rid)
    for clicker in ("dave", "alice"):  # alice requested it; neither approver nor IC
        _refused(h, clicker, lambda c=clicker: h.click(msg, ids.RESOLVE, c),
                 "Only an approver or the incident commander can close")
    shown = h.message_now(msg["ts"])
    _refused(h, "dave", lambda: h.driver.click(
        CHANNEL, msg["ts"], ids.RETRY, "dave", seen=_forge(shown, ids.RETRY, str(rid))),
        "Only an approver or the incident commander")
    assert _facts(h, rid) == state
    h.click(msg, ids.RESOLVE, "carol")
    assert h.wait_state(rid, "failed")
    closer = [e.actor for e in h.bot.store.audit_events(rid) if e.event == "resolve"]
    assert closer == [h.emulator.user_id("carol")]


def test_a_requester_who_took_incident_command_decides_nothing_alone(
        make_harness: Callable[..., Harness]) -> None:
    """Measured: a requester made himself IC, then used the IC's grants on his own request.
    Taking command is fine; the IC's decisions need a second person."""
    h = make_harness(background=False)
    rid, msg = _p1(h, requester="alice")
    h.click(msg, ids.ASSIGN_IC, "alice")
    h.emulator.wait_for(lambda: h.bot.store.get(rid).incident_commander ==
                        h.emulator.user_id("alice"))
    state = _facts(h, rid)
    _refused(h, "alice", lambda: h.click(msg, ids.HOTFIX, "alice"),
             "Only an approver or the incident commander")
    assert _facts(h, rid) == state
    with psycopg.connect(h.stack.database_url, autocommit=True) as conn:
        conn.execute("UPDATE rollbacks SET state = 'verification_failed', approver = %s"
                     " WHERE id = %s", (h.emulator.user_id("bob"), rid))
    h.bot.service.chat.refresh(h.bot.store.get(rid))
    h.emulator.wait_for(lambda: ids.RESOLVE in action_ids(h.message_now(msg["ts"])))
    state = _facts(h, rid)
    _refused(h, "alice", lambda: h.click(msg, ids.RESOLVE, "alice"),
             "Only an approver or the incident commander can close")
    assert _facts(h, rid) == state
    assert h.bot.store.get(rid).state == "verification_failed"


def test_refusals_name_the_rule(matrix: Matrix) -> None:
    """The refusal a person sees says who may, or where, or why not: never a bare no."""
    m, bob = matrix, matrix.users[APPROVER]
    m.shape(Action.APPROVE, State.PENDING_APPROVAL)
    with pytest.raises(NotAllowed, match=re.escape(f"only in #{CHANNEL}, the channel where")):
        m.service.approve(m.rid, user=bob, channel_id=m.h.emulator.channel_id(OTHER_CHANNEL))
    m.shape(Action.CANCEL, State.COMPLETED)
    with pytest.raises(NotAllowed, match="completed; you can cancel RB-.* only while it is "
                                         "pending approval, approved or executing"):
        m.service.cancel(m.rid, user=bob)
    m.shape(Action.TICK_DECISION_APPROVED, State.PENDING_APPROVAL)
    # str() is the plain words; the tech lead is a fact the Slack layer renders as a mention
    lead = re.escape(f"Only a technical lead for `{SERVICE}` (@{m.users[TECH_LEAD]})")
    with pytest.raises(NotAllowed, match=lead):
        m.service.tick_checklist(m.rid, item="decision_approved", user=m.users[REQUESTER],
                                 channel_id=CHANNEL_ID)
