"""``EcsEmulator``: moto's ECS backend served over HTTP on 127.0.0.1 (ephemeral port) with a
deployment simulator (tasks, rolling updates, circuit breaker), wire faults (held requests,
throttling), plus the hotel-voice-bot seed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
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

from .faults import MAX_HOLD_SECONDS, EcsCall, FaultyWire, Held, Refusal
from .simulator import DeploymentSimulator

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
    """moto's threaded server with ``FaultyWire`` in front of its WSGI app. ``_server_entry``
    is moto's own (moto/moto_server/threaded_moto_server.py) with the app wrapped."""

    def __init__(self, wire: FaultyWire, *, ip_address: str, port: int) -> None:
        super().__init__(ip_address=ip_address, port=port, verbose=False)
        self.wire = wire

    def _server_entry(self) -> None:
        app = self.wire.wrap(DomainDispatcherApplication(create_backend_app))
        self._server = make_server(self._ip_address, self._port, app, True,
                                   request_handler=MotoRequestHandler)
        self._server_ready_event.set()
        self._server.serve_forever()


class EcsEmulator:
    """moto's ECS wire API in a thread. All emulators in one process share moto's global
    backend (one account/region), so ``reset()`` wipes it; use one emulator at a time."""

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0, region: str = "us-east-1",
                 step_interval: float = 0.05, tasks_per_step: int = 1,
                 stop_time: float = 0.3) -> None:
        self.region = region
        self.wire = FaultyWire()
        self._server = _FaultyMotoServer(self.wire, ip_address=host, port=port)
        self.simulator = DeploymentSimulator(self._backend, step_interval=step_interval,
                                             tasks_per_step=tasks_per_step, stop_time=stop_time)
        self._started = False

    def _backend(self) -> Any:
        return ecs_backends[DEFAULT_ACCOUNT_ID][self.region]

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

    def client(self, **config: Any) -> Any:
        """A real boto3 ECS client pointed at this emulator."""
        return boto3.session.Session(**CREDENTIALS).client(
            "ecs", region_name=self.region, endpoint_url=self.endpoint_url, **config)

    def reset(self) -> None:
        """Forget every cluster/service/task definition (moto's backend reset), the call log
        and every pending fault."""
        self.wire.clear()
        self.simulator.resume()
        with self.simulator._lock:
            self._backend().reset()
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

    def seed_hotel_voice_bot(self, *, cluster: str = "production",
                             service: str = "hotel-voice-bot", family: str = "hotel-voice-bot",
                             revisions: int = 4, desired_count: int = 3,
                             circuit_breaker: tuple[bool, bool] | None = None) -> Seeded:
        """Register ``family`` v1..vN (images :1.1.0..:1.N.0), create the cluster and the
        service, and deploy v1..vN in turn (each settled), so the service ends on vN.
        ``circuit_breaker=(enable, rollback)`` then sets the service's
        ``deploymentConfiguration.deploymentCircuitBreaker`` through UpdateService."""
        ecs = self.client()
        ecs.create_cluster(clusterName=cluster)
        arns = []
        for n in range(1, revisions + 1):
            td = ecs.register_task_definition(family=family, containerDefinitions=[{
                "name": family, "image": f"registry.example/{family}:1.{n}.0",
                "memory": 512, "cpu": 256, "essential": True,
                "portMappings": [{"containerPort": 8080}]}])["taskDefinition"]
            arns.append(str(td["taskDefinitionArn"]))
        ecs.create_service(cluster=cluster, serviceName=service, taskDefinition=arns[0],
                           desiredCount=desired_count)
        self.simulator.settle()
        for arn in arns[1:]:
            ecs.update_service(cluster=cluster, service=service, taskDefinition=arn)
            self.simulator.settle()
        if circuit_breaker is not None:
            enable, rollback = circuit_breaker
            ecs.update_service(cluster=cluster, service=service, deploymentConfiguration={
                "maximumPercent": 200, "minimumHealthyPercent": 100,
                "deploymentCircuitBreaker": {"enable": enable, "rollback": rollback}})
        return Seeded(cluster, service, family, tuple(arns), desired_count)
