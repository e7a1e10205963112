"""Shared vocabulary for the emulated Web API methods: context, parameters, errors.

Method modules (`chat`, `directory`, `views`, `files`) each export a METHODS table of
`handler(ctx, params) -> dict`; handlers run under the workspace lock, so they are atomic.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sandbox.slack.blockkit import MAX_MESSAGE_TEXT, assign_ids, block_errors
from sandbox.slack.models import User
from sandbox.slack.state import Message, Workspace


class ApiError(Exception):
    """A Slack `{"ok": false, "error": ...}` answer, optionally with detail messages."""

    def __init__(
        self,
        error: str,
        *,
        messages: list[str] | None = None,
        status: int = 200,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(error)
        self.error = error
        self.messages = messages or []
        self.status = status
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"ok": False, "error": self.error}
        if self.messages:
            # Slack repeats validation details in both places depending on the method.
            body["errors"] = list(self.messages)
            body["response_metadata"] = {"messages": [f"[ERROR] {m}" for m in self.messages]}
        return body


@dataclass
class ApiContext:
    """What a method handler may use besides its parameters."""

    ws: Workspace
    bot: User
    app_id: str
    base_url: str  # http://127.0.0.1:PORT/ (no api/ suffix)
    trigger_ttl: float


class Params:
    """Request parameters merged from query, form or JSON body, read the way Slack reads them."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.data = data

    def get(self, name: str) -> Any:
        value = self.data.get(name)
        # Slack treats an empty form field as absent.
        return None if value == "" else value

    def string(self, name: str) -> str | None:
        value = self.get(name)
        return None if value is None else str(value)

    def require(self, name: str, error: str = "invalid_arguments") -> str:
        value = self.string(name)
        if value is None:
            raise ApiError(error, messages=[f"missing required field: {name}"])
        return value

    def flag(self, name: str) -> bool:
        value = self.get(name)
        return value is True or str(value).lower() in ("true", "1")

    def json(self, name: str, error: str = "invalid_arguments") -> Any:
        """A JSON-valued argument: a URL-encoded string in forms, a native value in JSON."""
        value = self.get(name)
        if isinstance(value, str):
            try:
                return json.loads(value)
            except json.JSONDecodeError as exc:
                raise ApiError(error, messages=[f"{name} is not valid JSON: {exc}"]) from None
        return value


Handler = Callable[[ApiContext, Params], dict[str, Any]]


def public(obj: Any) -> Any:
    """A deep copy safe to hand out (callers must not mutate emulator state)."""
    return copy.deepcopy(obj)


def message_content(
    text: Any, blocks: Any, *, attachments: Any = None, update: bool = False
) -> dict[str, Any]:
    """Validate text/blocks like chat.postMessage does; return the fields to store."""
    if text is not None and len(str(text)) > MAX_MESSAGE_TEXT:
        raise ApiError("msg_too_long")
    content: dict[str, Any] = {}
    if blocks is not None:
        if isinstance(blocks, str):
            try:
                blocks = json.loads(blocks)
            except json.JSONDecodeError:
                raise ApiError("invalid_blocks_format") from None
        if not isinstance(blocks, list):
            raise ApiError("invalid_blocks_format")
        errors = block_errors(blocks)
        if errors:
            raise ApiError("invalid_blocks", messages=errors)
        content["blocks"] = assign_ids(blocks)
    if attachments:
        content["attachments"] = (
            json.loads(attachments) if isinstance(attachments, str) else attachments
        )
    if not text and not content.get("blocks") and not content.get("attachments") and not update:
        raise ApiError("no_text")
    content["text"] = "" if text is None else str(text)
    return content


def bot_message(ctx: ApiContext, ts: str, content: dict[str, Any]) -> Message:
    """A message as Slack stores one posted with a bot token."""
    return {
        "type": "message",
        "user": ctx.bot.id,
        "bot_id": ctx.bot.bot_id,
        "app_id": ctx.app_id,
        "ts": ts,
        "team": ctx.ws.team_id,
        "bot_profile": {
            "id": ctx.bot.bot_id,
            "app_id": ctx.app_id,
            "name": ctx.bot.name,
            "team_id": ctx.ws.team_id,
            "deleted": False,
        },
        **content,
    }
