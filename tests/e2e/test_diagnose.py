"""``/rollback diagnose hotel-voice-bot`` through the wire, on real dependencies: a REAL
Prometheus scraping the demo service (error rate), a real PostgreSQL target database
(verify queries, migration table) and a local HTTP server standing in for OpenAI and WAHA
(external checks). Each runbook scenario, "nothing wrong", a hanging dependency, and a
finding's button opening the request modal with its scope, after which the answer shows who
took the finding. Nothing is written anywhere but the bot's own audit trail (who diagnosed
what, and who took which finding).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from bot.integrations.target_database import backup_filename
from handlers import ids
from sandbox.config import error_rate_query
from sandbox.demo import DemoService
from tests.e2e.conftest import CHANNEL, Harness
from tests.integration.prom_fixtures import PrometheusFactory, PrometheusServer, scraping
from tests.secret_scan import register_secret
from tests.support.demo import demo_fixture
from tests.support.local_http import LocalServer

SERVICE = "hotel-voice-bot"
DSN_PASSWORD = "pw-d1a9-do-not-post"
OPENAI_KEY = "sk-diag-7f3e-do-not-post"
ERROR_RATE = error_rate_query("10s")

pytestmark = pytest.mark.slow


class ExternalServer(LocalServer):
    """OpenAI's ``/v1/models`` and WAHA's ``/api/sessions``: each answers ``status[path]``;
    every request is recorded (method, path) so the test can see nothing was written."""

    def __init__(self) -> None:
        self.status: dict[str, int] = {"/v1/models": 200, "/api/sessions": 200}
        self.requests: list[tuple[str, str]] = []
        state = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

            def _answer(self) -> None:
                state.requests.append((self.command, self.path))
                body = b"{}"
                self.send_response(state.status.get(self.path, 404))
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_PUT = do_POST = _answer  # noqa: N815

        super().__init__(Handler)


demo = demo_fixture(traffic_rps=20, seed=5, scope="module")


@pytest.fixture(scope="module")
def prom(prometheus_server: PrometheusFactory, demo: DemoService) -> Iterator[PrometheusServer]:
    server = scraping(prometheus_server, demo, healthy=ERROR_RATE, timeout=40)
    yield server
    server.stop()


def _healthy(prom: PrometheusServer) -> None:
    prom.wait_for(ERROR_RATE, lambda v: v is not None and v < 0.01, timeout=40,
                  what="a healthy error-rate baseline")


@pytest.fixture
def external() -> Iterator[ExternalServer]:
    server = ExternalServer()
    yield server
    server.stop()


@pytest.fixture
def target_db(fresh_db: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """The service's database, healthy: its messages table and a clean migration table."""
    with psycopg.connect(fresh_db, autocommit=True) as conn:
        conn.execute("CREATE TABLE bot_messages (id int PRIMARY KEY)")
        conn.execute("CREATE TABLE schema_migrations (version text PRIMARY KEY, dirty bool)")
        conn.execute("INSERT INTO schema_migrations VALUES ('20261101_init', false)")
    monkeypatch.setenv("APP_DSN", make_conninfo(fresh_db, password=DSN_PASSWORD))
    monkeypatch.setenv("OPENAI_KEY", OPENAI_KEY)
    register_secret(DSN_PASSWORD, "the target database's password")
    register_secret(OPENAI_KEY, "the OpenAI key")
    return fresh_db


@pytest.fixture
def diag(make_harness: Callable[..., Harness], prom: PrometheusServer, external: ExternalServer,
         target_db: str, tmp_path: Path) -> Harness:
    backups = tmp_path / "backups"
    backups.mkdir()

    def config(data: dict[str, Any]) -> None:
        svc = data["services"][SERVICE]
        svc["prometheus"] = {"url": prom.url, "error_rate_query": ERROR_RATE,
                             "error_rate_threshold": 0.05}
        svc["database"] = {
            "dsn_env": "APP_DSN", "backup_location": str(backups),
            "verify_queries": ["SELECT * FROM public.bot_messages LIMIT 1"],
            "migration_check_query": "SELECT version FROM schema_migrations WHERE dirty"}
        svc["external_checks"] = [
            {"name": "OpenAI API", "url": f"{external.url}/v1/models",
             "headers_env": {"Authorization": {"env": "OPENAI_KEY", "prefix": "Bearer "}}},
            {"name": "WAHA", "url": f"{external.url}/api/sessions", "timeout_seconds": 2}]
        svc["webhooks"] = [{"name": "WAHA session webhook", "method": "PUT",
                            "url": f"{external.url}/api/sessions/default",
                            "json": {"config": {"webhooks": []}}}]

    h = make_harness(config_overrides=config)
    # Backups are taken at 02:00; the harness' clock says 03:00.
    (backups / backup_filename(SERVICE, h.clock() - timedelta(hours=1))).write_bytes(b"x")
    return h


def _diagnose(h: Harness, *, user: str = "alice", channel: str = CHANNEL) -> dict[str, Any]:
    """Run the command; return the ephemeral diagnosis (its blocks and ts)."""
    before = len(h.emulator.ephemerals(user=user))
    h.request(f"diagnose {SERVICE}", user=user, channel=channel)
    found = h.emulator.wait_for(lambda: next(
        (e for e in h.emulator.ephemerals(user=user)[before:]
         if "Diagnosis of" in str(e.get("text"))), None), timeout=30)
    return dict(found)


def _sections(diagnosis: dict[str, Any]) -> list[str]:
    return [b["text"]["text"] for b in diagnosis["blocks"] if b.get("type") == "section"]


def _buttons(diagnosis: dict[str, Any]) -> list[str]:
    return [b["accessory"]["value"] for b in diagnosis["blocks"] if "accessory" in b]


def _record(h: Harness, user: str = "alice", channel: str = CHANNEL) -> Any:
    """The audit record of the latest diagnosis, checked to name who ran it and where."""
    record = h.bot.store.recorded_events("diagnosis")[-1]
    assert record.rollback_id is None and record.actor == h.emulator.user_id(user)
    assert record.detail["service"] == SERVICE
    assert record.detail["channel"] == h.emulator.channel_id(channel)
    return record


def _nothing_written(h: Harness, external: ExternalServer) -> None:
    assert {method for method, _ in external.requests} <= {"GET"}  # webhooks never re-pointed
    assert h.bot.store.history(SERVICE) == []  # no rollback (the run's audit is of none)
    assert not h.platform.mutations()  # no platform write


def test_nothing_wrong(diag: Harness, external: ExternalServer) -> None:
    d = _diagnose(diag)
    text = str(d["blocks"])
    assert f"Nothing wrong with {SERVICE}" in _sections(d)[0]
    assert _buttons(d) == []
    for line in ("error rate: ", "within the threshold of 5.00%", "database: 2 checks passed",
                 "OpenAI API: HTTP 200", "WAHA: HTTP 200"):
        assert line in text, f"{line!r} not in {text}"
    record = _record(diag)  # a run with nothing wrong is audited too
    assert record.detail["findings"] == []
    assert {c["what"]: c["outcome"] for c in record.detail["checked"]} == {
        "error rate": "ok", "database": "ok", "OpenAI API": "ok", "WAHA": "ok"}
    _nothing_written(diag, external)


def test_error_rate_above_threshold_suggests_an_app_rollback(
        diag: Harness, demo: DemoService, prom: PrometheusServer,
        external: ExternalServer) -> None:
    demo.break_()  # every API request answers 503 from now on
    try:
        prom.wait_for(ERROR_RATE, lambda v: v is not None and v > 0.2, timeout=40,
                      what="an error rate above the threshold")
        d = _diagnose(diag)
        sections = _sections(d)
        assert "1 runbook scenario applies" in sections[0]
        assert "*Error rate above the threshold*: roll the app back (scope `app`)" in sections[1]
        assert "is above the threshold of 5.00%" in sections[1]
        assert _buttons(d) == [f"{SERVICE}:app:{_record(diag).id}"]
    finally:
        demo.heal()
        _healthy(prom)
    _nothing_written(diag, external)


def test_failing_verify_query_and_failed_migration_suggest_a_db_rollback(
        diag: Harness, target_db: str, external: ExternalServer) -> None:
    with psycopg.connect(target_db, autocommit=True) as conn:
        conn.execute("DROP TABLE bot_messages")
        conn.execute("INSERT INTO schema_migrations VALUES ('20261128_add_guests', true)")
    d = _diagnose(diag)
    (finding,) = _sections(d)[1:]
    assert "*Database checks failing*: roll the database back (scope `db`)" in finding
    assert ('`SELECT * FROM public.bot_messages LIMIT 1` failed: relation '
            '"public.bot_messages" does not exist') in finding
    assert "failed or partial migration: 20261128_add_guests" in finding
    assert ("`hotel-voice-bot-20261129T020000Z.dump`, taken 2026-11-29 02:00:00 UTC "
            "(1 h 00 min ago)") in finding
    record = _record(diag)
    assert _buttons(d) == [f"{SERVICE}:db:{record.id}"]
    (audited,) = record.detail["findings"]
    assert (audited["scenario"], audited["scope"]) == ("db", ["db"])
    assert "failed or partial migration: 20261128_add_guests" in audited["evidence"]
    assert DSN_PASSWORD not in str(d) and "APP_DSN" not in str(d)
    assert DSN_PASSWORD not in str(record.detail)
    with psycopg.connect(target_db, autocommit=True) as conn:  # read-only: nothing changed
        assert conn.execute("SELECT count(*) FROM schema_migrations").fetchone() == (2,)
    _nothing_written(diag, external)


def test_failing_external_checks_suggest_config_and_webhooks(
        diag: Harness, external: ExternalServer) -> None:
    external.status["/v1/models"] = 401
    external.status["/api/sessions"] = 502
    d = _diagnose(diag)
    (finding,) = _sections(d)[1:]
    assert ("*External checks failing*: roll the configuration back and re-point the "
            "webhooks (scope `config`, `external`)") in finding
    assert "OpenAI API: HTTP 401, expected 200" in finding
    assert "WAHA: HTTP 502, expected 200" in finding
    assert _buttons(d) == [f"{SERVICE}:config,external:{_record(diag).id}"]
    assert OPENAI_KEY not in str(d) and OPENAI_KEY not in str(_record(diag).detail)
    _nothing_written(diag, external)


def test_a_findings_button_opens_the_request_modal_with_its_scope(
        diag: Harness, target_db: str) -> None:
    with psycopg.connect(target_db, autocommit=True) as conn:
        conn.execute("DROP TABLE bot_messages")
    d = _diagnose(diag)
    record = _record(diag)
    diag.driver.click(CHANNEL, d["ts"], ids.DIAGNOSIS_REQUEST, "alice",
                      value=f"{SERVICE}:db:{record.id}")
    view = diag.emulator.wait_for(lambda: next(
        (v for v in diag.emulator.open_views("alice") if "Target revision" in str(v)), None),
        timeout=15)
    (scope,) = [b for b in view["blocks"] if b.get("block_id") == "scope"]
    assert [o["value"] for o in scope["element"]["initial_options"]] == ["db"]
    assert view["private_metadata"].startswith(f"{SERVICE}|")
    assert len(diag.emulator.calls("views.open")) == 1

    # The answer is re-rendered in place: who took the finding instead of its button.
    alice = diag.emulator.user_id("alice")
    now = diag.emulator.wait_for(lambda: next(
        (e for e in diag.emulator.ephemerals(user="alice")
         if e["ts"] == d["ts"] and "Taken by" in str(e.get("blocks"))), None), timeout=15,
        description="the diagnosis to show who took the finding")
    (finding,) = _sections(now)[1:]
    assert f":arrow_right: Taken by <@{alice}>: request form opened with scope `db`" in finding
    assert "*Database checks failing*" in finding  # the rest of the answer is kept
    assert _buttons(now) == []
    assert "database: " in str(now["blocks"])  # and what was checked
    (taken,) = diag.bot.store.recorded_events("diagnosis_finding_taken")
    assert (taken.actor, taken.detail) == (
        alice, {"diagnosis": record.id, "service": SERVICE, "scope": ["db"]})


def test_a_findings_button_outside_an_incident_channel_is_refused(
        diag: Harness, target_db: str) -> None:
    diag.emulator.add_channel("random")
    with psycopg.connect(target_db, autocommit=True) as conn:
        conn.execute("DROP TABLE bot_messages")
    d = _diagnose(diag, channel="random")
    record = _record(diag, channel="random")
    diag.driver.click("random", d["ts"], ids.DIAGNOSIS_REQUEST, "alice",
                      value=f"{SERVICE}:db:{record.id}")
    view = diag.emulator.wait_for(lambda: next(
        (v for v in diag.emulator.open_views("alice") if "incident channels" in str(v)), None),
        timeout=15)
    assert "Target revision" not in str(view)  # no form to submit
    assert diag.bot.store.history(SERVICE) == []
    # Refused: nobody took the finding, and the answer keeps its button.
    assert diag.bot.store.recorded_events("diagnosis_finding_taken") == []
    (still,) = [e for e in diag.emulator.ephemerals(user="alice") if e["ts"] == d["ts"]]
    assert _buttons(still) == [f"{SERVICE}:db:{record.id}"]


def test_unknown_service_is_refused_in_the_ack_with_the_known_ones(diag: Harness) -> None:
    diag.request("diagnose no-such-bot")
    text = diag.wait_ephemeral("alice", "Unknown service")
    assert f"`{SERVICE}`" in text
    assert diag.emulator.calls("views.open") == []


class HangingServer(LocalServer):
    """Accepts HTTP requests and never answers them (a stuck dependency) until stopped."""

    def __init__(self) -> None:
        self.paths: list[str] = []
        state = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

            def do_GET(self) -> None:  # noqa: N802
                state.paths.append(self.path)
                state.release.wait(60)  # the client gives up long before

            do_POST = do_GET  # noqa: N815  (a Prometheus query may be a form POST)

        super().__init__(Handler)


@pytest.fixture
def hanging() -> Iterator[HangingServer]:
    server = HangingServer()
    yield server
    server.stop()


def test_hanging_checks_answer_within_the_configured_timeout_naming_them(
        make_harness: Callable[..., Harness], hanging: HangingServer,
        external: ExternalServer) -> None:
    """Prometheus never answers (bounded by ``diagnose.check_timeout_seconds``, here 1 s
    instead of the default 10 s) and neither does WAHA (its own ``timeout_seconds``): the
    answer still comes, well before the default bound, and names both."""
    def config(data: dict[str, Any]) -> None:
        data["diagnose"] = {"check_timeout_seconds": 1}
        svc = data["services"][SERVICE]
        svc["prometheus"] = {"url": hanging.url, "error_rate_query": ERROR_RATE,
                             "error_rate_threshold": 0.05}
        svc["external_checks"] = [
            {"name": "OpenAI API", "url": f"{external.url}/v1/models"},
            {"name": "WAHA", "url": f"{hanging.url}/api/sessions", "timeout_seconds": 1}]

    h = make_harness(config_overrides=config)
    started = time.monotonic()
    d = _diagnose(h)
    took = time.monotonic() - started
    assert took < 6, f"the diagnosis took {took:.1f}s"  # the default bound alone is 10 s
    assert {"/api/v1/query", "/api/sessions"} <= {p.split("?")[0] for p in hanging.paths}
    checked = str(d["blocks"])
    assert "error rate: could not check within 1 s" in checked  # unknown, not a finding
    assert "OpenAI API: HTTP 200" in checked
    (finding,) = _sections(d)[1:]  # a dependency that does not answer is a finding
    assert "*External checks failing*" in finding and "WAHA: " in finding
    assert "timed out" in finding
    outcomes = {c["what"]: (c["outcome"], c["detail"])
                for c in _record(h).detail["checked"]}
    assert outcomes["error rate"] == ("unchecked", "could not check within 1 s")
    assert outcomes["WAHA"][0] == "problem" and outcomes["OpenAI API"][0] == "ok"
