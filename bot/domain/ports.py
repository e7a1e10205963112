"""Ports the core talks through, implemented at the edges (Slack gateway, clocks).

``bot`` never imports Slack; ``bot.runtime.app`` wires a Slack-backed ``Chat`` and ``Directory``
in production and the same classes against the emulator in tests.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields, is_dataclass, replace
from datetime import UTC, datetime
from enum import Enum
from typing import Any, Protocol, TypeVar

from bot.domain.messages import Message
from bot.domain.models import Rollback, Step
from bot.observability.scrub import scrub, scrub_data, scrub_optional

Clock = Callable[[], datetime]


def utcnow() -> datetime:
    return datetime.now(UTC)


def _no_hold(*_where: str) -> None:
    return None


@dataclass(frozen=True)
class CrashPoints:
    """Places where a crash test parks the process to be killed: inside a step (``before`` or
    ``after`` its platform call), after Slack (or an SMTP relay) accepted an outbox post but
    before it is marked sent, and before an outbox e-mail's SMTP session (``sending``).
    Production passes none (every point returns at once); the test entry point
    ``tests/support/bot_main.py`` injects points that block until SIGKILL."""

    step: Callable[[str, str], None] = _no_hold  # (step kind, "before" | "after")
    posted: Callable[[str], None] = _no_hold  # (outbox key)
    # (outbox key) an e-mail rendered (or a thread line queued) and its attempt committed,
    # the SMTP session (the Slack post) not begun
    sending: Callable[[str], None] = _no_hold
    # (job key, stage) a post-mortem pull request part-way: "branch" made, "file" written
    publishing: Callable[[str, str], None] = _no_hold
    # (rollback ref) verified with no monitoring window: the move into monitoring
    # committed, the completion not made
    verified: Callable[[str], None] = _no_hold
    # (rollback ref) the move to completed committed; the card, the stakeholder update, the
    # reminders and the completion hooks not made
    completed: Callable[[str], None] = _no_hold


NO_CRASH_POINTS = CrashPoints()


@dataclass(frozen=True)
class Notice:
    """A message the core posts after the steps: verification, alerts, reports, reminders.

    ``key`` travels with the message (Slack message metadata) so a post whose poster died
    mid-call can be found again instead of being posted twice (``bot.persistence.outbox``).
    ``message`` is what it says (``bot.domain.messages``); the Slack layer words it, and
    adds the buttons its kind and facts call for.
    """

    key: str
    message: Message


class Chat(Protocol):
    """Where the core tells people what happened."""

    def post_request(self, rollback: Rollback, steps: list[Step]) -> tuple[str, str, str]:
        """Post (and pin) the request message; returns (channel id, message_ts, thread_ts):
        the channel as Slack identifies it, whether ``rollback.channel_id`` was an id or a
        configured name (the release watcher's ``auto_request`` posts to its channel by
        name; the request's channel rules compare clicks' channel ids with it)."""
        ...

    def refresh(self, rollback: Rollback, steps: list[Step] | None = None) -> None:
        """Re-render the request message in place for the rollback's current state; the
        core's implementation (``bot.usecases.latest_state_chat``) loads state and steps itself."""
        ...

    def thread(self, rollback: Rollback, message: Message, *, mention: str | None = None,
               key: str | None = None) -> None:
        """Progress and alerts go to the thread; ``mention`` (a user id) is told. ``key``
        (a line from the outbox) travels with the post so ``find_notice`` finds it."""
        ...

    def ephemeral(self, *, channel_id: str, user_id: str, text: str) -> None:
        """Slack text the Slack layer rendered itself (a refusal) to one person."""
        ...

    def post_channel(self, channel: str, message: Message) -> str:
        """Post to any channel (the incident channel, stakeholders); returns ts."""
        ...

    def upload(self, rollback: Rollback, *, filename: str, content: bytes, title: str) -> None:
        """Attach a file to the rollback's thread."""
        ...

    def notice(self, rollback: Rollback, notice: Notice, *, channel: str | None = None) -> str:
        """Post ``notice`` to the rollback's thread (or ``channel``) tagged with its key; ts."""
        ...

    def find_notice(self, rollback: Rollback, key: str, *, channel: str | None = None
                    ) -> str | None:
        """The ts of an earlier post tagged ``key`` (or of a shared file named ``key``)."""
        ...

    def edit_notice(self, rollback: Rollback, ts: str, notice: Notice, *,
                    channel: str | None = None) -> None:
        """Re-render a posted notice in place (e.g. without its buttons once decided)."""
        ...

    def post_notice(self, channel: str, notice: Notice) -> tuple[str, str]:
        """Post ``notice`` to ``channel`` (no rollback), tagged with its key; returns
        (channel id, ts): editing it later needs the id, not a configured name."""
        ...

    def find_channel_notice(self, channel: str, key: str) -> str | None:
        """The ts of a recent post in ``channel`` tagged ``key``."""
        ...

    def upload_to(self, channel: str, thread_ts: str, *, filename: str, content: bytes,
                  title: str) -> None:
        """Attach a file to a thread of ``channel`` (no rollback)."""
        ...


class Directory(Protocol):
    """Who is who: approver groups and channel names."""

    def usergroup_members(self, usergroup: str) -> set[str]: ...

    def usergroup_id(self, usergroup: str) -> str | None:
        """The id (``S…``) of a group configured by handle or id, so it can be mentioned;
        None when Slack knows no group by that handle."""
        ...

    def channel_name(self, channel_id: str) -> str: ...


class ScrubbedChat:
    """A ``Chat`` that scrubs secrets (``bot.observability.scrub``) out of all the core shows:
    every string fact of thread lines, notices and channel posts (the Slack layer words them
    afterwards, from scrubbed facts only), ephemerals, the request message's last error and
    text files. Wired once around the Slack gateway in the composition root, so no call
    site can skip it."""

    def __init__(self, inner: Chat) -> None:
        self.inner = inner

    def post_request(self, rollback: Rollback, steps: list[Step]) -> tuple[str, str, str]:
        return self.inner.post_request(_scrubbed(rollback), _scrubbed_steps(steps))

    def refresh(self, rollback: Rollback, steps: list[Step] | None = None) -> None:
        self.inner.refresh(_scrubbed(rollback),
                           None if steps is None else _scrubbed_steps(steps))

    def thread(self, rollback: Rollback, message: Message, *, mention: str | None = None,
               key: str | None = None) -> None:
        if key is None:  # chats that predate keyed lines (tests' fakes) keep working
            self.inner.thread(rollback, scrubbed_facts(message), mention=mention)
        else:
            self.inner.thread(rollback, scrubbed_facts(message), mention=mention, key=key)

    def ephemeral(self, *, channel_id: str, user_id: str, text: str) -> None:
        self.inner.ephemeral(channel_id=channel_id, user_id=user_id, text=scrub(text))

    def post_channel(self, channel: str, message: Message) -> str:
        return self.inner.post_channel(channel, scrubbed_facts(message))

    def upload(self, rollback: Rollback, *, filename: str, content: bytes, title: str) -> None:
        try:  # text (a log tail) is scrubbed; binary (a chart) cannot carry a token's text
            content = scrub(content.decode("utf-8")).encode("utf-8")
        except UnicodeDecodeError:
            pass
        self.inner.upload(rollback, filename=filename, content=content, title=scrub(title))

    def notice(self, rollback: Rollback, notice: Notice, *, channel: str | None = None) -> str:
        return self.inner.notice(rollback, _scrubbed_notice(notice), channel=channel)

    def find_notice(self, rollback: Rollback, key: str, *, channel: str | None = None
                    ) -> str | None:
        return self.inner.find_notice(rollback, key, channel=channel)

    def edit_notice(self, rollback: Rollback, ts: str, notice: Notice, *,
                    channel: str | None = None) -> None:
        self.inner.edit_notice(rollback, ts, _scrubbed_notice(notice), channel=channel)

    def post_notice(self, channel: str, notice: Notice) -> tuple[str, str]:
        return self.inner.post_notice(channel, _scrubbed_notice(notice))

    def find_channel_notice(self, channel: str, key: str) -> str | None:
        return self.inner.find_channel_notice(channel, key)

    def upload_to(self, channel: str, thread_ts: str, *, filename: str, content: bytes,
                  title: str) -> None:
        self.inner.upload_to(channel, thread_ts, filename=filename, content=content,
                             title=scrub(title))

    def __getattr__(self, name: str) -> Any:  # anything else an implementation offers
        return getattr(self.inner, name)


def _scrubbed(rb: Rollback) -> Rollback:
    return replace(rb, last_error=scrub_optional(rb.last_error), reason=scrub(rb.reason))


def _scrubbed_steps(steps: list[Step]) -> list[Step]:
    return [replace(s, error=scrub_optional(s.error), result=scrub_data(s.result))
            for s in steps]


def _scrubbed_notice(notice: Notice) -> Notice:
    return replace(notice, message=scrubbed_facts(notice.message))


_F = TypeVar("_F")


def scrubbed_facts(facts: _F) -> _F:
    """``facts`` (a message, or any value in one) with every string scrubbed: dataclasses,
    tuples, lists and dicts are walked; enums, numbers and times are kept as they are."""
    if isinstance(facts, Enum):  # a StrEnum is a str: scrubbing would turn it into one
        return facts
    if isinstance(facts, str):
        return scrub(facts)  # type: ignore[return-value]
    if is_dataclass(facts) and not isinstance(facts, type):
        changes = {f.name: scrubbed_facts(getattr(facts, f.name)) for f in fields(facts)}
        return replace(facts, **changes)
    if isinstance(facts, dict):
        return {key: scrubbed_facts(value) for key, value in facts.items()}  # type: ignore[return-value]
    if isinstance(facts, list | tuple):
        return type(facts)(scrubbed_facts(item) for item in facts)
    return facts
