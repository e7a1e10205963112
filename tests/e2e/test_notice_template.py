"""A team's own stakeholder notice, end to end: the catalog's ``notice_template`` is what the
stakeholder channel receives when a rollback completes through Slack (the emulator, signed
requests, the real bot on real PostgreSQL), filled with this rollback's record."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tests.e2e.conftest import Harness
from tests.support.waiting import wait_until

STAKEHOLDERS = "hotel-voice-bot-stakeholders"
TEMPLATE = ("*{{ service }} is back on {{ version }}* ({{ rollback }})\n"
            "Down for {{ total_downtime }} since the {{ counted_from }}.\n"
            "{% for step in next_steps %}> {{ step }}\n{% endfor %}")


def _templated(data: dict[str, Any]) -> None:
    data["services"]["hotel-voice-bot"]["stakeholders"]["notice_template"] = TEMPLATE


def _notice(h: Harness) -> dict[str, Any]:
    # The notice is a scheduled job: run due jobs (the harness's clock does not move) until
    # it has been posted.
    found: dict[str, Any] = wait_until(
        lambda: h.tick() >= 0 and next((m for m in h.emulator.messages(STAKEHOLDERS)
                                        if "Rollback Completed" in m.get("text", "")), None),
        timeout=20, message="the completion notice in the stakeholder channel")
    return found


def test_the_catalogs_notice_template_is_what_stakeholders_read(
        make_harness: Callable[..., Harness]) -> None:
    h = make_harness(config_overrides=_templated)
    rid, _msg = h.request_and_approve_p0()
    h.wait_state(rid, "completed")
    text = str(_notice(h)["text"])
    rb = h.bot.store.get(rid)
    assert f"*hotel-voice-bot is back on {rb.target_revision.label()}* (RB-{rid})" in text, text
    assert "Down for 0 s since the rollback request." in text, text
    assert "> Root cause analysis and fix development" in text, text
    assert "*Rollback details*" not in text  # the runbook's default was replaced


def test_without_a_template_the_runbooks_wording_is_sent(
        make_harness: Callable[..., Harness]) -> None:
    h = make_harness()
    rid, _msg = h.request_and_approve_p0()
    h.wait_state(rid, "completed")
    text = str(_notice(h)["text"])
    for line in ("*Rollback details*", "Version rolled back to:", "Service restored at:",
                 "Total downtime:", "*Current status:*", "*Next steps:*",
                 "Root cause analysis and fix development"):
        assert line in text, (line, text)
