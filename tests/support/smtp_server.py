"""A real SMTP server for the e-mail tests: aiosmtpd on 127.0.0.1, in the test process.

aiosmtpd (the asyncio successor of the standard library's ``smtpd``) speaks the protocol:
EHLO, STARTTLS, AUTH PLAIN/LOGIN, MAIL/RCPT/DATA with their reply codes. This wrapper
records every message the server accepted and lets a test script the server's answers
the way a relay answers: ``data_replies`` (the reply to the next DATA commands, e.g.
``"451 4.3.0 Try again later"`` then the default ``250``) and ``refuse`` (recipients
answered ``550`` at RCPT). ``tls=True`` offers STARTTLS with a certificate made for
127.0.0.1 (``ca_file`` is the client's trust anchor), or ``implicit_tls=True`` TLS from the
first byte; ``credentials`` turns AUTH on
(aiosmtpd refuses AUTH before STARTTLS, as RFC 4954 4 advises servers to).

It runs in the test process, so it outlives every bot process a crash test kills.
"""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import ipaddress
import ssl
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.support.bot_process import free_port
from tests.support.waiting import wait_until

HOST = "127.0.0.1"


@dataclass(frozen=True)
class Received:
    mail_from: str
    rcpt_tos: tuple[str, ...]
    message: EmailMessage
    authenticated_as: str | None
    tls: bool

    @property
    def message_id(self) -> str:
        return str(self.message["Message-ID"])


class _Handler:
    def __init__(self, server: SmtpServer) -> None:
        self.server = server

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str,
                          rcpt_options: list[str]) -> str:
        if address in self.server.refuse:
            return "550 5.1.1 No such user here"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self.server.lock:
            self.server.data_commands += 1
            reply = self.server.data_replies.popleft() if self.server.data_replies else None
            if reply is not None and not reply.startswith("250"):
                return reply
            parsed = email.message_from_bytes(envelope.content, policy=email.policy.default)
            auth = session.auth_data if session.authenticated else None
            self.server.received.append(Received(
                envelope.mail_from, tuple(envelope.rcpt_tos), parsed,  # type: ignore[arg-type]
                auth.login.decode() if isinstance(auth, LoginPassword) else None,
                session.ssl is not None))
        return reply or "250 2.0.0 Message accepted for delivery"


class SmtpServer:
    def __init__(self, *, tls: bool = False, credentials: tuple[str, str] | None = None,
                 cert_dir: Path | None = None, implicit_tls: bool = False) -> None:
        self.port = free_port()
        self.lock = threading.Lock()
        self.received: list[Received] = []
        self.data_replies: deque[str] = deque()
        self.refuse: set[str] = set()
        self.data_commands = 0
        self.auth_attempts: list[str] = []  # logins tried (never the password)
        self.ca_file: Path | None = None
        kwargs: dict[str, Any] = {}
        self.implicit_tls = implicit_tls
        if tls or implicit_tls:
            assert cert_dir is not None, "a TLS server needs somewhere to write its cert"
            self.ca_file, key = _certificate(cert_dir)
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(self.ca_file, key)
            # Implicit TLS: the listener speaks TLS from the first byte (port 465's way);
            # otherwise the server offers STARTTLS on a plain connection.
            kwargs["ssl_context" if implicit_tls else "tls_context"] = context
        if credentials is not None:
            user, password = credentials

            def authenticate(server: Any, session: Any, envelope: Any, mechanism: str,
                             auth_data: Any) -> AuthResult:
                if not isinstance(auth_data, LoginPassword):
                    return AuthResult(success=False, handled=False)
                self.auth_attempts.append(auth_data.login.decode())
                ok = (auth_data.login.decode(), auth_data.password.decode()) == (user, password)
                return AuthResult(success=ok, handled=False, auth_data=auth_data)

            # aiosmtpd's auth_require_tls counts only STARTTLS as TLS (its SMTP.ehlo checks
            # the STARTTLS protocol object), so an implicit-TLS listener must not set it:
            # the connection is encrypted from the first byte anyway.
            kwargs.update(authenticator=authenticate, auth_required=True,
                          auth_require_tls=tls)
        self.controller = Controller(_Handler(self), hostname=HOST, port=self.port, **kwargs)

    def start(self) -> SmtpServer:
        self.controller.start()
        return self

    def stop(self) -> None:
        self.controller.stop()

    def __enter__(self) -> SmtpServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def messages(self) -> list[Received]:
        with self.lock:
            return list(self.received)

    def wait_messages(self, count: int, *, timeout: float = 15) -> list[Received]:
        return wait_until(lambda: (m := self.messages()) and len(m) >= count and m,
                          timeout=timeout, message=f"{count} message(s) at the SMTP server")

    def smtp_config(self, **overrides: Any) -> dict[str, Any]:
        """The bot's ``smtp:`` block for this server."""
        block: dict[str, Any] = {
            "host": HOST, "port": self.port,
            "security": ("ssl" if self.implicit_tls else "starttls") if self.ca_file
            else "none",
            "from_address": "Rollback Bot <rollback-bot@example.com>",
            "timeout_seconds": 5}
        if self.ca_file:
            block["ca_file"] = str(self.ca_file)
        return {**block, **overrides}


def _certificate(folder: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (its own CA: the client trusts exactly it)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "rollback-bot test relay")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([
            x509.IPAddress(ipaddress.ip_address(HOST)), x509.DNSName("localhost")]),
            critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                       critical=False)
        .sign(key, hashes.SHA256()))
    folder.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = folder / "relay.pem", folder / "relay.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def stakeholder_emails(server: SmtpServer, emails: list[str]
                       ) -> Callable[[dict[str, Any]], None]:
    """A harness config change: ``server`` as the relay, ``emails`` as hotel-voice-bot's
    stakeholder list."""
    def change(data: dict[str, Any]) -> None:
        data["smtp"] = server.smtp_config()
        data["services"]["hotel-voice-bot"]["stakeholders"]["email"] = emails
    return change
