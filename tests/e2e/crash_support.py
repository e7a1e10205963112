"""Helpers for the crash/resume tests: real ``rollback-bot serve`` processes, killed for real.

A ``BotProcess`` (``tests.support.bot_process``) is ``python -m tests.support.bot_main
serve`` (``rollback-bot serve`` with the fake platform registered) in its own process group
with its output in a log file, so a test can SIGKILL it (no cleanup handlers, no lease
release, exactly like an OOM kill or a lost node) and show the tail of its log when
something goes wrong. ``CrashRig`` wires one scenario: the Slack emulator (in the test
process, so it outlives every bot process), the bot's database, the application database
the plan restores, the file-backed fake platform and the YAML config every process reads.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import yaml

from bot.domain.models import Rollback
from bot.integrations import target_database as database
from bot.persistence.db import open_pool
from bot.persistence.store import Store
from sandbox.config import sandbox_config_dict
from sandbox.fake_platform import FakePlatform
from sandbox.slack import DEFAULT_SIGNING_SECRET, SlackDriver, SlackEmulator
from tests.support.bot_process import BotProcess, launch
from tests.support.messages import find_request_message, request_ref, thread_texts
from tests.support.waiting import wait_until

CHANNEL = "inc-hotel-voice-bot"
SERVICE = "hotel-voice-bot"
APP_DSN_ENV = "APP_DATABASE_URL"
# Not the fake platform's default of 3: scale_up must restore what scale_down recorded,
# and a hard-coded or defaulted count would be indistinguishable from 3.
ORIGINAL_REPLICAS = 4
GOOD_CONFIG = {"items": {"configmap/app-config": {"data": {"MODE": "good"}}}}
BACKUP_ROWS = [(1, "hello"), (2, "room service"), (3, "checkout")]
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
                  fault_file: Path | None = None,
                  env: dict[str, str] | None = None) -> BotProcess:
        """``fault``: a step's crash point; ``env``: any other (``ROLLBACK_FAULT_SEND``...)."""
        env = {APP_DSN_ENV: self.app_db_url, **(env or {})}
        if fault is not None:
            assert fault_file is not None
            env["ROLLBACK_FAULT_HOLD"] = fault
            env["ROLLBACK_FAULT_FILE"] = str(fault_file)
        proc = launch(name, log_dir=self.tmp, slack_api_url=self.emulator.base_url,
                      database_url=self.bot_db_url, config=self.config_path, env=env)
        self.processes.append(proc)  # killed by close() even if it never gets healthy
        proc.wait_healthy(diagnostics=self.diagnostics)
        return proc

    def wait_fault(self, proc: BotProcess, fault_file: Path, *, timeout: float = 30) -> str:
        """Block until ``proc`` announces it is parked at its fault point."""
        def held() -> str | None:
            if not proc.alive():
                raise AssertionError(f"{proc.name} died before reaching its fault point\n"
                                     f"{self.diagnostics()}")
            text = fault_file.read_text() if fault_file.exists() else ""
            return text if text.endswith("\n") else None  # a complete line, not a torn write

        return wait_until(held, timeout=timeout, message=f"{proc.name} to hold at its fault point",
                          diagnostics=self.diagnostics)

    # ------------------------------------------------------------------ Slack side
    def request_and_approve(self, proc: BotProcess, text: str) -> tuple[int, dict[str, Any]]:
        """alice requests over signed HTTP, bob (an approver) approves; (id, request msg)."""
        self.driver.bot_url = f"{proc.url}/slack/events"
        reply = self.driver.slash_command("/rollback", text, user="alice", channel=CHANNEL)
        assert reply.status == 200, reply.body

        # The assessment is the request flow's last part: its buttons are final.
        msg = wait_until(lambda: find_request_message(self.emulator), timeout=30,
                         message="the request message", diagnostics=self.diagnostics)
        rollback_id = request_ref(msg)
        click = self.driver.click(CHANNEL, msg["ts"], "rollback_approve", user="bob")
        assert click.status == 200, click.body
        if "Destructive steps" in str(msg.get("blocks")):  # approved by typing the name
            wait_until(lambda: self.emulator.open_views("bob"), timeout=15,
                       message="the destructive-approval dialog", diagnostics=self.diagnostics)
            submit = self.driver.submit_view("bob", {"confirm_service": SERVICE})
            assert submit.status == 200, submit.body
        return rollback_id, msg

    def thread_texts(self, msg: dict[str, Any]) -> list[str]:
        return thread_texts(self.emulator, msg)

    def wait_thread(self, msg: dict[str, Any], needle: str, *, timeout: float = 15) -> list[str]:
        """The thread's texts once one contains ``needle`` (the bot posts after it commits
        the state change, so the database can be ahead of Slack for a moment)."""
        def seen() -> list[str] | None:
            texts = self.thread_texts(msg)
            return texts if any(needle in t for t in texts) else None

        return wait_until(seen, timeout=timeout, message=f"{needle!r} in the request's thread",
                          diagnostics=lambda: "\n".join(self.thread_texts(msg)))

    # ------------------------------------------------------------------ database side
    def wait_state(self, rollback_id: int, states: set[str], *, timeout: float = 45) -> Rollback:
        def reached() -> Rollback | None:
            rb = self.store.get(rollback_id)
            return rb if rb.state.value in states else None

        return wait_until(reached, timeout=timeout, interval=0.1,
                          message=f"RB-{rollback_id} to reach one of {sorted(states)}",
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
