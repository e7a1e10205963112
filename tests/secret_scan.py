"""No secret reaches Slack: scan every call (and file) any ``SlackEmulator`` recorded.

Secrets: bot tokens, signing secrets, ``register_secret`` values, secret-looking env vars.
``database_findings`` does the same for every row of every table of the bot's database.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from urllib.parse import quote, quote_plus

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from sandbox.slack import DEFAULT_BOT_TOKEN, DEFAULT_SIGNING_SECRET, SlackEmulator

SECRET_NAME = re.compile(r"TOKEN|SECRET|PASSWORD|PASSWD|API_KEY|ACCESS_KEY", re.IGNORECASE)
DSN_NAME = re.compile(r"DATABASE_URL$|_DSN$|_DB_URL$", re.IGNORECASE)
MIN_LENGTH = 6  # shorter values would match ordinary words


@dataclass(frozen=True)
class Finding:
    emulator: str
    where: str  # the Web API method, or "file <name>"
    source: str  # what the secret is ("env FOO", "registered: …"), never its value

    def __str__(self) -> str:
        return f"{self.source} found in {self.where} sent to the Slack emulator {self.emulator}"


@dataclass
class Scanner:
    secrets: dict[str, str] = field(default_factory=dict)  # value -> source label
    scanned: dict[int, tuple[int, int]] = field(default_factory=dict)  # id -> (calls, files)
    total_calls: int = 0
    total_files: int = 0
    emulators: int = 0

    def register(self, value: str | None, source: str) -> None:
        if value and len(value) >= MIN_LENGTH:
            self.secrets.setdefault(value, source)

    def remember_env(self) -> None:
        """Collect secret-looking environment values (call while a test's env is set)."""
        for name, value in os.environ.items():
            if SECRET_NAME.search(name):
                self.register(value, f"env {name}")
            elif DSN_NAME.search(name):
                self.register(dsn_password(value), f"password in env {name}")

    def known(self) -> dict[str, str]:
        values = dict(self.secrets)
        values.setdefault(DEFAULT_BOT_TOKEN, "the sandbox bot token")
        values.setdefault(DEFAULT_SIGNING_SECRET, "the sandbox signing secret")
        for emulator in SlackEmulator.instances:
            values.setdefault(emulator.bot_token, "an emulator's bot token")
        return values

    def scan_new(self) -> list[Finding]:
        """Scan calls and uploaded files recorded since the last scan; forget emulators
        that are stopped once read."""
        secrets = self.known()
        findings: list[Finding] = []
        for emulator in list(SlackEmulator.instances):
            calls_seen, files_seen = self.scanned.get(id(emulator), (0, 0))
            if id(emulator) not in self.scanned:
                self.emulators += 1
            # ``calls_seen`` counts every call read, those ``forget_logs`` dropped since too.
            forgotten = emulator.forgotten_calls
            start = max(0, calls_seen - forgotten)
            calls = emulator.calls()[start:]
            files = emulator.files()[files_seen:]
            findings += scan(emulator, secrets, calls=calls, files=files)
            self.total_calls += len(calls)
            self.total_files += len(files)
            self.scanned[id(emulator)] = (forgotten + start + len(calls),
                                          files_seen + len(files))
            if emulator._server is None:  # stopped: nothing new can arrive
                self.forget(emulator)
        return findings

    def forget(self, emulator: SlackEmulator) -> None:
        if emulator in SlackEmulator.instances:
            SlackEmulator.instances.remove(emulator)
        self.scanned.pop(id(emulator), None)


def scan(emulator: SlackEmulator, secrets: dict[str, str], *, calls: list | None = None,
         files: list | None = None) -> list[Finding]:
    """Every (call, secret) pair where the secret appears in any common encoding."""
    name = emulator.base_url if emulator.port else "(not started)"
    findings = []
    patterns = {value: forms(value) for value in secrets}
    for call in emulator.calls() if calls is None else calls:
        blob = json.dumps(call.params, default=str, ensure_ascii=False)
        findings += [Finding(name, call.method, secrets[v]) for v, fs in patterns.items()
                     if any(f in blob for f in fs)]
    for record in emulator.files() if files is None else files:
        try:
            content = emulator.file_content(record["id"]).decode("utf-8", "replace")
        except KeyError:
            continue  # announced but never uploaded
        findings += [Finding(name, f"file {record.get('name')}", secrets[v])
                     for v, fs in patterns.items() if any(f in content for f in fs)]
    return findings


def forms(value: str) -> set[str]:
    """The spellings a secret takes inside JSON, form bodies and URLs."""
    return {f for f in {value, json.dumps(value)[1:-1], quote(value, safe=""),
                        quote_plus(value)} if f}


def dsn_password(dsn: str) -> str | None:
    try:
        return conninfo_to_dict(dsn).get("password") or None
    except Exception:
        return None


SCANNER = Scanner()


def register_secret(value: str | None, source: str = "registered by a test") -> None:
    """Tests call this for every secret they hand to the bot (env values, API keys)."""
    SCANNER.register(value, source)


def table_texts(database_url: str) -> dict[str, str]:
    """Every table of the database's public schema as text (each row cast to text)."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        names = [r[0] for r in conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
            " AND table_type = 'BASE TABLE' ORDER BY table_name")]
        return {name: "\n".join(str(r[0]) for r in conn.execute(
                    sql.SQL("SELECT t::text FROM {} t").format(sql.Identifier(name))))
                for name in names}


def database_findings(database_url: str, secrets: dict[str, str]) -> list[str]:
    """``"<source> in table <name>"`` for every secret found in any spelling in any row."""
    return [f"{source} in table {table}" for table, text in table_texts(database_url).items()
            for value, source in secrets.items() if any(f in text for f in forms(value))]
