"""Lease writes never wait behind lock-holding work: the executor's heartbeat, fence, park
and release borrow from their own small pool (``db.open_lease_pool``).

Through the wire (signed requests and clicks, the Slack emulator, real PostgreSQL, real
psycopg pools): with every connection of the main pool checked out by the test (as jobs
and after-ack work can hold them), a rollback waiting on its rollout keeps its lease
alive, no other replica can take it, a wait parks, and the rollback completes once the
pool frees up. And a
fence whose lease pool cannot answer refuses: nothing is written to the platform until
the lease is confirmed again.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any

import psycopg
import pytest
from psycopg_pool import ConnectionPool

from bot.persistence.db import open_pool
from bot.persistence.store import Store
from platforms.base import TransientPlatformError
from tests.e2e.conftest import Harness
from tests.e2e.conftest import make_harness as make_harness  # noqa: F401  (fixture)
from tests.support.waiting import wait_until

SERVICE = "hotel-voice-bot"
HELD = 3600.0  # a rollout that does not finish until the test drops rollout_seconds to 0
LEASE = 3.0  # seconds; the lease pool's borrow timeout is a third of it


def _executor(**settings: Any) -> Callable[[dict[str, Any]], None]:
    def override(data: dict[str, Any]) -> None:
        data["executor"].update({"workers": 1, "lease_seconds": LEASE,
                                 "heartbeat_seconds": 0.2, **settings})
    return override


@contextmanager
def _exhausted(pool: ConnectionPool) -> Iterator[list[psycopg.Connection[Any]]]:
    """Check out every connection ``pool`` may have, as long-running work would."""
    held = [pool.getconn(timeout=30) for _ in range(pool.max_size)]
    try:
        assert pool.get_stats()["pool_available"] == 0
        yield held
    finally:
        for conn in held:
            pool.putconn(conn)


def _lease(db: str, rollback_id: int) -> tuple[str | None, datetime | None, datetime]:
    """(lease owner, lease expiry, the server's now), read on a connection of its own."""
    with psycopg.connect(db, autocommit=True) as conn:
        row = conn.execute("SELECT lease_owner, lease_expires_at, now() FROM rollbacks"
                           " WHERE id = %s", (rollback_id,)).fetchone()
    assert row is not None
    return row[0], row[1], row[2]


def _step(h: Harness, rollback_id: int, kind: str) -> Any:
    return next(s for s in h.bot.store.steps(rollback_id) if s.kind == kind)


def test_a_rollback_keeps_its_lease_and_completes_while_the_main_pool_is_exhausted(
        make_harness: Callable[..., Harness], db: str) -> None:
    # The worker blocks inside the rollout wait (the old way), heartbeating all along.
    h = make_harness(config_overrides=_executor(release_while_waiting=False),
                     rollout_seconds=HELD)
    main = h.bot.store.pool
    assert h.bot.store.lease_pool is not main  # wired by the composition root
    rid, _msg = h.request_and_approve_p0()
    wait_until(lambda: _step(h, rid, "wait_rollout").status == "started", 20, 0.05,
               "the rollout wait to start")
    looks = h.platform.calls()["rollout_status"]
    # Past its first thread line: the worker now only reads the platform and heartbeats.
    wait_until(lambda: h.platform.calls()["rollout_status"] >= looks + 2, 20, 0.05,
               "two more looks at the rollout")
    owner = _lease(db, rid)[0]
    assert owner is not None

    with _exhausted(main):
        _, _, exhausted_at = _lease(db, rid)
        # Renewed at a moment when the lease it held at exhaustion had surely run out:
        # the heartbeats got through while every main-pool connection was taken. (On the
        # main pool they queued until PoolTimeout and the lease lapsed.)
        wait_until(lambda: (lease := _lease(db, rid))[1] is not None
                   and lease[1] >= exhausted_at + timedelta(seconds=2 * LEASE),
                   6 * LEASE, 0.1, "a heartbeat through the exhausted main pool",
                   diagnostics=lambda: f"lease {_lease(db, rid)}, main pool "
                                       f"{main.get_stats()}")
        assert main.get_stats()["pool_available"] == 0  # still exhausted meanwhile
        # Another replica (its own pool, like another process) finds nothing to take over.
        other = Store(open_pool(db, max_size=1))
        try:
            assert other.claim_next(owner="replica-b", lease_seconds=LEASE,
                                    rollback_id=rid) is None
        finally:
            other.close()
        assert _lease(db, rid)[0] == owner

    h.platform.rollout_seconds = 0  # the rollout finishes now
    rb = h.wait_state(rid, "monitoring", "completed", timeout=30)
    assert rb.state.value in ("monitoring", "completed")
    assert _step(h, rid, "wait_rollout").status == "done"
    assert h.platform.mutations()["rollback_to"] == 1


def test_a_wait_parks_while_the_main_pool_is_exhausted(
        make_harness: Callable[..., Harness], db: str) -> None:
    h = make_harness(config_overrides=_executor(), rollout_seconds=HELD)
    main = h.bot.store.pool
    blip = TransientPlatformError("etcdserver: leader changed")
    # Every look sees the API blip: its line is journaled once and the rollback parks.
    h.platform.inject("rollout_status", blip, times=10**6)
    blips = h.platform.faults[-1]
    rid, _msg = h.request_and_approve_p0()
    wait_until(lambda: _step(h, rid, "wait_rollout").status == "waiting"
               and "leader changed" in str(_step(h, rid, "wait_rollout").result
                                           .get("last_status")),
               20, 0.05, "the first look to park")
    # A later look hangs on the API, then reads the same blip (nothing new to journal):
    # until it answers, the executor holds no connection of the main pool.
    answer = threading.Event()
    h.platform.inject("rollout_status", blip, times=1, hold=answer)
    hanging = h.platform.faults[-1]

    def hangs() -> bool:
        blips.times = 0  # again each poll: a look running meanwhile may write it back
        return hanging.times == 0
    wait_until(hangs, 20, 0.05, "a look to hang on the platform")

    with _exhausted(main):
        answer.set()  # the look ends while every main-pool connection is taken
        # Parked through the lease pool: journaled waiting, the lease given up. (On the
        # main pool the park queued until PoolTimeout, leaving the step started.)
        wait_until(lambda: _waiting_without_lease(db, rid), 4 * LEASE, 0.05,
                   "the rollback to park",
                   diagnostics=lambda: f"lease {_lease(db, rid)}, main pool "
                                       f"{main.get_stats()}")
        assert main.get_stats()["pool_available"] == 0  # still exhausted meanwhile

    h.platform.rollout_seconds = 0  # the next look sees the rollout finished
    rb = h.wait_state(rid, "monitoring", "completed", timeout=30)
    assert rb.state.value in ("monitoring", "completed")
    assert _step(h, rid, "wait_rollout").status == "done"
    assert h.platform.mutations()["rollback_to"] == 1


def _waiting_without_lease(db: str, rollback_id: int) -> bool:
    """Read on a connection of its own: the main pool is the test's meanwhile."""
    with psycopg.connect(db, autocommit=True) as conn:
        row = conn.execute(
            "SELECT s.status, r.lease_owner FROM rollback_steps s JOIN rollbacks r"
            " ON r.id = s.rollback_id WHERE s.rollback_id = %s AND s.kind = 'wait_rollout'",
            (rollback_id,)).fetchone()
    return row is not None and row[0] == "waiting" and row[1] is None


def test_a_fence_that_cannot_reach_the_database_writes_nothing(
        make_harness: Callable[..., Harness], db: str,
        caplog: pytest.LogCaptureFixture) -> None:
    h = make_harness(config_overrides=_executor())
    lease_pool = h.bot.store.lease_pool
    assert lease_pool is not h.bot.store.pool
    caplog.set_level(logging.WARNING, logger="bot.execution.executor")

    with _exhausted(lease_pool):  # every lease write now waits out its pool's timeout
        rid, _msg = h.request_and_approve_p0()
        wait_until(lambda: any("could not confirm the lease, nothing written" in r.message
                               and f"RB-{rid}" in r.message for r in caplog.records),
                   6 * LEASE, 0.05, "the fence to refuse",
                   diagnostics=lambda: "\n".join(r.message for r in caplog.records))
        # The fence came before the first platform call: nothing was written or started.
        assert h.platform.mutations()["rollback_to"] == 0
        assert all(s.status == "pending" for s in h.bot.store.steps(rid))
        assert h.bot.store.get(rid).state.value == "executing"
        # Giving the lease up could not reach the database either: said, not a traceback.
        wait_until(lambda: any("could not give up the lease" in r.message
                               for r in caplog.records), 6 * LEASE, 0.05,
                   "the failed release to be logged")

    # The lease runs out by itself; the next claim confirms it and runs the plan once.
    rb = h.wait_state(rid, "monitoring", "completed", timeout=30)
    assert rb.state.value in ("monitoring", "completed")
    assert h.platform.mutations()["rollback_to"] == 1
    assert not any(r.exc_info for r in caplog.records
                   if r.name == "bot.execution.executor")
