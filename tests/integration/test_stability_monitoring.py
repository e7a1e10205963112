"""Stability monitoring against a REAL Prometheus scraping the demo service's /metrics:
injected 5xx errors alert within two intervals; a healthy window ends with the report.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from bot.persistence.aftercare_store import AftercareStore
from handlers import ids
from sandbox.config import error_rate_query, parse_sandbox_config, sandbox_config_dict
from sandbox.demo import DemoService
from sandbox.slack import Call
from sandbox.stack import SandboxStack
from tests.integration.prom_fixtures import PrometheusFactory, PrometheusServer, scraping
from tests.secret_scan import register_secret
from tests.support.demo import demo_fixture
from tests.support.waiting import wait_until

CHANNEL = "inc-hotel-voice-bot"
WINDOW = "10s"
ERROR_RATE = error_rate_query(WINDOW)

pytestmark = pytest.mark.slow


demo = demo_fixture(traffic_rps=20, seed=3)


@pytest.fixture
def prom(prometheus_server: PrometheusFactory, demo: DemoService) -> Iterator[PrometheusServer]:
    server = scraping(prometheus_server, demo, healthy=ERROR_RATE)
    yield server
    server.stop()


def _stack(db: str, demo: DemoService, prom: PrometheusServer, **monitoring: Any
           ) -> SandboxStack:
    data = sandbox_config_dict(demo_url=demo.url, prometheus_url=prom.url,
                               monitoring=monitoring, error_rate_window=WINDOW)
    stack = SandboxStack(config=parse_sandbox_config(data), database_url=db).start()
    register_secret(stack.signing_secret, "the stack's signing secret")
    return stack


def _rollback(stack: SandboxStack) -> int:
    """alice requests a P1, carol takes incident command, bob approves."""
    driver, emulator = stack.driver, stack.emulator
    assert driver is not None
    driver.slash_command("/rollback", "hotel-voice-bot --severity P1", user="alice",
                         channel=CHANNEL)

    def request_message() -> dict[str, Any] | None:
        return next((m for m in emulator.messages(CHANNEL)
                     if "*Assessment*" in str(m.get("blocks"))), None)

    msg = emulator.wait_for(request_message, timeout=15)
    driver.click(CHANNEL, msg["ts"], ids.ASSIGN_IC, "carol")
    emulator.wait_for(lambda: "rollback_assign_ic" not in str(emulator.message(CHANNEL,
                                                                               msg["ts"])))
    driver.click(CHANNEL, msg["ts"], ids.APPROVE, "bob")
    return int(msg["text"].split()[0].removeprefix("RB-"))


def _keyed_posts(stack: SandboxStack) -> dict[str, list[Call]]:
    posts: dict[str, list[Call]] = {}
    for call in stack.emulator.calls("chat.postMessage"):
        meta = call.params.get("metadata")
        meta = json.loads(meta) if isinstance(meta, str) else meta
        if meta:
            posts.setdefault(meta["event_payload"]["key"], []).append(call)
    return posts


def test_injected_errors_alert_within_two_intervals(db: str, demo: DemoService,
                                                    prom: PrometheusServer) -> None:
    interval = 3.0
    stack = _stack(db, demo, prom, duration_seconds=120, interval_seconds=interval,
                   consecutive_health_failures=10)  # so the error-rate rule is what fires
    try:
        rid = _rollback(stack)
        store = AftercareStore(stack.bot.store.pool)  # type: ignore[union-attr]
        monitor = wait_until(lambda: store.monitors(rid), timeout=30, message="the monitor")[0]
        first = f"monitor:{monitor.id}:tick:1"
        wait_until(lambda: first in _keyed_posts(stack), timeout=3 * interval,
                   message="the first healthy check")
        broke_at = time.time()
        demo.break_()  # every API request answers 503 from now on
        alert_key = f"monitor:{monitor.id}:alert"
        alert = wait_until(lambda: _keyed_posts(stack).get(alert_key), timeout=4 * interval,
                           message="the regression alert")[0]
        latency = (alert.timestamp - broke_at) / interval
        print(f"alert {alert.timestamp - broke_at:.1f}s = {latency:.2f} intervals after break")
        assert latency <= 2.0
        assert "error rate" in alert.params["text"] and "threshold" in alert.params["text"]
        assert alert.params["text"].startswith(f"<@{stack.emulator.user_id('carol')}>")
        rb = wait_until(lambda: (r := stack.bot.store.get(rid)).state.value == "unstable" and r,  # type: ignore[union-attr]
                        timeout=5, message="state unstable")
        assert rb.state.value == "unstable"
        assert all(len(calls) == 1 for calls in _keyed_posts(stack).values())
    finally:
        stack.stop()


def test_healthy_window_ends_with_the_stability_report(db: str, demo: DemoService,
                                                       prom: PrometheusServer) -> None:
    stack = _stack(db, demo, prom, duration_seconds=10, interval_seconds=2)
    try:
        rid = _rollback(stack)
        wait_until(lambda: stack.bot.store.get(rid).state.value == "completed",  # type: ignore[union-attr]
                   timeout=45, message="the rollback to complete")
        # the completion notice follows the transition: wait for it, then read everything
        wait_until(lambda: f"RB-{rid} completed"
                   in str(stack.emulator.thread(CHANNEL, _root(stack))),
                   timeout=15, message="the completion notice")
        store = AftercareStore(stack.bot.store.pool)  # type: ignore[union-attr]
        (monitor,) = store.monitors(rid)
        posts = _keyed_posts(stack)
        assert all(len(calls) == 1 for calls in posts.values()), "a post was doubled"
        ticks = sorted(k for k in posts if k.startswith(f"monitor:{monitor.id}:tick:"))
        assert len(ticks) == monitor.total_ticks == 5
        report = posts[f"monitor:{monitor.id}:report"][0].params["text"]
        assert "Stability report" in report and "Error rate:* min 0.00%" in report
        assert "Health:* 5/5 checks passed" in report
        samples = store.samples(monitor.id)
        assert all(s.error_rate is not None and s.error_rate < 0.05 for s in samples)
        chart = next(f for f in stack.emulator.files() if f["name"].startswith("stability-"))
        assert stack.emulator.file_content(chart["id"]).startswith(b"\x89PNG")
    finally:
        stack.stop()


def _root(stack: SandboxStack) -> str:
    return next(m["ts"] for m in stack.emulator.messages(CHANNEL)
                if "*Assessment*" in str(m.get("blocks")))
