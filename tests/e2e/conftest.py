"""End-to-end harness: the real bot over HTTP, the Slack emulator, a real PostgreSQL.

Each test gets its own database, emulator, bot server and fake platform; time is a
``MutableClock`` the test moves forward, and timers run through the leader scheduler.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from handlers import ids
from sandbox.config import parse_sandbox_config, sandbox_config_dict
from sandbox.fake_platform import FakePlatform
from sandbox.slack import SlackDriver, SlackEmulator
from sandbox.stack import SandboxStack
from tests.secret_scan import register_secret
from tests.support import messages

CHANNEL = messages.CHANNEL


class MutableClock:
    def __init__(self, start: datetime) -> None:
        self._now = start
        self._lock = threading.Lock()

    def __call__(self) -> datetime:
        with self._lock:
            return self._now

    def advance(self, **delta: float) -> datetime:
        with self._lock:
            self._now += timedelta(**delta)
            return self._now


@dataclass
class Harness:
    stack: SandboxStack
    platform: FakePlatform
    clock: MutableClock

    @property
    def emulator(self) -> SlackEmulator:
        return self.stack.emulator

    @property
    def driver(self) -> SlackDriver:
        assert self.stack.driver is not None
        return self.stack.driver

    @property
    def bot(self) -> Any:
        return self.stack.bot

    def request(self, text: str, *, user: str = "alice", channel: str = CHANNEL) -> Any:
        return self.driver.slash_command("/rollback", text, user=user, channel=channel)

    def rollback_message(self, ref_id: int | None = None) -> dict[str, Any]:
        """The pinned request message once the request flow has finished (the assessment,
        its last part, is rendered)."""
        return messages.request_message(self.emulator, ref_id)

    def request_and_approve_p0(self) -> tuple[int, dict[str, Any]]:
        """bob requests a P0 app rollback and approves it himself (break glass); returns
        (rollback id, request message)."""
        self.request("hotel-voice-bot --severity P0 --scope app", user="bob")
        msg = self.rollback_message()
        rid = self.bot.store.history("hotel-voice-bot")[0].id
        self.click(msg, ids.APPROVE, "bob")
        return rid, msg

    def request_and_approve_p1(self) -> tuple[int, dict[str, Any]]:
        """alice requests a P1 rollback, carol takes incident command (the P1 checklist
        gate), bob approves; returns (rollback id, request message)."""
        self.request('hotel-voice-bot --severity P1 --reason "5xx after v1.3.0"')
        msg = self.rollback_message()
        rid = messages.request_ref(msg)
        self.click(msg, ids.ASSIGN_IC, "carol")
        self.emulator.wait_for(lambda: ids.ASSIGN_IC not in action_ids(self.message_now(msg["ts"])))
        self.click(msg, ids.APPROVE, "bob")
        return rid, msg

    def message_now(self, ts: str) -> dict[str, Any]:
        return self.emulator.message(CHANNEL, ts)

    def wait_state(self, rollback_id: int, *states: str, timeout: float = 20) -> Any:
        store = self.bot.store
        return self.emulator.wait_for(
            lambda: (rb := store.get(rollback_id)).state.value in states and rb, timeout=timeout)

    def click(self, msg: dict[str, Any], action_id: str, user: str) -> Any:
        current = self.message_now(msg["ts"])
        return self.driver.click(CHANNEL, current["ts"], action_id, user)

    def ephemeral_texts(self, user: str) -> list[str]:
        return [str(e.get("text", "")) + str(e.get("blocks", ""))
                for e in self.emulator.ephemerals(user=user)]

    def wait_ephemeral(self, user: str, needle: str, timeout: float = 10) -> str:
        found = self.emulator.wait_for(
            lambda: next((t for t in self.ephemeral_texts(user) if needle in t), None),
            timeout=timeout)
        assert found, f"no ephemeral for {user} containing {needle!r}: {self.ephemeral_texts(user)}"
        return str(found)

    def thread_texts(self, msg: dict[str, Any]) -> list[str]:
        return messages.thread_texts(self.emulator, msg)

    def tick(self) -> int:
        return int(self.bot.scheduler.tick(now=self.clock()))


def action_ids(message: dict[str, Any]) -> list[str]:
    return [e.get("action_id") for b in message.get("blocks") or [] if b.get("type") == "actions"
            for e in b.get("elements", [])]


@pytest.fixture
def make_harness(db: str, tmp_path: Path) -> Iterator[Callable[..., Harness]]:
    started: list[SandboxStack] = []

    def make(*, config_overrides: Callable[[dict[str, Any]], None] | None = None,
             rollout_seconds: float = 0.0, background: bool = True,
             state_file: str | None = None, emulator: SlackEmulator | None = None,
             database_url: str | None = None, postmortem_dir: Path | None = None) -> Harness:
        data = sandbox_config_dict(postmortem_dir=str(postmortem_dir or
                                                      tmp_path / "post-mortems"))
        if config_overrides:
            config_overrides(data)
        clock = MutableClock(datetime(2026, 11, 29, 3, 0, tzinfo=UTC))
        platform = FakePlatform(rollout_seconds=rollout_seconds, state_file=state_file)
        stack = SandboxStack(config=parse_sandbox_config(data), database_url=database_url or db,
                             platforms={"fake": platform}, clock=clock, background=background,
                             scheduler=False, emulator=emulator)
        stack.start()
        register_secret(stack.signing_secret, "a sandbox stack's signing secret")
        started.append(stack)
        return Harness(stack, platform, clock)

    yield make
    for stack in started:
        stack.stop()


@pytest.fixture
def harness(make_harness: Callable[..., Harness]) -> Harness:
    return make_harness()
