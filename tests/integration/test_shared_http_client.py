"""One HTTP client per process (``bot.integrations.http_client``), over real wires.

A client per check built a TLS context per check (``ssl.create_default_context``, most of a
monitor check's CPU). The count is taken on the stdlib function itself, wrapped with a
counter: only calls made from the product's code (``bot/``, ``handlers/``, ``platforms/``)
count, so the demo's traffic generator and the test's own clients do not. The Slack Web
API client (and Bolt's ``respond``, which takes its ``ssl``) has one context of its own, made
at start too.
"""

from __future__ import annotations

import ssl
import threading
import traceback
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from bot.checks.probes import check_health
from bot.domain.config import HealthCheck
from bot.integrations.http_client import shared_client
from bot.persistence.aftercare_store import AftercareStore
from handlers import ids
from sandbox.config import error_rate_query, parse_sandbox_config, sandbox_config_dict
from sandbox.demo import DemoService
from sandbox.stack import SandboxStack
from tests.integration.prom_fixtures import PrometheusFactory, PrometheusServer, scraping
from tests.secret_scan import register_secret
from tests.support.demo import demo_fixture
from tests.support.waiting import wait_until

ROOT = Path(__file__).resolve().parents[2]
PRODUCT = tuple(str(ROOT / name) + "/" for name in ("bot", "handlers", "platforms"))
CHANNEL = "inc-hotel-voice-bot"
WINDOW = "10s"
TICKS = 10


class ContextCount:
    """``ssl.create_default_context`` calls whose stack passes through the product."""

    def __init__(self, original: Callable[..., ssl.SSLContext]) -> None:
        self.original = original
        self.lock = threading.Lock()
        self.product = 0

    def __call__(self, *args: Any, **kwargs: Any) -> ssl.SSLContext:
        if any(frame.filename.startswith(PRODUCT) for frame in traceback.extract_stack()):
            with self.lock:
                self.product += 1
        return self.original(*args, **kwargs)


@pytest.fixture
def contexts(monkeypatch: pytest.MonkeyPatch) -> ContextCount:
    # httpx calls ssl.create_default_context through the module (httpx/_config.py:
    # create_ssl_context), so wrapping the module attribute sees every client it builds.
    counter = ContextCount(ssl.create_default_context)
    monkeypatch.setattr(ssl, "create_default_context", counter)
    return counter


demo = demo_fixture(traffic_rps=20, seed=3)


@pytest.fixture
def prom(prometheus_server: PrometheusFactory, demo: DemoService) -> Iterator[PrometheusServer]:
    server = scraping(prometheus_server, demo, healthy=error_rate_query(WINDOW))
    yield server
    server.stop()


@pytest.mark.slow
def test_a_rollback_with_its_checks_and_monitor_ticks_builds_no_tls_context(
        db: str, demo: DemoService, prom: PrometheusServer, contexts: ContextCount) -> None:
    """Assessment (health, error rate), the webhook step, verification (health ×11, two
    functional checks) and every monitor tick (Prometheus, health) run on the one client
    made at start."""
    data = sandbox_config_dict(demo_url=demo.url, prometheus_url=prom.url,
                               error_rate_window=WINDOW,
                               monitoring={"duration_seconds": TICKS, "interval_seconds": 1})
    data["services"]["hotel-voice-bot"]["webhooks"] = [{
        "name": "WhatsApp", "method": "POST", "url": f"{demo.url}/webhook/whatsapp",
        "json": {"url": f"{demo.url}/webhook/whatsapp"}}]
    stack = SandboxStack(config=parse_sandbox_config(data), database_url=db).start()
    register_secret(stack.signing_secret, "the stack's signing secret")
    try:
        at_start = contexts.product
        # The shared HTTP client's, and the one Slack's Web API client (urllib) and Bolt's
        # respond use: built once each at start, never per call.
        assert at_start <= 2, (f"{at_start} TLS contexts built at start; two expected (the "
                               "shared HTTP client, the Slack client)")
        driver, emulator = stack.driver, stack.emulator
        assert driver is not None and stack.bot is not None
        driver.slash_command("/rollback", "hotel-voice-bot --severity P1 --scope app,external",
                             user="alice", channel=CHANNEL)
        msg = emulator.wait_for(lambda: next((m for m in emulator.messages(CHANNEL)
                                              if "*Assessment*" in str(m.get("blocks"))),
                                             None), timeout=15)
        assert "HTTP 200" in str(msg.get("blocks"))  # the assessment's health probe ran
        driver.click(CHANNEL, msg["ts"], ids.ASSIGN_IC, "carol")
        emulator.wait_for(lambda: "rollback_assign_ic" not in str(
            emulator.message(CHANNEL, msg["ts"])))
        driver.click(CHANNEL, msg["ts"], ids.APPROVE, "bob")
        rid = int(msg["text"].split()[0].removeprefix("RB-"))
        store = stack.bot.store
        wait_until(lambda: store.get(rid).state.value == "completed", timeout=60,
                   message="the rollback to complete")
        steps = {s.kind: s for s in store.steps(rid)}
        assert steps["repoint_webhooks"].result == {"webhooks": ["WhatsApp"]}
        (monitor,) = AftercareStore(store.pool).monitors(rid)
        samples = AftercareStore(store.pool).samples(monitor.id)
        assert len(samples) == monitor.total_ticks == TICKS
        assert all(s.health_ok and s.error_rate is not None for s in samples)
        assert contexts.product == at_start, (
            f"{contexts.product - at_start} TLS contexts built during one rollback")
    finally:
        stack.stop()


# ----------------------------------------------------------------- what stays per request
class _CookieServer(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    cookies_seen: list[str | None] = []

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib name
        pass

    def do_GET(self) -> None:  # noqa: N802 - stdlib name
        type(self).cookies_seen.append(self.headers.get("Cookie"))
        self.send_response(200)
        self.send_header("Set-Cookie", "session=from-service-a; Path=/")
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")


@pytest.fixture
def cookie_server() -> Iterator[str]:
    _CookieServer.cookies_seen = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _CookieServer)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_the_shared_client_sends_no_cookie_a_service_set(cookie_server: str,
                                                        contexts: ContextCount) -> None:
    """A client per check started with an empty jar; the shared one keeps none, so one
    service's session cookie never rides along on the next check."""
    client = shared_client()
    try:
        for _ in range(3):  # three checks of 1 + 2 samples each, on one client
            result = check_health(HealthCheck(url=f"{cookie_server}/health", samples=2),
                                  client=client)
            assert result.status == "pass", result.summary
    finally:
        client.close()
    assert len(_CookieServer.cookies_seen) == 9
    assert _CookieServer.cookies_seen == [None] * 9
    assert contexts.product == 1  # the one client's


# ------------------------------------------------------------------ concurrent monitor ticks
CONCURRENT = 32  # monitor ticks run on a bounded pool of about this many workers


class _BarrierServer(BaseHTTPRequestHandler):
    """Answers 200 only once ``CONCURRENT`` requests are in flight at the same time: a
    client that queues requests behind a smaller pool breaks the barrier (503)."""

    protocol_version = "HTTP/1.1"
    barrier = threading.Barrier(CONCURRENT, timeout=15)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib name
        pass

    def do_GET(self) -> None:  # noqa: N802 - stdlib name
        try:
            type(self).barrier.wait()
            status = 200
        except threading.BrokenBarrierError:
            status = 503
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()


def test_the_shared_client_carries_a_monitor_pools_worth_of_requests_at_once(
        contexts: ContextCount) -> None:
    _BarrierServer.barrier = threading.Barrier(CONCURRENT, timeout=15)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _BarrierServer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/health"
    client = shared_client()
    results: list[str] = []
    lock = threading.Lock()

    def tick() -> None:
        result = check_health(HealthCheck(url=url, samples=0, timeout_seconds=20), client=client)
        with lock:
            results.append(result.status if result.ok else result.summary)

    try:
        threads = [threading.Thread(target=tick) for _ in range(CONCURRENT)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
    finally:
        client.close()
        server.shutdown()
        server.server_close()
    assert results == ["pass"] * CONCURRENT
    assert contexts.product == 1
