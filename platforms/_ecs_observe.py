"""ECS adapter helpers for what the adapter shows besides rollouts: task logs from CloudWatch
Logs (the awslogs driver), the service's CPU/memory from CloudWatch metrics, and the task
definition read as configuration (summary, differences between two revisions).
"""

# Logs. A container whose ``logConfiguration.logDriver`` is ``awslogs`` writes to the group
# ``awslogs-group`` in ``awslogs-region``, stream ``<awslogs-stream-prefix>/<container
# name>/<ECS task id>`` (AWS ECS developer guide, "Send Amazon ECS logs to CloudWatch",
# using_awslogs.html). Without a stream prefix the stream is named after the Docker container
# id, which no ECS API returns, so such a container's logs cannot be found per task: Unsupported
# with that reason. GetLogEvents with startFromHead=false and ``limit`` returns the newest
# ``limit`` events of a stream (botocore data/logs/2014-03-28/service-2.json,
# GetLogEventsRequest); a stream that does not exist yet (the task never started its
# container) is ResourceNotFoundException and shown as such, not as an empty log.
#
# Resources. ECS publishes per service, every minute, namespace AWS/ECS, dimensions
# ClusterName + ServiceName: CPUUtilization = CPU units used by the service's tasks x 100 /
# (CPU units reserved by the task definition x number of tasks), MemoryUtilization the same for
# MiB (developer guide, "Amazon ECS CloudWatch metrics", cloudwatch-metrics.html, "Service CPU
# utilization"). Per-task figures exist only with Container Insights, which a service may not
# have; so the adapter reports ONE ResourceUsage for the service: the mean task, i.e. the
# percentage of the PRIMARY task definition's reservation converted back (1024 CPU units = 1
# vCPU = 1000 millicores; memory in MiB). A per-task limit in the checks then applies to the
# mean task, which the unit name says ("service/NAME (mean of N RUNNING tasks)").
#
# IAM: logs:GetLogEvents on the awslogs groups, cloudwatch:GetMetricData, ecs:ListTasks,
# ecs:DescribeTasks and ecs:DescribeTaskDefinition, next to what the rollback needs.

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from botocore.exceptions import ClientError

from platforms.base import (
    Capability,
    ConfigDifference,
    ResourceUsage,
    Revision,
    RevisionDetail,
    Unsupported,
    mask_value,
)

NAMESPACE = "AWS/ECS"
METRIC_PERIOD = 60  # ECS service metrics have one-minute resolution
CPU_UNITS_PER_VCPU = 1024
DENIED = {"AccessDeniedException", "AccessDenied", "UnauthorizedOperation"}


def denied(exc: BaseException | None) -> bool:
    """Is ``exc`` AWS refusing the call for lack of permission?"""
    return isinstance(exc, ClientError) and \
        str(exc.response.get("Error", {}).get("Code", "")) in DENIED


# ------------------------------------------------------------------------------ logs
def awslogs_streams(definition: Mapping[str, Any], task_id: str,
                    ) -> list[tuple[str, str | None, str, str | None]]:
    """``(container, region, group, stream)`` for each container of ``definition``;
    ``stream`` is None when the container's logs cannot be located per task."""
    out = []
    for container in definition.get("containerDefinitions") or []:
        name = str(container.get("name") or "?")
        config = container.get("logConfiguration") or {}
        if config.get("logDriver") != "awslogs":
            continue
        options = config.get("options") or {}
        prefix = options.get("awslogs-stream-prefix")
        out.append((name, options.get("awslogs-region"), str(options.get("awslogs-group") or ""),
                    f"{prefix}/{name}/{task_id}" if prefix else None))
    return out


def tail_task_logs(logs_for: Callable[[str | None], Any], tasks: Sequence[Mapping[str, Any]],
                   definitions: Callable[[str], Mapping[str, Any]], *, lines: int,
                   platform: str) -> str:
    """The newest ``lines`` events of each awslogs container of ``tasks`` (newest task
    first), prefixed ``[task/<id>/<container>]`` like ``kubectl logs --prefix``; a stopped
    task's header line says why it stopped. ``logs_for(region)`` is a CloudWatch Logs client."""
    chunks: list[str] = []
    located = 0
    for task in tasks:
        task_id = str(task.get("taskArn") or "?").rsplit("/", 1)[-1]
        definition = definitions(str(task.get("taskDefinitionArn") or ""))
        streams = awslogs_streams(definition, task_id)
        if task.get("lastStatus") == "STOPPED" or task.get("desiredStatus") == "STOPPED":
            codes = ", ".join(f"{c.get('name')} exit code {c.get('exitCode')}"
                              for c in task.get("containers") or []
                              if c.get("exitCode") is not None)
            chunks.append(f"[task/{task_id}] {task.get('lastStatus')}: "
                          f"{task.get('stopCode') or '-'}: {task.get('stoppedReason') or '-'}"
                          + (f" ({codes})" if codes else ""))
        for container, region, group, stream in streams:
            prefix = f"[task/{task_id}/{container}] "
            if stream is None:
                chunks.append(f"{prefix}(awslogs without awslogs-stream-prefix: the stream is "
                              "named after the Docker container id, not findable per task)")
                continue
            located += 1
            try:
                events = logs_for(region).get_log_events(
                    logGroupName=group, logStreamName=stream, limit=lines,
                    startFromHead=False)["events"]
            except ClientError as exc:
                code = str(exc.response.get("Error", {}).get("Code", ""))
                if denied(exc):
                    raise Unsupported(platform, Capability.LOGS,
                                      f"IAM denies logs:GetLogEvents on {group} ({code})"
                                      ) from None
                if code == "ResourceNotFoundException":
                    chunks.append(f"{prefix}(no log stream {group}:{stream} yet)")
                    continue
                raise
            chunks.extend(prefix + str(e.get("message", "")).rstrip("\n") for e in events)
    if tasks and not located:
        raise Unsupported(platform, Capability.LOGS,
                          "the service's task definition sends no container's logs to "
                          "CloudWatch Logs with an awslogs-stream-prefix (awslogs driver)")
    return "\n".join(chunks)


# ------------------------------------------------------------------------- resources
def reservation(definition: Mapping[str, Any]) -> tuple[float, float]:
    """(CPU units, MiB) the task definition reserves: task-level ``cpu``/``memory`` (Fargate,
    optional on EC2), else the sum over containers (memory, else memoryReservation)."""
    containers = definition.get("containerDefinitions") or []
    cpu = float(definition.get("cpu") or 0) or float(
        sum(int(c.get("cpu") or 0) for c in containers))
    memory = float(definition.get("memory") or 0) or float(
        sum(int(c.get("memory") or c.get("memoryReservation") or 0) for c in containers))
    return cpu, memory


def metric_queries(cluster: str, service: str) -> list[dict[str, Any]]:
    dimensions = [{"Name": "ClusterName", "Value": cluster},
                  {"Name": "ServiceName", "Value": service}]
    return [{"Id": metric_id, "ReturnData": True, "MetricStat": {
        "Metric": {"Namespace": NAMESPACE, "MetricName": name, "Dimensions": dimensions},
        "Period": METRIC_PERIOD, "Stat": "Average"}}  # no Unit: it would only filter
        for metric_id, name in (("cpu", "CPUUtilization"), ("memory", "MemoryUtilization"))]


def metric_window(now: datetime, minutes: int) -> dict[str, Any]:
    return {"StartTime": now - timedelta(minutes=minutes), "EndTime": now + timedelta(minutes=1),
            "ScanBy": "TimestampDescending"}


def service_usage(response: Mapping[str, Any], definition: Mapping[str, Any], *,
                  service: str, running: int, minutes: int,
                  platform: str) -> list[ResourceUsage]:
    """One ResourceUsage for the mean task of ``service`` from a GetMetricData response
    (newest datapoint of each metric, see the module comment)."""
    newest: dict[str, float] = {}
    for result in response.get("MetricDataResults") or []:
        values = list(result.get("Values") or [])
        if values:
            newest[str(result.get("Id"))] = float(values[0])
    missing = [m for m in ("cpu", "memory") if m not in newest]
    if missing:
        raise Unsupported(platform, Capability.RESOURCE_USAGE,
                          f"CloudWatch has no AWS/ECS {' or '.join(missing)} utilization "
                          f"datapoint for service {service} in the last {minutes} minutes")
    cpu_units, memory_mib = reservation(definition)
    if not cpu_units or not memory_mib:
        raise Unsupported(platform, Capability.RESOURCE_USAGE,
                          f"task definition {definition.get('family')}:"
                          f"{definition.get('revision')} reserves no "
                          f"{'CPU' if not cpu_units else 'memory'}, so CloudWatch's percentages "
                          "cannot be turned into an amount")
    return [ResourceUsage(
        unit=f"service/{service} (mean of {running} RUNNING task{'s' if running != 1 else ''})",
        cpu_millicores=round(newest["cpu"] / 100 * cpu_units * 1000 / CPU_UNITS_PER_VCPU, 1),
        memory_mib=round(newest["memory"] / 100 * memory_mib, 1))]


# ---------------------------------------------------------------------- configuration
def _containers(definition: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    return {str(c.get("name")): c for c in definition.get("containerDefinitions") or []}


def _pairs(items: Sequence[Mapping[str, Any]] | None, value: str) -> dict[str, str]:
    return {str(i.get("name")): str(i.get(value)) for i in items or [] if i.get("name")}


def config_differences(running: Mapping[str, Any],
                       pinned: Mapping[str, Any]) -> list[ConfigDifference]:
    """What changes when ``pinned`` replaces ``running``: per container image, environment
    (literals through ``mask_value``), secret references (``valueFrom``, never resolved),
    environment files; then task-level cpu/memory. Keys carry the container name when the
    task has more than one container."""
    out: list[ConfigDifference] = []
    old, new = _containers(running), _containers(pinned)
    several = len(set(old) | set(new)) > 1
    for name in sorted(set(old) | set(new)):
        a, b = old.get(name), new.get(name)

        def key(k: str, name: str = name) -> str:
            return f"{name}/{k}" if several else k

        if a is None or b is None:
            out.append(ConfigDifference("container", name,
                                        str(a.get("image")) if a is not None else None,
                                        str(b.get("image")) if b is not None else None))
            continue
        if a.get("image") != b.get("image"):
            out.append(ConfigDifference("image", name, str(a.get("image")),
                                        str(b.get("image"))))
        for kind, field, value in (("env", "environment", "value"),
                                   ("secret ref", "secrets", "valueFrom")):
            ea, eb = _pairs(a.get(field), value), _pairs(b.get(field), value)
            for k in sorted(set(ea) | set(eb)):
                if ea.get(k) == eb.get(k):
                    continue
                if kind == "env":
                    out.append(ConfigDifference(kind, key(k), mask_value(k, ea.get(k)),
                                                mask_value(k, eb.get(k))))
                else:
                    out.append(ConfigDifference(kind, key(k), ea.get(k), eb.get(k)))
        fa = sorted(str(f.get("value")) for f in a.get("environmentFiles") or [])
        fb = sorted(str(f.get("value")) for f in b.get("environmentFiles") or [])
        if fa != fb:
            out.append(ConfigDifference("env file", key("environmentFiles"),
                                        ", ".join(fa) or None, ", ".join(fb) or None))
    for field in ("cpu", "memory"):
        if str(running.get(field) or "") != str(pinned.get(field) or ""):
            out.append(ConfigDifference("task size", field, running.get(field) and
                                        str(running.get(field)), pinned.get(field) and
                                        str(pinned.get(field))))
    return out


def revision_detail(revision: Revision, definition: Mapping[str, Any]) -> RevisionDetail:
    """The task definition as ``aws ecs describe-task-definition`` shows it, summarised:
    family:revision, status, images, cpu/memory, environment keys (no values), secret
    references, log destination, registration."""
    cpu, memory = reservation(definition)
    fields: list[tuple[str, str]] = [
        ("Task definition", f"{definition.get('family')}:{definition.get('revision')}"),
        ("Status", str(definition.get("status") or "?")),
        ("Images", ", ".join(f"{name}={c.get('image')}" for name, c in
                             _containers(definition).items()) or "?"),
        ("CPU / memory", f"{cpu:g} units / {memory:g} MiB"),
    ]
    env = sorted({str(e.get("name")) for c in definition.get("containerDefinitions") or []
                  for e in c.get("environment") or []})
    fields.append(("Environment", ", ".join(env) or "<none>"))
    secrets = sorted({f"{s.get('name')} <- {s.get('valueFrom')}"
                      for c in definition.get("containerDefinitions") or []
                      for s in c.get("secrets") or []})
    fields.append(("Secrets", "; ".join(secrets) or "<none>"))
    logs = sorted({f"{(c.get('logConfiguration') or {}).get('options', {}).get('awslogs-group')}"
                   for c in definition.get("containerDefinitions") or []
                   if (c.get("logConfiguration") or {}).get("logDriver") == "awslogs"})
    if logs:
        fields.append(("Logs", "awslogs " + ", ".join(logs)))
    registered = definition.get("registeredAt")
    if isinstance(registered, datetime):
        fields.append(("Registered", registered.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")))
    if definition.get("registeredBy"):
        fields.append(("Registered by", str(definition["registeredBy"])))
    fields.append(("Change-cause", revision.change_cause or "<none>"))
    if revision.current:
        fields.append(("Running", "yes (PRIMARY deployment)"))
    return RevisionDetail(revision, tuple(fields),
                          "\n".join(f"{label}: {value}" for label, value in fields))


def now_utc() -> datetime:
    return datetime.now(UTC)
