"""The status page from declaration to resolution, on the wire: a P1 request opens an
incident (investigating), approval identifies it, the verified rollback is monitored, the
end of the stability window resolves it, one timeline entry each on one incident, the
component following. Timers run on the injected clock through ``tick()``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from handlers import ids
from sandbox.demo import DemoService
from sandbox.statuspage import StatuspageEmulator
from tests.e2e.conftest import Harness, action_ids
from tests.secret_scan import register_secret
from tests.support import messages
from tests.support.waiting import wait_until

KEY = "sp-key-77c1-do-not-post"


@pytest.fixture
def page() -> Iterator[StatuspageEmulator]:
    emulator = StatuspageEmulator(api_key=KEY).start()
    yield emulator
    emulator.stop()


@pytest.fixture
def make(make_harness: Callable[..., Harness], demo: DemoService, page: StatuspageEmulator,
         monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Callable[..., Harness]:
    monkeypatch.setenv("STATUSPAGE_KEY", KEY)
    register_secret(KEY, "the status page API key")

    def build(**statuspage: Any) -> Harness:
        def change(data: dict[str, Any]) -> None:
            svc = data["services"]["hotel-voice-bot"]
            svc["health"] = {"url": f"{demo.url}/api/health", "timeout_seconds": 2,
                             "samples": 3}
            svc["monitoring"] = {"duration_seconds": 600, "interval_seconds": 300,
                                 "consecutive_health_failures": 2}
            svc["stakeholders"]["statuspage"] = {
                "api_url": page.api_url, "page_id": "page1", "api_key_env": "STATUSPAGE_KEY",
                "component_id": "cmp1", **statuspage}
            data["aftercare"] = {"postmortem_dir": str(tmp_path / "pm")}
        h = make_harness(config_overrides=change)
        page.clock = h.clock  # timeline entries carry the injected time
        return h
    return build


def _timeline(page: StatuspageEmulator) -> list[tuple[str, str | None]]:
    """(incident status, the component's new status or None) per update, oldest first."""
    (incident,) = page.incidents.values()
    return [(u["status"], next((c["new_status"] for c in u["affected_components"]), None))
            for u in incident["incident_updates"]]


def _tick_until(h: Harness, done: Callable[[], bool], what: str) -> None:
    """Run due jobs until ``done`` (the sync job is scheduled just after a transition that
    another thread commits, so one tick can come too early)."""
    wait_until(lambda: (h.tick(), done())[1], 10, 0.05, what)


def test_p1_incident_follows_the_rollback_to_resolved(
        make: Callable[..., Harness], page: StatuspageEmulator) -> None:
    h = make()
    h.request('hotel-voice-bot --severity P1 --reason "5xx after v1.3.0"')
    msg = h.rollback_message()
    rid = messages.request_ref(msg)
    _tick_until(h, lambda: bool(page.incidents), "the incident to open at the request")
    (incident,) = page.incidents.values()
    assert incident["name"] == f"Hotel Voice Bot: problems after a release [RB-{rid}]"
    assert _timeline(page) == [("investigating", "partial_outage")]  # a P1: partial outage
    assert incident["incident_updates"][0]["created_at"] == "2026-11-29T03:00:00+00:00"

    h.click(msg, ids.ASSIGN_IC, "carol")
    h.emulator.wait_for(lambda: ids.ASSIGN_IC not in action_ids(h.message_now(msg["ts"])))
    h.clock.advance(minutes=2)
    h.click(msg, ids.APPROVE, "bob")
    h.wait_state(rid, "monitoring")
    _tick_until(h, lambda: len(_timeline(page)) == 3, "identified and monitoring")
    assert _timeline(page) == [("investigating", "partial_outage"),
                               ("identified", "partial_outage"),
                               ("monitoring", "degraded_performance")]
    assert page.components == {"cmp1": "degraded_performance"}

    for _ in range(2):  # the two checks of the 10-minute window
        h.clock.advance(minutes=5)
        h.tick()
    h.wait_state(rid, "completed")
    _tick_until(h, lambda: len(_timeline(page)) == 4, "the resolved update")
    assert _timeline(page) == [("investigating", "partial_outage"),
                               ("identified", "partial_outage"),
                               ("monitoring", "degraded_performance"),
                               ("resolved", "operational")]
    (incident,) = page.incidents.values()  # one incident all along
    assert incident["status"] == "resolved"
    assert incident["resolved_at"] == "2026-11-29T03:12:00+00:00"
    assert "has run normally for 10 min since the rollback" in (
        incident["incident_updates"][-1]["body"])
    assert page.components == {"cmp1": "operational"}
    audited = [e.detail["status"] for e in h.bot.store.audit_events(rid)
               if e.event == "statuspage_updated"]
    assert audited == ["investigating", "identified", "monitoring", "resolved"]
    assert all(r["authorized"] for r in page.requests)
    assert KEY not in str(page.requests)  # only ever in the header
    for _ in range(3):
        h.tick()
    assert len(_timeline(page)) == 4  # nothing is sent twice
    assert sum(1 for r in page.requests if r["method"] in ("POST", "PATCH")) == 4


def test_p3_opens_no_incident(make: Callable[..., Harness],
                              page: StatuspageEmulator) -> None:
    h = make()
    h.request("hotel-voice-bot --severity P3")
    msg = h.rollback_message()
    rid = messages.request_ref(msg)
    h.click(msg, ids.APPROVE_OVERRIDE, "bob")
    h.wait_state(rid, "monitoring")
    for _ in range(3):
        h.clock.advance(minutes=5)
        h.tick()
    h.wait_state(rid, "completed")
    h.tick()
    assert page.requests == []
    assert not h.bot.service.jobs.pending(rollback_id=rid, kinds=["statuspage_sync"])


def test_rejected_request_leaves_the_incident_open_with_an_update(
        make: Callable[..., Harness], page: StatuspageEmulator) -> None:
    h = make(open_at=["P0", "P1", "P2"])
    h.request('hotel-voice-bot --severity P2 --reason "errors up"')
    msg = h.rollback_message()
    rid = messages.request_ref(msg)
    h.click(msg, ids.REJECT, "bob")
    h.emulator.wait_for(lambda: h.emulator.open_views("bob"))
    h.driver.submit_view("bob", {"reason": "hotfix is faster"})
    h.wait_state(rid, "rejected")
    _tick_until(h, lambda: len(page.incidents) == 1 and len(_timeline(page)) == 2,
                "the not-carried-out update")
    # A declined rollback does not end the incident: still investigating, still an outage.
    assert _timeline(page) == [("investigating", "partial_outage"), ("investigating", None)]
    (incident,) = page.incidents.values()
    assert incident["status"] == "investigating" and incident["resolved_at"] is None
    assert "was not carried out (declined)" in incident["incident_updates"][-1]["body"]
    assert "hotfix is faster" not in str(incident)  # the team's reasoning stays internal
    assert page.components == {"cmp1": "partial_outage"}


def test_rate_limit_waits_for_retry_after_then_sends(
        make: Callable[..., Harness], page: StatuspageEmulator) -> None:
    h = make()
    page.rate_limit_next(1, retry_after=90)
    h.request('hotel-voice-bot --severity P1 --reason "5xx after v1.3.0"')
    msg = h.rollback_message()
    rid = messages.request_ref(msg)
    wait_until(lambda: h.bot.service.jobs.pending(rollback_id=rid, kinds=["statuspage_sync"]),
               10, 0.02, "the sync job")
    h.tick()
    assert [r["status"] for r in page.requests] == [429]
    assert page.incidents == {}
    h.clock.advance(seconds=89)
    h.tick()
    assert len(page.requests) == 1  # not before the page said
    h.clock.advance(seconds=1)
    h.tick()
    assert [r["status"] for r in page.requests] == [429, 201]
    assert _timeline(page) == [("investigating", "partial_outage")]
    assert not any("Status page not updated" in t for t in h.thread_texts(msg))


def test_refused_update_is_audited_and_said_in_the_thread(
        make: Callable[..., Harness], page: StatuspageEmulator) -> None:
    h = make()
    h.request('hotel-voice-bot --severity P1 --reason "5xx after v1.3.0"')
    msg = h.rollback_message()
    rid = messages.request_ref(msg)
    _tick_until(h, lambda: bool(page.incidents), "the incident")
    page.incidents.clear()  # someone deleted it on the page: the next update gets a 404
    h.click(msg, ids.ASSIGN_IC, "carol")
    h.emulator.wait_for(lambda: ids.ASSIGN_IC not in action_ids(h.message_now(msg["ts"])))
    h.click(msg, ids.APPROVE, "bob")
    h.wait_state(rid, "monitoring")
    _tick_until(h, lambda: any(e.event == "statuspage_update_failed"
                               for e in h.bot.store.audit_events(rid)), "the refusal audited")
    failed = next(e for e in h.bot.store.audit_events(rid)
                  if e.event == "statuspage_update_failed")
    assert failed.detail["code"] == 404 and failed.detail["status"] == "identified"
    h.emulator.wait_for(lambda: any("Status page not updated (identified)" in t
                                    for t in h.thread_texts(msg)), timeout=10)
    assert h.bot.store.get(rid).state.value in ("monitoring", "completed")  # never held
    assert KEY not in str(h.thread_texts(msg))


def test_p1_started_40_minutes_before_the_request_counts_downtime_from_the_start(
        make: Callable[..., Harness], page: StatuspageEmulator) -> None:
    """The issue's whole record in one run: a P1 whose incident began 40 minutes before the
    request gets a stakeholder notice whose downtime counts from that start, and one status
    page incident with four timeline updates ending "resolved"."""
    h = make()
    h.request('hotel-voice-bot --severity P1 --started 40m --reason "5xx after v1.3.0"')
    msg = h.rollback_message()
    rid = messages.request_ref(msg)
    h.click(msg, ids.ASSIGN_IC, "carol")
    h.emulator.wait_for(lambda: ids.ASSIGN_IC not in action_ids(h.message_now(msg["ts"])))
    h.clock.advance(minutes=2)  # approved, executed and verified at 03:02
    h.click(msg, ids.APPROVE, "bob")
    h.wait_state(rid, "monitoring")
    notice = wait_until(
        lambda: (h.tick(), next((str(m["text"]) for m in h.emulator.messages(
            "hotel-voice-bot-stakeholders") if "Total downtime" in str(m.get("text"))),
            None))[1], 10, 0.05, "the completion notice")
    assert "• Service restored at: 2026-11-29 03:02:00 UTC" in notice, notice
    assert ("• Total downtime: 42 min 00 s (since the incident start at 2026-11-29 02:20:00 "
            "UTC, given by the requester)") in notice, notice

    for _ in range(2):  # the two checks of the 10-minute window
        h.clock.advance(minutes=5)
        h.tick()
    h.wait_state(rid, "completed")
    _tick_until(h, lambda: len(_timeline(page)) == 4, "the resolved update")
    assert [status for status, _ in _timeline(page)] == [
        "investigating", "identified", "monitoring", "resolved"]
    (incident,) = page.incidents.values()
    assert incident["status"] == "resolved" and page.components == {"cmp1": "operational"}


def test_the_services_own_update_texts_reach_the_page(
        make: Callable[..., Harness], page: StatuspageEmulator) -> None:
    """`statuspage.templates` replaces a kind's text; the kinds left out keep the default."""
    h = make(templates={"requested": "{{ service }}: customers may see failed calls. "
                                     "We are on it."})
    h.request('hotel-voice-bot --severity P1 --reason "5xx after v1.3.0"')
    _tick_until(h, lambda: bool(page.incidents), "the incident to open at the request")
    (incident,) = page.incidents.values()
    assert [u["body"] for u in incident["incident_updates"]] == [
        "Hotel Voice Bot: customers may see failed calls. We are on it."]
