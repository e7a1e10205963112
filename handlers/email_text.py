"""The stakeholder notice as an e-mail: the Slack notice's own words, as plain text.

``stakeholder_email(service, update)`` renders the update with ``handlers.wording`` (the
same card the stakeholder channel gets) and takes the Slack markup out: the leading emoji
shortcode, ``*bold*``, mentions (``<@U123>`` becomes ``@U123``), links (``<url|label>``
becomes ``label (url)``) and the ``&amp;``/``&lt;``/``&gt;`` escapes. The subject says the
phase, the service and the rollback: ``[Resolved] hotel-voice-bot rolled back to rev 2
(RB-7)``.
"""

from __future__ import annotations

import re

from bot.domain import messages as m
from handlers import wording

_LEADING_EMOJI = re.compile(r"^:[a-z0-9_+-]+:\s*")
_BOLD = re.compile(r"(?<![\w*])\*([^*\n]+)\*(?![\w*])")
_LINK = re.compile(r"<([^<>|]+)\|([^<>]+)>")
_USER = re.compile(r"<@([A-Z0-9]+)>")
_GROUP = re.compile(r"<!subteam\^([A-Z0-9]+)>")
_BARE = re.compile(r"<((?:https?|mailto):[^<>]+)>")

# phase -> subject tag (the status page's words where they fit)
_TAGS = {"restored": "Resolved", "verification_failed": "Investigating",
         "regression": "Unstable", "stable": "Stable", "resolved": "Closed"}


def plain(mrkdwn: str) -> str:
    """Slack mrkdwn as the text a person would read off the screen."""
    text = _LINK.sub(lambda g: f"{g[2]} ({g[1]})", mrkdwn)
    text = _USER.sub(r"@\1", text)
    text = _GROUP.sub(r"@\1", text)
    text = _BARE.sub(r"\1", text)
    text = _BOLD.sub(r"\1", text)
    # Last: an escaped "&lt;b&gt;" a person typed must stay "<b>", not become markup above.
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def subject(service: str, update: m.StakeholderUpdate) -> str:
    tag = _TAGS.get(update.phase, "Update")
    if update.completion is not None:
        return f"[{tag}] {service} rolled back to {update.completion.target} ({update.ref})"
    return f"[{tag}] {update.headline} ({update.ref})"


def stakeholder_email(service: str, update: m.StakeholderUpdate) -> tuple[str, str]:
    """(subject, plain-text body) of the update's e-mail."""
    card = wording.card(update)
    parts = [_LEADING_EMOJI.sub("", plain(card.title or "")), "", plain(card.text)]
    if card.footer:
        parts += ["", "--", plain(card.footer)]
    return subject(service, update), "\n".join(parts).strip() + "\n"
