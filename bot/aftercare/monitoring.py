"""Stability monitoring, the measuring half: samples, regression rules, report and notices.

A sample: error rate (PromQL), one timed health request, latency;
``bot.aftercare.coordinator`` posts. Each sample keeps its due time (its slot in the
window), so the report says how many checks ran late and how many were skipped (after an
outage the coordinator runs the latest due check instead of every missed one) rather than
showing shifted checks as if they had run on time.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import httpx

from bot.aftercare import charts
from bot.checks.probes import safe_url
from bot.domain.config import ServiceConfig
from bot.domain.figure_words import pct
from bot.domain.messages import (
    Message,
    MonitoringCheck,
    MonitoringStarted,
    RegressionAlert,
    StabilityReport,
)
from bot.domain.models import Rollback
from bot.domain.ports import Notice
from bot.domain.time_words import in_utc, span
from bot.integrations.errors import PrometheusError
from bot.integrations.prometheus import instant_query
from bot.persistence.aftercare_store import Monitor, Sample

# Each Prometheus query's bound (what a tick's own client had: httpx's default).
PROMETHEUS_TIMEOUT = 5.0
LATE_SECONDS = 1.0  # a check that starts later than this after its slot is reported late


@dataclass(frozen=True)
class Regression:
    reason: str
    kind: str  # error_rate | health


def measure(svc: ServiceConfig, *, seq: int, at: datetime, client: httpx.Client) -> Sample:
    """Take one sample now; problems become notes, never exceptions."""
    notes: list[str] = []
    error_rate: float | None = None
    latency: float | None = None
    prom = svc.prometheus
    if prom is not None:
        try:
            error_rate = instant_query(prom.url, prom.error_rate_query, client=client,
                                       timeout=PROMETHEUS_TIMEOUT)
            if error_rate is None:
                notes.append("error rate: no data")
            if prom.latency_query:
                seconds = instant_query(prom.url, prom.latency_query, client=client,
                                        timeout=PROMETHEUS_TIMEOUT)
                latency = None if seconds is None else seconds * 1000
        except PrometheusError as exc:
            notes.append(f"prometheus: {exc}"[:300])
    health_ok: bool | None = None
    detail = ""
    if svc.health is not None:
        health_ok, detail, took = probe_health(svc, client)
        if latency is None and took is not None:
            latency = took
    return Sample(seq=seq, at=at, error_rate=error_rate, health_ok=health_ok,
                  health_detail=detail, latency_ms=latency, notes="; ".join(notes))


def probe_health(svc: ServiceConfig, client: httpx.Client) -> tuple[bool, str, float | None]:
    """One request to the health URL: (passed, what was seen, milliseconds or None). Slower
    than ``monitoring.latency_threshold_ms`` counts as failed."""
    cfg, limit = svc.health, svc.monitoring.latency_threshold_ms
    assert cfg is not None
    started = time.perf_counter()
    try:
        resp = client.get(cfg.url, timeout=cfg.timeout_seconds)
    except httpx.TimeoutException:
        return False, f"timed out after {cfg.timeout_seconds:g}s", None
    except httpx.HTTPError as exc:
        return False, f"{safe_url(cfg.url)} unreachable ({type(exc).__name__})", None
    took = (time.perf_counter() - started) * 1000
    if resp.status_code != cfg.expect_status:
        return False, f"HTTP {resp.status_code} in {took:.0f} ms", took
    if took > limit:
        return False, f"HTTP {resp.status_code} but slow: {took:.0f} ms > {limit:g} ms", took
    return True, f"HTTP {resp.status_code} in {took:.0f} ms", took


def regression(svc: ServiceConfig, samples: Sequence[Sample]) -> Regression | None:
    """Error rate over the threshold now, or the last N health checks all failed."""
    if not samples:
        return None
    last = samples[-1]
    prom = svc.prometheus
    if prom is not None and last.error_rate is not None \
            and last.error_rate > prom.error_rate_threshold:
        return Regression(f"error rate {pct(last.error_rate)} is over the "
                          f"{pct(prom.error_rate_threshold)} threshold", "error_rate")
    need = svc.monitoring.consecutive_health_failures
    recent = samples[-need:]
    if len(recent) == need and all(s.health_ok is False for s in recent):
        return Regression(f"{need} consecutive failed health checks "
                          f"(latest: {last.health_detail})", "health")
    return None


def figures(svc: ServiceConfig, monitor: Monitor, samples: Sequence[Sample]) -> dict[str, str]:
    """The report's per-check figures, as label -> text."""
    out = {"Window": f"{in_utc(monitor.started_at):%H:%M}–{in_utc(monitor.ends_at):%H:%M} UTC, "
                     f"{len(samples)}/{monitor.total_ticks} checks every "
                     f"{span(monitor.interval_seconds)}"}
    timing = timeliness(samples)
    if timing:
        out["Timing"] = timing
    rates = [s.error_rate for s in samples if s.error_rate is not None]
    if svc.prometheus is not None:
        threshold = svc.prometheus.error_rate_threshold
        out["Error rate"] = (
            f"min {pct(min(rates))} / mean {pct(statistics.fmean(rates))} / max "
            f"{pct(max(rates))} (threshold {pct(threshold)}, {len(rates)} readings)"
            if rates else "no data from Prometheus")
    health = [s for s in samples if s.health_ok is not None]
    if health:
        passed = sum(1 for s in health if s.health_ok)
        out["Health"] = f"{passed}/{len(health)} checks passed"
    latencies = sorted(s.latency_ms for s in samples if s.latency_ms is not None)
    if latencies:
        p95 = latencies[min(len(latencies) - 1, round(0.95 * (len(latencies) - 1)))]
        out["Latency"] = (f"min {latencies[0]:.0f} / median {statistics.median(latencies):.0f}"
                          f" / p95 {p95:.0f} / max {latencies[-1]:.0f} ms")
    return out


def timeliness(samples: Sequence[Sample]) -> str:
    """How late the checks ran against their slots, e.g. "3 of 24 checks ran more than 1 s
    late, worst 4.2 s; 2 skipped"; "" when no sample knows its slot (taken before 019)."""
    timed = [late for s in samples if (late := s.late_seconds) is not None]
    if not timed:
        return ""
    worst = max(timed)
    late = sum(1 for t in timed if t > LATE_SECONDS)
    text = (f"{late} of {len(timed)} checks ran more than {LATE_SECONDS:g} s late, worst "
            f"{worst:.1f} s"
            if late else f"all {len(timed)} checks on time (worst {max(0.0, worst):.1f} s late)")
    skipped = max(s.seq for s in samples) - len(samples)
    if skipped > 0:
        text += (f"; {skipped} skipped (the bot was behind: the latest due check ran "
                 "instead)")
    return text


def chart(svc: ServiceConfig, monitor: Monitor, samples: Sequence[Sample], *,
          rolled_back_at: datetime, title: str = "") -> bytes:
    """Error rate (%) and latency (ms) over the monitoring window as a PNG: times of day in
    UTC, the thresholds drawn, the rollback (``rolled_back_at``, when its steps completed)
    marked."""
    series = []
    if svc.prometheus is not None:
        series.append(charts.Series(
            "Error rate", [(s.at, s.error_rate) for s in samples], "rate", charts.BLUE,
            threshold=svc.prometheus.error_rate_threshold))
    series.append(charts.Series("Latency", [(s.at, s.latency_ms) for s in samples], "ms",
                                charts.GREEN, threshold=svc.monitoring.latency_threshold_ms))
    return charts.render_png(series, start=monitor.started_at, end=monitor.ends_at,
                             rolled_back_at=rolled_back_at, title=title)


# ---------------------------------------------------------------------- notices
def start_notice(rb: Rollback, svc: ServiceConfig, monitor: Monitor) -> Notice:
    prom, health = svc.prometheus, svc.health
    return Notice(f"monitor:{monitor.id}:start", MonitoringStarted(
        rb.service, monitor.ends_at, monitor.interval_seconds,
        error_rate_threshold=prom.error_rate_threshold if prom is not None else None,
        health_failures=svc.monitoring.consecutive_health_failures
        if health is not None else None))


def tick_notice(monitor: Monitor, sample: Sample) -> Notice:
    return Notice(f"monitor:{monitor.id}:tick:{sample.seq}", MonitoringCheck(
        sample.seq, monitor.total_ticks, sample.error_rate, sample.health_ok,
        sample.health_detail, sample.notes))


def alert_notice(rb: Rollback, monitor: Monitor, *, closed: Message | None = None) -> Notice:
    """The regression alert; ``closed`` (who acted on it) replaces its buttons."""
    return Notice(f"monitor:{monitor.id}:alert", RegressionAlert(
        rb.id, rb.ref, rb.service, seq=monitor.result.get("seq", "?"),
        total=monitor.total_ticks, at=monitor.finished_at or monitor.started_at,
        reason=str(monitor.result.get("reason", "unknown")),
        mention=rb.incident_commander or rb.requester, closed=closed))


def report_notice(rb: Rollback, monitor: Monitor) -> Notice:
    figures = tuple((str(name), str(value))
                    for name, value in monitor.result.get("figures") or [])
    return Notice(f"monitor:{monitor.id}:report", StabilityReport(rb.ref, figures))
