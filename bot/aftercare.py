"""After the steps: verification, then stability monitoring until the window closes.

Called by the executor with a rollback in ``verifying``. The monitoring window is a
durable job, so a restart never loses the end of the window.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from bot.jobs import Job
from bot.lifecycle import Event, State
from bot.models import Rollback
from bot.service import RollbackService
from bot.store import StaleState

log = logging.getLogger(__name__)

MONITOR_END_JOB = "monitor_end"


class Aftercare:
    def __init__(self, service: RollbackService) -> None:
        self.service = service
        service.job_handlers[MONITOR_END_JOB] = self._monitor_end

    def __call__(self, rb: Rollback) -> None:
        svc = self.service.service_config(rb.service)
        store, chat = self.service.store, self.service.chat
        try:
            rb = store.transition(rb.id, Event.VERIFIED, actor="bot", expected=State.VERIFYING)
        except StaleState:
            return
        chat.refresh(rb, store.steps(rb.id))
        duration = svc.monitoring.duration_seconds
        if duration <= 0:
            self._finish(rb)
            return
        end = self.service.clock() + timedelta(seconds=duration)
        self.service.jobs.schedule(kind=MONITOR_END_JOB, rollback_id=rb.id, due_at=end,
                                   dedupe_key=f"{MONITOR_END_JOB}:{rb.id}")
        chat.thread(rb, f":eyes: Monitoring {rb.service} until {end:%H:%M} UTC.")

    def _monitor_end(self, job: Job) -> None:
        assert job.rollback_id is not None
        rb = self.service.store.get(job.rollback_id)
        if rb.state == State.MONITORING:
            self._finish(rb)

    def _finish(self, rb: Rollback) -> None:
        store, chat = self.service.store, self.service.chat
        try:
            rb = store.transition(rb.id, Event.STABLE, actor="bot", expected=State.MONITORING)
        except StaleState:
            return
        chat.refresh(rb, store.steps(rb.id))
        chat.thread(rb, f":large_green_circle: {rb.ref} completed: {rb.service} is on "
                        f"{rb.target_revision.label()}.")
