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
from bot.ports import Clock, utcnow
from platforms.kubernetes import KubernetesPlatform
from sandbox.config import sandbox_config
from sandbox.console import Console
from sandbox.demo import DemoService
from sandbox.kube import KubeEmulator
from sandbox.kube_seed import BAD, DEPLOYMENT, NAMESPACE, kubernetes_target, seed_incident
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


class SandboxWorld:
    """The Kubernetes emulator (seeded with a bad release), the demo service whose health
    follows the Deployment's image, and the bot stack driving the real adapter."""

    def __init__(self, *, directory: Path, bot_port: int = 0, rollout_seconds: float = 3.0,
                 monitoring: dict[str, Any] | None = None, traffic_rps: float = 5.0,
                 clock: Clock = utcnow) -> None:
        self.kube = KubeEmulator(seed="sandbox", rollout_duration=rollout_seconds).start()
        seed_incident(self.kube)
        self.demo = DemoService(
            version_source=lambda: self.kube.current_image(NAMESPACE, DEPLOYMENT),
            bad_versions={BAD}, bad_health_delay=1.0, traffic_rps=traffic_rps).start()
        self._client = self.kube.api_client()
        database_url = os.environ.get("DATABASE_URL") or fresh_sandbox_database(directory)
        migrate(database_url)
        config = sandbox_config(platform="kubernetes", kubernetes=kubernetes_target(),
                                demo_url=self.demo.url, monitoring=monitoring,
                                postmortem_dir=str(directory / "post-mortems"))
        platform = KubernetesPlatform(api_client=self._client, request_timeout=10.0)
        self.stack = SandboxStack(config=config, database_url=database_url, bot_port=bot_port,
                                  platforms={"kubernetes": platform}, clock=clock)

    def start(self) -> SandboxWorld:
        self.stack.start()
        return self

    def stop(self) -> None:
        self.stack.stop()
        self.demo.stop()
        self._client.close()
        self.kube.stop()


def run_sandbox(*, port: int | None = None) -> int:
    directory = data_dir()
    directory.mkdir(parents=True, exist_ok=True)
    bot_port = port if port is not None else int(os.environ.get("PORT", "3000"))
    console_port = int(os.environ.get("SANDBOX_CONSOLE_PORT", "3001"))
    world = SandboxWorld(directory=directory, bot_port=bot_port).start()
    stack = world.stack
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
  cluster:  Kubernetes API emulator at {world.kube.url} (kubectl works against it)
  service:  demo hotel-voice-bot at {world.demo.url} (running the bad release {BAD})
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
    world.stop()
    path.unlink(missing_ok=True)
    return 0
