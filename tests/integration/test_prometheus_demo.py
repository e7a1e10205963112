"""The demo service's failures show up in a real Prometheus, read through
``bot.integrations.prometheus``.

Also covers the demo's version-driven behaviour and the client's error mapping.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator

import httpx
import pytest

from bot.integrations.errors import PrometheusError
from bot.integrations.prometheus import instant_query, range_query
from sandbox.config import error_rate_query
from sandbox.demo import DemoService, ServiceUnavailable
from tests.integration.prom_fixtures import PrometheusFactory, PrometheusServer, scraping
from tests.support.demo import demo_fixture

ERROR_RATE = error_rate_query("15s")


demo = demo_fixture(version_source="1.4.2", traffic_rps=20, seed=7, scope="module")


@pytest.fixture(scope="module")
def prom(prometheus_server: PrometheusFactory, demo: DemoService) -> Iterator[PrometheusServer]:
    server = scraping(prometheus_server, demo)
    yield server
    server.stop()


@pytest.mark.slow
def test_error_rate_follows_break_and_heal(demo: DemoService, prom: PrometheusServer) -> None:
    started = time.time()
    baseline = prom.wait_for(
        ERROR_RATE, lambda v: v is not None and v < 0.01, timeout=30, what="healthy baseline"
    )
    assert baseline is not None and baseline < 0.01

    demo.break_()
    broken = prom.wait_for(
        ERROR_RATE, lambda v: v is not None and v > 0.5, timeout=45, what="error rate > 0.5"
    )
    assert broken is not None and broken > 0.5

    demo.heal()
    healed = prom.wait_for(
        ERROR_RATE, lambda v: v is not None and v < 0.1, timeout=45, what="error rate < 0.1"
    )
    assert healed is not None and healed < 0.1

    samples = prom.query_range(ERROR_RATE, start=started, end=time.time(), step=1.0)
    assert len(samples) > 10
    timestamps = [ts for ts, _ in samples]
    assert timestamps == sorted(timestamps)
    assert max(v for _, v in samples) > 0.5
    assert samples[-1][1] < 0.1
    stats = demo.traffic.stats() if demo.traffic else None
    assert stats is not None and stats.server_errors > 0 and stats.transport_errors == 0


def test_instant_query_shapes(prom: PrometheusServer) -> None:
    assert prom.query("1 + 1") == 2.0  # scalar
    assert prom.query('up{job="demo"}') == 1.0  # vector, first sample
    assert prom.query("nonexistent_metric_xyz") is None  # empty vector
    assert prom.query("0 / 0") is None  # NaN
    assert prom.query("1 / 0") == math.inf


def test_instant_query_at_time(prom: PrometheusServer) -> None:
    assert instant_query(prom.url, "time()", client=prom.client, at=1_700_000_000.5) == (
        1_700_000_000.5
    )


def test_range_query_of_absent_series_is_empty(prom: PrometheusServer) -> None:
    now = time.time()
    assert prom.query_range("nonexistent_metric_xyz", start=now - 10, end=now) == []


def test_errors_are_mapped(prom: PrometheusServer, demo: DemoService) -> None:
    with pytest.raises(PrometheusError) as bad:
        prom.query("sum(rate(")
    assert bad.value.error_type == "bad_data" and bad.value.status_code == 400
    assert "rejected" in str(bad.value) and prom.url in str(bad.value)

    with pytest.raises(PrometheusError, match="scalar or an instant vector"):
        prom.query("up[1m]")  # a range vector cannot be one number

    with pytest.raises(PrometheusError, match="rejected") as not_prom:
        instant_query(demo.url, "up", client=prom.client)  # 404 from a non-Prometheus
    assert not_prom.value.status_code == 404

    with httpx.Client(timeout=2.0) as client:
        with pytest.raises(PrometheusError, match="unreachable"):
            instant_query("http://127.0.0.1:9", "up", client=client)
        with pytest.raises(PrometheusError, match="unreachable") as secret:
            range_query(
                "http://user:s3cret@127.0.0.1:9", "up", start=0, end=1, step=1, client=client
            )
        assert "s3cret" not in str(secret.value)


# -- the demo service on its own (no Prometheus) ---------------------------------------


def test_demo_follows_version_source() -> None:
    current = {"image": "ghcr.io/acme/hotel-voice-bot:1.4.2"}
    service = DemoService(
        version_source=lambda: current["image"], bad_versions={"1.4.3"}, bad_health_delay=0.3
    )
    with service, httpx.Client(base_url=service.url, timeout=5.0) as client:
        health = client.get("/api/health")
        assert health.status_code == 200
        assert health.json() == {"status": "ok", "version": "1.4.2"}
        assert client.get("/api/faqs").status_code == 200
        assert client.post("/api/conversations", json={"guest": "Ada"}).status_code == 201
        assert client.post("/webhook/whatsapp", json={"event": "message"}).status_code == 200

        for bad in ("ghcr.io/acme/hotel-voice-bot:1.4.3", "registry:5000/acme/hvb:1.5.0-bad"):
            current["image"] = bad
            started = time.monotonic()
            health = client.get("/api/health")
            assert time.monotonic() - started >= 0.3  # a broken release hangs before failing
            assert health.status_code == 503
            assert health.json()["status"] == "unhealthy"
            assert client.get("/api/faqs").status_code == 500
            assert client.post("/api/conversations", json={}).status_code == 500
            assert client.post("/webhook/whatsapp", json={}).status_code == 500

        current["image"] = "ghcr.io/acme/hotel-voice-bot:1.4.2"  # the rollback
        assert client.get("/api/health").json()["status"] == "ok"

        metrics = client.get("/metrics").text
        assert (
            'http_requests_total{route="/api/faqs",service="hotel-voice-bot",status="500"} 2.0'
            in metrics
        )
        assert "http_request_duration_seconds_bucket" in metrics


def test_demo_unavailable_when_no_replica() -> None:
    def scaled_to_zero() -> str:
        raise ServiceUnavailable("0 replicas")

    with DemoService(version_source=scaled_to_zero) as service:
        assert httpx.get(f"{service.url}/api/health").status_code == 503
        assert httpx.get(f"{service.url}/api/faqs").status_code == 503


def test_drill_over_http_and_version_pinning() -> None:
    current = {"version": "2.0.0"}
    with (
        DemoService(version_source=lambda: current["version"], seed=1) as service,
        httpx.Client(base_url=service.url, timeout=5.0) as client,
    ):
        reply = client.post("/_drill/break", json={"error_rate": 1.0, "version": "current"})
        assert reply.status_code == 200
        assert reply.json()["drill"] == {"error_rate": 1.0, "slow_ms": 0, "version": "2.0.0",
                                         "even": False}
        assert client.get("/api/faqs").status_code == 503
        assert client.get("/api/health").status_code == 503

        current["version"] = "1.9.0"  # the drill belongs to 2.0.0: rolling back cures it
        assert client.get("/api/faqs").status_code == 200

        assert client.post("/_drill/break", json={"error_rate": 2}).status_code == 400
        assert client.post("/_drill/break", content=b"[1]").status_code == 400

        service.break_(error_rate=0.5, slow_ms=20)
        started = time.monotonic()
        codes = [client.get("/api/faqs").status_code for _ in range(30)]
        assert time.monotonic() - started >= 30 * 0.02
        assert set(codes) == {200, 503}

        assert client.post("/_drill/heal").json()["drill"]["error_rate"] == 0.0
        assert all(client.get("/api/faqs").status_code == 200 for _ in range(10))
        assert client.get("/_drill/status").json()["version"] == "1.9.0"


def test_demo_rejects_bad_requests() -> None:
    with DemoService() as service, httpx.Client(base_url=service.url) as client:
        assert client.get("/api/conversations").status_code == 405
        assert client.get("/api/conversations").headers["allow"] == "POST"
        assert client.post("/api/conversations", content=b"{nope").status_code == 400
        assert client.post("/webhook/whatsapp", content=b"x" * 70_000).status_code == 413
        assert client.get("/nowhere").status_code == 404
