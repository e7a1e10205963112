"""SocketModeDriver: the SlackDriver's interactions delivered as Socket Mode envelopes.

Everything ``SlackDriver`` builds (slash commands, clicks, modal submissions, events) goes
to the bot over its own websocket instead of a signed HTTP POST: the request becomes the
envelope's ``payload`` with the ``type`` Slack gives it, and the ack's ``payload`` plays the
HTTP response body (a command's reply, a view's ``response_action``). Envelope shapes:
https://api.slack.com/apis/connections/socket-implement; slack_sdk
socket_mode/request.py (what the client reads) and response.py (what it acks with).
"""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any
from urllib.parse import parse_qsl

from sandbox.slack.driver import FORM, BotResponse, Signing, SlackDriver
from sandbox.slack.server import SlackEmulator

NOT_ACKED = 0  # BotResponse.status when no ack arrived before Slack's deadline
# Interactive payloads whose ack may carry an answer (a view's response_action, options).
ANSWERING = {"view_submission", "block_suggestion"}


class SocketModeDriver(SlackDriver):
    """A SlackDriver whose transport is the emulator's Socket Mode hub."""

    def __init__(self, emulator: SlackEmulator, **kwargs: Any) -> None:
        super().__init__(emulator, "socket-mode:", **kwargs)
        self.hub = emulator.socket_mode

    def send(self, body: str, *, content_type: str = FORM,
             signing: Signing | None = None) -> BotResponse:
        # No signature: the socket was opened with the app-level token; Slack signs nothing
        # sent over it.
        if content_type == "application/json":
            kind, payload, answers = "events_api", json.loads(body), False
        else:
            fields = dict(parse_qsl(body, keep_blank_values=True))
            if set(fields) == {"payload"}:
                payload = json.loads(fields["payload"])
                kind, answers = "interactive", payload.get("type") in ANSWERING
            else:
                kind, payload, answers = "slash_commands", fields, True
        envelope = self.hub.deliver(kind, payload, accepts_response_payload=answers)
        return self._answer(envelope.envelope_id, body, content_type)

    def resend(self, previous: BotResponse, *, retry_num: int = 1,
               retry_reason: str = "timeout") -> BotResponse:
        """Slack's retry of an unacked envelope: the same envelope, ``retry_attempt`` + 1."""
        assert previous.envelope_id is not None, "not sent over Socket Mode"
        self.hub.redeliver(previous.envelope_id, retry_reason=retry_reason)
        again = self._answer(previous.envelope_id, previous.request_body, previous.content_type)
        return replace(again, payload=previous.payload, response_url=previous.response_url,
                       trigger_id=previous.trigger_id)

    def _answer(self, envelope_id: str, body: str, content_type: str) -> BotResponse:
        envelope = self.hub.envelopes[envelope_id]
        acked = envelope.acked.is_set()
        text = json.dumps(envelope.response) if acked and envelope.response is not None else ""
        return BotResponse(200 if acked else NOT_ACKED, text, {}, body, content_type,
                           envelope_id=envelope_id)
