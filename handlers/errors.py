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

from bot.errors import UserFacingError
from bot.ports import Chat

log = logging.getLogger(__name__)


def render(exc: BaseException) -> str:
    if isinstance(exc, UserFacingError):
        return str(exc)
    correlation = uuid.uuid4().hex[:8]
    log.error("unexpected error (correlation id %s)", correlation,
              exc_info=(type(exc), exc, exc.__traceback__))
    return f"Sorry, something went wrong on my side (correlation id `{correlation}`)."


def tell_user(chat: Chat, body: dict[str, Any], exc: BaseException,
              respond: Callable[..., Any] | None = None) -> None:
    """Show ``exc`` to whoever triggered ``body``: via response_url when there is one."""
    text = render(exc)
    user = (body.get("user") or {}).get("id") or body.get("user_id")
    channel = ((body.get("channel") or {}).get("id") or body.get("channel_id")
               or _channel_from_metadata(body))
    try:
        if respond is not None and (body.get("response_url") or body.get("response_urls")
                                    or body.get("type") == "block_actions"):
            respond(text=text, response_type="ephemeral", replace_original=False)
            return
        if channel and user:
            chat.ephemeral(channel_id=channel, user_id=user, text=text)
    except Exception:
        log.exception("could not deliver an error message to the user")


def _channel_from_metadata(body: dict[str, Any]) -> str | None:
    meta = (body.get("view") or {}).get("private_metadata") or ""
    parts = meta.split("|")
    return parts[1] if len(parts) > 1 else None


def register(app: App, chat: Chat) -> None:
    @app.error
    def on_error(error: Exception, body: dict[str, Any]) -> None:
        tell_user(chat, body, error)
