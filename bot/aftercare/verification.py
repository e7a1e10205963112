"""The runbook's "Post-Rollback Verification": run the configured checks, one notice for all.

A line per check; a failure names what failed and offers Retry verification / Mark resolved.
"""

from __future__ import annotations

from collections.abc import Sequence

import httpx

from bot.checks.suite import CheckResult, build_checks, render_text, run_suite, summarize
from bot.domain.config import ServiceConfig
from bot.domain.models import Rollback
from bot.domain.ports import Notice, NoticeAction
from platforms.base import Platform


def run_verification(svc: ServiceConfig, *, platform: Platform | None, rb: Rollback,
                     timeout: float) -> list[CheckResult]:
    """Every configured check, concurrently, bounded by ``timeout`` overall."""
    with httpx.Client(follow_redirects=False) as client:
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
                        closed: str | None = None) -> Notice:
    """The one verification message; ``closed`` replaces the buttons once someone acted."""
    bad = failed(results)
    again = f" (attempt {attempt})" if attempt > 1 else ""
    if not results:
        title = f":grey_question: Verification of {rb.ref}{again}: no checks configured"
        body = ("No health, database, probe or resource checks are configured for "
                f"`{rb.service}`; the rollback is treated as verified.")
    elif bad:
        title = f":x: Verification of {rb.ref} failed{again}: {summarize(results)}"
        body = (render_text(results) + f"\n\n*{rb.ref} is now verification failed.* "
                f"Failed: {failure_summary(results)}.")
    else:
        title = f":white_check_mark: Verification of {rb.ref} passed{again}: {summarize(results)}"
        body = render_text(results)
    actions: tuple[NoticeAction, ...] = ()
    footer = closed
    if bad and closed is None:
        actions = (
            NoticeAction("retry_verification", "Retry verification", str(rb.id), "primary"),
            NoticeAction("resolve", "Mark resolved", str(rb.id), "danger"),
        )
        footer = ("Retry once the cause is fixed, or close the rollback as failed and "
                  "fix forward.")
    return Notice(key=verification_key(rb.id, attempt), title=title, text=body,
                  mention=(rb.incident_commander or rb.requester) if bad else None,
                  actions=actions, footer=footer)


def verification_key(rollback_id: int, attempt: int) -> str:
    return f"verify:{rollback_id}:{attempt}"
