"""Block Kit for forward-fix tracking: the record/waive dialog (pure builders)."""

from __future__ import annotations

from typing import Any

from bot.domain.forward_fix import MAX_REASON, MAX_ROOT_CAUSE, MAX_URL
from bot.domain.models import Rollback
from handlers import ids
from handlers.mrkdwn import escape


def _plain(text: str) -> dict[str, Any]:
    return {"type": "plain_text", "text": text}


def forward_fix_modal(rb: Rollback, *, waive: bool) -> dict[str, Any]:
    """``private_metadata`` is ``<rollback id>:record|waive``; the answer is checked again
    (``bot.domain.forward_fix``) when it is submitted."""
    cur = rb.current_revision
    moved = (f" from {escape(cur.label())}"
             if cur is not None and cur.id != rb.target_revision.id else "")
    intro = {"type": "section", "text": {"type": "mrkdwn", "text": (
        f"*{escape(rb.ref)}* rolled `{escape(rb.service)}` back{moved}.")}}
    if waive:
        blocks: list[dict[str, Any]] = [intro, {
            "type": "input", "block_id": "reason", "label": _plain("Why no forward fix"),
            "element": {"type": "plain_text_input", "action_id": "reason", "multiline": True,
                        "min_length": 3, "max_length": MAX_REASON}}]
    else:
        blocks = [intro, {
            "type": "input", "block_id": "link", "label": _plain("Issue or pull request URL"),
            "element": {"type": "url_text_input", "action_id": "link"},
            "hint": _plain(f"http(s), without credentials; at most {MAX_URL} characters.")}, {
            "type": "input", "block_id": "root_cause", "optional": True,
            "label": _plain("Root cause summary"),
            "element": {"type": "plain_text_input", "action_id": "root_cause",
                        "multiline": True, "max_length": MAX_ROOT_CAUSE}}]
    return {
        "type": "modal", "callback_id": ids.FORWARD_FIX_MODAL,
        "title": _plain(("Waive forward fix" if waive else "Forward fix")[:24]),
        "submit": _plain("Waive" if waive else "Record"),
        "close": _plain("Back"),
        "private_metadata": f"{rb.id}:{'waive' if waive else 'record'}",
        "blocks": blocks,
    }
