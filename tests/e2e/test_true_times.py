"""True times through the wire: the incident start typed with ``--started`` (or in the form)
counts the downtime in the stakeholder notice and the post-mortem; a database restore shows
its data-loss window in the plan before approval and in every record after (a real
PostgreSQL target database, real pg_dump/pg_restore). The clock is the harness' injected one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

from bot.integrations import target_database as database
from bot.persistence.aftercare_store import AftercareStore
from handlers import ids
from tests.e2e.conftest import CHANNEL, Harness, action_ids
from tests.support import messages
from tests.support.database import fresh_database
from tests.support.waiting import wait_until

SERVICE = "hotel-voice-bot"
STAKEHOLDERS = "hotel-voice-bot-stakeholders"
APP_DSN_ENV = "HVB_TRUE_TIMES_DSN"
T0 = datetime(2026, 11, 29, 3, 0, tzinfo=UTC)  # the harness clock's start


def _postmortem_config(tmp: Path) -> Callable[[dict[str, Any]], None]:
    def change(data: dict[str, Any]) -> None:
        data["aftercare"] = {"postmortem_dir": str(tmp / "post-mortems")}
    return change


def _request(h: Harness, text: str, *, user: str) -> tuple[int, dict[str, Any]]:
    before = len(h.bot.store.history(SERVICE))
    h.request(f"{SERVICE} {text}", user=user)
    h.emulator.wait_for(lambda: len(h.bot.store.history(SERVICE)) > before, timeout=15,
                        description="the request to be recorded")
    rid = h.bot.store.history(SERVICE)[0].id
    return rid, h.rollback_message(rid)


def _notified_and_reminded(h: Harness, rid: int) -> None:
    """Run the stakeholder notices and the reminders once they are scheduled (they are
    scheduled right after the transitions they follow: no Slack call to wait on)."""
    wait_until(lambda: h.bot.service.jobs.pending(rollback_id=rid, kinds=["reminder"]), 10, 0.02,
               "the reminders to be scheduled")
    h.tick()


def _completion_notice(h: Harness) -> str:
    found = h.emulator.wait_for(lambda: next(
        (m["text"] for m in h.emulator.messages(STAKEHOLDERS)
         if "Rollback Completed" in m.get("text", "")), None), timeout=10,
        description="the completion notice")
    return str(found)


def _skeleton(h: Harness, tmp: Path, rid: int) -> str:
    installation = AftercareStore(h.bot.store.pool).installation_id()
    path = tmp / "post-mortems" / f"2026-11-29-{installation}-{SERVICE}-rb-{rid}.md"
    wait_until(path.exists, 10, 0.02, "the post-mortem skeleton")
    return path.read_text()


# ---------------------------------------------------------------------- incident start
def test_p1_downtime_counts_from_the_start_given_with_the_command(
        make_harness: Callable[..., Harness], tmp_path: Path) -> None:
    h = make_harness(config_overrides=_postmortem_config(tmp_path))
    rid, msg = _request(h, '--severity P1 --started 40m --reason "5xx after v1.3.0"',
                        user="alice")
    rb = h.bot.store.get(rid)
    started = T0 - timedelta(minutes=40)
    assert (rb.incident_started_at, rb.incident_start_source) == (started, "given")
    assert rb.created_at == T0
    assert ("Incident started 2026-11-29 02:20 UTC (given by the requester, 40 min 00 s "
            "before the request)") in str(msg["blocks"])

    h.click(msg, ids.ASSIGN_IC, "carol")
    h.emulator.wait_for(lambda: ids.ASSIGN_IC not in action_ids(h.message_now(msg["ts"])))
    h.clock.advance(minutes=5)  # approved, executed and verified at 03:05
    h.click(msg, ids.APPROVE, "bob")
    h.wait_state(rid, "completed", timeout=30)
    _notified_and_reminded(h, rid)

    notice = _completion_notice(h)
    assert "• Service restored at: 2026-11-29 03:05:00 UTC" in notice
    assert ("• Total downtime: 45 min 00 s (since the incident start at 2026-11-29 02:20:00 UTC, "
            "given by the requester)") in notice
    skeleton = _skeleton(h, tmp_path, rid)
    impact = skeleton.split("## Impact", 1)[1].split("## Data loss", 1)[0]
    assert "- **Incident started:** 2026-11-29 02:20:00 UTC (given by the requester)" in impact
    assert ("- **Service restored:** 2026-11-29 03:05:00 UTC (first passing verification)"
            in impact)
    assert "- **Downtime:** 45 min 00 s" in impact
    assert "None: the database was not part of this rollback." in skeleton
    requested = next(e for e in h.bot.store.audit_events(rid) if e.event == "requested")
    assert requested.detail["incident_started_at"] == started.isoformat()


def test_the_request_form_takes_the_start_and_names_the_default(
        make_harness: Callable[..., Harness]) -> None:
    h = make_harness()
    h.request(SERVICE)
    view = h.emulator.wait_for(lambda: next(
        (v for v in h.emulator.open_views("alice") if v.get("callback_id") == ids.REQUEST_MODAL
         and any(b.get("block_id") == "incident_started" for b in v["blocks"])), None),
        description="the filled-in request form")
    field = next(b for b in view["blocks"] if b.get("block_id") == "incident_started")
    assert field["optional"] is True
    # The fake platform dates no revision and no watcher runs: the request time.
    assert "Empty: 2026-11-29 03:00 UTC (the time of the rollback request)" in \
        field["hint"]["text"]
    h.driver.submit_view("alice", {"severity": "P2", "scope": ["app"],
                                   "incident_started": "02:35"})
    rb = h.emulator.wait_for(lambda: next(iter(h.bot.store.history(SERVICE)), None))
    assert (rb.incident_started_at, rb.incident_start_source) == (
        datetime(2026, 11, 29, 2, 35, tzinfo=UTC), "given")


@pytest.mark.parametrize("started,words", [
    ("03:30", "is in the future"),
    ("2026-11-20T09:00Z", "more than 7 days ago"),
    ("yesterday", "use `40m`"),
])
def test_a_start_in_the_future_or_absurdly_old_is_refused_and_nothing_recorded(
        harness: Harness, started: str, words: str) -> None:
    h = harness
    h.request(f"{SERVICE} --severity P1 --started {started}", user="alice")
    said = h.wait_ephemeral("alice", words)
    assert f"--started {started}" in said
    assert h.bot.store.history(SERVICE) == []
    assert h.emulator.messages(CHANNEL) == []


def test_without_a_start_the_request_time_is_the_default_and_says_so(harness: Harness) -> None:
    h = harness
    rid, msg = _request(h, "--severity P1", user="alice")
    rb = h.bot.store.get(rid)
    assert (rb.incident_started_at, rb.incident_start_source) == (T0, "request")
    assert ("Incident started 2026-11-29 03:00 UTC (the time of the rollback request)"
            in str(msg["blocks"]))


# ---------------------------------------------------------------------- data-loss window
@pytest.fixture
def app_db(database_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The service's own database, which a db-scope rollback backs up and restores."""
    with fresh_database(database_url, prefix="app") as url:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("CREATE TABLE bot_messages (id int PRIMARY KEY, body text NOT NULL)")
            conn.execute("INSERT INTO bot_messages VALUES (1, 'hello')")
        monkeypatch.setenv(APP_DSN_ENV, url)
        yield url


def test_p0_database_restore_shows_the_data_loss_window_before_approval_and_after(
        make_harness: Callable[..., Harness], app_db: str, tmp_path: Path) -> None:
    backups = tmp_path / "backups"

    def configure(data: dict[str, Any]) -> None:
        data["services"][SERVICE]["database"] = {
            "dsn_env": APP_DSN_ENV, "backup_location": str(backups),
            "verify_queries": ["SELECT COUNT(*) FROM public.bot_messages"]}
        data["aftercare"] = {"postmortem_dir": str(tmp_path / "post-mortems")}

    h = make_harness(config_overrides=configure)
    taken = T0 - timedelta(minutes=10)  # the nightly backup, by the bot's clock
    database.backup(app_db, location=backups, service=SERVICE, now=taken)
    with psycopg.connect(app_db, autocommit=True) as conn:  # written after the backup
        conn.execute("INSERT INTO bot_messages VALUES (2, 'after the backup')")

    rid, msg = _request(h, "--severity P0 --scope app,db --started 2026-11-29T02:40Z",
                        user="bob")
    plan = str(msg["blocks"])
    assert ("*Data written after 2026-11-29 02:50 UTC will be lost* (about 10 min 00 s as of "
            "this plan, more until the restore runs; the pre-restore dump keeps a copy)") in plan
    assert h.bot.store.get(rid).data_loss_from is None  # nothing is lost before the restore

    h.clock.advance(minutes=5)  # the restore runs at 03:05
    h.click(msg, ids.APPROVE, "carol")
    view = h.emulator.wait_for(lambda: next(iter(h.emulator.open_views("carol")), None))
    assert "Data written after 2026-11-29 02:50 UTC will be lost" in str(view["blocks"])
    h.driver.submit_view("carol", {"confirm_service": SERVICE})
    rb = h.wait_state(rid, "completed", timeout=40)
    assert (rb.data_loss_from, rb.data_loss_to) == (taken, T0 + timedelta(minutes=5))
    with psycopg.connect(app_db) as conn:  # the restore did lose what the window says
        assert conn.execute("SELECT id FROM bot_messages ORDER BY id").fetchall() == [(1,)]

    final = h.message_now(msg["ts"])
    assert ("*Data loss:* writes between 2026-11-29 02:50 and 03:05 UTC are not in the restored "
            "database (15 min 00 s).") in str(final["blocks"])
    h.request(f"status RB-{rid}", user="bob")
    h.wait_ephemeral("bob", "data loss 2026-11-29 02:50–03:05 UTC (15 min 00 s)")

    _notified_and_reminded(h, rid)
    notice = _completion_notice(h)
    assert ("• Total downtime: 25 min 00 s (since the incident start at 2026-11-29 02:40:00 UTC, "
            "given by the requester)") in notice
    assert ("• Data loss: writes between 2026-11-29 02:50:00 UTC (the backup) and 2026-11-29 "
            "03:05:00 UTC (the restore) are not in the restored database (15 min 00 s)") in notice

    skeleton = _skeleton(h, tmp_path, rid)
    loss = skeleton.split("## Data loss", 1)[1].split("## Root cause", 1)[0]
    assert ("- **Window:** writes from 2026-11-29 02:50:00 UTC (the restored backup's "
            "timestamp) to 2026-11-29 03:05:00 UTC (the restore) are not in the restored "
            "database (15 min 00 s).") in loss
    dump = next(s for s in h.bot.store.steps(rid) if s.kind == "backup_db").result["file"]
    assert f"the pre-restore dump `{dump}`" in loss
    assert "| Data-loss window recorded (database restore) |" in skeleton
    assert "- **Downtime:** 25 min 00 s" in skeleton.split("## Impact", 1)[1]
    assert messages.request_ref(msg) == rid
