"""Slow platforms against the real server: with revision-history reads hanging, every
signed request is still acked within Slack's 3 s, another user's `help` answers at once,
saturated requests hear "busy, retry in a moment", a decision click (Cancel, Approve, IC…:
our database and Slack only) still takes effect, and a burst of modal opens is one read.

The platform is the fake adapter with its history reads held on a gate (bounded like a
hung API call), released by the test once it has checked what happens meanwhile.
"""

from __future__ import annotations

import copy
import logging
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from handlers import ids
from handlers.work_pool import MAX_WAITERS_PER_READ, WorkPool
from platforms.base import Revision, Target
from sandbox.config import parse_sandbox_config, sandbox_config_dict
from sandbox.fake_platform import FakePlatform
from sandbox.slack import SlackDriver
from sandbox.stack import SandboxStack
from tests.secret_scan import register_secret
from tests.support.messages import request_message
from tests.support.waiting import wait_until

DEADLINE = 3.0  # Slack's ack deadline
HANG_SECONDS = 20.0  # how long a held read waits at most (the measured ReplicaSet hang)
CHANNEL = "inc-hotel-voice-bot"
SLOW = "voice-gateway"  # a second service, so a rollback of the first can be clicked on
BUSY = "retry in a moment"
CLIENTS = 16  # concurrent senders, like Slack delivering a burst


class HangingPlatform(FakePlatform):
    """The fake adapter whose ``history`` (the revision list: ReplicaSets on Kubernetes)
    hangs while ``gate`` is clear, up to HANG_SECONDS; it counts every read."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = threading.Event()
        self.gate.set()
        self.reads = 0
        self.held = 0  # reads waiting on the gate right now
        self._counter = threading.Lock()

    def history(self, target: Target) -> list[Revision]:
        with self._counter:
            self.reads += 1
            self.held += 1
        try:
            self.gate.wait(HANG_SECONDS)
        finally:
            with self._counter:
                self.held -= 1
        return super().history(target)


@dataclass
class Acked:
    user: str
    text: str
    status: int
    seconds: float
    body: str

    @property
    def busy(self) -> bool:
        return BUSY in self.body


@pytest.fixture
def platform() -> Iterator[HangingPlatform]:
    adapter = HangingPlatform()
    yield adapter
    adapter.gate.set()  # let held workers finish before the stack stops


@pytest.fixture
def stack(db: str, tmp_path: Path, platform: HangingPlatform) -> Iterator[SandboxStack]:
    data = sandbox_config_dict(postmortem_dir=str(tmp_path / "pm"))
    second = copy.deepcopy(data["services"]["hotel-voice-bot"])
    second["fake"] = {"scope": "production", "name": SLOW}
    second.pop("incident_channel_pattern", None)
    data["services"][SLOW] = second
    with SandboxStack(config=parse_sandbox_config(data), database_url=db,
                      platforms={"fake": platform}, scheduler=False,
                      background=False) as running:
        register_secret(running.signing_secret, "a sandbox stack's signing secret")
        try:
            yield running
        finally:
            platform.gate.set()


def _command(driver: SlackDriver, user: str, text: str) -> Acked:
    started = time.monotonic()
    reply = driver.slash_command("/rollback", text, user=user, channel=CHANNEL)
    return Acked(user, text, reply.status, time.monotonic() - started, reply.body)


def _burst(driver: SlackDriver, jobs: list[tuple[str, str]]) -> list[Acked]:
    with ThreadPoolExecutor(CLIENTS) as senders:
        return list(senders.map(lambda job: _command(driver, *job), jobs))


def _modal(stack: SandboxStack, user: str) -> dict[str, Any] | None:
    return next((v for v in stack.emulator.open_views(user)
                 if v.get("callback_id") == ids.REQUEST_MODAL), None)


def _filled(stack: SandboxStack, user: str) -> bool:
    view = _modal(stack, user)
    return view is not None and any(b.get("block_id") == "target_revision"
                                    for b in view["blocks"])


def _wait(stack: SandboxStack, predicate: Callable[[], Any], what: str,
          timeout: float = 15.0) -> Any:
    found = stack.emulator.wait_for(predicate, timeout=timeout)
    assert found, f"timed out waiting for {what}"
    return found


# A condition outside Slack (the pool, the platform's held reads) is polled with
# ``wait_until``: the emulator's wait_for re-checks only when something changes in Slack, so
# it would see such a condition late, at its timeout.
def _drained(pool: WorkPool) -> None:
    wait_until(lambda: pool.pending == 0, 15, 0.02, "the pool to drain")


def _action_ids(message: dict[str, Any]) -> list[str]:
    return [e.get("action_id") for b in message.get("blocks") or [] if b.get("type") == "actions"
            for e in b.get("elements", [])]


def _no_ack_timeouts(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if "ack()" in r.getMessage() or r.levelno >= logging.ERROR]


def test_acks_stay_fast_while_platform_reads_hang(
        stack: SandboxStack, platform: HangingPlatform, caplog: pytest.LogCaptureFixture) -> None:
    assert stack.bot is not None and stack.driver is not None and stack.server is not None
    em, driver, pool = stack.emulator, stack.driver, stack.bot.work_pool
    caplog.set_level(logging.INFO)
    modal_users = [em.add_user(f"opener{i}").name for i in range(10)]

    # A rollback of the first service to click on later, made while the platform answers.
    driver.slash_command("/rollback", "hotel-voice-bot --severity P1 --reason baseline",
                         user="alice", channel=CHANNEL)
    message = request_message(em)

    # bob opens the Reject form now; he submits it while the pool is full.
    driver.click(CHANNEL, message["ts"], ids.REJECT, "bob")
    _wait(stack, lambda: em.open_views("bob"), "bob's reject form")

    platform.gate.clear()  # from here on, every revision read hangs
    baseline_reads = platform.reads
    # Five people open the request modal: one read in flight, five modals on screen.
    openers = _burst(driver, [(u, SLOW) for u in modal_users[:5]])
    wait_until(lambda: platform.held == 1, 15, 0.02, "the modal's read to hang")
    # More slow requests than the pool has workers and queue: one slot is the modal's read.
    n_slow = pool.capacity + 6
    slow = _burst(driver, [("dave", f"{SLOW} --severity P1 --reason slow")] * n_slow)
    wait_until(lambda: platform.held == pool.workers, 15, 0.02,
               "every worker to hang on a read")
    # While saturated: more modal opens (they join the read in flight), another user's
    # help, a health probe, a decision click (its own lane) and a form submission.
    late = _burst(driver, [(u, SLOW) for u in modal_users[5:]])
    helped = _command(driver, "bob", "help")
    with httpx.Client(timeout=DEADLINE) as http:
        started = time.monotonic()
        health = http.get(f"{stack.server.url}/healthz")
        health_seconds = time.monotonic() - started
    started = time.monotonic()
    click = driver.click(CHANNEL, message["ts"], ids.ASSIGN_IC, "carol")
    click_seconds = time.monotonic() - started
    started = time.monotonic()
    rejected = driver.submit_view("bob", {"reason": "hotfix is faster"})
    submit_seconds = time.monotonic() - started

    acked = openers + slow + late + [helped]
    assert [a for a in acked if a.status != 200] == []
    assert click.status == 200 and health.status_code == 200 and rejected.status == 200
    slowest = max([a.seconds for a in acked] + [click_seconds, health_seconds,
                                                 submit_seconds])
    assert slowest < DEADLINE, f"slowest ack {slowest:.2f}s"
    assert "/rollback status" in helped.body
    # The pool took exactly what it has room for; the rest were told at once, in the ack.
    busy = [a for a in slow if a.busy]
    assert len(busy) == n_slow - (pool.capacity - 1)
    assert all("Preparing the rollback plan" in a.body for a in slow if not a.busy)
    assert [a for a in openers + late if a.busy] == []
    # Every modal is on screen (loading) although no worker is free; reads stay bounded.
    _wait(stack, lambda: all(_modal(stack, u) for u in modal_users), "ten loading modals",
          timeout=DEADLINE)
    # One shared read for the ten modals, one per other worker; the queue waits.
    assert platform.reads - baseline_reads == pool.workers
    # The form stays open with the notice under its input: submitting again is enough.
    assert rejected.view_result == "errors"
    [form] = em.open_views("bob")
    assert BUSY in em.view_errors(form["id"]).get("reason", "")
    # carol's click is a decision (database and Slack only): it is done although every
    # platform-lane worker still hangs, and nobody told her "busy".
    carol = em.user_id("carol")
    _wait(stack, lambda: ids.ASSIGN_IC not in _action_ids(em.message(CHANNEL, message["ts"]) or {}),
          "carol's IC click to take effect while the platform lane is full")
    assert stack.bot.store.history("hotel-voice-bot")[0].incident_commander == carol
    assert platform.held == pool.workers
    assert [e for e in em.ephemerals() if e["recipient"] == carol and BUSY in str(e)] == []

    platform.gate.set()
    _wait(stack, lambda: all(_filled(stack, u) for u in modal_users), "filled-in modals")
    accepted = n_slow - len(busy)
    # One request wins; every other accepted one is refused as a duplicate of it.
    _wait(stack, lambda: sum("Only one active rollback" in str(e.get("text"))
                             for e in em.ephemerals(user="dave")) == accepted - 1,
          "the other accepted requests' refusals")
    assert [rb.service for rb in stack.bot.store.history(SLOW)] == [SLOW]
    baseline = stack.bot.store.history("hotel-voice-bot")[0]
    assert baseline.state.value == "pending_approval"  # the busy submission did nothing
    assert baseline.incident_commander == carol
    assert platform.reads - baseline_reads == pool.workers  # the queued met the active one
    _drained(pool)
    assert _no_ack_timeouts(caplog) == []
    print(f"{len(acked) + 3} requests under hung reads: slowest ack {slowest * 1000:.0f} ms, "
          f"help {helped.seconds * 1000:.0f} ms, {len(busy)} busy, "
          f"{platform.reads - baseline_reads} reads")


def test_a_cancel_click_takes_effect_while_the_platform_lane_is_full(
        stack: SandboxStack, platform: HangingPlatform, caplog: pytest.LogCaptureFixture) -> None:
    assert stack.bot is not None and stack.driver is not None
    em, driver, pool, store = stack.emulator, stack.driver, stack.bot.work_pool, stack.bot.store
    caplog.set_level(logging.INFO)
    driver.slash_command("/rollback", "hotel-voice-bot --severity P1 --reason baseline",
                         user="alice", channel=CHANNEL)
    message = request_message(em)
    [baseline] = store.history("hotel-voice-bot")
    assert baseline.state.value == "pending_approval"

    platform.gate.clear()  # every revision read hangs from here on
    slow = _burst(driver, [("dave", f"{SLOW} --severity P1 --reason slow")] * (pool.capacity + 4))
    wait_until(lambda: platform.held == pool.workers, 15, 0.02,
               "every worker to hang on a read")
    assert [a for a in slow if a.busy], "the platform lane was never full"
    # Still full now: a request that needs the platform is told "busy"...
    assert _command(driver, "dave", f"{SLOW} --severity P1 --reason again").busy
    # ...and the requester's Cancel, which needs only our database and Slack, is not.
    started = time.monotonic()
    click = driver.click(CHANNEL, message["ts"], ids.CANCEL, "alice")
    assert click.status == 200 and time.monotonic() - started < DEADLINE
    _wait(stack, lambda: "Cancelled" in str(em.message(CHANNEL, message["ts"])),
          "the cancellation while the platform lane is full")
    assert store.get(baseline.id).state.value == "cancelled"
    assert platform.held == pool.workers  # it did not wait for a platform-lane worker
    alice = em.user_id("alice")
    assert [e for e in em.ephemerals() if e["recipient"] == alice and BUSY in str(e)] == []

    platform.gate.set()
    _drained(pool)
    assert store.get(baseline.id).state.value == "cancelled"
    assert _no_ack_timeouts(caplog) == []


def test_a_burst_of_modal_opens_is_one_platform_read(
        stack: SandboxStack, platform: HangingPlatform, caplog: pytest.LogCaptureFixture) -> None:
    assert stack.driver is not None
    em = stack.emulator
    caplog.set_level(logging.INFO)
    users = [em.add_user(f"burst{i}").name for i in range(200)]
    platform.gate.clear()

    acked = _burst(stack.driver, [(u, "hotel-voice-bot") for u in users])

    assert [a for a in acked if a.status != 200] == []
    slowest = max(a.seconds for a in acked)
    assert slowest < DEADLINE, f"slowest ack {slowest:.2f}s"
    opened = [a.user for a in acked if not a.busy]
    assert len(opened) == MAX_WAITERS_PER_READ  # the rest were told to retry, in the ack
    assert platform.reads == 1
    _wait(stack, lambda: all(_modal(stack, u) for u in opened), "loading modals",
          timeout=DEADLINE)
    platform.gate.set()
    _wait(stack, lambda: all(_filled(stack, u) for u in opened), "filled-in modals")
    assert platform.reads == 1
    assert stack.bot is not None
    _drained(stack.bot.work_pool)
    assert _no_ack_timeouts(caplog) == []
    print(f"200 modal opens under a hung read: slowest ack {slowest * 1000:.0f} ms, "
          f"{len(opened)} opened, {200 - len(opened)} busy, {platform.reads} platform read")
