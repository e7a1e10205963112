"""Socket Mode gets the front door's size limit: an envelope over ``MAX_BODY_BYTES`` is
dropped where slack_sdk queues the raw text, before anything parses it, with a fixed log
reason; envelopes within the limit reach the same listeners as over HTTP.

No real Slack: the real bot's Socket Mode handler is fed raw websocket texts the way its
connection hands them over, and what it would send back on the socket is captured.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bot.runtime.front_door import MAX_BODY_BYTES
from handlers.socket_mode import GuardedSocketModeHandler, utf8_size
from sandbox.config import parse_sandbox_config, sandbox_config_dict
from sandbox.fake_platform import FakePlatform
from sandbox.slack import payloads
from sandbox.stack import SandboxStack
from tests.secret_scan import register_secret

CHANNEL = "inc-hotel-voice-bot"
REASON = "socket mode envelope refused: over the size limit"


@pytest.fixture
def stack(db: str, tmp_path: Path) -> Iterator[SandboxStack]:
    config = parse_sandbox_config(sandbox_config_dict(postmortem_dir=str(tmp_path / "pm")))
    with SandboxStack(config=config, database_url=db, platforms={"fake": FakePlatform()},
                      scheduler=False, background=False) as running:
        register_secret(running.signing_secret, "a sandbox stack's signing secret")
        yield running


@pytest.fixture
def socket_mode(stack: SandboxStack) -> Iterator[tuple[GuardedSocketModeHandler, list[Any]]]:
    assert stack.bot is not None
    handler = stack.bot.socket_mode_handler("xapp-1-A0TEST-0-sandbox")
    sent: list[dict[str, Any]] = []
    arrived = threading.Condition()

    def send_message(message: str) -> None:  # the websocket we do not have
        with arrived:
            sent.append(json.loads(message))
            arrived.notify_all()

    handler.client.send_message = send_message  # type: ignore[method-assign]
    try:
        yield handler, sent
    finally:
        handler.close()


def _envelope(stack: SandboxStack, envelope_id: str, text: str) -> str:
    em = stack.emulator
    who, where = em.ws.resolve_user("alice"), em.ws.resolve_channel(CHANNEL)
    fields = payloads.slash_command(
        em.ws, app_id=em.app_id, verification_token="sandbox-verification-token", user=who,
        channel=where, command="/rollback", text=text,
        response_url=em.issue_response_url(channel=where.id, user=who.id),
        trigger_id=em.issue_trigger_id(who.id))
    return json.dumps({"envelope_id": envelope_id, "type": "slash_commands",
                       "accepts_response_payload": True, "payload": fields},
                      ensure_ascii=False)  # Slack sends UTF-8 text frames


def test_oversized_envelopes_are_dropped_unparsed_and_small_ones_answered(
        stack: SandboxStack, socket_mode: tuple[GuardedSocketModeHandler, list[Any]],
        caplog: pytest.LogCaptureFixture) -> None:
    handler, sent = socket_mode
    client = handler.client
    caplog.set_level(logging.INFO)
    ascii_big = _envelope(stack, "big", "help " + "x" * MAX_BODY_BYTES)
    # Fewer characters than the limit, more bytes: the limit is on bytes, as over HTTP.
    wide = _envelope(stack, "wide", "help " + "é" * (MAX_BODY_BYTES // 2 + 1024))
    assert len(wide) < MAX_BODY_BYTES < len(wide.encode())

    for raw in (ascii_big, wide):
        client.enqueue_message(raw)  # what the connection does with each text frame
        assert client.message_queue.qsize() == 0  # never queued, so never parsed
    refusals = [r.getMessage() for r in caplog.records if REASON in r.getMessage()]
    assert len(refusals) == 2
    assert all("help" not in m and "alice" not in m for m in refusals)  # size, not content

    client.enqueue_message(_envelope(stack, "ok", "help"))
    stack.emulator.wait_for(lambda: sent, timeout=5)
    assert [m["envelope_id"] for m in sent] == ["ok"]
    assert "/rollback status" in json.dumps(sent[0]["payload"])
    # Nothing answered the dropped ones by any other road either.
    assert stack.emulator.responses() == []
    assert stack.emulator.calls("chat.postEphemeral") == []


def test_the_size_is_counted_in_utf8_bytes_without_encoding_long_texts() -> None:
    assert utf8_size("a" * 10, limit=10) == 10
    assert utf8_size("é" * 6, limit=10) == 12
    assert utf8_size("x" * 11, limit=10) == 11
    assert utf8_size("\udcff", limit=10) == 3  # a lone surrogate counts, never raises
