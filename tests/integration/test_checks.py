"""The verification suite over real wires: a local HTTP server, PostgreSQL, FakePlatform."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import psycopg
import pytest

from bot.checks.probes import check_health, check_http_probe
from bot.checks.runner import Check, CheckResult, render_text, run_suite
from bot.checks.suite import build_checks, check_backup, check_database, check_resources
from bot.domain.config import DatabaseConfig, EnvHeader, HealthCheck, HttpProbe, parse_config
from bot.integrations.target_database import backup
from platforms.base import Target
from sandbox.config import PLATFORMS as SANDBOX_PLATFORMS
from sandbox.fake_platform import FakePlatform

SECRET = "sk-live-9f8e7d6c5b4a-DO-NOT-LEAK"
SLOW_DELAY = 5.0  # the only deliberate wait: the server stalls /slow this long at most


# ------------------------------------------------------------------------ http server
@dataclass
class Received:
    path: str
    method: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Server:
    url: str
    received: list[Received] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)


def _handler(state: Server) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib name
            pass

        def _reply(self, status: int, body: bytes = b"ok") -> None:
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _handle(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            parts = urlsplit(self.path)
            state.received.append(
                Received(parts.path, self.command, dict(self.headers.items()), body)
            )
            if parts.path == "/health":
                self._reply(200)
            elif parts.path.startswith("/status/"):
                self._reply(int(parts.path.rsplit("/", 1)[1]))
            elif parts.path == "/slow":
                state.release.wait(SLOW_DELAY)  # released at teardown: no lingering thread
                self._reply(200)
            elif parts.path == "/delay":
                ms = float(parse_qs(parts.query)["ms"][0])
                state.release.wait(ms / 1000)
                self._reply(200)
            elif parts.path == "/echo":
                # A misbehaving upstream that reflects the request headers in its error.
                self._reply(500, json.dumps(dict(self.headers.items())).encode())
            else:
                self._reply(404, b"not found")

        do_GET = do_POST = do_PUT = _handle

    return Handler


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Abandoned checks drop their connections mid-request by design; not an error here.
        pass


@pytest.fixture
def server() -> Iterator[Server]:
    state = Server(url="")
    httpd = _QuietServer(("127.0.0.1", 0), _handler(state))
    state.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        state.release.set()
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with httpx.Client() as c:
        yield c


# ----------------------------------------------------------------------------- health
def test_health_passes_with_timed_samples(server: Server, client: httpx.Client) -> None:
    result = check_health(HealthCheck(url=f"{server.url}/health"), client=client)
    assert result.status == "pass", result
    assert len(result.details["latencies_ms"]) == 10
    assert result.details["min_ms"] <= result.details["median_ms"] <= result.details["max_ms"]
    assert "over 10 requests" in result.summary and "median" in result.summary
    assert len(server.received) == 11  # status check + 10 samples


def test_health_wrong_status_fails(server: Server, client: httpx.Client) -> None:
    result = check_health(HealthCheck(url=f"{server.url}/status/503"), client=client)
    assert result.status == "fail"
    assert result.summary == "HTTP 503, expected 200"


def test_health_unreachable_fails_without_raising(client: httpx.Client) -> None:
    result = check_health(HealthCheck(url="http://127.0.0.1:9/health"), client=client)
    assert result.status == "fail" and "ConnectError" in result.summary


def test_timing_out_health_fails_and_suite_returns_promptly(
    server: Server, client: httpx.Client
) -> None:
    timeout = 0.5
    slow = HealthCheck(url=f"{server.url}/slow", timeout_seconds=timeout)
    fast = HealthCheck(url=f"{server.url}/health", samples=2)
    started = time.monotonic()
    results = run_suite(
        [
            Check("slow-health", 30, lambda: check_health(slow, client=client)),
            Check("fast-health", 30, lambda: check_health(fast, client=client)),
        ],
        overall_timeout=30,
        max_workers=4,
    )
    elapsed = time.monotonic() - started
    assert [r.name for r in results] == ["slow-health", "fast-health"]
    assert results[0].status == "fail"
    assert results[0].summary.startswith("timed out after 0.5s")
    assert results[1].status == "pass"
    assert elapsed < timeout + 2.0, elapsed


def test_suite_abandons_a_check_past_its_own_timeout(
    server: Server, client: httpx.Client
) -> None:
    # The probe's own HTTP timeout (20 s) is far beyond the check's budget (0.5 s): the
    # suite must not wait for it.
    stuck = HttpProbe(name="stuck", url=f"{server.url}/slow", timeout_seconds=20)
    ok = HttpProbe(name="ok", url=f"{server.url}/health")
    started = time.monotonic()
    results = run_suite(
        [
            Check("stuck", 0.5, lambda: check_http_probe(stuck, client=client)),
            Check("ok", 10, lambda: check_http_probe(ok, client=client)),
        ],
        overall_timeout=30,
        max_workers=2,
    )
    elapsed = time.monotonic() - started
    assert elapsed < 0.5 + 2.0, elapsed
    assert results[0] == CheckResult("stuck", "fail", "timed out after 0.5s", {},
                                     results[0].duration_ms)
    assert results[1].status == "pass"


def test_suite_deadline_covers_checks_that_never_started(
    server: Server, client: httpx.Client
) -> None:
    stuck = HttpProbe(name="stuck", url=f"{server.url}/slow", timeout_seconds=20)
    started = time.monotonic()
    results = run_suite(
        [Check(f"stuck-{i}", 20, lambda: check_http_probe(stuck, client=client))
         for i in range(2)],
        overall_timeout=0.7,
        max_workers=1,
    )
    assert time.monotonic() - started < 0.7 + 2.0
    assert [r.status for r in results] == ["fail", "fail"]
    assert results[0].summary == "timed out after 0.7s (suite deadline)"
    assert "never started" in results[1].summary


def test_abandoned_check_gives_its_worker_slot_back(
    server: Server, client: httpx.Client
) -> None:
    stuck = HttpProbe(name="stuck", url=f"{server.url}/slow", timeout_seconds=20)
    ok = HealthCheck(url=f"{server.url}/health", samples=1)
    started = time.monotonic()
    results = run_suite(
        [
            Check("stuck", 0.5, lambda: check_http_probe(stuck, client=client)),
            Check("health", 10, lambda: check_health(ok, client=client)),
        ],
        overall_timeout=10,
        max_workers=1,
    )
    assert time.monotonic() - started < 0.5 + 2.0
    assert [r.status for r in results] == ["fail", "pass"]


def test_suite_turns_raising_callables_into_failures() -> None:
    def boom() -> CheckResult:
        raise RuntimeError("kaput\nsecond line is dropped")

    results = run_suite(
        [boom, lambda: CheckResult("fine", "pass", "ok")], overall_timeout=5, max_workers=2
    )
    assert results[0].name == "boom" and results[0].status == "fail"
    assert results[0].summary == "RuntimeError: kaput"
    assert results[1].name == "fine"
    assert run_suite([], overall_timeout=1, max_workers=1) == []


# ------------------------------------------------------------------------------ probes
def test_probe_sends_secret_header_and_never_reports_it(
    server: Server, client: httpx.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PROBE_TOKEN", SECRET)
    probe = HttpProbe.model_validate({
        "name": "OpenAI API",
        "url": f"{server.url}/status/201?trace=1",
        "method": "POST",
        "headers": {"X-Client": "rollback-bot"},
        "headers_env": {"Authorization": {"env": "PROBE_TOKEN", "prefix": "Bearer "},
                        "X-Api-Key": "PROBE_TOKEN"},
        "json": {"ping": True},
        "expect_status": [200, 201],
        "max_latency_ms": 5000,
    })
    result = check_http_probe(probe, client=client)
    assert result.status == "pass", result
    got = server.received[-1]
    assert got.method == "POST"
    assert got.headers["Authorization"] == f"Bearer {SECRET}"
    assert got.headers["X-Api-Key"] == SECRET
    assert got.headers["X-Client"] == "rollback-bot"
    assert json.loads(got.body) == {"ping": True}
    assert result.details["headers"] == ["Authorization", "X-Api-Key", "X-Client"]
    assert SECRET not in repr(result) and SECRET not in render_text([result])
    assert "rollback-bot" not in repr(result)  # no header value at all, secret or not


def test_probe_failure_never_echoes_secret(
    server: Server, client: httpx.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PROBE_TOKEN", SECRET)
    probe = HttpProbe(name="echo", url=f"{server.url}/echo", headers_env={"X-Token": "PROBE_TOKEN"})
    result = check_http_probe(probe, client=client)
    assert result.status == "fail" and result.summary == "HTTP 500, expected 200"
    assert server.received[-1].headers["X-Token"] == SECRET
    assert SECRET not in repr(result)


def test_probe_invalid_secret_value_is_not_quoted(
    server: Server, client: httpx.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PROBE_TOKEN", SECRET + "\r\nX-Injected: 1")
    probe = HttpProbe(
        name="bad", url=f"{server.url}/health", headers_env={"X-Token": "PROBE_TOKEN"}
    )
    result = check_http_probe(probe, client=client)
    assert result.status == "fail"
    assert SECRET not in repr(result)
    assert server.received == []


def test_probe_missing_env_var_names_it(
    server: Server, client: httpx.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ROLLBACK_TEST_UNSET", raising=False)
    probe = HttpProbe(
        name="waha", url=f"{server.url}/health",
        headers_env={"Authorization": EnvHeader(env="ROLLBACK_TEST_UNSET", prefix="Bearer ")},
    )
    result = check_http_probe(probe, client=client)
    assert result.status == "fail"
    assert result.summary == (
        "env var ROLLBACK_TEST_UNSET is not set (needed for header Authorization)"
    )
    assert server.received == []  # nothing sent without the credential


def test_probe_status_and_latency_limits(server: Server, client: httpx.Client) -> None:
    wrong = check_http_probe(
        HttpProbe(name="s", url=f"{server.url}/status/404", expect_status=[200, 204]),
        client=client,
    )
    assert wrong.status == "fail" and wrong.summary == "HTTP 404, expected 200/204"
    assert wrong.details["body"] == "ok"  # no secret sent, so a body snippet helps

    slow = check_http_probe(
        HttpProbe(name="l", url=f"{server.url}/delay?ms=300", max_latency_ms=50),
        client=client,
    )
    assert slow.status == "fail" and "> max 50 ms" in slow.summary

    timeout = check_http_probe(
        HttpProbe(name="t", url=f"{server.url}/slow", timeout_seconds=0.3), client=client
    )
    assert timeout.status == "fail" and timeout.summary == "timed out after 0.3s"


def test_probe_url_details_drop_credentials_and_query(
    server: Server, client: httpx.Client
) -> None:
    url = server.url.replace("http://", "http://user:pw-in-url@") + "/health?token=abc123"
    result = check_http_probe(HttpProbe(name="u", url=url), client=client)
    assert result.details["url"] == f"{server.url}/health"
    assert "pw-in-url" not in repr(result) and "abc123" not in repr(result)


# ---------------------------------------------------------------------------- database
def _db_cfg(env: str, *queries: str, location: str = "/nonexistent") -> DatabaseConfig:
    return DatabaseConfig(dsn_env=env, backup_location=location, verify_queries=list(queries))


def test_database_check_missing_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ROLLBACK_TEST_DSN", raising=False)
    result = check_database(_db_cfg("ROLLBACK_TEST_DSN"))
    assert result.status == "fail" and result.summary == "DSN env ROLLBACK_TEST_DSN not set"


def test_database_check_passes_and_skips_slow_queries(
    fresh_db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with psycopg.connect(fresh_db, autocommit=True) as conn:
        conn.execute("CREATE TABLE bot_messages AS SELECT generate_series(1, 42) AS id")
    monkeypatch.setenv("ROLLBACK_TEST_DSN", fresh_db)
    result = check_database(
        _db_cfg("ROLLBACK_TEST_DSN", "SELECT COUNT(*) FROM public.bot_messages")
    )
    assert result.status == "pass", result
    assert "SELECT COUNT(*) FROM public.bot_messages → 42" in result.summary
    assert "slow queries: skipped (pg_stat_statements not installed)" in result.summary
    assert result.details["queries"][1]["value"] == 42
    json.dumps(result.details)  # plain data only


def test_database_check_names_the_failing_integrity_query(
    fresh_db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ROLLBACK_TEST_DSN", fresh_db)
    result = check_database(
        _db_cfg("ROLLBACK_TEST_DSN", "SELECT COUNT(*) FROM public.bot_messages")
    )
    assert result.status == "fail"
    assert result.summary.startswith(
        "integrity query failed: SELECT COUNT(*) FROM public.bot_messages:"
    )
    assert "does not exist" in result.summary


def test_database_check_never_shows_the_password(
    fresh_db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    password = "db-Pa55word-never-shown"
    dsn = psycopg.conninfo.make_conninfo(fresh_db, dbname="no_such_db", password=password)
    monkeypatch.setenv("ROLLBACK_TEST_DSN", dsn)
    result = check_database(_db_cfg("ROLLBACK_TEST_DSN"), timeout=2)
    assert result.status == "fail" and "cannot connect" in result.summary
    assert password not in repr(result)


def test_database_check_reports_slow_queries(
    pgss_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with psycopg.connect(pgss_url, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        conn.execute("SELECT pg_sleep(0.2)")
    monkeypatch.setenv("ROLLBACK_TEST_DSN", pgss_url)
    result = check_database(_db_cfg("ROLLBACK_TEST_DSN"))
    assert result.status == "pass", result
    assert "slow queries (mean > 100 ms)" in result.summary
    assert any("pg_sleep" in q["query"] for q in result.details["slow_queries"])


def test_backup_check(fresh_db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ROLLBACK_TEST_DSN", fresh_db)
    cfg = _db_cfg("ROLLBACK_TEST_DSN", location=str(tmp_path))
    missing = check_backup(cfg, service="svc")
    assert missing.status == "fail" and missing.summary.startswith("no backup of svc")
    now = datetime.now(UTC).replace(microsecond=0)
    backup(fresh_db, location=tmp_path, service="svc", now=now - timedelta(hours=1))
    fresh = check_backup(cfg, service="svc", now=now)
    assert fresh.status == "pass", fresh
    stale = check_backup(cfg, service="svc", now=now + timedelta(days=2))
    assert stale.status == "fail" and "h old" in stale.summary


# --------------------------------------------------------------------------- resources
def test_resources_from_fake_platform() -> None:
    platform = FakePlatform(replicas=3)
    target = Target("fake", "prod", "hotel-voice-bot")
    result = check_resources(platform, target)
    assert result.status == "pass", result
    assert result.summary.startswith("3 units: CPU 120–120m (total 360m)")
    assert [u["unit"] for u in result.details["units"]] == [
        "hotel-voice-bot-0", "hotel-voice-bot-1", "hotel-voice-bot-2"
    ]
    over = check_resources(platform, target, max_memory_mib=200)
    assert over.status == "fail" and over.summary.startswith("over limit: hotel-voice-bot-0")
    platform.scale(target, 0)
    assert check_resources(platform, target).status == "fail"
    gone = check_resources(platform, Target("fake", "prod", "missing-app"))
    assert gone.status == "fail" and "TargetNotFound" in gone.summary


# ------------------------------------------------------------------------ whole suite
def test_build_checks_and_render(
    server: Server, client: httpx.Client, fresh_db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ROLLBACK_TEST_DSN", fresh_db)
    monkeypatch.setenv("PROBE_TOKEN", SECRET)
    service = parse_config({"services": {"svc": {  # a fake: block: the sandbox's registry
        "fake": {},
        "health": {"url": f"{server.url}/health", "samples": 3},
        "database": {"dsn_env": "ROLLBACK_TEST_DSN", "backup_location": "/nonexistent",
                     "verify_queries": ["SELECT COUNT(*) FROM pg_class"]},
        "external_checks": [{"name": "OpenAI API", "url": f"{server.url}/health",
                             "headers_env": {"Authorization": {"env": "PROBE_TOKEN"}}}],
        "functional_checks": [{"name": "smoke", "url": f"{server.url}/status/500"}],
    }}}, platforms=SANDBOX_PLATFORMS).services["svc"]
    checks = build_checks(
        service, client=client, platform=FakePlatform(), target=Target("fake", "p", "svc")
    )
    assert [c.name for c in checks] == ["health", "database", "OpenAI API", "smoke", "resources"]
    results = run_suite(checks, overall_timeout=30, max_workers=4)
    assert [r.status for r in results] == ["pass", "pass", "pass", "fail", "pass"]
    text = render_text(results)
    lines = text.splitlines()
    assert len(lines) == 5
    assert lines[0].startswith("✅ health: HTTP 200")
    assert lines[3].startswith("❌ smoke: HTTP 500, expected 200")
    assert SECRET not in text and SECRET not in repr(results)


def test_render_text_icons() -> None:
    text = render_text([
        CheckResult("a", "pass", "fine", {}, 12.4),
        CheckResult("b", "fail", "broken\nacross lines", {}, 3),
        CheckResult("c", "skip", "not configured"),
    ])
    assert text.splitlines() == [
        "✅ a: fine (12 ms)",
        "❌ b: broken across lines (3 ms)",
        "⏭ c: not configured (0 ms)",
    ]
