"""How a plan step fails, by type (``bot.execution.errors``): a ``TemporaryStepError`` is
retried by the executor's retry policy with its ``retry_after`` hint, exactly like a
platform's ``TransientPlatformError``; a ``PermanentStepError`` stops at once. The database
and webhook steps raise these, never a ``PlatformError``: the webhook step runs against a
real HTTP server on localhost (``tests.support.webhooks``), the database steps against
files and the fake platform. The executor retrying and stopping on these errors, with the
step row in PostgreSQL, is in tests/integration/test_executor_retry.py."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from bot.domain.config import ExecutorSettings, ServiceConfig, parse_config
from bot.domain.errors import RollbackBotError
from bot.domain.lifecycle import State
from bot.domain.models import Rollback, Step
from bot.execution import retry, steps
from bot.execution.errors import (
    ExecutionError,
    PermanentStepError,
    StepError,
    StepFailed,
    TemporaryStepError,
)
from bot.execution.steps import StepContext
from platforms.base import (
    PermanentPlatformError,
    PlatformError,
    Revision,
    Target,
    TransientPlatformError,
)
from platforms.registry import PRODUCTION
from sandbox.fake_platform import FakePlatform
from tests.support.webhooks import Hooks, hooks_fixture

T0 = datetime(2026, 11, 29, 3, 0, tzinfo=UTC)
TARGET = Target("fake", "production", "svc")
CURRENT = Revision("rs-3", 3, ("registry.example/app:v1.3.0",), current=True)
PINNED = Revision("rs-2", 2, ("registry.example/app:v1.2.0",))
DSN_ENV = "STEP_ERRORS_TEST_DSN"


# ------------------------------------------------------------------ the tree
def test_step_errors_are_the_execution_layers_never_the_platforms() -> None:
    for kind in (TemporaryStepError, PermanentStepError):
        assert issubclass(kind, StepError) and issubclass(kind, ExecutionError)
        assert issubclass(kind, RollbackBotError) and not issubclass(kind, PlatformError)
    assert issubclass(StepFailed, ExecutionError) and not issubclass(StepFailed, StepError)
    assert TemporaryStepError("x").retry_after is None
    assert TemporaryStepError("x", retry_after=2.5).retry_after == 2.5
    assert str(PermanentStepError("webhook hook: HTTP 404")) == "webhook hook: HTTP 404"


# ------------------------------------------------------------------ the retry policy
def _decide(exc: TemporaryStepError | TransientPlatformError, *, attempt: int = 1,
            settings: ExecutorSettings | None = None) -> retry.Decision:
    return retry.decide(attempt=attempt, durable_attempts=attempt, retry_after=exc.retry_after,
                        settings=settings or ExecutorSettings())


@pytest.mark.parametrize(("hint", "delay", "capped"), [
    (7.0, 7.0, False),     # obeyed
    (None, 1.0, False),    # no hint: backoff from backoff_base_seconds
    (3600.0, 60.0, True),  # past max_retry_after_seconds: the cap
])
def test_a_temporary_step_error_is_retried_with_its_hint(
        hint: float | None, delay: float, capped: bool) -> None:
    err = TemporaryStepError("webhook hook: HTTP 503", retry_after=hint)
    assert isinstance(err, retry.TEMPORARY) and not isinstance(err, retry.PERMANENT)
    assert _decide(err) == retry.Retry(delay, 1, capped=capped)
    # exactly what the platform's transient error with the same hint gets
    assert _decide(err) == _decide(TransientPlatformError("503", retry_after=hint))


def test_a_temporary_step_error_shares_the_retry_budget() -> None:
    settings = ExecutorSettings(max_transient_retries=2)
    err = TemporaryStepError("rollout not finished after 90s", retry_after=1.0)
    assert _decide(err, attempt=3, settings=settings) == retry.GiveUp(
        "gave up after 3 attempts (retry budget: 2 retries)", 3)


def test_a_permanent_step_error_stops() -> None:
    err = PermanentStepError("database DSN env X is not set")
    assert isinstance(err, retry.PERMANENT) and not isinstance(err, retry.TEMPORARY)
    assert isinstance(PermanentPlatformError("gone"), retry.PERMANENT)


# ------------------------------------------------------------------ a real webhook server
hooks = hooks_fixture()


def _service(*, webhooks: list[dict[str, Any]] | None = None,
             database: dict[str, Any] | None = None) -> ServiceConfig:
    svc: dict[str, Any] = {"kubernetes": {"namespace": "prod", "deployment": "svc"}}
    if webhooks is not None:
        svc["webhooks"] = webhooks
    if database is not None:
        svc["database"] = database
    return parse_config({"services": {"svc": svc}}, platforms=PRODUCTION).services["svc"]


def _webhook(url: str, **kw: Any) -> ServiceConfig:
    return _service(webhooks=[{"name": "hook", "url": url, "method": "POST",
                               "json": {"to": "rs-2"}, "timeout_seconds": 5, **kw}])


def _step(kind: str, seq: int = 1, *, params: dict[str, Any] | None = None,
          attempts: int = 0) -> Step:
    return Step(rollback_id=7, seq=seq, kind=kind, description=kind, destructive=False,
                status="pending", attempts=attempts, params=params or {}, result={},
                error=None, started_at=None, finished_at=None)


def _rollback() -> Rollback:
    return Rollback(
        id=7, service="svc", platform="fake", severity="P0", policy_mode="immediate",
        scope=["app"], reason="5xx", state=State.EXECUTING, requester="U1", channel_id="C1",
        channel_name="inc-svc", message_ts="1.1", thread_ts="1.1", current_revision=CURRENT,
        target_revision=PINNED, target=TARGET, checklist={}, assessment={}, approver="U2",
        break_glass=False, incident_started_at=None, incident_commander=None, created_at=T0,
        updated_at=T0, expires_at=None, approved_at=T0, finished_at=None, last_error=None)


def _run(step: Step, service: ServiceConfig, platform: Any = None,
         all_steps: list[Step] | None = None) -> dict[str, Any]:
    ctx = StepContext(
        rollback=_rollback(), step=step, service=service,
        platform=platform or FakePlatform(replicas=0),
        all_steps=all_steps if all_steps is not None else [step],
        journal=lambda facts: None, progress=lambda line: None, known_good_config=None,
        known_good_recorded_at=None, now=T0)
    return steps.HANDLERS[step.kind](ctx)


def _failure(step: Step, service: ServiceConfig, **kw: Any) -> StepError:
    with pytest.raises(Exception) as info:
        _run(step, service, **kw)
    assert not isinstance(info.value, PlatformError)
    assert isinstance(info.value, StepError), repr(info.value)
    return info.value


# ------------------------------------------------------------------ the webhook step
def test_a_webhook_that_answers_is_done(hooks: Hooks) -> None:
    assert _run(_step("repoint_webhooks"), _webhook(hooks.url)) == {"webhooks": ["hook"]}
    assert hooks.requests == ["POST /repoint"]


def test_a_webhooks_5xx_is_temporary(hooks: Hooks) -> None:
    hooks.statuses = [503]
    err = _failure(_step("repoint_webhooks"), _webhook(hooks.url))
    assert type(err) is TemporaryStepError and err.retry_after is None
    assert str(err) == "webhook hook: HTTP 503"


def test_a_webhooks_unexpected_status_is_permanent(hooks: Hooks) -> None:
    hooks.statuses = [404]
    err = _failure(_step("repoint_webhooks"), _webhook(hooks.url))
    assert type(err) is PermanentStepError and str(err) == "webhook hook: HTTP 404"


def test_an_unreachable_webhook_is_temporary(hooks: Hooks) -> None:
    url = hooks.url
    hooks.close()  # nothing listens on the port any more
    err = _failure(_step("repoint_webhooks"), _webhook(url))
    assert type(err) is TemporaryStepError and str(err) == "webhook hook: ConnectError"


def test_a_webhooks_missing_header_secret_is_permanent(
        hooks: Hooks, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("STEP_ERRORS_TEST_TOKEN", raising=False)
    service = _webhook(hooks.url, headers_env={"Authorization": "STEP_ERRORS_TEST_TOKEN"})
    err = _failure(_step("repoint_webhooks"), service)
    assert type(err) is PermanentStepError
    assert str(err) == ("webhook hook: env var STEP_ERRORS_TEST_TOKEN is not set "
                        "(needed for header Authorization)")
    assert hooks.requests == []


# ------------------------------------------------------------------ the database steps
def _database(tmp_path: Path) -> dict[str, Any]:
    return {"dsn_env": DSN_ENV, "backup_location": str(tmp_path), "verify_queries": ["SELECT 1"]}


def _restore(path: Path, size: int) -> Step:
    return _step("restore_db", 3, params={"backup_path": str(path), "backup_size": size})


@pytest.fixture
def backup(tmp_path: Path) -> Path:
    path = tmp_path / "svc.dump"
    path.write_bytes(b"PGDMP" + b"\0" * 11)
    return path


@pytest.mark.parametrize("kind", ["backup_db", "verify_db"])
def test_an_unset_dsn_env_is_permanent(kind: str, tmp_path: Path,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(DSN_ENV, raising=False)
    err = _failure(_step(kind), _service(database=_database(tmp_path)))
    assert type(err) is PermanentStepError
    assert str(err) == f"database DSN env {DSN_ENV} is not set"


def test_a_restore_without_a_database_section_is_permanent(backup: Path) -> None:
    step = _restore(backup, 16)
    err = _failure(step, _service())
    assert type(err) is PermanentStepError
    assert str(err) == "no database section configured for this service"


def test_a_restore_without_a_pinned_backup_is_permanent(tmp_path: Path) -> None:
    err = _failure(_step("restore_db", 3), _service(database=_database(tmp_path)))
    assert type(err) is PermanentStepError
    assert str(err) == "no backup was pinned in the plan; nothing to restore"


def test_an_unreadable_or_changed_pinned_backup_is_permanent(backup: Path,
                                                            tmp_path: Path) -> None:
    service = _service(database=_database(tmp_path))
    gone = _failure(_restore(tmp_path / "gone.dump", 16), service)
    assert type(gone) is PermanentStepError
    assert str(gone) == ("the pinned backup gone.dump is not readable on this executor "
                         "(shared backup storage missing?)")
    changed = _failure(_restore(backup, 99), service)
    assert type(changed) is PermanentStepError
    assert str(changed) == ("the pinned backup svc.dump changed since the plan was made "
                            "(16 bytes, planned 99)")


def test_writers_back_before_the_restore_is_permanent(backup: Path, tmp_path: Path) -> None:
    ticks = itertools.count(step=100)  # the fake's clock: the 10 s recheck is over at once
    platform = FakePlatform(replicas=2, clock=lambda: float(next(ticks)))
    err = _failure(_restore(backup, 16), _service(database=_database(tmp_path)),
                   platform=platform)
    assert type(err) is PermanentStepError
    assert str(err).startswith("writers are running again: 2 units of svc still stopping")
