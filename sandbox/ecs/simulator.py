"""Deployment simulator for moto's ECS backend: ``update_service`` starts a real PRIMARY
deployment, and a stepping thread moves tasks from old deployments to it over time.
"""

# moto only records the new taskDefinition and jumps runningCount to desiredCount at once;
# real ECS keeps the old deployment ACTIVE while it starts new tasks and drains old ones,
# which is exactly what the ServicesStable waiter looks at. We wrap the backend instance's
# ``update_service`` (in-process, under a lock) and step every ``step_interval`` seconds,
# moving at most ``tasks_per_step`` tasks per deployment. Lists are replaced, never grown
# in place, so the server thread serialising a response never sees a half-made state.

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

MAX_EVENTS = 100


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


class DeploymentSimulator:
    """Makes a moto ECS backend's services converge like ECS's scheduler (rolling update,
    minimumHealthyPercent 100 / maximumPercent 200). ``pause()`` freezes every service."""

    def __init__(self, backend: Callable[[], Any], *, step_interval: float = 0.05,
                 tasks_per_step: int = 1) -> None:
        self._backend = backend
        self.step_interval = step_interval
        self.tasks_per_step = tasks_per_step
        self._lock = threading.RLock()
        self._paused = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.steps = 0

    # ------------------------------------------------------------------ lifecycle
    def install(self) -> None:
        """Wrap the (current) backend instance's ``update_service``; call again after reset."""
        backend = self._backend()
        if getattr(backend.update_service, "_simulated", False):
            return
        original = backend.update_service

        def update_service(props: dict[str, Any]) -> Any:
            with self._lock:
                try:
                    service = backend._get_service(props.get("cluster", "default"),
                                                   str(props.get("service", "")).split("/")[-1])
                except Exception:  # let moto raise its own, wire-faithful error
                    return original(props)
                running = service.running_count
                result = original(props)
                self._after_update(result, running)
                return result

        update_service._simulated = True  # type: ignore[attr-defined]
        backend.update_service = update_service

    def start(self) -> None:
        self.install()
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="ecs-simulator", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def pause(self) -> None:
        self._paused.set()

    def resume(self) -> None:
        self._paused.clear()

    @property
    def paused(self) -> bool:
        return self._paused.is_set()

    def settle(self, *, max_steps: int = 10_000) -> None:
        """Step until every service is stable (used by seeding, ignores ``pause``)."""
        for _ in range(max_steps):
            if not self.step(force=True):
                return
        raise RuntimeError("ECS simulator did not settle")

    def _run(self) -> None:
        while not self._stop.wait(self.step_interval):
            if not self._paused.is_set():
                self.step()

    # ------------------------------------------------------------------- model
    def _after_update(self, service: Any, running_before: int) -> None:
        service.running_count = running_before  # moto jumps straight to desiredCount
        deployments = list(service.deployments or [])
        primary = deployments[0] if deployments else None
        if primary is None or primary.get("taskDefinition") != service.task_definition:
            new = self._deployment(service)
            olds = []
            for dep in deployments:
                old = dict(dep, status="ACTIVE", desiredCount=dep.get("runningCount", 0),
                           updatedAt=_now())
                olds.append(old)
            service.deployments = [new, *olds]
            self._event(service, f"(service {service.name}) has started a deployment "
                                 f"{new['id']} ({service.task_definition.rsplit('/', 1)[-1]}).")
        else:
            primary["desiredCount"] = service.desired_count
            if primary.get("runningCount", 0) != service.desired_count:
                primary["rolloutState"] = "IN_PROGRESS"
        service.pending_count = max(service.desired_count - service.running_count, 0)

    def _deployment(self, service: Any) -> dict[str, Any]:
        dep_id = f"ecs-svc/{uuid.uuid4().int % 10**19:019d}"
        now = _now()
        return {"id": dep_id, "status": "PRIMARY", "taskDefinition": service.task_definition,
                "desiredCount": service.desired_count, "pendingCount": 0, "runningCount": 0,
                "failedTasks": 0, "createdAt": now, "updatedAt": now,
                "launchType": service.launch_type, "rolloutState": "IN_PROGRESS",
                "rolloutStateReason": f"ECS deployment {dep_id} in progress."}

    def _event(self, service: Any, message: str) -> None:
        event = {"id": str(uuid.uuid4()), "createdAt": _now(), "message": message}
        service.events = [event, *service.events][:MAX_EVENTS]

    def step(self, *, force: bool = False) -> bool:
        """One scheduler tick for every service; returns whether anything changed."""
        if self._paused.is_set() and not force:
            return False
        changed = False
        with self._lock:
            backend = self._backend()
            for service in list(backend.services.values()):
                if service.status != "ACTIVE" or not service.deployments:
                    continue
                changed = self._step_service(service) or changed
            self.steps += 1
        return changed

    def _step_service(self, service: Any) -> bool:
        k = max(self.tasks_per_step, 1)
        deployments = [dict(d) for d in service.deployments]
        primary, olds = deployments[0], deployments[1:]
        desired = service.desired_count
        before = [(d["status"], d.get("runningCount", 0)) for d in service.deployments]
        started = stopped = 0
        running = primary.get("runningCount", 0)
        if running < desired:
            started = min(k, desired - running)
        elif running > desired:
            stopped = min(k, running - desired)
        primary["runningCount"] = running + started - stopped
        primary["desiredCount"] = desired
        budget = k
        for old in olds:  # drain the oldest first once new tasks are up
            take = min(budget, old.get("runningCount", 0))
            old["runningCount"] = old.get("runningCount", 0) - take
            old["desiredCount"] = old["runningCount"]
            budget -= take
        remaining = [d for d in olds if d.get("runningCount", 0) > 0]
        new_list = [primary, *remaining]
        after = [(d["status"], d.get("runningCount", 0)) for d in new_list]
        if after == before:
            if primary.get("rolloutState") != "COMPLETED" and not remaining:
                self._complete(service, primary)
            return False
        now = _now()
        primary["updatedAt"] = now
        primary["pendingCount"] = max(desired - primary["runningCount"], 0)
        if started:
            self._event(service, f"(service {service.name}) has started {started} tasks.")
        if stopped:
            self._event(service, f"(service {service.name}) has stopped {stopped} "
                                 "running tasks.")
        service.deployments = new_list
        service.running_count = sum(d.get("runningCount", 0) for d in new_list)
        service.pending_count = primary["pendingCount"]
        return True

    def _complete(self, service: Any, primary: dict[str, Any]) -> None:
        done = dict(primary, rolloutState="COMPLETED",
                    rolloutStateReason=f"ECS deployment {primary['id']} completed.")
        service.deployments = [done]
        self._event(service, f"(service {service.name}) (deployment {primary['id']}) "
                             "deployment completed.")
        self._event(service, f"(service {service.name}) has reached a steady state.")
