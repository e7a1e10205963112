"""The one place user-facing errors become Slack messages.

``UserFacingError`` -> one ephemeral message with its text. Anything else -> logged with
a traceback under a correlation id; the person sees a short apology with that id, never
a stack trace or a secret.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from typing import Any

from slack_bolt import App

from bot.domain.errors import UserFacingError
from bot.domain.ports import Chat
from bot.observability.scrub import scrub
from handlers.mrkdwn import words

log = logging.getLogger(__name__)


def render(exc: BaseException) -> str:
    """Slack-safe mrkdwn for ``exc``: the core's messages echo what people typed (service
    names, revisions, reasons), so their words are escaped here; the people and rollbacks
    they name (facts among ``exc.parts``) become mentions and links."""
    if isinstance(exc, UserFacingError):  # may quote a platform's error: scrub it too
        return words(tuple(scrub(p) if isinstance(p, str) else p for p in exc.parts))
    correlation = uuid.uuid4().hex[:8]
    log.error("unexpected error (correlation id %s)", correlation,
              exc_info=(type(exc), exc, exc.__traceback__))
    return f"Sorry, something went wrong on my side (correlation id `{correlation}`)."


def tell_user(chat: Chat, body: dict[str, Any], exc: BaseException,
              respond: Callable[..., Any] | None = None) -> None:
    """Show ``exc`` to whoever triggered ``body``: via response_url when there is one."""
    text = render(exc)
    if not isinstance(body, dict):
        return
    # Read defensively: this also answers malformed payloads, whose fields may be absent
    # or of any JSON type.
    user = _str(_get(body, "user", "id")) or _str(body.get("user_id"))
    channel = (_str(_get(body, "channel", "id")) or _str(body.get("channel_id"))
               or _channel_from_metadata(body))
    try:
        # Bolt's respond() needs a response_url (a click inside a modal has none; a
        # malformed payload may lack it): otherwise answer with an ephemeral message.
        if respond is not None and (_str(body.get("response_url"))
                                    or body.get("response_urls")):
            respond(text=text, response_type="ephemeral", replace_original=False)
            return
        if channel and user:
            chat.ephemeral(channel_id=channel, user_id=user, text=text)
    except Exception as failed:  # Slack refused or the payload named nowhere to answer
        log.warning("could not deliver an error message to the user: %s",
                    type(failed).__name__)


def _get(body: dict[str, Any], key: str, inner: str) -> Any:
    outer = body.get(key)
    return outer.get(inner) if isinstance(outer, dict) else None


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value and "\x00" not in value else None


def _channel_from_metadata(body: dict[str, Any]) -> str | None:
    meta = _str(_get(body, "view", "private_metadata")) or ""
    parts = meta.split("|")
    return parts[1] or None if len(parts) > 1 else None


def register(app: App, chat: Chat) -> None:
    @app.error
    def on_error(error: Exception, body: dict[str, Any]) -> None:
        tell_user(chat, body, error)
