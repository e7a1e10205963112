"""The timeline's pure parts: parsing ``timeline RB-n``, entries from each source, the
message cut to Slack's limits, the Markdown file, and the button on finished requests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from slack_sdk.models.blocks import Block

from bot.domain.command_parsing import parse
from bot.domain.errors import ParseError
from bot.domain.lifecycle import State
from bot.domain.models import AuditEvent, Rollback, Step
from bot.persistence.timeline_reads import JobRow
from bot.usecases.timeline import (
    Entry,
    Kind,
    Timeline,
    audit_entries,
    job_entry,
    rollback_id,
    step_entries,
)
from handlers import ids, views, views_timeline
from platforms.base import Revision, Target
from platforms.registry import PRODUCTION

NOW = datetime(2026, 11, 29, 3, 0, tzinfo=UTC)


def _rollback(state: State = State.COMPLETED) -> Rollback:
    return Rollback(
        id=7, service="hotel-voice-bot", platform="kubernetes", severity="P1",
        policy_mode="hotfix_window", scope=["app"], reason="5xx", state=state,
        requester="U1", channel_id="C1", channel_name="inc-hvb", message_ts="1.1",
        thread_ts="1.1", current_revision=Revision("rs-b", 5, ("app:v2",), current=True),
        target_revision=Revision("rs-a", 4, ("app:v1",)),
        target=Target("kubernetes", "prod", "hvb"), checklist={}, assessment={},
        approver=None, break_glass=False, incident_commander=None, incident_started_at=None,
        created_at=NOW, updated_at=NOW, expires_at=None, approved_at=None, finished_at=None,
        last_error=None)


def _entries(n: int, *, detail: str = "x" * 150) -> list[Entry]:
    return [Entry(NOW + timedelta(seconds=i), Kind.EVENT, f"event_{i}", "U0BOB",
                  f"audit #{i + 1}", facts={"note": f"{detail} <&> {i}"}) for i in range(n)]


# ---------------------------------------------------------------------- parsing
@pytest.mark.parametrize("text", ["timeline RB-12", "timeline rb-12", "timeline 12"])
def test_timeline_takes_one_rollback_id(text: str) -> None:
    parsed = parse(text, platforms=PRODUCTION)
    assert parsed.verb == "timeline" and rollback_id(parsed.argument or "") == 12


@pytest.mark.parametrize(("text", "refusal"), [
    ("timeline", "`timeline` needs an ID."),
    ("timeline RB-x", "is not a rollback ID"),
    ("timeline RB-0", "is not a rollback ID"),
    ("timeline RB-1234567890", "is not a rollback ID"),  # beyond the database's range
    ("timeline ²", "is not a rollback ID"),
    ("timeline RB-1 now", "Unexpected `now`"),
])
def test_timeline_refuses_what_is_not_one_id(text: str, refusal: str) -> None:
    with pytest.raises(ParseError, match=refusal):
        parse(text, platforms=PRODUCTION)


# ---------------------------------------------------------------------- entries
def test_an_audited_verification_becomes_its_row_and_one_entry_per_check() -> None:
    event = AuditEvent(9, 7, NOW, "bot", "verified", "verifying", "monitoring", {
        "attempt": 1, "checks": [{"name": "health", "status": "pass", "summary": "HTTP 200"},
                                 {"name": "db", "status": "fail", "summary": "timeout"}]})
    row, *checks = audit_entries(event)
    assert (row.kind, row.source, row.facts) == (Kind.TRANSITION, "audit #9", {"attempt": 1})
    assert [(c.kind, c.name, c.facts["status"]) for c in checks] == [
        (Kind.CHECK, "health", "pass"), (Kind.CHECK, "db", "fail")]
    assert views_timeline.what(row) == "verifying → monitoring (verified)"
    assert views_timeline.what(checks[1]) == "check db: fail"


def test_a_step_shows_its_start_and_its_end_and_a_step_never_run_nothing() -> None:
    done = Step(7, 2, "restore_db", "Restore", True, "failed", 2, {}, {}, "boom", NOW,
                NOW + timedelta(seconds=5))
    started, ended = step_entries(done)
    assert views_timeline.what(started) == "step 2 restore_db: started"
    assert views_timeline.what(ended) == "step 2 restore_db: failed"
    assert "error: boom" in views_timeline.detail(ended)
    assert step_entries(Step(7, 3, "scale_up", "Up", False, "pending", 0, {}, {}, None,
                             None, None)) == []


def test_a_secret_in_a_row_is_scrubbed_again_on_the_way_out() -> None:
    """Job results are stored unscrubbed, and an audit row may predate a scrub rule."""
    token = "xoxb-123456789012-abcdefghijkl"
    event = AuditEvent(1, 7, NOW, "bot", "updated", None, None, {"note": f"sent {token}"})
    job = JobRow(4, "aftercare_notify", NOW, "done", 0, NOW, None, {"echo": [token]})
    for entry in (*audit_entries(event), job_entry(job)):
        assert token not in str(entry.facts) and "xoxb-" not in views_timeline.detail(entry)


# ---------------------------------------------------------------------- the message
@pytest.mark.parametrize("n", [0, 1, 30, 59, 60, 61, 500])
def test_the_message_fits_slack_and_counts_what_it_leaves_out(n: int) -> None:
    tl = Timeline(_rollback(), _entries(n), NOW)
    blocks = views_timeline.timeline_blocks(tl, file_note="attached", name="t.md")
    assert len(blocks) <= 50
    for b in blocks:
        Block.parse(b).validate_json()
        text = b["text"]["text"] if "text" in b else b["elements"][0]["text"]
        assert len(text) <= 3000
    shown = views_timeline.shown_count(blocks)
    cut = [b for b in blocks if b["type"] == "context" and "more, see the attached file"
           in b["elements"][0]["text"]]
    if shown < n:
        assert cut and f"… and {n - shown} more, see the attached file `t.md`." in str(cut)
    else:
        assert not cut and shown == n
    assert shown <= views_timeline.MAX_SHOWN


def test_long_lines_pack_into_sections_without_passing_3000_characters() -> None:
    tl = Timeline(_rollback(), _entries(45, detail="&" * 400), NOW)  # escaped: 5 × longer
    blocks = views_timeline.timeline_blocks(tl, file_note="attached", name="t.md")
    sections = [b["text"]["text"] for b in blocks[1:] if b["type"] == "section"]
    assert len(sections) > 1 and all(len(s) <= 3000 for s in sections)
    assert views_timeline.shown_count(blocks) == 45
    short = views_timeline.timeline_blocks(Timeline(_rollback(), _entries(1, detail="a"), NOW),
                                           file_note="attached", name="t.md")
    assert "<&>" not in str(short) and "a &lt;&amp;&gt; 0" in str(short)  # escaped


def test_people_are_mentioned_in_slack_and_named_by_id_in_the_file() -> None:
    tl = Timeline(_rollback(), _entries(1), NOW)
    assert "<@U0BOB>" in str(views_timeline.timeline_blocks(tl, file_note="f", name="t.md"))
    assert "| U0BOB |" in views_timeline.timeline_markdown(tl)


# ---------------------------------------------------------------------- the file
def test_the_file_has_every_entry_one_row_each_pipes_escaped() -> None:
    entries = _entries(120)
    entries.append(Entry(NOW, Kind.EVENT, "updated", "bot", "audit #999",
                         facts={"reason": "a | b\nc"}))
    md = views_timeline.timeline_markdown(Timeline(_rollback(), entries, NOW))
    rows = [line for line in md.splitlines() if line.startswith("| ")][1:]
    assert len(rows) == 121
    assert "| 2026-11-29 03:00:00 | event | updated | the bot | reason: a \\| b c | audit #999 |" \
        in md
    assert views_timeline.filename(Timeline(_rollback(), [], NOW)) == \
        "timeline-RB-7-20261129T030000Z.md"


# ---------------------------------------------------------------------- the button
def _action_ids(blocks: list[dict[str, Any]]) -> list[str]:
    return [e["action_id"] for b in blocks if b["type"] == "actions" for e in b["elements"]]


@pytest.mark.parametrize("state", list(State))
def test_finished_requests_offer_the_timeline_and_live_ones_do_not(state: State) -> None:
    _, blocks = views.rollback_message(_rollback(state), [])
    offered = ids.TIMELINE in _action_ids(blocks)
    assert offered == (state in {State.COMPLETED, State.FAILED, State.REJECTED,
                                 State.CANCELLED, State.EXPIRED, State.NEEDS_ATTENTION,
                                 State.UNSTABLE, State.VERIFICATION_FAILED})
