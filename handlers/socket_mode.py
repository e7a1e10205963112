"""Socket Mode with the HTTP front door's size discipline: an envelope larger than
``bot.runtime.front_door.MAX_BODY_BYTES`` is dropped before anything parses it.

Over HTTP, waitress refuses such a body from its Content-Length (413). Over Socket Mode
the envelope arrives as one websocket text message on the connection we opened to Slack;
slack_sdk's client queues the raw text and ``json.loads`` it before any listener runs.
``GuardedSocketModeClient`` measures the raw text where it is queued and drops an
oversized one with a fixed log line (its size, never its content). It is not acked: we
cannot know the envelope id without parsing, and an envelope that size is not one Slack
sends (see ``bot/runtime/front_door.py`` for how the limit is sized), so Slack's retries of it
are dropped the same way. Listeners, the work pool and acks are the same as over HTTP.
"""

from __future__ import annotations

import logging

from prometheus_client import Counter
from slack_bolt import App
from slack_bolt.adapter.socket_mode import SocketModeHandler
from slack_sdk.socket_mode.builtin import SocketModeClient

from bot.runtime.front_door import MAX_BODY_BYTES

log = logging.getLogger(__name__)

DROPPED = Counter("rollback_bot_socket_mode_dropped_total",
                  "Socket Mode envelopes dropped unparsed for being over the size limit")


def utf8_size(text: str, *, limit: int) -> int:
    """Bytes of ``text`` in UTF-8, or a number over ``limit`` as soon as that is certain
    (a character is at least one byte, so no encoding is needed for long texts)."""
    if len(text) > limit:
        return len(text)
    return len(text.encode("utf-8", "surrogatepass"))


class GuardedSocketModeClient(SocketModeClient):
    """slack_sdk's built-in client, refusing oversized messages before they are parsed."""

    def __init__(self, *, app_token: str, max_bytes: int = MAX_BODY_BYTES,
                 app: App) -> None:
        self.max_bytes = max_bytes
        super().__init__(app_token=app_token, logger=app.logger, web_client=app.client,
                         proxy=app.client.proxy)

    def enqueue_message(self, message: str) -> None:
        size = utf8_size(message, limit=self.max_bytes)
        if size > self.max_bytes:
            DROPPED.inc()
            log.warning("socket mode envelope refused: over the size limit (%d > %d bytes), "
                        "dropped unparsed", size, self.max_bytes)
            return
        super().enqueue_message(message)


class GuardedSocketModeHandler(SocketModeHandler):
    """Bolt's Socket Mode handler on a ``GuardedSocketModeClient``."""

    def __init__(self, app: App, app_token: str, *, max_bytes: int = MAX_BODY_BYTES) -> None:
        # Not super().__init__(): it would start a client of its own (threads included)
        # only for us to replace it. This is the rest of what it does.
        self.app = app
        self.app_token = app_token
        self.client = GuardedSocketModeClient(app_token=app_token, max_bytes=max_bytes,
                                              app=app)
        self.client.socket_mode_request_listeners.append(self.handle)  # type: ignore[arg-type]
