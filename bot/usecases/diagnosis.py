"""``/rollback diagnose <service>``: which of the runbook's three scenarios applies now.

Its job: run the runbook's scenario checks for one service and return the findings as
facts (``bot.domain.messages.Diagnosis``), each with its evidence and the scope a request
for it would take, so the person mid-incident can open the request form with that scope:

* the error rate (the service's Prometheus ``error_rate_query``) above its
  ``error_rate_threshold`` → an application rollback (``app``);
* a ``verify_queries`` entry failing, or the ``migration_check_query`` returning rows (a
  failed or partial migration) → a database rollback (``db``), naming the newest backup;
* an ``external_checks`` probe (OpenAI, WAHA…) failing → a configuration rollback and, when
  the service re-points webhooks, the webhook re-point (``config``, ``external``).

No finding is "nothing wrong" with what was checked. Read-only: no platform call at all, the
database session is read-only and the external checks are the configured probes (GET by
default). Every check runs at once, each bounded (``diagnose.check_timeout_seconds``; an
external probe by its own ``timeout_seconds``): a hanging Prometheus or database is "could
not check … within N s", never a hang of the diagnosis and never a finding. Facts never
carry a DSN or header value; every string is scrubbed before it is returned.

The one write is the bot's own audit trail (``DiagnosisLog``): each run is an audit event
of no rollback (who ran it, where, for which service, what it found and checked), and each
finding someone takes to the request form is another, naming that run, so the answer can
be re-rendered showing who took which finding (Slack does not send an ephemeral message's
content with a click on it).
"""

from __future__ import annotations

import functools
import logging
from dataclasses import replace
from datetime import datetime
from typing import Any

import httpx

from bot.checks.probes import check_http_probe
from bot.checks.runner import Check, CheckResult, Outcome, guarded, run_suite
from bot.domain import messages as m
from bot.domain.config import DatabaseConfig, PrometheusConfig, ServiceConfig, secret
from bot.domain.figure_words import pct
from bot.domain.ports import Clock, scrubbed_facts, utcnow
from bot.integrations.errors import DatabaseOperationError
from bot.integrations.pg_tools import scrub_dsn
from bot.integrations.prometheus import instant_query
from bot.integrations.target_database import first_column, latest_backup, verify
from bot.persistence.store import Store
from bot.usecases.catalog import Catalog

log = logging.getLogger(__name__)

_ERROR_RATE = "error rate"
_DATABASE = "database"
_MAX_LISTED = 5  # failed migrations named in the evidence


class Diagnoser:
    """The diagnosis use case; ``diagnose.check_timeout_seconds`` of the configuration bounds
    each Prometheus and database check."""

    def __init__(self, catalog: Catalog, *, clock: Clock = utcnow) -> None:
        self.catalog = catalog
        self.clock = clock
        self.timeout = catalog.config.diagnose.check_timeout_seconds

    def diagnose(self, name: str) -> m.Diagnosis:
        svc = self.catalog.service_config(name)  # UnknownService lists the known ones
        checks = self._checks(svc, self.catalog.http)  # the process's client (shared)
        budget = max([c.timeout for c in checks], default=0.0) + 1.0
        results = run_suite(checks, overall_timeout=budget) if checks else []
        checked = tuple(self._outcome(r, c) for r, c in zip(results, checks, strict=True))
        findings = tuple(f for f in (self._app(svc, checked),
                                     self._db(svc, name, checked, results),
                                     self._external(svc, checked)) if f is not None)
        return scrubbed_facts(m.Diagnosis(name, self.clock(), findings, checked))

    # ----------------------------------------------------------------------- the checks
    def _checks(self, svc: ServiceConfig, client: httpx.Client) -> list[Check]:
        checks: list[Check] = []
        if svc.prometheus is not None:
            prom = svc.prometheus
            checks.append(Check(_ERROR_RATE, self.timeout, lambda: guarded(
                _ERROR_RATE, self.timeout, lambda: _error_rate(prom, client, self.timeout))))
        if svc.database is not None:
            db = svc.database
            checks.append(Check(_DATABASE, self.timeout, lambda: _database(db, self.timeout)))
        for probe in svc.external_checks:
            run = functools.partial(check_http_probe, probe, client=client)
            # The probe bounds its own request; the runner adds a margin for connecting.
            checks.append(Check(probe.name, probe.timeout_seconds + 1.0, run))
        return checks

    def _outcome(self, result: CheckResult, check: Check) -> m.Checked:
        verdict = result.details.get("verdict")
        if verdict in ("ok", "problem", "unchecked"):
            return m.Checked(check.name, str(verdict), result.summary)
        if check.name in (_ERROR_RATE, _DATABASE):
            # No verdict: the runner gave up on it (late) or it raised. Unknown, not broken.
            late = "timed out" in result.summary  # the runner's, the client's or the server's
            detail = (f"could not check within {check.timeout:g} s" if late
                      else f"could not check: {result.summary}")
            return m.Checked(check.name, "unchecked", detail)
        if result.details.get("missing_env"):  # a probe whose secret is not set here
            return m.Checked(check.name, "unchecked", f"could not check: {result.summary}")
        if result.status == "fail":  # an external service that fails or does not answer
            return m.Checked(check.name, "problem", result.summary)
        return m.Checked(check.name, "ok", result.summary)

    # ----------------------------------------------------------------------- the scenarios
    def _app(self, svc: ServiceConfig, checked: tuple[m.Checked, ...]) -> m.Finding | None:
        found = [c for c in checked if c.what == _ERROR_RATE and c.outcome == "problem"]
        if not found or svc.prometheus is None:
            return None
        return m.Finding("app", ("app",), (found[0].detail,))

    def _db(self, svc: ServiceConfig, name: str, checked: tuple[m.Checked, ...],
            results: list[CheckResult]) -> m.Finding | None:
        problem = next((r for r, c in zip(results, checked, strict=True)
                        if c.what == _DATABASE and c.outcome == "problem"), None)
        if problem is None or svc.database is None:
            return None
        evidence = tuple(str(e) for e in problem.details.get("evidence", ()))
        location = svc.database.backup_location
        try:
            latest = latest_backup(location, service=name)
        except OSError as exc:  # an unreadable backup directory is said, not raised
            log.info("diagnose: backups of %s unreadable: %s", name, type(exc).__name__)
            latest = None
        return m.Finding("db", ("db",), evidence or (problem.summary,),
                         backup=latest.path.name if latest else None,
                         backup_created=latest.created if latest else None,
                         backup_location=location)

    def _external(self, svc: ServiceConfig, checked: tuple[m.Checked, ...]
                  ) -> m.Finding | None:
        names = {p.name for p in svc.external_checks}
        failing = [c for c in checked if c.what in names and c.outcome == "problem"]
        if not failing:
            return None
        scope = ("config", "external") if svc.webhooks else ("config",)
        return m.Finding("external", scope, tuple(f"{c.what}: {c.detail}" for c in failing))


DIAGNOSIS_EVENT = "diagnosis"
TAKEN_EVENT = "diagnosis_finding_taken"


class DiagnosisLog:
    """Diagnoses in the audit trail (events of no rollback, ``Store.record_event``)."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def record(self, d: m.Diagnosis, *, user: str, channel: str) -> m.Diagnosis:
        """Audit a run: who ran it, where, its findings and checks; returns ``d`` naming its
        record, which its findings' buttons carry."""
        record = self.store.record_event(actor=user, event=DIAGNOSIS_EVENT,
                                         detail={"channel": channel, **_to_detail(d)})
        log.info("diagnosis %s of %s by %s: %d finding(s)", record, d.service, user,
                 len(d.findings))
        return replace(d, record=record)

    def take(self, record: int, *, service: str, scope: tuple[str, ...], user: str
             ) -> m.Diagnosis | None:
        """``user`` took the finding of ``scope`` to the request form: audited (once per
        user and finding); returns the run as recorded, showing who took which finding.
        None when no recorded run of ``service`` has that finding (a stale or forged
        button): nothing is written then."""
        found = self.store.recorded_events(DIAGNOSIS_EVENT, event_id=record,
                                           detail={"service": service})
        if not found:
            return None
        d = replace(_from_detail(found[0].detail), record=record)
        if not any(f.scope == scope for f in d.findings):
            return None
        takings = self.store.recorded_events(TAKEN_EVENT, detail={"diagnosis": record})
        if not any(e.actor == user and tuple(e.detail.get("scope") or ()) == scope
                   for e in takings):
            self.store.record_event(actor=user, event=TAKEN_EVENT, detail={
                "diagnosis": record, "service": service, "scope": list(scope)})
            takings = self.store.recorded_events(TAKEN_EVENT, detail={"diagnosis": record})
        takers: dict[tuple[str, ...], list[str]] = {}
        for event in takings:
            who = takers.setdefault(tuple(event.detail.get("scope") or ()), [])
            if event.actor not in who:
                who.append(event.actor)
        return replace(d, findings=tuple(replace(f, taken_by=tuple(takers.get(f.scope, ())))
                                         for f in d.findings))


def _to_detail(d: m.Diagnosis) -> dict[str, Any]:
    def when(at: datetime | None) -> str | None:
        return None if at is None else at.isoformat()

    return {"service": d.service, "at": when(d.at),
            "findings": [{"scenario": f.scenario, "scope": list(f.scope),
                          "evidence": list(f.evidence), "backup": f.backup,
                          "backup_created": when(f.backup_created),
                          "backup_location": f.backup_location} for f in d.findings],
            "checked": [{"what": c.what, "outcome": c.outcome, "detail": c.detail}
                        for c in d.checked]}


def _from_detail(detail: dict[str, Any]) -> m.Diagnosis:
    def when(text: Any) -> datetime | None:
        return None if text is None else datetime.fromisoformat(str(text))

    at = when(detail.get("at"))
    assert at is not None, "a recorded diagnosis has its time"
    findings = tuple(m.Finding(str(f["scenario"]), tuple(f["scope"]), tuple(f["evidence"]),
                               backup=f.get("backup"),
                               backup_created=when(f.get("backup_created")),
                               backup_location=f.get("backup_location"))
                     for f in detail.get("findings") or ())
    checked = tuple(m.Checked(str(c["what"]), str(c["outcome"]), str(c["detail"]))
                    for c in detail.get("checked") or ())
    return m.Diagnosis(str(detail["service"]), at, findings, checked)


# --------------------------------------------------------------------------- check bodies
def _error_rate(prom: PrometheusConfig, client: httpx.Client, timeout: float) -> Outcome:
    value = instant_query(prom.url, prom.error_rate_query, client=client, timeout=timeout)
    threshold = prom.error_rate_threshold
    if value is None:
        return "pass", "no data (no traffic?)", {"verdict": "ok"}
    if value > threshold:
        return "fail", f"{pct(value)} is above the threshold of {pct(threshold)}", {
            "verdict": "problem", "value": value}
    return "pass", f"{pct(value)}, within the threshold of {pct(threshold)}", {
        "verdict": "ok", "value": value}


def _database(cfg: DatabaseConfig, timeout: float) -> CheckResult:
    dsn = secret(cfg.dsn_env)
    if not dsn:
        return CheckResult(_DATABASE, "skip", f"could not check: {cfg.dsn_env} is not set",
                           {"verdict": "unchecked"})
    return guarded(_DATABASE, timeout, lambda: _database_body(cfg, dsn, timeout),
                   scrub=lambda text: scrub_dsn(text, dsn))


def _database_body(cfg: DatabaseConfig, dsn: str, timeout: float) -> Outcome:
    try:
        results = verify(dsn, queries=cfg.verify_queries, timeout=timeout)
    except DatabaseOperationError as exc:
        # Unreachable is not evidence that restoring a backup would help: unknown.
        return "skip", f"could not connect ({_reason(str(exc))})", {"verdict": "unchecked"}
    ping, integrity = results[0], results[1:]
    if not ping.ok:
        return "skip", f"could not check: {ping.error}", {"verdict": "unchecked"}
    evidence: list[str] = []
    slow: list[str] = []
    for r in integrity:
        if r.ok:
            continue
        if (r.error or "").startswith("timed out"):
            slow.append(r.query)
        else:
            evidence.append(f"`{r.query}` failed: {r.error}")
    unchecked: list[str] = [f"could not run `{q}` within {timeout:g} s" for q in slow]
    if cfg.migration_check_query:
        try:
            failed = first_column(dsn, cfg.migration_check_query, timeout=timeout)
        except DatabaseOperationError as exc:
            unchecked.append(f"migration check failed: {exc}")
        else:
            if failed:
                listed = ", ".join(failed[:_MAX_LISTED])
                more = f" (+{len(failed) - _MAX_LISTED} more)" if len(failed) > _MAX_LISTED else ""
                evidence.append(f"failed or partial migration: {listed}{more}")
    if evidence:
        return "fail", "; ".join(evidence + unchecked), {"verdict": "problem",
                                                         "evidence": evidence}
    if unchecked:
        return "skip", "; ".join(unchecked), {"verdict": "unchecked"}
    done = len(integrity) + (1 if cfg.migration_check_query else 0)
    what = f"{done} check{'s' if done != 1 else ''} passed" if done else "connected"
    return "pass", what, {"verdict": "ok"}


def _reason(message: str) -> str:
    """``cannot connect to <redacted DSN>: why`` without the DSN part."""
    head, sep, why = message.partition(": ")
    return why if sep and head.startswith("cannot connect to") else "see the bot's log"

