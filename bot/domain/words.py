"""Plain words with facts in them: the sentences the core stores, audits and shows.

A person named in a sentence is a ``Mention`` (a Slack user id) and a rollback it links is a
``RollbackLink``; the rest is text. ``plain`` gives what is stored and logged (``@U123``);
the Slack layer renders the same words with working mentions and links
(``handlers/mrkdwn.py``). Errors (``bot.domain.errors``) and messages
(``bot.domain.messages``) are both written in these words.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Mention:
    """A person named in a sentence, by Slack user id."""

    user: str

    def __str__(self) -> str:  # plain words (logs, stored errors): no Slack markup
        return f"@{self.user}"


@dataclass(frozen=True)
class GroupMention:
    """A Slack user group named in a sentence: as configured (a handle such as
    ``sre-approvers``, or an id), and the id Slack resolved it to. ``id`` is None when
    Slack did not know the group (or could not be asked): it cannot be mentioned then, and
    nobody in it is notified, which the Slack layer says instead of pretending."""

    configured: str
    id: str | None

    def __str__(self) -> str:  # plain words (logs, stored errors): no Slack markup
        return f"@{self.configured.lstrip('@')}"


@dataclass(frozen=True)
class RollbackLink:
    """A link to a rollback's request message (its channel and message ts)."""

    ref: str
    channel_id: str
    message_ts: str | None

    def __str__(self) -> str:
        return self.ref


Part = str | Mention | RollbackLink
Words = tuple[Part, ...]


def plain(words: Words) -> str:
    """``words`` as plain text: what is stored, audited and logged."""
    return "".join(str(part) for part in words)


def as_words(text: str | Words) -> Words:
    return (text,) if isinstance(text, str) else text
