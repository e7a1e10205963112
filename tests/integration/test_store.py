"""Store against a real PostgreSQL: CAS transitions, one active per service, leases, dedupe."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest

from bot.domain.errors import InvalidTransition
from bot.domain.lifecycle import Event, State
from bot.domain.models import PlannedStep
from bot.persistence.db import migrate, open_pool
from bot.persistence.errors import ActiveRollbackExists, StaleState
from bot.persistence.store import Store
from platforms.base import Revision, Target

NOW = datetime(2026, 11, 29, 3, 0, tzinfo=UTC)


@pytest.fixture
def store(db: str) -> Iterator[Store]:
    s = Store(open_pool(db, max_size=25))
    yield s
    s.pool.close()


def _create(store: Store, service: str = "svc"):
    return store.create_rollback(
        service=service, platform="fake", severity="P1", policy_mode="hotfix_window",
        scope=["app"], reason="r", requester="U1", channel_id="C1", channel_name="inc-x",
        current_revision=Revision("rs-3", 3, current=True), target_revision=Revision("rs-2", 2),
        target=Target("fake", "default", "app"),
        steps=[PlannedStep("app_rollback", "roll"), PlannedStep("wait_rollout", "wait")],
        checklist={}, assessment={}, expires_at=NOW + timedelta(minutes=30), created_at=NOW,
    )


def test_migrations_are_idempotent(db: str) -> None:
    assert migrate(db) == []


def test_create_pins_target_and_audits(store: Store) -> None:
    rb = _create(store)
    assert rb.state == State.PENDING_APPROVAL
    assert rb.target_revision == Revision("rs-2", 2)
    assert [s.kind for s in store.steps(rb.id)] == ["app_rollback", "wait_rollout"]
    events = store.audit_events(rb.id)
    assert [(e.event, e.to_state, e.actor) for e in events] == [
        ("requested", "pending_approval", "U1")]


def test_one_active_rollback_per_service(store: Store) -> None:
    first = _create(store)
    with pytest.raises(ActiveRollbackExists) as err:
        _create(store)
    assert err.value.existing.id == first.id
    store.transition(first.id, Event.CANCEL, actor="U1")
    assert _create(store).id != first.id  # a finished one frees the service


def test_a_hotfix_report_moves_the_deadline_once_and_only_while_pending(store: Store) -> None:
    """Twenty clicks racing: one moves the deadline (audited), the rest lose; the expiry only
    ever moves later; after a decision nothing moves."""
    rb = store.create_rollback(
        service="svc", platform="fake", severity="P1", policy_mode="hotfix_window",
        scope=["app"], reason="r", requester="U1", channel_id="C1", channel_name="inc-x",
        current_revision=None, target_revision=Revision("rs-2", 2),
        target=Target("fake", "default", "app"), steps=[], checklist={}, assessment={},
        expires_at=NOW + timedelta(minutes=30), created_at=NOW,
        decision_due_at=NOW + timedelta(minutes=15))
    assert rb.decision_due_at == NOW + timedelta(minutes=15) and rb.hotfix_reported_by is None
    due = NOW + timedelta(minutes=30)

    def report(i: int) -> str:
        try:  # an expiry earlier than the stored one never shortens it
            store.report_hotfix(rb.id, user=f"U{i}", decision_due_at=due,
                                expires_at=NOW + timedelta(minutes=20 + i))
            return "won"
        except StaleState:
            return "lost"

    with ThreadPoolExecutor(20) as pool:
        outcomes = list(pool.map(report, range(20)))
    assert outcomes.count("won") == 1
    moved = store.get(rb.id)
    winner = f"U{outcomes.index('won')}"
    assert (moved.decision_due_at, moved.hotfix_reported_by) == (due, winner)
    assert moved.expires_at == max(NOW + timedelta(minutes=30),
                                   NOW + timedelta(minutes=20 + outcomes.index("won")))
    reports = [e for e in store.audit_events(rb.id) if e.event == "hotfix_in_progress"]
    assert [(e.actor, e.detail["previous_due_at"]) for e in reports] == [
        (winner, (NOW + timedelta(minutes=15)).isoformat())]

    other = _create(store, "svc2")
    store.transition(other.id, Event.APPROVE, actor="U2", updates={"approver": "U2"})
    with pytest.raises(StaleState) as err:
        store.report_hotfix(other.id, user="U3", decision_due_at=due, expires_at=due)
    assert err.value.current.state == State.APPROVED
    assert err.value.current.hotfix_reported_by is None


def test_concurrent_approvals_exactly_one_wins(store: Store) -> None:
    rb = _create(store)

    def approve(i: int) -> str:
        try:
            store.transition(rb.id, Event.APPROVE, actor=f"U{i}", expected=State.PENDING_APPROVAL,
                             updates={"approver": f"U{i}"})
            return "won"
        except StaleState:
            return "lost"

    with ThreadPoolExecutor(20) as pool:
        outcomes = list(pool.map(approve, range(20)))
    assert outcomes.count("won") == 1
    approvals = [e for e in store.audit_events(rb.id) if e.event == "approve"]
    assert len(approvals) == 1
    with pytest.raises(InvalidTransition):
        store.transition(rb.id, Event.APPROVE, actor="late")


def test_claim_skips_locked_and_respects_lease(store: Store) -> None:
    rb = _create(store)
    store.transition(rb.id, Event.APPROVE, actor="U2")
    with ThreadPoolExecutor(8) as pool:
        claims = list(pool.map(lambda i: store.claim_next(owner=f"w{i}", lease_seconds=60),
                               range(8)))
    winners = [c for c in claims if c is not None]
    assert len(winners) == 1 and winners[0].id == rb.id
    assert store.claim_next(owner="other", lease_seconds=60) is None  # lease still live
    with store.pool.connection() as conn:  # simulate the owner dying: its lease runs out
        conn.execute("UPDATE rollbacks SET lease_expires_at = now() - interval '1 second'")
    again = store.claim_next(owner="other", lease_seconds=60)
    assert again is not None and again.id == rb.id
    assert not store.heartbeat(rb.id, owner="w-dead", lease_seconds=60)
    assert store.heartbeat(rb.id, owner="other", lease_seconds=60)


def test_first_delivery_is_recorded_once(store: Store) -> None:
    with ThreadPoolExecutor(10) as pool:
        results = list(pool.map(lambda _: store.first_delivery("command:T123"), range(10)))
    assert results.count(True) == 1


def test_failing_job_backs_off_then_gives_up(db: str) -> None:
    from bot.persistence.jobs import JobStore

    pool = open_pool(db)
    jobs = JobStore(pool)
    job = jobs.schedule(kind="k", due_at=NOW)
    assert job is not None
    dues = []
    for _ in range(8):
        assert jobs.claim(job.id, owner="leader")
        again = jobs.retry_later(job.id, now=NOW, error="boom", max_attempts=8)
        pending = jobs.pending(kinds=["k"])
        dues.append((pending[0].due_at - NOW).total_seconds() if pending else None)
        if not again:
            break
    assert dues[:7] == [2, 4, 8, 16, 32, 64, 128]  # exponential, never every second
    assert dues[7] is None and not again  # the 8th failure parks it for a human
    with pool.connection() as conn:
        status, attempts, error = conn.execute(
            "SELECT status, attempts, last_error FROM scheduled_jobs WHERE id = %s",
            (job.id,)).fetchone()
    assert (status, attempts, error) == ("failed", 8, "boom")
    pool.close()
