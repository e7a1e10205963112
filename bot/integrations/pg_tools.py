"""PostgreSQL client plumbing: find pg_dump/pg_restore, connect, run tools, redact DSNs.

Passwords never reach argv, logs or errors: libpq gets PGPASSWORD, messages pass scrub_dsn.
A tool runs in its own process group and, on Linux, dies with the process that started it,
so a killed executor never leaves a restore finishing behind its back."""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import math
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from bot.integrations.errors import DatabaseOperationError, PgToolNotFound

__all__ = [
    "connect",
    "find_pg_tool",
    "libpq_args",
    "newest_tool",
    "pg_tool_candidates",
    "redact_dsn",
    "run_child",
    "run_tool",
    "scrub_dsn",
    "installed_majors",
    "server_major",
    "stderr_tail",
]

_MAX_STDERR = 2000  # pg_restore can print thousands of lines; the tail says what broke


# ---------------------------------------------------------------------------- secrets
_URI_USERINFO = re.compile(r"(?P<pre>[A-Za-z][A-Za-z0-9+.-]*://[^:/?#@\s]*:)(?P<pw>[^/?#\s]*)@")
_URI_PARAM = re.compile(r"(?P<pre>[?&]password=)(?P<pw>[^&#\s]*)", re.IGNORECASE)
_KV_PARAM = re.compile(r"(?P<pre>\bpassword\s*=\s*)(?P<pw>'(?:[^'\\]|\\.)*'|\S+)", re.IGNORECASE)


def redact_dsn(dsn: str) -> str:
    """``dsn`` with any password replaced by ``***`` (URI userinfo, ?password=, key=value)."""

    def _star(m: re.Match[str]) -> str:
        return m.group("pre") + ("***" if m.group("pw") else "")

    if "://" in dsn:
        out = _URI_USERINFO.sub(lambda m: _star(m) + "@", dsn)
        return _URI_PARAM.sub(_star, out)
    return _KV_PARAM.sub(_star, dsn)


def _password(dsn: str) -> str | None:
    try:
        pw = conninfo_to_dict(dsn).get("password")
    except psycopg.Error:
        return None
    return str(pw) if pw else None


def scrub_dsn(text: str, dsn: str) -> str:
    """Remove the DSN's password from arbitrary text (tool stderr, driver errors)."""
    out = text.replace(dsn, redact_dsn(dsn)) if dsn else text
    pw = _password(dsn)
    # Very short passwords are not replaced verbatim: that would mangle every message and
    # a tool never echoes a bare password anyway; the DSN forms above are still redacted.
    if pw and len(pw) >= 4:
        out = out.replace(pw, "***")
    return out


def libpq_args(dsn: str) -> tuple[str, dict[str, str]]:
    """Split ``dsn`` into a password-free conninfo for argv and an environment for libpq."""
    try:
        params = conninfo_to_dict(dsn)
    except psycopg.Error:
        # psycopg's parse error quotes the offending fragment, which may be the password.
        raise DatabaseOperationError(f"invalid DSN: {redact_dsn(dsn)}") from None
    env = dict(os.environ)
    password = params.pop("password", None)
    if password:
        env["PGPASSWORD"] = str(password)
    return make_conninfo("", **params), env


# ------------------------------------------------------------------------------ tools
def _pgserver_bin() -> Path | None:
    try:
        import pgserver  # optional: only present where the embedded server is used
    except ImportError:
        return None
    return Path(os.path.dirname(pgserver.__file__)) / "pginstall" / "bin"


_MAJORS: dict[str, int] = {}  # a binary's answer does not change while it runs


def _tool_major(path: str) -> int | None:
    """The major version ``path --version`` prints. Only an answer is remembered: a failed
    run (a timeout under load) must not refuse every later ``db`` request."""
    if path in _MAJORS:
        return _MAJORS[path]
    try:
        out = run_child([path, "--version"], timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    m = re.search(r"\b(\d+)(?:\.\d+)+", out) or re.search(r"\b(\d+)\b", out)
    if m is None:
        return None
    _MAJORS[path] = int(m.group(1))
    return _MAJORS[path]


def pg_tool_candidates(name: str) -> list[str]:
    """Where ``name`` can be found, in preference order: PATH, then pgserver's binaries."""
    if not name or "/" in name:
        raise ValueError(f"expected a bare tool name, got {name!r}")
    found: list[str] = []
    on_path = shutil.which(name)
    if on_path:
        found.append(on_path)
    bundled = _pgserver_bin()
    if bundled is not None:
        candidate = bundled / name
        if candidate.is_file() and os.access(candidate, os.X_OK) and str(candidate) not in found:
            found.append(str(candidate))
    return found


def find_pg_tool(name: str, *, min_major: int | None = None) -> str:
    """Path of a PostgreSQL client tool: PATH first, then pgserver's ``pginstall/bin``.

    ``min_major`` skips tools older than the server: pg_dump refuses to dump a newer
    server and an older pg_restore cannot read a newer archive, so a PATH tool that is
    too old (e.g. Debian's 15 next to an embedded 16) must not win just by being first.
    """
    candidates = pg_tool_candidates(name)
    if not candidates:
        raise PgToolNotFound(
            f"{name} not found on PATH or in pgserver's bundled binaries; "
            "install the PostgreSQL client tools"
        )
    if min_major is None:
        return candidates[0]
    seen: list[str] = []
    for path in candidates:
        major = _tool_major(path)
        if major is not None and major >= min_major:
            return path
        seen.append(f"{path} ({major if major is not None else 'unknown version'})")
    raise PgToolNotFound(
        f"no {name} of PostgreSQL {min_major} or newer found (have: {', '.join(seen)})"
    )


def installed_majors(name: str) -> list[int]:
    """Major versions of every ``name`` this process could run, highest first (unknown
    versions left out): what a refusal says the bot has."""
    majors = {_tool_major(path) for path in pg_tool_candidates(name)}
    return sorted((m for m in majors if m is not None), reverse=True)


def newest_tool(name: str) -> str:
    """The highest-version candidate: a newer pg_restore reads every older archive format."""
    candidates = pg_tool_candidates(name)
    if not candidates:
        return find_pg_tool(name)  # raises the clear "not found" error
    return max(candidates, key=lambda p: _tool_major(p) or 0)


# ------------------------------------------------------------------- server and running
def connect(dsn: str, timeout: float) -> psycopg.Connection[Any]:
    """An autocommit connection; failures raise ``DatabaseOperationError`` without secrets."""
    try:
        return psycopg.connect(dsn, autocommit=True, connect_timeout=max(2, math.ceil(timeout)))
    except psycopg.ProgrammingError:
        # A conninfo parse error quotes the offending fragment, which may be the password.
        raise DatabaseOperationError(f"invalid DSN: {redact_dsn(dsn)}") from None
    except psycopg.Error as exc:
        raise DatabaseOperationError(
            f"cannot connect to {redact_dsn(dsn)}: {scrub_dsn(str(exc).strip(), dsn)}"
        ) from None


def server_major(dsn: str, *, timeout: float = 10.0) -> int:
    """The server's major version (16 for 16.2), used to pick compatible client tools."""
    with connect(dsn, timeout) as conn:
        version = conn.info.server_version
    return version // 10000 if version >= 100000 else version // 100


_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>


def _load_prctl() -> Any:
    """libc's ``prctl``, resolved once in the parent: the child, between fork and exec,
    should do as little as possible (no library loading, no imports)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        return libc.prctl
    except (OSError, AttributeError):
        return None


_PRCTL = _load_prctl()


def _die_with(parent: int) -> Any:
    """A ``preexec_fn`` that makes the child get SIGKILL when its parent dies.

    Linux signals the child when the *thread* that forked it exits; the forking thread
    waits for the tool, so in practice that is the process's death. If the parent died
    before prctl took effect, the child kills itself rather than run orphaned.
    """
    prctl = _PRCTL

    def preexec() -> None:
        if prctl is not None:
            prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
        if os.getppid() != parent:
            os.kill(os.getpid(), signal.SIGKILL)

    return preexec


def _kill_group(proc: subprocess.Popen[str]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)  # its own group: pgid == pid


def run_child(
    argv: list[str], *, env: dict[str, str] | None = None, timeout: float
) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` to completion, capturing text output, in its own process group with a
    parent-death signal. On timeout (or any interruption) the whole group is killed and
    reaped before ``subprocess.TimeoutExpired`` (or the interruption) propagates."""
    proc = subprocess.Popen(
        argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, process_group=0,
        preexec_fn=_die_with(os.getpid()),
    )
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except BaseException:
        _kill_group(proc)
        proc.communicate()
        raise
    return subprocess.CompletedProcess(argv, proc.returncode, stdout, stderr)


def run_tool(
    argv: list[str], *, env: dict[str, str], timeout: float, dsn: str, what: str
) -> subprocess.CompletedProcess[str]:
    """Run a client tool (see ``run_child``); a timeout or a missing binary raises
    ``DatabaseOperationError``."""
    try:
        return run_child(argv, env=env, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise DatabaseOperationError(
            f"{what} of {redact_dsn(dsn)} timed out after {timeout:g}s"
        ) from None
    except OSError as exc:
        raise DatabaseOperationError(f"{what}: cannot run {argv[0]}: {exc.strerror}") from None


def stderr_tail(stderr: str, dsn: str) -> str:
    """The last ``_MAX_STDERR`` characters of a tool's stderr, passwords scrubbed."""
    text = scrub_dsn(stderr.strip(), dsn)
    return text if len(text) <= _MAX_STDERR else "…" + text[-_MAX_STDERR:]
