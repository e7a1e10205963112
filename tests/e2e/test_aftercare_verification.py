"""Verification on real wires: a failing integrity query (real PostgreSQL) and a timing-out
health endpoint fail it; a retry after the fix passes and the notice has real downtime.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from bot.persistence.aftercare_store import AftercareStore
from handlers import ids
from sandbox.statuspage import StatuspageEmulator
from tests.e2e.conftest import CHANNEL, Harness, action_ids
from tests.secret_scan import register_secret
from tests.support.local_http import LocalServer
from tests.support.waiting import wait_until

DSN_PASSWORD = "pw-9c1f-do-not-post"
STATUSPAGE_KEY = "sp-key-4e7a-do-not-post"
HANG_SECONDS = 5.0  # upper bound of the hanging health answer; released at teardown


class HealthServer(LocalServer):
    """``/health`` answers 200, or hangs (a stuck dependency) while ``hang`` is set."""

    def __init__(self) -> None:
        self.hang = threading.Event()
        state = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

            def do_GET(self) -> None:
                if state.hang.is_set():
                    state.release.wait(HANG_SECONDS)
                body = b'{"status": "ok"}'
                try:
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except OSError:  # the checker timed out and hung up first
                    pass

        super().__init__(Handler)


@pytest.fixture
def health() -> Iterator[HealthServer]:
    server = HealthServer()
    yield server
    server.stop()


@pytest.fixture
def statuspage() -> Iterator[StatuspageEmulator]:
    page = StatuspageEmulator(api_key=STATUSPAGE_KEY).start()
    yield page
    page.stop()


def test_failed_verification_then_retry_and_completion_notice(
        make_harness: Callable[..., Harness], health: HealthServer, fresh_db: str, db: str,
        statuspage: StatuspageEmulator, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    with psycopg.connect(db, autocommit=True) as conn:  # messages must still say UTC
        conn.execute(sql.SQL("ALTER DATABASE {} SET timezone TO 'America/New_York'").format(
            sql.Identifier(conninfo_to_dict(db)["dbname"])))
    dsn = make_conninfo(fresh_db, password=DSN_PASSWORD)  # trust auth: accepted, unused
    monkeypatch.setenv("APP_DSN", dsn)
    monkeypatch.setenv("STATUSPAGE_KEY", STATUSPAGE_KEY)
    register_secret(DSN_PASSWORD, "the app DSN password")
    register_secret(STATUSPAGE_KEY, "the status page API key")

    def config(data: dict[str, Any]) -> None:
        svc = data["services"]["hotel-voice-bot"]
        svc["health"] = {"url": f"{health.url}/health", "timeout_seconds": 0.5, "samples": 3}
        svc["database"] = {"dsn_env": "APP_DSN", "backup_location": str(tmp_path / "b"),
                           "verify_queries": ["SELECT COUNT(*) FROM public.bot_messages"]}
        svc["stakeholders"]["statuspage"] = {"api_url": statuspage.api_url, "page_id": "page1",
                                             "api_key_env": "STATUSPAGE_KEY",
                                             "component_id": "cmp1"}
        data["aftercare"] = {"postmortem_dir": str(tmp_path / "pm")}

    h = make_harness(config_overrides=config)
    # The incident began 15 minutes before the request (03:00), said with the command.
    h.request('hotel-voice-bot --severity P1 --started 02:45 --reason "5xx after v1.3.0"')
    msg = h.rollback_message()
    rid = int(msg["text"].split()[0].removeprefix("RB-"))
    incident_start = datetime(2026, 11, 29, 2, 45, tzinfo=UTC)
    assert h.bot.store.get(rid).incident_started_at == incident_start
    h.click(msg, ids.ASSIGN_IC, "carol")
    h.emulator.wait_for(lambda: ids.ASSIGN_IC not in action_ids(h.message_now(msg["ts"])))
    health.hang.set()
    h.clock.advance(minutes=7)  # approval and execution at 03:07
    h.click(msg, ids.APPROVE, "bob")

    failed = h.wait_state(rid, "verification_failed", timeout=30)
    notice = _thread_message(h, msg, "Verification of")
    text = notice["text"]
    assert text.startswith(f"<@{h.emulator.user_id('carol')}>")  # the incident commander
    assert "❌ health: timed out after 0.5s (request 1 of 4)" in text
    assert ('❌ database: integrity query failed: SELECT COUNT(*) FROM public.bot_messages: '
            'relation "public.bot_messages" does not exist') in text
    assert "✅ resources: 3 units" in text
    assert "is now verification failed.* Failed: health (timed out" in text
    assert action_ids(notice) == [ids.RETRY, ids.ALERT_RESOLVE]
    assert failed.last_error.startswith("verification failed: health (timed out")
    # The state is committed before the request message is re-rendered: wait for the
    # re-render itself (reading it once raced it under load).
    h.emulator.wait_for(lambda: "Verification failed" in str(h.message_now(msg["ts"])["blocks"]),
                        timeout=10, description="the request message to say Verification failed")

    h.tick()  # stakeholders and status page hear about it; reminders start
    stakeholders = h.emulator.messages("hotel-voice-bot-stakeholders")
    assert "did not restore service" in stakeholders[-1]["text"]
    # The P1's incident opened at the request (investigating) and was identified at the
    # approval; the failed verification keeps it identified, with what failed, and the
    # component in (a P1's partial) outage.
    wait_until(lambda: (h.tick(), len(statuspage.incidents) == 1 and len(
        next(iter(statuspage.incidents.values()))["incident_updates"]) == 3)[1], 10, 0.05,
        "the status page's three updates")
    (incident,) = statuspage.incidents.values()
    assert (incident["status"], incident["components"]) == ("identified",
                                                            {"cmp1": "partial_outage"})
    assert "checks still fail (health, database)" in incident["incident_updates"][-1]["body"]

    with psycopg.connect(fresh_db, autocommit=True) as conn:  # the fix
        conn.execute("CREATE TABLE bot_messages (id int PRIMARY KEY)")
    health.hang.clear()
    health.release.set()
    h.clock.advance(minutes=5)  # retried at 03:12
    h.driver.click(CHANNEL, notice["ts"], ids.RETRY, "carol")
    h.wait_state(rid, "completed", timeout=30)
    h.emulator.wait_for(lambda: action_ids(h.emulator.message(CHANNEL, notice["ts"])) == [])
    assert "retried verification" in str(h.emulator.message(CHANNEL, notice["ts"])["blocks"])
    passed = _thread_message(h, msg, "passed (attempt 2)")["text"]
    assert "✅ health: HTTP 200; latency min" in passed
    assert "SELECT COUNT(*) FROM public.bot_messages → 0" in passed

    _wait_jobs(h, rid)
    h.tick()
    facts = AftercareStore(h.bot.store.pool).facts(rid)
    assert facts is not None and facts.restored_at is not None
    assert facts.steps_completed_at == datetime(2026, 11, 29, 3, 7, tzinfo=UTC)
    assert facts.restored_at == datetime(2026, 11, 29, 3, 12, tzinfo=UTC)
    # the database's default zone is New York, but the bot's sessions read UTC
    assert facts.restored_at.utcoffset() == timedelta(0)
    completed = next(m["text"] for m in h.emulator.messages("hotel-voice-bot-stakeholders")
                     if "Rollback Completed" in m["text"])
    for line in (
        "Hotel Voice Bot Rollback Completed",
        "• Version rolled back to: rev 2 (registry.example/app:v1.2.0) (from rev 3",
        "• Rollback completed at: 2026-11-29 03:07:00 UTC",
        "• Service restored at: 2026-11-29 03:12:00 UTC",
        "• Total downtime: 27 min 00 s (since the incident start at 2026-11-29 02:45:00 UTC, "
        "given by the requester)",
        "*Current status:* Service restored and verified (3 checks passed).",
        "• Post-incident review within 24 h (by 2026-11-30 03:07:00 UTC)",
        "• Post-mortem within 48 h (by 2026-12-01 03:07:00 UTC)",
    ):
        assert line in completed, f"{line!r} not in {completed!r}"
    assert facts.restored_at - incident_start == timedelta(minutes=27)
    wait_until(lambda: (h.tick(), statuspage.incidents[incident["id"]]["status"] == "resolved"
                        )[1], 10, 0.05, "the incident to be resolved")
    incident = statuspage.incidents[incident["id"]]
    assert [u["status"] for u in incident["incident_updates"]] == [
        "investigating", "identified", "identified", "monitoring", "resolved"]
    assert all(r["authorized"] for r in statuspage.requests)
    assert STATUSPAGE_KEY not in str(statuspage.requests)  # only in the header


def _thread_message(h: Harness, msg: dict[str, Any], needle: str) -> dict[str, Any]:
    found = h.emulator.wait_for(
        lambda: next((m for m in h.emulator.thread(CHANNEL, msg["ts"])[1:]
                      if needle in m.get("text", "")), None), timeout=10)
    return dict(found)


def _wait_jobs(h: Harness, rid: int) -> None:
    wait_until(lambda: any(j.payload.get("phase") == "stable" for j in h.bot.service.jobs.pending(
        rollback_id=rid, kinds=["aftercare_notify"])), 10, 0.02, "the stable notice's job")
