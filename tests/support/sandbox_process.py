"""A sandbox (``python -m sandbox run``) in its own process, as `make run` starts it, and its
command line (``say``, ``auto``) from another: for tests of the sandbox's process promises."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]  # the sandbox runs from a checkout


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def sandbox_env(data: Path, port: int, console: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("SLACK_") and k != "DATABASE_URL"}
    env.update(ROLLBACK_DATA_DIR=str(data), PORT=str(port), SANDBOX_CONSOLE_PORT=str(console))
    return env


def wait_healthy(url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if httpx.get(f"{url}/healthz", timeout=1).is_success:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)  # polling a condition with a deadline
    text = log.read_text()
    # pgserver logs a failed initdb/pg_ctl's own stderr before the traceback: keep that part
    # too, or a failed start under load says only "exit status 1".
    cause = text[text.find("Failed postgres command"):][:3000] \
        if "Failed postgres command" in text else ""
    pytest.fail(f"the sandbox never answered /healthz:\n{cause}\n...\n{text[-3000:]}")


def start_sandbox(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """``python -m sandbox run`` (what `make run` starts) in its own session, output to
    ``log``."""
    with log.open("w") as out:
        return subprocess.Popen([sys.executable, "-m", "sandbox", "run"], env=env,
                                cwd=REPO_ROOT, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)


def sandbox_cli(env: dict[str, str], *args: str,
                timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """``python -m sandbox ARGS`` (``run``, ``say``, ``auto``): the sandbox's command line."""
    return subprocess.run([sys.executable, "-m", "sandbox", *args], env=env, cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=timeout)


def stop_process(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def wait_ready(proc: subprocess.Popen[bytes], log: Path, timeout: float = 90) -> str:
    """Wait for the sandbox's ready line ("Press Ctrl-C to stop.", printed once the console
    listens and its address is written for the CLI); the banner so far."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = log.read_text()
        if "Press Ctrl-C to stop." in text:
            return text
        if proc.poll() is not None:
            break
        time.sleep(0.1)  # polling a condition with a deadline
    pytest.fail(f"the sandbox never printed its ready line:\n{log.read_text()[-3000:]}")
