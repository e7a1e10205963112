"""How the executor tells the thread and the request message what it did.

The executor says a line (``say``) or asks for the request message to be re-rendered
(``refresh``) and goes on: with the durable deliverer (``bot.usecases.thread_delivery``)
the line is queued in the outbox and posted afterwards, so no Slack round trip sits
between an approval and the platform, and a crash cannot lose a line. ``written`` tells it
the rollback's first platform write was made (Slack may hear about the rollback from now
on); ``flush`` delivers what is queued before the executor hands over. ``notice`` queues
a card (aftercare's verification, monitoring and completion notices) behind the lines the
same way, so a refused post never holds the transition it decorates.

``ImmediateProgress`` posts at once through a ``Chat``: what a test that drives the
executor alone uses.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, Protocol, cast

from bot.domain.messages import Message
from bot.domain.models import Rollback
from bot.domain.ports import Chat, Notice
from platforms.base import Platform

# The platform calls that change production (``platforms.base.Platform``); reads are free.
PLATFORM_WRITES = frozenset({"rollback_to", "scale", "restore_config"})


class Progress(Protocol):
    def say(self, rb: Rollback, message: Message, *, key: str | None = None,
            mention: str | None = None) -> None:
        """A thread line; ``key`` makes it once-only across a resume (None: a fresh one)."""
        ...

    def say_again(self, rb: Rollback, message: Message, *, key: str) -> None:
        """Say a line unless ``key`` was said before (a resumed executor's catch-up)."""
        ...

    def notice(self, rb: Rollback, notice: Notice) -> None:
        """A notice posted once under its key, after the lines said before it."""
        ...

    def refresh(self, rb: Rollback) -> None: ...

    def written(self, rollback_id: int) -> None: ...

    def flush(self, rollback_id: int) -> None: ...


class ImmediateProgress:
    """Every line and refresh through ``chat`` at once (no outbox, no deliverer)."""

    def __init__(self, chat: Chat) -> None:
        self.chat = chat

    def say(self, rb: Rollback, message: Message, *, key: str | None = None,
            mention: str | None = None) -> None:
        self.chat.thread(rb, message, mention=mention)

    def say_again(self, rb: Rollback, message: Message, *, key: str) -> None:
        return None  # nothing is kept to tell whether it was said: say nothing twice

    def notice(self, rb: Rollback, notice: Notice) -> None:
        self.chat.notice(rb, notice)

    def refresh(self, rb: Rollback) -> None:
        self.chat.refresh(rb)

    def written(self, rollback_id: int) -> None:
        return None

    def flush(self, rollback_id: int) -> None:
        return None


def announce_writes(platform: Platform, on_write: Callable[[], None]) -> Platform:
    """``platform`` whose writes call ``on_write`` once they returned (or failed: either
    way the write was attempted, and Slack may be told)."""
    return cast(Platform, _Announcing(platform, on_write))


class _Announcing:
    def __init__(self, inner: Platform, on_write: Callable[[], None]) -> None:
        self._inner = inner
        self._on_write = on_write

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._inner, name)
        if name not in PLATFORM_WRITES:
            return attr

        @functools.wraps(attr)
        def write(*args: Any, **kwargs: Any) -> Any:
            try:
                return attr(*args, **kwargs)
            finally:
                self._on_write()

        return write
