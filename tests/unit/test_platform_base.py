"""The platform contract's shared helpers: one meaning of Retry-After for every adapter."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

from platforms.base import Revision, parse_retry_after


def test_retry_after_seconds_date_and_garbage() -> None:
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after("-3") == 0.0
    assert parse_retry_after(None) is None and parse_retry_after("") is None
    assert parse_retry_after("soon") is None
    later = format_datetime(datetime.now(UTC) + timedelta(seconds=120), usegmt=True)
    assert 100 < (parse_retry_after(later) or 0) <= 120


def test_revision_round_trips_through_the_store_format() -> None:
    rev = Revision("hotel-voice-bot-7d9f", 3, ("app:1.3.0",), "deploy 1.3.0",
                   datetime(2026, 11, 29, 3, 0, tzinfo=UTC), current=False)
    assert Revision.from_dict(rev.to_dict()) == rev
