"""A fresh PostgreSQL database for each test or benchmark run, on one server per session.

* ``postgres_server()`` yields an admin DSN: ``DATABASE_URL`` when set (CI may provide a
  server), otherwise an embedded PostgreSQL (pgserver, as
  ``bot.persistence.db.embedded_database_url`` runs) under a new short temporary directory
  (the Unix socket lives in it, and socket paths are limited to ~100 bytes), stopped and
  removed at the end.
* ``fresh_database(server_url)`` creates ``<prefix>_<random>`` on that server, yields its
  DSN (``migrated=True``: with the bot's schema) and drops it afterwards ``WITH (FORCE)``,
  so nothing one test or run does (a restore, a leftover connection) reaches another.

The pytest fixtures over these are ``pg_url`` and ``fresh_db``
(tests/integration/pg_fixtures.py) and ``database_url`` and ``db`` (tests/conftest.py);
the benchmarks use ``bench._common.fresh_database``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

__all__ = ["fresh_database", "postgres_server"]


@contextlib.contextmanager
def postgres_server(*, prefix: str = "rbpg-", cleanup_mode: str = "stop",
                    quiet_cleanup: bool = False) -> Iterator[str]:
    """An admin DSN for the session: ``DATABASE_URL``, else an embedded server.

    ``cleanup_mode`` is pgserver's (``stop`` or ``delete``); ``quiet_cleanup`` ignores a
    failure to stop it (a benchmark has printed its results by then)."""
    env = os.environ.get("DATABASE_URL")
    if env:
        yield env
        return
    from pgserver.postgres_server import get_server

    directory = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        server = get_server(directory / "pgdata", cleanup_mode=cleanup_mode)
        try:
            yield str(server.get_uri())
        finally:
            with contextlib.suppress(*((Exception,) if quiet_cleanup else ())):
                server.cleanup()
    finally:
        shutil.rmtree(directory, ignore_errors=True)


@contextlib.contextmanager
def fresh_database(server_url: str, *, prefix: str = "t", migrated: bool = False,
                   quiet_drop: bool = False) -> Iterator[str]:
    """An empty database on ``server_url`` (an admin DSN) for the duration of the block;
    ``migrated``: with the bot's schema. ``quiet_drop`` ignores a failing DROP."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        dsn = make_conninfo(server_url, dbname=name)
        if migrated:
            from bot.persistence.db import migrate

            migrate(dsn)
        yield dsn
    finally:
        with contextlib.suppress(*((Exception,) if quiet_drop else ())), \
                psycopg.connect(server_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)")
                         .format(sql.Identifier(name)))
