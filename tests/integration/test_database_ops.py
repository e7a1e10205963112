"""bot.integrations.target_database against a real PostgreSQL: backup, restore, verify, slow
queries, redaction."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from bot.integrations import target_database as database
from bot.integrations.errors import (
    BackupError,
    DatabaseOperationError,
    PgToolNotFound,
    RestoreError,
)
from bot.integrations.pg_tools import find_pg_tool, redact_dsn, run_child, server_major
from bot.integrations.target_database import (
    backup,
    latest_backup,
    restore,
    slow_queries,
    verify,
    verify_backup,
)
from tests.support.waiting import reached

NOW = datetime(2025, 3, 14, 9, 26, 53, tzinfo=UTC)
PASSWORD = "hunter2-Sup3r-s3cret"


def _seed(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE bot_messages (id int PRIMARY KEY, body text NOT NULL)")
        conn.execute(
            "INSERT INTO bot_messages VALUES (1, 'hello'), (2, 'room service'), (3, 'checkout')"
        )


def _rows(dsn: str) -> list[tuple[int, str]]:
    with psycopg.connect(dsn) as conn:
        return [(int(a), str(b)) for a, b in conn.execute(
            "SELECT id, body FROM bot_messages ORDER BY id"
        ).fetchall()]


def _with_password(dsn: str, **extra: str) -> str:
    # pgserver trusts local connections, so a password is accepted and ignored: ideal for
    # proving it never shows up in argv-derived messages.
    return make_conninfo(dsn, password=PASSWORD, **extra)


# ------------------------------------------------------------------------------ tools
def test_find_pg_tool_prefers_a_version_the_server_accepts(fresh_db: str) -> None:
    major = server_major(fresh_db)
    path = find_pg_tool("pg_dump", min_major=major)
    out = subprocess.run([path, "--version"], capture_output=True, text=True, check=True).stdout
    assert int(out.split()[-1].split(".")[0]) >= major
    assert os.access(find_pg_tool("pg_restore"), os.X_OK)


def test_find_pg_tool_errors_clearly() -> None:
    with pytest.raises(PgToolNotFound, match="no-such-pg-tool not found on PATH"):
        find_pg_tool("no-such-pg-tool")
    with pytest.raises(PgToolNotFound, match=r"no pg_dump of PostgreSQL 999 or newer"):
        find_pg_tool("pg_dump", min_major=999)


# ---------------------------------------------------------------------- backup/restore
def test_backup_then_restore_brings_rows_back(fresh_db: str, tmp_path: Path) -> None:
    _seed(fresh_db)
    original = _rows(fresh_db)

    info = backup(fresh_db, location=tmp_path / "backups", service="hotel-voice-bot", now=NOW)
    assert info.path == tmp_path / "backups" / "hotel-voice-bot-20250314T092653Z.dump"
    assert info.size == info.path.stat().st_size > 0
    assert info.created == NOW
    assert [p.name for p in info.path.parent.iterdir()] == [info.path.name]  # no .partial

    with psycopg.connect(fresh_db, autocommit=True) as conn:
        conn.execute("DELETE FROM bot_messages WHERE id <> 2")
        conn.execute("UPDATE bot_messages SET body = 'corrupted' WHERE id = 2")
        conn.execute("INSERT INTO bot_messages VALUES (99, 'written by the bad release')")
    assert _rows(fresh_db) != original

    restore(fresh_db, path=info.path)
    assert _rows(fresh_db) == original


def test_backup_refuses_to_overwrite(fresh_db: str, tmp_path: Path) -> None:
    backup(fresh_db, location=tmp_path, service="svc", now=NOW)
    with pytest.raises(BackupError, match="already exists"):
        backup(fresh_db, location=tmp_path, service="svc", now=NOW)


def test_backup_of_unreachable_database_leaves_nothing_and_hides_password(
    fresh_db: str, tmp_path: Path
) -> None:
    dsn = _with_password(fresh_db, dbname="no_such_database")
    with pytest.raises(DatabaseOperationError) as err:
        backup(dsn, location=tmp_path, service="svc", now=NOW)
    assert "no_such_database" in str(err.value)
    assert PASSWORD not in str(err.value)
    assert list(tmp_path.iterdir()) == []


def test_failed_restore_reports_stderr_and_changes_nothing(
    fresh_db: str, tmp_path: Path
) -> None:
    _seed(fresh_db)
    bogus = tmp_path / "svc-20250314T000000Z.dump"
    bogus.write_bytes(b"PGDMP" + os.urandom(512))
    with pytest.raises(RestoreError) as err:
        restore(_with_password(fresh_db), path=bogus)
    message = str(err.value)
    assert "pg_restore" in message and "failed" in message
    assert PASSWORD not in message
    assert "password=***" in message
    assert len(_rows(fresh_db)) == 3


def test_restore_of_missing_file_is_clear(fresh_db: str, tmp_path: Path) -> None:
    with pytest.raises(RestoreError, match="backup file not found"):
        restore(fresh_db, path=tmp_path / "nope.dump")


def test_backup_and_restore_on_another_server_version(pgss_url: str, tmp_path: Path) -> None:
    """The tool picked must suit *this* server (the distribution's, often older)."""
    _seed(pgss_url)
    try:
        info = backup(pgss_url, location=tmp_path, service="svc", now=NOW)
        with psycopg.connect(pgss_url, autocommit=True) as conn:
            conn.execute("TRUNCATE bot_messages")
        restore(pgss_url, path=info.path)
        assert len(_rows(pgss_url)) == 3
    finally:
        with psycopg.connect(pgss_url, autocommit=True) as conn:
            conn.execute("DROP TABLE IF EXISTS bot_messages")


# ---------------------------------------------------------------------- latest / verify
def test_latest_backup_picks_the_newest_before_a_time(tmp_path: Path) -> None:
    stamps = [NOW - timedelta(hours=h) for h in (30, 6, 1)]
    for ts in stamps:
        (tmp_path / f"svc-{ts:%Y%m%dT%H%M%SZ}.dump").write_bytes(b"x" * 10)
    # Noise that must never be picked: another service sharing the prefix, an unfinished
    # dump, and a file that does not follow the naming scheme.
    (tmp_path / f"svc-staging-{NOW:%Y%m%dT%H%M%SZ}.dump").write_bytes(b"x")
    (tmp_path / f"svc-{NOW:%Y%m%dT%H%M%SZ}.dump.partial").write_bytes(b"x")
    (tmp_path / "svc-latest.dump").write_bytes(b"x")

    newest = latest_backup(tmp_path, service="svc")
    assert newest is not None and newest.created == stamps[2] and newest.size == 10
    before = latest_backup(tmp_path, service="svc", before=NOW - timedelta(hours=2))
    assert before is not None and before.created == stamps[1]
    assert latest_backup(tmp_path, service="svc", before=stamps[0]) is None  # strictly before
    assert latest_backup(tmp_path / "missing", service="svc") is None
    assert latest_backup(tmp_path, service="other") is None


def test_verify_backup_readable_fresh_stale_and_corrupt(fresh_db: str, tmp_path: Path) -> None:
    _seed(fresh_db)
    info = backup(fresh_db, location=tmp_path, service="svc", now=NOW)

    good = verify_backup(info.path, now=NOW + timedelta(hours=2))
    assert good.ok, good.detail
    assert good.entries > 0 and good.age == timedelta(hours=2)

    stale = verify_backup(info.path, max_age_hours=24, now=NOW + timedelta(hours=30))
    assert not stale.ok and "30.0 h old (max 24 h)" in stale.detail

    corrupt = tmp_path / "svc-20250314T080000Z.dump"
    corrupt.write_bytes(os.urandom(4096))
    bad = verify_backup(corrupt, now=NOW)
    assert not bad.ok and "not a readable pg_dump archive" in bad.detail

    empty = tmp_path / "svc-20250314T070000Z.dump"
    empty.touch()
    assert not verify_backup(empty, now=NOW).ok
    missing = verify_backup(tmp_path / "gone.dump", now=NOW)
    assert not missing.ok and "not found" in missing.detail


# ---------------------------------------------------------------------------- verify()
def test_verify_runs_select_1_and_integrity_queries(fresh_db: str) -> None:
    _seed(fresh_db)
    results = verify(
        fresh_db,
        queries=[
            "SELECT COUNT(*) FROM public.bot_messages",
            "SELECT COUNT(*) FROM public.missing_table",
            "SELECT id, body FROM bot_messages WHERE body LIKE 'room%'",
        ],
        timeout=5,
    )
    assert [r.query for r in results][0] == "SELECT 1"
    assert results[0].ok and results[0].value == 1
    assert results[1].ok and results[1].value == 3 and results[1].duration_ms >= 0
    assert not results[2].ok and "missing_table" in (results[2].error or "")
    assert results[3].ok and results[3].value == (2, "room service")  # later queries still ran


def test_verify_session_is_read_only_and_time_boxed(fresh_db: str) -> None:
    _seed(fresh_db)
    results = verify(
        fresh_db,
        queries=["DELETE FROM bot_messages", "SELECT pg_sleep(10)"],
        timeout=0.5,
    )
    assert not results[1].ok and "read-only" in (results[1].error or "")
    assert not results[2].ok and results[2].error == "timed out after 0.5s (statement_timeout)"
    assert len(_rows(fresh_db)) == 3


def test_verify_connection_failure_is_redacted(fresh_db: str) -> None:
    dsn = _with_password(fresh_db, dbname="no_such_database")
    with pytest.raises(DatabaseOperationError, match="cannot connect") as err:
        verify(dsn, queries=[], timeout=2)
    assert PASSWORD not in str(err.value)


# ---------------------------------------------------------------------- slow queries
def test_slow_queries_none_without_extension(fresh_db: str) -> None:
    assert slow_queries(fresh_db) is None


def test_slow_queries_with_pg_stat_statements(pgss_url: str) -> None:
    with psycopg.connect(pgss_url, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        conn.execute("SELECT pg_stat_statements_reset()")
        conn.execute("SELECT pg_sleep(0.25)")
        conn.execute("SELECT 42")
    found = slow_queries(pgss_url, threshold_ms=100, limit=5)
    assert found is not None
    assert any("pg_sleep" in q.query and q.mean_ms >= 200 for q in found), found
    assert all(q.mean_ms > 100 for q in found)


# --------------------------------------------------------------------------- redaction
@pytest.mark.parametrize(
    ("dsn", "expected"),
    [
        ("postgresql://app:pa55w0rd@db:5432/prod", "postgresql://app:***@db:5432/prod"),
        ("postgres://app:p%40ss@db/prod?sslmode=require",
         "postgres://app:***@db/prod?sslmode=require"),
        ("postgresql://app@db/prod?password=pa55w0rd&sslmode=require",
         "postgresql://app@db/prod?password=***&sslmode=require"),
        ("host=db user=app password=pa55w0rd dbname=prod",
         "host=db user=app password=*** dbname=prod"),
        ("host=db password='pa 55 w0rd' dbname=prod", "host=db password=*** dbname=prod"),
        ("postgresql://postgres:@/postgres?host=/tmp/x", "postgresql://postgres:@/postgres?host=/tmp/x"),
        ("host=db dbname=prod", "host=db dbname=prod"),
    ],
)
def test_redact_dsn(dsn: str, expected: str) -> None:
    assert redact_dsn(dsn) == expected


def test_scrub_dsn_removes_bare_password() -> None:
    dsn = "postgresql://app:pa55w0rd@db/prod"
    text = f"FATAL: something quoted pa55w0rd while connecting to {dsn}"
    assert "pa55w0rd" not in database.scrub_dsn(text, dsn)


# ------------------------------------------------------------ tools die with their step
def _children(parent: int, name: str) -> list[int]:
    """Pids of live processes called ``name`` whose parent is ``parent`` (from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        comm = stat[stat.index("(") + 1:stat.rindex(")")]
        state, ppid = stat[stat.rindex(")") + 2:].split()[:2]
        if comm == name and int(ppid) == parent and state != "Z":
            found.append(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (ProcessLookupError, FileNotFoundError):
        return False
    return stat[stat.rindex(")") + 2] != "Z"  # a zombie has already died


def _restore_backends(dsn: str) -> int:
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute("SELECT count(*) FROM pg_stat_activity"
                           " WHERE application_name = 'pg_restore'").fetchone()
    return int(row[0]) if row else 0


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")
def test_a_killed_executor_takes_its_pg_restore_with_it(fresh_db: str, tmp_path: Path) -> None:
    """The process running a restore is SIGKILLed while pg_restore waits on a lock: the
    pg_restore child dies with it, and the restore never lands after the fact."""
    _seed(fresh_db)
    info = backup(fresh_db, location=tmp_path, service="svc", now=NOW)
    with psycopg.connect(fresh_db, autocommit=True) as conn:
        conn.execute("INSERT INTO bot_messages VALUES (4, 'after the backup'), (5, 'newer')")
    newer = _rows(fresh_db)

    blocker = psycopg.connect(fresh_db)  # holds the table so pg_restore waits mid-restore
    blocker.execute("LOCK TABLE bot_messages IN ACCESS EXCLUSIVE MODE")
    script = ("import sys\nfrom bot.integrations.target_database import restore\n"
              "restore(sys.argv[1], path=sys.argv[2])\n")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    executor = subprocess.Popen([sys.executable, "-c", script, fresh_db, str(info.path)],
                                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        # connected and waiting on the lock (a `--version` probe may come and go first)
        assert reached(lambda: _restore_backends(fresh_db) == 1, 15), "no restore started"
        (tool,) = _children(executor.pid, "pg_restore")
        assert os.getpgid(tool) == tool  # its own process group

        executor.kill()
        executor.wait(timeout=5)
        assert reached(lambda: not _alive(tool), 2), "pg_restore outlived its executor"
    finally:
        if executor.poll() is None:
            executor.kill()
        blocker.rollback()  # let a surviving restore (if any) proceed, as in production
        blocker.close()
    assert reached(lambda: _restore_backends(fresh_db) == 0, 10)
    assert _rows(fresh_db) == newer  # the single transaction was rolled back, not applied


def test_a_timed_out_tool_is_killed_with_its_group(tmp_path: Path) -> None:
    """run_child kills the whole process group on timeout, grandchildren included."""
    marker = tmp_path / "grandchild.pid"
    script = f"sleep 60 & echo $! > {marker}; wait"
    started = time.monotonic()
    with pytest.raises(subprocess.TimeoutExpired):
        run_child(["sh", "-c", script], timeout=1)
    assert time.monotonic() - started < 10
    grandchild = int(marker.read_text())
    assert reached(lambda: not _alive(grandchild), 2)
