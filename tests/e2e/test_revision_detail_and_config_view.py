"""Issue 13 through the wire: ``/rollback history <service> --revision N`` answers with the
platform's detail (ephemeral, masked, changes nothing), and the request message shows the
configuration that changes with the pinned revision, or why it cannot."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from platforms.base import TransientPlatformError
from tests.e2e.conftest import Harness
from tests.secret_scan import register_secret
from tests.support.messages import CHANNEL


@pytest.fixture(autouse=True)
def _fake_keys_are_secrets() -> None:
    """The fake platform's credential-like literals (sandbox/fake_platform.py): the scan
    checks that no Slack call or stored row of these tests carries them."""
    for n in (1, 2, 3):
        register_secret(f"fake-key-{n}", "the fake platform's API_KEY literal")


def test_revision_detail_is_ephemeral_masked_and_changes_nothing(harness: Harness) -> None:
    h = harness
    reply = h.request("history hotel-voice-bot --revision 2")
    assert reply.status == 200
    text = h.wait_ephemeral("alice", "Revision 2 of hotel-voice-bot")
    assert "```" in text and "registry.example/app:v1.2.0" in text
    assert "LOG_LEVEL: info" in text and "deploy v1.2.0" in text
    assert "API_KEY: &lt;hidden, sha256:" in text and "fake-key-2" not in text
    assert "&lt;secret ref vault:secret/app/db#v2&gt;" in text
    assert h.platform.mutations() == {}
    assert h.bot.store.history("hotel-voice-bot", limit=1) == []  # no rollback was made


def test_a_bad_revision_or_service_gets_a_clear_answer(harness: Harness) -> None:
    h = harness
    h.request("history hotel-voice-bot --revision 99")
    missing = h.wait_ephemeral("alice", "Revision 99")
    assert "not in the fake history (known revisions: 3, 2, 1)" in missing
    unknown = h.request("history nope --revision 2").json()
    assert "Unknown service `nope`" in str(unknown)
    bad = h.request("history hotel-voice-bot --revision two").json()
    assert "a revision is a positive number" in str(bad)
    assert h.platform.mutations() == {}


def test_the_request_shows_the_configuration_that_changes(harness: Harness) -> None:
    h = harness
    h.request('hotel-voice-bot --severity P1 --reason "5xx"')
    text = str(h.rollback_message()["blocks"])
    assert "Configuration that differs" in text
    assert "env LOG_LEVEL: `debug` → `info`" in text
    assert "env RELEASE: `v1.3.0` → `v1.2.0`" in text
    assert "secret ref DB_PASSWORD: `vault:secret/app/db#v3` → `vault:secret/app/db#v2`" in text
    assert "env API_KEY: `&lt;hidden, sha256:" in text and "fake-key" not in text


def test_a_failing_configuration_view_never_blocks_the_request(harness: Harness) -> None:
    h = harness
    h.platform.inject("config_differences", TransientPlatformError("platform API timed out"))
    h.request('hotel-voice-bot --severity P1 --reason "5xx"')
    msg = h.rollback_message()
    text = str(msg["blocks"])
    assert "Configuration view unavailable: TransientPlatformError: platform API timed out" \
        in text
    assert "Approve" in text  # the request is up for a decision as usual


def test_a_hanging_configuration_view_posts_the_plan_within_its_deadline(
        make_harness: Callable[..., Harness]) -> None:
    def bound(data: dict[str, Any]) -> None:
        data["request"] = {"config_view_timeout_seconds": 0.5}

    h = make_harness(config_overrides=bound)
    answered = threading.Event()  # the platform's API answers (with its own timeout) once set
    h.platform.inject("config_differences", TransientPlatformError("read timed out"),
                      hold=answered)
    safety = threading.Timer(20, answered.set)  # never leave the bot's thread hanging
    safety.start()
    try:
        started = time.monotonic()
        h.request('hotel-voice-bot --severity P1 --reason "5xx"')
        posted = h.emulator.wait_for(
            lambda: next((m for m in h.emulator.messages(CHANNEL)
                          if "Configuration view unavailable" in str(m.get("blocks"))), None),
            timeout=5, description="the plan with its configuration view given up")
        elapsed = time.monotonic() - started
        assert not answered.is_set()  # posted while the platform still hangs
    finally:
        answered.set()
        safety.cancel()
    assert "Configuration view unavailable: timed out after 0.5s" in str(posted["blocks"])
    assert elapsed < 3, elapsed
    assert "Approve" in str(h.rollback_message()["blocks"])  # and up for a decision
