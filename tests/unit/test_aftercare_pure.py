"""Pure parts of the aftercare: notice blocks, the completion template, regression rules
and the post-mortem file name (the stability chart: ``test_charts.py``)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from slack_sdk.models.blocks import Block

from bot.aftercare import monitoring
from bot.aftercare.notifications import completion_facts, display_name
from bot.aftercare.postmortem import filename
from bot.domain.config import RollbackConfig
from bot.domain.lifecycle import State
from bot.domain.messages import Verification
from bot.domain.models import Rollback
from bot.domain.time_words import duration, span
from bot.persistence.aftercare_store import Facts, Monitor, Sample
from handlers import ids
from handlers.views_aftercare import carries_key, notice_blocks
from handlers.wording import card, completion_text
from platforms.base import Revision, Target
from sandbox.config import parse_sandbox_config, sandbox_config_dict

T0 = datetime(2026, 11, 29, 3, 0, tzinfo=UTC)


def _rb(**kw: Any) -> Rollback:
    base: dict[str, Any] = dict(
        id=12, service="hotel-voice-bot", platform="fake", severity="P1",
        policy_mode="hotfix_window", scope=["app"], reason="", state=State.MONITORING,
        requester="U1", channel_id="C1", channel_name="inc", message_ts="1.1", thread_ts="1.1",
        current_revision=Revision("r3", 3, ("app:v1.3.0",)),
        target_revision=Revision("r2", 2, ("app:v1.2.0",)), target=Target("fake", "p", "hvb"),
        checklist={}, assessment={}, approver="U2", break_glass=False, incident_commander="U3",
        incident_started_at=None, created_at=T0, updated_at=T0, expires_at=None,
        approved_at=None, finished_at=None, last_error=None)
    base.update(kw)
    return Rollback(**base)


def _config(**monitoring_cfg: Any) -> RollbackConfig:
    return parse_sandbox_config(sandbox_config_dict(
        demo_url="http://demo", prometheus_url="http://prom",
        monitoring={"duration_seconds": 7200, "interval_seconds": 300, **monitoring_cfg}))


def test_notice_blocks_are_valid_block_kit_with_mapped_action_ids() -> None:
    failed = Verification(12, "RB-12", "hvb", 1, "failed", "0 passed, 1 failed",
                          "❌ health\n" * 400, "health (down)", mention="U3", closed=None)
    blocks = notice_blocks(card(failed), key="verify:12:1")
    for block in blocks:
        assert Block.parse(block) is not None
        assert len(str(block.get("text", {}).get("text", ""))) <= 3000
    actions = blocks[-1]["elements"]
    assert [a["action_id"] for a in actions] == [ids.RETRY, ids.ALERT_RESOLVE]
    assert blocks[0]["text"]["text"].startswith("<@U3> *:x: Verification of RB-12 failed")
    message = {"metadata": {"event_type": "rollback_bot_notice",
                            "event_payload": {"key": "verify:12:1"}}}
    assert carries_key(message, "verify:12:1") and not carries_key(message, "verify:12:2")
    assert carries_key({"files": [{"name": "a.png"}]}, "a.png")


def test_completion_template_with_real_values() -> None:
    config = _config()
    svc = config.services["hotel-voice-bot"]
    facts = Facts(12, T0 + timedelta(minutes=9), T0 + timedelta(minutes=11, seconds=30),
                  None, False)
    text = completion_text(completion_facts(config, svc, _rb(), facts, checks_passed=4))
    assert "• Version rolled back to: rev 2 (app:v1.2.0) (from rev 3 (app:v1.3.0))" in text
    assert "• Total downtime: 11 min 30 s (since the rollback request at " \
           "2026-11-29 03:00:00 UTC)" in text
    assert ("Stability monitoring for 2 h (until 05:11 UTC): error rate, health and latency "
            "every 5 min") in text
    assert "Post-mortem within 48 h (by 2026-12-01 03:09:00 UTC)" in text
    p3 = completion_text(completion_facts(config, svc, _rb(severity="P3"), facts,
                                          checks_passed=4))
    assert "Post-mortem" not in p3
    assert display_name("hotel-voice-bot") == "Hotel Voice Bot"


def test_regression_rules() -> None:
    svc = _config(consecutive_health_failures=3).services["hotel-voice-bot"]

    def s(seq: int, rate: float | None, ok: bool | None) -> Sample:
        return Sample(seq, T0, rate, ok, "HTTP 503" if ok is False else "HTTP 200", 10.0)

    assert monitoring.regression(svc, [s(1, 0.01, True)]) is None
    assert monitoring.regression(svc, [s(1, None, True)]) is None  # no data is not a spike
    spike = monitoring.regression(svc, [s(1, 0.01, True), s(2, 0.2, True)])
    assert spike is not None and spike.kind == "error_rate" and "20.0%" in spike.reason
    two = [s(1, 0.0, False), s(2, 0.0, False)]
    assert monitoring.regression(svc, two) is None
    three = monitoring.regression(svc, [*two, s(3, 0.0, False)])
    assert three is not None and three.kind == "health"
    assert monitoring.regression(svc, [*two, s(3, 0.0, True)]) is None


def test_monitor_tick_count_and_names() -> None:
    m = Monitor(1, 12, "k", T0, T0 + timedelta(hours=2), 300, "running", None, {})
    assert m.total_ticks == 24
    assert Monitor(1, 12, "k", T0, T0 + timedelta(seconds=10), 3, "running", None,
                   {}).total_ticks == 4
    assert filename(_rb()) == "2026-11-29-hotel-voice-bot-rb-12.md"
    assert filename(_rb(incident_started_at=T0 - timedelta(hours=5))) == \
        "2026-11-28-hotel-voice-bot-rb-12.md"
    assert duration(timedelta(seconds=42)) == "42 s"
    assert duration(timedelta(hours=1, minutes=5)) == "1 h 05 min"
    assert [span(s) for s in (7200, 5400, 300, 90)] == ["2 h", "1 h 30 min", "5 min", "90 s"]
