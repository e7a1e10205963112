"""PostgreSQL access: the connection pool, embedded PostgreSQL, and numbered migrations.

``DATABASE_URL`` wins; without it an embedded server (pgserver) runs under the data dir.
Migrations are applied at start under an advisory lock so replicas starting together
apply each file exactly once.
"""

from __future__ import annotations

import logging
import os
from importlib import resources
from pathlib import Path
from typing import Any

import psycopg
from psycopg_pool import ConnectionPool

log = logging.getLogger(__name__)

MIGRATION_LOCK_KEY = 0x726F6C6C  # "roll": arbitrary, constant across versions
_embedded: list[Any] = []  # keeps embedded servers referenced for the process lifetime


def data_dir() -> Path:
    return Path(os.environ.get("ROLLBACK_DATA_DIR", "~/.local/share/rollback-bot")).expanduser()


def embedded_database_url(directory: Path | None = None) -> str:
    """Start (or join) an embedded PostgreSQL under ``directory`` and return its URL."""
    try:
        import pgserver  # imported lazily: only the embedded default needs it
    except ImportError as err:  # the `embedded` extra; the image leaves it out on purpose
        raise RuntimeError(
            "DATABASE_URL is unset and the embedded PostgreSQL is not installed: set "
            "DATABASE_URL, or `pip install 'rollback-bot[embedded]'`") from err

    pgdata = (directory or data_dir()) / "pgdata"
    pgdata.mkdir(parents=True, exist_ok=True)
    server = pgserver.get_server(pgdata, cleanup_mode="stop")  # type: ignore[attr-defined]
    _embedded.append(server)
    return str(server.get_uri())


def resolve_database_url() -> str:
    url = os.environ.get("DATABASE_URL")
    if url:
        return url
    log.info("DATABASE_URL unset; using embedded PostgreSQL under %s", data_dir())
    return embedded_database_url()


def _autocommit_again(conn: psycopg.Connection[Any]) -> None:
    """psycopg_pool's ``reset`` callback (run when a connection is given back, idle)."""
    if not conn.autocommit:
        log.warning("a pooled connection came back with autocommit off; switched back on")
        conn.autocommit = True


def open_pool(url: str, *, min_size: int = 1, max_size: int = 10, timeout: float = 30.0,
              name: str = "rollback-bot") -> ConnectionPool:
    """``timeout``: how long a borrower waits for a connection before ``PoolTimeout``
    (psycopg_pool's own default is 30 s); ``name`` tells pools apart in its logs."""
    pool = ConnectionPool(
        url,
        min_size=min_size,
        max_size=max_size,
        # Timestamps come back in UTC whatever the server's zone: messages say "UTC".
        kwargs={"autocommit": True, "options": "-c timezone=UTC"},
        # Every user of the pool relies on autocommit (a statement is committed when it
        # returns; session advisory locks are held across HTTP calls without a
        # transaction). ``kwargs`` apply only when a connection is made, so a borrower that
        # switched autocommit off would hand later borrowers a connection that keeps its
        # row locks until it is next used: a job then waits forever on its own update.
        reset=_autocommit_again,
        timeout=timeout,
        open=False,
        name=name,
    )
    pool.open(wait=True, timeout=30)
    return pool


# The executor's lease writes (heartbeat, fence, park, release) are tiny single statements;
# a few connections serve every worker and heartbeat thread of a process.
LEASE_POOL_SIZE = 3


def open_lease_pool(url: str, *, lease_seconds: float) -> ConnectionPool:
    """The executor's own pool for lease writes: they never queue behind jobs or after-ack
    work holding the main pool's connections (a fence that timed out there, after a
    destructive step was journaled ``started``, sent the rollback to a human for nothing).
    A borrow waits at most a third of the lease, so a fence that gets through still
    renews well inside it and one that cannot refuses while the lease is surely ours."""
    return open_pool(url, min_size=1, max_size=LEASE_POOL_SIZE,
                     timeout=lease_seconds / 3, name="rollback-bot-leases")


def _migration_files() -> list[tuple[int, str, str]]:
    folder = resources.files("bot.persistence") / "migrations"
    found = []
    for entry in folder.iterdir():
        name = entry.name
        if name.endswith(".sql") and name[:3].isdigit():
            found.append((int(name[:3]), name, entry.read_text(encoding="utf-8")))
    versions = [v for v, _, _ in found]
    duplicates = sorted({v for v in versions if versions.count(v) > 1})
    if duplicates:  # two files with one number: one would be silently skipped
        raise RuntimeError(f"duplicate migration numbers: {duplicates}")
    return sorted(found)


def migrate(url: str) -> list[str]:
    """Apply pending migrations; returns the names applied by this call."""
    applied: list[str] = []
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK_KEY,))
        try:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " version integer PRIMARY KEY, name text NOT NULL,"
                " applied_at timestamptz NOT NULL DEFAULT now())"
            )
            done = {r[0] for r in conn.execute("SELECT version FROM schema_migrations")}
            for version, name, sql in _migration_files():
                if version in done:
                    continue
                with conn.transaction():
                    conn.execute(sql.encode())
                    conn.execute(
                        "INSERT INTO schema_migrations (version, name) VALUES (%s, %s)",
                        (version, name),
                    )
                applied.append(name)
                log.info("applied migration %s", name)
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK_KEY,))
    return applied
