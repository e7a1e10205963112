"""``/rollback timeline RB-n`` and the *Timeline* button: one rollback's record, to whoever asks.

Both read the timeline in the after-ack pool (``bot.usecases.timeline``), answer the asker
ephemerally (``views_timeline.timeline_blocks``: cut to Slack's limits) and attach the
whole of it as a Markdown file to the rollback's own thread through the core's chat
(``Chat.upload``: scrubbed like every file the bot uploads). The file goes to the
rollback's thread, never to the conversation the command was typed in: that may be
another channel, and the record stays where the rollback's people already see it.

Anyone may ask (like ``status`` and ``history``): nothing changes. An unknown or malformed
id is refused ephemerally, and nothing is uploaded. A Slack retry of the same command or
click uploads nothing twice (``first_delivery``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from slack_bolt import Ack, App, Respond

from bot.domain.ports import Chat
from bot.persistence.store import Store
from bot.usecases.timeline import TimelineReader
from handlers import ids, views_timeline
from handlers.deliveries import MalformedPayload, action_value, hand_off
from handlers.errors import tell_user
from handlers.work_pool import Busy, WorkPool

log = logging.getLogger(__name__)


def show(reader: TimelineReader, chat: Chat, ref: str | int, respond: Callable[..., Any]
         ) -> None:
    """Read ``ref``'s timeline, upload it whole to its thread, answer the asker with the
    part that fits. A refusal (unknown or malformed id) raises before anything is sent."""
    tl = reader.timeline(ref)
    name = views_timeline.filename(tl)
    text = views_timeline.timeline_markdown(tl)
    try:
        chat.upload(tl.rollback, filename=name, content=text.encode("utf-8"),
                    title=f"Timeline of {tl.rollback.ref} ({len(tl.entries)} entries)")
        where = (f"The whole timeline is attached as {name} in the thread of "
                 f"{tl.rollback.ref}'s request message.")
    except Exception as exc:  # the answer still shows what fits; say the file is missing
        log.warning("%s: timeline file not uploaded: %s", tl.rollback.ref,
                    type(exc).__name__)
        where = ("The whole timeline could not be attached (Slack refused the file); "
                 "ask again in a moment.")
    blocks = views_timeline.timeline_blocks(tl, file_note=where, name=name)
    respond(response_type="ephemeral", replace_original=False,
            text=f"Timeline of {tl.rollback.ref}", blocks=blocks)


def register(app: App, reader: TimelineReader, pool: WorkPool, *, store: Store,
             chat: Chat) -> None:
    """The *Timeline* button of a finished request message (value: the rollback id)."""

    @app.action(ids.TIMELINE)
    def timeline_button(ack: Ack, body: dict[str, Any], respond: Respond) -> None:
        ack()
        try:
            value = action_value(body)
        except MalformedPayload as exc:
            tell_user(chat, body, exc, respond)
            return
        slot = pool.reserve()
        if slot is None:
            tell_user(chat, body, Busy(), respond)
            return
        hand_off(slot, body, lambda: show(reader, chat, value.partition(":")[0], respond),
                 store=store, chat=chat, respond=respond)
