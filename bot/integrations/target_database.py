"""The runbook's "Database Rollback": pg_dump backups, restore, integrity and slow-query checks.

Tool discovery, libpq plumbing and DSN redaction live in ``bot.integrations.pg_tools``
(import them from there); the errors (``BackupError``, ``RestoreError``, ``DatabaseOperationError``)
in ``bot.integrations.errors``."""

from __future__ import annotations

import contextlib
import glob
import logging
import os
import re
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from bot.integrations.errors import (
    BackupError,
    DatabaseOperationError,
    PgToolNotFound,
    RestoreError,
)
from bot.integrations.pg_tools import connect as _connect
from bot.integrations.pg_tools import (
    find_pg_tool,
    installed_majors,
    redact_dsn,
    scrub_dsn,
    server_major,
)
from bot.integrations.pg_tools import libpq_args as _libpq_args
from bot.integrations.pg_tools import newest_tool as _newest_tool
from bot.integrations.pg_tools import run_child as _run_child
from bot.integrations.pg_tools import run_tool as _run_tool
from bot.integrations.pg_tools import stderr_tail as _tail

__all__ = [
    "STAMP_FORMAT",
    "BackupCheck",
    "BackupInfo",
    "QueryResult",
    "SlowQuery",
    "backup",
    "backup_filename",
    "client_tools_problem",
    "first_column",
    "latest_backup",
    "restore",
    "slow_queries",
    "verify",
    "verify_backup",
]

log = logging.getLogger(__name__)

STAMP_FORMAT = "%Y%m%dT%H%M%SZ"
_SERVICE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


# ------------------------------------------------------------------------- value types
@dataclass(frozen=True)
class BackupInfo:
    path: Path
    size: int
    created: datetime


@dataclass(frozen=True)
class BackupCheck:
    ok: bool
    detail: str
    age: timedelta | None
    entries: int = 0  # TOC entries pg_restore listed; 0 when unreadable


@dataclass(frozen=True)
class QueryResult:
    """One verify query; ``value`` is the first column of the first row (or the whole row
    when it has several columns, None when no rows)."""

    query: str
    ok: bool
    value: Any
    duration_ms: float
    error: str | None = None


@dataclass(frozen=True)
class SlowQuery:
    query: str
    calls: int
    mean_ms: float
    total_ms: float


# ------------------------------------------------------------------------------- times
def _utc(now: datetime | None) -> datetime:
    if now is None:
        return datetime.now(UTC)
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware (a naive time would mislabel the backup)")
    return now.astimezone(UTC)


# ----------------------------------------------------------------------------- backups
def backup_filename(service: str, created: datetime) -> str:
    return f"{service}-{_utc(created).strftime(STAMP_FORMAT)}.dump"


def _fsync_path(path: Path, *, directory: bool = False) -> None:
    flags = os.O_RDONLY | (getattr(os, "O_DIRECTORY", 0) if directory else 0)
    fd = os.open(path, flags)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def client_tools_problem(dsn: str, *, timeout: float = 10.0) -> str | None:
    """Plan time: None when a pg_dump and a pg_restore at least as new as the target server
    are installed, else one sentence saying what is missing. pg_dump refuses to dump a newer
    server ("pg_dump cannot dump from PostgreSQL servers newer than its own major version",
    https://www.postgresql.org/docs/current/app-pgdump.html) and an older pg_restore cannot
    read a newer archive, so a `db` rollback would fail at its backup step, after the app
    was already scaled down. Raises ``DatabaseOperationError`` (password-free) when the
    server cannot be reached."""
    major = server_major(dsn, timeout=timeout)
    short = []
    for name in ("pg_dump", "pg_restore"):
        try:
            find_pg_tool(name, min_major=major)
        except PgToolNotFound:
            have = installed_majors(name)
            short.append(f"{name} {' and '.join(map(str, have))}" if have
                         else f"no {name}")
    if not short:
        return None
    return (f"the target server is PostgreSQL {major} and this bot has {', '.join(short)}; "
            f"a client older than the server cannot back it up or restore it")


def backup(
    dsn: str,
    *,
    location: str | Path,
    service: str,
    now: datetime | None = None,
    timeout: float = 3600.0,
) -> BackupInfo:
    """``pg_dump -Fc`` into ``location/<service>-YYYYmmddTHHMMSSZ.dump``.

    The dump is written to ``<name>.partial`` and only renamed when pg_dump succeeded and
    the bytes are on disk, so a crash or a full disk never leaves a truncated ``.dump``
    that ``latest_backup`` would later offer for restore.
    """
    if not _SERVICE_RE.match(service):
        raise ValueError(f"service name {service!r} is not safe in a file name")
    created = _utc(now).replace(microsecond=0)
    directory = Path(location)
    directory.mkdir(parents=True, exist_ok=True)
    final = directory / backup_filename(service, created)
    if final.exists():
        raise BackupError(f"backup {final.name} already exists; refusing to overwrite it")
    partial = final.with_name(final.name + ".partial")

    tool = find_pg_tool("pg_dump", min_major=server_major(dsn))
    conninfo, env = _libpq_args(dsn)
    argv = [tool, "--format=custom", "--no-password", f"--file={partial}", f"--dbname={conninfo}"]
    log.info("backing up %s to %s with %s", redact_dsn(dsn), final, tool)
    try:
        proc = _run_tool(argv, env=env, timeout=timeout, dsn=dsn, what="pg_dump")
        if proc.returncode != 0:
            raise BackupError(
                f"pg_dump of {redact_dsn(dsn)} failed (exit {proc.returncode}): "
                f"{_tail(proc.stderr, dsn)}"
            )
        _fsync_path(partial)
        try:
            # link() fails if the name exists, so a concurrent backup is never clobbered.
            os.link(partial, final)
            partial.unlink()
        except FileExistsError:
            raise BackupError(
                f"backup {final.name} appeared meanwhile; refusing to overwrite it"
            ) from None
        except OSError:
            os.replace(partial, final)  # file systems without hard links
        _fsync_path(directory, directory=True)
    finally:
        with contextlib.suppress(FileNotFoundError):
            partial.unlink()
    info = BackupInfo(path=final, size=final.stat().st_size, created=created)
    log.info("backup %s written (%d bytes)", final, info.size)
    return info


def _created_from_name(path: Path, service: str | None = None) -> datetime | None:
    prefix = re.escape(service) if service else r".+"
    m = re.fullmatch(prefix + r"-(\d{8}T\d{6}Z)\.dump", path.name)
    if not m:
        return None
    return datetime.strptime(m.group(1), STAMP_FORMAT).replace(tzinfo=UTC)


def latest_backup(
    location: str | Path, *, service: str, before: datetime | None = None
) -> BackupInfo | None:
    """The newest complete backup of ``service`` created strictly before ``before``."""
    directory = Path(location)
    if not directory.is_dir():
        return None
    limit = _utc(before) if before is not None else None
    best: BackupInfo | None = None
    for path in directory.glob(f"{glob.escape(service)}-*.dump"):
        # The name is authoritative: "svc" must not pick up "svc-staging-….dump".
        created = _created_from_name(path, service)
        if created is None or (limit is not None and created >= limit):
            continue
        if best is None or created > best.created:
            try:
                size = path.stat().st_size
            except FileNotFoundError:
                continue  # pruned while we looked
            best = BackupInfo(path=path, size=size, created=created)
    return best


def verify_backup(
    path: str | Path, *, max_age_hours: float = 24.0, now: datetime | None = None
) -> BackupCheck:
    """Is the archive readable by ``pg_restore --list`` and younger than ``max_age_hours``?"""
    p = Path(path)
    try:
        stat = p.stat()
    except FileNotFoundError:
        return BackupCheck(False, f"backup file not found: {p.name}", None)
    if stat.st_size == 0:
        return BackupCheck(False, f"backup file is empty: {p.name}", None)
    created = _created_from_name(p) or datetime.fromtimestamp(stat.st_mtime, UTC)
    age = _utc(now) - created
    try:
        tool = _newest_tool("pg_restore")
    except PgToolNotFound as exc:
        return BackupCheck(False, str(exc), age)
    try:
        proc = _run_child([tool, "--list", str(p)], timeout=120)
    except subprocess.TimeoutExpired:
        return BackupCheck(False, f"pg_restore --list timed out on {p.name}", age)
    if proc.returncode != 0:
        reason = (proc.stderr.strip().splitlines() or ["no output"])[0]
        return BackupCheck(False, f"{p.name} is not a readable pg_dump archive: {reason}", age)
    entries = sum(1 for ln in proc.stdout.splitlines() if ln.strip() and not ln.startswith(";"))
    hours = age.total_seconds() / 3600
    if hours > max_age_hours:
        return BackupCheck(
            False, f"{p.name} is {hours:.1f} h old (max {max_age_hours:g} h)", age, entries
        )
    return BackupCheck(
        True, f"{p.name} readable ({entries} entries), {hours:.1f} h old", age, entries
    )


def restore(dsn: str, *, path: str | Path, timeout: float = 3600.0) -> None:
    """Restore ``path`` into ``dsn`` in one transaction: all of it or nothing.

    ``--clean --if-exists`` drops the archived objects before recreating them; objects the
    archive does not know (e.g. a table the bad release added) are left in place.
    """
    p = Path(path)
    if not p.is_file():
        raise RestoreError(f"backup file not found: {p.name}")
    tool = find_pg_tool("pg_restore", min_major=server_major(dsn))
    conninfo, env = _libpq_args(dsn)
    argv = [
        tool, "--clean", "--if-exists", "--single-transaction", "--no-owner", "--no-password",
        f"--dbname={conninfo}", str(p),
    ]
    log.warning("restoring %s into %s with %s", p, redact_dsn(dsn), tool)
    started = time.monotonic()
    proc = _run_tool(argv, env=env, timeout=timeout, dsn=dsn, what="pg_restore")
    if proc.returncode != 0:
        raise RestoreError(
            f"pg_restore of {p.name} into {redact_dsn(dsn)} failed (exit {proc.returncode}); "
            f"the transaction was rolled back: {_tail(proc.stderr, dsn)}"
        )
    log.info("restored %s into %s in %.1fs", p.name, redact_dsn(dsn), time.monotonic() - started)


# ------------------------------------------------------------------------------ verify
def _set_statement_timeout(conn: psycopg.Connection[Any], timeout: float) -> None:
    # SET cannot take bind parameters; set_config() can.
    conn.execute(
        "SELECT set_config('statement_timeout', %s, false)", (f"{max(1, int(timeout * 1000))}",)
    )


def verify(dsn: str, *, queries: Sequence[str], timeout: float = 10.0) -> list[QueryResult]:
    """``SELECT 1`` then each integrity query, each bounded by ``statement_timeout``.

    The session is read-only: integrity queries come from config and must never write, so
    a mistyped ``DELETE`` fails instead of damaging the database we just restored. Raises
    ``DatabaseOperationError`` only when no connection can be made at all.
    """
    results: list[QueryResult] = []
    with _connect(dsn, timeout) as conn:
        _set_statement_timeout(conn, timeout)
        conn.execute("SET default_transaction_read_only = on")
        for query in ["SELECT 1", *queries]:
            if conn.closed:
                results.append(QueryResult(query, False, None, 0.0, "not run: connection lost"))
                continue
            started = time.perf_counter()
            try:
                # Operator-reviewed config, not user input: run verbatim. Without params
                # psycopg sends it as-is, so a literal '%' in the query is fine.
                cur = conn.execute(query)
                row = cur.fetchone() if cur.description else None
                value: Any = None if row is None else (row[0] if len(row) == 1 else tuple(row))
                ms = (time.perf_counter() - started) * 1000
                results.append(QueryResult(query, True, value, ms))
            except psycopg.errors.QueryCanceled:
                ms = (time.perf_counter() - started) * 1000
                msg = f"timed out after {timeout:g}s (statement_timeout)"
                results.append(QueryResult(query, False, None, ms, msg))
            except psycopg.Error as exc:
                ms = (time.perf_counter() - started) * 1000
                msg = scrub_dsn((str(exc).strip().splitlines() or [type(exc).__name__])[0], dsn)
                results.append(QueryResult(query, False, None, ms, msg))
    return results


def first_column(dsn: str, query: str, *, timeout: float = 10.0, limit: int = 20
                 ) -> list[str]:
    """The first column of up to ``limit`` rows of ``query`` (e.g. a migration table's failed
    entries), as text, in a read-only session bounded by ``statement_timeout``. Raises
    ``DatabaseOperationError`` when no connection can be made or the query fails (the
    message scrubbed of the DSN)."""
    with _connect(dsn, timeout) as conn:
        _set_statement_timeout(conn, timeout)
        conn.execute("SET default_transaction_read_only = on")
        try:
            cur = conn.execute(query)
            rows = cur.fetchmany(limit) if cur.description else []
        except psycopg.errors.QueryCanceled:
            raise DatabaseOperationError(
                f"timed out after {timeout:g}s (statement_timeout)") from None
        except psycopg.Error as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise DatabaseOperationError(scrub_dsn(first, dsn)) from None
    return [str(row[0]) if row else "" for row in rows]


def slow_queries(
    dsn: str, *, threshold_ms: float = 100, limit: int = 10, timeout: float = 10.0
) -> list[SlowQuery] | None:
    """Statements of this database with mean time above ``threshold_ms``, slowest first.

    Returns None when pg_stat_statements is not installed in the database (the caller
    reports "skipped"); raises when it is installed but not preloaded by the server.
    """
    with _connect(dsn, timeout) as conn:
        _set_statement_timeout(conn, timeout)
        row = conn.execute(
            "SELECT extnamespace::regnamespace::text FROM pg_extension"
            " WHERE extname = 'pg_stat_statements'"
        ).fetchone()
        if row is None:
            return None
        # PostgreSQL 13 renamed mean_time/total_time to *_exec_time.
        new = conn.info.server_version >= 130000
        query = sql.SQL(
            "SELECT query, calls, {mean}, {total} FROM {schema}.pg_stat_statements"
            " WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())"
            " AND {mean} > %s ORDER BY {mean} DESC LIMIT %s"
        ).format(
            mean=sql.Identifier("mean_exec_time" if new else "mean_time"),
            total=sql.Identifier("total_exec_time" if new else "total_time"),
            schema=sql.Identifier(str(row[0])),
        )
        try:
            rows = conn.execute(query, (threshold_ms, limit)).fetchall()
        except psycopg.errors.ObjectNotInPrerequisiteState:
            raise DatabaseOperationError(
                "pg_stat_statements is installed but not loaded: add it to "
                "shared_preload_libraries and restart PostgreSQL"
            ) from None
        except psycopg.Error as exc:
            raise DatabaseOperationError(
                f"reading pg_stat_statements failed: {scrub_dsn(str(exc).strip(), dsn)}"
            ) from None
    return [SlowQuery(str(q), int(c), float(m), float(t)) for q, c, m, t in rows]
