"""Button clicks on rollback messages: ack first, then one service call; refusals are ephemeral."""

from __future__ import annotations

import logging
import re
from typing import Any

from slack_bolt import Ack, App

from bot.domain.errors import NotAllowed
from bot.domain.ports import Chat
from bot.persistence.store import Store
from bot.usecases.service import RollbackService
from handlers import ids, views
from handlers.deliveries import ClickHandler, on_click, open_view
from handlers.work_pool import WorkPool

log = logging.getLogger(__name__)


def _channel(body: dict[str, Any]) -> str:
    """The conversation a click came from. Slack documents ``channel`` and ``container`` as
    optional (a click in a modal or App Home has neither): refuse clearly, never guess."""
    channel = _inner(body, "channel", "id") or _inner(body, "container", "channel_id")
    if not isinstance(channel, str) or not channel:
        raise NotAllowed("This button only works on the rollback message in its incident "
                         "channel.")
    return channel


def _inner(body: dict[str, Any], key: str, inner: str) -> Any:
    outer = body.get(key)
    return outer.get(inner) if isinstance(outer, dict) else None


def register(app: App, service: RollbackService, decisions: WorkPool, *, store: Store,
             chat: Chat) -> None:
    """``decisions`` is the lane for clicks that only touch our database and Slack: Cancel
    and Approve must work while the platform lane is full of hung reads. ``store`` dedupes
    deliveries and ``chat`` tells a refusal (``handlers.deliveries.on_click``)."""
    def on(action: str | re.Pattern[str], fn: ClickHandler, *,
           platform_work: bool = False) -> None:
        on_click(app, action, fn, store=store, chat=chat,
                 pool=None if platform_work else decisions)

    def approve(body: dict[str, Any], user: str, value: str, *, override: bool = False,
                known_bad_override: bool = False) -> None:
        flags = {"override": override, "known_bad_override": known_bad_override}
        if service.get(value).destructive_steps:  # a click is not enough: type the name
            # Checked before the dialog opens (so a refusal never shows a form), and again
            # by approve() when the dialog is submitted.
            rb = service.check_can_approve(value, user=user, channel_id=_channel(body),
                                           override=override,
                                           known_bad_override=known_bad_override)
            open_view(app.client, body, views.approve_destructive_modal(
                rb, channel_id=_channel(body), flags=flags))
            return
        # approve() runs every check itself: one membership read per click, not two.
        service.approve(value, user=user, channel_id=_channel(body), override=override,
                        known_bad_override=known_bad_override)

    on(ids.APPROVE, lambda b, u, v: approve(b, u, v))
    on(ids.APPROVE_OVERRIDE, lambda b, u, v: approve(b, u, v, override=True))
    on(ids.APPROVE_KNOWN_BAD, lambda b, u, v: approve(b, u, v, known_bad_override=True))
    # Every click names the conversation it came from: the authority table decides whether
    # the action may be taken there (approvals and the rest of the request message: only
    # in the request's own channel).
    on(ids.SCALE_BACK_UP, lambda b, u, v: service.scale_back_up(v, user=u, channel_id=_channel(b)),
       platform_work=True)  # a platform write: the platform lane
    on(ids.CANCEL, lambda b, u, v: service.cancel(v, user=u, channel_id=_channel(b)))
    on(ids.HOTFIX, lambda b, u, v: service.hotfix_in_progress(v, user=u, channel_id=_channel(b)))
    on(ids.ASSIGN_IC, lambda b, u, v: service.assign_incident_commander(
        v, user=u, channel_id=_channel(b)))

    def checklist(body: dict[str, Any], user: str, value: str) -> None:
        ref, _, item = value.partition(":")
        service.tick_checklist(ref, item=item, user=user, channel_id=_channel(body))

    on(re.compile(rf"^{ids.CHECKLIST}:"), checklist)

    def reject(body: dict[str, Any], user: str, value: str) -> None:
        rb = service.check_can_reject(value, user=user, channel_id=_channel(body))
        open_view(app.client, body, views.reject_modal(rb, channel_id=_channel(body)))

    on(ids.REJECT, reject)

    # Selects inside the request modal fire block_actions too; nothing to do for them.
    for action_id in ids.MODAL_INPUT_ACTIONS:
        @app.action(action_id)
        def modal_input(ack: Ack) -> None:
            ack()
