"""Block Kit builders: valid for Slack in every state, and only valid buttons are shown."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from slack_sdk.models.blocks import Block
from slack_sdk.models.views import View

from bot.domain.config import load_config
from bot.domain.lifecycle import State
from bot.domain.messages import WatchReading
from bot.domain.models import Rollback, Step
from handlers import ids, views
from platforms.base import Revision, Target
from platforms.registry import PRODUCTION

NOW = datetime(2026, 11, 29, 3, 0, tzinfo=UTC)


def _rollback(state: State, **kw: Any) -> Rollback:
    base: dict[str, Any] = dict(
        id=7, service="hotel-voice-bot", platform="kubernetes", severity="P1",
        policy_mode="hotfix_window", scope=["app"], reason="5xx spike", state=state,
        requester="U1", channel_id="C1", channel_name="inc-hvb", message_ts="1.1",
        thread_ts="1.1", current_revision=Revision("rs-b", 5, ("app:v2",), current=True),
        target_revision=Revision("rs-a", 4, ("app:v1",)), target=Target("kubernetes", "prod",
                                                                         "hvb"),
        checklist={"previous_version": {"done": True, "by": "bot", "note": "rev 4"}},
        assessment={"health": {"ok": False, "text": "HTTP 503 in 12 ms"}}, approver=None,
        break_glass=False, incident_commander=None, incident_started_at=None, created_at=NOW,
        updated_at=NOW, expires_at=NOW + timedelta(minutes=30), approved_at=None,
        finished_at=None, last_error=None)
    base.update(kw)
    return Rollback(**base)


STEPS = [Step(7, 1, "app_rollback", "Roll back", False, "done", 1, {}, {}, None, None, None),
         Step(7, 2, "wait_rollout", "Wait", False, "pending", 0, {}, {}, None, None, None)]


def _validate(blocks: list[dict[str, Any]]) -> None:
    assert len(blocks) <= 50
    for b in blocks:
        Block.parse(b).validate_json()  # raises SlackObjectFormationError when invalid


def _action_ids(blocks: list[dict[str, Any]]) -> list[str]:
    return [e["action_id"] for b in blocks if b["type"] == "actions" for e in b["elements"]]


@pytest.mark.parametrize("state", list(State))
def test_message_is_valid_block_kit_in_every_state(state: State) -> None:
    text, blocks = views.rollback_message(_rollback(state), STEPS)
    _validate(blocks)
    assert "RB-7" in text


def test_pending_shows_decisions_terminal_shows_none() -> None:
    _, pending = views.rollback_message(_rollback(State.PENDING_APPROVAL), STEPS)
    acts = _action_ids(pending)
    assert {ids.APPROVE, ids.REJECT, ids.HOTFIX, ids.CANCEL, ids.ASSIGN_IC} <= set(acts)
    assert len(acts) == len(set(acts))  # Slack rejects duplicate action_ids in a block
    for state in (State.COMPLETED, State.REJECTED, State.EXPIRED, State.EXECUTING):
        _, blocks = views.rollback_message(_rollback(state), STEPS)
        assert ids.APPROVE not in _action_ids(blocks), state


def test_pending_shows_the_stored_decision_deadline() -> None:
    """The deadline is the core's fact (``decision_due_at``), shown as is; after a hotfix
    report it says who moved it, and the button that moves it once is gone."""
    due = NOW + timedelta(minutes=15)
    text = str(views.rollback_message(
        _rollback(State.PENDING_APPROVAL, decision_due_at=due), STEPS)[1])
    assert "P1 decision due 03:15 UTC." in text
    assert "Approval request expires at 2026-11-29 03:30 UTC." in text
    _, blocks = views.rollback_message(_rollback(
        State.PENDING_APPROVAL, decision_due_at=due + timedelta(minutes=15),
        hotfix_reported_by="U9", expires_at=NOW + timedelta(minutes=45)), STEPS)
    assert ("P1 decision due 03:30 UTC (extended: <@U9> reported a hotfix in progress)."
            in str(blocks))
    assert ids.HOTFIX not in _action_ids(blocks)
    for state in (State.APPROVED, State.EXPIRED):
        shown = str(views.rollback_message(_rollback(state, decision_due_at=due), STEPS)[1])
        assert "decision due" not in shown, state


def test_pending_shows_the_release_watchers_latest_figures() -> None:
    """The watcher's reading (``rollbacks.watch_reading``) is a line of the pending request;
    once decided, the figures are history and the line goes."""
    reading = WatchReading(0.0613, 0.05, 12 * 60 + 5, NOW + timedelta(minutes=35)).to_json()
    _, blocks = views.rollback_message(
        _rollback(State.PENDING_APPROVAL, watch_reading=reading), STEPS)
    _validate(blocks)
    assert ("Release watcher: error rate 6.1 % (over 5 % for 12 min), updated 03:35 UTC"
            in str(blocks))
    for state in (State.APPROVED, State.REJECTED):
        shown = str(views.rollback_message(_rollback(state, watch_reading=reading), STEPS)[1])
        assert "Release watcher" not in shown, state
    assert "Release watcher" not in str(views.rollback_message(
        _rollback(State.PENDING_APPROVAL), STEPS)[1])


def test_p3_offers_override_not_approve() -> None:
    _, blocks = views.rollback_message(
        _rollback(State.PENDING_APPROVAL, severity="P3", policy_mode="next_deployment"), STEPS)
    acts = _action_ids(blocks)
    assert ids.APPROVE_OVERRIDE in acts and ids.APPROVE not in acts


def test_break_glass_is_loud() -> None:
    _, blocks = views.rollback_message(
        _rollback(State.APPROVED, approver="U1", break_glass=True), STEPS)
    assert "BREAK GLASS" in str(blocks)


def test_modals_are_valid() -> None:
    revs = [Revision("a", 3, ("x:3",), current=True), Revision("b", 2, ("x:2",)),
            Revision("c", 1, ("x:1",))]
    from bot.domain.config import Severity

    modal = views.request_modal(service="hotel-voice-bot", platform="kubernetes",
                                revisions=revs, severity=Severity.P1, scope=["app"],
                                channel_id="C1", platforms=["kubernetes", "ecs"])
    View(**modal).validate_json()
    values = [o["value"] for o in modal["blocks"][2]["element"]["options"]]
    assert values == ["2", "1"]  # the current revision is never offered
    View(**views.reject_modal(_rollback(State.PENDING_APPROVAL), channel_id="C1")).validate_json()


FACTS = {
    "revisions": [{"number": 5, "label": "rev 5 (app:v2)", "current": True, "target": False,
                   "known_bad_by": None},
                  {"number": 4, "label": "rev 4 (app:v1)", "current": False, "target": True,
                   "known_bad_by": 3}],
    "known_bad_target": {"revision_id": "rs-a", "rollback_id": 3, "marked_at": NOW.isoformat()},
    "destructive": [{"kind": "restore_db", "description": "Restore the database from x.dump"}],
    "backup": {"name": "x.dump", "size": 12_582_912, "taken_at": (NOW - timedelta(hours=2,
                                                                                  minutes=5)
                                                                   ).isoformat()},
}
DB_STEPS = [Step(7, 1, "scale_down", "Scale to 0", False, "done", 1, {}, {"before": 3}, None,
                 None, None),
            Step(7, 2, "restore_db", "Restore", True, "failed", 1, {}, {"begun": True}, "boom",
                 None, None)]


@pytest.mark.parametrize("state", list(State))
def test_do_no_harm_surfaces_are_valid_block_kit(state: State) -> None:
    _, blocks = views.rollback_message(_rollback(state, plan_facts=FACTS), DB_STEPS)
    _validate(blocks)


def test_known_bad_target_and_destructive_steps_are_loud() -> None:
    _, blocks = views.rollback_message(
        _rollback(State.PENDING_APPROVAL, plan_facts=FACTS), STEPS)
    text, acts = str(blocks), _action_ids(blocks)
    assert "KNOWN-BAD" in text and ":no_entry: known-bad (RB-3)" in text
    assert "12.0 MB" in text and "Restore the database from x.dump" in text
    assert ids.APPROVE_KNOWN_BAD in acts and ids.APPROVE not in acts


def test_scale_back_up_only_while_left_at_zero() -> None:
    _, blocks = views.rollback_message(_rollback(State.NEEDS_ATTENTION), DB_STEPS)
    assert ids.SCALE_BACK_UP in _action_ids(blocks)
    restored = [DB_STEPS[0].__class__(**{**DB_STEPS[0].__dict__,
                                         "result": {"before": 3, "restored_to": 3}}),
                DB_STEPS[1]]
    _, blocks = views.rollback_message(_rollback(State.NEEDS_ATTENTION), restored)
    assert ids.SCALE_BACK_UP not in _action_ids(blocks)


def test_destructive_approval_modal() -> None:
    rb = _rollback(State.PENDING_APPROVAL, plan_facts=FACTS)
    modal = views.approve_destructive_modal(rb, channel_id="C1",
                                            flags={"known_bad_override": True})
    View(**modal).validate_json()
    assert "2 h 5 min old" in str(modal["blocks"]) and "x.dump" in str(modal["blocks"])
    assert views.parse_approval_metadata(modal["private_metadata"]) == (
        "7", "C1", {"known_bad_override": True})
    assert views.approval_service(modal) == "hotel-voice-bot"


def test_help_and_services() -> None:
    _validate(views.help_blocks("/rollback", PRODUCTION))
    blocks = views.services_blocks(load_config("rollback.example.yml", platforms=PRODUCTION))
    _validate(blocks)
    assert "hotel-voice-bot" in str(blocks)


def test_user_text_is_escaped_but_own_mentions_render() -> None:
    from bot.domain.errors import UserFacingError
    from bot.domain.words import Mention
    from handlers.errors import render
    from handlers.mrkdwn import escape, words

    assert escape("<!channel> & <https://e.example|x>") == \
        "&lt;!channel&gt; &amp; &lt;https://e.example|x&gt;"
    assert words((Mention("U123ABC"), " asked <!here> <@U9>")) == \
        "<@U123ABC> asked &lt;!here&gt; &lt;@U9&gt;"
    assert render(UserFacingError("Unknown service `<!channel>`")) == \
        "Unknown service `&lt;!channel&gt;`"
    refusal = UserFacingError(Mention("U1"), " already asked to cancel <!here>.")
    assert str(refusal) == "@U1 already asked to cancel <!here>."  # plain words
    assert render(refusal) == "<@U1> already asked to cancel &lt;!here&gt;."


def test_notices_escape_what_platforms_and_people_wrote() -> None:
    from bot.domain.messages import ClosedBy, RegressionAlert
    from handlers import views_aftercare, wording

    alert = RegressionAlert(7, "RB-7", "hvb <!here>", 3, 24, NOW,
                            "<@U1> saw <!channel> at <https://evil.example|rev 5> & more",
                            mention="U9", closed=ClosedBy("U1", "RB-7", "completed <b>"))
    card = wording.card(alert)
    blocks = str(views_aftercare.notice_blocks(card, key="k"))
    assert "<!channel>" not in blocks and "<!here>" not in blocks and "<https://" not in blocks
    assert "&lt;!channel&gt;" in blocks and "&amp; more" in blocks and "&lt;b&gt;" in blocks
    assert "&lt;@U1&gt; saw" in blocks  # a mention someone typed stays text
    assert "<@U1> closed" in blocks and "<@U9>" in blocks  # the bot's own mentions work
    assert "<!channel>" not in views_aftercare.fallback_text(card)


def test_true_times_are_valid_block_kit_and_name_their_source() -> None:
    """The incident start with its source on the message and the form; the data-loss window
    expected before the restore and recorded after it (``bot.domain.incident_times``)."""
    from bot.domain.config import Severity
    from bot.domain.incident_times import WATCHER, IncidentStart

    pending = _rollback(State.PENDING_APPROVAL, plan_facts=FACTS, scope=["app", "db"],
                        incident_started_at=NOW - timedelta(minutes=12),
                        incident_start_source=WATCHER)
    _, blocks = views.rollback_message(pending, DB_STEPS)
    _validate(blocks)
    text = str(blocks)
    assert ("Incident started 2026-11-29 02:48 UTC (the release watcher's first breach, "
            "12 min 00 s before the request)") in text
    assert "*Data written after 2026-11-29 00:55 UTC will be lost* (about 2 h 05 min" in text
    done = _rollback(State.COMPLETED, plan_facts=FACTS, scope=["app", "db"],
                     data_loss_from=NOW - timedelta(hours=2, minutes=5),
                     data_loss_to=NOW + timedelta(minutes=4))
    _, blocks = views.rollback_message(done, DB_STEPS)
    _validate(blocks)
    assert ("*Data loss:* writes between 2026-11-29 00:55 and 03:04 UTC are not in the restored "
            "database (2 h 09 min).") in str(blocks)
    assert "data loss 2026-11-29 00:55–03:04 UTC (2 h 09 min)" in str(
        views.rollback_list_blocks("Rollbacks", [done]))
    modal = views.request_modal(
        service="hotel-voice-bot", platform="kubernetes", revisions=[], severity=Severity.P1,
        scope=["app"], channel_id="C1", platforms=["kubernetes"],
        incident_start=IncidentStart(NOW - timedelta(minutes=12), WATCHER))
    View(**modal).validate_json()
    field = next(b for b in modal["blocks"] if b.get("block_id") == "incident_started")
    assert field["optional"] and field["hint"]["text"].endswith(
        "Empty: 2026-11-29 02:48 UTC (the release watcher's first breach).")


def test_a_known_bad_mark_shows_its_forward_fix_wherever_it_is_shown() -> None:
    from bot.domain.config import Severity
    from bot.domain.models import KnownBad
    from bot.persistence.forward_fix_store import ForwardFixRecord
    from handlers import views_forward_fix

    link = "https://github.com/acme/hvb/pull/812?a=1&b=2"
    shown = "<https://github.com/acme/hvb/pull/812?a=1&amp;b=2>"
    facts = {**FACTS, "revisions": [{**FACTS["revisions"][1], "forward_fix": link}],
             "known_bad_target": {**FACTS["known_bad_target"], "forward_fix": link}}
    _, blocks = views.rollback_message(_rollback(State.PENDING_APPROVAL, plan_facts=facts), STEPS)
    _validate(blocks)
    assert str(blocks).count(f"fix: {shown}") == 2  # the revision list and the warning
    mark = KnownBad("hvb", "kubernetes", "b", {"id": "b", "number": 2, "images": ["x:2"]}, 3,
                    NOW, forward_fix=link)
    assert f"fix: {shown}" in str(views.known_bad_blocks("hvb", "kubernetes", [mark]))
    modal = views.request_modal(
        service="hvb", platform="kubernetes", severity=Severity.P1, scope=["app"],
        channel_id="C1", platforms=["kubernetes"], known_bad={"b": mark},
        revisions=[Revision("a", 3, ("x:3",), current=True), Revision("b", 2, ("x:2",)),
                   Revision("c", 1, ("x:1",))])
    View(**modal).validate_json()
    assert f"fix: {shown}" in str(modal["blocks"])
    done = _rollback(State.COMPLETED)
    rec = ForwardFixRecord(7, "waived", 2, NOW, NOW, None, None, "config only", "U2", NOW, NOW)
    history = str(views.rollback_list_blocks("History", [done], forward_fixes={7: rec}))
    assert "known-bad rev 5 (app:v2) forward fix waived: config only" in history
    for waive in (False, True):
        View(**views_forward_fix.forward_fix_modal(done, waive=waive)).validate_json()


def test_a_list_longer_than_a_section_keeps_the_newest_lines_and_counts_the_rest() -> None:
    """Slack refuses a section over 3,000 characters and ``section`` would cut the text
    blindly (a mention or the count half gone): lines that do not fit are counted."""
    many = [_rollback(State.EXECUTING, id=i, service=f"svc-{'x' * 80}-{i}")
            for i in range(1, 41)]
    blocks = views.rollback_list_blocks("Rollbacks", many, total=95)
    _validate(blocks)
    text = blocks[0]["text"]["text"]
    assert len(text) <= views.SECTION_LIMIT
    shown = [int(n) for n in re.findall(r"\*RB-(\d+)\*", text)]
    assert shown and shown == list(range(41 - len(shown), 41))  # the newest ones
    assert text.endswith(f"… and {95 - len(shown)} more (`/rollback status RB-N` or "
                         "`/rollback status <service>` shows one)")
