"""``rollback-bot auto <service>``: the runbook's automated-rollback script, done properly.

The script checks health, rolls back when it fails, waits, and checks again. Here the same
job goes through the bot's lifecycle, so a cron job or a CI pipeline gets what a person in
Slack gets: the request is audited and announced (in Slack when it is configured), the
approval policy applies (the ``automation.identity`` approves its own request only for the
severities in ``automation.self_approve``; otherwise the request waits for a person), the
executor's fencing and compensation apply, and verification runs before health is read
again.

**Unhealthy** means: the health URL fails (a majority of ``HEALTH_PROBES`` probes), or the
error-rate rule holds (the release watcher's rule, ``bot.aftercare.watcher.evaluate``: the
ratio over its threshold at every point of the rule's duration). Missing data is no
evidence: a Prometheus that cannot be read never triggers a rollback.

**Recovered** means, after the rollback reached monitoring and ``settle_seconds`` passed:
the platform runs the pinned revision, health passes, and the latest error rate is at or
under the threshold.

Exit codes (``Exit``): 0 healthy, or rolled back and recovered; 1 unexpected failure;
2 bad usage or configuration; 3 unhealthy but refused (nothing changed: a rollback is
already active, nothing to roll back to…); 4 request filed and waiting for a person's
approval; 5 the rollback did not finish (failed, needs attention, cancelled, or still
running at the timeout); 6 rolled back but not recovered; 7 ``--dry-run`` found the service
unhealthy (the plan is printed, nothing changed).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from enum import IntEnum
from typing import Any

import httpx

from bot.aftercare.monitoring import _health
from bot.aftercare.watcher import evaluate
from bot.domain.command_parsing import Parsed
from bot.domain.config import RollbackConfig, ServiceConfig, Severity
from bot.domain.errors import UserFacingError
from bot.domain.figure_words import pct
from bot.domain.lifecycle import State
from bot.domain.models import Rollback
from bot.domain.ports import Clock
from bot.domain.time_words import span
from bot.execution.executor import Executor
from bot.integrations.errors import PrometheusError
from bot.integrations.prometheus import instant_query, range_query
from bot.persistence.store import Store
from bot.usecases.service import RollbackService

HEALTH_PROBES = 3  # a majority must fail: one slow probe is not a broken release
POLL_SECONDS = 0.5  # how often the rollback's state is read while waiting

# Where the wait for the rollback ends: verified (monitoring, or already completed) or not.
REACHED = frozenset({State.MONITORING, State.COMPLETED})
STOPPED = frozenset({State.FAILED, State.NEEDS_ATTENTION, State.VERIFICATION_FAILED,
                     State.CANCELLED, State.REJECTED, State.EXPIRED, State.UNSTABLE})


class Exit(IntEnum):
    OK = 0
    FAILURE = 1
    USAGE = 2
    REFUSED = 3
    AWAITING_APPROVAL = 4
    ROLLBACK_FAILED = 5
    NOT_RECOVERED = 6
    DRY_RUN_UNHEALTHY = 7


@dataclass(frozen=True)
class HealthReport:
    """One reading of the service: what failed (``problems``) and the figures behind it."""

    healthy: bool
    problems: list[str]
    health: str | None  # "passing: HTTP 200 in 3 ms (3/3 probes)", None when not configured
    error_rate: float | None  # the latest reading, None when not configured or not read
    error_rate_note: str | None  # the rule's verdict, or why it was not read
    revision: str | None = None  # what runs (re-checks only)


@dataclass
class AutoResult:
    service: str
    outcome: str  # healthy | would_roll_back | refused | awaiting_approval | rollback_failed
    #               | not_recovered | recovered
    exit_code: int
    reason: str
    before: HealthReport | None = None
    after: HealthReport | None = None
    rollback: dict[str, Any] | None = None
    plan: dict[str, Any] | None = None
    dry_run: bool = False
    took_seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


class AutoRollback:
    """One run of the automation for one service; collaborators from the composition."""

    def __init__(self, *, config: RollbackConfig, service: RollbackService, store: Store,
                 executor: Executor, clock: Clock,
                 client_factory: Callable[[], httpx.Client] = lambda: httpx.Client(
                     timeout=10.0),
                 sleep: Callable[[float], None] = time.sleep,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self.service = service
        self.store = store
        self.executor = executor
        self.clock = clock
        self.client_factory = client_factory
        self.sleep = sleep
        self.monotonic = monotonic

    # ------------------------------------------------------------------ readings
    def read(self, svc: ServiceConfig, *, after_rollback: bool = False) -> HealthReport:
        """Health and the error rate. Before: the sustained rule (a range). After a
        rollback: the latest value, since a sustained recovery takes the rule's duration."""
        problems: list[str] = []
        health = None
        with self.client_factory() as client:
            if svc.health is not None:
                results = [_health(svc, client) for _ in range(HEALTH_PROBES)]
                failed = [detail for ok, detail, _took in results if not ok]
                passing = len(failed) * 2 < len(results)
                health = (f"{'passing' if passing else 'failing'}: "
                          f"{(failed or [results[-1][1]])[-1]} "
                          f"({len(results) - len(failed)}/{len(results)} probes passed)")
                if not passing:
                    problems.append(f"health check failing: {failed[-1]}")
            rate, note = self._error_rate(svc, client, after_rollback=after_rollback,
                                          problems=problems)
        if svc.health is None and svc.prometheus is None:
            problems.append("neither `health` nor `prometheus` is configured: nothing to "
                            "judge the service by")
        return HealthReport(healthy=not problems, problems=problems, health=health,
                            error_rate=rate, error_rate_note=note)

    def _error_rate(self, svc: ServiceConfig, client: httpx.Client, *, after_rollback: bool,
                    problems: list[str]) -> tuple[float | None, str | None]:
        prom = svc.prometheus
        if prom is None:
            return None, None
        threshold = svc.watch_threshold()
        now = self.clock()
        try:
            if after_rollback:
                value = instant_query(prom.url, prom.error_rate_query, client=client, at=now)
                if value is None:
                    return None, "no error-rate data (no traffic?)"
                if value > threshold:
                    problems.append(f"error rate {pct(value)} is over {pct(threshold)}")
                return value, f"latest {pct(value)} (threshold {pct(threshold)})"
            watch = svc.watcher
            step = watch.interval_seconds
            start = now - timedelta(seconds=math.ceil(watch.duration_seconds / step) * step)
            points = range_query(prom.url, prom.error_rate_query, start=start, end=now,
                                 step=step, client=client)
        except PrometheusError as exc:
            # Missing data is no evidence either way: said, never acted on.
            return None, f"not read: {exc}"
        reading = evaluate(points, now=now, duration=watch.duration_seconds, step=step,
                           threshold=threshold)
        latest = reading.window[-1][1] if reading.window else None
        rule = f"over {pct(threshold)} at every check for {span(watch.duration_seconds)}"
        if reading.holds:
            problems.append(f"error rate {rule} (latest {pct(latest or 0.0)})")
            return latest, f"the rule holds: {rule}"
        return latest, f"the rule does not hold ({rule} is needed)"

    # ------------------------------------------------------------------ the run
    def run(self, name: str, *, dry_run: bool = False, timeout: float | None = None,
            settle: float | None = None, severity: str | None = None,
            reason: str | None = None) -> AutoResult:
        started = self.monotonic()
        result = self._run(name, dry_run=dry_run, timeout=timeout, settle=settle,
                           severity=severity, reason=reason)
        result.took_seconds = round(self.monotonic() - started, 1)
        return result

    def _run(self, name: str, *, dry_run: bool, timeout: float | None, settle: float | None,
             severity: str | None, reason: str | None) -> AutoResult:
        auto = self.config.automation
        svc = self.config.services[name]
        before = self.read(svc)
        if before.healthy:
            return AutoResult(name, "healthy", Exit.OK, f"{name} is healthy: "
                              f"{_figures(before)}; nothing to do.", before=before,
                              dry_run=dry_run)
        parsed = Parsed("request", service=name, severity=_severity(severity, auto.severity),
                        scope=list(auto.scope),
                        reason=reason or f"rollback-bot auto: {'; '.join(before.problems)}")
        why = "; ".join(before.problems)
        if dry_run:
            try:
                plan = self.service.preview(parsed)
            except UserFacingError as exc:
                return AutoResult(name, "refused", Exit.REFUSED, f"{name} is unhealthy "
                                  f"({why}) but would not be rolled back: {exc}",
                                  before=before, dry_run=True)
            facts = {"platform": plan.platform, "severity": plan.severity.value,
                     "scope": plan.scope,
                     "from": plan.choice.current.label() if plan.choice.current else None,
                     "to": plan.choice.target.label(),
                     "steps": [st.description for st in plan.steps],
                     "self_approve": plan.severity in auto.self_approve}
            return AutoResult(name, "would_roll_back", Exit.DRY_RUN_UNHEALTHY,
                              f"{name} is unhealthy ({why}); dry run: would roll back "
                              f"{facts['from'] or 'the running revision'} -> {facts['to']}, "
                              "nothing changed.", before=before, plan=facts, dry_run=True)
        channel = auto.channel_for(svc)
        if channel is None:
            return AutoResult(name, "refused", Exit.USAGE, "no channel to file the request "
                              "in: set `automation.channel` (or the service's "
                              "`watcher.channel`).", before=before)
        try:
            rb = self.service.request(parsed, requester=auto.identity, channel_id=channel)
        except UserFacingError as exc:
            return AutoResult(name, "refused", Exit.REFUSED,
                              f"{name} is unhealthy ({why}) but was not rolled back: {exc}",
                              before=before)
        try:
            rb = self.service.approve_as_automation(rb.id, identity=auto.identity)
        except UserFacingError as exc:
            return AutoResult(name, "awaiting_approval", Exit.AWAITING_APPROVAL,
                              f"{rb.ref} filed for {name} ({why}); it needs a person's "
                              f"approval in Slack: {exc}", before=before,
                              rollback=_summary(self.store.get(rb.id)))
        return self._execute(name, rb, before=before,
                             timeout=auto.timeout_seconds if timeout is None else timeout,
                             settle=auto.settle_seconds if settle is None else settle)

    def _execute(self, name: str, rb: Rollback, *, before: HealthReport, timeout: float,
                 settle: float) -> AutoResult:
        svc = self.config.services[name]
        # Our own request only: this process never picks up another service's rollback. A
        # `serve` replica may claim it first; then this run only watches its state.
        worker = threading.Thread(target=self.executor.run_once, args=(rb.id,),
                                  name=f"auto-executor-{rb.id}", daemon=True)
        worker.start()
        deadline = self.monotonic() + timeout
        rb = self.store.get(rb.id)
        while rb.state not in REACHED | STOPPED and self.monotonic() < deadline:
            self.sleep(POLL_SECONDS)
            rb = self.store.get(rb.id)
        if rb.state not in REACHED:
            if rb.state in STOPPED:
                why = (rb.last_error or rb.state.value.replace("_", " "))
                reason = f"{rb.ref} did not finish: {rb.state.value} ({why})"
            else:
                reason = (f"{rb.ref} still {rb.state.value} after {timeout:g} s; it is not "
                          "abandoned: its lease runs out and the bot's executor resumes it "
                          "(as after a crash). Follow it in the incident channel.")
            return AutoResult(name, "rollback_failed", Exit.ROLLBACK_FAILED, reason,
                              before=before, rollback=_summary(rb))
        if settle > 0:
            self.sleep(settle)  # let traffic reach the restored revision before judging it
        after = self.read(svc, after_rollback=True)
        running = self._running(rb)
        problems = list(after.problems)
        if running is not None and running != rb.target_revision.id:
            problems.append(f"the platform runs {running}, not the pinned "
                            f"{rb.target_revision.label()}")
        after = HealthReport(healthy=not problems, problems=problems, health=after.health,
                             error_rate=after.error_rate, error_rate_note=after.error_rate_note,
                             revision=running)
        rb = self.store.get(rb.id)
        if problems:
            return AutoResult(name, "not_recovered", Exit.NOT_RECOVERED,
                              f"{rb.ref} rolled {name} back to {rb.target_revision.label()} "
                              f"but it has not recovered: {'; '.join(problems)}. A person "
                              "must take over: see the incident channel.",
                              before=before, after=after, rollback=_summary(rb))
        return AutoResult(name, "recovered", Exit.OK,
                          f"{rb.ref} rolled {name} back to {rb.target_revision.label()}; it "
                          f"recovered: {_figures(after)}. Stability monitoring continues "
                          "in the bot.", before=before, after=after, rollback=_summary(rb))

    def _running(self, rb: Rollback) -> str | None:
        try:
            history = self.service.platform(rb.platform).history(rb.target)
        except Exception:  # a read that fails is said by the health figures, not guessed
            return None
        current = next((r for r in history if r.current), None)
        return current.id if current else None


def _severity(given: str | None, default: Severity) -> Severity:
    return Severity(given) if given else default


def _figures(report: HealthReport) -> str:
    parts = [f"health {report.health}" if report.health else "",
             f"error rate {report.error_rate_note}" if report.error_rate_note else ""]
    return "; ".join(p for p in parts if p) or "no checks configured"


def _summary(rb: Rollback) -> dict[str, Any]:
    return {"ref": rb.ref, "id": rb.id, "state": rb.state.value, "severity": rb.severity,
            "from": rb.current_revision.label() if rb.current_revision else None,
            "to": rb.target_revision.label(), "approver": rb.approver,
            "channel": rb.channel_id}
