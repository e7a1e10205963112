"""Ports the core talks through, implemented at the edges (Slack gateway, clocks).

``bot`` never imports Slack; ``bot.app`` wires a Slack-backed ``Chat`` and ``Directory``
in production and the same classes against the emulator in tests.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Protocol

from bot.models import Rollback, Step

Clock = Callable[[], datetime]


def utcnow() -> datetime:
    return datetime.now(UTC)


class Chat(Protocol):
    """Where the core tells people what happened."""

    def post_request(self, rollback: Rollback, steps: list[Step]) -> tuple[str, str]:
        """Post (and pin) the request message; returns (message_ts, thread_ts)."""
        ...

    def refresh(self, rollback: Rollback, steps: list[Step]) -> None:
        """Re-render the request message in place for the rollback's current state."""
        ...

    def thread(self, rollback: Rollback, text: str, *, mention: str | None = None) -> None:
        """Progress and alerts go to the thread."""
        ...

    def ephemeral(self, *, channel_id: str, user_id: str, text: str) -> None: ...

    def post_channel(self, channel: str, text: str, *, blocks: list[dict[str, object]] | None = None
                     ) -> str:
        """Post to any channel (stakeholders); returns ts."""
        ...

    def upload(self, rollback: Rollback, *, filename: str, content: bytes, title: str) -> None:
        """Attach a file to the rollback's thread."""
        ...


class Directory(Protocol):
    """Who is who: approver groups and channel names."""

    def usergroup_members(self, usergroup: str) -> set[str]: ...

    def channel_name(self, channel_id: str) -> str: ...
