"""The incident's start as typed (``--started``, the form's field) and its default, the
data-loss window: every accepted form, and refusals that say why."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from bot.domain import command_parsing, incident_times
from bot.domain.errors import ParseError
from bot.domain.incident_times import DEPLOY, REQUEST, WATCHER, IncidentStart
from platforms.registry import PRODUCTION

NOW = datetime(2026, 11, 29, 3, 0, tzinfo=UTC)


@pytest.mark.parametrize("raw,expected", [
    ("40m", NOW - timedelta(minutes=40)),
    ("40min", NOW - timedelta(minutes=40)),
    ("40 minutes ago", NOW - timedelta(minutes=40)),
    ("1h30m", NOW - timedelta(minutes=90)),
    ("2h", NOW - timedelta(hours=2)),
    ("1d", NOW - timedelta(days=1)),
    ("02:45", datetime(2026, 11, 29, 2, 45, tzinfo=UTC)),
    ("02:45:30", datetime(2026, 11, 29, 2, 45, 30, tzinfo=UTC)),
    ("02:45Z", datetime(2026, 11, 29, 2, 45, tzinfo=UTC)),
    ("04:15+02:00", datetime(2026, 11, 29, 2, 15, tzinfo=UTC)),  # 02:15 UTC: in the past
    ("2026-11-28T23:50", datetime(2026, 11, 28, 23, 50, tzinfo=UTC)),  # no offset: UTC
    ("2026-11-29T02:10Z", datetime(2026, 11, 29, 2, 10, tzinfo=UTC)),
    ("2026-11-29T03:10+01:00", datetime(2026, 11, 29, 2, 10, tzinfo=UTC)),
])
def test_accepted_forms_read_against_the_clock(raw: str, expected: datetime) -> None:
    assert incident_times.check(raw) == raw
    at = incident_times.resolve(raw, now=NOW)
    assert at == expected and at.utcoffset() == timedelta(0)


def test_a_local_time_of_day_across_midnight_keeps_its_own_date() -> None:
    # 01:30+05:00 is 20:30 UTC of the day before: the offset's own "today" is 29 Nov.
    assert incident_times.resolve("01:30+05:00", now=NOW) == datetime(2026, 11, 28, 20, 30,
                                                                      tzinfo=UTC)


@pytest.mark.parametrize("raw,words", [
    ("03:30", "is in the future"),  # a time of day later than now is never "yesterday"
    ("2026-11-29T03:01Z", "is in the future"),
    ("2026-11-21T02:59Z", "more than 7 days ago"),
])
def test_future_and_absurdly_old_starts_are_refused(raw: str, words: str) -> None:
    with pytest.raises(ParseError, match=words) as err:
        incident_times.resolve(raw, now=NOW)
    assert f"--started {raw}" in str(err.value)


def test_a_time_of_day_in_the_future_says_how_to_name_yesterday() -> None:
    with pytest.raises(ParseError, match="2026-11-28T23:50Z") as err:
        incident_times.resolve("23:50", now=NOW)
    assert "times are UTC unless an offset is given" in str(err.value)


@pytest.mark.parametrize("raw", ["soon", "25:00", "12:61", "", "8d", "-40m", "40", "12:00+25:00"])
def test_malformed_starts_name_the_forms(raw: str) -> None:
    with pytest.raises(ParseError):
        incident_times.check(raw)


def test_the_command_flag_is_checked_at_parse_time() -> None:
    p = command_parsing.parse("hotel-voice-bot --severity P1 --started 40m",
                              platforms=PRODUCTION)
    assert p.started == "40m"
    assert command_parsing.parse("svc --started=2026-11-29T02:10Z",
                                 platforms=PRODUCTION).started == "2026-11-29T02:10Z"
    assert command_parsing.parse("svc --severity P1", platforms=PRODUCTION).started is None
    with pytest.raises(ParseError, match="--started"):
        command_parsing.parse("svc --started yesterday", platforms=PRODUCTION)
    with pytest.raises(ParseError, match="needs a value"):
        command_parsing.parse("svc --started", platforms=PRODUCTION)


def test_default_prefers_the_watcher_then_the_deploy_then_the_request() -> None:
    breach, deployed = NOW - timedelta(minutes=12), NOW - timedelta(minutes=50)
    assert incident_times.default(watcher_breach=breach, deployed_at=deployed,
                                  requested_at=NOW) == IncidentStart(breach, WATCHER)
    assert incident_times.default(watcher_breach=None, deployed_at=deployed,
                                  requested_at=NOW) == IncidentStart(deployed, DEPLOY)
    assert incident_times.default(watcher_breach=None, deployed_at=None,
                                  requested_at=NOW) == IncidentStart(NOW, REQUEST)


def test_default_skips_implausible_times() -> None:
    """A revision created weeks ago (re-deployed by an earlier rollback) or a time after the
    request is no incident start: the next source is used."""
    old = NOW - timedelta(days=30)
    later = NOW + timedelta(minutes=5)
    assert incident_times.default(watcher_breach=later, deployed_at=old,
                                  requested_at=NOW) == IncidentStart(NOW, REQUEST)


def test_records_name_the_source_and_what_downtime_counts_from() -> None:
    given = incident_times.recorded(NOW, "given", requested_at=NOW)
    assert given.source_text == "given by the requester"
    assert incident_times.counted_from(given) == "incident start"
    old_row = incident_times.recorded(None, None, requested_at=NOW)
    assert (old_row.at, incident_times.counted_from(old_row)) == (NOW, "rollback request")
    by_hand = incident_times.recorded(NOW - timedelta(minutes=5), None, requested_at=NOW)
    assert by_hand.source_text == "" and incident_times.counted_from(by_hand) == "incident start"


def test_data_loss_window() -> None:
    assert incident_times.data_loss(None, NOW) is None
    window = incident_times.data_loss(NOW - timedelta(minutes=15), NOW)
    assert window is not None and window.length == timedelta(minutes=15)
