"""Serialized, latest-state re-rendering of the request message.

Several threads (the approving listener, executor workers, the scheduler) re-render the
same message. Each ``refresh`` takes a per-rollback lock and renders what the store
holds *now*, never the snapshot the caller had, so a slow render of an older state can
never overwrite a newer one and leave stale buttons behind.

Between an approval and the executor's first platform write, a refresh is not sent at all:
``defer`` (the thread deliverer's, ``bot.usecases.thread_delivery``) takes it and renders
it once that write is made, and ``defer_line`` queues a thread line (the approval's break
glass or override line) in the outbox, so no Slack round trip sits between the decision
and the platform.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from bot.domain.messages import Message
from bot.domain.models import Rollback, Step
from bot.domain.ports import Chat
from bot.persistence.store import Store


class _Turn:
    """One rollback's render lock and how many callers hold or wait for it: the entry is
    dropped when the last one leaves, so a long-lived process keeps no lock per rollback
    it ever rendered (a thousand rollbacks were a thousand locks kept for good)."""

    __slots__ = ("lock", "users")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.users = 0


class LatestStateChat:
    """A ``Chat`` whose ``refresh`` always shows the current state; the rest passes through."""

    def __init__(self, inner: Chat, store: Store) -> None:
        self.inner = inner
        self.store = store
        self._turns: dict[int, _Turn] = {}
        self._guard = threading.Lock()

    # Set by the composition root: True when it took the refresh to render later.
    defer: Callable[[int], bool] | None = None
    # Likewise for a thread line (queued in the outbox, posted after the platform write).
    defer_line: Callable[[Rollback, Message, str | None], bool] | None = None

    def thread(self, rollback: Rollback, message: Message, *, mention: str | None = None,
               key: str | None = None) -> None:
        if key is None and self.defer_line is not None and \
                self.defer_line(rollback, message, mention):
            return
        if key is None:
            self.inner.thread(rollback, message, mention=mention)
        else:
            self.inner.thread(rollback, message, mention=mention, key=key)

    def refresh(self, rollback: Rollback, steps: list[Step] | None = None) -> None:
        if self.defer is not None and self.defer(rollback.id):
            return
        self.refresh_now(rollback)

    def refresh_now(self, rollback: Rollback) -> None:
        """Render the current state now, whatever ``defer`` says (the deliverer's call)."""
        with self._guard:
            turn = self._turns.setdefault(rollback.id, _Turn())
            turn.users += 1
        try:
            with turn.lock:
                latest = self.store.get(rollback.id)
                self.inner.refresh(latest, self.store.steps(rollback.id))
        finally:
            with self._guard:
                turn.users -= 1
                if turn.users == 0:
                    del self._turns[rollback.id]

    def renders_in_progress(self) -> int:
        """Rollbacks with a render running or waiting (0 when idle: nothing is kept)."""
        with self._guard:
            return len(self._turns)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)
