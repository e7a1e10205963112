"""Forward-fix tracking in Slack: the ask's buttons, their dialog, and ``/rollback forward-fix``.

*Record forward fix* and *Waive* are checked against the authority table at the click (a
refused clicker gets no dialog), the dialog's answer is validated before it is accepted (a
bad URL keeps the dialog open with the reason under the field), and the answer is recorded
once, in the after-ack pool, by ``bot.aftercare.forward_fix``.
"""

from __future__ import annotations

import re
from typing import Any

from slack_bolt import Ack, App, Respond

from bot.aftercare.forward_fix import ForwardFixTracker
from bot.domain.command_parsing import Parsed
from bot.domain.errors import ParseError
from bot.domain.forward_fix import (
    MAX_REASON,
    MAX_ROOT_CAUSE,
    MIN_REASON,
    ForwardFixInput,
    check_link,
    check_text,
)
from bot.domain.messages import ForwardFixRecorded
from bot.domain.ports import Chat
from bot.persistence.store import Store
from handlers import ids, views_forward_fix, wording
from handlers.deliveries import MalformedPayload, field, hand_off, on_click, open_view, user_id
from handlers.errors import tell_user
from handlers.work_pool import BUSY_TEXT, WorkPool, pool_of

_METADATA = re.compile(r"([0-9]{1,9}):(record|waive)")


def register(app: App, tracker: ForwardFixTracker, *, store: Store, chat: Chat,
             pool: WorkPool | None = None) -> None:
    """``store`` dedupes deliveries and ``chat`` tells a refusal."""
    work_pool = pool or pool_of(app)

    def opener(waive: bool) -> Any:
        def open_dialog(body: dict[str, Any], user: str, value: str) -> None:
            rb = tracker.check(value, user=user, waive=waive)
            open_view(app.client, body, views_forward_fix.forward_fix_modal(rb, waive=waive))
        return open_dialog

    on_click(app, ids.FORWARD_FIX_RECORD, opener(False), store=store, chat=chat)
    on_click(app, ids.FORWARD_FIX_WAIVE, opener(True), store=store, chat=chat)

    @app.view(ids.FORWARD_FIX_MODAL)
    def submitted(ack: Ack, body: dict[str, Any]) -> None:
        try:
            match = _METADATA.fullmatch(field(body, "view", "private_metadata", kind=str))
            user = user_id(body)
            if match is None:
                raise MalformedPayload()
            values = _values(body)
        except MalformedPayload as exc:
            ack()
            tell_user(chat, body, exc)
            return
        rollback_id, waive = match.group(1), match.group(2) == "waive"
        block = "reason" if waive else "link"
        try:
            given = _answer(values, waive=waive)
        except ParseError as exc:  # stays open: the reason under the field, nothing stored
            ack(response_action="errors", errors={
                "root_cause" if "root cause" in str(exc) else block: str(exc)[:150]})
            return
        slot = work_pool.reserve()
        if slot is None:
            ack(response_action="errors", errors={block: BUSY_TEXT})
            return
        ack()
        hand_off(slot, body, lambda: tracker.record(rollback_id, given, user=user),
                 store=store, chat=chat)


def _values(body: dict[str, Any]) -> dict[str, str]:
    out: dict[str, str] = {}
    for block_id, actions in field(body, "view", "state", "values", kind=dict).items():
        for v in actions.values() if isinstance(actions, dict) else ():
            if isinstance(v, dict) and isinstance(v.get("value"), str):
                out[str(block_id)] = v["value"]
    return out


def _answer(values: dict[str, str], *, waive: bool) -> ForwardFixInput:
    if waive:
        return ForwardFixInput(waive_reason=check_text(
            values.get("reason", ""), what="waiver's reason", limit=MAX_REASON,
            minimum=MIN_REASON))
    return ForwardFixInput(link=check_link(values.get("link", "")), root_cause=check_text(
        values.get("root_cause", ""), what="root cause", limit=MAX_ROOT_CAUSE))


def run_command(tracker: ForwardFixTracker, parsed: Parsed, *, user: str,
                respond: Respond) -> None:
    """``/rollback forward-fix RB-n …`` (in the after-ack pool): record, then say what was
    recorded to the caller; the rollback's thread gets it from the tracker."""
    given = parsed.forward_fix
    if given is None:
        raise MalformedPayload()
    rec = tracker.record(parsed.argument or "", given, user=user)
    respond(response_type="ephemeral", text=wording.line(ForwardFixRecorded(
        rec.status, f"RB-{rec.rollback_id}", user, rec.decided_at or rec.created_at,
        link=rec.link, root_cause=rec.root_cause, reason=rec.reason)))
