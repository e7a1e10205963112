"""The runbook's "Plan forward fix": what a forward-fix record may hold, checked before storing.

A forward-fix link is shown in Slack next to every known-bad mark, so it must be a plain
http(s) address a browser opens: no credentials (user info, token-shaped query values),
no whitespace or control characters, and bounded. The root cause and a waiver's reason are
free text, bounded and scrubbed of anything that looks like a secret.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from bot.domain.errors import ParseError
from bot.observability.scrub import scrub

# Issue and pull-request addresses are short; 500 keeps a line of Slack readable and is far
# below Slack's 3,000-character section limit even with the rest of a history line.
MAX_URL = 500
MAX_ROOT_CAUSE = 2000
MAX_REASON = 500
MIN_REASON = 3  # "n/a" at least: a waiver says why
_FORBIDDEN = re.compile(r"[\s\x00-\x1f\x7f<>|]")  # <, >, | would break Slack's <url|text>


@dataclass(frozen=True)
class ForwardFixInput:
    """``/rollback forward-fix RB-N <url> [root cause…]`` or ``… --waive <reason>``."""

    link: str | None = None
    root_cause: str = ""
    waive_reason: str | None = None  # set: a waiver, ``link`` is None


def check_link(raw: str) -> str:
    """``raw`` as an http(s) URL safe to store and show; a ParseError says what is wrong."""
    url = raw.strip()
    shown = url if len(url) <= 60 else url[:60] + "…"
    if not url:
        raise ParseError("The forward-fix link is empty: give the issue or pull-request URL.")
    if len(url) > MAX_URL:
        raise ParseError(f"The forward-fix link is {len(url)} characters long; at most "
                         f"{MAX_URL}.")
    if _FORBIDDEN.search(url):
        raise ParseError("The forward-fix link contains spaces, control characters or "
                         "`<`, `>`, `|`: give the plain issue or pull-request URL.")
    try:
        parts = urlsplit(url)
        port = parts.port  # raises on a port that is not a number
    except ValueError:
        raise ParseError(f"`{scrub(shown)}` is not a valid URL.") from None
    del port
    if parts.scheme.lower() not in ("http", "https"):
        raise ParseError(f"`{scrub(shown)}` is not an http(s) URL: give the issue or "
                         "pull-request address (https://…).")
    if not parts.hostname:
        raise ParseError(f"`{scrub(shown)}` has no host.")
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        raise ParseError("The forward-fix link carries credentials (`user@` or "
                         "`user:password@`); give the address without them.")
    if scrub(url) != url:  # ?token=…, a GitHub or Slack token in the path…
        raise ParseError("The forward-fix link looks like it carries a credential (a token "
                         "or key in it); give the address without it.")
    return url


def check_text(raw: str, *, what: str, limit: int, minimum: int = 0) -> str:
    """Free text (root cause, reason): trimmed, bounded, scrubbed of secret shapes."""
    text = re.sub(r"[\x00-\x08\x0b-\x1f\x7f\ud800-\udfff]", "", raw).strip()
    if len(text) > limit:
        raise ParseError(f"The {what} is {len(text)} characters long; at most {limit}.")
    if len(text) < minimum:
        raise ParseError(f"The {what} is required (at least {minimum} characters).")
    return scrub(text)


def parse(tokens: list[str]) -> tuple[str, ForwardFixInput]:
    """``tokens`` after ``forward-fix``: the rollback id as typed and what to record."""
    if not tokens or tokens[0].startswith("--"):
        raise ParseError("`forward-fix` needs an ID: `forward-fix RB-12 <url> [root cause…]` "
                         "or `forward-fix RB-12 --waive <reason>`.")
    ref, rest = tokens[0], tokens[1:]
    if not rest:
        raise ParseError(f"`forward-fix {ref}` needs the issue or pull-request URL (or "
                         "`--waive <reason>`).")
    if rest[0] == "--waive" or rest[0].startswith("--waive="):
        inline = rest[0].partition("=")[2]
        reason = " ".join(([inline] if inline else []) + rest[1:])
        return ref, ForwardFixInput(waive_reason=check_text(
            reason, what="waiver's reason", limit=MAX_REASON, minimum=MIN_REASON))
    if rest[0].startswith("--"):
        raise ParseError(f"Unexpected `{rest[0]}`: give the URL or `--waive <reason>`.")
    return ref, ForwardFixInput(
        link=check_link(rest[0]),
        root_cause=check_text(" ".join(rest[1:]), what="root cause", limit=MAX_ROOT_CAUSE))
