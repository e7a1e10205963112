"""What the plan's steps do (``bot.execution.steps``), without a database: the waits each
service's platform block sets, progress lines without repeats, what ``wait_rollout``
accepts as finished, the replica count that scale-down journals and scale-up restores, the
fenced app rollback, and the known-good configuration only as pinned. Steps run against
the fake platform or a stand-in that records what it was asked."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from bot.domain.config import ServiceConfig, parse_config
from bot.domain.lifecycle import State
from bot.domain.models import Rollback, Step
from bot.execution import steps
from bot.execution.errors import PermanentStepError, TemporaryStepError
from bot.execution.steps import StepContext
from platforms.base import (
    ConfigSnapshot,
    Revision,
    RolloutStatus,
    RunningCheck,
    Target,
    TargetChanged,
)
from platforms.registry import PRODUCTION
from sandbox.fake_platform import FakePlatform

T0 = datetime(2026, 11, 29, 3, 0, tzinfo=UTC)
TARGET = Target("fake", "production", "svc")
CURRENT = Revision("rs-3", 3, ("registry.example/app:v1.3.0",), current=True)
PINNED = Revision("rs-2", 2, ("registry.example/app:v1.2.0",))


class Recorder:
    """A platform stand-in for the waits: records the timeouts it is given and replays
    ``progress`` through the step's callback before answering ``status``."""

    def __init__(self, status: RolloutStatus, *, running: RunningCheck | None = None,
                 progress: tuple[str, ...] = ()) -> None:
        self.status = status
        self.running = running or RunningCheck(True, "rs-2 (app:v1.2.0)")
        self.progress = progress
        self.waits: list[tuple[str, float]] = []
        self.scaled: list[int] = []

    def _wait(self, kind: str, timeout: float, on_progress: Any) -> RolloutStatus:
        self.waits.append((kind, timeout))
        for line in self.progress:
            on_progress(line)
        return self.status

    def wait_for_rollout(self, target: Target, *, timeout: float,
                         on_progress: Any = None) -> RolloutStatus:
        return self._wait("rollout", timeout, on_progress)

    def wait_for_stopped(self, target: Target, *, timeout: float,
                         on_progress: Any = None) -> RolloutStatus:
        return self._wait("stop", timeout, on_progress)

    def confirm_running(self, target: Target, revision: Revision) -> RunningCheck:
        return self.running

    def get_replicas(self, target: Target) -> int:
        return 4

    def scale(self, target: Target, replicas: int) -> None:
        self.scaled.append(replicas)


def _service(**kubernetes: Any) -> ServiceConfig:
    block = {"namespace": "prod", "deployment": "svc", **kubernetes}
    return parse_config({"services": {"svc": {"kubernetes": block}}},
                        platforms=PRODUCTION).services["svc"]


def _step(kind: str, seq: int = 1, *, params: dict[str, Any] | None = None,
          result: dict[str, Any] | None = None) -> Step:
    return Step(rollback_id=7, seq=seq, kind=kind, description=kind, destructive=False,
                status="started", attempts=1, params=params or {}, result=result or {},
                error=None, started_at=T0, finished_at=None)


def _rollback(**kw: Any) -> Rollback:
    base: dict[str, Any] = dict(
        id=7, service="svc", platform="kubernetes", severity="P0", policy_mode="immediate",
        scope=["app"], reason="5xx", state=State.EXECUTING, requester="U1", channel_id="C1",
        channel_name="inc-svc", message_ts="1.1", thread_ts="1.1", current_revision=CURRENT,
        target_revision=PINNED, target=TARGET, checklist={}, assessment={}, approver="U2",
        break_glass=False, incident_commander=None, incident_started_at=None, created_at=T0,
        updated_at=T0, expires_at=None, approved_at=T0, finished_at=None, last_error=None)
    base.update(kw)
    return Rollback(**base)


class Run:
    """One handler call's context, with what it journaled and said."""

    def __init__(self, step: Step, platform: Any, *, service: ServiceConfig | None = None,
                 all_steps: list[Step] | None = None, **kw: Any) -> None:
        self.journaled: list[dict[str, Any]] = []
        self.lines: list[str] = []
        self.ctx = StepContext(
            rollback=kw.pop("rollback", None) or _rollback(), step=step,
            service=service or _service(), platform=platform,
            all_steps=all_steps if all_steps is not None else [step],
            journal=self.journaled.append, progress=self.lines.append,
            known_good_config=kw.pop("known_good_config", None),
            known_good_recorded_at=kw.pop("known_good_recorded_at", None), now=T0)

    def __call__(self) -> dict[str, Any]:
        return steps.HANDLERS[self.ctx.step.kind](self.ctx)


# ------------------------------------------------------------------ the waits' timeouts
@pytest.mark.parametrize(("block", "rollout", "stop"), [
    ({}, 600.0, 300.0),  # the platform block's defaults
    ({"rollout_timeout_seconds": 42, "stop_timeout_seconds": 7}, 42.0, 7.0),
])
def test_each_wait_takes_its_timeout_from_the_services_platform_block(
        block: dict[str, Any], rollout: float, stop: float) -> None:
    platform = Recorder(RolloutStatus(True, "done"))
    Run(_step("wait_rollout"), platform, service=_service(**block))()
    Run(_step("scale_down"), platform, service=_service(**block))()
    assert platform.waits == [("rollout", rollout), ("stop", stop)]


def test_an_unfinished_rollout_is_transient_and_says_how_long_it_waited() -> None:
    platform = Recorder(RolloutStatus(False, "2 of 4 updated"))
    with pytest.raises(TemporaryStepError) as err:
        Run(_step("wait_rollout"), platform, service=_service(rollout_timeout_seconds=90))()
    assert str(err.value) == "rollout not finished after 90s: 2 of 4 updated"


def test_a_failed_rollout_is_permanent() -> None:
    platform = Recorder(RolloutStatus(False, "exceeded its progress deadline", failed=True))
    with pytest.raises(PermanentStepError, match="exceeded its progress deadline"):
        Run(_step("wait_rollout"), platform)()


def test_a_settled_rollout_must_run_the_pinned_revision() -> None:
    other = RunningCheck(False, "rs-3 (app:v1.3.0)", "circuit breaker reverted")
    platform = Recorder(RolloutStatus(True, "successfully rolled out"), running=other)
    with pytest.raises(PermanentStepError) as err:
        Run(_step("wait_rollout"), platform)()
    assert str(err.value) == (f"the rollout settled, but the pinned {PINNED.label()} is not "
                              "what runs: rs-3 (app:v1.3.0) (circuit breaker reverted)")


def test_a_confirmed_rollout_reports_what_runs() -> None:
    platform = Recorder(RolloutStatus(True, "successfully rolled out"))
    assert Run(_step("wait_rollout"), platform)() == {
        "message": "successfully rolled out", "running": "rs-2 (app:v1.2.0)"}


def test_progress_reaches_the_thread_only_when_it_changes() -> None:
    platform = Recorder(RolloutStatus(True, "done"),
                        progress=("1 of 3", "1 of 3", "1 of 3", "2 of 3", "2 of 3", "1 of 3"))
    run = Run(_step("wait_rollout"), platform)
    run()
    assert run.lines == ["1 of 3", "2 of 3", "1 of 3"]


# ------------------------------------------------------------------ scale down and up
def test_scale_down_journals_the_count_before_scaling_and_waits_until_stopped() -> None:
    fake = FakePlatform(replicas=4)
    run = Run(_step("scale_down"), fake)
    result = run()
    assert run.journaled == [{"before": 4}]
    assert result["before"] == 4 and result["after"] == 0
    assert fake.get_replicas(TARGET) == 0 and fake.running_units(TARGET) == 0


def test_a_resumed_scale_down_keeps_the_journaled_count() -> None:
    """Re-run after a crash with the service already at 0: the journal, not the platform,
    says what to come back to."""
    fake = FakePlatform(replicas=0)
    run = Run(_step("scale_down", result={"before": 5}), fake)
    assert run()["before"] == 5
    assert run.journaled == []


def test_scale_down_refuses_a_service_already_at_zero() -> None:
    fake = FakePlatform(replicas=0)
    run = Run(_step("scale_down"), fake)
    with pytest.raises(PermanentStepError, match="already runs 0 replicas"):
        run()
    assert run.journaled == [] and fake.mutations() == {}


def test_a_service_that_does_not_stop_fails_the_step() -> None:
    platform = Recorder(RolloutStatus(False, "1 pod still terminating"))
    with pytest.raises(PermanentStepError) as err:
        Run(_step("scale_down"), platform, service=_service(stop_timeout_seconds=5))()
    assert str(err.value) == "still running 5s after scaling to 0: 1 pod still terminating"


def test_scale_up_restores_what_scale_down_recorded() -> None:
    fake = FakePlatform(replicas=0)
    down = _step("scale_down", 1, result={"before": 4, "after": 0})
    up = _step("scale_up", 2)
    assert Run(up, fake, all_steps=[down, up])() == {"replicas": 4}
    assert fake.get_replicas(TARGET) == 4


@pytest.mark.parametrize("recorded", [None, {}])
def test_scale_up_never_guesses_a_count(recorded: dict[str, Any] | None) -> None:
    up = _step("scale_up", 2)
    others = [] if recorded is None else [_step("scale_down", 1, result=recorded)]
    with pytest.raises(PermanentStepError, match="refusing to guess"):
        Run(up, FakePlatform(), all_steps=[*others, up])()


def test_a_missing_pinned_backup_stops_nothing() -> None:
    fake = FakePlatform(replicas=3)
    restore = _step("restore_db", 3, params={"backup_path": "/nowhere/svc.dump",
                                             "backup_size": 10})
    down = _step("scale_down", 1)
    with pytest.raises(PermanentStepError, match="svc.dump is not readable"):
        Run(down, fake, all_steps=[down, restore])()
    assert fake.get_replicas(TARGET) == 3 and fake.mutations() == {}


# ------------------------------------------------------------------ app rollback
def test_the_app_rollback_applies_the_pinned_revision_once() -> None:
    fake = FakePlatform()
    step = _step("app_rollback", params={"revision": PINNED.to_dict()})
    assert Run(step, fake)()["changed"] is True
    assert fake.current_revision(TARGET).id == "rs-2"
    again = Run(step, fake, rollback=_rollback(current_revision=fake.current_revision(TARGET)))
    assert again()["changed"] is False  # a resumed step finds it done
    assert fake.mutations()["rollback_to"] == 1


def test_the_app_rollback_is_fenced_on_what_the_plan_moves_away_from() -> None:
    fake = FakePlatform()
    fake.deploy(TARGET, "registry.example/app:v1.4.1", change_cause="hotfix")
    step = _step("app_rollback", params={"revision": PINNED.to_dict()})
    with pytest.raises(TargetChanged):
        Run(step, fake)()
    assert fake.current_revision(TARGET).images == ("registry.example/app:v1.4.1",)


# ------------------------------------------------------------------ configuration
def test_restore_config_without_a_pinned_known_good_is_skipped() -> None:
    fake = FakePlatform()
    result = Run(_step("restore_config"), fake)()
    assert "skipped" in result and "no known-good configuration" in result["skipped"]
    assert fake.mutations() == {}


def test_restore_config_refuses_a_known_good_that_changed_since_the_plan() -> None:
    fake = FakePlatform()
    step = _step("restore_config", params={"known_good_recorded_at": T0.isoformat()})
    good = ConfigSnapshot(items={"configmap/app-config": {"data": {"MODE": "good"}}})
    later = datetime(2026, 11, 29, 4, 0, tzinfo=UTC)
    with pytest.raises(PermanentStepError, match="changed since the plan was made"):
        Run(step, fake, known_good_config=good, known_good_recorded_at=later)()
    assert fake.mutations() == {}
    result = Run(step, fake, known_good_config=good, known_good_recorded_at=T0)()
    assert result == {"changed": True, "objects": ["configmap/app-config"]}
    assert fake.snapshot_config(TARGET).items == good.items
