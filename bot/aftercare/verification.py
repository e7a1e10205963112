"""The runbook's "Post-Rollback Verification": run the configured checks, one notice for all.

A line per check; a failure names what failed, and the Slack layer offers Retry verification /
Mark resolved on it.
"""

from __future__ import annotations

from collections.abc import Sequence

import httpx

from bot.checks.runner import CheckResult, render_text, run_suite, summarize
from bot.checks.suite import build_checks
from bot.domain.config import ServiceConfig
from bot.domain.messages import Message, Verification
from bot.domain.models import Rollback
from bot.domain.ports import Notice
from platforms.base import Platform


def run_verification(svc: ServiceConfig, *, platform: Platform | None, rb: Rollback,
                     timeout: float, client: httpx.Client) -> list[CheckResult]:
    """Every configured check, concurrently, bounded by ``timeout`` overall. ``client`` is
    the process's (``bot.integrations.http_client``: redirects not followed); each check
    passes its own timeout, and one the suite gave up on may still finish on it."""
    checks = build_checks(svc, client=client, platform=platform, target=rb.target)
    if not checks:
        return []
    return run_suite(checks, overall_timeout=timeout)


def failed(results: Sequence[CheckResult]) -> list[CheckResult]:
    return [r for r in results if not r.ok]


def failure_summary(results: Sequence[CheckResult]) -> str:
    """``health (timed out after 2s); database (integrity query failed: …)``."""
    return "; ".join(f"{r.name} ({' '.join(r.summary.split())[:160]})" for r in failed(results))


def verification_notice(rb: Rollback, results: Sequence[CheckResult], *, attempt: int,
                        closed: Message | None = None) -> Notice:
    """The one verification message; ``closed`` (who acted on it) replaces the buttons."""
    bad = failed(results)
    outcome = "none" if not results else "failed" if bad else "passed"
    return Notice(verification_key(rb.id, attempt), Verification(
        rb.id, rb.ref, rb.service, attempt, outcome,
        summary=summarize(results) if results else "", checks=render_text(results),
        failures=failure_summary(results),
        mention=(rb.incident_commander or rb.requester) if bad else None, closed=closed))


def verification_key(rollback_id: int, attempt: int) -> str:
    return f"verify:{rollback_id}:{attempt}"
