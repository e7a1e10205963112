"""Service tasks for the ECS simulator: moto ``Task`` objects whose ``lastStatus`` the
simulator drives (start, fail to start, stop over time) instead of moto's describe counter.
"""

# Why a subclass: moto's Task is a ManagedState that advances RUNNING -> DEACTIVATING ->
# STOPPING -> DEPROVISIONING -> STOPPED by one state per DescribeTasks call ("ecs::task" is
# registered as manual/times=1 in moto/moto_api/__init__.py; transitions in
# moto/ecs/models.py Task.__init__), whatever the task's desiredStatus: a healthy service's
# task would stop because someone looked at it. ``ServiceTask`` keeps moto's wire shape (the
# response serializer reads the same attributes) but takes lastStatus from the simulator.
#
# The states follow the AWS ECS developer guide "Task lifecycle" (task-lifecycle.html):
# PROVISIONING -> PENDING -> ACTIVATING -> RUNNING on the way up, and once the scheduler sets
# desiredStatus STOPPED: DEACTIVATING -> STOPPING -> DEPROVISIONING -> STOPPED. A real task
# spends up to the container ``stopTimeout`` (30 s by default) between SIGTERM and SIGKILL;
# here the whole way down takes ``stop_time`` seconds, split over the three phases below.

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from moto.ecs.models import Task

# (phase, fraction of stop_time after which the task leaves it)
STOP_PHASES = (("DEACTIVATING", 0.25), ("STOPPING", 0.75), ("DEPROVISIONING", 1.0))
STARTING = ("PROVISIONING", "PENDING", "ACTIVATING")
LIVE = frozenset({*STARTING, "RUNNING", *(phase for phase, _ in STOP_PHASES)})

# stopCode values come from botocore's ECS model (shape TaskStopCode in
# data/ecs/2014-11-13/service-2.json); the reasons are worded like the console shows them.
FAILED_TO_START = "TaskFailedToStart"
SCHEDULER_STOP = "ServiceSchedulerInitiated"
CONTAINER_EXITED = "EssentialContainerExited"
# The stoppedReason ECS gives when an essential container exits (developer guide, "Amazon ECS
# stopped tasks error messages", stopped-task-error-codes.html).
EXITED_REASON = "Essential container in task exited"
DEFAULT_PULL_FAILURE = ("CannotPullContainerError: pull image manifest has been retried 1 "
                        "time(s): failed to resolve ref {image}: not found")


@dataclass(frozen=True)
class TaskFault:
    """How a task fails to start. ``pull``: its image cannot be pulled (stopCode
    TaskFailedToStart, the container's ``reason`` is the error and it has no exit code: it
    never ran). ``exit``: the essential container starts, writes ``logs`` and exits with
    ``exit_code`` before the task is RUNNING (stopCode EssentialContainerExited, stoppedReason
    "Essential container in task exited"). Both count as failed tasks: "the task doesn't
    transition to a RUNNING state" (botocore service-2.json, Deployment.failedTasks)."""

    kind: str = "pull"  # "pull" (or anything else before the container starts) or "exit"
    reason: str = ""  # stoppedReason for "pull" (default: CannotPullContainerError)
    exit_code: int = 1
    logs: tuple[str, ...] = ()


def now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


class ServiceTask(Task):
    """A task started by a service deployment: ``startedBy`` is the deployment id and
    ``group`` is ``service:<name>``, as botocore's Task shape documents for service tasks."""

    def __init__(self, *, backend: Any, cluster: Any, task_definition: Any, service: Any,
                 deployment_id: str) -> None:
        network = getattr(service, "network_configuration", None) or None
        super().__init__(cluster, task_definition, None, None, backend,
                         group=f"service:{service.name}",
                         launch_type=service.launch_type or "",
                         started_by=deployment_id, networking_configuration=network)
        self._sim_status = "PROVISIONING"
        self.service_arn: str = service.arn
        self.deployment_id = deployment_id
        self.created_at = now()
        self.started_at: datetime | None = None
        self.stopping_at: datetime | None = None
        self.stopped_at: datetime | None = None
        self.stop_code: str | None = None
        self.stop_started: float | None = None  # monotonic time desiredStatus went STOPPED
        # A container that ignores SIGTERM is killed once its stopTimeout is over: the stop
        # takes that long and the exit code is 137 (128 + SIGKILL), see ``ignore_sigterm``.
        self.stop_time: float | None = None
        self.stop_exit_code = 0
        self.container_definitions: list[dict[str, Any]] = list(
            task_definition.container_definitions or [])
        for container in self.containers:
            container.last_status = "PENDING"

    # moto's ManagedState would advance on every DescribeTasks; the simulator decides instead.
    @property  # type: ignore[override]
    def last_status(self) -> str:
        return self._sim_status

    @last_status.setter
    def last_status(self, value: str) -> None:
        self._sim_status = value

    def advance(self) -> None:
        return None

    # ------------------------------------------------------------------ transitions
    @property
    def live(self) -> bool:
        return self._sim_status in LIVE

    @property
    def wanted(self) -> bool:
        """Still desired RUNNING by the scheduler."""
        return bool(self.desired_status == "RUNNING")

    def set_status(self, status: str) -> None:
        self._sim_status = status
        for container in self.containers:
            container.last_status = status if status in ("PENDING", "RUNNING", "STOPPED") \
                else container.last_status

    def run(self) -> None:
        self.set_status("RUNNING")
        self.started_at = now()

    def fail_to_start(self, fault: TaskFault) -> None:
        """Stopped before RUNNING: counts toward the deployment's ``failedTasks``."""
        self.desired_status = "STOPPED"
        self.stopping_at = self.stopped_at = now()
        if fault.kind == "exit":
            self.stop_code, self.stopped_reason = CONTAINER_EXITED, EXITED_REASON
            for container in self.containers:
                container.exitCode = fault.exit_code
                container.reason = None
        else:
            image = self.containers[0].image if self.containers else "?"
            self.stop_code = FAILED_TO_START
            self.stopped_reason = fault.reason or DEFAULT_PULL_FAILURE.format(image=image)
            for container in self.containers:
                container.exitCode = None  # never ran: no exit code
                container.reason = self.stopped_reason
        self.set_status("STOPPED")

    def begin_stop(self, reason: str, at: float) -> None:
        """The scheduler sets desiredStatus STOPPED; lastStatus follows over ``stop_time``."""
        if not self.wanted:
            return
        self.desired_status = "STOPPED"
        self.stop_code = SCHEDULER_STOP
        self.stopped_reason = reason
        self.stopping_at = now()
        self.stop_started = at
        if self._sim_status in STARTING:  # never ran: nothing to drain
            self.stopped_at = self.stopping_at
            self.set_status("STOPPED")
        else:
            self.set_status(STOP_PHASES[0][0])

    def progress_stop(self, at: float, stop_time: float, *, instant: bool = False) -> bool:
        """Move along the stop phases; returns whether lastStatus changed."""
        if self.wanted or self._sim_status == "STOPPED" or self.stop_started is None:
            return False
        stop_time = self.stop_time if self.stop_time is not None else stop_time
        elapsed = at - self.stop_started
        status = "STOPPED"
        if not instant and stop_time > 0:
            for phase, until in STOP_PHASES:
                if elapsed < stop_time * until:
                    status = phase
                    break
        if status == self._sim_status:
            return False
        self.set_status(status)
        if status == "STOPPED":
            self.stopped_at = now()
            for container in self.containers:
                container.exitCode = self.stop_exit_code
        return True
