"""The post-mortem meeting's ``.ics``: RFC 5545 as ``icalendar`` reads it, and its slot."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import icalendar
import pytest

from bot.aftercare import meeting
from bot.domain.models import Rollback
from tests.unit.test_aftercare_pure import _rb


def _at(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 11, day, hour, minute, tzinfo=UTC)  # 2026-11-23 is a Monday


@pytest.mark.parametrize("after,deadline,expected", [
    (_at(23, 3), _at(25, 3), _at(23, 9)),  # Monday night: Monday 09:00
    (_at(23, 10, 10), _at(25, 10), _at(23, 11, 30)),  # an hour's notice, on the half hour
    (_at(23, 16, 0), _at(25, 16), _at(24, 9)),  # 17:00 is the end of the day: Tuesday
    (_at(27, 16, 30), _at(29, 16, 30), _at(29, 16)),  # Friday late, due Sunday: at the end
    (_at(28, 3), _at(28, 5), _at(28, 4, 30)),  # nothing fits the working week: at the end
])
def test_the_slot(after: datetime, deadline: datetime, expected: datetime) -> None:
    start = meeting.start(after=after, deadline=deadline)
    assert start == expected
    assert start + meeting.LENGTH <= deadline


def test_a_long_unicode_description_folds_at_75_octets_and_parses_back() -> None:
    rb: Rollback = _rb(service="hôtel-voice-bot")
    url = "https://github.com/acme/hotel-voice-bot/pull/12345?a=1,b=2;c=" + "é" * 40
    raw = meeting.invitation(rb, installation="inst-1", created=_at(23, 3),
                             deadline=_at(25, 3), pull_request=url,
                             organizer="ic@example.com", attendees=["lead@example.com"])
    lines = raw.split(b"\r\n")
    assert lines[-1] == b"" and all(len(line) <= 75 for line in lines)
    assert any(line.startswith(b" ") for line in lines)  # something was folded
    for line in lines:
        line.decode()  # no cut inside a UTF-8 sequence
    [event] = icalendar.Calendar.from_ical(raw).walk("VEVENT")
    assert url in str(event["DESCRIPTION"])  # commas and semicolons escaped and back
    assert str(event["ORGANIZER"]) == "mailto:ic@example.com"
    assert str(event["ATTENDEE"]) == "mailto:lead@example.com"
    assert event.decoded("DTEND") - event.decoded("DTSTART") == timedelta(minutes=30)
    assert str(event["UID"]) == meeting.uid(rb, installation="inst-1")
    again = meeting.invitation(rb, installation="inst-1", created=_at(23, 3),
                               deadline=_at(25, 3), pull_request=url,
                               organizer="ic@example.com", attendees=["lead@example.com"])
    assert again == raw  # the same reminder, the same bytes
