"""Claims a process leaves behind are pruned; its liveness connection ends with the app.

Real PostgreSQL. A claim on a name with no row of its own (the release watcher's episode
keys, table ``claims``) is deleted by its claimant when done; a killed claimant never
deletes it, so housekeeping does (expired, or owner gone) and keeps the live ones. A
"killed" claimant's row is written as ``WatchStore.exclusive`` writes it, and its owner's
liveness connection then closes, which is what the server sees when a process dies.
"""

from __future__ import annotations

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
