"""The post-mortem meeting by e-mail: with a relay configured, the first post-mortem reminder
sends its 30-minute ``.ics`` invitation to the service's emergency contacts that have an
address, through the same outbox and job as the stakeholder notice, once; a real SMTP
server (aiosmtpd) receives it and icalendar reads the attachment back."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import icalendar

from tests.e2e.conftest import Harness
from tests.support.smtp_server import SmtpServer
from tests.support.waiting import wait_until

CONTACTS = {"incident_commander": {"name": "Carol", "slack": "U0CAROL",
                                   "email": "carol@example.com"},
            "dba": {"name": "Dave", "email": "dave@example.com"},
            "devops": {"name": "Ops", "phone": "+1 415 555 0100"}}  # no address: not mailed


def _config(server: SmtpServer, *, contacts: dict[str, Any]) -> Callable[[dict[str, Any]], None]:
    def change(data: dict[str, Any]) -> None:
        data["smtp"] = server.smtp_config()
        data["services"]["hotel-voice-bot"]["contacts"] = contacts
    return change


def _invitations(server: SmtpServer) -> list[Any]:
    return [m for m in server.messages()
            if str(m.message["Subject"]).startswith("Post-mortem meeting")]


def test_the_meeting_invitation_is_mailed_to_the_contacts_once(
        make_harness: Callable[..., Harness], smtp: SmtpServer) -> None:
    h = make_harness(config_overrides=_config(smtp, contacts=CONTACTS))
    rid, _msg = h.request_and_approve_p0()
    h.wait_state(rid, "completed")
    mail = wait_until(lambda: h.tick() >= 0 and next(iter(_invitations(smtp)), None),
                      timeout=20, message="the meeting invitation by e-mail")
    assert mail.rcpt_tos == ("carol@example.com", "dave@example.com")
    assert str(mail.message["Subject"]) == \
        f"Post-mortem meeting: hotel-voice-bot RB-{rid} (30 min)"
    (part,) = [p for p in mail.message.iter_attachments()]
    assert part.get_content_type() == "text/calendar"
    assert part.get_param("method") == "PUBLISH"  # the object's own METHOD (RFC 6047 2.4)
    assert part.get_filename() == f"postmortem-meeting-RB-{rid}.ics"
    raw = part.get_payload(decode=True)
    slack_copy = next(f for f in h.emulator.files()
                      if f["name"] == f"postmortem-meeting-RB-{rid}.ics")
    assert raw == h.emulator.file_content(slack_copy["id"])  # the same invitation both ways
    (event,) = icalendar.Calendar.from_ical(raw).walk("VEVENT")
    assert event.decoded("DTEND") - event.decoded("DTSTART") == timedelta(minutes=30)
    assert event.decoded("DTEND") <= datetime(2026, 12, 1, 3, 0, tzinfo=UTC)
    sent = [e for e in h.bot.store.audit_events(rid) if e.event == "stakeholder_email_sent"
            and e.detail["phase"] == "postmortem_meeting"]
    assert len(sent) == 1 and sent[0].detail["message_id"] == mail.message_id

    h.clock.advance(hours=49)  # later reminders, and runs again: no second invitation
    for _ in range(4):
        h.tick()
    assert len(_invitations(smtp)) == 1


def test_without_an_address_among_the_contacts_nothing_is_mailed(
        make_harness: Callable[..., Harness], smtp: SmtpServer) -> None:
    h = make_harness(config_overrides=_config(smtp, contacts={"devops": CONTACTS["devops"]}))
    rid, _msg = h.request_and_approve_p0()
    h.wait_state(rid, "completed")
    wait_until(lambda: h.tick() >= 0 and any(
        f["name"] == f"postmortem-meeting-RB-{rid}.ics" for f in h.emulator.files()),
        timeout=20, message="the invitation in the thread")
    for _ in range(3):
        h.tick()
    assert _invitations(smtp) == []
