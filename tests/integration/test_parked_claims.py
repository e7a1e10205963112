"""Parking a waiting rollback (migration 017) against a real PostgreSQL: fenced on the
lease, claimable again when its check is due or when someone asked to cancel it, and a
look at a parked step counts no new attempt."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from bot.domain.lifecycle import Event, State
from bot.domain.models import PlannedStep
from bot.persistence.db import open_pool
from bot.persistence.store import Store
from platforms.base import Revision, Target

NOW = datetime(2026, 11, 29, 3, 0, tzinfo=UTC)


@pytest.fixture
def store(db: str) -> Iterator[Store]:
    s = Store(open_pool(db, max_size=5))
    yield s
    s.pool.close()


def _approved(store: Store, service: str = "svc") -> int:
    """An approved rollback of ``service`` that no executor has claimed yet."""
    rb = store.create_rollback(
        service=service, platform="fake", severity="P0", policy_mode="immediate",
        scope=["app"], reason="r", requester="U1", channel_id="C1", channel_name="inc-x",
        current_revision=Revision("rs-3", 3, current=True), target_revision=Revision("rs-2", 2),
        target=Target("fake", "default", "app"),
        steps=[PlannedStep("app_rollback", "roll"), PlannedStep("wait_rollout", "wait")],
        checklist={}, assessment={}, expires_at=NOW + timedelta(minutes=30), created_at=NOW,
    )
    store.transition(rb.id, Event.APPROVE, actor="U2")
    return rb.id


def _executing(store: Store, owner: str = "A", service: str = "svc") -> int:
    """An executing rollback claimed by ``owner``, its wait step started."""
    rid = _approved(store, service)
    claimed = store.claim_next(owner=owner, lease_seconds=60, rollback_id=rid)
    assert claimed is not None and claimed.id == rid
    store.transition(rid, Event.START, actor=owner, expected=State.APPROVED)
    store.step_started(rid, 1)
    store.step_finished(rid, 1, status="done")
    store.step_started(rid, 2)
    return rid


def _wait_step(store: Store, rollback_id: int) -> object:
    return next(s for s in store.steps(rollback_id) if s.kind == "wait_rollout")


def test_a_parked_rollback_is_claimable_only_once_its_check_is_due(store: Store) -> None:
    rid = _executing(store)
    assert store.park(rid, owner="A", check_in=60)
    step = _wait_step(store, rid)
    assert step.status == "waiting" and step.attempts == 1  # type: ignore[attr-defined]
    assert store.claim_next(owner="B", lease_seconds=60) is None  # not due, lease free
    with store.pool.connection() as conn:  # the check falls due
        conn.execute("UPDATE rollbacks SET next_check_at = now() - interval '1 second'")
    again = store.claim_next(owner="B", lease_seconds=60)
    assert again is not None and again.id == rid
    with store.pool.connection() as conn:  # a wake-up time only: B's death leaves an orphan
        assert conn.execute("SELECT next_check_at FROM rollbacks WHERE id = %s",
                            (rid,)).fetchone() == (None,)
    store.step_started(rid, 2)  # the next look continues the attempt
    step = _wait_step(store, rid)
    assert step.status == "started" and step.attempts == 1  # type: ignore[attr-defined]


def test_a_cancel_makes_a_parked_rollback_claimable_at_once(store: Store) -> None:
    rid = _executing(store)
    assert store.park(rid, owner="A", check_in=3600)
    assert store.request_cancel(rid, actor="U3") is not None
    claimed = store.claim_next(owner="B", lease_seconds=60)
    assert claimed is not None and claimed.id == rid


def test_parking_is_fenced_on_the_lease(store: Store) -> None:
    rid = _executing(store)
    with store.pool.connection() as conn:  # A stalled; its lease ran out and B took over
        conn.execute("UPDATE rollbacks SET lease_expires_at = now() - interval '1 second'")
    assert store.claim_next(owner="B", lease_seconds=60) is not None
    assert not store.park(rid, owner="A", check_in=1)  # A's late park writes nothing
    assert _wait_step(store, rid).status == "started"  # type: ignore[attr-defined]
    assert store.heartbeat(rid, owner="B", lease_seconds=60)  # B still holds it


def _two_due_looks_and_an_approval(store: Store) -> tuple[int, int, int]:
    """Two parked rollbacks whose looks are due (the newer one due longer) and a fresh
    approval with the highest id: (older, newer, fresh)."""
    older, newer = _executing(store, service="svc-a"), _executing(store, service="svc-b")
    assert store.park(older, owner="A", check_in=60)
    assert store.park(newer, owner="A", check_in=60)
    with store.pool.connection() as conn:
        conn.execute("UPDATE rollbacks SET next_check_at = now() - interval '5 seconds'"
                     " WHERE id = %s", (newer,))
        conn.execute("UPDATE rollbacks SET next_check_at = now() - interval '1 second'"
                     " WHERE id = %s", (older,))
    return older, newer, _approved(store, service="svc-c")


def _claims(store: Store, n: int, *, looks_first: bool) -> list[int | None]:
    got = [store.claim_next(owner="B", lease_seconds=60, looks_first=looks_first)
           for _ in range(n)]
    return [rb.id if rb else None for rb in got]


def test_a_new_approval_is_claimed_before_due_parked_looks(store: Store) -> None:
    """A thousand parked rollouts whose looks are due must not starve a fresh approval;
    among the parked, the look due longest is taken first (not the oldest rollback)."""
    older, newer, fresh = _two_due_looks_and_an_approval(store)
    assert _claims(store, 3, looks_first=False) == [fresh, newer, older]


def test_the_other_turn_takes_due_looks_before_new_approvals(store: Store) -> None:
    """...and a burst of approvals must not starve the looks of those already parked (a
    finished rollout unnoticed for minutes): the executor alternates the two orders."""
    older, newer, fresh = _two_due_looks_and_an_approval(store)
    assert _claims(store, 3, looks_first=True) == [newer, older, fresh]


@pytest.mark.parametrize("looks_first", [False, True])
def test_a_requested_cancel_is_claimed_before_anything_else(store: Store,
                                                            looks_first: bool) -> None:
    _two_due_looks_and_an_approval(store)
    cancelled = _executing(store, service="svc-d")
    assert store.park(cancelled, owner="A", check_in=3600)  # not due for an hour
    assert store.request_cancel(cancelled, actor="U3") is not None
    assert _claims(store, 1, looks_first=looks_first) == [cancelled]

