"""Helpers for the crash/resume tests: real ``rollback-bot serve`` processes, killed for real.

A ``BotProcess`` is ``python -m bot.runtime.cli serve`` in its own process group with its output in
a log file, so a test can SIGKILL it (no cleanup handlers, no lease release, exactly like
an OOM kill or a lost node) and show the tail of its log when something goes wrong.
``CrashRig`` wires one scenario: the Slack emulator (in the test process, so it outlives
every bot process), the bot's database, the application database the plan restores, the
file-backed fake platform and the YAML config every process reads.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import httpx
import psycopg
import yaml

from bot.domain.models import Rollback
from bot.integrations import target_database as database
from bot.persistence.db import open_pool
from bot.persistence.store import Store
from platforms.fake import FakePlatform
from sandbox.config import sandbox_config_dict
from sandbox.slack import DEFAULT_BOT_TOKEN, DEFAULT_SIGNING_SECRET, SlackDriver, SlackEmulator

T = TypeVar("T")

ROOT = Path(__file__).resolve().parents[2]
CHANNEL = "inc-hotel-voice-bot"
SERVICE = "hotel-voice-bot"
APP_DSN_ENV = "APP_DATABASE_URL"
# Not the fake platform's default of 3: scale_up must restore what scale_down recorded,
# and a hard-coded or defaulted count would be indistinguishable from 3.
ORIGINAL_REPLICAS = 4
GOOD_CONFIG = {"items": {"configmap/app-config": {"data": {"MODE": "good"}}}}
BACKUP_ROWS = [(1, "hello"), (2, "room service"), (3, "checkout")]
# Variables a developer's shell might carry that would change how a bot process behaves.
_SCRUBBED_ENV = ("ROLLBACK_FAULT_HOLD", "ROLLBACK_FAULT_FILE", "SLACK_APP_TOKEN",
                 "ROLLBACK_EXECUTOR", "ROLLBACK_SCHEDULER", "LOG_FORMAT")


def wait_until(
    predicate: Callable[[], T | None], *, timeout: float, what: str,
    diagnostics: Callable[[], str] = lambda: "", interval: float = 0.05,
) -> T:
    """Poll ``predicate`` until it returns something truthy; fail with ``diagnostics``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}\n"
                                 f"{diagnostics()}")
        time.sleep(interval)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class BotProcess:
    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path
    url: str

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def tail(self, lines: int = 60) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return f"--- {self.name}: no log ---"
        body = "\n".join(text.splitlines()[-lines:])
        return f"--- last {lines} log lines of {self.name} (pid {self.pid}) ---\n{body}"

    def kill(self) -> None:
        """SIGKILL the whole process group (pg_dump/pg_restore children included) and reap."""
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(timeout=10)


@dataclass
class CrashRig:
    """One crash scenario's world; ``close()`` kills every process it started."""

    tmp: Path
    bot_db_url: str
    app_db_url: str
    emulator: SlackEmulator = field(init=False)
    driver: SlackDriver = field(init=False)
    store: Store = field(init=False)
    platform: FakePlatform = field(init=False)
    config_path: Path = field(init=False)
    backup_dir: Path = field(init=False)
    pinned_backup: Path = field(init=False)
    processes: list[BotProcess] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.backup_dir = self.tmp / "backups"
        state_file = self.tmp / "platform.json"
        # The test creates the state file, so every bot process finds (and keeps) it and
        # the initial replica count is ours, not the adapter's default.
        self.platform = FakePlatform(state_file=state_file, replicas=ORIGINAL_REPLICAS)
        self.config_path = self.tmp / "rollback.yml"
        self.config_path.write_text(yaml.safe_dump(self._config(state_file)))
        self.store = Store(open_pool(self.bot_db_url, max_size=4))
        self.emulator = SlackEmulator().start()
        self.driver = SlackDriver(self.emulator, "http://unset.invalid", DEFAULT_SIGNING_SECRET)

    def _config(self, state_file: Path) -> dict[str, Any]:
        data = sandbox_config_dict(
            fake={"scope": "production", "name": SERVICE, "state_file": str(state_file)},
            stakeholder_channel=None, postmortem_dir=str(self.backup_dir.parent / "pm"),
        )
        data["services"][SERVICE]["database"] = {
            "dsn_env": APP_DSN_ENV,
            "backup_location": str(self.backup_dir),
            "verify_queries": ["SELECT COUNT(*) FROM public.bot_messages"],
        }
        # Short leases so a killed executor's claim runs out within a couple of seconds.
        data["executor"] = {"lease_seconds": 2, "heartbeat_seconds": 0.5, "poll_seconds": 0.2,
                            "backoff_base_seconds": 0.2}
        return data

    # ------------------------------------------------------------------ world setup
    def seed(self) -> None:
        """The state before the incident: a good backup, then a bad release's writes,
        and a known-good configuration that differs from the live (bad) one."""
        with psycopg.connect(self.app_db_url, autocommit=True) as conn:
            conn.execute("CREATE TABLE bot_messages (id int PRIMARY KEY, body text NOT NULL)")
            for row in BACKUP_ROWS:
                conn.execute("INSERT INTO bot_messages VALUES (%s, %s)", row)
        # Dated in the past so it is strictly older than the request and gets pinned.
        info = database.backup(self.app_db_url, location=self.backup_dir, service=SERVICE,
                               now=datetime.now(UTC) - timedelta(minutes=5))
        self.pinned_backup = info.path
        with psycopg.connect(self.app_db_url, autocommit=True) as conn:
            conn.execute("DELETE FROM bot_messages WHERE id = 2")
            conn.execute("INSERT INTO bot_messages VALUES (4, 'garbled by v1.3.0')")
        self.store.record_known_good_config(SERVICE, "fake", GOOD_CONFIG, rollback_id=None)

    def app_rows(self) -> list[tuple[int, str]]:
        with psycopg.connect(self.app_db_url) as conn:
            rows = conn.execute("SELECT id, body FROM bot_messages ORDER BY id").fetchall()
        return [(int(a), str(b)) for a, b in rows]

    # ------------------------------------------------------------------ processes
    def start_bot(self, name: str, *, fault: str | None = None,
                  fault_file: Path | None = None) -> BotProcess:
        port = free_port()
        env = {k: v for k, v in os.environ.items() if k not in _SCRUBBED_ENV}
        env.update({
            "SLACK_BOT_TOKEN": DEFAULT_BOT_TOKEN,
            "SLACK_SIGNING_SECRET": DEFAULT_SIGNING_SECRET,
            "SLACK_API_URL": self.emulator.base_url,
            "DATABASE_URL": self.bot_db_url,
            "ROLLBACK_CONFIG": str(self.config_path),
            APP_DSN_ENV: self.app_db_url,
            "HOST": "127.0.0.1",
            "PORT": str(port),
            "PYTHONUNBUFFERED": "1",
        })
        if fault is not None:
            assert fault_file is not None
            env["ROLLBACK_FAULT_HOLD"] = fault
            env["ROLLBACK_FAULT_FILE"] = str(fault_file)
        log_path = self.tmp / f"{name}.log"
        with open(log_path, "wb") as log:
            popen = subprocess.Popen(
                [sys.executable, "-m", "bot.runtime.cli", "serve"], cwd=ROOT, env=env,
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: killpg reaches children too
            )
        proc = BotProcess(name, popen, log_path, f"http://127.0.0.1:{port}")
        self.processes.append(proc)
        wait_until(lambda: self._healthy(proc), timeout=30, what=f"{name} to serve /healthz",
                   diagnostics=self.diagnostics)
        return proc

    @staticmethod
    def _healthy(proc: BotProcess) -> bool:
        if not proc.alive():
            raise AssertionError(f"{proc.name} exited with {proc.popen.returncode}\n"
                                 f"{proc.tail()}")
        try:
            return httpx.get(f"{proc.url}/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def wait_fault(self, proc: BotProcess, fault_file: Path, *, timeout: float = 30) -> str:
        """Block until ``proc`` announces it is parked at its fault point."""
        def held() -> str | None:
            if not proc.alive():
                raise AssertionError(f"{proc.name} died before reaching its fault point\n"
                                     f"{self.diagnostics()}")
            text = fault_file.read_text() if fault_file.exists() else ""
            return text if text.endswith("\n") else None  # a complete line, not a torn write

        return wait_until(held, timeout=timeout, what=f"{proc.name} to hold at its fault point",
                          diagnostics=self.diagnostics)

    # ------------------------------------------------------------------ Slack side
    def request_and_approve(self, proc: BotProcess, text: str) -> tuple[int, dict[str, Any]]:
        """alice requests over signed HTTP, bob (an approver) approves; (id, request msg)."""
        self.driver.bot_url = f"{proc.url}/slack/events"
        reply = self.driver.slash_command("/rollback", text, user="alice", channel=CHANNEL)
        assert reply.status == 200, reply.body

        def request_message() -> dict[str, Any] | None:
            for m in self.emulator.messages(CHANNEL):
                if any(b.get("type") == "header" for b in m.get("blocks") or []):
                    # The assessment is the request flow's last part: buttons are final.
                    return m if "*Assessment*" in str(m.get("blocks")) else None
            return None

        msg = wait_until(request_message, timeout=30, what="the request message",
                         diagnostics=self.diagnostics)
        rollback_id = int(str(msg["text"]).split()[0].removeprefix("RB-"))
        click = self.driver.click(CHANNEL, msg["ts"], "rollback_approve", user="bob")
        assert click.status == 200, click.body
        if "Destructive steps" in str(msg.get("blocks")):  # approved by typing the name
            wait_until(lambda: self.emulator.open_views("bob"), timeout=15,
                       what="the destructive-approval dialog", diagnostics=self.diagnostics)
            submit = self.driver.submit_view("bob", {"confirm_service": SERVICE})
            assert submit.status == 200, submit.body
        return rollback_id, msg

    def thread_texts(self, msg: dict[str, Any]) -> list[str]:
        return [str(m.get("text", "")) for m in self.emulator.thread(CHANNEL, msg["ts"])]

    def wait_thread(self, msg: dict[str, Any], needle: str, *, timeout: float = 15) -> list[str]:
        """The thread's texts once one contains ``needle`` (the bot posts after it commits
        the state change, so the database can be ahead of Slack for a moment)."""
        def seen() -> list[str] | None:
            texts = self.thread_texts(msg)
            return texts if any(needle in t for t in texts) else None

        return wait_until(seen, timeout=timeout, what=f"{needle!r} in the request's thread",
                          diagnostics=lambda: "\n".join(self.thread_texts(msg)))

    # ------------------------------------------------------------------ database side
    def wait_state(self, rollback_id: int, states: set[str], *, timeout: float = 45) -> Rollback:
        def reached() -> Rollback | None:
            rb = self.store.get(rollback_id)
            return rb if rb.state.value in states else None

        return wait_until(reached, timeout=timeout, interval=0.1,
                          what=f"RB-{rollback_id} to reach one of {sorted(states)}",
                          diagnostics=lambda: self.diagnostics(rollback_id))

    def diagnostics(self, rollback_id: int | None = None) -> str:
        parts = []
        if rollback_id is not None:
            with contextlib.suppress(Exception):
                rb = self.store.get(rollback_id)
                parts.append(f"RB-{rollback_id}: {rb.state.value} "
                             f"(last_error={rb.last_error!r})")
                parts += [f"  step {s.seq} {s.kind}: {s.status} x{s.attempts} {s.error or ''}"
                          for s in self.store.steps(rollback_id)]
        with contextlib.suppress(Exception):
            parts.append(f"platform mutations: {self.platform.mutation_log()}")
        parts += [p.tail() for p in self.processes]
        return "\n".join(parts)

    def close(self) -> None:
        for proc in self.processes:
            proc.kill()
        self.driver.close()
        self.emulator.stop()
        self.store.pool.close()


@contextlib.contextmanager
def crash_rig(tmp: Path, bot_db_url: str, app_db_url: str) -> Iterator[CrashRig]:
    rig = CrashRig(tmp, bot_db_url, app_db_url)
    try:
        yield rig
    finally:
        rig.close()
