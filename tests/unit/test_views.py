"""Block Kit builders: valid for Slack in every state, and only valid buttons are shown."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from slack_sdk.models.blocks import Block
from slack_sdk.models.views import View

from bot.config import load_config
from bot.lifecycle import State
from bot.models import Rollback, Step
from handlers import ids, views
from platforms.base import Revision, Target

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
    from bot.config import Severity

    modal = views.request_modal(service="hotel-voice-bot", platform="kubernetes",
                                revisions=revs, severity=Severity.P1, scope=["app"],
                                channel_id="C1", platforms=["kubernetes", "ecs"])
    View(**modal).validate_json()
    values = [o["value"] for o in modal["blocks"][2]["element"]["options"]]
    assert values == ["2", "1"]  # the current revision is never offered
    View(**views.reject_modal(_rollback(State.PENDING_APPROVAL), channel_id="C1")).validate_json()


def test_help_and_services() -> None:
    _validate(views.help_blocks("/rollback"))
    blocks = views.services_blocks(load_config("rollback.example.yml"))
    _validate(blocks)
    assert "hotel-voice-bot" in str(blocks)
