"""An SMTP client for the stakeholder e-mail: one rendered ``Mail`` out through the relay.

The standard library does the protocol (``smtplib``, ``email.message.EmailMessage``); this
module builds the message from a stored ``Mail`` (so a retry sends the same bytes with the
same Message-ID), connects as configured (STARTTLS, implicit TLS or plain), logs in with
credentials read from the environment at send time, and maps every way a relay can say
no to a ``MailError`` that says whether another attempt may help (RFC 5321 4.2.1: 4yz is
"transient negative completion", 5yz "permanent"). The password is never logged:
``smtplib``'s debug output stays off, and error texts go through the scrubber.
"""

from __future__ import annotations

import contextlib
import logging
import smtplib
import ssl
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid

from bot.domain.config import secret
from bot.domain.mail_config import SmtpSettings
from bot.integrations.errors import MailError
from bot.observability.scrub import scrub
from bot.persistence.mail_outbox import Mail

log = logging.getLogger(__name__)


def new_mail(smtp: SmtpSettings, *, recipients: tuple[str, ...], subject: str,
             body: str, calendar: str = "", calendar_name: str = "") -> Mail:
    """A message with its identity fixed now: Message-ID (RFC 5322 3.6.4) and Date."""
    domain = smtp.sender().rpartition("@")[2] or None
    return Mail(message_id=make_msgid(domain=domain), date=format_datetime(datetime.now(UTC)),
                sender=smtp.from_address, envelope_from=smtp.sender(),
                recipients=recipients, subject=subject, body=body, calendar=calendar,
                calendar_name=calendar_name)


def email_message(mail: Mail) -> EmailMessage:
    """``mail`` as an RFC 5322 message: plain text in UTF-8."""
    msg = EmailMessage()
    msg["From"] = mail.sender
    msg["To"] = ", ".join(mail.recipients)
    msg["Subject"] = mail.subject
    msg["Date"] = mail.date
    msg["Message-ID"] = mail.message_id
    # RFC 3834 3.1.7: a machine wrote it, so vacation responders stay quiet.
    msg["Auto-Submitted"] = "auto-generated"
    msg.set_content(mail.body, charset="utf-8")
    if mail.calendar:
        # RFC 5545 8.1 registers text/calendar; RFC 6047 (iMIP) 2.4 puts the object's METHOD
        # in the content type too, which is how mail clients offer "add to calendar".
        method = next((line.split(":", 1)[1] for line in mail.calendar.splitlines()
                       if line.startswith("METHOD:")), "PUBLISH")
        msg.add_attachment(mail.calendar.encode("utf-8"), maintype="text", subtype="calendar",
                           filename=mail.calendar_name or "invitation.ics",
                           params={"method": method, "charset": "utf-8"})
    return msg


def _reply(exc: smtplib.SMTPResponseException) -> str:
    text = exc.smtp_error.decode("utf-8", "replace") if isinstance(exc.smtp_error, bytes) \
        else str(exc.smtp_error)
    return f"{exc.smtp_code} {text}".strip()


def _by_code(what: str, code: int, reply: str) -> MailError:
    return MailError(scrub(f"{what}: {reply}"), transient=400 <= code < 500 or code < 0,
                     code=code)


class SmtpSender:
    """Sends one message per call, on a connection of its own (a notice is rare: a kept-open
    connection would only time out between two)."""

    def __init__(self, settings: SmtpSettings) -> None:
        self.settings = settings

    def send(self, mail: Mail) -> dict[str, str]:
        """Send ``mail``; returns the recipients the relay refused while taking the message
        for the others (address -> reply). ``MailError`` when it took it for nobody."""
        s = self.settings
        credentials = self._credentials()
        try:
            context = ssl.create_default_context(cafile=s.ca_file)
        except OSError as exc:  # an unreadable ca_file
            raise MailError(f"smtp.ca_file {s.ca_file}: {exc.strerror}", transient=False) \
                from None
        client: smtplib.SMTP | None = None
        try:
            if s.security == "ssl":
                client = smtplib.SMTP_SSL(s.host, s.port, timeout=s.timeout_seconds,
                                          context=context)
            else:
                client = smtplib.SMTP(s.host, s.port, timeout=s.timeout_seconds)
            if s.security == "starttls":
                client.starttls(context=context)
            if credentials is not None:
                client.login(*credentials)
            refused = client.send_message(email_message(mail), from_addr=mail.envelope_from,
                                          to_addrs=list(mail.recipients))
        except smtplib.SMTPRecipientsRefused as exc:  # every recipient refused
            replies = {a: f"{c} {m.decode('utf-8', 'replace')}" for a, (c, m)
                       in exc.recipients.items()}
            transient = any(400 <= c < 500 for c, _ in exc.recipients.values())
            raise MailError(scrub("recipients refused: " + "; ".join(
                f"{a}: {r}" for a, r in replies.items())), transient=transient,
                code=next(iter(exc.recipients.values()))[0]) from None
        except smtplib.SMTPAuthenticationError as exc:
            raise _by_code("login refused", exc.smtp_code, _reply(exc)) from None
        except smtplib.SMTPSenderRefused as exc:
            raise _by_code("sender refused", exc.smtp_code, _reply(exc)) from None
        except smtplib.SMTPDataError as exc:
            raise _by_code("message refused", exc.smtp_code, _reply(exc)) from None
        except smtplib.SMTPResponseException as exc:  # greeting, HELO, STARTTLS, ...
            raise _by_code("relay refused", exc.smtp_code, _reply(exc)) from None
        except smtplib.SMTPNotSupportedError as exc:  # no STARTTLS or AUTH offered
            raise MailError(scrub(f"relay does not support it: {exc}"), transient=False) \
                from None
        except smtplib.SMTPServerDisconnected as exc:
            raise MailError(scrub(f"relay closed the connection: {exc}"), transient=True) \
                from None
        except ssl.SSLCertVerificationError as exc:  # will not verify next time either
            raise MailError(scrub(f"relay certificate: {exc.verify_message}"),
                            transient=False) from None
        except (OSError, smtplib.SMTPException) as exc:  # refused, unreachable, timed out
            raise MailError(scrub(f"relay {s.host}:{s.port} unreachable: "
                                  f"{type(exc).__name__}: {exc}"), transient=True) from None
        finally:
            if client is not None:
                # After the 250 the message is the relay's; a QUIT that fails must not
                # turn a sent message into a retry.
                with contextlib.suppress(smtplib.SMTPException, OSError):
                    client.quit()
                client.close()
        return {a: f"{c} {m.decode('utf-8', 'replace')}" for a, (c, m) in refused.items()}

    def _credentials(self) -> tuple[str, str] | None:
        s = self.settings
        if s.username_env is None or s.password_env is None:
            return None
        user, password = secret(s.username_env), secret(s.password_env)
        missing = [n for n, v in ((s.username_env, user), (s.password_env, password)) if not v]
        if missing:
            raise MailError(f"env var {', '.join(missing)} unset or empty (SMTP login)",
                            transient=False)
        assert user is not None and password is not None
        return user, password
