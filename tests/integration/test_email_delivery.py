"""The SMTP client against a real SMTP server (aiosmtpd on 127.0.0.1): what goes out, how it
logs in, and how each refusal is classified (4xx: another attempt may help; 5xx: never).

The whole path (queued by a completed rollback, sent by the job, retried, given up, told in
Slack) is in ``tests/e2e/test_stakeholder_email.py``; a bot process killed between render
and send is in ``tests/e2e/test_email_crash.py``.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bot.domain.mail_config import SmtpSettings
from bot.integrations.errors import MailError
from bot.integrations.mail import SmtpSender, email_message, new_mail
from bot.observability import scrub
from bot.persistence.mail_outbox import Mail
from tests.support.bot_process import free_port
from tests.support.smtp_server import SmtpServer

BODY = ("Hotel Voice Bot Rollback Completed\n\n"
        "Rollback details\n• Version rolled back to: rev 2 — “good” (from rev 3)\n")
USER_ENV, PASSWORD_ENV = "TEST_SMTP_USERNAME", "TEST_SMTP_PASSWORD"
PASSWORD = "relay-pa55word-not-for-logs"


def _settings(server: SmtpServer, **overrides: Any) -> SmtpSettings:
    return SmtpSettings(**server.smtp_config(**overrides))


def _mail(settings: SmtpSettings, *to: str) -> Mail:
    return new_mail(settings, recipients=to or ("ops@example.com", "cto@example.com"),
                    subject="[Resolved] hotel-voice-bot rolled back to rev 2 (RB-7)", body=BODY)


@pytest.fixture
def plain_server() -> Iterator[SmtpServer]:
    with SmtpServer() as server:
        yield server


@pytest.fixture
def tls_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[SmtpServer]:
    """STARTTLS with a certificate for 127.0.0.1 and AUTH required; the bot's credentials
    are in the environment, as in production."""
    monkeypatch.setenv(USER_ENV, "rollback-bot")
    monkeypatch.setenv(PASSWORD_ENV, PASSWORD)
    with SmtpServer(tls=True, credentials=("rollback-bot", PASSWORD),
                    cert_dir=tmp_path / "tls") as server:
        yield server


def test_the_message_carries_the_notice_as_utf8_plain_text_with_its_identity(
        plain_server: SmtpServer) -> None:
    settings = _settings(plain_server)
    mail = _mail(settings)
    assert mail.message_id.startswith("<") and mail.message_id.endswith("@example.com>")
    assert SmtpSender(settings).send(mail) == {}

    [got] = plain_server.messages()
    assert got.mail_from == "rollback-bot@example.com"  # the address part of From
    assert got.rcpt_tos == ("ops@example.com", "cto@example.com")
    msg = got.message
    assert msg["From"] == "Rollback Bot <rollback-bot@example.com>"
    assert msg["To"] == "ops@example.com, cto@example.com"
    assert msg["Subject"] == "[Resolved] hotel-voice-bot rolled back to rev 2 (RB-7)"
    assert msg["Message-ID"] == mail.message_id and msg["Date"] == mail.date
    assert msg["Auto-Submitted"] == "auto-generated"
    assert msg.get_content_type() == "text/plain"
    assert msg.get_content_charset() == "utf-8"
    # The bullets and quotes survive the trip (SMTP's line ends are CRLF, RFC 5321 2.3.8).
    assert msg.get_content().replace("\r\n", "\n") == BODY


def test_a_stored_mail_is_sent_again_byte_for_byte_with_the_same_message_id(
        plain_server: SmtpServer) -> None:
    """What a retry after a crash sends: the row's mail, not a new rendering."""
    settings = _settings(plain_server)
    mail = Mail.from_json(_mail(settings).to_json())  # through the row's JSON
    sender = SmtpSender(settings)
    sender.send(mail)
    sender.send(mail)
    first, second = plain_server.messages()
    assert first.message_id == second.message_id == mail.message_id
    assert first.message.as_bytes() == second.message.as_bytes()
    assert bytes(email_message(mail)) == bytes(email_message(mail))


def test_starttls_then_auth_with_credentials_from_the_environment(
        tls_server: SmtpServer) -> None:
    settings = _settings(tls_server, username_env=USER_ENV, password_env=PASSWORD_ENV)
    SmtpSender(settings).send(_mail(settings))
    [got] = tls_server.messages()
    assert got.tls and got.authenticated_as == "rollback-bot"


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")  # see SmtpServer
def test_implicit_tls_then_auth(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``security: ssl``: TLS from the first byte (RFC 8314 3.3, port 465's way)."""
    monkeypatch.setenv(USER_ENV, "rollback-bot")
    monkeypatch.setenv(PASSWORD_ENV, PASSWORD)
    with SmtpServer(implicit_tls=True, credentials=("rollback-bot", PASSWORD),
                    cert_dir=tmp_path / "tls") as server:
        settings = _settings(server, username_env=USER_ENV, password_env=PASSWORD_ENV)
        assert settings.security == "ssl"
        SmtpSender(settings).send(_mail(settings))
        [got] = server.messages()
    assert got.authenticated_as == "rollback-bot"


def test_a_wrong_password_is_permanent_and_never_in_the_error(
        tls_server: SmtpServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(PASSWORD_ENV, "wrong-pa55word-also-secret")
    settings = _settings(tls_server, username_env=USER_ENV, password_env=PASSWORD_ENV)
    with pytest.raises(MailError) as err:
        SmtpSender(settings).send(_mail(settings))
    assert not err.value.transient and err.value.code == 535  # RFC 4954 6
    assert "login refused" in str(err.value)
    assert "pa55word" not in str(err.value)
    assert "pa55word" not in scrub.scrub("x wrong-pa55word-also-secret")  # never logged
    # smtplib tries each mechanism both sides offer (PLAIN, then LOGIN) before it gives up.
    assert set(tls_server.auth_attempts) == {"rollback-bot"} and tls_server.messages() == []


def test_credentials_unset_in_the_environment_are_permanent(
        tls_server: SmtpServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(PASSWORD_ENV)
    settings = _settings(tls_server, username_env=USER_ENV, password_env=PASSWORD_ENV)
    with pytest.raises(MailError, match=f"{PASSWORD_ENV} unset") as err:
        SmtpSender(settings).send(_mail(settings))
    assert not err.value.transient and tls_server.auth_attempts == []


def test_auth_refused_before_starttls_when_tls_is_off(tls_server: SmtpServer) -> None:
    """A relay that requires TLS never sees the login over a plain connection: it does not
    even offer AUTH there (aiosmtpd, as RFC 4954 4 advises); no attempt would help."""
    settings = SmtpSettings(**{**tls_server.smtp_config(), "security": "none"})
    with pytest.raises(MailError) as err:
        SmtpSender(settings).send(_mail(settings))
    assert not err.value.transient and tls_server.messages() == []


def test_a_certificate_the_bot_does_not_trust_is_permanent(tls_server: SmtpServer) -> None:
    settings = _settings(tls_server, ca_file=None)  # the system's CAs: not our test relay's
    with pytest.raises(MailError, match="certificate") as err:
        SmtpSender(settings).send(_mail(settings))
    assert not err.value.transient


def test_starttls_not_offered_is_permanent(plain_server: SmtpServer) -> None:
    settings = _settings(plain_server, security="starttls")
    with pytest.raises(MailError, match="does not support") as err:
        SmtpSender(settings).send(_mail(settings))
    assert not err.value.transient and plain_server.messages() == []


def test_a_4xx_answer_to_data_is_transient_and_the_next_attempt_goes_through(
        plain_server: SmtpServer) -> None:
    plain_server.data_replies.append("451 4.3.0 Mail server temporarily rejected message")
    settings = _settings(plain_server)
    mail, sender = _mail(settings), SmtpSender(settings)
    with pytest.raises(MailError) as err:
        sender.send(mail)
    assert err.value.transient and err.value.code == 451
    assert plain_server.messages() == []
    sender.send(mail)
    assert [m.message_id for m in plain_server.messages()] == [mail.message_id]


def test_a_5xx_answer_to_data_is_permanent(plain_server: SmtpServer) -> None:
    plain_server.data_replies.append("554 5.6.0 Message rejected: content")
    settings = _settings(plain_server)
    with pytest.raises(MailError, match="554 5.6.0") as err:
        SmtpSender(settings).send(_mail(settings))
    assert not err.value.transient and err.value.code == 554


def test_every_recipient_refused_is_permanent_some_refused_is_reported(
        plain_server: SmtpServer) -> None:
    settings = _settings(plain_server)
    plain_server.refuse = {"ops@example.com", "cto@example.com"}
    with pytest.raises(MailError, match="recipients refused") as err:
        SmtpSender(settings).send(_mail(settings))
    assert not err.value.transient and err.value.code == 550
    plain_server.refuse = {"cto@example.com"}
    refused = SmtpSender(settings).send(_mail(settings))
    assert list(refused) == ["cto@example.com"] and refused["cto@example.com"].startswith("550")
    assert [m.rcpt_tos for m in plain_server.messages()] == [("ops@example.com",)]


def test_an_unreachable_relay_is_transient() -> None:
    port = free_port()  # nothing listens there
    settings = SmtpSettings(host="127.0.0.1", port=port, security="none",
                            from_address="rollback-bot@example.com", timeout_seconds=2)
    with pytest.raises(MailError, match="unreachable") as err:
        SmtpSender(settings).send(_mail(settings))
    assert err.value.transient


def test_a_relay_that_never_answers_times_out_as_transient() -> None:
    with socket.socket() as listener:  # accepts the connection, never greets
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        settings = SmtpSettings(host="127.0.0.1", port=listener.getsockname()[1],
                                security="none", from_address="rollback-bot@example.com",
                                timeout_seconds=0.5)
        with pytest.raises(MailError) as err:
            SmtpSender(settings).send(_mail(settings))
    assert err.value.transient
