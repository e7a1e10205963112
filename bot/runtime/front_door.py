"""The front door of ``/slack/events``: a body-size limit, then Slack's timestamp and v0
signature checked on the raw bytes, before anything parses the request or any Bolt code
runs. A refused request gets 401 or 413 and causes nothing else: no parsing, no outbound
call, and no log line carrying its body or a header value. A verified body that is not a
shape Slack sends (Bolt would raise while building the request) gets 400.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import logging
import re
import time
import urllib.parse
from collections.abc import Callable, Iterable
from typing import Any

log = logging.getLogger(__name__)

StartResponse = Callable[..., Any]
WsgiApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]

# Largest body we accept: 2 MiB. Slack's documented ceilings make its biggest payloads
# interactive ones: a view_submission carries the whole view (up to 100 blocks of up to
# 3,000 characters each, 3,000 characters of private_metadata) plus the state of every
# input (plain_text_input up to 3,000 characters each), and block_actions carries the
# message (up to 50 blocks, 40,000 characters of text). A fully loaded ASCII modal is
# about 600 KB of JSON, ~0.9 MB once form-encoded as ``payload=``; 2 MiB leaves more than
# 2x margin over that. Our own views and commands are a few KB. Anything bigger is not
# from Slack; the HTTP server refuses it from the Content-Length header alone.
MAX_BODY_BYTES = 2 * 1024 * 1024
# Slack's replay window: a request signed more than five minutes ago (or ahead) is refused.
MAX_SKEW_SECONDS = 300

_TIMESTAMP = re.compile(r"[0-9]{1,12}", re.ASCII)
_SIGNATURE = re.compile(r"v0=[0-9a-f]{64}", re.ASCII)


class SlackFrontDoor:
    """WSGI middleware: only requests signed with ``signing_secret`` reach ``app``."""

    def __init__(self, app: WsgiApp, *, signing_secret: str, max_body: int = MAX_BODY_BYTES,
                 clock: Callable[[], float] = time.time) -> None:
        self._app = app
        self._secret = signing_secret.encode()
        self._max_body = max_body
        self._clock = clock

    def __call__(self, environ: dict[str, Any], start: StartResponse) -> Iterable[bytes]:
        length = _content_length(environ)
        if length is None:
            return _refuse(start, "401 Unauthorized", "bad content length")
        if length > self._max_body:
            return _refuse(start, "413 Content Too Large", "body over the size limit")
        timestamp = environ.get("HTTP_X_SLACK_REQUEST_TIMESTAMP", "")
        signature = environ.get("HTTP_X_SLACK_SIGNATURE", "")
        if not _TIMESTAMP.fullmatch(timestamp) or not _SIGNATURE.fullmatch(signature):
            return _refuse(start, "401 Unauthorized", "missing or malformed signature headers")
        if abs(self._clock() - int(timestamp)) > MAX_SKEW_SECONDS:
            return _refuse(start, "401 Unauthorized", "timestamp outside the replay window")
        body = _read(environ["wsgi.input"], length)
        if len(body) != length:
            return _refuse(start, "401 Unauthorized", "body shorter than its content length")
        expected = "v0=" + hmac.new(self._secret, b"v0:" + timestamp.encode() + b":" + body,
                                    hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected.encode(), signature.encode()):
            return _refuse(start, "401 Unauthorized", "signature mismatch")
        problem = payload_problem(body, str(environ.get("CONTENT_TYPE") or ""))
        if problem is not None:  # signed, but not a shape Slack sends: Bolt would crash on it
            return _refuse(start, "400 Bad Request", problem)
        environ["wsgi.input"] = io.BytesIO(body)  # the bytes we verified, and only those
        environ["CONTENT_LENGTH"] = str(length)
        return self._app(environ, start)


# Fields Bolt reads as objects while it builds the request and matches listeners, before
# any of our code runs (slack_bolt/request/internals.py): anything else there is not a
# payload Slack sends (api.slack.com/reference/interaction-payloads).
_OBJECT_FIELDS = ("team", "channel", "container", "user", "view", "message", "enterprise")


def payload_problem(body: bytes, content_type: str) -> str | None:
    """Why a *verified* body is not a payload shape Slack sends (a fixed string for the
    log), or None. Slash commands are plain forms; interactions are a form with one
    ``payload`` JSON object; Events API bodies are a JSON object."""
    try:
        if content_type.startswith("application/json"):
            data = json.loads(body)
            return None if isinstance(data, dict) else "JSON body is not an object"
        form = urllib.parse.parse_qs(body.decode("utf-8"), keep_blank_values=True,
                                     strict_parsing=False)
    except (ValueError, UnicodeDecodeError):
        return "body is not valid JSON or form data"
    raw = form.get("payload")
    if raw is None:
        return None  # a slash command or an options request: Bolt reads plain fields
    try:
        payload = json.loads(raw[0])
    except ValueError:
        return "payload is not valid JSON"
    if not isinstance(payload, dict):
        return "payload is not a JSON object"
    if not isinstance(payload.get("type"), str):
        return "payload has no type"
    for key in _OBJECT_FIELDS:
        if payload.get(key) is not None and not isinstance(payload[key], dict):
            return f"payload field {key} is not an object"
    # Bolt tests '"callback_id" in body["view"]' whenever the key exists; Slack always sends
    # the acting user. (``team`` and ``enterprise`` may be null in org-wide installs.)
    for key in ("view", "user"):
        if key in payload and not isinstance(payload[key], dict):
            return f"payload field {key} is not an object"
    view = payload.get("view")
    if isinstance(view, dict) and not (isinstance(view.get("type"), str)
                                       and isinstance(view.get("callback_id", ""), str)):
        return "payload view has no type or callback_id"
    actions = payload.get("actions")
    if ("actions" in payload or payload["type"] == "block_actions") and not (
            isinstance(actions, list) and actions
            and all(isinstance(a, dict) and isinstance(a.get("action_id"), str)
                    for a in actions)):
        return "payload actions are malformed"
    return None


def _content_length(environ: dict[str, Any]) -> int | None:
    raw = str(environ.get("CONTENT_LENGTH") or "0").strip()
    if not raw.isascii() or not raw.isdigit():
        return None
    return int(raw)


def _read(stream: Any, length: int) -> bytes:
    chunks: list[bytes] = []
    remaining = length
    while remaining > 0:
        chunk = stream.read(min(remaining, 65536))
        if not chunk:
            break
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def _refuse(start: StartResponse, status: str, reason: str) -> list[bytes]:
    # The reason is one of our fixed strings: nothing the client sent goes into the log.
    log.info("slack request refused: %s", reason)
    body = status.split(" ", 1)[1].lower().encode() + b"\n"
    start(status, [("Content-Type", "text/plain; charset=utf-8"),
                   ("Content-Length", str(len(body)))])
    return [body]
