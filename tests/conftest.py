"""Session fixtures shared by every test folder: a real PostgreSQL and fresh databases.

``DATABASE_URL`` wins (CI may provide a server); otherwise an embedded PostgreSQL
(pgserver) runs under a temporary directory for the session.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import conninfo

from bot.db import migrate

pytest_plugins: list[str] = ["tests.integration.pg_fixtures", "tests.integration.prom_fixtures"]
if (Path(__file__).parent / "integration" / "kube_fixtures.py").exists():
    pytest_plugins.append("tests.integration.kube_fixtures")


@pytest.fixture(scope="session")
def database_url(pg_url: str) -> str:
    """One server per session (``pg_url`` lives outside pytest's rotating tmp dirs, which a
    concurrent pytest session would delete under a running server)."""
    return pg_url


@pytest.fixture
def db(database_url: str) -> Iterator[str]:
    """A new, migrated database for one test; dropped afterwards."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    params = conninfo.conninfo_to_dict(database_url)
    params["dbname"] = name
    url = conninfo.make_conninfo(**params)
    migrate(url)
    yield url
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
