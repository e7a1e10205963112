"""``EcsEmulator``: moto's ECS backend served over HTTP on 127.0.0.1 (ephemeral port) with a
deployment simulator (tasks, rolling updates, failed deployments, circuit breaker),
ListTaskDefinitions as ECS pages and sorts it, service deployments and revisions
(ListServiceDeployments, DescribeServiceDeployments, DescribeServiceRevisions, which moto
lacks: deployments.py), CloudWatch Logs and metrics for the simulated
tasks (moto's ``logs`` and ``monitoring`` on the same port), wire faults (held requests,
throttling), plus the hotel-voice-bot seed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
from moto.core.models import DEFAULT_ACCOUNT_ID
from moto.ecs.models import ecs_backends
from moto.moto_server.threaded_moto_server import ThreadedMotoServer
from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from werkzeug.serving import make_server

from .deployments import ServiceDeployments, serve_service_deployments
from .faults import MAX_HOLD_SECONDS, EcsCall, FaultyWire, Held, Refusal
from .listing import serve_listing
from .paging import ApiError
from .simulator import DeploymentSimulator, FaultHook
from .tasks import TaskFault
from .telemetry import Telemetry, Usage

CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}


@dataclass(frozen=True)
class Seeded:
    """What ``seed_hotel_voice_bot`` created; ``arns[n-1]`` is revision n."""

    cluster: str
    service: str
    family: str
    arns: tuple[str, ...]
    desired_count: int


class _FaultyMotoServer(ThreadedMotoServer):
    """moto's threaded server with ``FaultyWire`` in front of its WSGI app, ECS's own
    ListTaskDefinitions (listing.py) in front of moto's, and the service-deployment operations
    moto lacks (deployments.py). ``_server_entry`` is moto's own
    (moto/moto_server/threaded_moto_server.py) with the app wrapped."""

    def __init__(self, wire: FaultyWire, definitions: Callable[[], Any],
                 record: ServiceDeployments, lookup: Callable[[str, str], str], *,
                 ip_address: str, port: int) -> None:
        super().__init__(ip_address=ip_address, port=port, verbose=False)
        self.wire = wire
        self.definitions = definitions
        self.record, self.lookup = record, lookup

    def _server_entry(self) -> None:
        app = self.wire.wrap(serve_service_deployments(
            serve_listing(DomainDispatcherApplication(create_backend_app), self.definitions),
            self.record, self.lookup))
        self._server = make_server(self._ip_address, self._port, app, True,
                                   request_handler=MotoRequestHandler)
        self._server_ready_event.set()
        self._server.serve_forever()


class EcsEmulator:
    """moto's ECS wire API in a thread. All emulators in one process share moto's global
    backend (one account/region), so ``reset()`` wipes it; use one emulator at a time."""

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0, region: str = "us-east-1",
                 step_interval: float = 0.05, tasks_per_step: int = 1,
                 stop_time: float = 0.3, metrics_interval: float = 1.0) -> None:
        self.region = region
        self.wire = FaultyWire()
        self._clock_offset = timedelta(0)
        self.service_deployments = ServiceDeployments(clock=self._now)
        self._server = _FaultyMotoServer(self.wire, self._definitions, self.service_deployments,
                                         self._service_arn, ip_address=host, port=port)
        self.telemetry = Telemetry(region, interval=metrics_interval)
        self.simulator = DeploymentSimulator(self._backend, step_interval=step_interval,
                                             tasks_per_step=tasks_per_step, stop_time=stop_time,
                                             telemetry=self.telemetry,
                                             record=self.service_deployments)
        self._started = False

    def _backend(self) -> Any:
        return ecs_backends[DEFAULT_ACCOUNT_ID][self.region]

    def _now(self) -> datetime:
        return datetime.now(UTC) + self._clock_offset

    def advance_clock(self, delta: timedelta) -> None:
        """ECS's calendar moves on by ``delta``: deployments made so far age (90 days on, they
        leave ListServiceDeployments) and task definitions registered from now on carry the
        later registeredAt. Tasks and rollouts keep real time."""
        self._clock_offset += delta

    def _service_arn(self, cluster: str, service: str) -> str:
        """The service's ARN as moto knows it, or ECS's error for a missing cluster/service."""
        with self.simulator._lock:
            try:
                return str(self._backend()._get_service(cluster.split("/")[-1],
                                                        service.split("/")[-1]).arn)
            except Exception as exc:  # moto's ECSException carries ECS's own error code
                code = str(getattr(exc, "code", "") or "ServiceNotFoundException")
                raise ApiError(code, getattr(exc, "message", None) or str(exc)) from exc

    def _definitions(self) -> list[Any]:
        with self.simulator._lock:
            return [d for revisions in list(self._backend().task_definitions.values())
                    for d in list(revisions.values())]

    @property
    def backend(self) -> Any:
        """moto's in-process ECS backend (for the simulator and white-box assertions)."""
        return self._backend()

    def start(self) -> EcsEmulator:
        """Serve an empty backend: moto's is process-global, so whatever an earlier emulator
        (another test module) left behind is wiped first."""
        logging.getLogger("werkzeug").setLevel(logging.WARNING)
        self.reset()
        self._server.start()
        self.simulator.start()
        self._started = True
        return self

    def stop(self) -> None:
        if self._started:
            self.wire.clear()  # held requests are let go, so no server thread is left waiting
            self.simulator.stop()
            self._server.stop()
            self._started = False

    def __enter__(self) -> EcsEmulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def endpoint_url(self) -> str:
        host, port = self._server.get_host_and_port()
        return f"http://{host}:{port}"

    def client(self, service: str = "ecs", **config: Any) -> Any:
        """A real boto3 client pointed at this emulator: ``ecs`` (default), or ``logs`` and
        ``cloudwatch``, which moto serves on the same port."""
        return boto3.session.Session(**CREDENTIALS).client(
            service, region_name=self.region, endpoint_url=self.endpoint_url, **config)

    def reset(self) -> None:
        """Forget every cluster/service/task definition (moto's backend reset), the call log
        and every pending fault."""
        self.wire.clear()
        self.simulator.resume()
        self._clock_offset = timedelta(0)
        with self.simulator._lock:
            self._backend().reset()
            self.telemetry.reset()
            self.simulator.forget()
            self.simulator.install()

    # ------------------------------------------------------------------ wire faults
    def calls(self, operation: str | None = None) -> list[EcsCall]:
        """ECS calls as the server received them (``operation`` e.g. "UpdateService")."""
        return self.wire.recorded(operation)

    def hold(self, operation: str, *, where: Callable[[Mapping[str, Any]], bool] | None = None,
             times: int = 1, max_hold: float = MAX_HOLD_SECONDS, skip: int = 0) -> Held:
        """Hold the next ``times`` ``operation`` requests (whose JSON body satisfies ``where``;
        the first ``skip`` of them pass) until ``release()`` (or ``max_hold`` seconds), then
        process them as received: a client that timed out meanwhile gets no answer, but the
        write still lands."""
        return self.wire.hold(Held(operation, where, times, max_hold, skip))

    def refuse_next(self, operation: str, *, code: str = "ThrottlingException",
                    message: str = "Rate exceeded", status: int = 400,
                    retry_after: str | None = None, times: int = 1) -> None:
        """Answer the next ``times`` ``operation`` calls with an AWS JSON error instead of
        processing them (nothing changes), e.g. throttling."""
        self.wire.refuse(Refusal(operation, code, message, status, retry_after, times))

    def fail_task_definition(self, arn: str, reason: str | None = None) -> None:
        """Tasks of ``arn`` will fail to start (stopCode TaskFailedToStart), as with an image
        that cannot be pulled; ``reason`` overrides the CannotPullContainerError text."""
        self.simulator.fail_task_definition(arn, reason)

    def crash_task_definition(self, arn: str, *, exit_code: int = 1,
                              logs: tuple[str, ...] = ()) -> None:
        """Tasks of ``arn`` start, write ``logs`` and exit with ``exit_code`` before RUNNING
        (stopCode EssentialContainerExited), e.g. a missing environment variable."""
        self.simulator.set_fault(arn, TaskFault("exit", exit_code=exit_code, logs=logs))

    def ignore_sigterm(self, arn: str, *, stop_timeout: float) -> None:
        """Running tasks of ``arn`` ignore SIGTERM: a stop takes ``stop_timeout`` seconds (their
        stopTimeout) and ends with SIGKILL, exit code 137."""
        self.simulator.ignore_sigterm(arn, stop_timeout)

    def set_fault_hook(self, hook: FaultHook | None) -> None:
        """``hook(task_definition_arn, attempt)`` decides, for each task starting, whether it
        fails and how (a ``TaskFault``) or starts (None); checked before the marks above."""
        with self.simulator._lock:
            self.simulator.fault_hook = hook

    def set_usage(self, arn: str, *, cpu_percent: float, memory_percent: float) -> None:
        """What tasks of ``arn`` use, in percent of the task definition's cpu/memory, as the
        service's CloudWatch CPUUtilization/MemoryUtilization will show it."""
        self.telemetry.set_usage(arn, Usage(cpu_percent, memory_percent))

    def forget_metrics(self) -> None:
        """Drop the CloudWatch datapoints published so far; new ones follow within the
        emulator's ``metrics_interval``."""
        self.telemetry.forget_metrics()

    def seed_hotel_voice_bot(self, *, cluster: str = "production",
                             service: str = "hotel-voice-bot", family: str = "hotel-voice-bot",
                             revisions: int = 4, desired_count: int = 3,
                             circuit_breaker: tuple[bool, bool] | None = None,
                             never_deployed: Collection[int] = ()) -> Seeded:
        """Register ``family`` v1..vN (images :1.1.0..:1.N.0; ``task_definition(n)``), create
        the cluster, its awslogs log group and the service, and deploy v1..vN in turn (each
        settled) except the revisions in ``never_deployed`` (registered, as a pipeline that
        failed before its deploy step leaves them), so the service ends on the newest deployed
        one. ``circuit_breaker=(enable, rollback)`` then sets the service's
        ``deploymentConfiguration.deploymentCircuitBreaker`` through UpdateService."""
        ecs = self.client()
        ecs.create_cluster(clusterName=cluster)
        self.client("logs").create_log_group(logGroupName=f"/ecs/{family}")
        arns = []
        for n in range(1, revisions + 1):
            td = ecs.register_task_definition(**task_definition(family, n, self.region))
            arns.append(str(td["taskDefinition"]["taskDefinitionArn"]))
        deployed = [arn for n, arn in enumerate(arns, 1) if n not in never_deployed]
        ecs.create_service(cluster=cluster, serviceName=service, taskDefinition=deployed[0],
                           desiredCount=desired_count)
        self.simulator.settle()
        for arn in deployed[1:]:
            ecs.update_service(cluster=cluster, service=service, taskDefinition=arn)
            self.simulator.settle()
        if circuit_breaker is not None:
            enable, rollback = circuit_breaker
            ecs.update_service(cluster=cluster, service=service, deploymentConfiguration={
                "maximumPercent": 200, "minimumHealthyPercent": 100,
                "deploymentCircuitBreaker": {"enable": enable, "rollback": rollback}})
        return Seeded(cluster, service, family, tuple(arns), desired_count)


def task_definition(family: str, n: int, region: str) -> dict[str, Any]:
    """RegisterTaskDefinition arguments for revision ``n`` of the demo family: image
    ``:1.n.0``; task-level cpu 256 (units) / memory 512 (MiB); awslogs to ``/ecs/<family>``
    with stream prefix ``ecs``; environment with a literal credential (``PARTNER_API_KEY``,
    the bad practice the configuration view must mask); secrets by reference (Secrets Manager
    and SSM ARNs). From v4 on, LOG_LEVEL is debug and OPENAI_API_KEY is a secret reference;
    each revision carries its RELEASE."""
    environment = [{"name": "RELEASE", "value": f"1.{n}.0"},
                   {"name": "LOG_LEVEL", "value": "debug" if n >= 4 else "info"},
                   {"name": "PARTNER_API_KEY", "value": f"pk-live-{n:04d}-do-not-leak"}]
    secrets = [{"name": "DATABASE_URL", "valueFrom": f"arn:aws:secretsmanager:{region}:"
                f"{DEFAULT_ACCOUNT_ID}:secret:{family}/database-url-Ab12Cd"}]
    if n >= 4:
        secrets.append({"name": "OPENAI_API_KEY", "valueFrom": f"arn:aws:ssm:{region}:"
                        f"{DEFAULT_ACCOUNT_ID}:parameter/{family}/openai-api-key"})
    return {"family": family, "cpu": "256", "memory": "512", "containerDefinitions": [{
        "name": family, "image": f"registry.example/{family}:1.{n}.0",
        "memory": 512, "cpu": 256, "essential": True,
        "portMappings": [{"containerPort": 8080}],
        "environment": environment, "secrets": secrets,
        "logConfiguration": {"logDriver": "awslogs", "options": {
            "awslogs-group": f"/ecs/{family}", "awslogs-region": region,
            "awslogs-stream-prefix": "ecs"}}}]}
