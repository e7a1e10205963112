"""Claims a process leaves behind are pruned; its liveness connection ends with the app.

Real PostgreSQL. A claim on a name with no row of its own (the release watcher's episode
keys, table ``claims``) is deleted by its claimant when done; a killed claimant never
deletes it, so housekeeping does (expired, or owner gone) and keeps the live ones. A
"killed" claimant's row is written as ``WatchStore.exclusive`` writes it, and its owner's
liveness connection then closes, which is what the server sees when a process dies. The
app's stop closes its claim owner, so a stopped app leaves no connection and no claim that
still counts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psycopg
from psycopg_pool import ConnectionPool

from bot.domain.config import RetentionSettings
from bot.persistence import claims
from bot.persistence.db import open_pool
from bot.persistence.housekeeping import Housekeeping
from bot.persistence.jobs import JobStore
from bot.persistence.store import Store
from bot.persistence.watch_store import WatchStore
from sandbox.config import parse_sandbox_config, sandbox_config_dict
from sandbox.fake_platform import FakePlatform
from sandbox.stack import SandboxStack
from tests.support.waiting import wait_until


def _sql(db: str, query: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    with psycopg.connect(db, autocommit=True) as conn:
        cur = conn.execute(query.encode(), params)
        return cur.fetchall() if cur.description else []


def _pool(url: str, replica: str) -> ConnectionPool:
    # A pool whose conninfo differs is its own claim owner, as another process is.
    return open_pool(f"{url} application_name={replica}", min_size=1, max_size=2)


def _claim(db: str, pool: ConnectionPool, key: str, *, seconds: float = 900) -> str:
    """A claim on ``key`` as ``WatchStore.exclusive`` takes it (the token of ``pool``'s
    owner, an expiry), which its claimant then never deletes: it stopped in between."""
    token = claims.owner_for(pool).claim_token()
    _sql(db, "INSERT INTO claims VALUES (%s, %s, now() + make_interval(secs => %s))",
         (key, token, seconds))
    return token


def _liveness_pids(db: str, owner: str) -> list[int]:
    """Backends holding ``owner``'s liveness lock (how claim_alive looks it up)."""
    return [int(r[0]) for r in _sql(
        db, "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted"
            " AND objsubid = 2 AND classid = %s::oid"
            " AND objid = (hashtext(%s)::bigint & 4294967295)::oid",
        (claims.LIVENESS_NAMESPACE, owner))]


def test_housekeeping_prunes_claims_of_gone_or_expired_claimants_and_keeps_live_ones(
        db: str) -> None:
    live, gone = _pool(db, "claims-live"), _pool(db, "claims-gone")
    try:
        _claim(db, live, "watch:expired", seconds=0)  # its owner lives on, the claim ran out
        _claim(db, gone, "watch:killed")
        claims.owner_for(gone).close()  # the process dies: the server frees its lock
        _sql(db, "INSERT INTO claims VALUES ('watch:never-alive', 'host:1:cafe0001/0a',"
                 " now() + interval '15 minutes')")  # an owner id no session holds
        with WatchStore(live).exclusive("live") as held:
            assert held
            assert _sql(db, "SELECT count(*) FROM claims")[0][0] == 4

            done = Housekeeping(store=Store(live), jobs=JobStore(live),
                                settings=RetentionSettings()).run()

            assert done["claims"] == 3
            assert _sql(db, "SELECT key FROM claims") == [("watch:live",)]
            with WatchStore(gone).exclusive("live") as other:  # still its owner's
                assert not other
        assert _sql(db, "SELECT count(*) FROM claims")[0][0] == 0  # deleted by its claimant
    finally:
        for pool in (live, gone):
            claims.owner_for(pool).close()
            pool.close()


def _stack(db: str, tmp_path: Path) -> SandboxStack:
    data = sandbox_config_dict(postmortem_dir=str(tmp_path / "post-mortems"))
    return SandboxStack(config=parse_sandbox_config(data), database_url=db,
                        platforms={"fake": FakePlatform()}, background=False,
                        scheduler=False)


def test_a_stopped_app_closes_its_liveness_connection_and_its_claims_stop_counting(
        db: str, tmp_path: Path) -> None:
    stack = _stack(db, tmp_path).start()
    stopped = False
    other = _pool(db, "claims-next-replica")
    try:
        assert stack.bot is not None
        # A claim in flight when the app stops (its claimant never clears it).
        token = _claim(db, stack.bot.store.pool, "watch:in-flight-at-stop")
        owner = token.split("/", 1)[0]
        pids = _liveness_pids(db, owner)
        assert len(pids) == 1 and _sql(db, "SELECT claim_alive(%s)", (token,)) == [(True,)]
        with WatchStore(other).exclusive("in-flight-at-stop") as taken:
            assert not taken

        stack.stop()
        stopped = True

        # The client closes the socket at once; the backend exits a moment later.
        wait_until(lambda: not _sql(db, "SELECT 1 FROM pg_stat_activity WHERE pid = %s",
                                    (pids[0],)),
                   timeout=10, message="the stopped app's liveness backend to end")
        assert _liveness_pids(db, owner) == []
        assert _sql(db, "SELECT claim_alive(%s)", (token,)) == [(False,)]
        with WatchStore(other).exclusive("in-flight-at-stop") as taken:
            assert taken
    finally:
        if not stopped:
            stack.stop()
        claims.owner_for(other).close()
        other.close()


def test_two_apps_on_one_database_share_the_owner_until_the_last_one_stops(
        db: str, tmp_path: Path) -> None:
    """One owner per process and database: a test's restart runs two apps at once in one
    process, and the first to stop must not free a claim the other still holds."""
    first, second = _stack(db, tmp_path / "a").start(), _stack(db, tmp_path / "b").start()
    running = [first, second]
    try:
        assert first.bot is not None and second.bot is not None
        token = _claim(db, second.bot.store.pool, "watch:held-by-the-second")
        first.stop()
        running.remove(first)
        assert _sql(db, "SELECT claim_alive(%s)", (token,)) == [(True,)]

        second.stop()
        running.remove(second)
        owner = token.split("/", 1)[0]
        wait_until(lambda: not _liveness_pids(db, owner), timeout=10,
                   message="the last app's liveness lock to be freed")
        assert _sql(db, "SELECT claim_alive(%s)", (token,)) == [(False,)]
    finally:
        for stack in running:
            stack.stop()


def test_a_store_closed_twice_leaves_the_other_stores_owner_alive(db: str) -> None:
    """A second ``close`` of one store must not count as the other store's close."""
    pool_a = open_pool(db, min_size=1, max_size=2)
    pool_b = open_pool(db, min_size=1, max_size=2)  # same conninfo: the same owner
    first, second = Store(pool_a), Store(pool_b)
    try:
        token = _claim(db, pool_b, "watch:held-by-the-second-store")
        first.close()
        first.close()
        assert _sql(db, "SELECT claim_alive(%s)", (token,)) == [(True,)]
    finally:
        second.close()
