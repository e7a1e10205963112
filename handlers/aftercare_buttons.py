"""Buttons on aftercare notices: reminders (Scheduled/Done/Snooze), retry, resume, resolve.

Ack first, then one call into ``bot.aftercare.coordinator`` (or, for a reminder,
``bot.aftercare.reminders``), which re-renders its notices in place.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from slack_bolt import App

from bot.aftercare.coordinator import Aftercare
from bot.aftercare.reminders import Reminders
from bot.domain.ports import Chat
from bot.persistence.store import Store
from handlers import ids
from handlers.deliveries import on_click


def register(app: App, aftercare: Aftercare, *, reminders: Reminders, store: Store,
             chat: Chat) -> None:
    """``store`` dedupes deliveries and ``chat`` tells a refusal
    (``handlers.deliveries.on_click``)."""
    def on(action_id: str, fn: Callable[[str, str], Any]) -> None:
        on_click(app, action_id, lambda _body, user, value: fn(value, user),
                 store=store, chat=chat)

    on(ids.REMINDER_SCHEDULED, lambda v, u: reminders.close(v, user=u, status="scheduled"))
    on(ids.REMINDER_DONE, lambda v, u: reminders.close(v, user=u, status="done"))
    on(ids.REMINDER_SNOOZE, lambda v, u: reminders.snooze(v, user=u))
    on(ids.RETRY, lambda v, u: aftercare.retry_verification(v, user=u))
    on(ids.RESUME_MONITORING, lambda v, u: aftercare.resume_monitoring(v, user=u))
    on(ids.ALERT_RESOLVE, lambda v, u: aftercare.resolve(v, user=u))
    # The pinned message's "Mark resolved" closes alerts and the status page the same way.
    on(ids.RESOLVE, lambda v, u: aftercare.resolve(v, user=u))
