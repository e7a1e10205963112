"""Pure Block Kit builders for the core's aftercare notices (verification, alerts, reminders).

``NoticeAction.kind`` (what a button means) maps to the registered ``action_id`` here.
"""

from __future__ import annotations

from typing import Any

from bot.domain.ports import Notice
from handlers import ids
from handlers.mrkdwn import escape_keeping_mentions
from handlers.views import Block, button, context, section

ACTION_IDS: dict[str, str] = {
    "retry_verification": ids.RETRY,
    "resolve": ids.ALERT_RESOLVE,
    "resume_monitoring": ids.RESUME_MONITORING,
    "reminder_scheduled": ids.REMINDER_SCHEDULED,
    "reminder_done": ids.REMINDER_DONE,
    "reminder_snooze": ids.REMINDER_SNOOZE,
}
NOTICE_EVENT_TYPE = "rollback_bot_notice"  # Slack message metadata event_type
_SECTION_LIMIT = 3000


def fallback_text(notice: Notice) -> str:
    """The notification text (and what screen readers get): title, then body."""
    head = f"<@{notice.mention}> " if notice.mention else ""
    text = escape_keeping_mentions(notice.text)
    body = f"{escape_keeping_mentions(notice.title)}\n{text}" if notice.title else text
    return (head + body)[:3900]


def notice_blocks(notice: Notice) -> list[Block]:
    # Notices carry what platforms and people wrote (revision labels, regression reasons,
    # notes): only the mentions the core builds may render as markup.
    blocks: list[Block] = []
    head = f"<@{notice.mention}> " if notice.mention else ""
    if notice.title:
        blocks.append(section(f"{head}*{escape_keeping_mentions(notice.title)}*"))
        head = ""
    for chunk in _chunks(head + escape_keeping_mentions(notice.text)):
        blocks.append(section(chunk))
    if notice.footer:
        blocks.append(context(escape_keeping_mentions(notice.footer)))
    if notice.actions:
        blocks.append({"type": "actions", "block_id": f"notice:{notice.key}"[:255],
                       "elements": [button(a.label, ACTION_IDS[a.kind], a.value, style=a.style)
                                    for a in notice.actions]})
    return blocks


def notice_metadata(key: str) -> dict[str, Any]:
    return {"event_type": NOTICE_EVENT_TYPE, "event_payload": {"key": key}}


def carries_key(message: dict[str, Any], key: str) -> bool:
    """Whether a message from conversations.history/replies is the notice (or file) ``key``."""
    meta = message.get("metadata") or {}
    if meta.get("event_type") == NOTICE_EVENT_TYPE and \
            (meta.get("event_payload") or {}).get("key") == key:
        return True
    return any(f.get("name") == key for f in message.get("files") or [])


def _chunks(text: str) -> list[str]:
    """Split on line ends so each section stays under Slack's 3000-character limit."""
    if not text:
        return []
    chunks, current = [], ""
    for line in text.split("\n"):
        candidate = f"{current}\n{line}" if current else line
        if len(candidate) > _SECTION_LIMIT and current:
            chunks.append(current)
            candidate = line
        current = candidate[:_SECTION_LIMIT]
    chunks.append(current)
    return chunks
