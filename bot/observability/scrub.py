"""Scrub secrets out of text before it is stored or shown: one function, used at the edges.

Platform errors, tool output and HTTP bodies echo whatever the far side saw, including the
credentials the bot sent. Everything the core stores (last errors, step errors and
results, audit details, job errors, monitor notes) passes ``scrub_data`` in the store, and
everything it says in Slack passes the ``ScrubbedChat`` port wrapper (``bot.domain.ports``), so a
new call site cannot forget it. Two kinds of secret are removed:

* **known values**: environment variables the configuration names as secrets (every
  ``*_env`` key, see ``bot.domain.config``), variables whose names look secret (``*TOKEN*``,
  ``*SECRET*``, ``*PASSWORD*``, ``*_KEY``…), the password of every DSN-like variable, and
  values handed to ``remember``; each in the spellings it takes in JSON, URLs and base64;
* **shapes**: ``Authorization:`` headers, ``Bearer``/``FlyV1`` credentials, passwords in
  URLs (``postgresql://user:pass@host``), ``password=…``/``"token": "…"`` pairs, PEM private
  keys and well-known token formats (JWTs, Slack, GitHub, AWS, Fly, Stripe, OpenAI keys).

Over-redacting an error is cheap; leaking a credential into a table or a channel is not.
``install_log_scrubber`` applies the same function to every log record (message and
traceback) at creation, before any handler sees it.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import re
import threading
import traceback
from collections.abc import Iterable
from typing import Any, TypeVar
from urllib.parse import quote, quote_plus, unquote

REDACTED = "[REDACTED]"
MIN_LENGTH = 6  # shorter known values would match ordinary words

SECRET_ENV_NAME = re.compile(
    r"TOKEN|SECRET|PASSWORD|PASSWD|API_KEY|ACCESS_KEY|PRIVATE_KEY|CREDENTIAL|(^|_)KEY$",
    re.IGNORECASE)
DSN_ENV_NAME = re.compile(r"DATABASE_URL$|_DSN$|_DB_URL$|_URL$", re.IGNORECASE)

_lock = threading.Lock()
_values: set[str] = set()
_env_names: set[str] = set()

# Order matters: whole blocks and headers first, then credentials inside URLs and pairs,
# then bare token shapes that may remain.
_PATTERNS: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?(-----END [A-Z ]*PRIVATE KEY-----|\Z)",
                re.DOTALL), REDACTED),
    # Authorization: Bearer x / 'authorization': 'Basic x' / Proxy-Authorization=...
    (re.compile(r"(?i)\b((?:proxy-)?authorization|x-api-key|api-key|x-auth-token|cookie)"
                r"(\\?[\"']?\s*[:=]\s*\\?[\"']?)([^\"'\\\r\n,}]+)"), rf"\1\2{REDACTED}"),
    (re.compile(r"(?i)\b(bearer|flyv1)(\s+)[A-Za-z0-9\-._~+/=,:]{6,}"), rf"\1\2{REDACTED}"),
    # scheme://user:password@host -> scheme://user:[REDACTED]@host
    (re.compile(r"\b([a-zA-Z][a-zA-Z0-9+.\-]*://)([^\s/?#@:\"']*):([^\s/?#@\"']+)@"),
     rf"\1\2:{REDACTED}@"),
    # password=x, "token": "x", api_key: x, X-Amz-Signature=x
    (re.compile(r"(?i)\b((?:[a-z]+[_-])*(?:password|passwd|pwd|secret|token|api[_-]?key|apikey"
                r"|private[_-]?key|credential|signature|sig))"
                r"(\\?[\"']?\s*(?:=|:\s*\\?[\"']|:\s+)\s*)"
                r"(\\?\"[^\"\\]*\\?\"|'[^']*'|[^\s&;,\"'}\\]+)"), rf"\1\2{REDACTED}"),
    (re.compile(r"\beyJ[A-Za-z0-9_-]{6,}\.[A-Za-z0-9_-]{6,}\.[A-Za-z0-9_-]*"), REDACTED),  # JWT
    (re.compile(r"\bxox[abposr]-[A-Za-z0-9-]{8,}|\bxapp-[A-Za-z0-9-]{8,}"), REDACTED),  # Slack
    (re.compile(r"\bgh[pousr]_[A-Za-z0-9]{20,}|\bgithub_pat_[A-Za-z0-9_]{20,}"), REDACTED),
    (re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"), REDACTED),  # AWS access key id
    (re.compile(r"\bfm[12][ar]?_[A-Za-z0-9_+/=-]{16,}"), REDACTED),  # Fly macaroons
    (re.compile(r"\b(?:sk|rk)_(?:live|test)_[A-Za-z0-9]{16,}|\bsk-[A-Za-z0-9_-]{20,}"),
     REDACTED),  # Stripe, OpenAI
    (re.compile(r"\bAIza[0-9A-Za-z_-]{30,}"), REDACTED),  # Google API keys
]


def remember(value: str | None) -> None:
    """Scrub ``value`` from everything from now on (a token read at run time)."""
    if value and len(value) >= MIN_LENGTH:
        with _lock:
            _values.add(value)


def remember_env(name: str | None) -> None:
    """Treat the environment variable ``name`` as a secret, whatever its current value."""
    if name:
        with _lock:
            _env_names.add(name)


def known_values() -> list[str]:
    """Every known secret value now, longest first (so a value containing another is
    replaced whole)."""
    with _lock:
        found = set(_values)
        names = set(_env_names)
    for name, value in os.environ.items():
        if name in names or SECRET_ENV_NAME.search(name):
            found.add(value)
            found.update(_url_passwords(value))
        elif DSN_ENV_NAME.search(name):
            found.update(_url_passwords(value))
    return sorted((v for v in found if len(v) >= MIN_LENGTH), key=len, reverse=True)


def _url_passwords(value: str) -> set[str]:
    """The password of a URL or libpq keyword DSN, in its written and decoded forms."""
    out: set[str] = set()
    for match in re.finditer(r"://[^\s/?#@:]*:([^\s/?#@]+)@", value):
        out.update({match.group(1), unquote(match.group(1))})
    for match in re.finditer(r"(?:^|\s)password\s*=\s*('(?:[^'\\]|\\.)*'|\S+)", value):
        out.add(match.group(1).strip("'"))
    return out


def _forms(value: str) -> set[str]:
    """The spellings a secret takes in JSON, URLs, form bodies and base64."""
    forms = {value, json.dumps(value)[1:-1], quote(value, safe=""), quote_plus(value)}
    encoded = base64.b64encode(value.encode()).decode()
    if len(value) >= 12:  # short values' base64 is too likely to collide with text
        forms.add(encoded.rstrip("="))
    return {f for f in forms if len(f) >= MIN_LENGTH}


def scrub(text: str, *, secrets: Iterable[str] = ()) -> str:
    """``text`` with every known secret value and every credential-shaped string replaced
    by ``[REDACTED]``. Never raises; idempotent."""
    if not text:
        return text
    try:
        out = text
        values = sorted({*known_values(), *(s for s in secrets if s and len(s) >= MIN_LENGTH)},
                        key=len, reverse=True)
        for value in values:
            for form in sorted(_forms(value), key=len, reverse=True):
                if form in out:
                    out = out.replace(form, REDACTED)
        for pattern, replacement in _PATTERNS:
            out = pattern.sub(replacement, out)
        return out
    except Exception:  # a scrubber that crashes would lose the error it was given
        return "[an error message was withheld: it could not be checked for secrets]"


T = TypeVar("T")


def scrub_data(value: T) -> T:
    """``value`` (JSON-like: dicts, lists, strings) with every string scrubbed; keys kept."""
    if isinstance(value, str):
        return scrub(value)  # type: ignore[return-value]
    if isinstance(value, dict):
        return {k: scrub_data(v) for k, v in value.items()}  # type: ignore[return-value]
    if isinstance(value, list | tuple):
        return type(value)(scrub_data(v) for v in value)
    return value


def scrub_optional(text: str | None) -> str | None:
    return None if text is None else scrub(text)


# ---------------------------------------------------------------------- logging
_installed = False


def install_log_scrubber() -> None:
    """Scrub every log record as it is created, message and traceback, before any handler
    (console, JSON, a test's capture) formats it. Idempotent; process-wide."""
    global _installed
    with _lock:
        if _installed:
            return
        _installed = True
    previous = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        _scrub_record(record)
        return record

    logging.setLogRecordFactory(factory)


def _scrub_record(record: logging.LogRecord) -> None:
    try:
        message = record.getMessage()
    except Exception:  # a bad format string: leave it to logging's own error report
        return
    cleaned = scrub(message)
    if cleaned != message or record.args:
        record.msg, record.args = cleaned, None
    if record.exc_info and record.exc_info[1] is not None:
        text = "".join(traceback.format_exception(*record.exc_info)).rstrip("\n")
        record.exc_text = scrub(text)
        # Formatters only use exc_text when exc_info is set; keep exc_info for handlers
        # that inspect it, but its formatted form is already the scrubbed one.
    if record.stack_info:
        record.stack_info = scrub(record.stack_info)
