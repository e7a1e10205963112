"""Every pooled connection is autocommit, whatever a borrower did with it.

The bot's stores rely on it: a statement is committed when it returns, and the claims of
the outboxes and the status page (bot.persistence.claims) are committed before their HTTP
calls. A
borrower that switched autocommit off once poisoned the pool: the next borrower's UPDATE
stayed uncommitted on an idle connection, and a job then waited forever on its own row
(seen in the sandbox drill: the e-mail job's ``mark_sent`` behind its own claim)."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest
from psycopg_pool import ConnectionPool

from bot.persistence.db import migrate, open_pool
from bot.persistence.statuspage_store import StatuspageStore
from tests.integration.pg_fixtures import fresh_db, pg_url  # noqa: F401
from tests.support.history_seed import seed_active


@pytest.fixture
def one_connection(fresh_db: str) -> Iterator[ConnectionPool]:  # noqa: F811
    migrate(fresh_db)
    pool = open_pool(fresh_db, min_size=1, max_size=1)  # every borrower gets the same one
    yield pool
    pool.close()


def test_a_borrower_that_turns_autocommit_off_cannot_poison_the_pool(
        one_connection: ConnectionPool) -> None:
    with one_connection.connection() as conn:
        conn.autocommit = False
    with one_connection.connection() as conn:
        assert conn.autocommit is True
        conn.execute("CREATE TABLE t (x int)")
        conn.execute("INSERT INTO t VALUES (1)")
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE


def test_the_status_page_lock_leaves_the_connection_autocommit(
        one_connection: ConnectionPool, fresh_db: str) -> None:  # noqa: F811
    store = StatuspageStore(one_connection)
    with store.holding(seed_active(fresh_db, "hotel-voice-bot")) as got:
        assert got
    with one_connection.connection() as conn:
        conn.execute("CREATE TABLE u (x int)")
        conn.execute("INSERT INTO u VALUES (1)")
        # Another session sees the row at once: nothing is held in a transaction.
        with psycopg.connect(fresh_db, autocommit=True) as other:
            assert other.execute("SELECT count(*) FROM u").fetchone() == (1,)
