"""Emergency contacts and escalation (issue 15), through Slack's wire and PagerDuty's: the
decision deadline passed -> one trigger of the rollback's alert and the incident commander
and technical lead mentioned in the thread; approval -> acknowledge; completion -> resolve;
a reason that mentions security -> the security team; ``/rollback contacts``. Timers run
through ``tick()`` on the injected clock; the PagerDuty stand-in is ``sandbox/pagerduty``."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

from bot.integrations import target_database as database
from handlers import ids
from platforms.base import Target
from sandbox.pagerduty import PagerDutyEmulator
from tests.e2e.conftest import Harness, action_ids
from tests.secret_scan import register_secret
from tests.support.database import fresh_database
from tests.support.waiting import wait_until

SERVICE = "hotel-voice-bot"
ROUTING_KEY = "E2EPAGERDUTYROUTINGKEY0000000001"
KEY_ENV = "ROLLBACK_E2E_PAGERDUTY_KEY"


@pytest.fixture
def pagerduty(monkeypatch: pytest.MonkeyPatch) -> Iterator[PagerDutyEmulator]:
    monkeypatch.setenv(KEY_ENV, ROUTING_KEY)
    register_secret(ROUTING_KEY, "the e2e PagerDuty routing key")
    emulator = PagerDutyEmulator().start()
    yield emulator
    emulator.stop()


@pytest.fixture
def paged(make_harness: Callable[..., Harness], pagerduty: PagerDutyEmulator) -> Harness:
    """The sandbox harness with the service paging through the emulator."""
    def configure(data: dict[str, Any]) -> None:
        data["services"][SERVICE]["pagerduty"] = {"routing_key_env": KEY_ENV,
                                                  "events_url": pagerduty.events_url}
    return make_harness(config_overrides=configure)


def _request(h: Harness, text: str, *, user: str = "alice") -> tuple[Any, dict[str, Any]]:
    h.request(f"{SERVICE} {text}", user=user)
    msg = h.rollback_message()
    return h.bot.store.history(SERVICE)[0], msg


def _said(h: Harness, msg: dict[str, Any], needle: str) -> str:
    found = h.emulator.wait_for(
        lambda: next((t for t in h.thread_texts(msg) if needle in t), None), timeout=10)
    assert found, f"no thread line with {needle!r}: {h.thread_texts(msg)}"
    return str(found)


def _escalations(h: Harness, msg: dict[str, Any]) -> list[str]:
    return [t for t in h.thread_texts(msg) if "Escalation for RB-" in t]


def _events(h: Harness, rid: int) -> list[str]:
    return [e.event for e in h.bot.store.audit_events(rid)]


def _tick_until(h: Harness, done: Callable[[], object]) -> None:
    """Run due jobs until ``done``: a transition's listener queues its page right after the
    transition commits, on the thread that made it, so the state can be seen first."""
    # Not the emulator's wait_for: a tick calls Slack, and that predicate runs under the
    # emulator's lock.
    wait_until(lambda: h.tick() >= 0 and done(), timeout=10, message="the page never went out")


def _until(h: Harness, at: Any) -> None:
    h.clock.advance(seconds=max(0.0, (at - h.clock()).total_seconds()))


def test_deadline_pages_once_then_approval_acknowledges_and_completion_resolves(
        paged: Harness, pagerduty: PagerDutyEmulator) -> None:
    h = paged
    rb, msg = _request(h, '--severity P1 --reason "5xx after v1.3.0"')
    key = f"rollback-bot/RB-{rb.id}"
    _until(h, rb.decision_due_at - timedelta(seconds=1))
    h.tick()
    assert pagerduty.received() == []  # nothing before the deadline

    _until(h, rb.decision_due_at + timedelta(seconds=1))
    assert h.tick() == 1  # the decision deadline; it queues the page
    assert h.tick() == 1  # the page
    line = _said(h, msg, "Escalation for RB-")
    assert "the decision deadline passed with no decision" in line
    assert "*Incident commander* Carol Chen · <@U0CAROL>" in line
    assert "*Technical lead* Bob Brandt · <@U0BOB>" in line
    assert "<@U0DAVE>" not in line  # the DBA is not called for a decision
    assert "Paging through PagerDuty" in line
    [trigger] = pagerduty.accepted("trigger")
    assert trigger["dedup_key"] == key and trigger["routing_key"] == ROUTING_KEY
    assert trigger["payload"]["severity"] == "critical"
    assert trigger["payload"]["component"] == SERVICE
    assert f"RB-{rb.id}" in trigger["payload"]["summary"]
    assert trigger["payload"]["custom_details"]["escalated_to"] == ["Incident commander",
                                                                   "Technical lead"]
    h.clock.advance(minutes=1)
    assert h.tick() == 0  # escalated once, never again
    assert len(pagerduty.accepted("trigger")) == 1 and len(_escalations(h, msg)) == 1
    [alert] = pagerduty.alerts()
    assert (alert.dedup_key, alert.status) == (key, "triggered")
    assert [e.event for e in h.bot.store.audit_events(rb.id)].count("escalated") == 1

    h.click(msg, ids.ASSIGN_IC, "carol")
    h.emulator.wait_for(lambda: ids.ASSIGN_IC not in action_ids(h.message_now(msg["ts"])))
    h.click(msg, ids.APPROVE, "bob")
    h.wait_state(rb.id, "completed")  # monitoring is 0 s in the sandbox: done at once
    _tick_until(h, lambda: pagerduty.accepted("resolve"))
    assert [e["event_action"] for e in pagerduty.accepted()] == ["trigger", "acknowledge",
                                                                 "resolve"]
    assert all(e["dedup_key"] == key for e in pagerduty.accepted())
    assert pagerduty.alerts()[0].status == "resolved"
    h.clock.advance(minutes=1)
    h.tick()
    assert len(pagerduty.received()) == 3  # nothing sent twice


def test_a_page_job_run_again_after_a_crash_sends_nothing_twice(
        paged: Harness, pagerduty: PagerDutyEmulator) -> None:
    """A leader that dies after the send and its audit but before marking the job done: the
    next leader re-queues the row (``recover_running``) and runs it again."""
    h = paged
    rb, msg = _request(h, '--severity P1 --reason "5xx after v1.3.0"')
    _until(h, rb.decision_due_at)
    h.tick()
    h.tick()
    assert len(pagerduty.accepted("trigger")) == 1
    with h.bot.store.pool.connection() as conn:
        again = conn.execute("UPDATE scheduled_jobs SET status = 'pending', finished_at = NULL"
                             " WHERE kind = 'pagerduty_event'").rowcount
    assert again == 1
    assert h.tick() == 1  # it ran, and found its event already sent
    assert len(pagerduty.received()) == 1 and len(_escalations(h, msg)) == 1


def test_a_rollback_never_escalated_pages_nobody(paged: Harness,
                                                 pagerduty: PagerDutyEmulator) -> None:
    h = paged
    rb, msg = _request(h, "--severity P0 --scope app", user="bob")
    h.click(msg, ids.APPROVE, "bob")
    h.wait_state(rb.id, "completed")
    h.tick()
    assert pagerduty.received() == [] and _escalations(h, msg) == []


def test_a_reason_that_mentions_security_calls_the_security_team(
        paged: Harness, pagerduty: PagerDutyEmulator) -> None:
    h = paged
    group = h.emulator.add_usergroup("security-team", ["dave"], name="Security team")
    rb, msg = _request(h, '--severity P2 --reason "Security: leaked token in v1.3.0"')
    line = _said(h, msg, "Escalation for RB-")
    assert "the reason mentions security" in line
    assert f"*Security team* Security team · <!subteam^{group.id}>" in line
    assert "security@example.com" in line and "<@U0CAROL>" not in line
    h.emulator.wait_for(lambda: "escalated" in _events(h, rb.id))  # its page is queued
    h.tick()
    [trigger] = pagerduty.accepted("trigger")
    assert trigger["dedup_key"] == f"rollback-bot/RB-{rb.id}"
    # Cancelled by a person: the alert is resolved.
    h.click(msg, ids.CANCEL, "alice")
    h.wait_state(rb.id, "cancelled")
    _tick_until(h, lambda: pagerduty.accepted("resolve"))
    assert [e["event_action"] for e in pagerduty.accepted()] == ["trigger", "resolve"]
    assert pagerduty.alerts()[0].status == "resolved"


def test_a_reason_without_the_word_calls_nobody(harness: Harness) -> None:
    h = harness
    _, msg = _request(h, '--severity P2 --reason "insecurity of the cache layer"')
    h.emulator.wait_for(lambda: "Assessment" in str(h.message_now(msg["ts"])["blocks"]))
    assert _escalations(h, msg) == []


def test_without_pagerduty_the_deadline_still_mentions_the_contacts(harness: Harness) -> None:
    h = harness
    rb, msg = _request(h, '--severity P1 --reason "5xx after v1.3.0"')
    _until(h, rb.decision_due_at)
    assert h.tick() == 1  # the deadline only: no page queued
    line = _said(h, msg, "Escalation for RB-")
    assert "<@U0CAROL>" in line and "<@U0BOB>" in line and "PagerDuty" not in line


def test_a_page_pagerduty_refuses_is_said_in_the_thread_and_retried(
        make_harness: Callable[..., Harness], pagerduty: PagerDutyEmulator) -> None:
    def configure(data: dict[str, Any]) -> None:  # one attempt per run: the job retries
        data["services"][SERVICE]["pagerduty"] = {
            "routing_key_env": KEY_ENV, "events_url": pagerduty.events_url, "max_attempts": 1}
    h = make_harness(config_overrides=configure)
    rb, msg = _request(h, '--severity P1 --reason "5xx after v1.3.0"')
    pagerduty.fail_next(503)
    _until(h, rb.decision_due_at)
    h.tick()
    assert h.tick() == 0  # the page's run failed: not counted, rescheduled
    line = _said(h, msg, "PagerDuty did not accept the trigger")
    assert "503" in line and "Retrying with backoff" in line
    assert ROUTING_KEY not in line
    assert pagerduty.accepted() == []
    assert h.tick() == 0  # not before its backoff (2 s after the first failure)
    h.clock.advance(seconds=3)
    assert h.tick() == 1
    assert len(pagerduty.accepted("trigger")) == 1
    assert [r.status for r in pagerduty.received()] == [503, 202]


def test_contacts_command_lists_the_service_contacts(harness: Harness) -> None:
    h = harness
    h.request(f"contacts {SERVICE}", user="dave")
    text = h.wait_ephemeral("dave", "Emergency contacts of hotel-voice-bot")
    assert "*Incident commander* Carol Chen · <@U0CAROL>" in text
    assert "+1 415 555 0100" in text and "carol@example.com" in text
    assert "*DBA* Dave Diaz · <@U0DAVE>" in text and "@security-team" in text
    assert "no PagerDuty configured" in text
    assert h.bot.store.history(SERVICE) == []  # read-only


def test_contacts_of_an_unknown_service_is_refused(harness: Harness) -> None:
    h = harness
    h.request("contacts no-such-service", user="dave")
    assert "no-such-service" in h.wait_ephemeral("dave", "Unknown service")


def test_the_request_message_shows_the_contacts(harness: Harness) -> None:
    h = harness
    _, msg = _request(h, '--severity P2 --reason "5xx after v1.3.0"')
    blocks = str(h.message_now(msg["ts"])["blocks"])
    assert "*Emergency contacts*" in blocks
    assert "*Technical lead* Bob Brandt · <@U0BOB>" in blocks


def test_help_lists_the_contacts_command(harness: Harness) -> None:
    h = harness
    h.request("help", user="dave")
    assert "contacts <service>" in h.wait_ephemeral("dave", "contacts")


# ------------------------------------------------------------ a restore that needs a human
APP_DSN_ENV = "HVB_ESCALATION_APP_DATABASE_URL"


@pytest.fixture
def db_paged(make_harness: Callable[..., Harness], pagerduty: PagerDutyEmulator,
             database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
             ) -> Iterator[Harness]:
    """The paged harness with a service database (a real one) and a backup to restore."""
    backups = tmp_path / "backups"
    with fresh_database(database_url, prefix="app") as url:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("CREATE TABLE bot_messages (id int PRIMARY KEY, body text NOT NULL)")
            conn.execute("INSERT INTO bot_messages VALUES (1, 'hello')")
        monkeypatch.setenv(APP_DSN_ENV, url)

        def configure(data: dict[str, Any]) -> None:
            svc = data["services"][SERVICE]
            svc["pagerduty"] = {"routing_key_env": KEY_ENV, "events_url": pagerduty.events_url}
            svc["database"] = {"dsn_env": APP_DSN_ENV, "backup_location": str(backups)}

        h = make_harness(config_overrides=configure)
        database.backup(url, location=backups, service=SERVICE,
                        now=h.clock() - timedelta(minutes=10))
        yield h


def test_a_restore_that_stops_for_a_human_calls_the_dba_and_the_commander(
        db_paged: Harness, pagerduty: PagerDutyEmulator) -> None:
    h = db_paged
    rb, msg = _request(h, "--severity P0 --scope app,db", user="bob")
    restore = next(s for s in h.bot.store.steps(rb.id) if s.kind == "restore_db")
    pinned = Path(restore.params["backup_path"])
    pinned.write_bytes(b"\0" * pinned.stat().st_size)  # garbage only pg_restore notices
    h.click(msg, ids.APPROVE, "carol")
    h.emulator.wait_for(lambda: h.emulator.open_views("carol"))
    h.driver.submit_view("carol", {"confirm_service": SERVICE})
    h.wait_state(rb.id, "needs_attention", timeout=40)
    line = _said(h, msg, "Escalation for RB-")
    assert "the rollback stopped and needs a human" in line and "Restore" in line
    assert "*DBA* Dave Diaz · <@U0DAVE>" in line and "<@U0CAROL>" in line
    assert "<@U0BOB>" not in line  # the technical lead is the deadline's, not this rule's
    h.tick()
    [trigger] = pagerduty.accepted("trigger")
    assert trigger["dedup_key"] == f"rollback-bot/RB-{rb.id}"
    assert trigger["payload"]["custom_details"]["escalated_to"] == ["DBA",
                                                                   "Incident commander"]
    # A person closes it once the service is back: the alert is resolved.
    h.platform.scale(Target("fake", "production", SERVICE), 3)
    h.click(msg, ids.RESOLVE, "carol")
    h.wait_state(rb.id, "failed")
    _tick_until(h, lambda: pagerduty.accepted("resolve"))  # paged after the approval:
    # nothing to acknowledge, only to resolve
    assert [e["event_action"] for e in pagerduty.accepted()] == ["trigger", "resolve"]
    assert pagerduty.alerts()[0].status == "resolved"
