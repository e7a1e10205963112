"""AWS ECS adapter (boto3): roll a service back to a pinned task-definition ARN, wait with
botocore's ``services_stable`` semantics while reporting progress, scale desiredCount, wait
for every task to stop, and confirm what actually runs afterwards; show the tasks' logs
(CloudWatch Logs, awslogs driver), the service's CPU/memory (CloudWatch AWS/ECS metrics), a
task definition's summary and the configuration that differs between two task definitions.

The module ends with ``SPEC``: this platform as data for the registry (config block, target,
factory, words, what it cannot do).
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
#   * at most ``max_task_definitions`` (100) ACTIVE revisions, the newest: ListTaskDefinitions
#     with sort=DESC lists a family's newest revision first (botocore service-2.json,
#     ListTaskDefinitionsRequest.sort) in pages of up to 100; the adapter stops paging once it
#     has the cap. The deployments' task definitions are listed whatever their age, so the
#     current revision is always there even when 100 newer ones were registered.
#   * a revision registered by a pipeline that never deployed it looks the same in the task
#     definitions as one that was deployed and replaced; ECS's service deployments (the last
#     90 days, platforms/_ecs_deployments.py) tell them apart: ``Revision.ran`` is True for a
#     task definition a deployment targeted, False for one registered within the covered
#     window that none did (the planner's "previous" never picks it), None where the record
#     does not reach or the API is unavailable; then ``change_cause`` says "no deployment
#     record retained by ECS", never "deployed".
#
# Observability and IAM (platforms/_ecs_observe.py has the details): logs_tail reads the
# awslogs streams of the service's newest tasks (logs:GetLogEvents), resource_usage the
# service's CPUUtilization/MemoryUtilization (cloudwatch:GetMetricData), both next to
# ecs:ListTasks, ecs:DescribeTasks and ecs:DescribeTaskDefinition. Logs and metrics clients
# are built like the ECS one (same session, endpoint_url when configured); the awslogs region
# comes from the task definition's ``awslogs-region``.
#
# Why "stable" is not "rolled back": with the deployment circuit breaker on and rollback=true,
# a deployment whose tasks fail to start goes rolloutState FAILED and ECS makes the last
# COMPLETED deployment PRIMARY again. Once the failed one has drained, the service satisfies
# ``services_stable`` while running the *old* task definition, i.e. the bad version the
# rollback moved away from. So the wait fails as soon as it sees a FAILED deployment, and
# ``confirm_running`` checks the PRIMARY's task definition, its rolloutState, the task
# definitions of the RUNNING tasks and the service events that record a revert.
#
# Why "runningCount 0" is not "stopped": runningCount counts tasks whose lastStatus is
# RUNNING; tasks being stopped (desiredStatus STOPPED) spend up to their stopTimeout in
# DEACTIVATING/STOPPING/DEPROVISIONING and still hold connections and database sessions.
# ``wait_for_stopped`` therefore also reads every task of the service (ListTasks for both
# desiredStatus values, then DescribeTasks), like botocore's ``tasks_stopped`` waiter.
#
# Fenced writes, and what ECS leaves open. UpdateService has no conditional form: no version,
# no precondition, no client token (botocore data/ecs/2014-11-13/service-2.json, shape
# UpdateServiceRequest), so the server cannot refuse a write whose decision went stale. What
# the adapter does instead, for ``rollback_to`` and ``scale`` alike:
#   1. decide on a fresh DescribeServices (``rollback_to`` with ``expected``: anything but the
#      revision the plan moves away from, or the pinned one, is TargetChanged, nothing sent);
#   2. read again right before UpdateService and send only if the PRIMARY deployment (and, for
#      scale, desiredCount) is still what the decision saw, else WriteConflict;
#   3. never let botocore resend an UpdateService on its own (``never_resend_writes``);
#   4. an UpdateService that got no answer (read timeout, connection closed, 5xx) is "in
#      doubt": the next attempt first waits, up to ``in_doubt_grace`` seconds after it was sent,
#      for it to land, and only then reads and decides again. If it lands, the retry sends
#      nothing, and no request of ours is left on the wire when the rollback completes.
# What remains: a request ECS holds longer than ``in_doubt_grace`` and applies after someone
# deployed something newer overwrites that newer deploy; nothing client-side can stop it. The
# retry's result then carries a warning for the channel, and the in-doubt record lives in this
# process only (a re-claiming replica just reads and decides). A cancelled rollback whose
# request lands late is not fenced either: there is no newer change to fence on.

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import boto3
from botocore.config import Config
from pydantic import BaseModel, ConfigDict, Field

from platforms._ecs_deployments import DeploymentRecord, deployment_record
from platforms._ecs_observe import (
    config_differences,
    denied,
    metric_queries,
    metric_window,
    now_utc,
    revision_detail,
    service_usage,
    tail_task_logs,
)
from platforms._ecs_support import (
    Revert,
    chunks,
    evaluate_acceptors,
    never_resend_writes,
    outcome_unknown,
    parse_task_definition_arn,
    revert_from_events,
    services_stable_model,
    short_name,
    translate,
    waiter_model,
)
from platforms.base import (
    Capability,
    ConfigDifference,
    ConfigSnapshot,
    PermanentPlatformError,
    Platform,
    PlatformSpec,
    ProgressCallback,
    ResourceUsage,
    Revision,
    RevisionDetail,
    RevisionNotFound,
    RollbackResult,
    RolloutFailed,
    RolloutStatus,
    RunningCheck,
    SecretReader,
    Target,
    TargetNotFound,
    TransientPlatformError,
    Unsupported,
    WriteConflict,
    refuse_if_changed,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _InDoubt:
    """An UpdateService that got no answer: ``field`` was being set from ``before`` to
    ``value``; ECS may apply it until ``deadline`` (monotonic) as far as we wait for it."""

    field: str  # "taskDefinition" or "desiredCount"
    value: str | int
    before: str | int
    sent_at: datetime
    deadline: float

    def current(self, service: Mapping[str, Any]) -> str | int:
        if self.field == "desiredCount":
            return int(service.get("desiredCount") or 0)
        return _primary_task_definition(service) or "?"

    def describe(self) -> str:
        value = short_name(str(self.value)) if self.field == "taskDefinition" else self.value
        return f"{self.field} {value}, sent at {self.sent_at:%H:%M:%S} UTC"


class EcsPlatform:
    """``Platform`` for ECS services. Target: scope = cluster, name = service; options
    ``family`` (task-definition family), ``region`` and optional ``endpoint_url``.

    ``client`` is used as given for every target (tests); otherwise one boto3 client per
    (region, endpoint_url) from ``session`` (default credential chain), whose reads botocore
    retries and whose every call is bounded by ``request_timeout``. Either way botocore never
    resends an UpdateService (see the module comment on fencing). ``poll_interval`` overrides
    the waiter's own delay (15 s) between DescribeServices calls; ``in_doubt_grace`` is how
    long after sending an UpdateService that got no answer a retry waits for it to land.

    ``logs_client``/``cloudwatch_client`` are used as given (tests); otherwise they are built
    like the ECS client, and when only ``client`` was given, with its credentials and, unless
    it talks to AWS itself, its endpoint (an emulator serves every service on one port).
    ``history`` lists at most ``max_task_definitions`` ACTIVE revisions (the newest) plus the
    deployments' task definitions; ``logs_tail`` reads the ``max_log_tasks`` newest tasks;
    ``resource_usage`` looks back ``metrics_minutes`` for a datapoint."""

    name = "ecs"

    def __init__(self, *, client: Any | None = None, session: Any | None = None,
                 poll_interval: float | None = None, max_task_definitions: int = 100,
                 request_timeout: float = 30.0, in_doubt_grace: float = 60.0,
                 logs_client: Any | None = None, cloudwatch_client: Any | None = None,
                 max_log_tasks: int = 3, metrics_minutes: int = 10,
                 now: Callable[[], datetime] = now_utc) -> None:
        self._given = {"logs": logs_client, "cloudwatch": cloudwatch_client}
        self._max_log_tasks = max_log_tasks
        self._metrics_minutes = metrics_minutes
        self._now = now
        self._client = never_resend_writes(client) if client is not None else None
        self._session = session
        self._poll = poll_interval
        self._max_defs = max_task_definitions
        self._grace = in_doubt_grace
        self._config = Config(connect_timeout=request_timeout, read_timeout=request_timeout,
                              retries={"mode": "standard", "max_attempts": 3})
        self._clients: dict[tuple[str, str | None, str | None], Any] = {}
        self._defs: dict[str, Mapping[str, Any]] = {}  # task definitions are immutable
        self._in_doubt: dict[tuple[str, str], _InDoubt] = {}
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
        record = deployment_record(ecs, target.scope, target.name, now=self._now())
        revisions = [self._revision(ecs, arn, current=arn == primary,
                                    evidence=evidence.get(arn), record=record) for arn in arns]
        revisions.sort(key=lambda r: (r.number, r.current), reverse=True)
        return revisions

    def current_revision(self, target: Target) -> Revision:
        for revision in self.history(target):
            if revision.current:
                return revision
        raise RevisionNotFound(f"service {target.scope}/{target.name} has no task definition")

    def rollback_to(self, target: Target, revision: Revision, *, dry_run: bool = False,
                    expected: Revision | None = None) -> RollbackResult:
        """``update_service(taskDefinition=<pinned ARN>)``; skipped when PRIMARY already runs it.
        Fenced (module comment): refused with TargetChanged when PRIMARY runs neither
        ``expected`` nor the pinned ARN; WriteConflict when PRIMARY moves between the decision
        and the write."""
        ecs = self._ecs(target)
        note = "" if dry_run else self._settle_in_doubt(ecs, target)
        service = self._service(ecs, target)
        label = short_name(revision.id)
        running = _primary_task_definition(service) or "?"
        refuse_if_changed(target, running_id=running,
                          running_label=f"task definition {short_name(running)} ({running})",
                          revision=revision, expected=expected)
        if running == revision.id:
            return RollbackResult(False, f"skipped rollback (service/{target.name} already "
                                         f"runs task definition {label})" + note)
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
        updated = self._fenced_update(ecs, target, seen=service, field="taskDefinition",
                                      value=revision.id)
        deployment: Mapping[str, Any] = next((d for d in updated.get("deployments") or []
                           if d.get("status") == "PRIMARY"), {})
        return RollbackResult(True, f"service/{target.name} rolled back to {label} "
                                    f"(deployment {deployment.get('id', '?')})" + note)

    def rollout_status(self, target: Target, *, raise_on_failure: bool = False) -> RolloutStatus:
        with translate():
            response = self._ecs(target).describe_services(cluster=target.scope,
                                                           services=[target.name])
        return _checked(stability(response, target.name), raise_on_failure)

    def wait_for_rollout(self, target: Target, *, timeout: float,
                         on_progress: ProgressCallback | None = None,
                         raise_on_failure: bool = False) -> RolloutStatus:
        """Poll DescribeServices every waiter delay (or ``poll_interval``) until the
        ``ServicesStable`` acceptors say success or failure, a deployment's rolloutState goes
        FAILED (circuit breaker), or ``timeout`` elapses."""
        interval = self._poll if self._poll is not None else services_stable_model().delay

        def check(ecs: Any) -> RolloutStatus:
            with translate():
                response = ecs.describe_services(cluster=target.scope, services=[target.name])
            return stability(response, target.name)

        status = self._poll_until(target, check, timeout=timeout, interval=interval,
                                  on_progress=on_progress,
                                  what=f"service {target.name} to become stable")
        return _checked(status, raise_on_failure)

    def get_replicas(self, target: Target) -> int:
        return int(self._service(self._ecs(target), target).get("desiredCount") or 0)

    def scale(self, target: Target, replicas: int) -> None:
        """``update_service(desiredCount=replicas)``, fenced like ``rollback_to``: decided on
        a fresh read, sent only if desiredCount and the PRIMARY deployment did not move."""
        if replicas < 0:
            raise PermanentPlatformError(f"desiredCount must be >= 0, got {replicas}")
        ecs = self._ecs(target)
        note = self._settle_in_doubt(ecs, target)
        if note:
            log.warning("ecs: %s: %s", target.describe(), note.lstrip("; "))
        service = self._service(ecs, target)
        if int(service.get("desiredCount") or 0) == replicas:
            return
        self._fenced_update(ecs, target, seen=service, field="desiredCount", value=replicas)

    def wait_for_stopped(self, target: Target, *, timeout: float,
                         on_progress: ProgressCallback | None = None) -> RolloutStatus:
        """After ``scale(target, 0)``: until runningCount and pendingCount are 0 and every
        task of the service has lastStatus STOPPED; polls every ``poll_interval`` (default:
        botocore's ``tasks_stopped`` delay). Fails at once if desiredCount is no longer 0."""
        interval = self._poll if self._poll is not None else waiter_model("TasksStopped").delay
        return self._poll_until(target, lambda ecs: self._stopped_status(ecs, target),
                                timeout=timeout, interval=interval, on_progress=on_progress,
                                what=f"service {target.name} to stop")

    def confirm_running(self, target: Target, revision: Revision) -> RunningCheck:
        """The PRIMARY deployment runs ``revision.id`` with rolloutState COMPLETED, it is the
        only deployment, runningCount == desiredCount, every RUNNING task runs that ARN, and
        no circuit-breaker revert happened (see the module comment)."""
        ecs = self._ecs(target)
        service = self._service(ecs, target)
        deployments = list(service.get("deployments") or [])
        primary: Mapping[str, Any] = next(
            (d for d in deployments if d.get("status") == "PRIMARY"), {})
        arn = str(primary.get("taskDefinition") or service.get("taskDefinition") or "?")
        rollout = primary.get("rolloutState")  # absent for CODE_DEPLOY / Classic LB services
        running, desired = int(service.get("runningCount") or 0), \
            int(service.get("desiredCount") or 0)
        up = Counter(str(t.get("taskDefinitionArn")) for t in
                     self._service_tasks(ecs, target, ("RUNNING",))
                     if t.get("lastStatus") == "RUNNING")
        # a revert *to* the pinned revision is harmless; only one away from it is reported
        revert = _revert(service, primary) if arn != revision.id else None
        problems = []
        if arn != revision.id:
            problems.append(f"the PRIMARY deployment runs {arn}, not the pinned {revision.id}")
        if rollout not in (None, "COMPLETED"):
            reason = primary.get("rolloutStateReason")
            problems.append(f"rolloutState {rollout}" + (f" ({reason})" if reason else ""))
        if len(deployments) > 1:
            problems.append(f"{len(deployments) - 1} other deployment(s) still listed")
        if running != desired:
            problems.append(f"{running} of {desired} tasks running")
        strays = {k: v for k, v in up.items() if k not in (revision.id, arn)}
        if strays:
            problems.append("tasks of other task definitions running: " + _tally(strays))
        if revert is not None:
            problems.append("reverted by the ECS deployment circuit breaker")
        state = f"rolloutState {rollout}" if rollout else "no rolloutState"
        if rollout == "FAILED" and primary.get("rolloutStateReason"):
            state += f": {primary.get('rolloutStateReason')}"
        where = short_name(arn) if arn in up else arn  # the tally already names the full ARN
        summary = (f"{_tally(up) or 'no task RUNNING'} (PRIMARY deployment "
                   f"{primary.get('id', '?')} on {where}, {state}, "
                   f"{primary.get('runningCount', 0)}/{primary.get('desiredCount', 0)} running)")
        if revert is not None:
            summary += f"; {revert.describe(short_name(arn))}"
        return RunningCheck(matches=not problems, running=summary, detail="; ".join(problems))

    # The capabilities this adapter lacks, each with its reason, are in SPEC.unsupported.
    def logs_tail(self, target: Target, *, lines: int = 100) -> str:
        """The last ``lines`` CloudWatch Logs events of each awslogs container of the
        service's ``max_log_tasks`` newest tasks (RUNNING or recently STOPPED, the latter with
        their stop code, reason and exit codes): a deployment whose tasks crash shows why.
        ``Unsupported`` when no container logs to CloudWatch per task or IAM denies it."""
        ecs = self._ecs(target)
        self._service(ecs, target)  # TargetNotFound before anything else
        tasks = sorted(self._service_tasks(ecs, target, ("RUNNING", "STOPPED")),
                       key=lambda t: (t.get("createdAt") or datetime.min.replace(tzinfo=UTC),
                                      t.get("desiredStatus") == "RUNNING"),
                       reverse=True)[: self._max_log_tasks]
        region = (target.options or {}).get("region")
        with translate():
            return tail_task_logs(
                lambda where: self._aws(target, "logs", where or region), tasks,
                lambda arn: self._cached(ecs, arn), lines=lines, platform=SPEC.name)

    def resource_usage(self, target: Target) -> list[ResourceUsage]:
        """The service's mean task from CloudWatch CPUUtilization/MemoryUtilization (AWS/ECS,
        ClusterName + ServiceName), converted with the PRIMARY task definition's cpu/memory:
        one entry, see platforms/_ecs_observe.py. [] when no task is RUNNING; ``Unsupported``
        when CloudWatch has no recent datapoint (unknown is not "nothing runs")."""
        ecs = self._ecs(target)
        service = self._service(ecs, target)
        running = int(service.get("runningCount") or 0)
        if running == 0:
            return []
        definition = self._cached(ecs, _primary_task_definition(service) or "?")
        try:
            with translate():
                response = self._aws(target, "cloudwatch").get_metric_data(
                    MetricDataQueries=metric_queries(target.scope, target.name),
                    **metric_window(self._now(), self._metrics_minutes))
        except PermanentPlatformError as exc:
            if denied(exc.__cause__):
                raise Unsupported(SPEC.name, Capability.RESOURCE_USAGE,
                                  f"IAM denies cloudwatch:GetMetricData ({exc})") from None
            raise
        return service_usage(response, definition, service=target.name, running=running,
                             minutes=self._metrics_minutes, platform=SPEC.name)

    def snapshot_config(self, target: Target) -> ConfigSnapshot:
        """Nothing separate to snapshot: an ECS service's configuration (env, secrets refs)
        lives in the immutable task definition, which the rollback itself pins and restores."""
        raise SPEC.refuse(Capability.CONFIG_SNAPSHOTS)

    def describe_revision(self, target: Target, number: int) -> RevisionDetail:
        """Revision ``number`` of the history as its task definition says: family:revision,
        status, images per container, cpu/memory, environment keys (no values), secret
        references, awslogs group, registeredAt/registeredBy, the history's change-cause."""
        history = self.history(target)
        found = next((rev for rev in history if rev.number == number), None)
        if found is None:
            raise RevisionNotFound(f"revision {number} not found in history (the newest "
                                   f"{self._max_defs} ACTIVE task definitions of the family "
                                   "and the service's deployments)",
                                   known=tuple(rev.number for rev in history))
        return revision_detail(found, self._cached(self._ecs(target), found.id))

    def config_differences(self, target: Target, running: Revision,
                           pinned: Revision) -> list[ConfigDifference]:
        """Image, environment (literals masked), secret references (``valueFrom``), environment
        files and task cpu/memory that change when the pinned task definition replaces the
        running one. Task definitions are immutable, so this is exactly what the rollback
        changes in the service's configuration."""
        ecs = self._ecs(target)
        return config_differences(self._cached(ecs, running.id), self._cached(ecs, pinned.id))

    def restore_config(self, target: Target, snapshot: ConfigSnapshot) -> bool:
        """Nothing to restore separately (see ``snapshot_config``)."""
        raise SPEC.refuse(Capability.CONFIG_SNAPSHOTS)

    # ================================================================ internals
    def _fenced_update(self, ecs: Any, target: Target, *, seen: Mapping[str, Any], field: str,
                       value: str | int) -> Mapping[str, Any]:
        """UpdateService setting ``field`` to ``value``, sent only if a read right now finds
        the service as ``seen`` (PRIMARY deployment; desiredCount too when scaling). No answer
        leaves it in doubt for the next attempt (see ``_settle_in_doubt``)."""
        fresh = self._service(ecs, target)
        if _fence(fresh, field) != _fence(seen, field):
            raise WriteConflict(
                f"service {target.name} changed while this attempt decided (was "
                f"{_fence_text(seen, field)}, now {_fence_text(fresh, field)}); nothing sent, "
                "the next attempt reads it again")
        before = (int(fresh.get("desiredCount") or 0) if field == "desiredCount"
                  else _primary_task_definition(fresh) or "?")
        sent_at, sent = datetime.now(UTC), time.monotonic()
        try:
            with translate(task_definition=field == "taskDefinition"):
                response = ecs.update_service(cluster=target.scope, service=target.name,
                                              **{field: value})
        except TransientPlatformError as exc:
            if not outcome_unknown(exc.__cause__):
                raise
            doubt = _InDoubt(field, value, before, sent_at, sent + self._grace)
            with self._lock:
                self._in_doubt[(target.scope, target.name)] = doubt
            raise TransientPlatformError(
                f"UpdateService ({doubt.describe()}) got no answer: {exc}. ECS may still "
                "apply it; it was not resent, and the next attempt waits up to "
                f"{self._grace:g}s after it was sent for it to land, then reads the service "
                "again before deciding", retry_after=exc.retry_after) from exc
        return dict(response["service"])

    def _settle_in_doubt(self, ecs: Any, target: Target) -> str:
        """Before deciding again after an UpdateService that got no answer: wait (polling
        DescribeServices) until it has landed, the service went elsewhere, or the grace after
        sending it is over. Returns a note for the result ("" when nothing was in doubt)."""
        key = (target.scope, target.name)
        with self._lock:
            doubt = self._in_doubt.get(key)
        if doubt is None:
            return ""
        interval = self._poll if self._poll is not None else 1.0
        pause = threading.Event()
        while True:
            service = self._service(ecs, target)  # a failure keeps the record for next time
            now = doubt.current(service)
            if now == doubt.value:
                note = (f"; the earlier UpdateService that got no answer ({doubt.describe()}) "
                        "had landed, so nothing was sent again")
                break
            if now != doubt.before:
                note = (f"; warning: an earlier UpdateService that got no answer "
                        f"({doubt.describe()}) has not landed, and {doubt.field} is now {now}: "
                        "ECS has no conditional update and may still apply it")
                break
            remaining = doubt.deadline - time.monotonic()
            if remaining <= 0:
                note = (f"; warning: an earlier UpdateService that got no answer "
                        f"({doubt.describe()}) had not landed {self._grace:g}s after it was "
                        "sent: ECS has no conditional update and may still apply it, so check "
                        f"service {target.name} before deploying anything else")
                break
            pause.wait(min(interval, remaining))
        with self._lock:
            if self._in_doubt.get(key) is doubt:
                del self._in_doubt[key]
        log.info("ecs: %s%s", target.describe(), note)
        return note

    def _poll_until(self, target: Target, check: Callable[[Any], RolloutStatus], *,
                    timeout: float, interval: float, on_progress: ProgressCallback | None,
                    what: str) -> RolloutStatus:
        ecs = self._ecs(target)
        deadline = time.monotonic() + timeout
        last = ""
        pause = threading.Event()
        while True:
            try:
                status = check(ecs)
            except TransientPlatformError as exc:
                log.warning("polling %s failed, retrying: %s", target.describe(), exc)
                status = RolloutStatus(done=False, message=f"transient error: {exc}")
            else:
                if on_progress is not None and status.message != last:
                    on_progress(status.message)
                if status.done or status.failed:
                    return status
            last = status.message
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return RolloutStatus(done=False, message=f"timed out waiting for {what} "
                                     f"after {timeout:g}s: {last.rstrip('.')}")
            pause.wait(min(interval, remaining))

    def _stopped_status(self, ecs: Any, target: Target) -> RolloutStatus:
        service = self._service(ecs, target)
        name = target.name
        desired = int(service.get("desiredCount") or 0)
        running = int(service.get("runningCount") or 0)
        pending = int(service.get("pendingCount") or 0)
        if desired:
            return RolloutStatus(done=False, failed=True, message=(
                f"service {name} has desiredCount {desired} again (scaled up by someone or "
                "something else, e.g. an autoscaling policy); its tasks will not stop"))
        tasks = self._service_tasks(ecs, target, ("RUNNING", "STOPPED"))
        live = [t for t in tasks if t.get("lastStatus") != "STOPPED"]
        if not live and not running and not pending:
            return RolloutStatus(done=True, message=f"service {name} stopped: runningCount 0, "
                                                    f"every task STOPPED ({len(tasks)} listed)")
        if not live:
            return RolloutStatus(done=False, message=f"service {name}: runningCount {running}, "
                                                     f"pendingCount {pending}, no task listed")
        states = Counter(str(t.get("lastStatus")) for t in live)
        detail = ", ".join(f"{n} {state}" for state, n in sorted(states.items()))
        noun = "task" if len(live) == 1 else "tasks"
        return RolloutStatus(done=False, message=f"{len(live)} {noun} still running "
                                                 f"({detail}); runningCount {running}")

    def _service_tasks(self, ecs: Any, target: Target,
                       desired_statuses: Sequence[str]) -> list[Mapping[str, Any]]:
        """Every task of the service with one of ``desired_statuses`` (ListTasks defaults to
        RUNNING only; STOPPED lists tasks being stopped as well as recently stopped ones)."""
        arns: list[str] = []
        with translate():
            for status in desired_statuses:
                pages = ecs.get_paginator("list_tasks").paginate(
                    cluster=target.scope, serviceName=target.name, desiredStatus=status)
                for page in pages:
                    arns += [str(a) for a in page.get("taskArns") or [] if a not in arns]
            tasks: list[Mapping[str, Any]] = []
            for chunk in chunks(arns, 100):  # DescribeTasks takes up to 100 tasks
                tasks += ecs.describe_tasks(cluster=target.scope, tasks=chunk)["tasks"]
        return tasks

    def _ecs(self, target: Target) -> Any:
        if self._client is not None:
            return self._client
        options = target.options or {}
        key = ("ecs", options.get("region"), options.get("endpoint_url"))
        with self._lock:
            if key not in self._clients:
                session = self._session or boto3.session.Session()
                self._clients[key] = never_resend_writes(session.client(
                    "ecs", region_name=key[1], endpoint_url=key[2], config=self._config))
            return self._clients[key]

    def _aws(self, target: Target, service: str, region: str | None = None) -> Any:
        """A ``logs`` or ``cloudwatch`` client for ``target`` (in ``region``, default the
        target's): the one given, else built like ``_ecs`` (see the class docstring)."""
        if self._given.get(service) is not None:
            return self._given[service]
        options = target.options or {}
        region = region or options.get("region")
        endpoint = options.get("endpoint_url")
        session = self._session
        if self._client is not None and session is None:
            meta = self._client.meta
            region = region or meta.region_name
            if endpoint is None and "amazonaws.com" not in str(meta.endpoint_url):
                endpoint = meta.endpoint_url  # an emulator: one port for every service
            credentials = self._client._get_credentials()
            session = boto3.session.Session(
                aws_access_key_id=getattr(credentials, "access_key", None),
                aws_secret_access_key=getattr(credentials, "secret_key", None),
                aws_session_token=getattr(credentials, "token", None))
        key = (service, region, endpoint)
        with self._lock:
            if key not in self._clients:
                session = session or boto3.session.Session()
                self._clients[key] = session.client(service, region_name=region,
                                                    endpoint_url=endpoint, config=self._config)
            return self._clients[key]

    def _cached(self, ecs: Any, arn: str) -> Mapping[str, Any]:
        """A task definition, from the cache when read before (they are immutable)."""
        with self._lock:
            definition = self._defs.get(arn)
        return definition if definition is not None else self._describe(ecs, arn)

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

    def _revision(self, ecs: Any, arn: str, *, current: bool, evidence: str | None,
                  record: DeploymentRecord | None = None) -> Revision:
        definition = self._cached(ecs, arn)
        registered = definition.get("registeredAt")
        created = registered if isinstance(registered, datetime) else None
        when = created.strftime("%Y-%m-%d %H:%M UTC") if created else "at an unknown time"
        ran = (record.ran_on_service(str(definition.get("taskDefinitionArn") or arn), created)
               if record is not None else None)
        if evidence:
            cause = evidence
        elif ran is True:
            cause = f"registered {when}; deployed to this service (ECS service deployments)"
        elif ran is False and record is not None and record.never_completed(
                str(definition.get("taskDefinitionArn") or arn)):
            cause = (f"registered {when}; deployed to this service but no deployment of it "
                     "completed (failed, rolled back or replaced: ECS service deployments)")
        elif ran is False:
            cause = (f"registered {when}; never deployed to this service (no ECS service "
                     "deployment since it was registered)")
        else:
            cause = f"registered {when}; ACTIVE, no deployment record retained by ECS"
        return Revision(
            id=str(definition.get("taskDefinitionArn") or arn),
            number=int(definition.get("revision") or parse_task_definition_arn(arn)[1]),
            images=tuple(str(c.get("image")) for c in definition.get("containerDefinitions")
                         or [] if c.get("image")),
            change_cause=cause, created=created, current=current, ran=ran)


# ---------------------------------------------------------------------- pure helpers
def _primary_task_definition(service: Mapping[str, Any]) -> str | None:
    for dep in service.get("deployments") or []:
        if dep.get("status") == "PRIMARY" and dep.get("taskDefinition"):
            return str(dep["taskDefinition"])
    value = service.get("taskDefinition")
    return str(value) if value else None


def _fence(service: Mapping[str, Any], field: str) -> tuple[Any, ...]:
    """What a write decided on must still hold when it is sent: the PRIMARY deployment (id and
    task definition), plus desiredCount when that is what the write sets."""
    primary: Mapping[str, Any] = next((d for d in service.get("deployments") or []
                                       if d.get("status") == "PRIMARY"), {})
    key: tuple[Any, ...] = (primary.get("id"), _primary_task_definition(service))
    if field == "desiredCount":
        key += (int(service.get("desiredCount") or 0),)
    return key


def _fence_text(service: Mapping[str, Any], field: str) -> str:
    key = _fence(service, field)
    text = f"PRIMARY deployment {key[0]} on {short_name(key[1])}"
    return text + (f", desiredCount {key[2]}" if len(key) > 2 else "")


def stability(response: Mapping[str, Any], name: str) -> RolloutStatus:
    """RolloutStatus of one DescribeServices response under botocore's ServicesStable
    acceptors, except that a FAILED rolloutState (deployment circuit breaker) is a failure
    first: a PRIMARY that failed will never converge to what we asked, and a failed deployment
    newer than the PRIMARY means ECS is reverting to the old task definition, which
    ServicesStable would soon call a success."""
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
    if primary.get("rolloutState") == "FAILED":
        still = [d for d in deployments if d is not primary and d.get("runningCount")]
        also = "".join(f"; still running: {d.get('runningCount')} tasks of "
                       f"{d.get('taskDefinition')} ({d.get('status')} deployment {d.get('id')})"
                       for d in still)
        return RolloutStatus(done=False, failed=True, message=(
            f"service {name} deployment {primary.get('id')} ({where}) failed: "
            f"{primary.get('rolloutStateReason')}{also}"))
    reverted = _failed_newer_than(deployments, primary)
    if reverted is not None:
        return RolloutStatus(done=False, failed=True, message=(
            f"service {name} deployment {reverted.get('id')} "
            f"({short_name(reverted.get('taskDefinition'))}) failed: "
            f"{reverted.get('rolloutStateReason')}; the deployment circuit breaker is rolling "
            f"back to deployment {primary.get('id')}, which runs "
            f"{primary.get('taskDefinition')}"))
    if verdict == "success":
        return RolloutStatus(done=True, message=f"service {name} is stable: {running} of "
                                                f"{desired} tasks running on {where}")
    # failedTasks says why a rollout without the circuit breaker makes no progress: ECS
    # keeps replacing tasks that fail to start and never fails the deployment itself.
    parts = ", ".join(f"{d.get('status')} {short_name(d.get('taskDefinition'))} "
                      f"{d.get('runningCount', 0)}/{d.get('desiredCount', 0)}"
                      + (f" ({d['failedTasks']} failed tasks)" if d.get("failedTasks") else "")
                      for d in deployments)
    return RolloutStatus(done=False, message=f"Waiting for service {name} to become stable: "
                         f"{running} of {desired} tasks running, {len(deployments)} "
                         f"deployment(s) [{parts}]...")


def _failed_newer_than(deployments: Sequence[Mapping[str, Any]],
                       primary: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """A FAILED non-PRIMARY deployment created after the PRIMARY: the circuit breaker's
    rollback made an older deployment PRIMARY again. (A FAILED deployment older than the
    PRIMARY is a leftover from before and says nothing about the current rollout.)"""
    created = primary.get("createdAt")
    for dep in deployments:
        if dep is primary or dep.get("rolloutState") != "FAILED":
            continue
        if created is None or dep.get("createdAt") is None or dep["createdAt"] > created:
            return dep
    return None


def _revert(service: Mapping[str, Any], primary: Mapping[str, Any]) -> Revert | None:
    """Evidence that the circuit breaker reverted the service to ``primary``: the failed
    deployment still listed, else the service events ECS wrote when it rolled back."""
    listed = _failed_newer_than(service.get("deployments") or [], primary)
    if listed is not None:
        return Revert(str(listed.get("id")),
                      str(listed.get("rolloutStateReason") or "deployment failed"),
                      str(primary.get("id")), str(listed.get("taskDefinition") or ""))
    return revert_from_events(service.get("events") or [], str(primary.get("id") or ""))


def _tally(counts: Mapping[str, int]) -> str:
    return ", ".join(f"{n} task{'s' if n != 1 else ''} of {arn}"
                     for arn, n in sorted(counts.items()))


def _checked(status: RolloutStatus, raise_on_failure: bool) -> RolloutStatus:
    if raise_on_failure and status.failed:
        raise RolloutFailed(status.message)
    return status


__all__ = ["EcsPlatform", "stability"]


# ------------------------------------------------------------------ the platform as data
# What the core knows of this platform (platforms/registry.py lists it): its config block,
# its Target, how to build the adapter, its words and what it cannot do.
NAME = "ecs"


class EcsTarget(BaseModel):
    """A service's ``ecs:`` block: one ECS service and its task-definition family."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    cluster: str
    service: str
    family: str
    region: str = "us-east-1"
    endpoint_url: str | None = None
    rollout_timeout_seconds: float = 600
    # Scale-down waits until nothing of the target runs (writers gone) before a backup or
    # restore starts; past this the step fails and the replicas are restored.
    stop_timeout_seconds: float = Field(default=300, gt=0)


def _target(block: EcsTarget) -> Target:
    options = {"family": block.family, "region": block.region}
    if block.endpoint_url:
        options["endpoint_url"] = block.endpoint_url
    return Target(NAME, block.cluster, block.service, options)


def _build(block: EcsTarget, secret: SecretReader) -> Platform:
    """boto3's default credential chain; the region comes with each target."""
    return EcsPlatform()


def _scale_command(target: Target, replicas: int) -> str:
    region = target.options.get("region")
    return (f"aws ecs update-service --cluster {target.scope} --service {target.name} "
            f"--desired-count {replicas}" + (f" --region {region}" if region else ""))


SPEC: PlatformSpec[EcsTarget] = PlatformSpec(
    name=NAME,
    config_model=EcsTarget,
    target=_target,
    build=_build,
    unit="task",
    summary="a service (`cluster`, `service`, `family`)",
    unsupported={
        # Not a gap: env and secret references live in the immutable task definition,
        # which the rollback itself pins and restores.
        Capability.CONFIG_SNAPSHOTS: "an ECS service's configuration lives in its task "
                                     "definition, which the rollback restores with the "
                                     "revision",
    },
    scale_command=_scale_command,
)
