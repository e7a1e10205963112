"""What api.fly.io serves besides GraphQL: the app log buffer (``GET /api/v1/apps/{app}/logs``)
and the organisation's Prometheus (``GET /prometheus/{org}/api/v1/query``) with the built-in
per-instance metrics of every started machine.
"""

# Logs: fly-go resource_logs.go GetAppLogs polls ``/api/v1/apps/{app}/logs?next_token=&
# instance=&region=`` and reads ``{"data": [{"id", "attributes": LogEntry}], "meta":
# {"next_token"}}``; flyctl logs/polling.go calls again with the returned token and backs off
# while pages come back empty. Here a token is the position in the app's buffer; a page holds
# at most 100 entries (our choice: the real page size is not documented).
#
# Metrics: fly.io/docs/monitoring/metrics/ ("Instance" metrics): ``fly_instance_cpu`` is a
# counter of CPU time in centiseconds per ``mode`` (user, system, idle, ...) and ``cpu``;
# ``fly_instance_memory_mem_total``/``_mem_available`` are gauges in bytes; each series is
# labelled ``app``, ``region``, ``instance`` (the machine id) and ``host``. The endpoint is a
# Prometheus (VictoriaMetrics) query API answering ``{"status": "success", "data":
# {"resultType": "vector", "result": [...]}}`` or 400 ``{"status": "error", "errorType":
# "bad_data", "error": ...}``. This evaluator knows a small PromQL subset: a selector with
# ``=``/``!=`` matchers, ``rate(<selector>[<range>])``, ``sum by (<labels>) (<expr>)`` and
# ``<expr> - <expr>`` matched on identical labels. Values are synthetic: a started machine
# uses 5% of a CPU (60% on an image marked bad), memory 40% of its guest's (85% when bad).

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any

from .state import App, FlyError, FlyState, Machine

PAGE = 100
_SELECTOR = re.compile(r"^\s*([a-zA-Z_:][a-zA-Z0-9_:]*)\s*(\{([^}]*)\})?\s*$")
_MATCHER = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*(!=|=)\s*"([^"]*)"\s*')
_RATE = re.compile(r"^\s*rate\((.*)\[(\d+[smh])\]\)\s*$", re.S)
_SUM_BY = re.compile(r"^\s*sum\s+by\s*\(([^)]*)\)\s*\((.*)\)\s*$", re.S)

Vector = list[tuple[dict[str, str], float]]


def logs_page(state: FlyState, app_name: str, query: dict[str, str]) -> dict[str, Any]:
    with state.cond:
        app = state.app(app_name)
        token = query.get("next_token") or "0"
        if not token.isdigit():
            raise FlyError(400, "invalid next_token")
        start = int(token)
        entries = [e for e in app.logs[start:]
                   if query.get("instance") in (None, "", e["instance"])
                   and query.get("region") in (None, "", e["region"])][:PAGE]
        consumed = start + len(app.logs[start:]) if len(entries) < PAGE else \
            app.logs.index(entries[-1], start) + 1
        return {"data": [{"id": f"{start + i}", "type": "logs", "attributes": dict(e)}
                         for i, e in enumerate(entries)],
                "meta": {"next_token": str(consumed)}}


class Metrics:
    """Evaluates the PromQL subset of the module comment over the started machines."""

    def __init__(self, state: FlyState) -> None:
        self.state = state
        # (machine id, metric name) pairs with no series: a failed scrape or an agent not yet
        # reporting leaves a series absent from an instant query (Prometheus "staleness",
        # prometheus.io/docs/prometheus/latest/querying/basics/#staleness), the others intact.
        self.missing: set[tuple[str, str]] = set()

    def query(self, org: str, expr: str) -> dict[str, Any]:
        if not expr:
            raise FlyError(400, "missing query")
        with self.state.cond:
            apps = [a for a in self.state.apps.values() if a.org == org]
            vector = self._eval(expr, apps)
        return {"status": "success", "data": {"resultType": "vector", "result": [
            {"metric": labels, "value": [time.time(), f"{value:.12g}"]}
            for labels, value in vector]}}

    def _eval(self, expr: str, apps: list[App]) -> Vector:
        expr = expr.strip()
        if (match := _SUM_BY.match(expr)) is not None:
            keys = [k.strip() for k in match.group(1).split(",") if k.strip()]
            sums: dict[tuple[tuple[str, str], ...], float] = {}
            for labels, value in self._eval(match.group(2), apps):
                group = tuple((k, labels.get(k, "")) for k in keys)
                sums[group] = sums.get(group, 0.0) + value
            return [(dict(group), value) for group, value in sums.items()]
        if " - " in expr:
            left, right = expr.rsplit(" - ", 1)
            others = {tuple(sorted(labels.items())): value
                      for labels, value in self._eval(right, apps)}
            return [(labels, value - others[key]) for labels, value in self._eval(left, apps)
                    if (key := tuple(sorted(labels.items()))) in others]
        if (match := _RATE.match(expr)) is not None:
            return [(labels, value) for labels, value in self._series(match.group(1), apps,
                                                                    rate=True)]
        return self._series(expr, apps, rate=False)

    def _series(self, selector: str, apps: list[App], *, rate: bool) -> Vector:
        match = _SELECTOR.match(selector)
        if match is None:
            raise FlyError(400, f"cannot parse {selector!r}")
        name, matchers = match.group(1), []
        for part in (match.group(3) or "").split(","):
            if part.strip():
                found = _MATCHER.fullmatch(part)
                if found is None:
                    raise FlyError(400, f"cannot parse label matcher {part!r}")
                matchers.append(found.groups())
        produce = _PRODUCERS.get(name)
        if produce is None:
            return []  # an unknown metric name is an empty vector, not an error
        if rate != (name == "fly_instance_cpu"):
            raise FlyError(400, f"{name}: rate() needs a counter, a gauge is read as is")
        vector: Vector = []
        for app in apps:
            for machine in app.machines.values():
                self.state.settle(machine)
                if machine.state != "started" or (machine.id, name) in self.missing:
                    continue
                bad = machine.config.get("image") in self.state.bad_images
                for extra, value in produce(machine, bad):
                    labels = {"app": app.name, "region": machine.region,
                              "instance": machine.id, "host": "emu", **extra}
                    if all((labels.get(k) == v) == (op == "=") for k, op, v in matchers):
                        vector.append((labels, value))
        return vector


def _cpu(machine: Machine, bad: bool) -> list[tuple[dict[str, str], float]]:
    """Rate of the centisecond counter per mode: 100 cs/s is one whole CPU."""
    busy = 60.0 if bad else 5.0
    return [({"mode": "user", "cpu": "0"}, busy * 0.8), ({"mode": "system", "cpu": "0"},
            busy * 0.2), ({"mode": "idle", "cpu": "0"}, 100.0 - busy)]


def _memory(share_ok: float, share_bad: float,
            available: bool) -> Callable[[Machine, bool], list[tuple[dict[str, str], float]]]:
    def produce(machine: Machine, bad: bool) -> list[tuple[dict[str, str], float]]:
        total = float((machine.config.get("guest") or {}).get("memory_mb") or 256) * 2**20
        used = total * (share_bad if bad else share_ok)
        return [({}, total - used if available else total)]
    return produce


_PRODUCERS: dict[str, Callable[[Machine, bool], list[tuple[dict[str, str], float]]]] = {
    "fly_instance_cpu": _cpu,
    "fly_instance_memory_mem_total": _memory(0.4, 0.85, available=False),
    "fly_instance_memory_mem_available": _memory(0.4, 0.85, available=True),
}
