"""What a running ECS task leaves in CloudWatch, written into moto's Logs and CloudWatch
backends (the same moto server serves ``logs`` and ``monitoring`` next to ``ecs``): log
events of the awslogs driver and the service's CPUUtilization/MemoryUtilization metrics.
"""

# Logs: a container with ``logConfiguration.logDriver = awslogs`` sends its stdout/stderr to
# the group ``awslogs-group`` in ``awslogs-region``, stream
# ``<awslogs-stream-prefix>/<container name>/<ECS task id>`` (AWS ECS developer guide,
# "Send Amazon ECS logs to CloudWatch", using_awslogs.html, awslogs-stream-prefix). The group
# must exist unless ``awslogs-create-group`` is "true" (the same page, awslogs-create-group);
# otherwise the task cannot start and stops with a ResourceInitializationError naming the
# missing group (the exact wording below is ours, after what the ECS console shows for
# logger errors). Without a stream prefix
# the stream is named after the Docker container id (EC2 launch type only): nothing a
# reader can map to a task, so the emulator writes such logs nowhere a tool would find them.
#
# Metrics: ECS publishes, once a minute, namespace AWS/ECS, dimensions ClusterName and
# ServiceName, CPUUtilization = (CPU units used by the service's tasks) x 100 / (CPU units
# reserved by the task definition x number of tasks), MemoryUtilization likewise for MiB
# (AWS ECS developer guide, "Amazon ECS CloudWatch metrics", cloudwatch-metrics.html,
# "Service CPU utilization" / "Service memory utilization"). The emulator writes one datapoint
# of each per ``interval`` seconds for a service with RUNNING tasks, from the usage the test
# set per task definition (``Usage``), so "the bad version uses twice the memory" can be
# staged.

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from moto.cloudwatch.models import cloudwatch_backends
from moto.core.models import DEFAULT_ACCOUNT_ID
from moto.logs.models import logs_backends

NAMESPACE = "AWS/ECS"


@dataclass(frozen=True)
class Usage:
    """Per-task utilisation in percent of the task definition's cpu/memory."""

    cpu_percent: float = 12.5
    memory_percent: float = 37.5


def awslogs_options(container: Mapping[str, Any]) -> Mapping[str, str] | None:
    config = container.get("logConfiguration") or {}
    if config.get("logDriver") != "awslogs":
        return None
    return dict(config.get("options") or {})


def log_stream(options: Mapping[str, str], container: str, task_id: str) -> str | None:
    prefix = options.get("awslogs-stream-prefix")
    return f"{prefix}/{container}/{task_id}" if prefix else None


class Telemetry:
    """Writes log events and metrics for the simulator's tasks into moto's backends."""

    def __init__(self, region: str, *, interval: float = 1.0,
                 clock: Callable[[], float] = time.time) -> None:
        self.region = region
        self.interval = interval
        self.clock = clock
        self._usage: dict[str, Usage] = {}  # task-definition ARN -> usage
        self._published: dict[str, float] = {}  # service ARN -> monotonic time
        self._lock = threading.Lock()

    def reset(self) -> None:
        """Forget every log group and metric of the emulator's region (moto's backends are
        process-global, like its ECS backend)."""
        logs_backends[DEFAULT_ACCOUNT_ID][self.region].reset()
        cloudwatch_backends[DEFAULT_ACCOUNT_ID][self.region].reset()
        with self._lock:
            self._usage, self._published = {}, {}

    def forget_metrics(self) -> None:
        """Drop every datapoint published so far (a test staging new usage)."""
        cloudwatch_backends[DEFAULT_ACCOUNT_ID][self.region].reset()
        with self._lock:
            self._published = {}

    def set_usage(self, task_definition_arn: str, usage: Usage) -> None:
        with self._lock:
            self._usage = {**self._usage, task_definition_arn: usage}

    def usage(self, task_definition_arn: str) -> Usage:
        return self._usage.get(task_definition_arn, Usage())

    # ------------------------------------------------------------------------ logs
    def logging_error(self, containers: Iterable[Mapping[str, Any]]) -> str | None:
        """Why the awslogs driver would refuse to start, or None."""
        for container in containers:
            options = awslogs_options(container)
            if options is None or str(options.get("awslogs-create-group")).lower() == "true":
                continue
            group = options.get("awslogs-group", "")
            region = options.get("awslogs-region") or self.region
            if group not in logs_backends[DEFAULT_ACCOUNT_ID][region].groups:
                return ("ResourceInitializationError: failed to validate logger args: "
                        "create stream has been retried 1 times: failed to create Cloudwatch "
                        "log stream: ResourceNotFoundException: The specified log group does "
                        "not exist. : exit status 1")
        return None

    def write(self, containers: Iterable[Mapping[str, Any]], task_id: str,
              lines: Iterable[str]) -> None:
        """Append ``lines`` to each awslogs container's stream of task ``task_id``."""
        stamp = int(self.clock() * 1000)
        events = [{"timestamp": stamp, "message": line} for line in lines]
        if not events:
            return
        for container in containers:
            options = awslogs_options(container)
            stream = log_stream(options, str(container.get("name")), task_id) \
                if options is not None else None
            if options is None or stream is None:
                continue
            backend = logs_backends[DEFAULT_ACCOUNT_ID][options.get("awslogs-region")
                                                        or self.region]
            group = options.get("awslogs-group", "")
            if group not in backend.groups:
                if str(options.get("awslogs-create-group")).lower() != "true":
                    continue
                backend.create_log_group(group, {})
            if stream not in backend.groups[group].streams:
                backend.create_log_stream(group, stream)
            backend.put_log_events(group, stream, events)

    # --------------------------------------------------------------------- metrics
    def publish(self, cluster: str, service: str, service_arn: str,
                running: Mapping[str, int]) -> bool:
        """One datapoint of each metric for ``service`` whose RUNNING tasks are
        ``running`` (task-definition ARN -> count), at most once per ``interval``."""
        total = sum(running.values())
        at = time.monotonic()
        with self._lock:
            last = self._published.get(service_arn)
            if total == 0 or (last is not None and at - last < self.interval):
                return False
            self._published = {**self._published, service_arn: at}
        cpu = sum(self.usage(arn).cpu_percent * n for arn, n in running.items()) / total
        memory = sum(self.usage(arn).memory_percent * n for arn, n in running.items()) / total
        stamp = datetime.fromtimestamp(self.clock(), UTC).replace(tzinfo=None)
        dimensions = [{"Name": "ClusterName", "Value": cluster},
                      {"Name": "ServiceName", "Value": service}]
        cloudwatch_backends[DEFAULT_ACCOUNT_ID][self.region].put_metric_data(NAMESPACE, [
            {"MetricName": "CPUUtilization", "Dimensions": dimensions, "Value": cpu,
             "Unit": "Percent", "Timestamp": stamp},
            {"MetricName": "MemoryUtilization", "Dimensions": dimensions, "Value": memory,
             "Unit": "Percent", "Timestamp": stamp}])
        return True
