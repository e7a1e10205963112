"""``/rollback timeline RB-n`` and the *Timeline* button, end to end: a P1 rollback runs to
completion through the real bot, the Slack emulator and PostgreSQL; then its timeline is
read from Slack and compared with the ``audit_events`` table read here directly.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC
from pathlib import Path
from typing import Any

from handlers import ids
from sandbox.demo import DemoService
from tests.e2e.conftest import CHANNEL, Harness, action_ids
from tests.support.demo import health_monitored
from tests.support.waiting import wait_until

STAKEHOLDERS = "hotel-voice-bot-stakeholders"



def _completed_rollback(h: Harness) -> tuple[int, dict[str, Any]]:
    """A P1 rollback through approval, steps, verification, a 10-minute stability window
    (two checks), completion and the reminders: a long, varied record."""
    rid, msg = h.request_and_approve_p1()
    h.wait_state(rid, "monitoring")
    h.tick()  # the stakeholder notice
    for _ in range(2):
        h.clock.advance(minutes=5)
        h.tick()
    h.wait_state(rid, "completed")
    wait_until(lambda: h.bot.service.jobs.pending(rollback_id=rid, kinds=["reminder"]), 10,
               0.02, "the reminders to be scheduled")
    h.tick()  # the "stable" update and both reminders
    return rid, msg


def _audit_rows(h: Harness, rid: int) -> list[dict[str, Any]]:
    """The table itself, not the store's reader: what the timeline must show."""
    with h.bot.store.pool.connection() as conn:
        cur = conn.execute("SELECT id, at, actor, event, from_state, to_state FROM audit_events"
                           " WHERE rollback_id = %s ORDER BY id", (rid,))
        names = [d.name for d in cur.description or []]
        return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


def _table(markdown: str) -> list[list[str]]:
    """The Markdown file's table rows as cells (header and rule left out)."""
    rows = [line for line in markdown.splitlines() if line.startswith("| ")]
    assert rows[0].startswith("| Time (UTC) | Kind | What | By | Detail | Source |")
    return [[c.strip() for c in re.split(r"(?<!\\)\|", row)[1:-1]] for row in rows[1:]]


def _timeline_files(h: Harness, rid: int) -> list[dict[str, Any]]:
    return [f for f in h.emulator.files()
            if f["name"].startswith(f"timeline-RB-{rid}-") and f["name"].endswith(".md")]


def _answer(h: Harness, user: str, rid: int) -> dict[str, Any]:
    found = h.emulator.wait_for(lambda: next(
        (e for e in h.emulator.ephemerals(user=user)
         if f"Timeline of RB-{rid}" in str(e.get("blocks"))), None), timeout=10,
        description=f"the timeline answer to {user}")
    return dict(found)


def _lines(answer: dict[str, Any]) -> tuple[list[str], int]:
    """(entry lines shown, entries the cut note says are left out)."""
    blocks = answer["blocks"]
    shown = [line for b in blocks[1:] if b["type"] == "section"
             for line in b["text"]["text"].split("\n")]
    more = 0
    for b in blocks:
        if b["type"] == "context":
            m = re.search(r"… and (\d+) more, see the attached file", b["elements"][0]["text"])
            more = int(m.group(1)) if m else more
    return shown, more


def test_timeline_of_a_completed_rollback_lists_every_audited_row(
        make_harness: Callable[..., Harness], demo: DemoService, tmp_path: Path) -> None:
    h = make_harness(config_overrides=health_monitored(demo.url, tmp_path))
    rid, msg = _completed_rollback(h)
    audit = _audit_rows(h, rid)
    assert {"requested", "approve", "start", "steps_done", "verified", "stable"} <= {
        r["event"] for r in audit}

    # dave is neither requester nor approver: reading the record is open to anyone.
    h.request(f"timeline RB-{rid}", user="dave")
    answer = _answer(h, "dave", rid)
    files = h.emulator.wait_for(lambda: _timeline_files(h, rid), timeout=10,
                                description="the timeline file")
    assert len(files) == 1
    shared = files[0]["shares"]["public"][h.emulator.channel_id(CHANNEL)]
    assert shared[0]["thread_ts"] == msg["ts"]  # in the rollback's own thread
    markdown = h.emulator.file_content(files[0]["id"]).decode("utf-8")
    assert markdown.startswith(f"# Timeline of RB-{rid}: hotel-voice-bot\n")
    table = _table(markdown)

    # Every row of audit_events, with its time (UTC, to the second), actor and event.
    by_source = {}
    for cells in table:
        if cells[1] in ("transition", "event"):
            by_source[cells[5]] = cells
    for row in audit:
        cells = by_source.get(f"audit #{row['id']}")
        assert cells is not None, f"audit row {row} missing from the timeline file"
        assert cells[0] == f"{row['at'].astimezone(UTC):%Y-%m-%d %H:%M:%S}"
        assert cells[1] == ("transition" if row["to_state"] else "event")
        assert row["event"].replace("_", " ") in cells[2]
        if row["to_state"]:
            assert row["to_state"].replace("_", " ") in cells[2]
        assert cells[3] == ("the bot" if row["actor"] == "bot" else row["actor"])
    assert len(by_source) == len(audit)  # and no audit entry the table does not have

    # The other sources: the step journal, the verification and monitoring checks, the
    # stability windows, the posts and the scheduled jobs.
    kinds = {cells[1] for cells in table}
    assert {"step", "check", "monitor", "notice", "job", "reminder"} <= kinds
    steps = h.bot.store.steps(rid)
    for step in steps:
        assert any(c[1] == "step" and c[5] == f"step {step.seq}" and step.status in c[2]
                   for c in table), f"step {step.seq} ({step.status}) not in the timeline"
    assert any(c[1] == "check" and c[2].startswith("check health") for c in table)
    assert sum(1 for c in table if c[2].startswith("check monitoring check")) == 2
    times = [c[0] for c in table]
    assert times == sorted(times)  # oldest first

    # The message shows the same entries in the same order, within Slack's limits, and
    # says how many more the file holds.
    shown, more = _lines(answer)
    assert len(answer["blocks"]) <= 50
    assert shown and len(shown) + more == len(table)
    for line, cells in zip(shown, table, strict=False):
        assert line.startswith(f"`{cells[0]}`") and f"({cells[5]})" in line
    assert f"timeline-RB-{rid}-" in str(answer["blocks"])

    # The Timeline button on the finished request message does the same.
    assert ids.TIMELINE in action_ids(h.message_now(msg["ts"]))
    h.click(msg, ids.TIMELINE, "alice")
    again = _answer(h, "alice", rid)
    assert _lines(again) == (shown, more)
    h.emulator.wait_for(lambda: len(_timeline_files(h, rid)) == 2, timeout=10,
                        description="a second timeline file")


def test_timeline_refuses_unknown_and_malformed_ids_and_changes_nothing(
        harness: Harness) -> None:
    h = harness
    h.request("hotel-voice-bot --severity P2")
    msg = h.rollback_message()
    assert ids.TIMELINE not in action_ids(msg)  # pending: not finished, no button
    before = (len(h.emulator.files()), _count(h, "audit_events"), _count(h, "rollbacks"))

    h.request("timeline RB-999", user="dave")
    assert "No rollback RB-999." in h.wait_ephemeral("dave", "RB-999")
    h.request("timeline banana", user="dave")
    assert "is not a rollback ID" in h.wait_ephemeral("dave", "banana")
    h.request("timeline", user="dave")
    assert "`timeline` needs an ID." in h.wait_ephemeral("dave", "needs an ID")
    h.request("timeline RB-1 RB-2", user="dave")
    h.wait_ephemeral("dave", "Unexpected `RB-2`")
    h.emulator.wait_idle(0.3, 5)
    assert (len(h.emulator.files()), _count(h, "audit_events"), _count(h, "rollbacks")) == \
        before


def test_help_lists_timeline(harness: Harness) -> None:
    harness.request("help", user="dave")
    assert "/rollback timeline <ID>" in harness.wait_ephemeral("dave", "timeline")


def _count(h: Harness, table: str) -> int:
    with h.bot.store.pool.connection() as conn:
        row = conn.execute(f"SELECT count(*) FROM {table}").fetchone()
    assert row is not None
    return int(row[0])
