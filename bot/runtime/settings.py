"""Process settings from the environment; secrets are held but never shown in repr or logs."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from bot.domain.config import default_config_path

DEFAULT_SLACK_API_URL = "https://slack.com/api/"


@dataclass(frozen=True)
class Settings:
    config_path: Path = field(default_factory=default_config_path)
    slack_bot_token: str | None = field(default=None, repr=False)
    slack_signing_secret: str | None = field(default=None, repr=False)
    slack_app_token: str | None = field(default=None, repr=False)
    slack_api_url: str = DEFAULT_SLACK_API_URL
    database_url: str | None = field(default=None, repr=False)
    host: str = "0.0.0.0"
    port: int = 3000
    log_format: str = "text"
    run_executor: bool = True
    run_scheduler: bool = True
    # The after-ack pool (handlers/work_pool.py): threads for slow work and room to queue;
    # workers None: handlers.work_pool.DEFAULT_WORKERS (sized there, from measurement).
    work_pool_workers: int | None = None
    work_pool_queue: int = 16
    # Bolt's listener threads; None: handlers.work_pool.LISTENER_THREADS (64).
    listener_threads: int | None = None

    @classmethod
    def from_env(cls) -> Settings:
        env = os.environ
        return cls(
            config_path=default_config_path(),
            slack_bot_token=env.get("SLACK_BOT_TOKEN") or None,
            slack_signing_secret=env.get("SLACK_SIGNING_SECRET") or None,
            slack_app_token=env.get("SLACK_APP_TOKEN") or None,
            slack_api_url=env.get("SLACK_API_URL") or DEFAULT_SLACK_API_URL,
            database_url=env.get("DATABASE_URL") or None,
            host=env.get("HOST", "0.0.0.0"),
            port=int(env.get("PORT", "3000")),
            log_format=env.get("LOG_FORMAT", "text"),
            run_executor=env.get("ROLLBACK_EXECUTOR", "1") != "0",
            run_scheduler=env.get("ROLLBACK_SCHEDULER", "1") != "0",
            work_pool_workers=int(env["ROLLBACK_WORK_POOL_WORKERS"])
            if env.get("ROLLBACK_WORK_POOL_WORKERS") else None,
            work_pool_queue=int(env.get("ROLLBACK_WORK_POOL_QUEUE", "16")),
            listener_threads=int(env["ROLLBACK_LISTENER_THREADS"])
            if env.get("ROLLBACK_LISTENER_THREADS") else None,
        )

    @property
    def socket_mode(self) -> bool:
        return bool(self.slack_app_token)

    @property
    def has_slack_credentials(self) -> bool:
        """A bot token plus a way to trust inbound requests: the signing secret (HTTP) or an
        app-level token (Socket Mode, where Slack's requests arrive over our websocket)."""
        return bool(self.slack_bot_token and (self.slack_signing_secret or self.slack_app_token))
