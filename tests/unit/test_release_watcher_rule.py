"""The release watcher's pure parts: the rule over a range of points, the check slots, the
run over the threshold a pending request shows, and the snooze's end."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from bot.aftercare.watcher import (
    evaluate,
    over_since,
    proposal_facts,
    proposal_from_facts,
    slot_after,
)
from bot.domain.messages import ReleaseProposal
from bot.domain.words import RollbackLink
from bot.persistence.watch_store import WatchState

NOW = datetime(2026, 11, 29, 3, 10, tzinfo=UTC)
STEP = 60.0
DURATION = 600.0  # the runbook's 10 minutes, one point a minute: 11 points in the window


def _points(values: list[float | None], *, end: datetime = NOW) -> list[tuple[float, float]]:
    """One point per STEP ending at ``end``; None is a missing point."""
    last = end.timestamp()
    out = []
    for i, value in enumerate(values):
        if value is not None:
            out.append((last - (len(values) - 1 - i) * STEP, value))
    return out


def _rule(points: list[tuple[float, float]], threshold: float = 0.05) -> tuple[bool, bool]:
    reading = evaluate(points, now=NOW, duration=DURATION, step=STEP, threshold=threshold)
    return reading.holds, reading.recovered


def test_every_point_over_the_threshold_for_the_duration_holds() -> None:
    assert _rule(_points([0.01] * 10 + [0.06] * 11)) == (True, False)


def test_one_point_at_the_threshold_breaks_the_rule() -> None:
    """"Over 5 %" is strict: 5.00 % is not over."""
    values = [0.06] * 11
    values[5] = 0.05
    assert _rule(_points(values)) == (False, False)


def test_nine_minutes_over_is_not_sustained() -> None:
    assert _rule(_points([0.01] * 10 + [0.06] * 10)) == (False, False)


def test_every_point_at_or_under_the_threshold_has_recovered() -> None:
    assert _rule(_points([0.09] * 5 + [0.05] + [0.01] * 10)) == (False, True)


def test_a_gap_inside_the_window_is_no_evidence_either_way() -> None:
    """Even one missing point inside the window: only an edge may miss one."""
    one = [0.06] * 11
    one[5] = None
    assert _rule(_points(one)) == (False, False)
    over = [0.06] * 11
    over[4] = over[5] = None
    assert _rule(_points(over)) == (False, False)
    under = [0.01] * 11
    under[3] = under[7] = None
    assert _rule(_points(under)) == (False, False)


@pytest.mark.parametrize("edge", [0, -1])
def test_one_point_missing_at_an_edge_still_counts(edge: int) -> None:
    """Prometheus may not have evaluated the newest step yet, or the oldest falls just
    outside the window: one missing point at an edge is tolerated, not two."""
    one = [0.06] * 11
    one[edge] = None
    assert _rule(_points(one)) == (True, False)
    two = [0.06] * 11
    two[edge] = None
    two[1 if edge == 0 else -2] = None
    assert _rule(_points(two)) == (False, False)


def test_no_points_neither_hold_nor_recover() -> None:
    assert _rule([]) == (False, False)


def test_points_older_than_the_window_do_not_count() -> None:
    """The chart's 30 minutes are read; only the last duration decides."""
    assert _rule(_points([0.5] * 19 + [0.01] * 11)) == (False, True)


def test_slots_are_aligned_to_the_interval_since_the_epoch() -> None:
    at = datetime(2026, 11, 29, 3, 7, 12, 500_000, tzinfo=UTC)
    assert slot_after(at, 60) == datetime(2026, 11, 29, 3, 8, tzinfo=UTC)
    assert slot_after(at, 300) == datetime(2026, 11, 29, 3, 10, tzinfo=UTC)
    assert slot_after(at, 1) == datetime(2026, 11, 29, 3, 7, 13, tzinfo=UTC)
    # Strictly after: a check that runs on its slot schedules the next one.
    on_slot = datetime(2026, 11, 29, 3, 8, tzinfo=UTC)
    assert slot_after(on_slot, 60) == datetime(2026, 11, 29, 3, 9, tzinfo=UTC)
    # Two replicas starting a few seconds apart converge on the same slot (one chain).
    assert slot_after(at + timedelta(seconds=40), 60) == slot_after(at, 60)


def test_the_run_over_the_threshold_ends_at_a_point_under_it_or_a_gap() -> None:
    end = NOW.timestamp()
    assert over_since(_points([0.01, 0.06, 0.07, 0.08]), threshold=0.05, step=STEP) == \
        end - 2 * STEP
    assert over_since(_points([0.06, None, 0.07, 0.08]), threshold=0.05, step=STEP) == \
        end - STEP
    assert over_since(_points([0.06, 0.07, 0.04]), threshold=0.05, step=STEP) is None
    assert over_since([], threshold=0.05, step=STEP) is None


def test_a_snooze_silences_until_it_ends() -> None:
    until = NOW + timedelta(hours=1)
    state = WatchState("hvb", snoozed_until=until, snoozed_by="U1")
    assert state.snoozed(NOW)
    assert state.snoozed(until - timedelta(seconds=1))
    assert not state.snoozed(until)  # the end is exclusive: proposals resume at it
    assert not state.snoozed(until + timedelta(minutes=1))
    assert not WatchState("hvb").snoozed(NOW)


def test_a_stored_proposal_renders_again_as_it_was() -> None:
    message = ReleaseProposal(
        "hvb", since=NOW, duration_seconds=600, threshold=0.05, lowest=0.058, latest=0.061,
        current="rev 7", previous="rev 6", deployed_at=NOW - timedelta(hours=1),
        revisions_note="", health=None, severity="P1", snooze_seconds=3600,
        request_value="{}", auto_refused="refused",
        request=RollbackLink("RB-3", "C1", "1.2"), requested_by="U1")
    assert proposal_from_facts(proposal_facts(message)) == message
