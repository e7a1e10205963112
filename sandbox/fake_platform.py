"""A scriptable in-memory platform for unit and crash tests: history, rollout time, faults.

Development only: production's registry (``platforms.registry.PRODUCTION``) does not know
``fake``. The sandbox and the tests register ``SPEC`` in their own registry
(``sandbox.config.PLATFORMS``), which lets a config carry a ``fake:`` block.

State can optionally live in a JSON file (``state_file``) guarded by ``fcntl`` locks, so a
bot process that is SIGKILLed and restarted sees the same "cluster" and the test can
count every mutation across processes. ``mutations`` counts only real changes: an
idempotent re-apply that finds the pinned revision already running counts nothing.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from platforms.base import (
    Capability,
    ConfigDifference,
    ConfigSnapshot,
    Platform,
    PlatformSpec,
    ProgressCallback,
    ResourceUsage,
    Revision,
    RevisionDetail,
    RevisionNotFound,
    RollbackResult,
    RolloutStatus,
    RunningCheck,
    SecretReader,
    Target,
    TargetNotFound,
    TransientPlatformError,
    Unsupported,
    basic_detail,
    mask_value,
    refuse_if_changed,
)


@dataclass
class Fault:
    """Raise ``error`` on the next ``times`` calls of ``method``; with ``hold``, each of
    those calls first hangs until the event is set (an API that does not answer, then
    times out), holding the state lock: the platform's other calls wait too."""

    method: str
    error: Exception
    times: int = 1
    hold: threading.Event | None = None


def _revision_env(n: int) -> dict[str, Any]:
    """Each scripted revision's configuration, so the plan's configuration view has
    something to show: a literal that changes, a credential-like literal (masked when
    shown) and a secret reference (shown as the reference, never resolved)."""
    return {"env": {"LOG_LEVEL": "debug" if n % 2 else "info", "RELEASE": f"v1.{n}.0",
                    "API_KEY": f"fake-key-{n}"},
            "secret_refs": {"DB_PASSWORD": f"vault:secret/app/db#v{n}"}}


def _initial_state(revisions: int, replicas: int) -> dict[str, Any]:
    history = [
        {"id": f"rs-{n}", "number": n, "images": [f"registry.example/app:v1.{n}.0"],
         "change_cause": f"deploy v1.{n}.0", **_revision_env(n)}
        for n in range(1, revisions + 1)
    ]
    return {
        "targets": {},
        "default": {
            "history": history,
            "current": history[-1]["id"] if history else None,
            "replicas": replicas,
            "config": {"configmap/app-config": {"data": {"MODE": "bad"}}},
            "logs": [f"log line {i}" for i in range(150)],
        },
        "calls": {},
        "mutations": {},
        "mutation_log": [],
    }


class FakePlatform:
    """Implements ``platforms.base.Platform`` against a dict (optionally file-backed)."""

    def __init__(
        self,
        *,
        name: str = "fake",
        revisions: int = 3,
        replicas: int = 3,
        rollout_seconds: float = 0.0,
        stop_seconds: float = 0.0,
        state_file: str | Path | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self.rollout_seconds = rollout_seconds
        # Units keep running this long after a scale-down is accepted (a pod's termination
        # grace period): wait_for_stopped must see them go.
        self.stop_seconds = stop_seconds
        self._stopping_until: dict[str, float] = {}
        self.faults: list[Fault] = []
        self._clock = clock
        self._lock = threading.RLock()
        self._path = Path(state_file) if state_file else None
        self._rollout_started: dict[str, float] = {}
        # Called inside a mutation, after it is applied (crash tests kill the process here).
        self.after_mutation: Callable[[str], None] | None = None
        if self._path and self._path.exists():
            self._mem: dict[str, Any] | None = None
        else:
            self._mem = _initial_state(revisions, replicas)
            if self._path:
                self._path.write_text(json.dumps(self._mem))
                self._mem = None

    # ------------------------------------------------------------------ state access
    @contextlib.contextmanager
    def _state(self) -> Iterator[dict[str, Any]]:
        with self._lock:
            if self._path is None:
                assert self._mem is not None
                yield self._mem
                return
            with open(self._path, "r+") as fh:
                fcntl.flock(fh, fcntl.LOCK_EX)
                state = json.load(fh)
                yield state
                fh.seek(0)
                fh.truncate()
                json.dump(state, fh)
                fh.flush()
                os.fsync(fh.fileno())

    def _target(self, state: dict[str, Any], target: Target) -> dict[str, Any]:
        key = f"{target.scope}/{target.name}"
        if key not in state["targets"]:
            if target.name.startswith("missing"):
                raise TargetNotFound(f"{target.describe()} not found")
            state["targets"][key] = json.loads(json.dumps(state["default"]))
        t: dict[str, Any] = state["targets"][key]
        return t

    def _call(self, method: str, state: dict[str, Any]) -> None:
        state["calls"][method] = state["calls"].get(method, 0) + 1
        for fault in self.faults:
            if fault.method == method and fault.times > 0:
                fault.times -= 1
                if fault.hold is not None:
                    fault.hold.wait()
                raise fault.error

    def _mutated(self, state: dict[str, Any], method: str, detail: str) -> None:
        state["mutations"][method] = state["mutations"].get(method, 0) + 1
        state["mutation_log"].append(f"{method}:{detail}")

    # ------------------------------------------------------------------ scripting
    def inject(self, method: str, error: Exception, *, times: int = 1,
               hold: threading.Event | None = None) -> None:
        self.faults.append(Fault(method, error, times, hold))

    def calls(self) -> Counter[str]:
        with self._state() as s:
            return Counter(s["calls"])

    def mutations(self) -> Counter[str]:
        with self._state() as s:
            return Counter(s["mutations"])

    def mutation_log(self) -> list[str]:
        with self._state() as s:
            return list(s["mutation_log"])

    def deploy(self, target: Target, image: str, *, change_cause: str | None = None,
               env: dict[str, str] | None = None,
               secret_refs: dict[str, str] | None = None) -> Revision:
        """Simulate a new (possibly bad) deployment becoming current. Like a deploy that
        changes only the image, it keeps the running revision's configuration unless
        ``env``/``secret_refs`` replace it (they feed the configuration view)."""
        with self._state() as s:
            t = self._target(s, target)
            number = max((r["number"] for r in t["history"]), default=0) + 1
            rev: dict[str, Any] = {"id": f"rs-{number}", "number": number, "images": [image],
                                   "change_cause": change_cause}
            running = next((r for r in t["history"] if r["id"] == t["current"]), {})
            for key, given in (("env", env), ("secret_refs", secret_refs)):
                value = given if given is not None else running.get(key)
                if value is not None:
                    rev[key] = dict(value)
            t["history"].append(rev)
            t["current"] = rev["id"]
        return self.current_revision(target)

    # ------------------------------------------------------------------ Platform
    def history(self, target: Target) -> list[Revision]:
        with self._state() as s:
            self._call("history", s)
            t = self._target(s, target)
            return [
                Revision(id=r["id"], number=r["number"], images=tuple(r["images"]),
                         change_cause=r.get("change_cause"), current=r["id"] == t["current"])
                for r in sorted(t["history"], key=lambda r: -r["number"])
            ]

    def current_revision(self, target: Target) -> Revision:
        for rev in self.history(target):
            if rev.current:
                return rev
        raise RevisionNotFound(f"{target.describe()} has no current revision")

    def rollback_to(
        self, target: Target, revision: Revision, *, dry_run: bool = False,
        expected: Revision | None = None,
    ) -> RollbackResult:
        with self._state() as s:
            self._call("rollback_to", s)
            t = self._target(s, target)
            match = [r for r in t["history"] if r["id"] == revision.id]
            if not match:
                raise RevisionNotFound(f"revision {revision.id} not in history")
            running = next((r for r in t["history"] if r["id"] == t["current"]), None)
            refuse_if_changed(target, running_id=t["current"], revision=revision,
                              expected=expected,
                              running_label=f"revision {running['number']} ({t['current']})"
                              if running else str(t["current"]))
            if t["current"] == revision.id:
                return RollbackResult(False, f"skipped rollback (already at {revision.label()})")
            if dry_run:
                return RollbackResult(True, f"{target.name} rolled back (dry run)")
            # Like Kubernetes: the reused revision is renumbered to max+1.
            match[0]["number"] = max(r["number"] for r in t["history"]) + 1
            t["current"] = revision.id
            self._mutated(s, "rollback_to", revision.id)
            self._rollout_started[target.describe()] = self._clock()
        self._after("rollback_to")
        return RollbackResult(True, f"{target.name} rolled back")

    def rollout_status(self, target: Target) -> RolloutStatus:
        with self._state() as s:
            self._call("rollout_status", s)
            self._target(s, target)
        started = self._rollout_started.get(target.describe())
        if started is not None and self._clock() - started < self.rollout_seconds:
            return RolloutStatus(False, f"Waiting for {target.name} rollout to finish")
        return RolloutStatus(True, f"{target.name} successfully rolled out")

    def wait_for_rollout(
        self, target: Target, *, timeout: float, on_progress: ProgressCallback | None = None
    ) -> RolloutStatus:
        deadline = self._clock() + timeout
        status = self.rollout_status(target)
        while not status.done and self._clock() < deadline:
            if on_progress:
                on_progress(status.message)
            time.sleep(min(0.05, self.rollout_seconds))
            status = self.rollout_status(target)
        return status

    def get_replicas(self, target: Target) -> int:
        with self._state() as s:
            self._call("get_replicas", s)
            return int(self._target(s, target)["replicas"])

    def scale(self, target: Target, replicas: int) -> None:
        with self._state() as s:
            self._call("scale", s)
            t = self._target(s, target)
            if t["replicas"] == replicas:
                return
            if replicas == 0:
                t["stopping_from"] = t["replicas"]
                s.setdefault("stopped_at", {}).pop(target.describe(), None)
                self._stopping_until[target.describe()] = self._clock() + self.stop_seconds
            t["replicas"] = replicas
            self._mutated(s, "scale", str(replicas))
        self._after("scale")

    def wait_for_stopped(
        self, target: Target, *, timeout: float, on_progress: ProgressCallback | None = None
    ) -> RolloutStatus:
        deadline = self._clock() + timeout
        while True:
            running = self.running_units(target)
            if running == 0:
                with self._state() as s:
                    self._call("wait_for_stopped", s)
                    # The first observation after the scale-down: when the last unit went.
                    s.setdefault("stopped_at", {}).setdefault(target.describe(), time.time())
                return RolloutStatus(True, f"{target.name}: no unit running")
            message = f"{running} units of {target.name} still stopping"
            if self._clock() >= deadline:
                return RolloutStatus(False, message)
            if on_progress:
                on_progress(message)
            time.sleep(min(0.05, max(0.001, self.stop_seconds / 10)))

    def running_units(self, target: Target) -> int:
        """Units still running: the replica count, or the old count while stopping."""
        with self._state() as s:
            t = self._target(s, target)
            replicas = int(t["replicas"])
            stopping = t.get("stopping_from", 0)
        until = self._stopping_until.get(target.describe())
        if replicas == 0 and until is not None and self._clock() < until:
            return int(stopping)
        return replicas

    def stopped_at(self, target: Target) -> float | None:
        """Wall-clock time at which wait_for_stopped saw the last unit gone."""
        with self._state() as s:
            value = s.get("stopped_at", {}).get(target.describe())
        return float(value) if value is not None else None

    def confirm_running(self, target: Target, revision: Revision) -> RunningCheck:
        with self._state() as s:
            self._call("confirm_running", s)
            t = self._target(s, target)
            running_id = t.get("running_override") or t["current"]
            rev = next((r for r in t["history"] if r["id"] == running_id), None)
        images = ", ".join(rev["images"]) if rev else "?"
        running = f"{running_id} ({images})"
        if running_id != revision.id:
            return RunningCheck(False, running, "another revision runs than the one pinned")
        return RunningCheck(True, running)

    def set_running_override(self, target: Target, revision_id: str | None) -> None:
        """Script a platform that settles on another revision than the one rolled to (an
        ECS circuit-breaker revert, another actor's edit): what actually runs."""
        with self._state() as s:
            self._target(s, target)["running_override"] = revision_id

    def logs_tail(self, target: Target, *, lines: int = 100) -> str:
        with self._state() as s:
            self._call("logs_tail", s)
            return "\n".join(self._target(s, target)["logs"][-lines:])

    def resource_usage(self, target: Target) -> list[ResourceUsage]:
        with self._state() as s:
            self._call("resource_usage", s)
            n = int(self._target(s, target)["replicas"])
        return [ResourceUsage(f"{target.name}-{i}", 120.0, 256.0) for i in range(n)]

    def snapshot_config(self, target: Target) -> ConfigSnapshot:
        with self._state() as s:
            self._call("snapshot_config", s)
            return ConfigSnapshot(items=json.loads(json.dumps(self._target(s, target)["config"])))

    def describe_revision(self, target: Target, number: int) -> RevisionDetail:
        """Revision ``number`` from the history, with its environment (literals masked
        with ``mask_value``) and secret references."""
        basic = basic_detail(self.history(target), number)
        with self._state() as s:
            self._call("describe_revision", s)
            raw = self._revision(self._target(s, target), basic.revision.id)
        lines = [basic.text]
        if "env" in raw:
            lines.append("Environment:")
            lines += [f"  {k}: {mask_value(k, v)}" for k, v in sorted(raw["env"].items())]
            lines += [f"  {k}: <secret ref {ref}>"
                      for k, ref in sorted(raw.get("secret_refs", {}).items())]
        return RevisionDetail(basic.revision, basic.fields, "\n".join(lines))

    def config_differences(self, target: Target, running: Revision,
                           pinned: Revision) -> list[ConfigDifference]:
        """Environment literals (masked) and secret references that differ; a revision
        deployed without recorded configuration makes the view ``Unsupported``."""
        with self._state() as s:
            self._call("config_differences", s)
            t = self._target(s, target)
            old, new = self._revision(t, running.id), self._revision(t, pinned.id)
        if "env" not in old or "env" not in new:
            raise Unsupported(self.name, Capability.CONFIG_VIEW,
                              "a revision was deployed without recorded configuration")
        out = []
        for kind, field_name, mask in (("env", "env", True), ("secret ref", "secret_refs", False)):
            a, b = old.get(field_name, {}), new.get(field_name, {})
            for key in sorted(set(a) | set(b)):
                if a.get(key) != b.get(key):
                    out.append(ConfigDifference(
                        kind, key, mask_value(key, a.get(key)) if mask else a.get(key),
                        mask_value(key, b.get(key)) if mask else b.get(key)))
        return out

    @staticmethod
    def _revision(t: dict[str, Any], revision_id: str) -> dict[str, Any]:
        found: dict[str, Any] | None = next(
            (r for r in t["history"] if r["id"] == revision_id), None)
        if found is None:
            raise RevisionNotFound(f"revision {revision_id} not in history")
        return found

    def restore_config(self, target: Target, snapshot: ConfigSnapshot) -> bool:
        with self._state() as s:
            self._call("restore_config", s)
            t = self._target(s, target)
            wanted = json.loads(json.dumps(snapshot.to_dict()["items"]))
            if t["config"] == wanted:
                return False
            t["config"] = wanted
            self._mutated(s, "restore_config", ",".join(sorted(wanted)))
        self._after("restore_config")
        return True

    def set_config(self, target: Target, items: dict[str, Any]) -> None:
        with self._state() as s:
            self._target(s, target)["config"] = items

    def _after(self, method: str) -> None:
        if self.after_mutation is not None:
            self.after_mutation(method)


class FakeTarget(BaseModel):
    """A service's ``fake:`` block: where the fake target lives and how the adapter built
    from it behaves (a shared ``state_file`` lets restarted bot processes see one state)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    scope: str = "default"
    name: str = "app"
    state_file: str | None = None
    rollout_seconds: float = 0
    revisions: int = 3
    rollout_timeout_seconds: float = 600
    stop_timeout_seconds: float = 300


def _target(block: FakeTarget) -> Target:
    return Target("fake", block.scope, block.name)


def _build(block: FakeTarget, secret: SecretReader) -> Platform:
    return FakePlatform(state_file=block.state_file, rollout_seconds=block.rollout_seconds,
                        revisions=block.revisions)


# Every capability, so the core's full paths run against it; no scale command of its own
# (the generic sentence is what the tests read).
SPEC: PlatformSpec[FakeTarget] = PlatformSpec(
    name="fake", config_model=FakeTarget, target=_target, build=_build,
    summary="the in-memory test platform (sandbox only)")

__all__ = ["SPEC", "FakePlatform", "FakeTarget", "Fault", "TransientPlatformError"]
