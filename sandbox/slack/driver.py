"""SlackDriver: plays the Slack side towards the bot, sending signed requests over HTTP.

Slash commands, button clicks and modal submissions go out in Slack's exact shapes, with
trigger_ids and response_urls issued by the emulator, so the bot's replies land there.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import urlencode

import httpx

from sandbox.slack import payloads
from sandbox.slack.api import ApiError
from sandbox.slack.blockkit import iter_elements
from sandbox.slack.payloads import PayloadError
from sandbox.slack.server import DEFAULT_CHANNEL, DEFAULT_SIGNING_SECRET, SlackEmulator

FORM = "application/x-www-form-urlencoded"
STALE_SECONDS = 10 * 60  # well past Bolt's five-minute replay window


class DriverError(Exception):
    """The interaction cannot happen in a real Slack client (e.g. the button is gone)."""


class ElementNotFound(DriverError, LookupError):
    """No interactive element matches what the test tried to click."""


@dataclass(frozen=True)
class Signing:
    """How to sign one request: honestly by default, or forged, stale, or as a retry."""

    forge: bool = False
    timestamp: int | None = None
    retry_num: int | None = None
    retry_reason: str = "http_timeout"

    @classmethod
    def stale(cls) -> Signing:
        return cls(timestamp=int(time.time()) - STALE_SECONDS)


@dataclass
class BotResponse:
    """The bot's HTTP answer plus what was sent, so a test can replay it as a retry."""

    status: int
    body: str
    headers: dict[str, str]
    request_body: str
    content_type: str
    payload: dict[str, Any] = field(default_factory=dict)
    response_url: str | None = None
    trigger_id: str | None = None
    view_result: str | None = None  # closed | errors | updated | pushed | cleared | error
    view_error: ApiError | None = None
    envelope_id: str | None = None  # over Socket Mode: the envelope it went in

    def json(self) -> Any:
        return json.loads(self.body) if self.body.strip() else None

    def message(self) -> dict[str, Any] | None:
        """The reply as Slack reads it: a JSON message, or plain text meaning `{"text": ...}`."""
        if not self.body.strip():
            return None
        try:
            parsed = json.loads(self.body)
        except json.JSONDecodeError:
            return {"text": self.body}
        return parsed if isinstance(parsed, dict) else {"text": self.body}


class SlackDriver:
    """Sends Slack-shaped, signed HTTP requests to the bot at `bot_url`."""

    def __init__(
        self,
        emulator: SlackEmulator,
        bot_url: str,
        signing_secret: str = DEFAULT_SIGNING_SECRET,
        *,
        verification_token: str = "sandbox-verification-token",
        timeout: float = 10.0,
    ) -> None:
        self.emulator = emulator
        self.bot_url = bot_url
        self.signing_secret = signing_secret
        self.verification_token = verification_token
        self._http = httpx.Client(timeout=timeout)
        # Client-side state of selects in messages, as Slack echoes it in later clicks.
        self._message_state: dict[tuple[str, str], dict[str, dict[str, Any]]] = {}

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> SlackDriver:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # ------------------------------------------------------------------- transport
    def sign(self, body: str, timestamp: int) -> str:
        base = f"v0:{timestamp}:{body}".encode()
        digest = hmac.new(self.signing_secret.encode(), base, hashlib.sha256).hexdigest()
        return f"v0={digest}"

    def send(
        self, body: str, *, content_type: str = FORM, signing: Signing | None = None
    ) -> BotResponse:
        """POST `body` to the bot with Slack's signature headers."""
        signing = signing or Signing()
        timestamp = signing.timestamp if signing.timestamp is not None else int(time.time())
        signature = self.sign(body, timestamp)
        if signing.forge:
            signature = "v0=" + hashlib.sha256(signature.encode()).hexdigest()
        headers = {
            "Content-Type": content_type,
            "X-Slack-Request-Timestamp": str(timestamp),
            "X-Slack-Signature": signature,
            "User-Agent": "Slackbot 1.0 (+https://api.slack.com/robots)",
        }
        if signing.retry_num is not None:
            headers["X-Slack-Retry-Num"] = str(signing.retry_num)
            headers["X-Slack-Retry-Reason"] = signing.retry_reason
        reply = self._http.post(self.bot_url, content=body.encode(), headers=headers)
        return BotResponse(reply.status_code, reply.text, dict(reply.headers), body, content_type)

    def resend(
        self, previous: BotResponse, *, retry_num: int = 1, retry_reason: str = "http_timeout"
    ) -> BotResponse:
        """Slack's retry: the byte-identical body, freshly signed, with retry headers."""
        again = self.send(
            previous.request_body,
            content_type=previous.content_type,
            signing=Signing(retry_num=retry_num, retry_reason=retry_reason),
        )
        return replace(
            again,
            payload=previous.payload,
            response_url=previous.response_url,
            trigger_id=previous.trigger_id,
        )

    def _send_payload(self, payload: dict[str, Any], signing: Signing | None) -> BotResponse:
        body = urlencode({"payload": json.dumps(payload)})
        response = self.send(body, signing=signing)
        response.payload = payload
        response.trigger_id = payload.get("trigger_id")
        response.response_url = payload.get("response_url")
        return response

    # ------------------------------------------------------------- slash commands
    def slash_command(
        self,
        command: str,
        text: str = "",
        *,
        user: str = "alice",
        channel: str = DEFAULT_CHANNEL,
        signing: Signing | None = None,
    ) -> BotResponse:
        ws = self.emulator.ws
        who, where = ws.resolve_user(user), ws.resolve_channel(channel)
        response_url = self.emulator.issue_response_url(channel=where.id, user=who.id)
        trigger_id = self.emulator.issue_trigger_id(who.id)
        fields = payloads.slash_command(
            ws, app_id=self.emulator.app_id, verification_token=self.verification_token,
            user=who, channel=where, command=command, text=text, response_url=response_url,
            trigger_id=trigger_id,
        )  # fmt: skip
        # What Slack itself knows and the channel does not show: who ran which command where.
        ws.emit("command.invoked", channel=where.id, user=who.id, command=command, text=text)
        response = self.send(urlencode(fields), signing=signing)
        response.payload = dict(fields)
        response.response_url, response.trigger_id = response_url, trigger_id
        reply = response.message()
        if response.status == 200 and reply:
            # Slack posts a command's synchronous reply for the app (ephemeral unless told).
            self.emulator.deliver_command_reply(response_url, reply)
        return response

    def say(
        self, line: str, *, user: str = "alice", channel: str = DEFAULT_CHANNEL,
        signing: Signing | None = None,
    ) -> BotResponse:  # fmt: skip
        """What typing `line` in the message box does: a slash command or a message event."""
        if line.startswith("/"):
            command, _, text = line.partition(" ")
            return self.slash_command(command, text.strip(), user=user, channel=channel,
                                      signing=signing)  # fmt: skip
        message = self.emulator.post_as_user(channel, user, line)
        bot = self.emulator.bot
        kind = "app_mention" if f"<@{bot.id}>" in line else "message"
        event = {**message, "type": kind, "channel": self.emulator.channel_id(channel),
                 "event_ts": message["ts"], "channel_type": "channel"}  # fmt: skip
        return self.send_event(event, signing=signing)

    def send_event(self, event: dict[str, Any], *, signing: Signing | None = None) -> BotResponse:
        envelope = payloads.event_callback(
            self.emulator.ws, app_id=self.emulator.app_id, bot=self.emulator.bot,
            verification_token=self.verification_token, event=event,
        )  # fmt: skip
        response = self.send(json.dumps(envelope), content_type="application/json",
                             signing=signing)  # fmt: skip
        response.payload = envelope
        return response

    # -------------------------------------------------------------------- clicks
    def click(
        self,
        channel: str,
        message_ts: str,
        action_id: str,
        user: str,
        value: Any = None,
        *,
        block_id: str | None = None,
        signing: Signing | None = None,
        seen: dict[str, Any] | None = None,
    ) -> BotResponse:
        """Click a button (or choose `value` in a select) of a message as stored now.

        ``seen`` is the message as a person's client last rendered it: twenty people can
        click the Approve they still see after the first click replaced it.
        Raises ElementNotFound when no such element is in the message any more.
        """
        ws = self.emulator.ws
        who, where = ws.resolve_user(user), ws.resolve_channel(channel)
        with ws.lock:
            message = ws.messages[where.id].get(message_ts)
            is_ephemeral = False
            if message is None:
                # Ephemeral messages are only clickable by the user who sees them.
                found = [e for e in ws.ephemerals
                         if e["ts"] == message_ts and e["recipient"] == who.id]  # fmt: skip
                if not found:
                    raise ElementNotFound(f"no message {message_ts} in {channel} for {user}")
                message, is_ephemeral = found[-1], True
            message = json.loads(json.dumps(seen if seen is not None else message))
        block, element = self._find_element(message, action_id, value, block_id)
        now = f"{time.time():.6f}"
        try:
            action = payloads.action_for(ws, block, element, value, now)
        except PayloadError as exc:
            raise DriverError(str(exc)) from None
        key = (where.id, message_ts)
        state = self._message_state.setdefault(key, {})
        if element["type"] != "button":
            entry = {k: v for k, v in action.items() if k.startswith("selected") or k == "value"}
            state.setdefault(block["block_id"], {})[action_id] = {"type": element["type"], **entry}
        thread_ts = message.get("thread_ts")
        in_thread = thread_ts is not None and thread_ts != message_ts
        container: dict[str, Any] = {
            "type": "message", "message_ts": message_ts, "channel_id": where.id,
            "is_ephemeral": is_ephemeral,
        }  # fmt: skip
        if in_thread:
            container["thread_ts"] = thread_ts
        payload: dict[str, Any] = {
            "type": "block_actions",
            "user": payloads.user_ref(ws, who),
            "api_app_id": self.emulator.app_id,
            "token": self.verification_token,
            "container": container,
            "trigger_id": self.emulator.issue_trigger_id(who.id),
            "team": payloads.team_ref(ws),
            "enterprise": None,
            "is_enterprise_install": False,
            "channel": {"id": where.id, "name": payloads.channel_name(where)},
            "state": {"values": json.loads(json.dumps(state))},
            "response_url": self.emulator.issue_response_url(
                channel=where.id,
                user=who.id,
                message_ts=message_ts,
                is_ephemeral=is_ephemeral,
                thread_ts=thread_ts if in_thread else None,
            ),  # fmt: skip
            "actions": [action],
        }
        if not is_ephemeral:
            for internal in ("recipient", "source", "channel"):
                message.pop(internal, None)
            payload["message"] = message
        return self._send_payload(payload, signing)

    @staticmethod
    def _find_element(
        message: dict[str, Any], action_id: str, value: Any, block_id: str | None
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        matches = [
            (b, e)
            for b, e in iter_elements(message.get("blocks", []))
            if e.get("action_id") == action_id and block_id in (None, b.get("block_id"))
        ]
        buttons = [(b, e) for b, e in matches if e["type"] == "button"]
        if value is not None and buttons:
            matches = [(b, e) for b, e in buttons if e.get("value") == value]
        if not matches:
            shown = sorted(
                {e.get("action_id", "?") for _, e in iter_elements(message.get("blocks", []))}
            )
            raise ElementNotFound(
                f"no element {action_id!r} (value={value!r}) in message {message.get('ts')}; "
                f"it shows {shown}"
            )
        if len(matches) > 1:
            raise DriverError(
                f"{len(matches)} elements match {action_id!r}; pass value or block_id"
            )
        return matches[0]

    # -------------------------------------------------------------------- modals
    def submit_view(
        self,
        user: str,
        values: dict[str, Any] | None = None,
        view_id: str | None = None,
        *,
        state: dict[str, Any] | None = None,
        signing: Signing | None = None,
    ) -> BotResponse:
        """Press Submit on the user's top modal (or `view_id`) with `values` filled in.

        `values` is keyed by action_id (or 'block_id/action_id'); `state` replaces the
        computed state.values verbatim. The bot's answer is applied like the client does.
        """
        ws = self.emulator.ws
        who = ws.resolve_user(user)
        view = self._open_view(who.id, view_id)
        if view.get("submit") is None:
            raise DriverError(f"view {view['id']} has no submit button")
        try:
            computed = state if state is not None else payloads.view_state(ws, view, values or {})
        except PayloadError as exc:
            raise DriverError(str(exc)) from None
        self.emulator.set_view_state(view["id"], computed)
        view = self.emulator.view(view["id"])
        payload: dict[str, Any] = {
            "type": "view_submission",
            "team": payloads.team_ref(ws),
            "user": payloads.user_ref(ws, who),
            "api_app_id": self.emulator.app_id,
            "token": self.verification_token,
            "trigger_id": self.emulator.issue_trigger_id(who.id),
            "view": view,
            "response_urls": [],
            "enterprise": None,
            "is_enterprise_install": False,
        }
        response = self._send_payload(payload, signing)
        if response.status != 200:
            response.view_result = "error"  # Slack keeps the modal open and shows an error
            return response
        try:
            body = response.json()
        except json.JSONDecodeError:
            body = None
        try:
            response.view_result = self.emulator.apply_view_response(who.id, view["id"], body)
        except ApiError as exc:
            response.view_result, response.view_error = "error", exc
        return response

    def close_view(self, user: str, *, signing: Signing | None = None) -> BotResponse | None:
        """Press Cancel/X: closes the top view; sends view_closed if it asked for one."""
        ws = self.emulator.ws
        who = ws.resolve_user(user)
        view = self._open_view(who.id, None)
        self.emulator.close_view(who.id, all_views=bool(view.get("clear_on_close")))
        if not view.get("notify_on_close"):
            return None
        payload = {
            "type": "view_closed",
            "team": payloads.team_ref(ws),
            "user": payloads.user_ref(ws, who),
            "api_app_id": self.emulator.app_id,
            "token": self.verification_token,
            "view": view,
            "is_cleared": bool(view.get("clear_on_close")),
            "is_enterprise_install": False,
        }
        return self._send_payload(payload, signing)

    def _open_view(self, user_id: str, view_id: str | None) -> dict[str, Any]:
        stack = self.emulator.open_views(user_id)
        if not stack:
            raise DriverError(f"user {user_id} has no open modal")
        if view_id is None:
            return stack[-1]
        for view in stack:
            if view["id"] == view_id:
                return view
        raise DriverError(f"view {view_id} is not open for {user_id}")
