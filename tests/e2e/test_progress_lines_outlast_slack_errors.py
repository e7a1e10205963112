"""A thread line is not given up while Slack's refusal is passing (issue 16 review).

The deliverer posts a rollback's lines oldest first and stops at the first failure. Slack
answering ``internal_error`` (or ``ratelimited`` past the SDK's one retry) more often than
the deliverer's attempt budget must not lose the line: it may be the one that carries a
manual scale-up command. Only answers no retry can change (``channel_not_found``,
``is_archived``, ...) give a line up.
"""

from __future__ import annotations

from handlers import ids
from tests.e2e.conftest import Harness
from tests.support.slack_outage import requested_then_slack_refuses

REQUEST = "hotel-voice-bot --severity P0 --reason slack-errors"


def test_lines_survive_more_passing_slack_errors_than_the_attempt_budget(
        harness: Harness) -> None:
    h = harness
    # More refusals than LINE_MAX_ATTEMPTS (8): every thread post fails for a while.
    rid, msg = requested_then_slack_refuses(h, REQUEST, refusals=12)
    h.click(msg, ids.APPROVE, "bob")
    h.wait_state(rid, "monitoring", "completed", timeout=40)
    h.emulator.wait_for(
        lambda: any(f"Executing RB-{rid}:" in x for x in h.thread_texts(msg)),
        40, description="the executor's first line after Slack recovered")
    h.emulator.wait_idle()
    started = [t for t in h.thread_texts(msg) if f"Executing RB-{rid}:" in t]
    assert len(started) == 1, started  # posted once: not given up, not doubled
    assert not any(row[0] == "failed" for row in _line_statuses(h, rid))


def _line_statuses(h: Harness, rid: int) -> list[tuple[str, str]]:
    with h.bot.store.pool.connection() as conn:
        return [(str(r[0]), str(r[1])) for r in conn.execute(
            "SELECT status, key FROM outbox WHERE rollback_id = %s AND line IS NOT NULL",
            (rid,))]
