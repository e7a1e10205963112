"""``make run`` without Slack credentials: emulator + bot + console on 127.0.0.1.

Everything runs on the real code paths (signed requests in, Web API calls out, embedded
PostgreSQL). Each run starts from a fresh sandbox database and platform state so a
drill always begins at the same incident.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import threading
from pathlib import Path
from typing import Any

import psycopg
from psycopg import conninfo

from bot.db import data_dir, embedded_database_url, migrate
from sandbox.config import sandbox_config
from sandbox.console import Console
from sandbox.stack import SandboxStack

log = logging.getLogger(__name__)
SANDBOX_DB = "rollback_sandbox"


def state_path() -> Path:
    return data_dir() / "sandbox.json"


def fresh_sandbox_database(directory: Path) -> str:
    """A new ``rollback_sandbox`` database on the embedded server (never a user's DB)."""
    admin = embedded_database_url(directory)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{SANDBOX_DB}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{SANDBOX_DB}"')
    params = conninfo.conninfo_to_dict(admin)
    params["dbname"] = SANDBOX_DB
    return conninfo.make_conninfo("", **params)


def build_stack(*, directory: Path, bot_port: int) -> SandboxStack:
    database_url = os.environ.get("DATABASE_URL") or fresh_sandbox_database(directory)
    migrate(database_url)
    platform_state = directory / "sandbox-platform.json"
    platform_state.unlink(missing_ok=True)
    config = sandbox_config(fake={"scope": "production", "name": "hotel-voice-bot",
                                  "state_file": str(platform_state), "rollout_seconds": 3})
    return SandboxStack(config=config, database_url=database_url, bot_port=bot_port)


def run_sandbox(*, port: int | None = None) -> int:
    directory = data_dir()
    directory.mkdir(parents=True, exist_ok=True)
    bot_port = port if port is not None else int(os.environ.get("PORT", "3000"))
    console_port = int(os.environ.get("SANDBOX_CONSOLE_PORT", "3001"))
    stack = build_stack(directory=directory, bot_port=bot_port).start()
    assert stack.driver is not None and stack.server is not None
    console = Console(emulator=stack.emulator, driver=stack.driver, port=console_port).start()
    info: dict[str, Any] = {"bot_url": stack.server.url, "console_url": console.url,
                            "slack_api_url": stack.emulator.base_url, "pid": os.getpid()}
    path = state_path()
    path.write_text(json.dumps(info))
    print(f"""
rollback-bot sandbox is running (no Slack credentials set; everything is local).
  bot:      {stack.server.url}/slack/events   health: {stack.server.url}/healthz
  Slack:    emulator at {stack.emulator.base_url}
  console:  {console.url}/   (open in a browser)
Try:
  .venv/bin/rollback-bot sandbox say "/rollback help"
  .venv/bin/rollback-bot sandbox say "/rollback hotel-voice-bot --severity P1 --reason drill"
Press Ctrl-C to stop.
""", flush=True)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    console.stop()
    stack.stop()
    path.unlink(missing_ok=True)
    return 0
