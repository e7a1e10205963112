"""Slack stand-in: a Web API emulator, a signed-request driver and a plain-text renderer."""

from __future__ import annotations

from sandbox.slack.api import ApiError
from sandbox.slack.driver import BotResponse, DriverError, ElementNotFound, Signing, SlackDriver
from sandbox.slack.models import Call, Event
from sandbox.slack.server import (
    DEFAULT_BOT_TOKEN,
    DEFAULT_CHANNEL,
    DEFAULT_SIGNING_SECRET,
    DEFAULT_USERGROUP,
    SlackEmulator,
)

__all__ = [
    "DEFAULT_BOT_TOKEN",
    "DEFAULT_CHANNEL",
    "DEFAULT_SIGNING_SECRET",
    "DEFAULT_USERGROUP",
    "ApiError",
    "BotResponse",
    "Call",
    "DriverError",
    "ElementNotFound",
    "Event",
    "Signing",
    "SlackDriver",
    "SlackEmulator",
]
