"""AWS ECS adapter (boto3): roll a service back to a pinned task-definition ARN, wait with
botocore's ``services_stable`` semantics while reporting progress, and scale desiredCount.
"""

# "Actually deployed" rule (what ``history`` lists, and so what the core may pick):
#   * the task definition of every deployment the service still reports (PRIMARY = current,
#     ACTIVE = draining, INACTIVE = recently replaced), whatever its registration status;
#   * plus every ACTIVE revision of the target's family (exact family, not just prefix).
#     ECS keeps no durable deployment record once a deployment is replaced, so an ACTIVE
#     revision of the family is presumed deployed by the normal register-then-deploy
#     pipeline; ``change_cause`` says which evidence applies ("deployed: PRIMARY deployment
#     ecs-svc/..." vs "registered ...; ACTIVE, no deployment record retained by ECS").
#   * deregistered (INACTIVE) revisions are left out unless a deployment still uses them:
#     ECS refuses to update a service to an INACTIVE task definition.

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import boto3
from botocore.config import Config

from platforms._ecs_support import (
    evaluate_acceptors,
    parse_task_definition_arn,
    services_stable_model,
    short_name,
    translate,
)
from platforms.base import (
    ConfigSnapshot,
    PermanentPlatformError,
    ProgressCallback,
    ResourceUsage,
    Revision,
    RevisionNotFound,
    RollbackResult,
    RolloutFailed,
    RolloutStatus,
    Target,
    TargetNotFound,
    TransientPlatformError,
)

log = logging.getLogger(__name__)


class EcsPlatform:
    """``Platform`` for ECS services. Target: scope = cluster, name = service; options
    ``family`` (task-definition family), ``region`` and optional ``endpoint_url``.

    ``client`` is used as given for every target (tests); otherwise one boto3 client per
    (region, endpoint_url) from ``session`` (default credential chain). ``poll_interval``
    overrides the waiter's own delay (15 s) between DescribeServices calls."""

    name = "ecs"

    def __init__(self, *, client: Any | None = None, session: Any | None = None,
                 poll_interval: float | None = None, max_task_definitions: int = 100,
                 request_timeout: float = 30.0) -> None:
        self._client = client
        self._session = session
        self._poll = poll_interval
        self._max_defs = max_task_definitions
        self._config = Config(connect_timeout=request_timeout, read_timeout=request_timeout,
                              retries={"mode": "standard", "max_attempts": 3})
        self._clients: dict[tuple[str | None, str | None], Any] = {}
        self._defs: dict[str, Mapping[str, Any]] = {}  # task definitions are immutable
        self._lock = threading.Lock()

    # ============================================================ Platform protocol
    def history(self, target: Target) -> list[Revision]:
        ecs = self._ecs(target)
        service = self._service(ecs, target)
        primary = _primary_task_definition(service)
        evidence: dict[str, str] = {}
        for dep in service.get("deployments") or []:
            arn = str(dep.get("taskDefinition") or "")
            if arn and arn not in evidence:
                evidence[arn] = (f"deployed: {dep.get('status', '?')} deployment "
                                 f"{dep.get('id', '?')}")
        if primary and primary not in evidence:
            evidence[primary] = "deployed: service task definition"
        family = self._family(target, primary)
        arns = list(evidence)
        for arn in self._active_family_arns(ecs, family):
            if arn not in evidence:
                arns.append(arn)
        revisions = [self._revision(ecs, arn, current=arn == primary,
                                    evidence=evidence.get(arn)) for arn in arns]
        revisions.sort(key=lambda r: (r.number, r.current), reverse=True)
        return revisions

    def current_revision(self, target: Target) -> Revision:
        for revision in self.history(target):
            if revision.current:
                return revision
        raise RevisionNotFound(f"service {target.scope}/{target.name} has no task definition")

    def rollback_to(self, target: Target, revision: Revision, *,
                    dry_run: bool = False) -> RollbackResult:
        """``update_service(taskDefinition=<pinned ARN>)``; skipped when PRIMARY already runs it."""
        ecs = self._ecs(target)
        service = self._service(ecs, target)
        label = short_name(revision.id)
        if _primary_task_definition(service) == revision.id:
            return RollbackResult(False, f"skipped rollback (service/{target.name} already "
                                         f"runs task definition {label})")
        definition = self._describe(ecs, revision.id)
        family = target.options.get("family") if target.options else None
        if family and definition.get("family") != family:
            raise RevisionNotFound(f"task definition {label} is not in family {family}")
        if definition.get("status") != "ACTIVE":
            raise RevisionNotFound(f"task definition {label} is {definition.get('status')} "
                                   "(deregistered); ECS cannot deploy it")
        if dry_run:
            return RollbackResult(False, f"service/{target.name} rolled back to {label} "
                                         "(dry run)")
        with translate(task_definition=True):
            updated = ecs.update_service(cluster=target.scope, service=target.name,
                                         taskDefinition=revision.id)["service"]
        deployment: Mapping[str, Any] = next((d for d in updated.get("deployments") or []
                           if d.get("status") == "PRIMARY"), {})
        return RollbackResult(True, f"service/{target.name} rolled back to {label} "
                                    f"(deployment {deployment.get('id', '?')})")

    def rollout_status(self, target: Target, *, raise_on_failure: bool = False) -> RolloutStatus:
        with translate():
            response = self._ecs(target).describe_services(cluster=target.scope,
                                                           services=[target.name])
        return _checked(stability(response, target.name), raise_on_failure)

    def wait_for_rollout(self, target: Target, *, timeout: float,
                         on_progress: ProgressCallback | None = None,
                         raise_on_failure: bool = False) -> RolloutStatus:
        """Poll DescribeServices every waiter delay (or ``poll_interval``) until the
        ``ServicesStable`` acceptors say success or failure, or ``timeout`` elapses."""
        ecs = self._ecs(target)
        interval = self._poll if self._poll is not None else services_stable_model().delay
        deadline = time.monotonic() + timeout
        last: str | None = None
        pause = threading.Event()
        while True:
            try:
                with translate():
                    response = ecs.describe_services(cluster=target.scope,
                                                     services=[target.name])
            except TransientPlatformError as exc:
                log.warning("describe_services on %s failed, retrying: %s",
                            target.describe(), exc)
                status = RolloutStatus(done=False, message=f"transient error: {exc}")
            else:
                status = stability(response, target.name)
                if on_progress is not None and status.message != last:
                    on_progress(status.message)
                if status.done or status.failed:
                    return _checked(status, raise_on_failure)
            last = status.message
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return RolloutStatus(done=False, message=f"timed out waiting for service "
                                     f"{target.name} to become stable after {timeout:g}s: "
                                     f"{last.rstrip('.')}")
            pause.wait(min(interval, remaining))

    def get_replicas(self, target: Target) -> int:
        return int(self._service(self._ecs(target), target).get("desiredCount") or 0)

    def scale(self, target: Target, replicas: int) -> None:
        if replicas < 0:
            raise PermanentPlatformError(f"desiredCount must be >= 0, got {replicas}")
        ecs = self._ecs(target)
        if int(self._service(ecs, target).get("desiredCount") or 0) == replicas:
            return
        with translate():
            ecs.update_service(cluster=target.scope, service=target.name,
                               desiredCount=replicas)

    def logs_tail(self, target: Target, *, lines: int = 100) -> str | None:
        """Not wired: ECS logs live in CloudWatch Logs (awslogs driver) per task."""
        return None

    def resource_usage(self, target: Target) -> list[ResourceUsage]:
        raise NotImplementedError("ECS: CloudWatch metrics not wired")

    def snapshot_config(self, target: Target) -> ConfigSnapshot:
        """Empty: an ECS service's configuration (env, secrets refs) lives in the immutable
        task definition, which the rollback itself pins and restores."""
        return ConfigSnapshot(items={})

    def restore_config(self, target: Target, snapshot: ConfigSnapshot) -> bool:
        """Nothing to restore separately (see ``snapshot_config``); always False."""
        return False

    # ================================================================ internals
    def _ecs(self, target: Target) -> Any:
        if self._client is not None:
            return self._client
        options = target.options or {}
        key = (options.get("region"), options.get("endpoint_url"))
        with self._lock:
            if key not in self._clients:
                session = self._session or boto3.session.Session()
                self._clients[key] = session.client("ecs", region_name=key[0],
                                                    endpoint_url=key[1], config=self._config)
            return self._clients[key]

    def _service(self, ecs: Any, target: Target) -> Mapping[str, Any]:
        with translate():
            response = ecs.describe_services(cluster=target.scope, services=[target.name])
        services = response.get("services") or []
        if not services or services[0].get("status") == "INACTIVE":
            reason = (response.get("failures") or [{}])[0].get("reason", "INACTIVE")
            raise TargetNotFound(f"service {target.name} not found in cluster "
                                 f"{target.scope} ({reason})")
        return dict(services[0])

    def _family(self, target: Target, primary: str | None) -> str:
        family = target.options.get("family") if target.options else None
        if family:
            return family
        if primary:
            return parse_task_definition_arn(primary)[0]
        raise PermanentPlatformError(f"{target.describe()}: no task family configured")

    def _active_family_arns(self, ecs: Any, family: str) -> list[str]:
        arns: list[str] = []
        with translate():
            pages = ecs.get_paginator("list_task_definitions").paginate(
                familyPrefix=family, status="ACTIVE", sort="DESC")
            for page in pages:
                for arn in page.get("taskDefinitionArns") or []:
                    if parse_task_definition_arn(str(arn))[0] == family:  # prefix != family
                        arns.append(str(arn))
                if len(arns) >= self._max_defs:
                    break
        return arns[: self._max_defs]

    def _describe(self, ecs: Any, arn: str) -> Mapping[str, Any]:
        """Always a fresh read (status can change); history reuses the cached copy."""
        with translate(task_definition=True):
            definition = dict(ecs.describe_task_definition(taskDefinition=arn)
                              ["taskDefinition"])
        with self._lock:
            self._defs[arn] = definition
        return definition

    def _revision(self, ecs: Any, arn: str, *, current: bool,
                  evidence: str | None) -> Revision:
        with self._lock:
            definition = self._defs.get(arn)
        if definition is None:
            definition = self._describe(ecs, arn)
        registered = definition.get("registeredAt")
        created = registered if isinstance(registered, datetime) else None
        when = created.strftime("%Y-%m-%d %H:%M UTC") if created else "at an unknown time"
        cause = evidence or (f"registered {when}; ACTIVE, no deployment record retained "
                             "by ECS")
        return Revision(
            id=str(definition.get("taskDefinitionArn") or arn),
            number=int(definition.get("revision") or parse_task_definition_arn(arn)[1]),
            images=tuple(str(c.get("image")) for c in definition.get("containerDefinitions")
                         or [] if c.get("image")),
            change_cause=cause, created=created, current=current)


# ---------------------------------------------------------------------- pure helpers
def _primary_task_definition(service: Mapping[str, Any]) -> str | None:
    for dep in service.get("deployments") or []:
        if dep.get("status") == "PRIMARY" and dep.get("taskDefinition"):
            return str(dep["taskDefinition"])
    value = service.get("taskDefinition")
    return str(value) if value else None


def stability(response: Mapping[str, Any], name: str) -> RolloutStatus:
    """RolloutStatus of one DescribeServices response under botocore's ServicesStable
    acceptors; additionally a PRIMARY deployment whose rolloutState is FAILED (deployment
    circuit breaker) is reported as failed, since it will never converge to what we asked."""
    verdict = evaluate_acceptors(response)
    services = response.get("services") or []
    if verdict == "failure" or not services:
        reason = (response.get("failures") or [{}])[0].get("reason") if not services else \
            services[0].get("status")
        return RolloutStatus(done=False, failed=True,
                             message=f"service {name} is {reason or 'MISSING'}")
    svc = services[0]
    deployments = svc.get("deployments") or []
    running, desired = int(svc.get("runningCount") or 0), int(svc.get("desiredCount") or 0)
    primary: Mapping[str, Any] = next(
        (d for d in deployments if d.get("status") == "PRIMARY"), {})
    where = short_name(primary.get("taskDefinition") or svc.get("taskDefinition"))
    if verdict == "success":
        return RolloutStatus(done=True, message=f"service {name} is stable: {running} of "
                                                f"{desired} tasks running on {where}")
    if primary.get("rolloutState") == "FAILED":
        return RolloutStatus(done=False, failed=True, message=f"service {name} deployment "
                             f"{primary.get('id')} failed: {primary.get('rolloutStateReason')}")
    parts = ", ".join(f"{d.get('status')} {short_name(d.get('taskDefinition'))} "
                      f"{d.get('runningCount', 0)}/{d.get('desiredCount', 0)}"
                      for d in deployments)
    return RolloutStatus(done=False, message=f"Waiting for service {name} to become stable: "
                         f"{running} of {desired} tasks running, {len(deployments)} "
                         f"deployment(s) [{parts}]...")


def _checked(status: RolloutStatus, raise_on_failure: bool) -> RolloutStatus:
    if raise_on_failure and status.failed:
        raise RolloutFailed(status.message)
    return status


__all__ = ["EcsPlatform", "stability"]
