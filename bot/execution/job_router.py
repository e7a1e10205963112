"""Which code runs a durable job of each kind: one table, built in the composition root.

Jobs (``scheduled_jobs`` rows) name a kind; the leader's scheduler hands each due job to
``JobRouter.run``. Handlers are added where the objects that own them are built
(``bot/runtime/app.py``), never by the objects themselves, so reading the wiring shows
every kind the bot runs and who runs it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping

from bot.persistence.jobs import Job

log = logging.getLogger(__name__)

JobHandler = Callable[[Job], None]


class JobRouter:
    def __init__(self, handlers: Mapping[str, JobHandler] | None = None) -> None:
        self._handlers: dict[str, JobHandler] = {}
        for kind, handler in (handlers or {}).items():
            self.add(kind, handler)

    def add(self, kind: str, handler: JobHandler) -> None:
        """One handler per kind: a second registration is a wiring mistake, said loudly."""
        if kind in self._handlers:
            raise ValueError(f"job kind {kind!r} already has a handler")
        self._handlers[kind] = handler

    @property
    def kinds(self) -> frozenset[str]:
        return frozenset(self._handlers)

    def run(self, job: Job) -> None:
        handler = self._handlers.get(job.kind)
        if handler is None:  # a row from a newer or older version: leave it, say so
            log.warning("no handler for job kind %s", job.kind)
            return
        handler(job)
