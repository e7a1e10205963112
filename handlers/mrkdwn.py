"""Escaping for text that people (or platforms) wrote, before it goes into Slack mrkdwn.

Slack treats ``&``, ``<`` and ``>`` as control characters: ``<!channel>``, ``<@U…>`` and
``<https://…|label>`` are parsed wherever mrkdwn is. Escaping exactly these three as HTML
entities is Slack's documented rule ("Escaping text",
https://docs.slack.dev/messaging/formatting-message-text/#escaping); entity-encoding more
would show up literally. Escape the *pieces* a user typed, never a whole message, so the
mentions the bot builds itself keep working.
"""

from __future__ import annotations

import re

_TABLE = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;"})
# The only markup core-built texts carry: a plain user mention such as <@U0123ABC>, and a
# permalink to a rollback's own message (<https://slack.com/archives/C…/p…|RB-12>).
_ESCAPED_USER_MENTION = re.compile(r"&lt;@([UW][A-Z0-9]{1,20})&gt;")
_ESCAPED_PERMALINK = re.compile(
    r"&lt;(https://slack\.com/archives/[A-Z0-9]{1,20}/p[0-9]{1,20})\|(RB-[0-9]{1,12})&gt;")


def escape(text: object) -> str:
    """``text`` as literal characters in mrkdwn (``None`` and numbers are fine too)."""
    return ("" if text is None else str(text)).translate(_TABLE)


def escape_keeping_mentions(text: str) -> str:
    """Escape a core-built message (an error that may echo a service name or reason) but
    let the user mentions it names (``<@U123>``) render. Everything else, ``<!channel>``,
    ``<!subteam^…>`` and links included, shows literally."""
    escaped = _ESCAPED_USER_MENTION.sub(r"<@\1>", escape(text))
    return _ESCAPED_PERMALINK.sub(r"<\1|\2>", escaped)
