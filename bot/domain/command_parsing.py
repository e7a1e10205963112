"""Parses the ``/rollback`` command text into a typed request; errors name the bad token.

``--platform`` accepts the names of the registry the configuration was parsed with
(``RollbackConfig.platform_specs``), which the caller passes.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field

from bot.domain import forward_fix, incident_times
from bot.domain.config import SCOPES, Severity
from bot.domain.errors import ParseError
from bot.domain.forward_fix import ForwardFixInput
from platforms.base import PlatformSpecs

SUBCOMMANDS = ("help", "services", "status", "history", "cancel", "known-bad", "diagnose",
               "timeline", "contacts", "forward-fix")
# Revisions are small counters on every platform; nine digits is far beyond any real one
# and keeps int() away from its 4,300-digit limit.
MAX_REVISION = 999_999_999
_ASCII_DIGITS = re.compile(r"[0-9]{1,9}")
# PostgreSQL rejects NUL in text and UTF-8 cannot carry lone surrogates (JSON "\ud800").
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def clean(text: str) -> str:
    """``text`` without characters that PostgreSQL or UTF-8 cannot carry."""
    return _UNSTORABLE.sub("", text)


def revision_number(raw: str, *, flag: str = "") -> int:
    """``12``, ``rev12`` or ``rev-12`` as a positive int; anything else is a ParseError.

    The hyphen is only a separator after ``rev``: a bare ``-5`` is a negative number and
    refused (read as 5 it would name another revision than the one typed). Only ASCII
    digits: ``str.isdigit`` also accepts superscripts such as ``²`` that int() then
    refuses."""
    shown = raw if len(raw) <= 20 else raw[:20] + "…"
    if raw.startswith("-"):
        raise ParseError(f"`{flag}{shown}`: a revision is a positive number, not a negative "
                         "one.")
    digits = raw.removeprefix("rev").removeprefix("-") if raw.startswith("rev") else raw
    if not _ASCII_DIGITS.fullmatch(digits) or not 0 < int(digits) <= MAX_REVISION:
        raise ParseError(f"`{flag}{shown}`: a revision is a positive number (at most "
                         f"{MAX_REVISION:,}).")
    return int(digits)


@dataclass(frozen=True)
class Parsed:
    verb: str  # help | services | status | history | revision | cancel | known-bad
    #            | clear-known-bad | diagnose | timeline | contacts | forward-fix | request
    #            | modal
    service: str | None = None
    argument: str | None = None
    to: int | None = None
    severity: Severity | None = None
    scope: list[str] = field(default_factory=list)
    platform: str | None = None
    reason: str = ""
    # ``--started``: when the incident began, as typed (read against the clock by the
    # request: ``bot.domain.incident_times.resolve``); None: the plan offers a default.
    started: str | None = None
    # ``forward-fix RB-N <url> [root cause…]`` / ``--waive <reason>``: ``argument`` is the id.
    forward_fix: ForwardFixInput | None = None


def _value(tokens: list[str], i: int, flag: str) -> str:
    if i + 1 >= len(tokens) or tokens[i + 1].startswith("--"):
        raise ParseError(f"`{flag}` needs a value.")
    return tokens[i + 1]


def _platform(raw: str, platforms: PlatformSpecs) -> str:
    if raw not in platforms:
        raise ParseError(f"`--platform {raw}`: choose {platforms.listing()}.")
    return raw


def parse(text: str, *, platforms: PlatformSpecs) -> Parsed:
    text = clean(text)
    try:
        tokens = shlex.split(text.replace("“", '"').replace("”", '"'))
    except ValueError as exc:
        raise ParseError(f"Could not read the command: {exc}.") from None
    if not tokens or tokens[0] == "help":
        return Parsed("help")
    head = tokens[0]
    if head == "known-bad":
        return _known_bad(tokens, platforms)
    if head == "forward-fix":
        ref, given = forward_fix.parse(tokens[1:])
        _rollback_id(ref)
        return Parsed("forward-fix", argument=ref, forward_fix=given)
    if head == "diagnose":
        if len(tokens) < 2 or tokens[1].startswith("--"):
            raise ParseError("`diagnose` needs a service.")
        if len(tokens) > 2:
            raise ParseError(f"Unexpected `{tokens[2]}` after `diagnose {tokens[1]}`.")
        return Parsed("diagnose", service=tokens[1])
    if head == "contacts":  # the service's emergency contacts, read-only
        if len(tokens) < 2 or tokens[1].startswith("--"):
            raise ParseError("`contacts` needs a service.")
        if len(tokens) > 2:
            raise ParseError(f"Unexpected `{tokens[2]}` after `contacts {tokens[1]}`.")
        return Parsed("contacts", service=tokens[1])
    if head == "history" and len(tokens) > 2:
        return _revision_detail(tokens, platforms)
    if head in SUBCOMMANDS:
        if head == "services":
            return Parsed("services")
        arg = tokens[1] if len(tokens) > 1 else None
        if head in ("history", "cancel", "timeline") and arg is None:
            raise ParseError(f"`{head}` needs {'a service' if head == 'history' else 'an ID'}.")
        if len(tokens) > 2:
            raise ParseError(f"Unexpected `{tokens[2]}` after `{head} {arg}`.")
        if arg is not None and (head in ("cancel", "timeline") or head == "status" and (
                arg.upper().startswith("RB-") or arg.isdigit())):
            _rollback_id(arg)
        return Parsed(head, argument=arg)
    if head.startswith("--"):
        raise ParseError(f"Expected a service name before `{head}`.")
    if len(tokens) == 1:
        return Parsed("modal", service=head)
    to: int | None = None
    severity: Severity | None = None
    scope: list[str] = []
    platform: str | None = None
    reason = ""
    started: str | None = None
    i = 1
    while i < len(tokens):
        tok = tokens[i]
        flag, eq, inline = tok.partition("=")
        if not flag.startswith("--"):
            raise ParseError(f"Unexpected `{tok}`: options start with `--`.")
        raw = inline if eq else _value(tokens, i, flag)
        step = 1 if eq else 2
        if flag == "--to":
            to = revision_number(raw, flag="--to ")
        elif flag == "--severity":
            try:
                severity = Severity(raw.upper())
            except ValueError:
                raise ParseError(f"`--severity {raw}`: use P0, P1, P2 or P3.") from None
        elif flag == "--scope":
            scope = [s.strip() for s in raw.split(",") if s.strip()]
            bad = [s for s in scope if s not in SCOPES]
            if bad or not scope:
                raise ParseError(f"`--scope {raw}`: choose from {', '.join(SCOPES)}.")
        elif flag == "--platform":
            platform = _platform(raw, platforms)
        elif flag == "--reason":
            reason = raw
        elif flag == "--started":
            started = incident_times.check(raw)
        else:
            raise ParseError(f"Unknown option `{flag}`.")
        i += step
    return Parsed("request", service=head, to=to, severity=severity, scope=scope,
                  platform=platform, reason=reason, started=started)


def _rollback_id(raw: str) -> int:
    """``RB-12`` or ``12``: ASCII digits within the database's range, else a ParseError."""
    digits = raw.upper().removeprefix("RB-")
    if not _ASCII_DIGITS.fullmatch(digits) or int(digits) == 0:
        shown = raw if len(raw) <= 20 else raw[:20] + "…"
        raise ParseError(f"`{shown}` is not a rollback ID (like RB-12).")
    return int(digits)


def _revision_detail(tokens: list[str], platforms: PlatformSpecs) -> Parsed:
    """``history <service> --revision N [--platform P]``: one revision as the platform shows
    it (verb ``revision``); a plain ``history <service>`` lists the service's rollbacks."""
    if tokens[1].startswith("--"):
        raise ParseError("`history` needs a service.")
    service, rest = tokens[1], tokens[2:]
    flags = _flags(rest, ("--revision", "--platform"), after=f"history {service}")
    platform = _platform(flags["--platform"], platforms) if "--platform" in flags else None
    number = (revision_number(flags["--revision"], flag="--revision ")
              if "--revision" in flags else None)
    if number is None:
        raise ParseError(f"`history {service} --platform` needs `--revision N` as well.")
    return Parsed("revision", service=service, to=number, platform=platform)


def _flags(rest: list[str], allowed: tuple[str, ...], *, after: str) -> dict[str, str]:
    """``--flag value`` / ``--flag=value`` pairs of a verb's tail, only ``allowed`` ones (a
    repeated flag: the last one wins, as before)."""
    flags: dict[str, str] = {}
    i = 0
    while i < len(rest):
        flag, eq, inline = rest[i].partition("=")
        if flag not in allowed:
            raise ParseError(f"Unexpected `{rest[i]}` after `{after}`.")
        flags[flag] = inline if eq else _value(rest, i, flag)
        i += 1 if eq else 2
    return flags


def _known_bad(tokens: list[str], platforms: PlatformSpecs) -> Parsed:
    """``known-bad <service> [--platform P]`` lists the marks;
    ``known-bad <service> clear <REV> --reason "…" [--platform P]`` clears one."""
    if len(tokens) < 2 or tokens[1].startswith("--"):
        raise ParseError("`known-bad` needs a service.")
    service, rest = tokens[1], tokens[2:]
    clear: int | None = None
    if rest[:1] == ["clear"]:
        if len(rest) < 2:
            raise ParseError("`known-bad <service> clear` needs a revision number.")
        clear, rest = revision_number(rest[1]), rest[2:]
    flags = _flags(rest, ("--reason", "--platform"), after=f"known-bad {service}")
    platform = _platform(flags["--platform"], platforms) if "--platform" in flags else None
    reason = flags.get("--reason", "")
    if clear is None:
        return Parsed("known-bad", service=service, platform=platform)
    return Parsed("clear-known-bad", service=service, to=clear, platform=platform,
                  reason=reason)
