"""Pure Block Kit builders for the core's aftercare notices (verification, alerts, reminders).

A notice arrives worded as a ``Card`` (``handlers.wording``: mrkdwn, already escaped, with
its buttons' registered action_ids); this module lays it out and tags it with its key.
"""

from __future__ import annotations

from typing import Any

from handlers.mrkdwn import mention as at
from handlers.views import SECTION_LIMIT, Block, button, context, section
from handlers.wording import Card

NOTICE_EVENT_TYPE = "rollback_bot_notice"  # Slack message metadata event_type


def fallback_text(card: Card) -> str:
    """The notification text (and what screen readers get): title, then body."""
    head = f"{at(card.mention)} " if card.mention else ""
    body = f"{card.title}\n{card.text}" if card.title else card.text
    return (head + body)[:3900]


def notice_blocks(card: Card, *, key: str) -> list[Block]:
    blocks: list[Block] = []
    head = f"{at(card.mention)} " if card.mention else ""
    if card.title:
        blocks.append(section(f"{head}*{card.title}*"))
        head = ""
    for chunk in _chunks(head + card.text):
        blocks.append(section(chunk))
    if card.footer:
        blocks.append(context(card.footer))
    if card.buttons:
        blocks.append({"type": "actions", "block_id": f"notice:{key}"[:255],
                       "elements": [button(b.label, b.action_id, b.value, style=b.style)
                                    for b in card.buttons]})
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
        if len(candidate) > SECTION_LIMIT and current:
            chunks.append(current)
            candidate = line
        current = candidate[:SECTION_LIMIT]
    chunks.append(current)
    return chunks
