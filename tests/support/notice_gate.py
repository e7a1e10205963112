"""The real Slack adapter with a door in front of notice posts: a test holds a post that
has begun (the deliverer's claim taken, Slack not yet called) and opens it when it likes."""

from __future__ import annotations

import threading

from slack_sdk import WebClient

from bot.domain.models import Rollback
from bot.domain.ports import Notice
from handlers.gateway import SlackChat


class NoticeGate(SlackChat):
    """The real adapter, whose notice posts wait for ``door`` once they have begun."""

    def __init__(self, client: WebClient) -> None:
        super().__init__(client)
        self.door = threading.Event()
        self.entered = threading.Event()

    def notice(self, rollback: Rollback, notice: Notice, *, channel: str | None = None) -> str:
        self.entered.set()
        assert self.door.wait(30), "the test never opened the door"
        return super().notice(rollback, notice, channel=channel)
