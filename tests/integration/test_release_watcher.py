"""The release watcher against a REAL Prometheus scraping the demo service's /metrics.

Time is scaled like the stability tests: one runbook minute is ``UNIT`` seconds, so the
runbook's "5 % sustained for 10 minutes" is a 10-``UNIT`` duration checked every second.
Failures are spread evenly (``break_(even=True)``) so 6 % and 4 % stay on their side of 5 %.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from sandbox.config import error_rate_query, parse_sandbox_config, sandbox_config_dict
from sandbox.demo import DemoService
from sandbox.slack import Call
from sandbox.stack import SandboxStack
from tests.integration.prom_fixtures import PrometheusFactory, PrometheusServer, scraping
from tests.secret_scan import register_secret
from tests.support.demo import demo_fixture
from tests.support.waiting import wait_until

CHANNEL = "inc-hotel-voice-bot"
UNIT = 2.0  # seconds per runbook minute
WINDOW = "5s"
ERROR_RATE = error_rate_query(WINDOW)

pytestmark = pytest.mark.slow


demo = demo_fixture(traffic_rps=50, seed=3)


@pytest.fixture
def prom(prometheus_server: PrometheusFactory, demo: DemoService) -> Iterator[PrometheusServer]:
    server = scraping(prometheus_server, demo, healthy=ERROR_RATE)
    yield server
    server.stop()


def _stack(db: str, demo: DemoService, prom: PrometheusServer) -> SandboxStack:
    data = sandbox_config_dict(demo_url=demo.url, prometheus_url=prom.url,
                               error_rate_window=WINDOW)
    svc = data["services"]["hotel-voice-bot"]
    svc["watcher"] = {"enabled": True, "channel": CHANNEL, "error_rate_threshold": 0.05,
                      "duration_seconds": 10 * UNIT, "interval_seconds": 1,
                      "chart_minutes": 1, "severity": "P1"}
    stack = SandboxStack(config=parse_sandbox_config(data), database_url=db).start()
    register_secret(stack.signing_secret, "the stack's signing secret")
    return stack


def proposals(stack: SandboxStack) -> list[Call]:
    found = []
    for call in stack.emulator.calls("chat.postMessage"):
        meta = call.params.get("metadata")
        meta = json.loads(meta) if isinstance(meta, str) else meta
        if meta and str(meta["event_payload"]["key"]).startswith("watch:hotel-voice-bot:"):
            found.append(call)
    return found


def _outage(demo: DemoService, prom: PrometheusServer, rate: float, units: float) -> None:
    """``rate`` of requests fail for ``units`` runbook minutes, counted from when Prometheus
    first shows the ratio over the threshold (the rate window's lag is not the outage)."""
    demo.break_(error_rate=rate, even=True)
    if rate > 0.05:
        prom.wait_for(ERROR_RATE, lambda v: v is not None and v > 0.05, timeout=30,
                      what="the ratio over 5 %")
    time.sleep(units * UNIT)
    demo.heal()


def test_six_percent_for_eleven_minutes_proposes_once(db: str, demo: DemoService,
                                                      prom: PrometheusServer) -> None:
    stack = _stack(db, demo, prom)
    try:
        _outage(demo, prom, 0.06, 11)
        (proposal,) = wait_until(lambda: proposals(stack), timeout=5, message="the proposal")
        text = proposal.params["text"]
        assert "Release watcher" in text and "5.00%" in text
        blocks = json.dumps(proposal.params.get("blocks"))
        assert "watcher_request_rollback" in blocks and "watcher_snooze" in blocks
        assert "rev " in blocks  # the running revision, read from the platform
        chart = wait_until(lambda: next((f for f in stack.emulator.files()
                                         if f["name"].startswith("watch-")), None),
                           timeout=15, message="the chart")
        assert stack.emulator.file_content(chart["id"]).startswith(b"\x89PNG")
        time.sleep(5 * UNIT)  # still the same episode: no second proposal
        assert len(proposals(stack)) == 1
        value = json.loads(_button(proposal, "watcher_request_rollback")["value"])
        assert value["severity"] == "P1" and "error rate over 5.00%" in value["evidence"]
        # The click opens the ordinary request form, pre-filled; submitting it requests.
        driver, emulator = stack.driver, stack.emulator
        assert driver is not None
        post = next(m for m in emulator.messages(CHANNEL) if "Release watcher" in m["text"])
        driver.click(CHANNEL, post["ts"], "watcher_request_rollback", "alice")
        wait_until(lambda: any("Target revision" in json.dumps(v)
                               for v in emulator.open_views("alice")),
                   timeout=15, message="the filled-in request form")
        driver.submit_view("alice")
        rb = wait_until(lambda: stack.bot.store.active_for_service("hotel-voice-bot"),  # type: ignore[union-attr]
                        timeout=20, message="the request")
        assert rb.severity == "P1" and rb.requester == emulator.user_id("alice")
        assert "Release watcher: error rate over 5.00%" in rb.reason
        assert value["proposal"] in rb.reason
    finally:
        stack.stop()


def test_six_percent_for_eight_minutes_proposes_nothing(db: str, demo: DemoService,
                                                        prom: PrometheusServer) -> None:
    # Eight, not nine: after the heal the ratio stays over 5 % for part of the 5 s rate
    # window plus a scrape, so the watcher sees the breach up to ~1.5 runbook minutes
    # longer than the outage; nine minutes sat within that lag of the ten-minute rule and
    # proposed under load (CI, 2026-11-30).
    stack = _stack(db, demo, prom)
    try:
        _outage(demo, prom, 0.06, 8)
        time.sleep(12 * UNIT)  # past any window that could still end in a breach
        assert proposals(stack) == []
    finally:
        stack.stop()


def test_four_percent_for_an_hour_proposes_nothing(db: str, demo: DemoService,
                                                   prom: PrometheusServer) -> None:
    stack = _stack(db, demo, prom)
    try:
        demo.break_(error_rate=0.04, even=True)
        prom.wait_for(ERROR_RATE, lambda v: v is not None and 0.03 < v <= 0.05, timeout=30,
                      what="the ratio near 4 %")
        time.sleep(60 * UNIT)
        assert proposals(stack) == []
    finally:
        demo.heal()
        stack.stop()


def _button(call: Call, action_id: str) -> dict[str, Any]:
    for block in call.params.get("blocks") or []:
        for element in block.get("elements") or []:
            if element.get("action_id") == action_id:
                return dict(element)
    raise AssertionError(f"no {action_id} button")
