"""``/rollback status`` with more active rollbacks than one message holds: the newest
twenty are listed and the rest counted, read with a LIMIT (a thousand active rollbacks
used to be read and decoded whole on every ``status``, then cut blindly at Slack's 3,000
characters). Through the Slack emulator, over signed HTTP; the rollbacks are seeded in
PostgreSQL (what is measured is the read and the reply, not the requests)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from bot.domain.lifecycle import Event
from bot.domain.models import PlannedStep
from bot.usecases.service import STATUS_LIST_LIMIT
from platforms.base import Revision, Target
from tests.e2e.conftest import Harness

NOW = datetime(2026, 11, 30, 3, 0, tzinfo=UTC)
SLACK_SECTION_LIMIT = 3000  # Slack's limit on a section's text (Block Kit reference)


def _seed(h: Harness, count: int) -> list[int]:
    store = h.bot.store
    ids = []
    for i in range(count):
        rb = store.create_rollback(
            service=f"seeded-{i:03d}", platform="fake", severity="P1",
            policy_mode="immediate", scope=["app"], reason="seeded", requester="U1",
            channel_id="C1", channel_name="inc-x",
            current_revision=Revision("rs-3", 3, current=True),
            target_revision=Revision("rs-2", 2), target=Target("fake", "default", "app"),
            steps=[PlannedStep("app_rollback", "roll")], checklist={}, assessment={},
            expires_at=NOW + timedelta(hours=1), created_at=NOW)
        if i % 2:  # active in other states too
            store.transition(rb.id, Event.APPROVE, actor="U2")
        ids.append(rb.id)
    return ids


def _answer(h: Harness, text: str) -> str:
    reply = h.request(text)
    assert reply.status == 200 and reply.response_url, reply.body
    token = reply.response_url.rstrip("/").rsplit("/", 1)[-1]
    answers = h.emulator.wait_for(
        lambda: [c.params for c in h.emulator.calls("response_url")
                 if c.params.get("token") == token], timeout=10, description="the status")
    assert len(answers) == 1
    blocks = answers[0]["blocks"]
    assert isinstance(blocks, list) and len(blocks) == 1
    body = str(blocks[0]["text"]["text"])
    assert len(body) <= SLACK_SECTION_LIMIT, len(body)
    return body


def test_status_lists_the_newest_active_rollbacks_and_counts_the_rest(
        harness: Harness) -> None:
    ids = _seed(harness, STATUS_LIST_LIMIT + 7)
    body = _answer(harness, "status")
    listed = [int(n) for n in re.findall(r"\*RB-(\d+)\*", body)]
    assert listed == ids[-len(listed):]  # the newest, oldest of them first
    assert 0 < len(listed) <= STATUS_LIST_LIMIT
    assert f"… and {len(ids) - len(listed)} more" in body, body


def test_status_of_a_few_lists_them_all_without_a_count(harness: Harness) -> None:
    ids = _seed(harness, 3)
    body = _answer(harness, "status")
    assert [int(n) for n in re.findall(r"\*RB-(\d+)\*", body)] == ids
    assert "more" not in body
