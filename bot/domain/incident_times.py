"""When the incident started, and what a database restore loses: the record's true times.

A request names its start (``--started`` or the form's field) as a time of day, a time ago or
an ISO timestamp, UTC unless an offset is given; without one the plan offers a default and
says where it came from: the release watcher's first breach, else the running (bad)
revision's deploy time, else the request itself. Downtime is counted from this start to the
first passing verification. A restore from a backup loses what was written between the
backup's timestamp and the restore: the plan shows the expected window before approval and the
restore step records the real one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone

from bot.domain.errors import ParseError

# Older than this is not "when this incident started" but a typo (a wrong day or month); a
# week also bounds how far back a default (an old deploy) may reach.
MAX_AGE = timedelta(days=7)

# source -> how the records name it
GIVEN = "given"
WATCHER = "watcher"
DEPLOY = "deploy"
REQUEST = "request"
SOURCES = {
    GIVEN: "given by the requester",
    WATCHER: "the release watcher's first breach",
    DEPLOY: "the bad revision's deploy time (when the platform created it)",
    REQUEST: "the time of the rollback request",
}

_AGO = re.compile(r"(?:(?P<d>[0-9]{1,2})\s*d(?:ays?)?\s*)?"
                  r"(?:(?P<h>[0-9]{1,3})\s*h(?:ours?|rs?)?\s*)?"
                  r"(?:(?P<m>[0-9]{1,5})\s*m(?:in(?:utes?|s)?)?)?(?:\s*ago)?", re.IGNORECASE)
_CLOCK = re.compile(r"(?P<h>[0-9]{1,2}):(?P<m>[0-9]{2})(?::(?P<s>[0-9]{2}))?"
                    r"(?P<tz>Z|[+-][0-9]{2}:?[0-9]{2})?", re.IGNORECASE)
_FORMS = ("`40m` (40 minutes ago), `1h30m`, `14:05` (today, UTC), `14:05+02:00` or "
          "`2026-11-29T14:05Z`")


@dataclass(frozen=True)
class IncidentStart:
    at: datetime
    source: str  # a key of SOURCES

    @property
    def source_text(self) -> str:
        """How the records name the source; empty for a start of unknown origin."""
        return SOURCES.get(self.source, "")


def check(raw: str) -> str:
    """``raw`` if it is one of the accepted forms (the command's parse time: no clock yet),
    else a ParseError saying which forms are."""
    _shape(raw)
    return raw.strip()


def resolve(raw: str, *, now: datetime) -> datetime:
    """The start ``raw`` names, read at ``now``; refused when in the future or older than
    ``MAX_AGE``. A bare time of day is today's (UTC, or its offset): one later than now is
    refused rather than read as yesterday's, since a local time typed as UTC looks the same."""
    kind, value = _shape(raw)
    shown = _shown(raw)
    if kind == "ago":
        assert isinstance(value, timedelta)
        at = now - value
    elif kind == "clock":
        assert isinstance(value, tuple)
        (hour, minute, second), tz = value
        local = now.astimezone(tz)
        at = local.replace(hour=hour, minute=minute, second=second, microsecond=0)
    else:
        assert isinstance(value, datetime)
        at = value
    at = at.astimezone(UTC)
    if at > now:
        hint = (" A time of day is today's; for yesterday give the date "
                f"(`{(at - timedelta(days=1)):%Y-%m-%dT%H:%MZ}`) or a time ago (`40m`)."
                if kind == "clock" else "")
        raise ParseError(f"`--started {shown}`: {at:%Y-%m-%d %H:%M} UTC is in the future "
                         f"(it is {now.astimezone(UTC):%H:%M} UTC now); times are UTC unless "
                         f"an offset is given.{hint}")
    if now - at > MAX_AGE:
        raise ParseError(f"`--started {shown}`: {at:%Y-%m-%d %H:%M} UTC is more than "
                         f"{MAX_AGE.days} days ago; check the date.")
    return at


def default(*, watcher_breach: datetime | None, deployed_at: datetime | None,
            requested_at: datetime) -> IncidentStart:
    """The start a request without one is given: the first that is known and plausible
    (not after the request, not older than ``MAX_AGE``)."""
    for at, source in ((watcher_breach, WATCHER), (deployed_at, DEPLOY)):
        if at is not None and timedelta(0) <= requested_at - at <= MAX_AGE:
            return IncidentStart(at.astimezone(UTC), source)
    return IncidentStart(requested_at.astimezone(UTC), REQUEST)


def recorded(at: datetime | None, source: str | None, *, requested_at: datetime
             ) -> IncidentStart:
    """A rollback's start as its records tell it: rows of earlier versions have no source
    (a start set by hand, or none: the request)."""
    if at is None:
        return IncidentStart(requested_at.astimezone(UTC), REQUEST)
    return IncidentStart(at.astimezone(UTC), source or "")


def counted_from(start: IncidentStart) -> str:
    """What downtime is counted from, in words: the request, or the incident start."""
    return "rollback request" if start.source == REQUEST else "incident start"


def _shape(raw: str) -> tuple[str, object]:
    text = raw.strip()
    if not text:
        raise ParseError("`--started` needs a value: " + _FORMS + ".")
    ago = _AGO.fullmatch(text)
    if ago and any(ago.group(k) for k in "dhm"):
        delta = timedelta(days=int(ago["d"] or 0), hours=int(ago["h"] or 0),
                          minutes=int(ago["m"] or 0))
        if delta > MAX_AGE:
            raise ParseError(f"`--started {_shown(raw)}`: more than {MAX_AGE.days} days ago; "
                             "check the figure.")
        return "ago", delta
    clock = _CLOCK.fullmatch(text)
    if clock:
        hour, minute, second = int(clock["h"]), int(clock["m"]), int(clock["s"] or 0)
        if hour > 23 or minute > 59 or second > 59:
            raise ParseError(f"`--started {_shown(raw)}`: not a time of day.")
        return "clock", ((hour, minute, second), _zone(clock["tz"]))
    try:
        at = datetime.fromisoformat(text.replace("z", "Z"))
    except ValueError:
        raise ParseError(f"`--started {_shown(raw)}`: use {_FORMS}.") from None
    return "iso", at if at.tzinfo else at.replace(tzinfo=UTC)


def _zone(text: str | None) -> timezone:
    if not text or text.upper() == "Z":
        return UTC
    sign = -1 if text[0] == "-" else 1
    digits = text[1:].replace(":", "")
    hours, minutes = int(digits[:2]), int(digits[2:])
    if hours > 23 or minutes > 59:
        raise ParseError(f"`{text}`: not a UTC offset.")
    return timezone(sign * timedelta(hours=hours, minutes=minutes))


def _shown(raw: str) -> str:
    return raw if len(raw) <= 40 else raw[:40] + "…"


# ---------------------------------------------------------------------- data loss
@dataclass(frozen=True)
class DataLoss:
    """Writes between ``since`` (the backup's timestamp) and ``until`` (the restore) are not
    in the restored database."""

    since: datetime
    until: datetime

    @property
    def length(self) -> timedelta:
        return max(timedelta(0), self.until - self.since)


def data_loss(since: datetime | None, until: datetime | None) -> DataLoss | None:
    if since is None or until is None:
        return None
    return DataLoss(since.astimezone(UTC), until.astimezone(UTC))
