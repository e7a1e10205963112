"""Real bot processes for the tests that kill them (crash/resume, leader failover).

``launch`` starts ``python -m tests.support.bot_main serve`` (the product's ``serve`` with the
sandbox's fake platform registered) from the repository root, in its own process group, with
its output in a log file, on a free port, talking to the Slack emulator and the given
database and config; variables a developer's shell might carry that would change how a
bot behaves are dropped from its environment first (``SCRUBBED_ENV``). ``BotProcess``
waits until it answers ``/healthz`` (failing with its log if it exits), shows the tail of
its log, and ``kill()`` SIGKILLs the whole group (pg_dump/pg_restore children included):
no cleanup handlers, no lease release, exactly like an OOM kill or a lost node.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import httpx

from sandbox.slack import DEFAULT_BOT_TOKEN, DEFAULT_SIGNING_SECRET
from tests.support.waiting import wait_until

__all__ = ["BOT_COMMAND", "ROOT", "SCRUBBED_ENV", "BotProcess", "free_port", "launch"]

ROOT = Path(__file__).resolve().parents[2]
# rollback-bot serve with the fake platform registered (tests/support/bot_main.py)
BOT_COMMAND = (sys.executable, "-m", "tests.support.bot_main", "serve")
# Variables a developer's shell might carry that would change how a bot process behaves
# (the crash points are set per process by the test that wants one).
SCRUBBED_ENV = ("ROLLBACK_FAULT_HOLD", "ROLLBACK_FAULT_FILE", "ROLLBACK_FAULT_POST",
                "ROLLBACK_FAULT_SEND", "SLACK_APP_TOKEN", "ROLLBACK_EXECUTOR",
                "ROLLBACK_SCHEDULER", "LOG_FORMAT")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class BotProcess:
    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path
    url: str

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def tail(self, lines: int = 60) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return f"--- {self.name}: no log ---"
        body = "\n".join(text.splitlines()[-lines:])
        return f"--- last {lines} log lines of {self.name} (pid {self.pid}) ---\n{body}"

    def healthy(self) -> bool:
        """Whether it answers ``/healthz`` now; an exited process fails with its log."""
        if not self.alive():
            raise AssertionError(f"{self.name} exited with {self.popen.returncode}\n"
                                 f"{self.tail()}")
        try:
            return httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def wait_healthy(self, *, timeout: float = 30,
                     diagnostics: Callable[[], str] | None = None) -> None:
        wait_until(self.healthy, timeout, message=f"{self.name} to serve /healthz",
                   diagnostics=diagnostics)

    def kill(self) -> None:
        """SIGKILL the whole process group (pg_dump/pg_restore children included) and reap."""
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(timeout=10)


def launch(name: str, *, log_dir: Path, slack_api_url: str, database_url: str, config: Path,
           env: Mapping[str, str] | None = None) -> BotProcess:
    """Start one bot process (not yet waited for: register it for cleanup, then call
    ``wait_healthy``). ``env``: more variables (an application DSN, a crash point)."""
    port = free_port()
    full_env = {k: v for k, v in os.environ.items() if k not in SCRUBBED_ENV}
    full_env.update({
        "SLACK_BOT_TOKEN": DEFAULT_BOT_TOKEN,
        "SLACK_SIGNING_SECRET": DEFAULT_SIGNING_SECRET,
        "SLACK_API_URL": slack_api_url,
        "DATABASE_URL": database_url,
        "ROLLBACK_CONFIG": str(config),
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "PYTHONUNBUFFERED": "1",
        **(env or {}),
    })
    log_path = log_dir / f"{name}.log"
    with open(log_path, "wb") as log:
        popen = subprocess.Popen(
            list(BOT_COMMAND), cwd=ROOT, env=full_env,
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: killpg reaches children too
        )
    return BotProcess(name, popen, log_path, f"http://127.0.0.1:{port}")
