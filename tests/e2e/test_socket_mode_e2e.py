"""Socket Mode over a real websocket: the bot (``rollback-bot serve`` with SLACK_APP_TOKEN
and no signing secret, so no HTTP events endpoint) connects to the Slack emulator through
``apps.connections.open`` with slack_sdk's own client, and a rollback runs end to end over
envelopes: a slash command, a lost ack and Slack's retry of it (processed once), a
``refresh_requested`` disconnect and the reconnect, the Approve click, completion.

The emulator's side is ``sandbox/slack/socket_mode.py``; the driver's interactions travel
as envelopes (``sandbox/slack/socket_driver.py``).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from bot.persistence.db import open_pool
from bot.persistence.store import Store
from handlers import ids
from sandbox.config import sandbox_config_dict
from sandbox.fake_platform import FakePlatform
from sandbox.slack import DEFAULT_BOT_TOKEN, SlackEmulator
from sandbox.slack.socket_driver import NOT_ACKED, SocketModeDriver
from sandbox.slack.socket_mode import DEFAULT_APP_TOKEN
from tests.support.bot_process import BotProcess, launch
from tests.support.messages import CHANNEL, find_request_message, request_ref, thread_texts
from tests.support.waiting import wait_until

SERVICE = "hotel-voice-bot"
REQUEST = f"{SERVICE} --severity P0 --reason socket-mode"


@pytest.fixture
def world(tmp_path: Path, db: str) -> Iterator[dict[str, Any]]:
    state_file = tmp_path / "platform.json"
    platform = FakePlatform(state_file=state_file)
    config = sandbox_config_dict(
        fake={"scope": "production", "name": SERVICE, "state_file": str(state_file)},
        stakeholder_channel=None, postmortem_dir=str(tmp_path / "pm"))
    config_path = tmp_path / "rollback.yml"
    config_path.write_text(yaml.safe_dump(config))
    emulator = SlackEmulator().start()  # Slack's 3-second ack deadline
    store = Store(open_pool(db, max_size=2))
    procs: list[BotProcess] = []
    try:
        # An empty signing secret is unset: Socket Mode only, nothing listens for HTTP events.
        proc = launch("socket-bot", log_dir=tmp_path, slack_api_url=emulator.base_url,
                      database_url=db, config=config_path,
                      env={"SLACK_APP_TOKEN": DEFAULT_APP_TOKEN, "SLACK_SIGNING_SECRET": ""})
        procs.append(proc)
        proc.wait_healthy()
        yield {"emulator": emulator, "proc": proc, "store": store, "platform": platform}
    finally:
        for p in procs:
            p.kill()
        emulator.stop()
        store.pool.close()


def test_a_rollback_runs_over_socket_mode_through_a_refresh_and_a_retry(
        world: dict[str, Any]) -> None:
    emulator: SlackEmulator = world["emulator"]
    proc: BotProcess = world["proc"]
    hub = emulator.socket_mode

    def diagnostics() -> str:
        return proc.tail()

    # The bot opened its websocket with the app-level token, and got a hello.
    hub.wait_connections(1)
    opens = emulator.calls("apps.connections.open")
    assert len(opens) == 1 and opens[0].ok
    assert hub.control[0][1]["type"] == "hello"
    # No HTTP events endpoint: Socket Mode is the only way in.
    assert httpx.post(f"{proc.url}/slack/events", content=b"{}").status_code == 404
    # The bot token cannot open a socket (only an app-level token can).
    refused = httpx.post(f"{emulator.base_url}apps.connections.open",
                         headers={"Authorization": f"Bearer {DEFAULT_BOT_TOKEN}"}).json()
    assert refused == {"ok": False, "error": "not_allowed_token_type"}

    driver = SocketModeDriver(emulator)
    try:
        # alice's command arrives, the bot acks it, but the ack is lost on the way to Slack.
        hub.lose_acks(1)
        first = driver.slash_command("/rollback", REQUEST, user="alice", channel=CHANNEL)
        assert first.status == NOT_ACKED
        msg = wait_until(lambda: find_request_message(emulator), timeout=30,
                         message="the request message", diagnostics=diagnostics)
        rollback_id = request_ref(msg)

        # Slack retries the unacked envelope: same id and payload, retry_attempt 1. The bot
        # acks it and does not start a second rollback.
        retry = driver.resend(first)
        assert retry.status == 200, proc.tail()
        envelope = hub.envelopes[str(first.envelope_id)]
        assert [d["retry_attempt"] for d in envelope.deliveries] == [0, 1]
        assert envelope.deliveries[1]["retry_reason"] == "timeout"
        assert envelope.deliveries[0]["payload"] == envelope.deliveries[1]["payload"]
        emulator.wait_idle(quiet=1.0, timeout=30)
        requests = [m for m in emulator.messages(CHANNEL) if f"RB-{rollback_id}" in
                    str(m.get("text", "")) and m.get("blocks")
                    and m["blocks"][0].get("type") == "header"]
        assert len(requests) == 1, [m.get("text") for m in emulator.messages(CHANNEL)]
        assert not [m for m in emulator.messages(CHANNEL)
                    if f"RB-{rollback_id + 1}" in str(m.get("text", ""))]

        # Slack refreshes the connection: the client opens a new URL, the old socket closes.
        hub.disconnect("refresh_requested")
        hub.wait_connections(2)
        wait_until(lambda: not hub.connections[0].open, timeout=10,
                   message="the refreshed connection to close", diagnostics=diagnostics)
        assert len([c for c in emulator.calls("apps.connections.open") if c.ok]) == 2
        assert [m["type"] for _, m in hub.control] == ["hello", "disconnect", "hello"]

        # bob (an approver, not the requester) approves over the new connection.
        click = driver.click(CHANNEL, msg["ts"], ids.APPROVE, user="bob")
        assert click.status == 200, proc.tail()
        assert hub.envelopes[str(click.envelope_id)].via == [2]
        assert hub.envelopes[str(click.envelope_id)].type == "interactive"

        def completed() -> bool:
            return any(f"RB-{rollback_id} completed:" in t
                       for t in thread_texts(emulator, msg))

        wait_until(completed, timeout=60, message=f"RB-{rollback_id} to complete",
                   diagnostics=lambda: "\n".join(thread_texts(emulator, msg)) + proc.tail())
        done = world["store"].get(rollback_id)
        assert done.state.value == "completed"
        assert done.approver == emulator.user_id("bob")
        assert world["platform"].mutations()["rollback_to"] == 1
    finally:
        driver.close()
