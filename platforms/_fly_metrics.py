"""Watching a Fly app through api.fly.io: its recent logs (the logs API `fly logs` polls) and
per-machine CPU and memory from the organisation's Prometheus endpoint.
"""

# Logs: superfly/fly-go resource_logs.go GetAppLogs, ``GET /api/v1/apps/{app}/logs?
# next_token=``, answering ``{"data": [{"id", "attributes": {timestamp, message, level,
# instance, region, meta}}], "meta": {"next_token"}}``; flyctl logs/polling.go pages with the
# returned token until a page comes back empty. We page the same way (bounded) and keep the
# last lines.
#
# Metrics: fly.io/docs/monitoring/metrics/: ``https://api.fly.io/prometheus/<org-slug>/`` is a
# Prometheus query API; ``fly_instance_cpu`` counts CPU time in centiseconds per ``mode`` (so
# a rate of 100 is one whole CPU: millicores = rate x 10), and ``fly_instance_memory_mem_total``
# minus ``fly_instance_memory_mem_available`` is the memory in use, in bytes; series carry
# ``app`` and ``instance`` (the machine id). A small query here on purpose: adapters do not
# import the bot's Prometheus client.

from __future__ import annotations

from typing import Any

import httpx

from platforms._fly_client import send
from platforms.base import Capability, ResourceUsage, TransientPlatformError, Unsupported

MAX_LOG_PAGES = 20
CPU_RATE_WINDOW = "1m"


def _get(client: httpx.Client, path: str, params: dict[str, str], what: str) -> Any:
    response = send(client, "GET", path, what=what, service="api.fly.io", params=params)
    try:
        return response.json()
    except ValueError as exc:
        raise TransientPlatformError(f"{what}: malformed JSON from api.fly.io") from exc


def recent_logs(client: httpx.Client, app: str, *, lines: int) -> str:
    """The last ``lines`` entries, one per line: time, machine, region, level, message."""
    entries: list[dict[str, Any]] = []
    token = ""
    for _ in range(MAX_LOG_PAGES):
        page = _get(client, f"/api/v1/apps/{app}/logs", {"next_token": token},
                    f"read logs of app {app}")
        data = [d.get("attributes") or {} for d in (page or {}).get("data") or []
                if isinstance(d, dict)]
        entries.extend(e for e in data if isinstance(e, dict))
        del entries[:-lines]
        token = str(((page or {}).get("meta") or {}).get("next_token") or "")
        if not data or not token:
            break
    return "\n".join(f"{e.get('timestamp', '')} {e.get('instance', '')} "
                     f"{e.get('region', '')} [{e.get('level', '')}] {e.get('message', '')}"
                     for e in entries)


def _quote(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')


def _vector(client: httpx.Client, org: str, query: str, what: str) -> dict[str, float]:
    """``instance -> value`` of an instant query."""
    body = _get(client, f"/prometheus/{org}/api/v1/query", {"query": query}, what)
    if not isinstance(body, dict) or body.get("status") != "success":
        error = body.get("error") if isinstance(body, dict) else body
        raise TransientPlatformError(f"{what}: {error}")
    out: dict[str, float] = {}
    for row in (body.get("data") or {}).get("result") or []:
        instance = (row.get("metric") or {}).get("instance")
        try:
            value = float((row.get("value") or [0, "nan"])[1])
        except (TypeError, ValueError):
            continue
        if instance:
            out[str(instance)] = out.get(str(instance), 0.0) + value
    return out


def machine_usage(client: httpx.Client, org: str, app: str) -> list[ResourceUsage]:
    """CPU (millicores) and memory in use (MiB) per machine that reports metrics."""
    name = _quote(app)
    what = f"read metrics of app {app} from the Prometheus of org {org}"
    cpu = _vector(client, org, f'sum by (instance) (rate(fly_instance_cpu{{app="{name}",'
                               f'mode!="idle"}}[{CPU_RATE_WINDOW}]))', what)
    memory = _vector(client, org, f'fly_instance_memory_mem_total{{app="{name}"}} - '
                                  f'fly_instance_memory_mem_available{{app="{name}"}}', what)
    # A machine reporting one series but not the other (a scrape gap, an agent not yet up)
    # has an unknown usage, not a zero one: zero would pass any limit the bot compares with.
    partial = sorted((set(cpu) | set(memory)) - (set(cpu) & set(memory)))
    if partial:
        raise Unsupported("fly", Capability.RESOURCE_USAGE, "usage unknown for " + ", ".join(
            f"machine {i} (no {'memory' if i in cpu else 'CPU'} series in the org's "
            f"Prometheus)" for i in partial))
    return [ResourceUsage(unit=f"machine {instance}",
                          cpu_millicores=round(cpu[instance] * 10, 1),
                          memory_mib=round(memory[instance] / 2**20, 1))
            for instance in sorted(set(cpu) | set(memory))]
