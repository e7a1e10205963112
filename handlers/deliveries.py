"""What every listener shares: payload fields read defensively, delivery dedupe, and the
hand-off of slow work to the after-ack pool.

Dedupe: a Slack retry (same body, ``X-Slack-Retry-Num``) produces no second effect. The
natural id of a delivery is its ``trigger_id`` (slash commands, block actions, view
submissions) or ``event_id``. Listeners call ``first_delivery`` *after* ``ack()`` and
only before a side effect: the INSERT stays off the ack path (measured: it was the whole
ack-latency gap to a bare Bolt app), and read-only answers need no dedupe at all.

Hand-off: anything that may wait on a platform runs in ``handlers.work_pool`` after the
ack (``hand_off``), never in Bolt's listener thread.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import Any, TypeVar

from slack_bolt import Ack, App, Respond
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot.domain.command_parsing import clean
from bot.domain.errors import UserFacingError
from bot.domain.ports import Chat
from bot.observability import metrics
from bot.persistence.store import Store
from handlers.errors import tell_user
from handlers.work_pool import Busy, Slot, WorkPool, pool_of

log = logging.getLogger(__name__)
T = TypeVar("T")
_CLICK_VALUE = re.compile(r"[0-9]{1,9}")


class MalformedPayload(UserFacingError):
    """A signed request whose payload lacks what the listener needs: refused, not a bug."""

    def __init__(self) -> None:
        super().__init__("That request from Slack was incomplete, so I did nothing. "
                         "Try again from the message or the form.")


def field(body: Any, *path: str | int, kind: type[T]) -> T:
    """``body[path…]`` when every step exists and the end is a ``kind``; otherwise
    MalformedPayload. Slack sends what it documents, but a listener must not turn a
    truncated or forged payload into a 500 and a traceback."""
    cur = body
    for key in path:
        if isinstance(key, int):
            if not isinstance(cur, list) or not -len(cur) <= key < len(cur):
                raise MalformedPayload()
        elif not isinstance(cur, dict) or key not in cur:
            raise MalformedPayload()
        cur = cur[key]
    if not isinstance(cur, kind) or isinstance(cur, bool) and kind is not bool:
        raise MalformedPayload()
    return clean(cur) if isinstance(cur, str) else cur  # type: ignore[return-value]


def user_id(body: dict[str, Any]) -> str:
    """Who clicked or submitted (``user.id``); slash commands carry ``user_id``."""
    user = field(body, "user", "id", kind=str) if "user" in body else field(
        body, "user_id", kind=str)
    if not user:
        raise MalformedPayload()
    return user


def action_value(body: dict[str, Any]) -> str:
    """The clicked button's value. Every button of ours carries ``<id>[:<detail>]`` (a
    rollback or reminder id): anything else is malformed, refused before the core would
    meet ``int("²")`` or a number too large for the database."""
    value = field(body, "actions", 0, "value", kind=str)
    if not _CLICK_VALUE.fullmatch(value.partition(":")[0]):
        raise MalformedPayload()
    return value


def open_view(client: WebClient, body: dict[str, Any], view: dict[str, Any]) -> Any:
    """``views.open`` with the request's trigger; a trigger Slack refuses (expired after
    3 s, or not one it issued) is the user's to retry, not a bug of ours."""
    trigger = field(body, "trigger_id", kind=str)
    try:
        return client.views_open(trigger_id=trigger, view=view)
    except SlackApiError as exc:
        error = str(exc.response.get("error") or "")
        if "trigger" in error:
            raise UserFacingError("Slack would not open the form (the click or command "
                                  "expired); please try again.") from None
        raise


def delivery_key(body: dict[str, Any]) -> str | None:
    if body.get("event_id"):
        return clean(f"event:{body['event_id']}")[:500]
    kind = body.get("type") or ("command" if body.get("command") else None)
    trigger = body.get("trigger_id")
    if trigger:
        return clean(f"{kind}:{trigger}")[:500]
    return None


def first_delivery(store: Store, body: dict[str, Any]) -> bool:
    """True for the first delivery of this request; False for a retry (already handled)."""
    key = delivery_key(body)
    if key is None or store.first_delivery(key):
        return True
    log.info("duplicate Slack delivery %s ignored", key)
    metrics.DUPLICATE_DELIVERIES.inc()
    return False


def hand_off(slot: Slot, body: dict[str, Any], work: Callable[[], object], *, store: Store,
             chat: Chat, respond: Callable[..., Any] | None = None,
             dedupe: bool = True) -> None:
    """Right after ``ack()``, with a slot reserved before it: drop a Slack retry (when the
    work has a side effect), then run ``work`` in the pool. A refusal or an error, then or
    later, goes to the person who asked, only to them."""
    try:
        if dedupe and not first_delivery(store, body):
            slot.release()
            return
    except Exception as exc:
        slot.release()
        tell_user(chat, body, exc, respond)
        return

    def run() -> None:
        try:
            work()
        except Exception as exc:
            tell_user(chat, body, exc, respond)

    slot.run(run)


ClickHandler = Callable[[dict[str, Any], str, str], Any]  # (body, user id, button value)


def on_click(app: App, action: str | re.Pattern[str], fn: ClickHandler, *, store: Store,
             chat: Chat, pool: WorkPool | None = None) -> None:
    """The one shape of a button listener: ack, refuse a malformed click, take a slot in the
    after-ack pool (or tell the clicker "busy, retry in a moment"), drop Slack retries, run
    ``fn`` in the pool, and show any refusal or error to the clicker only. ``pool``
    defaults to the one the composition root attached to ``app``."""
    work_pool = pool or pool_of(app)

    @app.action(action)
    def listener(ack: Ack, body: dict[str, Any], respond: Respond) -> None:
        ack()
        try:
            user, value = user_id(body), action_value(body)
        except MalformedPayload as exc:
            tell_user(chat, body, exc, respond)
            return
        slot = work_pool.reserve()
        if slot is None:
            tell_user(chat, body, Busy(), respond)
            return
        hand_off(slot, body, lambda: fn(body, user, value), store=store, chat=chat,
                 respond=respond)
