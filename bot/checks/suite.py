"""Post-rollback verification suite mirroring the runbook: health, database, probes, resources.

Every ``check_*`` returns a ``CheckResult`` and never raises; ``build_checks`` turns a
service's config into time-boxed ``Check`` units for ``run_suite``. The result type and the
runner live in ``bot/checks/runner.py``, the HTTP probes in ``bot/checks/probes.py``: import
them from there (this module re-exports nothing).
"""

from __future__ import annotations

import functools
from datetime import datetime
from decimal import Decimal
from typing import Any

import httpx

from bot.checks.probes import check_health, check_http_probe
from bot.checks.runner import Check, CheckResult, Outcome, guarded
from bot.domain.config import DatabaseConfig, ServiceConfig, secret
from bot.integrations.errors import DatabaseOperationError
from bot.integrations.pg_tools import scrub_dsn
from bot.integrations.target_database import (
    latest_backup,
    slow_queries,
    verify,
    verify_backup,
)
from platforms.base import Capability, Platform, PlatformSpec, Target, Unsupported

__all__ = ["build_checks", "check_backup", "check_database", "check_resources"]

_QUERY_PREVIEW = 200


def _jsonable(value: Any) -> Any:
    """Details may be stored as JSON and posted to Slack: keep them plain."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return str(value)


# ---------------------------------------------------------------------------- database
def check_database(
    cfg: DatabaseConfig, *, name: str = "database", timeout: float = 10.0
) -> CheckResult:
    """Connectivity (SELECT 1), every integrity query, then slow queries when measurable."""
    dsn = secret(cfg.dsn_env)
    if not dsn:
        return CheckResult(name, "fail", f"DSN env {cfg.dsn_env} not set", {"env": cfg.dsn_env})
    return guarded(name, timeout, lambda: _database(cfg, dsn, timeout),
                   scrub=lambda text: scrub_dsn(text, dsn))


def _database(cfg: DatabaseConfig, dsn: str, timeout: float) -> Outcome:
    results = verify(dsn, queries=cfg.verify_queries, timeout=timeout)
    details: dict[str, Any] = {
        "queries": [
            {"query": r.query, "ok": r.ok, "value": _jsonable(r.value),
             "duration_ms": round(r.duration_ms, 1), "error": r.error}
            for r in results
        ]
    }
    ping, integrity = results[0], results[1:]
    if not ping.ok:
        return "fail", f"SELECT 1 failed: {ping.error}", details
    failed = [r for r in integrity if not r.ok]
    if failed:
        first = failed[0]
        more = f" (+{len(failed) - 1} more)" if len(failed) > 1 else ""
        return "fail", f"integrity query failed: {first.query}: {first.error}{more}", details

    parts = [f"connected ({ping.duration_ms:.0f} ms)"]
    parts += [f"{r.query} → {_jsonable(r.value)}" for r in integrity]
    parts.append(_slow_part(cfg, dsn, timeout, details))
    return "pass", "; ".join(parts), details


def _slow_part(cfg: DatabaseConfig, dsn: str, timeout: float, details: dict[str, Any]) -> str:
    # Slow queries inform the humans; they do not fail a rollback that otherwise worked.
    try:
        found = slow_queries(dsn, threshold_ms=cfg.slow_query_ms, timeout=timeout)
    except DatabaseOperationError as exc:
        details["slow_queries_skipped"] = str(exc)
        return f"slow queries: skipped ({exc})"
    if found is None:
        details["slow_queries_skipped"] = "pg_stat_statements not installed"
        return "slow queries: skipped (pg_stat_statements not installed)"
    details["slow_queries"] = [
        {"query": q.query[:_QUERY_PREVIEW], "calls": q.calls,
         "mean_ms": round(q.mean_ms, 1), "total_ms": round(q.total_ms, 1)}
        for q in found
    ]
    if not found:
        return f"no slow queries (mean > {cfg.slow_query_ms:g} ms)"
    return (
        f"{len(found)} slow queries (mean > {cfg.slow_query_ms:g} ms), "
        f"slowest {found[0].mean_ms:.0f} ms"
    )


def check_backup(
    cfg: DatabaseConfig, *, service: str, now: datetime | None = None, name: str = "backup"
) -> CheckResult:
    """The checklist's "database backup verified": newest backup is readable and fresh."""
    return guarded(name, 120.0, lambda: _backup(cfg, service, now))


def _backup(cfg: DatabaseConfig, service: str, now: datetime | None) -> Outcome:
    latest = latest_backup(cfg.backup_location, service=service)
    if latest is None:
        return "fail", f"no backup of {service} in {cfg.backup_location}", {}
    result = verify_backup(latest.path, max_age_hours=cfg.backup_max_age_hours, now=now)
    details: dict[str, Any] = {
        "path": str(latest.path),
        "size": latest.size,
        "created": latest.created.isoformat(),
        "age_hours": round(result.age.total_seconds() / 3600, 2) if result.age else None,
        "entries": result.entries,
    }
    return ("pass" if result.ok else "fail"), result.detail, details


# --------------------------------------------------------------------------- resources
def check_resources(
    platform: Platform,
    target: Target,
    *,
    name: str = "resources",
    max_cpu_millicores: float | None = None,
    max_memory_mib: float | None = None,
    spec: PlatformSpec[Any] | None = None,
) -> CheckResult:
    """CPU and memory per running unit (``kubectl top pods`` and friends). ``spec`` (the
    platform's) names the units and skips the check where the platform has no usage."""
    return guarded(
        name, 30.0,
        lambda: _resources(platform, target, max_cpu_millicores, max_memory_mib, spec),
    )


def _resources(
    platform: Platform, target: Target, max_cpu: float | None, max_mem: float | None,
    spec: PlatformSpec[Any] | None,
) -> Outcome:
    word = spec.unit if spec is not None else "unit"
    try:
        if spec is not None:
            spec.require(Capability.RESOURCE_USAGE)
        usage = platform.resource_usage(target)
    except Unsupported as exc:  # unknown, which must not read as "nothing runs"
        return "skip", f"{platform.name}: {exc}", {}
    units = [
        {"unit": u.unit, "cpu_millicores": u.cpu_millicores, "memory_mib": u.memory_mib}
        for u in usage
    ]
    details: dict[str, Any] = {"target": target.describe(), "units": units}
    if not usage:
        return "fail", f"no running {word}s on {target.describe()}", details
    cpu = [u.cpu_millicores for u in usage]
    mem = [u.memory_mib for u in usage]
    if len(usage) == 1:  # one reading: say what it is (a pod, or ECS's mean task)
        summary = (f"{usage[0].unit}: CPU {cpu[0]:.0f}m, memory {mem[0]:.0f} MiB")
    else:
        summary = (
            f"{len(usage)} {word}s: "
            f"CPU {min(cpu):.0f}–{max(cpu):.0f}m (total {sum(cpu):.0f}m), "
            f"memory {min(mem):.0f}–{max(mem):.0f} MiB (total {sum(mem):.0f} MiB)"
        )
    over = [u.unit for u in usage if max_cpu is not None and u.cpu_millicores > max_cpu]
    over += [u.unit for u in usage if max_mem is not None and u.memory_mib > max_mem]
    if over:
        return "fail", f"over limit: {', '.join(sorted(set(over)))}; {summary}", details
    return "pass", summary, details


# ------------------------------------------------------------------------------- suite
def build_checks(
    service: ServiceConfig,
    *,
    client: httpx.Client,
    platform: Platform | None = None,
    target: Target | None = None,
    db_timeout: float = 10.0,
) -> list[Check]:
    """The runbook's verification in its order: health, database, external services,
    functional smoke checks, resource usage. Sections absent from the config are omitted."""
    checks: list[Check] = []
    if service.health is not None:
        health = service.health
        # Worst case every request is slow but inside its own timeout.
        budget = health.timeout_seconds * (health.samples + 1)
        checks.append(Check("health", budget, lambda: check_health(health, client=client)))
    if service.database is not None:
        db = service.database
        # Connect + SELECT 1 + each query + pg_stat_statements, each bounded by db_timeout.
        budget = db_timeout * (len(db.verify_queries) + 3)
        checks.append(Check("database", budget, lambda: check_database(db, timeout=db_timeout)))
    for probe in [*service.external_checks, *service.functional_checks]:
        run = functools.partial(check_http_probe, probe, client=client)
        checks.append(Check(probe.name, probe.timeout_seconds, run))
    if platform is not None and target is not None:
        spec = service.platform_specs.get(target.platform)
        checks.append(Check("resources", 30.0,
                            lambda: check_resources(platform, target, spec=spec)))
    return checks
