"""The stakeholder notice by e-mail, end to end: a rollback completed through Slack (the
emulator, signed requests, the real bot on real PostgreSQL) sends its notice to the
stakeholder channel and, through a real SMTP server (aiosmtpd), to the e-mail list; a relay
that answers 4xx gets the same message again after the scheduler's backoff, one that
answers 5xx gets nothing more and the thread says so. Jobs run through ``h.tick()`` on the
harness's clock.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from handlers.email_text import plain
from tests.e2e.conftest import Harness
from tests.support.smtp_server import SmtpServer, stakeholder_emails
from tests.support.waiting import wait_until

STAKEHOLDERS = "hotel-voice-bot-stakeholders"
EMAILS = ["ops@example.com", "gm@hotel.example"]


def _completed(h: Harness) -> tuple[int, dict[str, Any]]:
    rid, msg = h.request_and_approve_p0()
    h.wait_state(rid, "completed")
    return rid, msg


def _tick_until(h: Harness, what: Callable[[], Any], message: str) -> Any:
    """Run due jobs until ``what`` holds: the e-mail job is scheduled by the notice job, so
    it is due from the tick after it (the clock does not move)."""
    return wait_until(lambda: h.tick() >= 0 and what(), timeout=20, message=message)


def _events(h: Harness, rid: int, name: str) -> list[Any]:
    """The notices' e-mail events (the post-mortem meeting's, to the contacts, aside:
    tests/e2e/test_postmortem_meeting_email.py)."""
    return [e for e in h.bot.store.audit_events(rid) if e.event == name
            and e.detail.get("phase") != "postmortem_meeting"]


def _notices(smtp: SmtpServer) -> list[Any]:
    """The stakeholder notices received (not the post-mortem meeting invitation)."""
    return [m for m in smtp.messages()
            if not str(m.message["Subject"]).startswith("Post-mortem meeting")]


def test_a_completed_rollback_notice_arrives_in_slack_and_by_email(
        make_harness: Callable[..., Harness], smtp: SmtpServer) -> None:
    h = make_harness(config_overrides=stakeholder_emails(smtp, EMAILS))
    rid, _msg = _completed(h)
    mail = _tick_until(h, lambda: next((m for m in smtp.messages() if str(
        m.message["Subject"]).startswith("[Resolved]")), None), "the restored e-mail")
    slack = next(m for m in h.emulator.messages(STAKEHOLDERS)
                 if "Rollback Completed" in m.get("text", ""))

    assert mail.rcpt_tos == tuple(EMAILS)
    assert mail.message["To"] == ", ".join(EMAILS)
    assert mail.message["Subject"] == ("[Resolved] hotel-voice-bot rolled back to rev 2 "
                                       f"(registry.example/app:v1.2.0) (RB-{rid})")
    body = mail.message.get_content().replace("\r\n", "\n")
    assert body.startswith("Hotel Voice Bot Rollback Completed\n")
    # The Slack notice's own lines, markup taken out: the same notice, not a second text.
    slack_lines = [plain(line) for line in str(slack["text"]).splitlines()
                   if "Total downtime" in line or "Version rolled back to" in line]
    assert len(slack_lines) == 2 and all(line in body for line in slack_lines), (slack_lines, body)
    assert "Total downtime: 0 s (since the rollback request at 2026-11-29 03:00:00 UTC)" in body
    assert "*" not in body and "&gt;" not in body and ":white_check_mark:" not in body

    sent = _events(h, rid, "stakeholder_email_sent")[0]
    assert sent.actor == "bot" and sent.detail["message_id"] == mail.message_id
    assert sent.detail["to"] == EMAILS and sent.detail["phase"] == "restored"
    # The next phase's update ("stable") goes both ways too; nothing is sent twice.
    _tick_until(h, lambda: len(_notices(smtp)) == 2, "the stable update's e-mail")
    h.clock.advance(hours=1)
    for _ in range(3):
        h.tick()
    first, stable = _notices(smtp)
    assert first.message_id == mail.message_id != stable.message_id
    assert stable.message["Subject"] == f"[Stable] Hotel Voice Bot stable (RB-{rid})"
    updates = [m["text"] for m in h.emulator.messages(STAKEHOLDERS)]
    assert sum("Rollback Completed" in t for t in updates) == 1
    assert sum("Hotel Voice Bot stable" in t for t in updates) == 1
    assert len(_events(h, rid, "stakeholder_email_sent")) == 2


def test_a_4xx_answer_is_retried_after_the_backoff_with_the_same_message(
        make_harness: Callable[..., Harness], smtp: SmtpServer) -> None:
    smtp.data_replies.append("451 4.3.0 Mail server temporarily rejected message")
    h = make_harness(config_overrides=stakeholder_emails(smtp, EMAILS))
    rid, msg = _completed(h)
    _tick_until(h, lambda: smtp.data_commands >= 1, "the first DATA")
    restored = [j for j in h.bot.service.jobs.pending(rollback_id=rid,
                                                      kinds=["stakeholder_email"])
                if j.payload["phase"] == "restored"]
    assert [m.message["Subject"] for m in smtp.messages()
            if m.message["Subject"].startswith("[Resolved]")] == []
    [job] = restored  # refused once, waiting for its backoff
    assert job.attempts == 1 and (job.due_at - h.clock()).total_seconds() == 2
    h.tick()
    assert not any(m.message["Subject"].startswith("[Resolved]") for m in smtp.messages())

    h.clock.advance(seconds=2)
    mail = _tick_until(h, lambda: next((m for m in smtp.messages()
                                        if m.message["Subject"].startswith("[Resolved]")),
                                       None), "the retried e-mail")
    sent = next(e for e in _events(h, rid, "stakeholder_email_sent")
                if e.detail["phase"] == "restored")
    assert sent.detail["attempt"] == 2 and sent.detail["message_id"] == mail.message_id
    assert not _events(h, rid, "stakeholder_email_failed")
    assert not any("not e-mailed" in t for t in h.thread_texts(msg))
    h.clock.advance(hours=1)
    h.tick()
    assert sum(m.message["Subject"].startswith("[Resolved]") for m in smtp.messages()) == 1


def test_a_5xx_answer_stops_audits_and_tells_the_thread_without_touching_the_rollback(
        make_harness: Callable[..., Harness], smtp: SmtpServer) -> None:
    smtp.data_replies.extend(["554 5.7.1 Message rejected by policy"] * 5)  # every message
    h = make_harness(config_overrides=stakeholder_emails(smtp, EMAILS))
    rid, msg = _completed(h)
    _tick_until(h, lambda: smtp.data_commands >= 1, "the DATA")
    warning = h.emulator.wait_for(
        lambda: next((t for t in h.thread_texts(msg) if "not e-mailed" in t), None), timeout=10)
    assert "The restored update was not e-mailed to ops@example.com, gm@hotel.example" in warning
    assert "554 5.7.1 Message rejected by policy" in warning and "by hand" in warning
    failed = _events(h, rid, "stakeholder_email_failed")[0]
    assert failed.detail["code"] == 554 and failed.detail["phase"] == "restored"
    assert h.bot.store.get(rid).state.value == "completed"  # a decoration: nothing moved
    # The Slack notice went out regardless.
    assert any("Rollback Completed" in m.get("text", "")
               for m in h.emulator.messages(STAKEHOLDERS))

    h.clock.advance(hours=1)
    for _ in range(3):
        h.tick()
    # Each phase's e-mail (restored, then stable) was tried once and never again.
    failures = _events(h, rid, "stakeholder_email_failed")
    assert [e.detail["phase"] for e in failures] == ["restored", "stable"]
    # Two notices and the post-mortem meeting (to the contacts) met the same 554.
    assert smtp.data_commands == 3 and smtp.messages() == []
    meeting = [t for t in h.thread_texts(msg) if "post-mortem meeting invitation" in t]
    assert len(meeting) == 1 and "dave@example.com" in meeting[0], meeting
    warnings = [t for t in h.thread_texts(msg) if "update was not e-mailed" in t]
    assert len(warnings) == 2 and "The stable update" in warnings[1]
