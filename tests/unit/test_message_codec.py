"""A thread line stored in the outbox reads back as the same message (bot.domain.message_codec)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from bot.domain import messages as m
from bot.domain.message_codec import decode_message, encode
from bot.domain.words import Mention, RollbackLink

EXECUTOR_LINES: list[m.Message] = [
    m.ExecutionStarted("RB-7", 3),
    m.ExecutionResumed("RB-7", "host:12:abc"),
    m.MarkedKnownBad("v1.3.0 (rs-3)", "hotel-voice-bot"),
    m.StepNote("2/4 replicas ready"),
    m.StepDone(1, 3, "Roll back to rs-2", ""),
    m.StepRetrying(2, 3, "Scale up", "429 from the API", 1.5, True, 2),
    m.DidNotStart("RB-7", "the running revision changed"),
    m.ExecutionFailed("RB-7", 2, "Scale down", "boom",
                      m.Compensated("step 2 failed", "fake/production/app", 4)),
    m.CancelledBeforeStep("RB-7", (Mention("U1"),), 2, "Scale down", None),
    m.HandedOver("RB-7", ("RB-7 stopped: ", Mention("U2"), " see ",
                          RollbackLink("RB-6", "C1", "1.2")), 4, "kubectl scale ...", True,
                 "the database may have changed", m.InterruptedRestore("/b/x.dump", True)),
    m.Interrupted("RB-7", ("died",), None),
]


@pytest.mark.parametrize("message", EXECUTOR_LINES, ids=lambda msg: type(msg).__name__)
def test_every_executor_line_round_trips_through_json(message: m.Message) -> None:
    stored = json.loads(json.dumps(encode(message)))  # what PostgreSQL's jsonb gives back
    assert decode_message(stored) == message


def test_datetimes_keep_their_zone() -> None:
    at = datetime(2026, 11, 30, 3, 0, tzinfo=UTC)
    message = m.VerificationRetried("U1")
    assert decode_message(json.loads(json.dumps(encode(message)))) == message
    assert json.loads(json.dumps(encode(at))) == {"$dt": at.isoformat()}


def test_a_row_naming_another_class_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown message class"):
        decode_message({"$": "Popen", "args": ["rm"]})
    with pytest.raises(ValueError, match="not a message"):
        decode_message({"$": "Mention", "user": "U1"})
