"""One local stack: Slack emulator + the real bot over HTTP + a signed-request driver.

Used by ``make run`` (no credentials) and by the end-to-end tests, so both exercise the
same code paths a real workspace does: signed requests in, Web API calls out.
"""

from __future__ import annotations

import secrets
from typing import Any

from bot.domain.config import RollbackConfig
from bot.domain.ports import Clock, utcnow
from bot.runtime.app import BotApp, create_app
from bot.runtime.server import HttpServer
from bot.runtime.settings import Settings
from platforms.base import Platform
from sandbox.slack import DEFAULT_BOT_TOKEN, SlackDriver, SlackEmulator


class SandboxStack:
    def __init__(
        self, *, config: RollbackConfig, database_url: str,
        platforms: dict[str, Platform] | None = None, clock: Clock = utcnow,
        bot_port: int = 0, emulator_port: int = 0, background: bool = True,
        emulator: SlackEmulator | None = None, scheduler: bool = True,
    ) -> None:
        self.config = config
        self.database_url = database_url
        self.platforms = platforms
        self.clock = clock
        self.bot_port = bot_port
        self.background = background
        self.run_scheduler = scheduler  # tests drive timers with tick(now=...) instead
        self.signing_secret = secrets.token_hex(16)  # per run: never a shared default
        self.owns_emulator = emulator is None  # a shared one (restart tests) outlives us
        self.emulator = emulator or SlackEmulator(port=emulator_port)
        self.bot: BotApp | None = None
        self.server: HttpServer | None = None
        self.driver: SlackDriver | None = None

    def start(self) -> SandboxStack:
        if self.owns_emulator:
            self.emulator.start()
        for svc in self.config.services.values():  # stakeholder channels exist in a workspace
            for channel in svc.stakeholders.channels:
                name = channel.lstrip("#")
                if not self._has_channel(name):
                    self.emulator.add_channel(name, members=["carol", self.emulator.bot.id])
        settings = Settings(
            slack_bot_token=DEFAULT_BOT_TOKEN, slack_signing_secret=self.signing_secret,
            slack_api_url=self.emulator.base_url, database_url=self.database_url,
            host="127.0.0.1", port=self.bot_port, run_scheduler=self.run_scheduler,
        )
        self.bot = create_app(settings, config=self.config, platforms=self.platforms,
                              clock=self.clock)
        self.server = HttpServer(self.bot, host="127.0.0.1", port=self.bot_port).start()
        if self.background:
            self.bot.start_background()
        self.driver = SlackDriver(self.emulator, f"{self.server.url}/slack/events",
                                  self.signing_secret)
        return self

    def _has_channel(self, name: str) -> bool:
        try:
            self.emulator.channel_id(name)
        except Exception:
            return False
        return True

    def stop(self) -> None:
        if self.driver:
            self.driver.close()
        if self.server:
            self.server.stop()
        if self.bot:
            self.bot.stop()
        if self.owns_emulator:
            self.emulator.stop()

    def __enter__(self) -> SandboxStack:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()
