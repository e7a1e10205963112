"""Real PostgreSQL for tests: ``pg_url`` (session), ``fresh_db`` (a new database per test)
and ``pgss_url`` (a Debian PostgreSQL with pg_stat_statements preloaded, skipped if absent).

``DATABASE_URL`` wins for ``pg_url``; otherwise an embedded pgserver runs under a temp dir
(both from ``tests.support.database``).
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.database import fresh_database, postgres_server


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    with postgres_server(prefix="rbpg-", cleanup_mode="stop") as url:
        yield url


@pytest.fixture
def fresh_db(pg_url: str) -> Iterator[str]:
    """DSN of a new, empty database, dropped after the test (restores cannot leak)."""
    with fresh_database(pg_url) as dsn:
        yield dsn


# ----------------------------------------------------- PostgreSQL with pg_stat_statements
def _debian_postgres_bin() -> Path | None:
    for bindir in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        lib = Path(bindir).parent / "lib" / "pg_stat_statements.so"
        if (Path(bindir) / "postgres").is_file() and lib.is_file():
            return Path(bindir)
    return None


def _unavailable(reason: str) -> None:
    """Under CI the slow-query path must run (.ci/install-system-deps.sh installs Debian's
    PostgreSQL), so a missing server fails the test instead of skipping it silently."""
    if os.environ.get("CI"):
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def pgss_url() -> Iterator[str]:
    """A throwaway cluster of the distribution's PostgreSQL with pg_stat_statements loaded.

    pgserver's build lacks the extension, so the positive slow-query path needs this one.
    PostgreSQL refuses to run as root, hence ``runuser -u postgres`` when we are root.
    """
    bindir = _debian_postgres_bin()
    if bindir is None:
        _unavailable("no PostgreSQL server with pg_stat_statements installed on this machine")
    prefix: list[str] = []
    if os.geteuid() == 0:
        try:
            pw = pwd.getpwnam("postgres")
        except KeyError:
            _unavailable("running as root without a 'postgres' system user")
        prefix = ["runuser", "-u", "postgres", "--"]
    directory = Path(tempfile.mkdtemp(prefix="rbpgss-"))
    if prefix:
        os.chown(directory, pw.pw_uid, pw.pw_gid)
    data = directory / "data"
    opts = (
        f"-c listen_addresses='' -c unix_socket_directories={directory} "
        "-c shared_preload_libraries=pg_stat_statements -c pg_stat_statements.track=all"
    )
    try:
        subprocess.run(
            [*prefix, str(bindir / "initdb"), "-D", str(data), "-U", "postgres",
             "--auth=trust", "--encoding=UTF8"],
            check=True, capture_output=True, timeout=120,
        )
        subprocess.run(
            [*prefix, str(bindir / "pg_ctl"), "-D", str(data), "-l", str(directory / "log"),
             "-o", opts, "-w", "-t", "60", "start"],
            check=True, capture_output=True, timeout=90,
        )
    except (subprocess.SubprocessError, OSError) as exc:
        shutil.rmtree(directory, ignore_errors=True)
        _unavailable(f"could not start PostgreSQL with pg_stat_statements: {exc}")
    try:
        yield f"host={directory} port=5432 user=postgres dbname=postgres"
    finally:
        with contextlib.suppress(subprocess.SubprocessError, OSError):
            subprocess.run(
                [*prefix, str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
                check=False, capture_output=True, timeout=60,
            )
        shutil.rmtree(directory, ignore_errors=True)
