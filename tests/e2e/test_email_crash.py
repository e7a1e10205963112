"""The stakeholder e-mail survives a crash: real ``rollback-bot serve`` processes, SIGKILLed.

Process A (the crash tests' entry point, ``tests/support/bot_main.py``, on real PostgreSQL,
driven over signed HTTP by the Slack emulator) completes a rollback; its scheduler queues
the "restored" e-mail (rendered into the outbox with its Message-ID) and parks at a crash
point in the e-mail job. The test SIGKILLs it there. Process B starts on the same database,
takes the scheduler over, re-queues the job A was running and sends the e-mail to the SMTP
server (aiosmtpd, in the test process, so it outlives both bots).

* killed between render and send: the server gets exactly one e-mail, with the Message-ID
  fixed at render time;
* killed after the server's 250 but before the row was marked sent: B sends it again, and
  both copies carry the same Message-ID (the one duplicate SMTP cannot rule out, which the
  receiving side can recognise; see ``bot.persistence.mail_outbox``).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from bot.persistence.mail_outbox import MailOutbox
from tests.e2e.crash_support import CrashRig, crash_rig
from tests.support.smtp_server import SmtpServer
from tests.support.waiting import wait_until

REQUEST = "hotel-voice-bot --severity P0 --scope app --reason mail-drill"
RESTORED = "email:stakeholders:*:restored:*"  # the key holds the rollback's id and attempt
EMAILS = ["ops@example.com", "gm@hotel.example"]


@pytest.fixture
def rig(tmp_path: Path, db: str, fresh_db: str, smtp: SmtpServer) -> Iterator[CrashRig]:
    with crash_rig(tmp_path, db, fresh_db) as r:
        r.seed()
        data = yaml.safe_load(r.config_path.read_text())
        data["smtp"] = smtp.smtp_config()
        data["services"]["hotel-voice-bot"]["stakeholders"]["email"] = EMAILS
        r.config_path.write_text(yaml.safe_dump(data))  # every process reads it at start
        yield r


def _restored(smtp: SmtpServer) -> list[str]:
    """Message-IDs of the "restored" e-mails the server accepted, in order."""
    return [m.message_id for m in smtp.messages()
            if str(m.message["Subject"]).startswith("[Resolved] hotel-voice-bot rolled back")]


def _kill_at(rig: CrashRig, smtp: SmtpServer, fault: str) -> tuple[int, str, MailOutbox]:
    """A completes the rollback and parks at ``fault`` (``ROLLBACK_FAULT_SEND`` or ``_POST``)
    in the restored e-mail's job; SIGKILL. Returns (rollback id, outbox key, outbox)."""
    fault_file = rig.tmp / "fault-hold"
    a = rig.start_bot("bot-A", env={fault: RESTORED, "ROLLBACK_FAULT_FILE": str(fault_file)})
    rollback_id, _msg = rig.request_and_approve(a, REQUEST)
    announced = rig.wait_fault(a, fault_file).split()
    key = f"email:stakeholders:{rollback_id}:restored:1"
    assert announced[0] == str(a.pid) and announced[-1] == key
    a.kill()
    assert a.popen.returncode == -9
    assert rig.store.get(rollback_id).state.value == "completed"  # e-mail held nothing up
    return rollback_id, key, MailOutbox(rig.store.pool)


def test_a_crash_between_render_and_send_sends_exactly_one_email(
        rig: CrashRig, smtp: SmtpServer) -> None:
    rollback_id, key, outbox = _kill_at(rig, smtp, "ROLLBACK_FAULT_SEND")
    # A died with the message rendered and the attempt counted, before any SMTP session.
    rendered = outbox.mail(key)
    assert rendered is not None and rendered.recipients == tuple(EMAILS)
    assert outbox.status(key) == ("sending", 1, None)
    assert _restored(smtp) == [] and smtp.data_commands == 0

    b = rig.start_bot("bot-B")
    wait_until(lambda: (outbox.status(key) or ("",))[0] == "sent", timeout=30,
               message="B to send the e-mail A left", diagnostics=rig.diagnostics)
    assert _restored(smtp) == [rendered.message_id]  # exactly one, as rendered by A
    assert outbox.status(key) == ("sent", 2, None)
    sent = [e for e in rig.store.audit_events(rollback_id)
            if e.event == "stakeholder_email_sent" and e.detail["phase"] == "restored"]
    assert len(sent) == 1 and sent[0].detail["attempt"] == 2
    # B goes on (the "stable" update is e-mailed too); the restored one never again.
    wait_until(lambda: len(smtp.messages()) >= 2, timeout=30,
               message="the stable update's e-mail", diagnostics=lambda: b.tail())
    assert _restored(smtp) == [rendered.message_id]


def test_a_crash_after_the_relay_took_it_resends_it_with_the_same_message_id(
        rig: CrashRig, smtp: SmtpServer) -> None:
    """The window SMTP cannot close: the relay's 250 arrived, the row was not marked."""
    _rollback_id, key, outbox = _kill_at(rig, smtp, "ROLLBACK_FAULT_POST")
    rendered = outbox.mail(key)
    assert rendered is not None
    assert _restored(smtp) == [rendered.message_id]  # the relay has it
    assert outbox.status(key) == ("sending", 1, None)  # ... the outbox does not know

    rig.start_bot("bot-B")
    wait_until(lambda: (outbox.status(key) or ("",))[0] == "sent", timeout=30,
               message="B to send the e-mail again", diagnostics=rig.diagnostics)
    # Two copies, one identity: a receiving system can tell the second is the first.
    assert _restored(smtp) == [rendered.message_id, rendered.message_id]
    first, second = [m for m in smtp.messages() if m.message_id == rendered.message_id]
    assert first.message.as_bytes() == second.message.as_bytes()

