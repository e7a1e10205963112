"""A refused request is refused in the ack: the checks that need no platform, database or
Slack call (the service, the channel rule, the platform, the flags) run before the ack text
is chosen, so the person never reads ":hourglass: Preparing the rollback plan…" beside a
refusal. Through the Slack emulator, over signed HTTP.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.e2e.conftest import Harness
from tests.support.waiting import wait_until

PREPARING = "Preparing the rollback plan"


def _settled(h: Harness) -> None:
    """Whatever the command handed to the after-ack pool has finished (it reserves its
    slot before the ack, so a hand-off is counted by the time the reply is back)."""
    wait_until(lambda: h.bot.work_pool.pending == 0, 10,
               message="the after-ack pool to finish")


@pytest.mark.parametrize(("text", "channel", "refusal"), [
    ("hotel-voice-bot --severity P1", "general",
     "#general is not one of them."),
    ("no-such-service --severity P1", None, "Unknown service `no-such-service`."),
    ("hotel-voice-bot --platform ecs --severity P1", None,
     "Platform `ecs` is not configured for this service"),
    ("hotel-voice-bot --severity P1", "dm",
     "direct message is not one of them"),
    ("hotel-voice-bot --severity P9", None, "P9"),  # a bad flag: refused by the parser
], ids=["channel-rule", "unknown-service", "platform-not-configured", "direct-message",
        "bad-flag"])
def test_a_refused_request_gets_only_the_refusal(harness: Harness, text: str,
                                                 channel: str | None, refusal: str) -> None:
    h = harness
    where: dict[str, Any] = {}
    if channel == "general":
        h.emulator.add_channel("general", members=["alice", "bob"])
        where = {"channel": "general"}
    elif channel == "dm":
        where = {"channel": h.emulator.open_dm("alice")}
    lookups = len(h.emulator.calls("conversations.info"))

    reply = h.request(text, **where)
    assert reply.status == 200
    ack = str(reply.message())
    assert refusal in ack and PREPARING not in ack, ack
    _settled(h)
    texts = h.ephemeral_texts("alice")
    assert len(texts) == 1 and refusal in texts[0], texts  # the ack, and nothing after it
    assert not any("correlation id" in t for t in texts)
    assert len(h.emulator.calls("conversations.info")) == lookups  # no Slack call to refuse
    assert h.bot.store.history("hotel-voice-bot") == []
    assert h.platform.mutations() == {}


def test_an_allowed_request_is_acked_as_being_prepared(harness: Harness) -> None:
    """The other side: a request the cheap checks let through is acked "Preparing…" and
    then posted, so the refusals above come from the checks, not from a silent ack."""
    h = harness
    reply = h.request('hotel-voice-bot --severity P1 --reason "5xx after v1.3.0"')
    assert PREPARING in str(reply.message())
    assert h.rollback_message()["text"].startswith("RB-")
