"""Plan time, `db` scope: the bot refuses a database rollback its PostgreSQL client cannot do.

pg_dump refuses to dump a server newer than itself ("pg_dump cannot dump from PostgreSQL
servers newer than its own major version", https://www.postgresql.org/docs/current/app-pgdump.html),
so the check runs against the real target server before anything is planned: otherwise the
rollback would fail at its backup step with the app already scaled down. The old-client case
runs in a child process that has no pgserver (as in the image) and only Debian's older client
on PATH, against the suite's newer real server.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from bot.integrations import target_database as database
from bot.integrations.pg_tools import server_major
from tests.e2e.conftest import Harness
from tests.e2e.test_do_no_harm import APP_DSN_ENV, SERVICE, app_db, db_harness  # noqa: F401

ROOT = Path(__file__).resolve().parents[2]
DEBIAN_PG_DUMP = Path("/usr/bin/pg_dump")


def test_a_client_as_new_as_the_server_passes(app_db: str) -> None:  # noqa: F811
    assert database.client_tools_problem(app_db) is None


def _debian_major() -> int | None:
    if not DEBIAN_PG_DUMP.exists():
        return None
    out = subprocess.run([str(DEBIAN_PG_DUMP), "--version"], capture_output=True, text=True,
                         timeout=30, check=False).stdout
    found = re.search(r"\b(\d+)(?:\.\d+)+", out)
    return int(found.group(1)) if found else None


def test_an_older_client_is_named_and_refused(app_db: str, tmp_path: Path) -> None:  # noqa: F811
    server = server_major(app_db)
    client = _debian_major()
    if client is None or client >= server:  # a machine detail, not a defect: skip, even in CI
        pytest.skip(f"needs Debian's pg_dump older than the suite's PostgreSQL {server} "
                    f"(have {client})")
    probe = (
        "import sys\n"
        "sys.modules['pgserver'] = None  # the image: no embedded PostgreSQL, no bundled tools\n"
        "from bot.integrations import target_database as database\n"
        "print(database.client_tools_problem(sys.argv[1]))\n")
    env = {**os.environ, "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-c", probe, app_db], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == (
        f"the target server is PostgreSQL {server} and this bot has pg_dump {client}, "
        f"pg_restore {client}; a client older than the server cannot back it up or restore it")


def test_an_unreachable_database_refuses_db_scope_before_anything_happens(
        db_harness: Callable[..., Harness], monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    h = db_harness()
    secret = "s3cr3t-pw"
    monkeypatch.setenv(APP_DSN_ENV, f"postgresql://nobody:{secret}@127.0.0.1:1/none")
    h.request(f"{SERVICE} --severity P0 --scope app,db", user="bob")
    refusal = h.wait_ephemeral("bob", "Refused")
    assert "reachable" in refusal and "without `db`" in refusal
    assert secret not in refusal
    assert "nobody" not in refusal and "127.0.0.1" not in refusal  # who/where: logs only
    assert h.bot.store.history(SERVICE) == []
    assert sum(h.platform.mutations().values()) == 0


def test_an_unset_dsn_refuses_db_scope_before_anything_happens(
        db_harness: Callable[..., Harness], monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    """Without the DSN the backup step would fail only after the app was scaled to 0."""
    h = db_harness()
    monkeypatch.delenv(APP_DSN_ENV, raising=False)
    h.request(f"{SERVICE} --severity P0 --scope app,db", user="bob")
    refusal = h.wait_ephemeral("bob", "Refused")
    assert f"`{APP_DSN_ENV}` is not set" in refusal and "without `db`" in refusal
    assert h.bot.store.history(SERVICE) == []
    assert sum(h.platform.mutations().values()) == 0
