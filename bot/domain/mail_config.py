"""The e-mail part of ``rollback.yml``: the top-level ``smtp:`` block and address checks.

Stakeholders listed under ``services.<name>.stakeholders.email`` get the stakeholder notice
by e-mail too (``bot.aftercare.stakeholder_mail``), sent through the relay configured here.
The relay's credentials are never in the file: ``username_env`` and ``password_env`` name
environment variables read when a message is sent (``bot.domain.config.secret``).
"""

from __future__ import annotations

import re
from email.utils import parseaddr
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

# An addr-spec as relays accept it from a configuration: a dot-atom-ish local part and a
# host name of letters, digits and hyphens (RFC 5321 4.1.2 "Mailbox"; quoted local parts
# and address literals are left out on purpose: nobody configures them, and rejecting them
# keeps every character that could start a header injection out of the envelope).
_LOCAL = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
ADDRESS = re.compile(rf"{_LOCAL}@{_LABEL}(?:\.{_LABEL})*")
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")  # what a POSIX shell can export


def check_address(value: str) -> str:
    """``value`` if it is a plain address (``ops@example.com``), else ``ValueError``."""
    if len(value) > 254 or not ADDRESS.fullmatch(value):
        raise ValueError(f"{value!r} is not an e-mail address (like ops@example.com)")
    return value


def check_env_name(value: str | None) -> str | None:
    if value is not None and not ENV_NAME.fullmatch(value):
        raise ValueError(f"{value!r} is not an environment variable name (letters, digits, "
                         "underscores; the variable holds the secret, the file only its name)")
    return value


class SmtpSettings(BaseModel):
    """The relay the stakeholder e-mails go through."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    host: str = Field(min_length=1, max_length=253)
    port: int = Field(default=587, ge=1, le=65535)
    # starttls: plain connect, then STARTTLS (RFC 3207; submission on 587); ssl: TLS from
    # the first byte (RFC 8314 "implicit TLS", 465); none: a local relay on a trusted host.
    security: Literal["starttls", "ssl", "none"] = "starttls"
    username_env: str | None = None
    password_env: str | None = None
    from_address: str  # ops@example.com or "Rollback Bot <rollback-bot@example.com>"
    timeout_seconds: float = Field(default=10, gt=0, le=120)
    # A CA bundle for a relay whose certificate a private CA signed; unset: the system's.
    ca_file: str | None = None

    @field_validator("host")
    @classmethod
    def _host(cls, v: str) -> str:
        if any(c.isspace() for c in v) or "/" in v or ":" in v.strip("[]"):
            raise ValueError(f"{v!r}: a host name or address, without scheme or port")
        return v

    @field_validator("username_env", "password_env")
    @classmethod
    def _env_name(cls, v: str | None) -> str | None:
        return check_env_name(v)

    @field_validator("from_address")
    @classmethod
    def _from(cls, v: str) -> str:
        if "\r" in v or "\n" in v:
            raise ValueError("a header value cannot contain a line break")
        check_address(parseaddr(v)[1] or v)
        return v

    @model_validator(mode="after")
    def _credentials(self) -> SmtpSettings:
        if (self.username_env is None) != (self.password_env is None):
            raise ValueError("username_env and password_env go together (AUTH needs both)")
        if self.username_env is not None and self.security == "none":
            raise ValueError("security: none with credentials would send the password in "
                             "clear; use starttls or ssl")
        return self

    def sender(self) -> str:
        """The envelope sender (``MAIL FROM``): the address part of ``from_address``."""
        return parseaddr(self.from_address)[1] or self.from_address


def check_addresses(values: list[str]) -> list[str]:
    """Each address checked; a repeated one is a mistake worth naming."""
    seen: set[str] = set()
    for v in values:
        check_address(v)
        if v.lower() in seen:
            raise ValueError(f"{v!r} is listed twice")
        seen.add(v.lower())
    return values
