"""``history <service> --revision N`` parsing and the Block Kit of the revision detail and
of the plan's configuration view (issue 13): valid for Slack, capped, escaped."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from slack_sdk.models.blocks import Block

from bot.domain import command_parsing
from bot.domain.errors import ParseError
from bot.domain.lifecycle import State
from bot.domain.models import Rollback
from handlers import views
from platforms.base import ConfigDifference, Revision, RevisionDetail, Target
from platforms.registry import PRODUCTION

NOW = datetime(2026, 11, 30, 3, 0, tzinfo=UTC)


def _parse(text: str) -> command_parsing.Parsed:
    return command_parsing.parse(text, platforms=PRODUCTION)


def test_history_with_a_revision_is_the_revision_verb() -> None:
    p = _parse("history hvb --revision 4 --platform ecs")
    assert (p.verb, p.service, p.to, p.platform) == ("revision", "hvb", 4, "ecs")
    assert _parse("history hvb --revision=rev7").to == 7
    plain = _parse("history hvb")
    assert (plain.verb, plain.argument) == ("history", "hvb")


@pytest.mark.parametrize("text,token", [
    ("history hvb --revision 0", "--revision 0"), ("history hvb --revision x", "x"),
    ("history hvb --revision", "--revision"), ("history hvb --platform ecs", "--revision N"),
    ("history hvb --to 3", "--to"), ("history hvb --platform nomad --revision 2", "nomad"),
])
def test_a_bad_revision_request_names_the_token(text: str, token: str) -> None:
    with pytest.raises(ParseError) as err:
        _parse(text)
    assert token in str(err.value)


def _valid(blocks: list[dict[str, Any]]) -> None:
    for b in blocks:
        Block.parse(b).validate_json()


def test_revision_detail_is_a_code_block_cut_to_what_slack_takes() -> None:
    rev = Revision("rs-a", 4, ("app:v1",), current=True)
    text = "Pod Template:\n  Labels: app=<b>\n  ```fence```\n" + "x" * 5000
    blocks = views.revision_detail_blocks("hvb", "kubernetes", RevisionDetail(rev, (), text))
    _valid(blocks)
    body = blocks[1]["text"]["text"]
    assert body.startswith("```") and body.endswith("```") and body.count("```") == 2
    assert "&lt;b&gt;" in body and "(cut;" in body and len(body) < 3000
    assert "running now" in blocks[0]["text"]["text"]


def _rollback(facts: dict[str, Any]) -> Rollback:
    return Rollback(
        id=7, service="hvb", platform="kubernetes", severity="P1", policy_mode="hotfix_window",
        scope=["app"], reason="", state=State.PENDING_APPROVAL, requester="U1",
        channel_id="C1", channel_name="inc-hvb", message_ts="1.1", thread_ts="1.1",
        current_revision=Revision("rs-b", 5, ("app:v2",), current=True),
        target_revision=Revision("rs-a", 4, ("app:v1",)),
        target=Target("kubernetes", "prod", "hvb"), checklist={}, assessment={},
        approver=None, break_glass=False, incident_commander=None, incident_started_at=None,
        created_at=NOW, updated_at=NOW, expires_at=NOW + timedelta(minutes=30),
        approved_at=None, finished_at=None, last_error=None, plan_facts=facts)


def _plan_text(facts: dict[str, Any]) -> str:
    _, blocks = views.rollback_message(_rollback(facts), [])
    _valid(blocks)
    return json.dumps(blocks, ensure_ascii=False).replace("\\n", "\n")


def test_the_plan_shows_what_configuration_changes_capped() -> None:
    diffs = [ConfigDifference("env", f"K{i:02}", "a", "b").to_dict() for i in range(20)]
    diffs[0] = ConfigDifference("secret ref", "DB", "arn:1", "arn:2").to_dict()
    diffs[1] = ConfigDifference("env", "NEW", None, "<x>").to_dict()
    text = _plan_text({"config_differences": diffs})
    assert "Configuration that differs" in text
    assert "secret ref DB: `arn:1` → `arn:2`" in text
    assert "env NEW: (unset) → `&lt;x&gt;`" in text
    assert "env K14: `a` → `b`" in text and "K15" not in text
    assert "… and 5 more" in text


def test_an_unavailable_view_is_said_and_an_old_plan_shows_nothing() -> None:
    assert "Configuration view unavailable: not wired" in _plan_text(
        {"config_view_unavailable": "not wired"})
    assert "Configuration" not in _plan_text({})
    assert "Configuration that differs:* none" in _plan_text({"config_differences": []})


def test_a_detail_full_of_entities_keeps_its_fence_and_the_cut_note() -> None:
    rev = Revision("rs-a", 4, ("app:v1",))
    # Each "&&" and "<" grows to "&amp;&amp;" and "&lt;" when escaped: 2,000 characters of
    # them are far over what a section holds once escaped.
    text = "\n".join(f"  cmd{i}: a && b < c" for i in range(150))
    blocks = views.revision_detail_blocks("hvb", "kubernetes", RevisionDetail(rev, (), text))
    _valid(blocks)
    body = blocks[1]["text"]["text"]
    assert len(body) <= 3000
    assert body.startswith("```") and body.endswith("(cut; the platform's own tool shows "
                                                    "the rest)```")
    kept = body.removeprefix("```").split("\n… (cut;")[0].split("\n")
    assert kept[-1] == f"  cmd{len(kept) - 1}: a &amp;&amp; b &lt; c"  # whole lines only


def test_one_long_line_is_never_cut_inside_an_entity() -> None:
    rev = Revision("rs-a", 4, ("app:v1",))
    for pad in range(6):  # every alignment of the cut against "&amp;"
        text = "x" * pad + "&" * 2000
        body = views.revision_detail_blocks("hvb", "k8s", RevisionDetail(rev, (), text))[1][
            "text"]["text"]
        assert len(body) <= 3000 and body.endswith("the rest)```")
        kept = body.removeprefix("```").removeprefix("x" * pad).split("\n…")[0]
        assert kept and kept == "&amp;" * (len(kept) // 5)


def test_long_values_keep_the_count_of_what_is_left_out() -> None:
    diffs = [ConfigDifference("env", f"K{i:02}", "&" * 150, "<" * 150).to_dict()
             for i in range(15)]
    text = _plan_text({"config_differences": diffs})
    texts = [b.get("text", {}).get("text", "") for b in views.rollback_message(_rollback(
        {"config_differences": diffs}), [])[1] if b.get("type") == "section"]
    section = next(t for t in texts if "Configuration that differs" in t)
    assert len(section) <= 3000
    shown = sum(f"env K{i:02}:" in text for i in range(15))
    assert 0 < shown < 15
    assert section.endswith(f"… and {15 - shown} more")
    assert section.count("`") % 2 == 0  # no value cut inside its code span
