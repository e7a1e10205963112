"""The post-mortem meeting: a 30-minute invitation (``.ics``, RFC 5545) within the deadline.

Attached to the first post-mortem reminder (``bot.aftercare.reminders``). The event starts at
the first working-hours slot (Monday to Friday, 09:00 to 17:00 UTC, on the half hour) at least
an hour after the reminder was created and ends by the post-mortem deadline; when no such slot
fits, it ends at the deadline. The same rollback always gets the same ``UID`` (and, for the
same reminder, the same file): a calendar that imports it twice updates one event. Written
with the standard library: the format is a few lines of text, and ``icalendar`` parses it in
the tests (RFC 5545 3.1: CRLF line ends, lines folded at 75 octets; 3.3.11: TEXT escaping).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from bot.domain.models import Rollback
from bot.domain.time_words import in_utc

LENGTH = timedelta(minutes=30)
LEAD = timedelta(hours=1)  # time to open the calendar before the meeting starts
WORK_START, WORK_END = 9, 17  # UTC hours; a team elsewhere moves the event in its calendar
_STEP = timedelta(minutes=30)


def filename(rb: Rollback) -> str:
    return f"postmortem-meeting-{rb.ref}.ics"


def uid(rb: Rollback, *, installation: str) -> str:
    """Stable per rollback (and database: rollback numbers restart in each)."""
    return f"postmortem-{rb.ref}-{installation}@rollback-bot"


def start(*, after: datetime, deadline: datetime) -> datetime:
    """The meeting's start: see the module docstring."""
    at = in_utc(after) + LEAD
    at = at.replace(second=0, microsecond=0)
    if at.minute % 30 or after.second or after.microsecond:
        at += timedelta(minutes=30 - at.minute % 30)  # up to the next half hour
    latest = in_utc(deadline) - LENGTH
    while at <= latest:
        end = at + LENGTH
        if at.weekday() < 5 and at.hour >= WORK_START and (
                end.hour < WORK_END or (end.hour == WORK_END and end.minute == 0)) \
                and end.date() == at.date():
            return at
        at += _STEP
    return latest.replace(second=0, microsecond=0)


def invitation(rb: Rollback, *, installation: str, created: datetime, deadline: datetime,
               pull_request: str | None = None, organizer: str | None = None,
               attendees: Sequence[str] = ()) -> bytes:
    """The ``.ics`` file. ``created`` (the reminder's creation) fixes DTSTAMP and the start,
    so the same reminder gives the same bytes; ``organizer``/``attendees`` are e-mail
    addresses (left out when there are none)."""
    begin = start(after=created, deadline=deadline)
    summary = f"Post-mortem: {rb.service} rollback {rb.ref} ({rb.severity})"
    description = "\n".join(filter(None, [
        f"Post-mortem review of {rb.ref} ({rb.service}, {rb.severity}), due by "
        f"{in_utc(deadline):%Y-%m-%d %H:%M} UTC.",
        f"Skeleton (pull request): {pull_request}" if pull_request else
        "The skeleton is attached to the post-mortem reminder in the rollback's thread.",
    ]))
    lines = [
        "BEGIN:VCALENDAR",
        "VERSION:2.0",
        "PRODID:-//rollback-bot//post-mortem meeting//EN",
        "CALSCALE:GREGORIAN",
        "METHOD:PUBLISH",
        "BEGIN:VEVENT",
        f"UID:{uid(rb, installation=installation)}",
        f"DTSTAMP:{_utc(created)}",
        f"DTSTART:{_utc(begin)}",
        f"DTEND:{_utc(begin + LENGTH)}",
        f"SUMMARY:{_text(summary)}",
        f"DESCRIPTION:{_text(description)}",
        *([f"URL:{pull_request}"] if pull_request else []),
        *([f"ORGANIZER:mailto:{organizer}"] if organizer else []),
        *(f"ATTENDEE;ROLE=REQ-PARTICIPANT:mailto:{a}" for a in attendees),
        "END:VEVENT",
        "END:VCALENDAR",
    ]
    return b"".join(_fold(line) + b"\r\n" for line in lines)


def _utc(at: datetime) -> str:
    return f"{in_utc(at):%Y%m%dT%H%M%SZ}"  # FORM #2, UTC time (RFC 5545 3.3.5)


def _text(value: str) -> str:
    """RFC 5545 3.3.11: backslash, semicolon and comma escaped; a newline is ``\\n``."""
    return (value.replace("\\", "\\\\").replace(";", "\\;").replace(",", "\\,")
            .replace("\r\n", "\\n").replace("\n", "\\n"))


def _fold(line: str) -> bytes:
    """RFC 5545 3.1: no line longer than 75 octets; a continuation starts with a space.
    Cuts fall between characters, never inside a UTF-8 sequence."""
    out: list[bytes] = []
    current = b""
    limit = 75
    for char in line:
        encoded = char.encode()
        if len(current) + len(encoded) > limit:
            out.append(current)
            current = b" "
            limit = 75
        current += encoded
    out.append(current)
    return b"\r\n".join(out)
