"""ECS service deployments and service revisions: the simulator's record of every deployment
it starts, served as ListServiceDeployments, DescribeServiceDeployments and
DescribeServiceRevisions (moto implements none of them) in front of moto.
"""

# What ECS does, and where it comes from:
#   * "Whenever you create or deploy a service, Amazon ECS automatically creates and captures
#     the configuration that you're trying to deploy in the service revision" (botocore
#     data/ecs/2014-11-13/service-2.json, shape ServiceRevision): each CreateService and each
#     UpdateService that starts a deployment (in the simulator: a new task definition) makes
#     one service revision (taskDefinition, launchType, createdAt) and one service deployment
#     whose targetServiceRevision is it and whose sourceServiceRevisions are the revisions
#     still running then ("The currently deployed workload configuration", shape
#     ServiceDeployment), with their task counts (shape ServiceRevisionSummary).
#   * States (shape ServiceDeploymentStatus; developer guide "View service history using
#     Amazon ECS service deployments", service-deployment.html: Pending PENDING, Ongoing
#     IN_PROGRESS/STOP_REQUESTED/ROLLBACK_REQUESTED/ROLLBACK_IN_PROGRESS, Completed
#     SUCCESSFUL/STOPPED/ROLLBACK_SUCCESSFUL/ROLLBACK_FAILED): a deployment starts
#     IN_PROGRESS (the simulator starts tasks at once, so PENDING is never observed), is
#     SUCCESSFUL when the simulator's rollout COMPLETES; the circuit breaker without rollback
#     STOPS it ("The service deployment stops when ... The rollback option is not in use for
#     the failure detection mechanism ... and the service fails", ServiceDeployment.stoppedAt),
#     with rollback it is ROLLBACK_IN_PROGRESS, ``rollback`` naming the revision returned to
#     (shape Rollback), then ROLLBACK_SUCCESSFUL once that revision's rollout completes, or
#     ROLLBACK_FAILED when the circuit breaker fails the way back too. A
#     deployment still ongoing when a newer one starts is STOPPED (our reading: the newer
#     deployment replaces it; the statusReason wording is ours).
#   * The window: "You can see the most recent 90-day history for deployments" (developer
#     guide, view-service-deployment.html): ListServiceDeployments lists only deployments
#     created in the last ``WINDOW`` and DescribeServiceDeployments answers older ones as
#     failures with reason MISSING (the reason service-2.json gives for deployments it cannot
#     describe, DescribeServiceDeploymentsResponse.failures). Service revisions stay
#     describable (the one running now may be older than the window).
#   * ListServiceDeployments: ``service`` required, ``cluster`` default "default", filters
#     ``status`` (all when absent) and ``createdAt.before/after``; ``maxResults`` "between 1
#     and 100. If this parameter isn't used ... returns up to 20 results and a nextToken"
#     (ListServiceDeploymentsRequest). botocore has no paginator for it (paginators-1.json),
#     so clients page by hand. The order is not documented; we list newest first (as the
#     console and the aws-cli example, awscli/examples/ecs/list-service-deployments.rst, show
#     them) with a keyset token, so a deployment started between pages shifts nothing.
#   * Describe calls take "a maximum of 20 ARNs" (DescribeServiceDeploymentsRequest,
#     DescribeServiceRevisionsRequest): more is InvalidParameterException; unknown ARNs come
#     back as ``failures`` with reason MISSING; a missing cluster or service is
#     ClusterNotFoundException / ServiceNotFoundException (the operations' error lists).
#   * ARNs: ``service-deployment/<cluster>/<service>/<21 characters>`` and
#     ``service-revision/<cluster>/<service>/<19 digits>`` (aws-cli example above).
# Timestamps go on the wire as epoch seconds (the JSON protocol's default timestamp format).

from __future__ import annotations

import io
import json
import secrets
import string
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from .faults import TARGET_PREFIX, Environ, StartResponse, WsgiApp
from .paging import ApiError, InvalidParameter, keyset_page, page_size

WINDOW = timedelta(days=90)
DEFAULT_PAGE, MAX_PAGE, MAX_DESCRIBE = 20, 100, 20
OPERATIONS = ("ListServiceDeployments", "DescribeServiceDeployments",
              "DescribeServiceRevisions")
ONGOING = ("PENDING", "IN_PROGRESS", "STOP_REQUESTED", "ROLLBACK_REQUESTED",
           "ROLLBACK_IN_PROGRESS")
_ALPHABET = string.ascii_letters + string.digits


@dataclass
class _Deployment:
    arn: str
    service_arn: str
    cluster_arn: str
    service_key: tuple[str, str]  # (cluster name, service name)
    created: datetime
    target: dict[str, Any]  # ServiceRevisionSummary
    sources: list[dict[str, Any]]
    breaker: dict[str, Any]
    status: str = "IN_PROGRESS"
    reason: str | None = None
    finished: datetime | None = None
    stopped: datetime | None = None
    updated: datetime | None = None
    rollback: dict[str, Any] | None = None

    def brief(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "serviceDeploymentArn": self.arn, "serviceArn": self.service_arn,
            "clusterArn": self.cluster_arn, "createdAt": _epoch(self.created),
            "startedAt": _epoch(self.created), "targetServiceRevisionArn": self.target["arn"],
            "status": self.status}
        if self.finished is not None:
            out["finishedAt"] = _epoch(self.finished)
        if self.reason:
            out["statusReason"] = self.reason
        return out

    def full(self) -> dict[str, Any]:
        out = {k: v for k, v in self.brief().items() if k != "targetServiceRevisionArn"}
        out.update(targetServiceRevision=dict(self.target),
                   sourceServiceRevisions=[dict(s) for s in self.sources],
                   updatedAt=_epoch(self.updated or self.created))
        if self.stopped is not None:
            out["stoppedAt"] = _epoch(self.stopped)
        if self.breaker:
            out["deploymentCircuitBreaker"] = dict(self.breaker)
        if self.rollback is not None:
            out["rollback"] = dict(self.rollback)
        return out


@dataclass
class ServiceDeployments:
    """What ECS remembers of a service's deployments; the simulator reports to it (keyed by
    the service's own deployment ids, ``ecs-svc/...``), the middleware reads it. ``clock``
    is ECS's "now" (a test moves it to let deployments age out of the window)."""

    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _deployments: list[_Deployment] = field(default_factory=list)
    _by_id: dict[str, _Deployment] = field(default_factory=dict)  # ecs-svc id -> deployment
    _revisions: dict[str, dict[str, Any]] = field(default_factory=dict)
    _rollbacks: dict[str, _Deployment] = field(default_factory=dict)  # target id -> failed

    def forget(self) -> None:
        with self._lock:
            self._deployments, self._by_id, self._revisions, self._rollbacks = [], {}, {}, {}

    # ------------------------------------------------------------ simulator reports
    def started(self, *, deployment_id: str, service_arn: str, cluster_arn: str,
                cluster: str, service: str, task_definition: str, launch_type: str | None,
                desired: int, sources: Iterable[Mapping[str, Any]],
                breaker: Mapping[str, Any] | None) -> None:
        """A deployment of ``task_definition`` began; ``sources`` are the service's other
        deployments (simulator dicts) at that moment."""
        with self._lock:
            at = self.clock()
            prefix = service_arn.split(":service/")[0]
            revision_arn = (f"{prefix}:service-revision/{cluster}/{service}/"
                            f"{secrets.randbelow(10**19):019d}")
            self._revisions[revision_arn] = {
                "serviceRevisionArn": revision_arn, "serviceArn": service_arn,
                "clusterArn": cluster_arn, "taskDefinition": task_definition,
                "launchType": launch_type or "EC2", "loadBalancers": [],
                "createdAt": _epoch(at)}
            summaries = []
            for dep in sources:
                known = self._by_id.get(str(dep.get("id")))
                if known is not None:
                    summaries.append(dict(
                        arn=known.target["arn"],
                        requestedTaskCount=int(dep.get("desiredCount") or 0),
                        runningTaskCount=int(dep.get("runningCount") or 0),
                        pendingTaskCount=int(dep.get("pendingCount") or 0)))
            for ongoing in self._deployments:
                if ongoing.service_key == (cluster, service) and ongoing.status in ONGOING:
                    ongoing.status, ongoing.stopped = "STOPPED", at
                    ongoing.finished = ongoing.updated = at
                    ongoing.reason = "Stopped: a newer service deployment started."
            arn = (f"{prefix}:service-deployment/{cluster}/{service}/"
                   + "".join(secrets.choice(_ALPHABET) for _ in range(21)))
            threshold = breaker or {}
            record = _Deployment(
                arn, service_arn, cluster_arn, (cluster, service), at,
                {"arn": revision_arn, "requestedTaskCount": desired, "runningTaskCount": 0,
                 "pendingTaskCount": 0}, summaries,
                {"status": "MONITORING" if threshold.get("enable") else "DISABLED",
                 "failureCount": 0, "threshold": int(threshold.get("threshold") or 0)}
                if threshold else {})
            self._deployments.append(record)
            self._by_id[deployment_id] = record

    def counted(self, deployment_id: str, *, running: int, pending: int, failed: int) -> None:
        with self._lock:
            record = self._by_id.get(deployment_id)
            if record is None:
                return
            record.target = dict(record.target, runningTaskCount=running,
                                 pendingTaskCount=pending)
            if record.breaker:
                record.breaker = dict(record.breaker, failureCount=failed)

    def completed(self, deployment_id: str) -> None:
        """The rollout of ``deployment_id`` completed: SUCCESSFUL, or, when it was the
        circuit breaker's way back, the failed deployment's rollback succeeded."""
        with self._lock:
            at = self.clock()
            record = self._by_id.get(deployment_id)
            if record is not None and record.status in ONGOING:
                record.status, record.finished, record.updated = "SUCCESSFUL", at, at
                record.reason = None
            failed = self._rollbacks.pop(deployment_id, None)
            if failed is not None and failed.status == "ROLLBACK_IN_PROGRESS":
                failed.status, failed.finished, failed.updated = "ROLLBACK_SUCCESSFUL", at, at

    def failed(self, deployment_id: str, *, reason: str, back_to: str | None) -> None:
        """The circuit breaker failed ``deployment_id``; ``back_to`` is the deployment it
        rolls back to (None: no rollback). When ``deployment_id`` is itself the way back of
        an earlier failed deployment, that rollback failed: the failed deployment becomes
        ROLLBACK_FAILED (an enum value of shape ServiceDeploymentStatus in botocore
        data/ecs/2014-11-13/service-2.json; a Completed state in the developer guide,
        service-deployment.html) and the target's own, long finished record is left as it
        was."""
        with self._lock:
            at = self.clock()
            rolled_back = self._rollbacks.pop(deployment_id, None)
            if rolled_back is not None:
                if rolled_back.status == "ROLLBACK_IN_PROGRESS":
                    rolled_back.status = "ROLLBACK_FAILED"
                    rolled_back.finished = rolled_back.updated = at
                return
            record = self._by_id.get(deployment_id)
            if record is None:
                return
            record.reason, record.updated = reason, at
            if record.breaker:
                record.breaker = dict(record.breaker, status="TRIGGERED")
            previous = self._by_id.get(back_to) if back_to else None
            if previous is None:
                record.status, record.stopped, record.finished = "STOPPED", at, at
                return
            record.status = "ROLLBACK_IN_PROGRESS"
            record.rollback = {"reason": reason, "startedAt": _epoch(at),
                               "serviceRevisionArn": previous.target["arn"]}
            self._rollbacks[str(back_to)] = record

    # --------------------------------------------------------------------- wire
    def list(self, body: Mapping[str, Any], service_arn: str) -> dict[str, Any]:
        statuses = body.get("status")
        created = body.get("createdAt") or {}
        size = page_size(body.get("maxResults"), default=DEFAULT_PAGE, maximum=MAX_PAGE)
        with self._lock:
            since = self.clock() - WINDOW
            found = [d for d in self._deployments if d.service_arn == service_arn
                     and d.created >= since
                     and (not statuses or d.status in statuses)
                     and ("before" not in created or _epoch(d.created) < float(created["before"]))
                     and ("after" not in created or _epoch(d.created) > float(created["after"]))]
            keys = sorted(((_epoch(d.created), d.arn), d) for d in found)
            keys.reverse()  # newest first
            page, token = keyset_page(keys, size, body.get("nextToken"), parse=_key,
                                      past=lambda key, after: key < after)
            answer: dict[str, Any] = {"serviceDeployments": [d.brief() for d in page]}
        if token is not None:
            answer["nextToken"] = token
        return answer

    def describe_deployments(self, body: Mapping[str, Any]) -> dict[str, Any]:
        arns = _arns(body, "serviceDeploymentArns")
        with self._lock:
            since = self.clock() - WINDOW
            known = {d.arn: d for d in self._deployments if d.created >= since}
            return {"serviceDeployments": [known[a].full() for a in arns if a in known],
                    "failures": [{"arn": a, "reason": "MISSING"} for a in arns
                                 if a not in known]}

    def describe_revisions(self, body: Mapping[str, Any]) -> dict[str, Any]:
        arns = _arns(body, "serviceRevisionArns")
        with self._lock:
            return {"serviceRevisions": [dict(self._revisions[a]) for a in arns
                                         if a in self._revisions],
                    "failures": [{"arn": a, "reason": "MISSING"} for a in arns
                                 if a not in self._revisions]}


def _arns(body: Mapping[str, Any], key: str) -> list[str]:
    arns = body.get(key)
    if not isinstance(arns, list) or not arns:
        raise InvalidParameter(f"{key} must not be empty.")
    if len(arns) > MAX_DESCRIBE:
        raise InvalidParameter(f"{key} can have at most {MAX_DESCRIBE} elements.")
    return [str(a) for a in arns]


def _epoch(at: datetime) -> float:
    return at.timestamp()


def _key(decoded: Any) -> tuple[float, str]:
    created, arn = decoded
    return float(created), str(arn)


ServiceLookup = Callable[[str, str], str]  # (cluster, service) -> service ARN, or ApiError


def serve_service_deployments(app: WsgiApp, record: ServiceDeployments,
                              lookup: ServiceLookup) -> WsgiApp:
    """WSGI middleware: answer the three service-deployment operations from ``record``
    (``lookup`` resolves a cluster/service as moto knows them), pass the rest to ``app``."""

    def middleware(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        target = str(environ.get("HTTP_X_AMZ_TARGET") or "")
        operation = target[len(TARGET_PREFIX):] if target.startswith(TARGET_PREFIX) else ""
        if operation not in OPERATIONS:
            return app(environ, start_response)
        length = int(environ.get("CONTENT_LENGTH") or 0)
        raw = environ["wsgi.input"].read(length) if length else b""
        environ["wsgi.input"] = io.BytesIO(raw)
        try:
            body = json.loads(raw) if raw else {}
            if not isinstance(body, dict):
                raise InvalidParameter("The request body is invalid.")
            if operation == "ListServiceDeployments":
                if not body.get("service"):
                    raise InvalidParameter("service is required.")
                service_arn = lookup(str(body.get("cluster") or "default"),
                                     str(body["service"]))
                payload = record.list(body, service_arn)
            elif operation == "DescribeServiceDeployments":
                payload = record.describe_deployments(body)
            else:
                payload = record.describe_revisions(body)
            status = "200 OK"
        except ApiError as exc:
            payload, status = {"__type": exc.code, "message": str(exc)}, "400 Bad Request"
        except (ValueError, TypeError) as exc:
            payload = {"__type": "InvalidParameterException", "message": str(exc)}
            status = "400 Bad Request"
        data = json.dumps(payload).encode()
        start_response(status, [("Content-Type", "application/x-amz-json-1.1"),
                                ("Content-Length", str(len(data))),
                                ("x-amzn-RequestId", "00000000-0000-0000-0000-000000000002")])
        return [data]

    return middleware
