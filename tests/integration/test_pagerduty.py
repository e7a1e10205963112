"""The PagerDuty client against the Events API v2 emulator, over real HTTP: what PagerDuty
accepts and refuses (400 "invalid event", never retried), 429 and 5xx retried with backoff,
alerts kept by dedup key. The emulator's rules come from PagerDuty's published description
(``sandbox/pagerduty/models.py`` cites it)."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime

import httpx
import pytest

from bot.domain.config import PagerDutyConfig
from bot.integrations.pagerduty import (
    Alert,
    PagerDutyClient,
    PagerDutyError,
    PagerDutyRejected,
    dedup_key,
)
from sandbox.pagerduty import PagerDutyEmulator
from tests.secret_scan import register_secret

ROUTING_KEY = "R0UT1NGKEY0F32CHARACTERS00000001"
assert len(ROUTING_KEY) == 32


@pytest.fixture
def pd(monkeypatch: pytest.MonkeyPatch) -> Iterator[PagerDutyEmulator]:
    monkeypatch.setenv("TEST_PD_ROUTING_KEY", ROUTING_KEY)
    register_secret(ROUTING_KEY, "the PagerDuty routing key of the integration test")
    emulator = PagerDutyEmulator().start()
    yield emulator
    emulator.stop()


def _client(pd: PagerDutyEmulator, sleeps: list[float] | None = None,
            **cfg: object) -> PagerDutyClient:
    config = PagerDutyConfig(routing_key_env="TEST_PD_ROUTING_KEY", events_url=pd.events_url,
                             **cfg)  # type: ignore[arg-type]
    return PagerDutyClient(config, sleep=(sleeps.append if sleeps is not None else
                                          lambda _s: None))


def _alert(summary: str = "RB-7 needs a decision") -> Alert:
    return Alert(summary=summary, source="rollback-bot", severity="critical",
                 timestamp=datetime(2026, 11, 29, 3, 15, tzinfo=UTC), component="hotel-voice-bot",
                 group="production", event_class="rollback escalation",
                 custom_details={"rollback": "RB-7"}, links=(("https://example.com/rb/7", "RB-7"),))


def _raw(pd: PagerDutyEmulator, event: object) -> tuple[int, dict[str, object]]:
    resp = httpx.post(pd.events_url, json=event)
    return resp.status_code, resp.json()


def test_trigger_acknowledge_resolve_follow_one_alert(pd: PagerDutyEmulator) -> None:
    key = dedup_key("RB-7")
    with _client(pd) as client:
        accepted = client.trigger(key, _alert())
        assert (accepted.status, accepted.message, accepted.dedup_key) == (
            "success", "Event processed", "rollback-bot/RB-7")
        client.trigger(key, _alert("again"))  # joins the open alert
        [alert] = pd.alerts()
        assert (alert.status, alert.triggers, alert.summary) == ("triggered", 2,
                                                                  "RB-7 needs a decision")
        assert alert.payload["class"] == "rollback escalation"
        assert alert.payload["timestamp"].startswith("2026-11-29T03:15")
        assert alert.links == [{"href": "https://example.com/rb/7", "text": "RB-7"}]
        client.acknowledge(key)
        assert pd.alerts()[0].status == "acknowledged"
        client.resolve(key)
        assert pd.alerts()[0].status == "resolved"
        client.trigger(key, _alert("a new problem"))  # after a resolve: a new alert
    assert [a.status for a in pd.alerts()] == ["resolved", "triggered"]


@pytest.mark.parametrize(("event", "error"), [
    ({"event_action": "trigger", "payload": {"summary": "s", "source": "x",
                                             "severity": "critical"}}, "'routing_key'"),
    ({"routing_key": "short", "event_action": "trigger",
      "payload": {"summary": "s", "source": "x", "severity": "critical"}}, "32 characters"),
    ({"routing_key": ROUTING_KEY, "event_action": "page",
      "payload": {"summary": "s", "source": "x", "severity": "critical"}}, "'event_action'"),
    ({"routing_key": ROUTING_KEY, "event_action": "trigger",
      "payload": {"summary": "s" * 1025, "source": "x", "severity": "critical"}},
     "longer than 1024"),
    ({"routing_key": ROUTING_KEY, "event_action": "trigger",
      "payload": {"summary": "s", "source": "x", "severity": "fatal"}}, "'payload.severity'"),
    ({"routing_key": ROUTING_KEY, "event_action": "trigger",
      "payload": {"summary": "s", "severity": "info"}}, "'payload.source'"),
    ({"routing_key": ROUTING_KEY, "event_action": "resolve"}, "'dedup_key' is required"),
    ({"routing_key": ROUTING_KEY, "event_action": "acknowledge"}, "'dedup_key' is required"),
])
def test_the_emulator_refuses_invalid_events_as_pagerduty_does(
        pd: PagerDutyEmulator, event: dict[str, object], error: str) -> None:
    status, body = _raw(pd, event)
    assert status == 400
    assert body["status"] == "invalid event" and body["message"] == "Event object is invalid"
    assert any(error in str(e) for e in body["errors"]), body  # type: ignore[attr-defined]
    assert pd.alerts() == []


def test_a_follow_up_for_an_unknown_key_is_accepted_and_dropped(pd: PagerDutyEmulator) -> None:
    status, body = _raw(pd, {"routing_key": ROUTING_KEY, "event_action": "resolve",
                             "dedup_key": "nothing-open"})
    assert (status, body["dedup_key"]) == (202, "nothing-open")
    assert pd.alerts() == []


def test_a_rejected_event_is_not_retried_and_says_why(pd: PagerDutyEmulator) -> None:
    sleeps: list[float] = []
    with _client(pd, sleeps) as client, pytest.raises(PagerDutyRejected) as info:
        client.trigger("k", Alert(summary="s", source="x", severity="fatal"))
    assert info.value.status_code == 400
    assert "'payload.severity' is invalid" in str(info.value)
    assert ROUTING_KEY not in str(info.value)
    assert sleeps == [] and len(pd.received()) == 1


def test_a_long_summary_is_shortened_to_what_pagerduty_accepts(pd: PagerDutyEmulator) -> None:
    with _client(pd) as client:
        client.trigger("k", _alert("x" * 5000))
    assert len(pd.alerts()[0].summary) == 1024


def test_429_and_5xx_are_retried_with_backoff(pd: PagerDutyEmulator) -> None:
    sleeps: list[float] = []
    pd.fail_next(429, 503)
    with _client(pd, sleeps, max_attempts=3) as client:
        client.trigger(dedup_key("RB-8"), _alert())
    assert [r.status for r in pd.received()] == [429, 503, 202]
    assert sleeps == [1.0, 2.0]  # exponential backoff between the attempts
    assert len(pd.alerts()) == 1


def test_the_retries_end_in_a_clear_error(pd: PagerDutyEmulator) -> None:
    sleeps: list[float] = []
    pd.fail_next(429, 429, 429)
    with _client(pd, sleeps, max_attempts=3) as client, pytest.raises(PagerDutyError) as info:
        client.trigger("k", _alert())
    assert "429" in str(info.value) and "gave up after 3 attempts" in str(info.value)
    assert not isinstance(info.value, PagerDutyRejected)
    assert len(sleeps) == 2 and pd.alerts() == []


def test_an_unset_routing_key_sends_nothing(pd: PagerDutyEmulator,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TEST_PD_ROUTING_KEY")
    with _client(pd) as client, pytest.raises(PagerDutyError, match="is not set"):
        client.trigger("k", _alert())
    assert pd.received() == []


def test_the_inspection_api_lists_alerts(pd: PagerDutyEmulator) -> None:
    with _client(pd) as client:
        client.trigger("rollback-bot/RB-9", _alert())
    with urllib.request.urlopen(f"{pd.base_url}/_emulator/alerts") as resp:
        alerts = json.load(resp)
    assert [(a["dedup_key"], a["status"]) for a in alerts] == [("rollback-bot/RB-9",
                                                                "triggered")]
