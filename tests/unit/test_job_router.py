"""The job router: one handler per kind, unknown kinds left alone, and the composition root
wires every kind the code schedules."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime

import pytest

from bot.aftercare.coordinator import COMPLETE_JOB, MONITOR_TICK_JOB, NOTIFY_JOB
from bot.aftercare.escalation import PAGE_JOB
from bot.aftercare.forward_fix import FORWARD_FIX_JOB
from bot.aftercare.postmortem_pr import PR_JOB
from bot.aftercare.reminders import REMINDER_JOB
from bot.aftercare.stakeholder_mail import MAIL_JOB
from bot.aftercare.status_lifecycle import SYNC_JOB
from bot.aftercare.watcher import WATCH_JOB
from bot.execution.job_router import JobRouter
from bot.persistence.jobs import Job
from bot.usecases.timers import DECISION_JOB, EVALUATE_JOB, EXPIRE_JOB, HOTFIX_JOB
from tests.e2e.conftest import Harness
from tests.e2e.conftest import make_harness as make_harness  # noqa: F401  (fixture)


def _job(kind: str) -> Job:
    now = datetime(2026, 11, 29, tzinfo=UTC)
    return Job(id=1, kind=kind, rollback_id=None, due_at=now, payload={}, status="due",
               claimed_by=None)


def test_one_handler_per_kind_and_unknown_kinds_are_left_alone(
        caplog: pytest.LogCaptureFixture) -> None:
    ran: list[str] = []
    router = JobRouter({"a": lambda job: ran.append(job.kind)})
    with pytest.raises(ValueError, match="'a' already has a handler"):
        router.add("a", lambda job: None)
    router.run(_job("a"))
    with caplog.at_level(logging.WARNING):
        router.run(_job("from-a-newer-version"))
    assert ran == ["a"]
    assert "no handler for job kind from-a-newer-version" in caplog.text


def test_the_composition_root_routes_every_kind_the_bot_schedules(
        make_harness: Callable[..., Harness]) -> None:
    h = make_harness(background=False)
    # HOTFIX_JOB and EVALUATE_JOB: rows an earlier version scheduled still run.
    assert h.bot.job_router.kinds == {EXPIRE_JOB, DECISION_JOB, HOTFIX_JOB, EVALUATE_JOB,
                                      MONITOR_TICK_JOB, NOTIFY_JOB, REMINDER_JOB, WATCH_JOB,
                                      MAIL_JOB, PAGE_JOB, PR_JOB, SYNC_JOB, FORWARD_FIX_JOB,
                                      COMPLETE_JOB}
