"""Deployment simulator for moto's ECS backend: ``update_service`` starts a real PRIMARY
deployment, and a stepping thread runs the service's tasks like ECS's scheduler would.
"""

# moto only records the new taskDefinition and jumps runningCount to desiredCount at once, and
# starts no task for a service at all. Real ECS keeps the old deployment ACTIVE while it starts
# new tasks and drains old ones (the ServicesStable waiter looks at exactly that), stops tasks
# over time, and fails deployments whose tasks do not start. We wrap the backend instance's
# ``update_service`` and ``list_tasks`` (in-process, under a lock) and step every
# ``step_interval`` seconds. Lists and dicts the server thread may be serialising are replaced,
# never changed in place, so a response never sees a half-made state.
#
# What is modelled, and where each behaviour comes from:
#   * Tasks (``ServiceTask``): startedBy = deployment id, group = service:<name> (botocore
#     data/ecs/2014-11-13/service-2.json, shape Task); lifecycle per the developer guide's
#     "Task lifecycle"; a stop takes ``stop_time`` seconds (container stopTimeout, 30 s default).
#   * Counts: a deployment's runningCount is "the number of tasks in the deployment that are in
#     the RUNNING status" and pendingCount those in PENDING (service-2.json, shape Deployment):
#     a task that is DEACTIVATING/STOPPING no longer counts as running, so runningCount reaches
#     0 while tasks are still stopping, and ServicesStable (waiters-2.json) already succeeds.
#   * Rolling update: minimumHealthyPercent 100 / maximumPercent 200 unless the service's
#     deploymentConfiguration says otherwise (shape DeploymentConfiguration); old tasks are
#     stopped only while enough RUNNING tasks remain; an ACTIVE deployment disappears once none
#     of its tasks is running or pending.
#   * Failed deployments: tasks of a task definition marked with ``fail_task_definition``
#     (image cannot be pulled: stopCode TaskFailedToStart, CannotPullContainerError, no exit
#     code), ``crash_task_definition`` (the essential container exits with an exit code before
#     RUNNING: stopCode EssentialContainerExited) or for which ``fault_hook`` returns a
#     ``TaskFault`` stop before RUNNING, and so does a task whose awslogs log group does not
#     exist (telemetry.py). Each raises the deployment's ``failedTasks`` ("A task is considered
#     a failure if ... the task doesn't transition to a RUNNING state", service-2.json,
#     Deployment.failedTasks; reset when a task reaches RUNNING: resetOnHealthyTask defaults
#     to true, shape DeploymentCircuitBreaker). Without the circuit breaker ECS keeps
#     launching replacements for ever, so the deployment stays IN_PROGRESS with the old one
#     still serving and ServicesStable never succeeds: it is the breaker that "determines whether
#     a service deployment will fail if the service can't reach a steady state" (service-2.json,
#     shape DeploymentCircuitBreaker).
#   * Telemetry (telemetry.py): RUNNING tasks write awslogs log events and the service's
#     CPUUtilization/MemoryUtilization go to CloudWatch, as ECS and its log driver do.
#   * Deployment circuit breaker (developer guide "How the Amazon ECS deployment circuit breaker
#     detects failures"; API reference ServiceDeploymentCircuitBreaker / ThresholdConfiguration):
#     with deploymentCircuitBreaker.enable the deployment goes rolloutState FAILED once
#     failedTasks reaches the threshold (BOUNDED_PERCENT 50 of desiredCount, at least 3 and at
#     most 200), rolloutStateReason "ECS deployment circuit breaker: tasks failed to start."
#     (the wording users report, e.g. aws/containers-roadmap#1488) and no new task is started.
#     With rollback=true "the service is rolled back to the last deployment that completed
#     successfully" (shape DeploymentCircuitBreaker): that deployment becomes PRIMARY again,
#     the failed one turns ACTIVE (rolloutState FAILED) and drains, and the service events read
#     "(deployment X) deployment failed: tasks failed to start." then "rolling back to
#     deployment Y." as ECS writes them. The reverted service then satisfies ServicesStable
#     while running the old task definition (aws-actions/amazon-ecs-deploy-task-definition#494).
#   * Service deployments and revisions (deployments.py): every deployment started here
#     (CreateService, an UpdateService with a new task definition) is reported to ``record``
#     with its sources, counts, completion, failure and circuit-breaker rollback, which
#     ListServiceDeployments / DescribeServiceDeployments / DescribeServiceRevisions serve.

from __future__ import annotations

import math
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC
from typing import Any

from .deployments import ServiceDeployments
from .tasks import ServiceTask, TaskFault, now
from .telemetry import Telemetry

MAX_EVENTS = 100
MAX_STOPPED_TASKS = 200  # ECS shows stopped tasks for at least an hour; keep a bounded tail
CIRCUIT_BREAKER_REASON = "ECS deployment circuit breaker: tasks failed to start."
FaultHook = Callable[[str, int], TaskFault | None]  # (task-definition ARN, attempt n) -> fault


def failure_threshold(desired: int, config: dict[str, Any] | None) -> int:
    """Circuit-breaker threshold: BOUNDED_PERCENT 50 (min 3, max 200) unless configured."""
    kind, value = "BOUNDED_PERCENT", 50
    if config:
        kind, value = str(config.get("type") or kind), int(config.get("value") or value)
    if kind == "COUNT":
        return max(value, 1)
    threshold = math.ceil(desired * value / 100)
    if kind == "UNBOUNDED_PERCENT":
        return max(threshold, 1)
    return min(max(threshold, 3), 200)


class DeploymentSimulator:
    """Makes a moto ECS backend's services behave like ECS's service scheduler.
    ``pause()`` freezes every service and task; ``stop_time`` and ``tasks_per_step`` may be
    changed at any time."""

    def __init__(self, backend: Callable[[], Any], *, step_interval: float = 0.05,
                 tasks_per_step: int = 1, stop_time: float = 0.3,
                 telemetry: Telemetry | None = None,
                 record: ServiceDeployments | None = None) -> None:
        self._backend = backend
        self.record = record if record is not None else ServiceDeployments()
        self.step_interval = step_interval
        self.tasks_per_step = tasks_per_step
        self.stop_time = stop_time
        self._lock = threading.RLock()
        self._paused = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._tasks: dict[str, list[ServiceTask]] = {}  # service ARN -> its tasks
        self._last_completed: dict[str, dict[str, Any]] = {}  # service ARN -> deployment
        self._failing: dict[str, TaskFault] = {}  # task-definition ARN -> how its tasks fail
        self._attempts: dict[str, int] = {}  # task-definition ARN -> tasks started so far
        self._stubborn: dict[str, float] = {}  # task-definition ARN -> stopTimeout (s)
        self.fault_hook: FaultHook | None = None
        self.telemetry = telemetry
        self.steps = 0

    # ------------------------------------------------------------------ lifecycle
    def install(self) -> None:
        """Wrap the (current) backend instance; call again after a backend reset."""
        backend = self._backend()
        if getattr(backend.update_service, "_simulated", False):
            return
        update, list_tasks = backend.update_service, backend.list_tasks

        def update_service(props: dict[str, Any]) -> Any:
            with self._lock:
                try:
                    backend._get_service(props.get("cluster", "default"),
                                         str(props.get("service", "")).split("/")[-1])
                except Exception:  # let moto raise its own, wire-faithful error
                    return update(props)
                result = update(props)
                self._after_update(result)
                return result

        def list_service_tasks(cluster_str: str | None = None,
                               container_instance: str | None = None,
                               family: str | None = None, started_by: str | None = None,
                               service_name: str | None = None,
                               desiredStatus: str | None = None) -> list[Any]:  # noqa: N803
            # ListTasks filters by serviceName and defaults desiredStatus to RUNNING
            # (service-2.json, ListTasksRequest); moto ignores the one and not the other.
            with self._lock:
                found = list_tasks(cluster_str, container_instance, family, started_by,
                                   None, desiredStatus or "RUNNING")
            if service_name:
                group = f"service:{service_name.split('/')[-1]}"
                found = [t for t in found if getattr(t, "group", None) == group]
            return list(found)

        create = backend.create_service

        def create_service(*args: Any, **kwargs: Any) -> Any:
            with self._lock:
                service = create(*args, **kwargs)
                if service.deployments:  # "Whenever you create or deploy a service"
                    self._record_start(backend, service, service.deployments[0], [])
                return service

        register = backend.register_task_definition

        def register_task_definition(*args: Any, **kwargs: Any) -> Any:
            # moto omits registeredAt and registeredBy, which DescribeTaskDefinition returns
            # (service-2.json, shape TaskDefinition: "The Unix timestamp for the time when the
            # task definition was registered", "The principal that registered the task
            # definition"); the principal is moto's caller identity (sts GetCallerIdentity).
            definition = register(*args, **kwargs)
            definition.registered_at = self.record.clock().astimezone(UTC).replace(tzinfo=None)
            definition.registered_by = f"arn:aws:sts::{backend.account_id}:user/moto"
            return definition

        update_service._simulated = True  # type: ignore[attr-defined]
        backend.update_service = update_service
        backend.list_tasks = list_service_tasks
        backend.register_task_definition = register_task_definition
        backend.create_service = create_service

    def forget(self) -> None:
        """Drop every task, completion record and failure mark (after a backend reset)."""
        with self._lock:
            self._tasks, self._last_completed, self._failing = {}, {}, {}
            self._attempts, self.fault_hook, self._stubborn = {}, None, {}
            self.record.forget()

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

    def fail_task_definition(self, arn: str, reason: str | None = None) -> None:
        """From now on, tasks of ``arn`` cannot pull their image (``reason`` as
        stoppedReason, default CannotPullContainerError)."""
        self.set_fault(arn, TaskFault("pull", reason or ""))

    def set_fault(self, arn: str, fault: TaskFault) -> None:
        """From now on, tasks of ``arn`` fail to start as ``fault`` says."""
        with self._lock:
            self._failing = {**self._failing, arn: fault}

    def ignore_sigterm(self, arn: str, stop_timeout: float) -> None:
        """Tasks of ``arn`` stopped from now on ignore SIGTERM: they stay in the stop phases
        for ``stop_timeout`` seconds, then are killed (exit code 137). ECS sends SIGTERM and,
        after "a default 30-second timeout", SIGKILL (ECS API reference, StopTask; the
        container definition's stopTimeout sets it); 137 is 128 + SIGKILL (Docker)."""
        with self._lock:
            self._stubborn = {**self._stubborn, arn: stop_timeout}

    def _fault(self, task: ServiceTask) -> TaskFault | None:
        arn = task.task_definition_arn
        self._attempts[arn] = attempt = self._attempts.get(arn, 0) + 1
        if self.telemetry is not None:
            reason = self.telemetry.logging_error(task.container_definitions)
            if reason is not None:
                return TaskFault("pull", reason)
        if self.fault_hook is not None:
            fault = self.fault_hook(arn, attempt)
            if fault is not None:
                return fault
        return self._failing.get(arn)

    def _log(self, task: ServiceTask, *lines: str) -> None:
        if self.telemetry is not None:
            self.telemetry.write(task.container_definitions, task.id, lines)

    def _stop_task(self, task: ServiceTask, reason: str, at: float) -> None:
        """The scheduler stops ``task``; a running one logs the SIGTERM it gets."""
        stubborn = self._stubborn.get(task.task_definition_arn)
        if task.wanted and task.last_status == "RUNNING":
            self._log(task, "Received SIGTERM" + (", shutting down gracefully"
                                                  if stubborn is None else ""))
            if stubborn is not None:
                task.stop_time, task.stop_exit_code = stubborn, 137
        task.begin_stop(reason, at)

    def heal_task_definition(self, arn: str) -> None:
        with self._lock:
            self._failing = {k: v for k, v in self._failing.items() if k != arn}

    def settle(self, *, max_steps: int = 10_000) -> None:
        """Step until every service is stable, stops completing at once (used by seeding;
        ignores ``pause``)."""
        for _ in range(max_steps):
            if not self.step(force=True, instant=True):
                return
        raise RuntimeError("ECS simulator did not settle")

    def service_tasks(self, service_arn: str) -> list[ServiceTask]:
        with self._lock:
            return list(self._tasks.get(service_arn, []))

    def _run(self) -> None:
        while not self._stop.wait(self.step_interval):
            if not self._paused.is_set():
                self.step()

    # ------------------------------------------------------------------- updates
    def _after_update(self, service: Any) -> None:
        deployments = list(service.deployments or [])
        primary = deployments[0] if deployments else None
        if primary is None or primary.get("taskDefinition") != service.task_definition:
            new = self._deployment(service, service.task_definition)
            olds = [dict(dep, status="ACTIVE", updatedAt=now()) for dep in deployments]
            service.deployments = [new, *olds]
            self._record_start(self._backend(), service, new, olds)
            self._event(service, f"(service {service.name}) has started a deployment "
                                 f"{new['id']} ({service.task_definition.rsplit('/', 1)[-1]}).")
        else:
            changed = dict(primary, desiredCount=service.desired_count)
            if primary.get("runningCount", 0) != service.desired_count:
                changed["rolloutState"] = "IN_PROGRESS"
            service.deployments = [changed, *deployments[1:]]
        self._recount(service)  # moto jumped runningCount to desiredCount; tasks say otherwise

    def _record_start(self, backend: Any, service: Any, new: dict[str, Any],
                      sources: list[dict[str, Any]]) -> None:
        config = dict(getattr(service, "deployment_configuration", None) or {})
        breaker = dict(config.get("deploymentCircuitBreaker") or {})
        if breaker:
            breaker["threshold"] = failure_threshold(int(service.desired_count or 0),
                                                     breaker.get("thresholdConfiguration"))
        self.record.started(
            deployment_id=str(new["id"]), service_arn=service.arn,
            cluster_arn=backend._get_cluster(service.cluster_name).arn,
            cluster=service.cluster_name, service=service.name,
            task_definition=str(new.get("taskDefinition") or service.task_definition),
            launch_type=service.launch_type, desired=int(service.desired_count or 0),
            sources=sources, breaker=breaker or None)

    def _recount(self, service: Any) -> None:
        tasks = self._tasks.get(service.arn, [])
        deployments = [dict(d) for d in service.deployments or []]
        for dep in deployments:
            _count(dep, tasks)
        service.deployments = deployments
        service.running_count = sum(d["runningCount"] for d in deployments)
        service.pending_count = sum(d["pendingCount"] for d in deployments)

    def _deployment(self, service: Any, task_definition: str) -> dict[str, Any]:
        dep_id = f"ecs-svc/{uuid.uuid4().int % 10**19:019d}"
        stamp = now()
        return {"id": dep_id, "status": "PRIMARY", "taskDefinition": task_definition,
                "desiredCount": service.desired_count, "pendingCount": 0, "runningCount": 0,
                "failedTasks": 0, "createdAt": stamp, "updatedAt": stamp,
                "launchType": service.launch_type, "rolloutState": "IN_PROGRESS",
                "rolloutStateReason": f"ECS deployment {dep_id} in progress."}

    def _event(self, service: Any, message: str) -> None:
        event = {"id": str(uuid.uuid4()), "createdAt": now(), "message": message}
        service.events = [event, *service.events][:MAX_EVENTS]

    # --------------------------------------------------------------------- steps
    def step(self, *, force: bool = False, instant: bool = False) -> bool:
        """One scheduler tick for every service; returns whether anything changed."""
        if self._paused.is_set() and not force:
            return False
        changed = False
        with self._lock:
            backend = self._backend()
            services = {s.arn: s for s in list(backend.services.values())}
            for service in services.values():
                if service.status == "ACTIVE" and service.deployments:
                    changed = self._step_service(backend, service, instant) or changed
            for arn in [a for a in self._tasks if a not in services
                        or services[a].status != "ACTIVE"]:
                changed = self._stop_orphans(arn, instant) or changed
            self.steps += 1
        return changed

    def _stop_orphans(self, service_arn: str, instant: bool) -> bool:
        """Tasks of a deleted service are stopped by ECS as well."""
        at, changed = time.monotonic(), False
        for task in self._tasks.get(service_arn, []):
            if task.wanted:
                self._stop_task(task, "Service deleted", at)
                changed = True
            changed = task.progress_stop(at, self.stop_time, instant=instant) or changed
        return changed

    def _step_service(self, backend: Any, service: Any, instant: bool) -> bool:
        at = time.monotonic()
        k = max(self.tasks_per_step, 1)
        tasks = self._tasks.get(service.arn, [])
        deployments = [dict(d) for d in service.deployments]
        by_id = {d["id"]: d for d in deployments}
        primary, olds = deployments[0], deployments[1:]
        before = _fingerprint(service.deployments, tasks)
        config = dict(getattr(service, "deployment_configuration", None) or {})
        breaker = dict(config.get("deploymentCircuitBreaker") or {})
        # "When set to false, Amazon ECS does not reset the failure count" (service-2.json,
        # DeploymentCircuitBreaker.resetOnHealthyTask; default true)
        resets = breaker.get("resetOnHealthyTask") is not False
        started: list[ServiceTask] = []
        stopped: list[ServiceTask] = []

        # 1. tasks move on: starting ones come up (or fail to), stopping ones wind down
        for task in tasks:
            task.progress_stop(at, self.stop_time, instant=instant)
            if not task.wanted or task.last_status == "RUNNING":
                continue
            dep = by_id.get(task.deployment_id)
            if task.last_status == "PROVISIONING":
                task.set_status("PENDING")
            elif (fault := self._fault(task)) is not None:
                if fault.kind == "exit":  # it ran long enough to write its last words
                    self._log(task, *fault.logs)
                task.fail_to_start(fault)
                if dep is not None:
                    dep["failedTasks"] = int(dep.get("failedTasks") or 0) + 1
            else:
                task.run()
                image = task.containers[0].image if task.containers else "?"
                self._log(task, f"Starting {image}", "Listening on 0.0.0.0:8080",
                          "Health check passed: ready")
                if dep is not None and resets:
                    dep["failedTasks"] = 0

        desired = int(service.desired_count or 0)
        wanted = [t for t in tasks if t.wanted]

        # 2. the PRIMARY deployment: start what is missing (within maximumPercent), stop extras
        mine = [t for t in wanted if t.deployment_id == primary["id"]]
        if primary.get("rolloutState") != "FAILED" and len(mine) < desired:
            ceiling = math.floor(desired * int(config.get("maximumPercent") or 200) / 100)
            room = max(ceiling - len(wanted), 0)
            for _ in range(min(k, desired - len(mine), room)):
                started.append(self._new_task(backend, service, primary))
        elif len(mine) > desired:
            # not-yet-running tasks go first, as the scheduler prefers them for scale-in
            extras = sorted(mine, key=lambda t: t.last_status == "RUNNING")[:len(mine) - desired]
            for task in extras:
                self._stop_task(task, f"Scaling activity initiated by (deployment {primary['id']})",
                           at)
                stopped.append(task)

        # 3. old deployments drain while minimumHealthyPercent of desiredCount stays RUNNING
        floor = math.ceil(desired * int(config.get("minimumHealthyPercent", 100)) / 100)
        healthy = sum(1 for t in tasks if t.wanted and t.last_status == "RUNNING")
        budget = k
        for old in olds:
            for task in [t for t in tasks if t.wanted and t.deployment_id == old["id"]]:
                if task.last_status != "RUNNING":  # never became healthy: no need to wait
                    self._stop_task(task, f"Scaling activity initiated by (deployment {old['id']})",
                               at)
                    stopped.append(task)
                elif budget > 0 and healthy - 1 >= floor:
                    self._stop_task(task, f"Scaling activity initiated by (deployment {old['id']})",
                               at)
                    stopped.append(task)
                    healthy, budget = healthy - 1, budget - 1

        if started:
            tasks = [*tasks, *started]
            self._tasks = {**self._tasks, service.arn: tasks}
            self._register(backend, service, started)
            ids = " ".join(f"(task {t.id})" for t in started)
            self._event(service, f"(service {service.name}) has started {len(started)} tasks: "
                                 f"{ids}.")
        if stopped:
            ids = " ".join(f"(task {t.id})" for t in stopped)
            self._event(service, f"(service {service.name}) has stopped {len(stopped)} "
                                 f"running tasks: {ids}.")

        # 4. counts, then deployments without running/pending tasks leave the list
        for dep in deployments:
            _count(dep, tasks)
        olds = [d for d in deployments[1:]
                if d["runningCount"] or d["pendingCount"]
                or any(t.wanted and t.deployment_id == d["id"] for t in tasks)]
        deployments = [primary, *olds]

        # 5. circuit breaker, then completion
        if (breaker.get("enable") and primary.get("rolloutState") == "IN_PROGRESS"
                and int(primary.get("failedTasks") or 0)
                >= failure_threshold(desired, breaker.get("thresholdConfiguration"))):
            deployments = self._fail(service, deployments, rollback=bool(breaker.get("rollback")),
                                     at=at)
            for dep in deployments:
                _count(dep, tasks)
            primary = deployments[0]
        elif (primary.get("rolloutState") == "IN_PROGRESS" and len(deployments) == 1
              and primary["runningCount"] == desired and not primary["pendingCount"]):
            primary = dict(primary, rolloutState="COMPLETED",
                           rolloutStateReason=f"ECS deployment {primary['id']} completed.")
            deployments = [primary]
            self._last_completed[service.arn] = dict(primary)
            self.record.completed(str(primary["id"]))
            self._event(service, f"(service {service.name}) (deployment {primary['id']}) "
                                 "deployment completed.")
            self._event(service, f"(service {service.name}) has reached a steady state.")

        self._publish(service, tasks)
        if _fingerprint(deployments, tasks) == before:
            return bool(started or stopped)
        for dep in deployments:
            dep["updatedAt"] = now() if dep is primary else dep.get("updatedAt")
        live = {d["id"] for d in deployments}
        for gone in [d for d in service.deployments or [] if d["id"] not in live]:
            self.record.counted(str(gone["id"]), running=0, pending=0,
                                failed=int(gone.get("failedTasks") or 0))  # drained
        service.deployments = deployments
        for dep in deployments:
            self.record.counted(str(dep["id"]), running=dep["runningCount"],
                                pending=dep["pendingCount"],
                                failed=int(dep.get("failedTasks") or 0))
        service.task_definition = primary["taskDefinition"]
        service.running_count = sum(d["runningCount"] for d in deployments)
        service.pending_count = sum(d["pendingCount"] for d in deployments)
        self._prune(backend, service)
        return True

    def _publish(self, service: Any, tasks: list[ServiceTask]) -> None:
        if self.telemetry is None:
            return
        running: dict[str, int] = {}
        for task in tasks:
            if task.wanted and task.last_status == "RUNNING":
                running[task.task_definition_arn] = running.get(task.task_definition_arn, 0) + 1
        self.telemetry.publish(service.cluster_name, service.name, service.arn, running)

    def _fail(self, service: Any, deployments: list[dict[str, Any]], *, rollback: bool,
              at: float) -> list[dict[str, Any]]:
        failed = dict(deployments[0], rolloutState="FAILED",
                      rolloutStateReason=CIRCUIT_BREAKER_REASON)
        self._event(service, f"(service {service.name}) (deployment {failed['id']}) deployment "
                             "failed: tasks failed to start.")
        pending = [t for t in self._tasks.get(service.arn, []) if t.wanted
                   and t.deployment_id == failed["id"] and t.last_status != "RUNNING"]
        for task in pending:  # "stop launching new tasks"
            self._stop_task(task, "Deployment failed", at)
        if pending:
            self._event(service, f"(service {service.name}) stopped {len(pending)} pending "
                                 "tasks.")
        if not rollback:
            self.record.failed(str(failed["id"]), reason=CIRCUIT_BREAKER_REASON, back_to=None)
            return [failed, *deployments[1:]]
        olds = deployments[1:]
        completed = [d for d in olds if d.get("rolloutState") == "COMPLETED"
                     and d.get("taskDefinition") != failed.get("taskDefinition")]
        target: dict[str, Any] | None = None
        if completed:
            target = max(completed, key=lambda d: d.get("createdAt") or now())
            olds = [d for d in olds if d["id"] != target["id"]]
        else:
            last = self._last_completed.get(service.arn)
            if last and last.get("taskDefinition") != failed.get("taskDefinition"):
                target = self._deployment(service, str(last["taskDefinition"]))
                target["id"] = last["id"]
        self.record.failed(str(failed["id"]), reason=CIRCUIT_BREAKER_REASON,
                           back_to=str(target["id"]) if target is not None else None)
        if target is None:
            return [failed, *olds]
        target = dict(target, status="PRIMARY", desiredCount=service.desired_count,
                      rolloutState="IN_PROGRESS", failedTasks=0,
                      rolloutStateReason=f"ECS deployment {target['id']} in progress.")
        self._event(service, f"(service {service.name}) rolling back to deployment "
                             f"{target['id']}.")
        return [target, dict(failed, status="ACTIVE", desiredCount=0), *olds]

    def _new_task(self, backend: Any, service: Any, deployment: dict[str, Any]) -> ServiceTask:
        cluster = backend._get_cluster(service.cluster_name)
        definition = backend.describe_task_definition(deployment["taskDefinition"])
        return ServiceTask(backend=backend, cluster=cluster, task_definition=definition,
                           service=service, deployment_id=str(deployment["id"]))

    def _register(self, backend: Any, service: Any, tasks: list[ServiceTask]) -> None:
        cluster = service.cluster_name
        current = dict(backend.tasks.get(cluster, {}))
        current.update({t.task_arn: t for t in tasks})
        backend.tasks = {**backend.tasks, cluster: current}

    def _prune(self, backend: Any, service: Any) -> None:
        tasks = self._tasks.get(service.arn, [])
        done = [t for t in tasks if not t.live]
        if len(done) <= MAX_STOPPED_TASKS:
            return
        gone = {t.task_arn for t in done[: len(done) - MAX_STOPPED_TASKS]}
        self._tasks = {**self._tasks, service.arn: [t for t in tasks if t.task_arn not in gone]}
        cluster = service.cluster_name
        backend.tasks = {**backend.tasks, cluster: {
            arn: t for arn, t in backend.tasks.get(cluster, {}).items() if arn not in gone}}


def _count(dep: dict[str, Any], tasks: list[ServiceTask]) -> None:
    mine = [t for t in tasks if t.deployment_id == dep["id"]]
    dep["runningCount"] = sum(1 for t in mine if t.wanted and t.last_status == "RUNNING")
    dep["pendingCount"] = sum(1 for t in mine if t.wanted and t.last_status != "RUNNING")
    if dep.get("status") != "PRIMARY":
        dep["desiredCount"] = dep["runningCount"]


def _fingerprint(deployments: list[dict[str, Any]], tasks: list[ServiceTask]) -> Any:
    return ([(d.get("id"), d.get("status"), d.get("runningCount"), d.get("pendingCount"),
              d.get("failedTasks"), d.get("rolloutState")) for d in deployments],
            [(t.task_arn, t.desired_status, t.last_status) for t in tasks])
