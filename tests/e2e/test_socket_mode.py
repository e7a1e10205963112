"""Socket Mode over a real websocket: the bot (``rollback-bot serve`` with SLACK_APP_TOKEN
and no signing secret, so no HTTP events endpoint) connects to the Slack emulator through
``apps.connections.open`` with slack_sdk's own client, and a rollback runs end to end over
envelopes: a slash command, a lost ack and Slack's retry of it (processed once), a
``refresh_requested`` disconnect and the reconnect, the Approve click, completion.

The emulator's side is ``sandbox/slack/socket_mode.py``; the driver's interactions travel
as envelopes (``sandbox/slack/socket_driver.py``).
"""

from __future__ import annotations

import json
import os
import socket
import struct
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import yaml

from bot.persistence.db import open_pool
from bot.persistence.store import Store
from bot.runtime.front_door import MAX_BODY_BYTES
from handlers import ids
from sandbox.config import sandbox_config_dict
from sandbox.fake_platform import FakePlatform
from sandbox.slack import DEFAULT_BOT_TOKEN, SlackEmulator
from sandbox.slack.socket_driver import NOT_ACKED, SocketModeDriver
from sandbox.slack.socket_mode import DEFAULT_APP_TOKEN
from tests.secret_scan import register_secret
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
    register_secret(DEFAULT_APP_TOKEN, "the Socket Mode app-level token")
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
        assert len(world["store"].history(SERVICE)) == 1  # one rollback, whatever the timing

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

        # The app-level token opened every connection and reached no log line.
        assert DEFAULT_APP_TOKEN not in proc.log_path.read_text()
    finally:
        driver.close()



@pytest.mark.xfail(strict=True, reason=(
    "slack_sdk's builtin client (socket_mode/builtin/internals.py _fetch_messages) recurses "
    "once per recv() chunk of receive_buffer_size (1024) bytes, so a frame of about 1 MB or "
    "more raises RecursionError inside the client's reader before enqueue_message: "
    "GuardedSocketModeClient never sees it (no fixed log line, no drop counter), the "
    "client drops the connection and opens a new one"))
def test_an_oversized_envelope_is_refused_by_the_guard_over_the_real_socket(
        world: dict[str, Any]) -> None:
    emulator: SlackEmulator = world["emulator"]
    proc: BotProcess = world["proc"]
    hub = emulator.socket_mode
    hub.wait_connections(1)
    huge = hub.deliver("slash_commands", {"command": "/rollback",
                                          "text": "help " + "x" * MAX_BODY_BYTES},
                       accepts_response_payload=True)
    refused = "socket mode envelope refused: over the size limit"

    def settled() -> bool:  # the guard logged its line, or the client gave up the socket
        return refused in proc.log_path.read_text() or len(hub.connections) > 1

    wait_until(settled, timeout=30, message="the oversized envelope to be dealt with",
               diagnostics=proc.tail)
    assert not huge.acked.is_set()
    assert refused in proc.log_path.read_text()
    assert len(hub.connections) == 1, "the connection was dropped instead"

# ------------------------------------------------------------ the wire, frame by frame
class RawSocket:
    """A minimal RFC 6455 client: the handshake and masked frames, read back unmasked."""

    def __init__(self, url: str, key: str = "dGhlIHNhbXBsZSBub25jZQ==") -> None:
        parts = urlsplit(url)
        self.sock = socket.create_connection((parts.hostname, parts.port), timeout=10)
        self.sock.sendall((f"GET {parts.path}?{parts.query} HTTP/1.1\r\nHost: {parts.hostname}"
                           f"\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                           f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
                           ).encode())
        self.reader = self.sock.makefile("rb")
        self.status_line = self.reader.readline().decode()
        self.headers: dict[str, str] = {}
        while (line := self.reader.readline().decode().strip()):
            name, _, value = line.partition(":")
            self.headers[name.strip().lower()] = value.strip()

    def send(self, opcode: int, data: bytes, *, masked: bool = True) -> None:
        mask = os.urandom(4) if masked else b""
        body = bytes(c ^ mask[i % 4] for i, c in enumerate(data)) if masked else data
        self.sock.sendall(bytes([0x80 | opcode, (0x80 if masked else 0) | len(data)])
                          + mask + body)

    def frame(self) -> tuple[int, bytes]:
        b0, b1 = self.reader.read(2)
        assert not b1 & 0x80, "a server frame must not be masked (RFC 6455 §5.1)"
        length = b1 & 0x7F
        if length == 126:
            (length,) = struct.unpack("!H", self.reader.read(2))
        elif length == 127:
            (length,) = struct.unpack("!Q", self.reader.read(8))
        return b0 & 0x0F, self.reader.read(length)

    def message(self) -> dict[str, Any]:
        opcode, data = self.frame()
        assert opcode == 0x1, (opcode, data)
        return dict(json.loads(data))

    def close(self) -> None:
        self.reader.close()
        self.sock.close()


def _open_url(emulator: SlackEmulator) -> str:
    answer = httpx.post(f"{emulator.base_url}apps.connections.open",
                        headers={"Authorization": f"Bearer {DEFAULT_APP_TOKEN}"}).json()
    assert answer["ok"] is True, answer
    return str(answer["url"])


def test_the_websocket_handshake_hello_ping_and_one_time_tickets() -> None:
    with SlackEmulator() as emulator:
        url = _open_url(emulator)
        assert url.startswith(f"ws://127.0.0.1:{emulator.port}/link/?ticket=")
        ws = RawSocket(url)
        try:
            assert ws.status_line.startswith("HTTP/1.1 101"), ws.status_line
            # RFC 6455 §1.3's worked example of the accept key.
            assert ws.headers["sec-websocket-accept"] == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
            hello = ws.message()
            assert hello["type"] == "hello" and hello["num_connections"] == 1
            assert set(hello["debug_info"]) >= {"host", "approximate_connection_time"}
            ws.send(0x9, b"session:123.5")  # slack_sdk's ping: its pong must echo the data
            assert ws.frame() == (0xA, b"session:123.5")
        finally:
            ws.close()
        again = RawSocket(url)  # a ticket opens one connection only
        try:
            assert again.status_line.startswith("HTTP/1.1 401"), again.status_line
        finally:
            again.close()
        bad = httpx.post(f"{emulator.base_url}apps.connections.open",
                         headers={"Authorization": "Bearer xapp-1-A0OTHER-1-nope"}).json()
        assert bad == {"ok": False, "error": "invalid_auth"}


def test_an_unmasked_client_frame_closes_the_connection_with_1002() -> None:
    with SlackEmulator() as emulator:
        ws = RawSocket(_open_url(emulator))
        try:
            ws.message()  # hello
            ws.send(0x1, b'{"envelope_id": "x"}', masked=False)
            opcode, data = ws.frame()
            assert opcode == 0x8 and struct.unpack("!H", data[:2])[0] == 1002
        finally:
            ws.close()


def test_envelopes_go_to_the_new_connection_after_a_warning_and_acks_settle_them() -> None:
    with SlackEmulator(ack_timeout=0.2) as emulator:
        hub = emulator.socket_mode
        first = RawSocket(_open_url(emulator))
        try:
            first.message()
            hub.disconnect("warning")
            assert first.message() == {"type": "disconnect", "reason": "warning",
                                       "debug_info": {"host": hub.control[0][1]["debug_info"]
                                                      ["host"]}}
            second = RawSocket(_open_url(emulator))
            try:
                assert second.message()["type"] == "hello"
                assert first.frame()[0] == 0x8  # the warned connection is closed
                # Nobody acks: the envelope stays unacked on the new connection.
                sent = hub.deliver("slash_commands", {"command": "/rollback"},
                                   accepts_response_payload=True)
                envelope = second.message()
                assert envelope == {"envelope_id": sent.envelope_id, "type": "slash_commands",
                                    "payload": {"command": "/rollback"},
                                    "accepts_response_payload": True, "retry_attempt": 0,
                                    "retry_reason": ""}
                assert not sent.acked.is_set() and sent.via == [2]
                # Slack's retry; this time acked, with a response payload.
                hub_thread = threading.Thread(target=hub.redeliver, args=(sent.envelope_id,))
                hub_thread.start()
                retried = second.message()
                assert (retried["retry_attempt"], retried["retry_reason"]) == (1, "timeout")
                second.send(0x1, json.dumps({"envelope_id": sent.envelope_id,
                                             "payload": {"text": "ok"}}).encode())
                hub_thread.join(timeout=5)
                assert sent.acked.is_set() and sent.response == {"text": "ok"}
                with pytest.raises(ValueError):
                    hub.redeliver(sent.envelope_id)  # an acked envelope is not retried
            finally:
                second.close()
        finally:
            first.close()
