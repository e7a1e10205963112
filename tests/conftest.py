"""Session fixtures shared by every test folder: a real PostgreSQL and fresh databases.

``DATABASE_URL`` wins (CI may provide a server); otherwise an embedded PostgreSQL
(pgserver) runs under a temporary directory for the session.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import conninfo

from bot.db import embedded_database_url, migrate

pytest_plugins: list[str] = []
for _plugin in ("tests.integration.pg_fixtures", "tests.integration.prom_fixtures",
                "tests.integration.kube_fixtures"):
    if (Path(__file__).parent / "integration" / f"{_plugin.rsplit('.', 1)[1]}.py").exists():
        pytest_plugins.append(_plugin)


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = os.environ.get("DATABASE_URL")
    if url:
        return url
    return embedded_database_url(tmp_path_factory.mktemp("pg"))


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
