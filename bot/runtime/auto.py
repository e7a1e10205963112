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
the platform runs the pinned revision, health passes, and the latest error rate could be
read and is at or under the threshold (a recovery needs evidence).

**A person's decision stands.** An earlier rollback away from the revision that runs now
which did not complete (rejected, cancelled, failed, expired) means people have decided
about this revision: the automation refuses instead of asking again every cron period.

**Never abandoned mid-step.** The wait for verification ends at ``timeout_seconds``, but
the process does not exit while its executor is inside a step: it says so, waits for the
step to end (steps have their own bounds), and reports the state it ended in.

Exit codes (``Exit``): 0 healthy, or rolled back and recovered; 1 unexpected failure;
2 bad usage or configuration (unknown service, no channel, nothing to judge the service
by); 3 unhealthy but refused (nothing changed: a rollback is already active, people
decided about this revision, nothing to roll back to, nobody could approve it…); 4 request
filed and waiting for a person's approval in Slack; 5 the rollback did not finish (failed,
needs attention, cancelled, or not verified within the timeout); 6 rolled back but not
recovered; 7 ``--dry-run`` found the service unhealthy (the plan is printed, nothing
changed); 8 the service could not be judged (no check could be read).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from enum import IntEnum
from typing import Any

import httpx

from bot.aftercare.monitoring import probe_health
from bot.aftercare.watcher import evaluate
from bot.domain.command_parsing import Parsed
from bot.domain.config import RollbackConfig, ServiceConfig, Severity
from bot.domain.errors import NotAllowed, UserFacingError
from bot.domain.figure_words import pct
from bot.domain.lifecycle import State
from bot.domain.models import Rollback
from bot.domain.ports import Clock
from bot.domain.time_words import span
from bot.execution.executor import Executor
from bot.integrations.errors import PrometheusError
from bot.integrations.http_client import shared_client
from bot.integrations.prometheus import instant_query, range_query
from bot.persistence.store import Store
from bot.usecases.service import Plan, RollbackService
from platforms.base import Revision

log = logging.getLogger(__name__)

HEALTH_PROBES = 3  # a majority must fail: one slow probe is not a broken release
PROMETHEUS_TIMEOUT = 10.0  # seconds for each error-rate query
POLL_SECONDS = 0.5  # how often the rollback's state is read while waiting

JOIN_CAP_SECONDS = 3600.0  # the last resort if a step's own bound failed to end it

# Where the wait for the rollback ends: verified (monitoring, or already completed) or not.
REACHED = frozenset({State.MONITORING, State.COMPLETED})
STOPPED = frozenset({State.FAILED, State.NEEDS_ATTENTION, State.VERIFICATION_FAILED,
                     State.CANCELLED, State.REJECTED, State.EXPIRED, State.UNSTABLE})
# What an executor still claims: the run keeps claiming its own rollback while it is here.
CLAIMABLE = frozenset({State.APPROVED, State.EXECUTING, State.VERIFYING})
# Earlier rollbacks that mean people decided about the revision they moved away from.
DECIDED = frozenset({State.REJECTED, State.CANCELLED, State.FAILED, State.EXPIRED})


class Exit(IntEnum):
    OK = 0
    FAILURE = 1
    USAGE = 2
    REFUSED = 3
    AWAITING_APPROVAL = 4
    ROLLBACK_FAILED = 5
    NOT_RECOVERED = 6
    DRY_RUN_UNHEALTHY = 7
    UNKNOWN = 8


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
    """One run of the automation for one service; collaborators from the composition.

    ``announced``: the request reaches people (Slack); without it nothing is filed that
    only a person could approve. ``say`` writes progress for the job's log (stderr)."""

    def __init__(self, *, config: RollbackConfig, service: RollbackService, store: Store,
                 executor: Executor, clock: Clock, announced: bool,
                 say: Callable[[str], None] = lambda _line: None,
                 http: httpx.Client | None = None,
                 sleep: Callable[[float], None] = time.sleep,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self.service = service
        self.store = store
        self.executor = executor
        self.clock = clock
        self.announced = announced
        self.say = say
        # The process's client (bot.integrations.http_client); each request passes its own
        # timeout. Without one, a client of its own.
        self.http = http if http is not None else shared_client()
        self.sleep = sleep
        self.monotonic = monotonic

    # ------------------------------------------------------------------ readings
    def read(self, svc: ServiceConfig, *, after_rollback: bool = False) -> HealthReport:
        """Health and the error rate. Before: the sustained rule (a range). After a
        rollback: the latest value, since a sustained recovery takes the rule's duration;
        then an error rate that cannot be read is a problem (no evidence of recovery)."""
        problems: list[str] = []
        health = None
        client = self.http
        if svc.health is not None:
            results = [probe_health(svc, client) for _ in range(HEALTH_PROBES)]
            failed = [detail for ok, detail, _took in results if not ok]
            passing = len(failed) * 2 < len(results)
            health = (f"{'passing' if passing else 'failing'}: "
                      f"{(failed or [results[-1][1]])[-1]} "
                      f"({len(results) - len(failed)}/{len(results)} probes passed)")
            if not passing:
                problems.append(f"health check failing: {failed[-1]}")
        rate, note = self._error_rate(svc, client, after_rollback=after_rollback,
                                      problems=problems)
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
                value = instant_query(prom.url, prom.error_rate_query, client=client, at=now,
                                      timeout=PROMETHEUS_TIMEOUT)
                if value is None:
                    problems.append("the error rate has no data: recovery not confirmed")
                    return None, "no data (no traffic?)"
                if value > threshold:
                    problems.append(f"error rate {pct(value)} is over {pct(threshold)}")
                return value, f"latest {pct(value)} (threshold {pct(threshold)})"
            watch = svc.watcher
            step = watch.interval_seconds
            start = now - timedelta(seconds=math.ceil(watch.duration_seconds / step) * step)
            points = range_query(prom.url, prom.error_rate_query, start=start, end=now,
                                 step=step, client=client, timeout=PROMETHEUS_TIMEOUT)
        except PrometheusError as exc:
            if after_rollback:
                problems.append(f"the error rate could not be read: recovery not confirmed "
                                f"({exc})")
            # Before: missing data is no evidence either way; said, never acted on.
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
        if svc.health is None and svc.prometheus is None:
            return AutoResult(name, "usage", Exit.USAGE, f"`{name}` has neither `health` nor "
                              "`prometheus` configured: nothing to judge it by, so the "
                              "automation never rolls it back.", dry_run=dry_run)
        before = self.read(svc)
        if before.healthy:
            if svc.health is None and before.error_rate_note \
                    and before.error_rate_note.startswith("not read"):
                return AutoResult(name, "unknown", Exit.UNKNOWN, f"{name} could not be "
                                  f"judged: error rate {before.error_rate_note}; no health "
                                  "URL configured. Nothing done.", before=before,
                                  dry_run=dry_run)
            return AutoResult(name, "healthy", Exit.OK, f"{name} is healthy: "
                              f"{_figures(before)}; nothing to do.", before=before,
                              dry_run=dry_run)
        sev = _severity(severity, auto.severity)
        why = "; ".join(before.problems)
        parsed = Parsed("request", service=name, severity=sev, scope=list(auto.scope),
                        reason=reason or f"rollback-bot auto: {why}")
        channel = auto.channel_for(svc)
        if channel is None:
            return AutoResult(name, "usage", Exit.USAGE, "no channel to file the request "
                              "in: set `automation.channel` (or the service's "
                              "`watcher.channel`).", before=before, dry_run=dry_run)
        try:
            plan = self.service.preview(parsed)
            self.service.check_can_request(name, user=auto.identity, channel_id=channel)
        except UserFacingError as exc:
            return AutoResult(name, "refused", Exit.REFUSED, f"{name} is unhealthy ({why}) "
                              f"but was not rolled back: {exc}", before=before,
                              dry_run=dry_run)
        decided = self._decided(name, plan.platform, plan.choice.current)
        if decided is not None:
            return AutoResult(name, "refused", Exit.REFUSED, f"{name} is unhealthy ({why}) "
                              f"but people already decided about "
                              f"{plan.choice.current.label() if plan.choice.current else 'it'}"
                              f": {decided}. The automation does not ask again; a person "
                              "requests the next rollback.", before=before, dry_run=dry_run)
        self_approves = self._may_self_approve(plan)
        if self_approves is not None and not self.announced:
            return AutoResult(name, "refused", Exit.REFUSED, f"{name} is unhealthy ({why}) "
                              f"but was not rolled back: {self_approves} Without Slack "
                              "(SLACK_BOT_TOKEN unset) nobody could approve the request, so "
                              "none was filed.", before=before, dry_run=dry_run)
        if dry_run:
            facts: dict[str, Any] = {"platform": plan.platform, "severity": plan.severity.value,
                     "scope": plan.scope, "channel": channel,
                     "from": plan.choice.current.label() if plan.choice.current else None,
                     "to": plan.choice.target.label(),
                     "steps": [st.description for st in plan.steps],
                     # the configuration view, as the approvers would see it in the plan
                     **{key: plan.facts[key] for key in ("config_differences",
                                                         "config_view_unavailable")
                        if key in plan.facts},
                     "self_approve": self_approves is None,
                     "approval": self_approves or "the automation approves it"}
            who = "self-approved" if self_approves is None else "a person approves"
            return AutoResult(name, "would_roll_back", Exit.DRY_RUN_UNHEALTHY,
                              f"{name} is unhealthy ({why}); dry run: would roll back "
                              f"{facts['from'] or 'the running revision'} -> {facts['to']} "
                              f"({who}), nothing changed.", before=before, plan=facts,
                              dry_run=True)
        try:
            rb = self.service.request(parsed, requester=auto.identity, channel_id=channel)
        except UserFacingError as exc:
            return AutoResult(name, "refused", Exit.REFUSED,
                              f"{name} is unhealthy ({why}) but was not rolled back: {exc}",
                              before=before)
        try:
            return self._decide_and_execute(name, rb, before=before, timeout=timeout,
                                            settle=settle)
        except Exception as exc:  # the rollback exists: never report a failure without it
            log.exception("rollback-bot auto: %s", rb.ref)
            current = self.store.get(rb.id)
            return AutoResult(name, "failure", Exit.FAILURE,
                              f"{rb.ref} ({current.state.value}): unexpected failure: "
                              f"{type(exc).__name__}: {exc}. Follow it in the incident "
                              "channel.", before=before, rollback=_summary(current))

    def _decide_and_execute(self, name: str, rb: Rollback, *, before: HealthReport,
                            timeout: float | None, settle: float | None) -> AutoResult:
        auto = self.config.automation
        why = "; ".join(before.problems)
        try:
            rb = self.service.approve_as_automation(rb.id, identity=auto.identity)
        except NotAllowed as exc:
            if not self.announced:  # nobody can see it: release the service at once
                rb = self.service.cancel(rb.id, user=auto.identity)
                return AutoResult(name, "refused", Exit.REFUSED,
                                  f"{rb.ref} was withdrawn: {exc} Without Slack nobody could "
                                  "approve it.", before=before, rollback=_summary(rb))
            return AutoResult(name, "awaiting_approval", Exit.AWAITING_APPROVAL,
                              f"{rb.ref} filed for {name} ({why}); it needs a person's "
                              f"approval in Slack: {exc}", before=before,
                              rollback=_summary(self.store.get(rb.id)))
        return self._execute(name, rb, before=before,
                             timeout=auto.timeout_seconds if timeout is None else timeout,
                             settle=auto.settle_seconds if settle is None else settle)

    def _decided(self, name: str, platform: str, current: Revision | None) -> str | None:
        """An earlier rollback away from ``current`` that did not complete, in words (the
        automation's own withdrawal of a request nobody could see is not a decision)."""
        if current is None:
            return None
        rb = self.store.last_decided_from(name, platform, current.id, DECIDED,
                                          withdrawn_by=self.config.automation.identity)
        if rb is None:
            return None
        when = f" at {rb.finished_at:%Y-%m-%d %H:%M} UTC" if rb.finished_at else ""
        return f"{rb.ref} was {rb.state.value.replace('_', ' ')}{when}"

    def _may_self_approve(self, plan: Plan) -> str | None:
        """Why the automation could not approve this plan itself, or None: the rules of
        ``Policy.check_automation_approve``, read off the plan before anything is filed."""
        auto = self.config.automation
        if plan.severity not in auto.self_approve:
            allowed = ", ".join(s.value for s in auto.self_approve) or "none"
            return (f"{plan.severity.value} requests need a person's approval "
                    f"(automation.self_approve: {allowed}).")
        if any(st.destructive for st in plan.steps):
            return "the plan has destructive steps: two people are needed."
        if plan.choice.target_known_bad is not None or plan.mode == "next_deployment":
            return "a known-bad target or a P3 plan needs a person's decision."
        sev = self.config.policy_for(plan.service).for_severity(plan.severity)
        missing = [k for k in sev.checklist_required
                   if not (plan.checklist.get(k) or {}).get("done")]
        if missing:
            return f"checklist items required before approval: {', '.join(missing)}."
        return None

    def _execute(self, name: str, rb: Rollback, *, before: HealthReport, timeout: float,
                 settle: float) -> AutoResult:
        svc = self.config.services[name]
        failure: list[BaseException] = []

        def work() -> None:
            # Our own request only: this process never picks up another service's
            # rollback. A `serve` replica may claim it first; then this run only watches.
            # A rollout the executor parked (waiting on the platform) is claimed again when
            # its check is due, until the rollback leaves execution: like a step in
            # progress, a parked wait is never abandoned (the join below caps the wait).
            try:
                while True:
                    self.executor.run_once(rb.id)
                    if self.store.get(rb.id).state not in CLAIMABLE:
                        return
                    self.sleep(POLL_SECONDS)
            except BaseException as exc:  # said by the run's result, not lost in a thread
                failure.append(exc)

        worker = threading.Thread(target=work, name=f"auto-executor-{rb.id}", daemon=True)
        worker.start()
        deadline = self.monotonic() + timeout
        current = self.store.get(rb.id)
        while current.state not in REACHED | STOPPED and self.monotonic() < deadline \
                and not failure:
            self.sleep(POLL_SECONDS)
            current = self.store.get(rb.id)
        timed_out = current.state not in REACHED | STOPPED and not failure
        if worker.is_alive():
            if timed_out:
                self.say(f"{rb.ref} is not verified after {timeout:g} s; waiting for the step "
                         "in progress to end (a step is never abandoned).")
            # Also on success: aftercare's notices and the lease release finish first.
            worker.join(JOIN_CAP_SECONDS)
        current = self.store.get(rb.id)
        notes: list[str] = []
        if worker.is_alive():
            return AutoResult(name, "rollback_failed", Exit.ROLLBACK_FAILED,
                              f"{rb.ref} is {current.state.value} and its step is still in "
                              f"progress after {JOIN_CAP_SECONDS:g} s; this process leaves "
                              "it to the bot's executor (its lease runs out and `serve` "
                              "resumes it). A person should look now.", before=before,
                              rollback=_summary(current))
        if failure:
            if current.state not in REACHED:
                raise RuntimeError(f"the executor stopped: {failure[0]}") from failure[0]
            # The rollback is done; what failed came after it (a notice): say it, re-check.
            notes.append(f"after the rollback reached {current.state.value}: "
                         f"{type(failure[0]).__name__}: {failure[0]}")
        if timed_out or current.state not in REACHED:
            if current.state in STOPPED:
                detail = current.last_error or current.state.value.replace("_", " ")
                reason = f"{rb.ref} did not finish: {current.state.value} ({detail})"
            elif current.state in REACHED:
                reason = (f"{rb.ref} was not verified within {timeout:g} s; it reached "
                          f"{current.state.value} after the step in progress ended.")
            else:
                elsewhere = ("" if worker.is_alive() else
                             " under another executor (a `serve` replica claimed it)")
                reason = (f"{rb.ref} was not verified within {timeout:g} s and is "
                          f"{current.state.value}{elsewhere}; follow it in the incident "
                          "channel.")
            return AutoResult(name, "rollback_failed", Exit.ROLLBACK_FAILED, reason,
                              before=before, rollback=_summary(current))
        if settle > 0:
            self.sleep(settle)  # let traffic reach the restored revision before judging it
        after = self.read(svc, after_rollback=True)
        running = self._running(current)
        problems = list(after.problems)
        if running is None:
            problems.append("the running revision could not be read")
        elif running != current.target_revision.id:
            problems.append(f"the platform runs {running}, not the pinned "
                            f"{current.target_revision.label()}")
        after = HealthReport(healthy=not problems, problems=problems, health=after.health,
                             error_rate=after.error_rate, error_rate_note=after.error_rate_note,
                             revision=running)
        current = self.store.get(rb.id)
        target = current.target_revision.label()
        if problems:
            return AutoResult(name, "not_recovered", Exit.NOT_RECOVERED,
                              f"{rb.ref} rolled {name} back to {target} but it has not "
                              f"recovered: {'; '.join(problems)}. A person must take over: "
                              "see the incident channel.",
                              before=before, after=after, rollback=_summary(current),
                              notes=notes)
        return AutoResult(name, "recovered", Exit.OK,
                          f"{rb.ref} rolled {name} back to {target}; it recovered: "
                          f"{_figures(after)}. Stability monitoring continues in the bot.",
                          before=before, after=after, rollback=_summary(current), notes=notes)

    def _running(self, rb: Rollback) -> str | None:
        try:
            history = self.service.platform(rb.platform).history(rb.target)
        except Exception:  # unreadable: said as a problem, never guessed
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
