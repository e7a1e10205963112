"""Escaping for text that people (or platforms) wrote, before it goes into Slack mrkdwn.

Slack treats ``&``, ``<`` and ``>`` as control characters: ``<!channel>``, ``<@U…>`` and
``<https://…|label>`` are parsed wherever mrkdwn is. Escaping exactly these three as HTML
entities is Slack's documented rule ("Escaping text",
https://docs.slack.dev/messaging/formatting-message-text/#escaping); entity-encoding more
would show up literally. Escape the *pieces* a user typed, never a whole message, so the
mentions the bot builds itself keep working; ``mention``, ``permalink`` and ``words`` build
that markup from the core's facts (``bot.domain.messages``).
"""

from __future__ import annotations

from bot.domain.words import Mention, RollbackLink, Words

_TABLE = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;"})


def escape(text: object) -> str:
    """``text`` as literal characters in mrkdwn (``None`` and numbers are fine too)."""
    return ("" if text is None else str(text)).translate(_TABLE)


def mention(user: str) -> str:
    """A user mention; ``user`` is a Slack user id the core recorded."""
    return f"<@{user}>"


def permalink(link: RollbackLink) -> str:
    """A link to a rollback's request message, labelled with its ref."""
    ts = (link.message_ts or "").replace(".", "")
    return f"<https://slack.com/archives/{link.channel_id}/p{ts}|{link.ref}>"


def words(parts: Words) -> str:
    """Plain words with their facts: text escaped, people mentioned, rollbacks linked."""
    out = []
    for part in parts:
        if isinstance(part, Mention):
            out.append(mention(part.user))
        elif isinstance(part, RollbackLink):
            out.append(permalink(part))
        else:
            out.append(escape(part))
    return "".join(out)
