"""The known-good configuration is recorded in the completion's own transaction.

Against a real PostgreSQL: ``Store.transition(..., known_good=...)`` writes the record only
when the compare-and-set wins, in the same transaction (one ``now()`` for both), and a
failure of either leaves neither, so a crash can never show a completed rollback with
the previous record (the planner would pin it and ``restore_config`` refuse).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from bot.domain.lifecycle import Event, State
from bot.domain.models import PlannedStep, Rollback
from bot.persistence.db import open_pool
from bot.persistence.errors import StaleState
from bot.persistence.store import Store
from platforms.base import Revision, Target

NOW = datetime(2026, 11, 29, 3, 0, tzinfo=UTC)
OLD = {"items": {"configmap/app-config": {"data": {"MODE": "old"}}}}
NEW = {"items": {"configmap/app-config": {"data": {"MODE": "new"}}}}


@pytest.fixture
def store(db: str) -> Iterator[Store]:
    s = Store(open_pool(db, max_size=4))
    yield s
    s.pool.close()


def _monitoring(store: Store) -> Rollback:
    rb = store.create_rollback(
        service="svc", platform="fake", severity="P0", policy_mode="immediate",
        scope=["app"], reason="r", requester="U1", channel_id="C1", channel_name="inc-x",
        current_revision=Revision("rs-3", 3, current=True), target_revision=Revision("rs-2", 2),
        target=Target("fake", "default", "svc"), steps=[PlannedStep("app_rollback", "roll")],
        checklist={}, assessment={}, expires_at=NOW + timedelta(minutes=30), created_at=NOW)
    for event in (Event.APPROVE, Event.START, Event.STEPS_DONE, Event.VERIFIED):
        rb = store.transition(rb.id, event, actor="bot")
    assert rb.state == State.MONITORING
    return rb


def test_the_record_commits_with_the_completion(store: Store) -> None:
    store.record_known_good_config("svc", "fake", OLD, rollback_id=None)
    rb = _monitoring(store)
    done = store.transition(rb.id, Event.STABLE, actor="bot", expected=State.MONITORING,
                            known_good=NEW)
    assert done.state == State.COMPLETED
    known = store.known_good_config("svc", "fake")
    assert known is not None and known[0] == NEW and known[2] == rb.id
    completed = store.audit_events(rb.id)[-1]
    assert completed.to_state == "completed"
    assert known[1] == completed.at  # one transaction: PostgreSQL's now() is its start


def test_a_lost_compare_and_set_records_nothing(store: Store) -> None:
    """A re-run of the deciding tick finds the rollback completed: plans made since then
    pinned the record's recorded_at, which must not move."""
    rb = _monitoring(store)
    store.transition(rb.id, Event.STABLE, actor="bot", expected=State.MONITORING,
                     known_good=NEW)
    before = store.known_good_config("svc", "fake")
    with pytest.raises(StaleState):
        store.transition(rb.id, Event.STABLE, actor="bot", expected=State.MONITORING,
                         known_good=OLD)
    assert store.known_good_config("svc", "fake") == before


def test_a_failed_record_leaves_the_rollback_monitoring(store: Store, db: str) -> None:
    """The record's write failing inside the transaction (here a trigger refuses it, as a
    full disk or a lost connection would) rolls the transition back too: the retried tick
    completes it with the record."""
    store.record_known_good_config("svc", "fake", OLD, rollback_id=None)
    before = store.known_good_config("svc", "fake")
    rb = _monitoring(store)
    with psycopg.connect(db, autocommit=True) as conn:
        conn.execute("CREATE FUNCTION refuse_known_good() RETURNS trigger LANGUAGE plpgsql"
                     " AS $$ BEGIN RAISE EXCEPTION 'refused'; END $$")
        conn.execute("CREATE TRIGGER refuse BEFORE INSERT OR UPDATE ON known_good_config"
                     " FOR EACH ROW EXECUTE FUNCTION refuse_known_good()")
    with pytest.raises(psycopg.errors.RaiseException):
        store.transition(rb.id, Event.STABLE, actor="bot", expected=State.MONITORING,
                         known_good=NEW)
    assert store.get(rb.id).state == State.MONITORING
    assert store.audit_events(rb.id)[-1].to_state == "monitoring"
    assert store.known_good_config("svc", "fake") == before
    with psycopg.connect(db, autocommit=True) as conn:
        conn.execute("DROP TRIGGER refuse ON known_good_config")
        conn.execute("DROP FUNCTION refuse_known_good()")
    store.transition(rb.id, Event.STABLE, actor="bot", expected=State.MONITORING,
                     known_good=NEW)
    known = store.known_good_config("svc", "fake")
    assert known is not None and known[0] == NEW and known[2] == rb.id
