"""Escaping for text that people (or platforms) wrote, before it goes into Slack mrkdwn.

Slack treats ``&``, ``<`` and ``>`` as control characters: ``<!channel>``, ``<@U…>`` and
``<https://…|label>`` are parsed wherever mrkdwn is. Escaping exactly these three as HTML
entities is Slack's documented rule ("Escaping text",
https://docs.slack.dev/messaging/formatting-message-text/#escaping); entity-encoding more
would show up literally. Escape the *pieces* a user typed, never a whole message, so the
mentions the bot builds itself keep working; ``mention``, ``permalink`` and ``words`` build
that markup from the core's facts (``bot.domain.messages``). They build it only from facts
of the expected shape (a Slack user id, a conversation id, a message ts, an ``RB-n`` ref):
anything else, such as a name typed in the configuration (``tech_leads.users: [alice]``),
is shown as escaped plain text, never as markup.
"""

from __future__ import annotations

import re

from bot.domain.words import GroupMention, Mention, RollbackLink, Words

_TABLE = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;"})
_USER_ID = re.compile(r"[UW][A-Z0-9]+")  # a Slack user id (W: an Enterprise Grid one)
_CONVERSATION_ID = re.compile(r"[CGD][A-Z0-9]+")  # a channel, private channel or DM
_MESSAGE_TS = re.compile(r"[0-9]+\.[0-9]+")
_REF = re.compile(r"RB-[0-9]+")
_USERGROUP_ID = re.compile(r"S[A-Z0-9]+")


def escape(text: object) -> str:
    """``text`` as literal characters in mrkdwn (``None`` and numbers are fine too)."""
    return ("" if text is None else str(text)).translate(_TABLE)


def web_link(url: str) -> str:
    """A clickable http(s) address (a forward fix's issue or pull request); anything else,
    or one that could close the link early (``|``, ``>``, whitespace), as escaped text."""
    if re.fullmatch(r"https?://[^\s<>|]+", url, flags=re.IGNORECASE):
        return f"<{escape(url)}>"
    return escape(url)


def mention(user: str) -> str:
    """A user mention when ``user`` is a Slack user id; anything else as escaped text."""
    if _USER_ID.fullmatch(user):
        return f"<@{user}>"
    return escape(user)


def usergroup(group: GroupMention) -> str | None:
    """A user group mention when Slack resolved ``group`` to a usergroup id (``S…``); None
    otherwise: a handle in text notifies nobody, and ``<!subteam^…>`` around anything but
    an id is broken markup. The caller words the unresolved group (``handlers/wording``)."""
    if group.id is not None and _USERGROUP_ID.fullmatch(group.id):
        return f"<!subteam^{group.id}>"
    return None


def handle(group: GroupMention) -> str:
    """The group as configured, as escaped ``@handle`` text (never markup)."""
    return "@" + escape(group.configured.lstrip("@"))


def permalink(link: RollbackLink) -> str:
    """A link to a rollback's request message, labelled with its ref; without a well-formed
    ref, conversation id and message ts, the ref as escaped text."""
    if not (_REF.fullmatch(link.ref) and _CONVERSATION_ID.fullmatch(link.channel_id)
            and link.message_ts is not None and _MESSAGE_TS.fullmatch(link.message_ts)):
        return escape(link.ref)
    ts = link.message_ts.replace(".", "")
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
