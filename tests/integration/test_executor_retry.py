"""The executor's retry loop against a real store (a fresh PostgreSQL database per test,
``tests.support.database`` through the ``db`` fixture) and the fake platform, without
Slack or the bot's HTTP server: every attempt is counted on the step row, the waits are
the capped Retry-After in slices of the injected sleep, the budget always ends in a
failure, and a re-claimed rollback continues the count instead of starting over.

A step's own errors (``bot.execution.errors``) go through the same loop: a webhook-only
plan's ``repoint_webhooks`` step calls a real HTTP server on localhost
(``tests.support.webhooks``); its 5xx is retried like a transient platform error, within
the same budget, and an unexpected status stops at once."""

from __future__ import annotations

import math
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from bot.domain.config import ExecutorSettings
from bot.domain.lifecycle import Event, State
from bot.domain.messages import ExecutionFailed, ExecutionResumed, StepDone, StepRetrying
from bot.domain.models import PlannedStep, Rollback
from bot.execution.executor import WAIT_SLICE_SECONDS, Executor
from bot.execution.retry import DEFAULT_MAX_RETRY_AFTER_SECONDS as CAP
from bot.persistence.db import open_pool
from bot.persistence.store import Store
from bot.usecases.catalog import Catalog
from platforms.base import Target, TransientPlatformError
from sandbox.config import parse_sandbox_config, sandbox_config_dict
from sandbox.fake_platform import FakePlatform
from tests.support.webhooks import Hooks, hooks_fixture

SERVICE = "hotel-voice-bot"
TARGET = Target("fake", "production", SERVICE)
NOW = datetime.now(UTC)
APP_STEPS = (PlannedStep("app_rollback", "Roll back"), PlannedStep("wait_rollout", "Wait"))
REPOINT = "Re-point webhooks (hook)"

hooks = hooks_fixture()


class Chat:
    """The ``Chat`` port, keeping what the core said in the thread (facts, not text)."""

    def __init__(self) -> None:
        self.said: list[Any] = []

    def refresh(self, rollback: Rollback, steps: Any = None) -> None:
        pass

    def thread(self, rollback: Rollback, message: Any, *, mention: str | None = None) -> None:
        self.said.append(message)

    def retries(self) -> list[StepRetrying]:
        return [m for m in self.said if isinstance(m, StepRetrying)]


class Crash(Exception):
    """The executor process dying in the middle of a wait."""


class Sleep:
    def __init__(self, crash_after: int | None = None) -> None:
        self.slices: list[float] = []
        self.crash_after = crash_after

    def __call__(self, seconds: float) -> None:
        self.slices.append(seconds)
        if self.crash_after is not None and len(self.slices) >= self.crash_after:
            raise Crash()


@pytest.fixture
def store(db: str) -> Iterator[Store]:
    s = Store(open_pool(db, max_size=4))
    yield s
    s.pool.close()


def _approved(store: Store, platform: FakePlatform,
              steps: tuple[PlannedStep, ...] = APP_STEPS) -> Rollback:
    """An approved rollback of ``steps`` (an ``app_rollback`` step is pinned to the
    platform's previous revision)."""
    history = platform.history(TARGET)
    current, pinned = history[0], history[1]
    planned = [PlannedStep(st.kind, st.description, st.destructive,
                           {"revision": pinned.to_dict()}) if st.kind == "app_rollback" else st
               for st in steps]
    rb = store.create_rollback(
        service=SERVICE, platform="fake", severity="P0", policy_mode="immediate",
        scope=["app"], reason="retry", requester="U1", channel_id="C1",
        channel_name="inc-hotel-voice-bot", current_revision=current, target_revision=pinned,
        target=TARGET, steps=planned, checklist={}, assessment={},
        expires_at=NOW + timedelta(minutes=30), created_at=NOW)
    return store.transition(rb.id, Event.APPROVE, actor="U2", expected=State.PENDING_APPROVAL,
                            updates={"approver": "U2"})


def _executor(store: Store, platform: FakePlatform, tmp: Path, *, retries: int, sleep: Sleep,
              chat: Chat, owner: str, backoff: float = 0.01,
              webhook_url: str | None = None) -> Executor:
    """The executor over the sandbox's catalog (``webhook_url``: hotel-voice-bot also has one
    webhook, ``hook``, POSTing there)."""
    data = sandbox_config_dict(postmortem_dir=str(tmp / "pm"))
    if webhook_url is not None:
        data["services"][SERVICE]["webhooks"] = [{
            "name": "hook", "url": webhook_url, "method": "POST", "json": {"to": "rs-2"},
            "timeout_seconds": 5}]
    config = parse_sandbox_config(data)
    settings = ExecutorSettings(max_transient_retries=retries, backoff_base_seconds=backoff)
    return Executor(catalog=Catalog(config, {"fake": platform}), store=store, chat=chat,
                    settings=settings, aftercare=lambda rb: None, sleep=sleep, owner=owner)


def _app_step(store: Store, rollback_id: int) -> Any:
    return next(s for s in store.steps(rollback_id) if s.kind == "app_rollback")


def test_an_absurd_retry_after_waits_the_cap_and_the_budget_ends_in_failure(
        store: Store, tmp_path: Path) -> None:
    platform = FakePlatform()
    platform.inject("rollback_to", TransientPlatformError("429", retry_after=1e12), times=50)
    rb = _approved(store, platform)
    sleep, chat = Sleep(), Chat()
    executor = _executor(store, platform, tmp_path, retries=2, sleep=sleep, chat=chat,
                         owner="A")
    assert executor.run_once() is True
    done = store.get(rb.id)
    assert done.state == State.FAILED
    assert "gave up after 3 attempts (retry budget: 2 retries)" in (done.last_error or "")
    step = _app_step(store, rb.id)
    assert (step.status, step.attempts) == ("failed", 3)
    assert platform.calls()["rollback_to"] == 3 and platform.mutations() == {}
    assert math.isclose(sum(sleep.slices), 2 * CAP)  # two waits, each capped
    assert max(sleep.slices) <= WAIT_SLICE_SECONDS
    assert [(m.delay, m.capped, m.attempts) for m in chat.retries()] == [
        (CAP, True, 1), (CAP, True, 2)]


def test_a_reclaimed_rollback_continues_the_count(store: Store, tmp_path: Path) -> None:
    platform = FakePlatform()
    platform.inject("rollback_to", TransientPlatformError("503", retry_after=1.0), times=50)
    rb = _approved(store, platform)
    first = _executor(store, platform, tmp_path, retries=3, sleep=Sleep(crash_after=1),
                      chat=Chat(), owner="A")
    with pytest.raises(Crash):  # died in its first wait; its lease is released on the way
        first.run_once()
    assert _app_step(store, rb.id).attempts == 1
    assert store.get(rb.id).state == State.EXECUTING

    chat = Chat()
    second = _executor(store, platform, tmp_path, retries=3, sleep=Sleep(), chat=chat,
                       owner="B")
    assert second.run_once() is True
    assert store.get(rb.id).state == State.FAILED
    step = _app_step(store, rb.id)
    assert step.attempts == 4  # 1 before the crash + 3 after: the budget did not restart
    assert platform.calls()["rollback_to"] == 4
    assert any(isinstance(m, ExecutionResumed) and m.executor == "B" for m in chat.said)
    assert [(m.delay, m.capped, m.attempts) for m in chat.retries()] == [
        (1.0, False, 2), (1.0, False, 3)]


def test_a_transient_error_that_clears_is_retried_once_and_applied_once(
        store: Store, tmp_path: Path) -> None:
    platform = FakePlatform()
    platform.inject("rollback_to", TransientPlatformError("429", retry_after=0.25), times=1)
    rb = _approved(store, platform)
    sleep = Sleep()
    executor = _executor(store, platform, tmp_path, retries=3, sleep=sleep, chat=Chat(),
                         owner="A")
    assert executor.run_once() is True
    assert store.get(rb.id).state == State.VERIFYING  # aftercare takes it from here
    step = _app_step(store, rb.id)
    assert (step.status, step.attempts) == ("done", 2)
    assert sleep.slices == [0.25]  # the platform's hint, obeyed
    assert platform.mutations()["rollback_to"] == 1
    assert platform.current_revision(TARGET).id == store.get(rb.id).target_revision.id


# ------------------------------------------------------------------ a step's own errors
def _webhook_only(store: Store, platform: FakePlatform) -> Rollback:
    return _approved(store, platform, steps=(PlannedStep("repoint_webhooks", REPOINT),))


def _webhook_step(store: Store, rollback_id: int) -> Any:
    (step,) = store.steps(rollback_id)
    assert step.kind == "repoint_webhooks"
    return step


def test_the_executor_retries_a_webhooks_5xx_like_a_transient_platform_error(
        store: Store, tmp_path: Path, hooks: Hooks) -> None:
    hooks.statuses = [503, 200]
    platform = FakePlatform()
    rb = _webhook_only(store, platform)
    sleep, chat = Sleep(), Chat()
    executor = _executor(store, platform, tmp_path, retries=5, backoff=1.0, sleep=sleep,
                         chat=chat, owner="A", webhook_url=hooks.url)
    assert executor.run_once() is True
    assert store.get(rb.id).state == State.VERIFYING  # aftercare takes it from here
    step = _webhook_step(store, rb.id)
    assert (step.status, step.attempts, step.error) == ("done", 2, None)
    assert step.result == {"webhooks": ["hook"]}
    assert chat.retries() == [StepRetrying(1, 1, REPOINT, "webhook hook: HTTP 503", 1.0,
                                           False, 1)]
    assert [m for m in chat.said if isinstance(m, StepDone)] == [StepDone(1, 1, REPOINT, "")]
    assert math.isclose(sum(sleep.slices), 1.0)  # the backoff: a webhook gives no hint
    assert hooks.requests == ["POST /repoint"] * 2
    assert platform.mutations() == {}  # a webhook-only plan leaves the platform alone


def test_the_executor_gives_up_on_a_webhook_within_the_budget(
        store: Store, tmp_path: Path, hooks: Hooks) -> None:
    hooks.statuses = [503]
    platform = FakePlatform()
    rb = _webhook_only(store, platform)
    chat = Chat()
    executor = _executor(store, platform, tmp_path, retries=2, sleep=Sleep(), chat=chat,
                         owner="A", webhook_url=hooks.url)
    assert executor.run_once() is True
    error = "webhook hook: HTTP 503 (gave up after 3 attempts (retry budget: 2 retries))"
    done = store.get(rb.id)
    assert done.state == State.FAILED
    assert done.last_error == f"repoint_webhooks: {error}"
    step = _webhook_step(store, rb.id)
    assert (step.status, step.attempts, step.error) == ("failed", 3, error)
    assert [m.attempts for m in chat.retries()] == [1, 2]
    assert len(hooks.requests) == 3


def test_the_executor_stops_at_a_webhooks_permanent_failure(
        store: Store, tmp_path: Path, hooks: Hooks) -> None:
    hooks.statuses = [404]
    platform = FakePlatform()
    rb = _webhook_only(store, platform)
    sleep, chat = Sleep(), Chat()
    executor = _executor(store, platform, tmp_path, retries=5, sleep=sleep, chat=chat,
                         owner="A", webhook_url=hooks.url)
    assert executor.run_once() is True
    assert store.get(rb.id).state == State.FAILED
    step = _webhook_step(store, rb.id)
    assert (step.status, step.attempts, step.error) == ("failed", 1, "webhook hook: HTTP 404")
    assert chat.retries() == [] and sleep.slices == [] and len(hooks.requests) == 1
    failed = [m for m in chat.said if isinstance(m, ExecutionFailed)]
    assert [(m.seq, m.error, m.compensated) for m in failed] == [
        (1, "webhook hook: HTTP 404", None)]
