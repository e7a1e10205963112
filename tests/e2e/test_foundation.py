"""The foundation promises: signed help over HTTP, 401s, health/readiness, and `run`."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.e2e.conftest import Harness

ROOT = Path(__file__).resolve().parents[2]  # the sandbox runs from a checkout


def test_signed_help_and_services(harness: Harness) -> None:
    h = harness
    reply = h.request("help")
    assert reply.status == 200
    body = reply.json()
    assert body["response_type"] == "ephemeral"
    assert "/rollback status [ID|service]" in str(body["blocks"])
    services = h.request("services").json()
    assert "hotel-voice-bot" in str(services["blocks"])


def test_unknown_input_gets_usage_never_a_trace(harness: Harness) -> None:
    reply = harness.request('hotel-voice-bot --frobnicate "x"')
    assert reply.status == 200
    text = str(reply.json())
    assert "Unknown option `--frobnicate`" in text and "/rollback <service>" in text
    assert "Traceback" not in text


def test_health_and_readiness(harness: Harness) -> None:
    url = harness.stack.server.url  # type: ignore[union-attr]
    assert httpx.get(f"{url}/healthz").status_code == 200
    ready = httpx.get(f"{url}/readyz")
    assert (ready.status_code, ready.json()["ready"], ready.json()["failing"]) == (200, True, [])
    assert "python_info" in httpx.get(f"{url}/metrics").text
    assert httpx.get(f"{url}/nope").status_code == 404


def test_readiness_fails_when_the_database_is_gone(harness: Harness) -> None:
    url = harness.stack.server.url  # type: ignore[union-attr]
    harness.bot.store.pool.close()
    ready = httpx.get(f"{url}/readyz")
    assert (ready.status_code, ready.json()["failing"]) == (503, ["database"])
    assert httpx.get(f"{url}/healthz").status_code == 200  # alive, just not ready


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_run_without_credentials_serves_the_sandbox(tmp_path: Path) -> None:
    """`make run` runs `python -m sandbox run`: healthz within 15 s and `say` answers."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("SLACK_") and k != "DATABASE_URL"}
    port, console = _free_port(), _free_port()
    env.update(ROLLBACK_DATA_DIR=str(tmp_path / "data"), PORT=str(port),
               SANDBOX_CONSOLE_PORT=str(console))
    log = (tmp_path / "run.log").open("w")
    proc = subprocess.Popen([sys.executable, "-m", "sandbox", "run"], env=env, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True, cwd=ROOT)
    try:
        started = time.monotonic()
        healthy = False
        while time.monotonic() - started < 15 and proc.poll() is None:
            try:
                healthy = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).is_success
            except httpx.HTTPError:
                healthy = False
            if healthy:
                break
            time.sleep(0.1)  # polling a condition with a deadline
        assert healthy, (tmp_path / "run.log").read_text()[-3000:]
        said = subprocess.run([sys.executable, "-m", "sandbox", "say", "/rollback help"],
                              env=env, capture_output=True, text=True, timeout=60, cwd=ROOT)
        assert said.returncode == 0, said.stderr
        assert "/rollback status [ID|service]" in said.stdout
        assert "only visible to @alice" in said.stdout
        page = httpx.get(f"http://127.0.0.1:{console}/", timeout=5)
        assert page.status_code == 200 and "<html" in page.text.lower()  # the console loads
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
    output = (tmp_path / "run.log").read_text()
    assert f"http://127.0.0.1:{console}/" in output  # it told the user where the console is


def test_socket_mode_never_serves_unverifiable_http_events(db: str) -> None:
    """With SLACK_APP_TOKEN and no signing secret, Slack's requests come over the
    websocket; the HTTP endpoint must not accept (unverifiable) events at all."""
    from bot.runtime.app import create_app
    from bot.runtime.server import HttpServer
    from bot.runtime.settings import Settings
    from sandbox.config import sandbox_config
    from sandbox.slack import DEFAULT_BOT_TOKEN, SlackEmulator

    with SlackEmulator() as emulator:
        settings = Settings(slack_bot_token=DEFAULT_BOT_TOKEN, slack_signing_secret=None,
                            slack_app_token="xapp-1-test", slack_api_url=emulator.base_url,
                            database_url=db, host="127.0.0.1", port=0)
        assert settings.has_slack_credentials and settings.socket_mode
        bot = create_app(settings, config=sandbox_config())
        server = HttpServer(bot, host="127.0.0.1", port=0).start()
        try:
            body = "command=%2Frollback&text=hotel-voice-bot&user_id=U0ALICE&channel_id=C1"
            events = httpx.post(f"{server.url}/slack/events", content=body,
                                headers={"Content-Type": "application/x-www-form-urlencoded"})
            assert events.status_code == 404
            assert httpx.get(f"{server.url}/healthz").status_code == 200
            assert bot.store.history("hotel-voice-bot") == []
        finally:
            server.stop()
            bot.stop()
