"""The stability report's Timing line: checks late against their slots, and skipped ones."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from bot.aftercare.monitoring import timeliness
from bot.persistence.aftercare_store import Sample

T0 = datetime(2026, 11, 29, 3, 0, tzinfo=UTC)


def _sample(seq: int, late: float | None) -> Sample:
    due = T0 + timedelta(minutes=5 * seq)
    return Sample(seq, due + timedelta(seconds=late or 0), 0.001, True, "HTTP 200", 12.0,
                  due_at=None if late is None else due)


def test_on_time_checks_say_so_with_the_worst_lateness() -> None:
    assert (timeliness([_sample(1, 0.2), _sample(2, 0.9), _sample(3, 0.0)])
            == "all 3 checks on time (worst 0.9 s late)")


def test_late_and_skipped_checks_are_counted() -> None:
    samples = [_sample(1, 0.1), _sample(2, 4.2), _sample(4, 1.5), _sample(5, 0.3)]
    assert timeliness(samples) == ("2 of 4 checks ran more than 1 s late, worst 4.2 s; "
                                   "1 skipped (the bot was behind: the latest due check ran "
                                   "instead)")


def test_samples_from_before_due_times_were_stored_say_nothing() -> None:
    assert timeliness([_sample(1, None), _sample(2, None)]) == ""
