"""A parked wait's journal, seen from Slack (issue 16, part C).

* The looks at a parked rollout compare the status they read with the journaled one in the
  same (scrubbed) form, so a status that quotes something credential-shaped (here the
  platform's transient error quoting a URL with a password) posts one thread line, not one
  per look.
* Cancel while a rollback is parked ends its wait step (``skipped``, with why): the message
  of a cancelled rollback shows no step still waiting.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from bot.observability.scrub import scrub
from handlers import ids
from platforms.base import TransientPlatformError
from tests.e2e.conftest import Harness
from tests.secret_scan import register_secret
from tests.support import messages
from tests.support.waiting import wait_until

HELD = 3600.0  # a rollout that does not finish while the test looks
PASSWORD = "s3cr3t-pw-7f2a"
# What a look reads: an API error that quotes the URL it called, credentials and all.
LOOK_ERROR = f"GET https://deployer:{PASSWORD}@deploy.example/rollout/svc-01: 503"
HOURGLASS = ":hourglass_flowing_sand:"


def _service(fake_name: str) -> Callable[[dict[str, Any]], None]:
    def override(data: dict[str, Any]) -> None:
        svc = copy.deepcopy(data["services"]["hotel-voice-bot"])
        svc["fake"] = {"scope": "production", "name": fake_name}
        svc.pop("incident_channel_pattern", None)
        data["services"]["svc-01"] = svc
    return override


def _request_and_approve(h: Harness) -> tuple[int, dict[str, Any]]:
    h.request("svc-01 --severity P0 --scope app --reason drill", user="bob")
    rb = h.emulator.wait_for(lambda: h.bot.store.active_for_service("svc-01"), timeout=15,
                             description="the request")
    msg = messages.request_message(h.emulator, rb.id)
    h.click(msg, ids.APPROVE, "bob")
    return rb.id, msg


def _wait_step(h: Harness, rid: int) -> Any:
    return next(s for s in h.bot.store.steps(rid) if s.kind == "wait_rollout")


def test_a_scrubbed_rollout_status_posts_one_line_not_one_per_look(
        make_harness: Callable[..., Harness]) -> None:
    register_secret(PASSWORD)  # the scan after the test: it never reached Slack
    h = make_harness(config_overrides=_service("svc-01"), rollout_seconds=HELD)
    # Every look at the rollout reads the same transient error (a look that saw nothing).
    h.platform.inject("rollout_status", TransientPlatformError(LOOK_ERROR), times=10_000)
    rid, msg = _request_and_approve(h)
    wait_until(lambda: _wait_step(h, rid).status == "waiting", 20, 0.05, "the rollout parked")
    looks = h.platform.calls()["rollout_status"]
    wait_until(lambda: h.platform.calls()["rollout_status"] >= looks + 3, 20, 0.05,
               "three more looks")
    assert h.bot.store.get(rid).state.value == "executing"
    h.emulator.wait_for(lambda: any("deploy.example" in t for t in h.thread_texts(msg)),
                        10, description="the status line")
    h.emulator.wait_idle()
    lines = [t for t in h.thread_texts(msg) if "deploy.example" in t]
    assert len(lines) == 1, lines  # one per look before: every look read as new
    assert PASSWORD not in lines[0] and "[REDACTED]" in lines[0]
    assert _wait_step(h, rid).result["last_status"] == scrub(f"transient error: {LOOK_ERROR}")


def test_cancel_while_parked_ends_the_wait_step(make_harness: Callable[..., Harness]) -> None:
    h = make_harness(config_overrides=_service("svc-01"), rollout_seconds=HELD)
    rid, msg = _request_and_approve(h)
    wait_until(lambda: _wait_step(h, rid).status == "waiting", 20, 0.05, "the rollout parked")
    assert HOURGLASS in str(h.message_now(msg["ts"]).get("blocks"))  # the parked wait shown
    h.click(msg, ids.CANCEL, "bob")
    h.wait_state(rid, "cancelled", timeout=20)
    step = _wait_step(h, rid)
    assert step.status == "skipped"
    assert "cancelled while waiting" in str(step.result.get("skipped"))
    assert step.finished_at is not None
    # The message of the cancelled rollback shows the wait ended, no step still waiting.
    h.emulator.wait_for(
        lambda: (blocks := str(h.message_now(msg["ts"]).get("blocks")))
        and "Cancelled" in blocks and HOURGLASS not in blocks,
        10, description="the cancelled message without a waiting step")
