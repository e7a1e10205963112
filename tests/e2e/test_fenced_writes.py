"""A retried write decides again on a fresh read: a newer deploy that landed while the bot
waited to retry is never overwritten. (Per-platform fences: tests/adversarial/test_ghost_*.)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from handlers import ids
from platforms.base import Target, TargetChanged, TransientPlatformError
from sandbox.fake_platform import FakePlatform
from tests.e2e.conftest import Harness
from tests.e2e.conftest import make_harness as make_harness  # noqa: F401  (fixture)

SERVICE = "hotel-voice-bot"
TARGET = Target("fake", "production", SERVICE)


def _fast_retries(data: dict[str, Any]) -> None:
    data["executor"].update(backoff_base_seconds=0.2, max_transient_retries=5)


def test_a_hotfix_landing_during_a_retry_wait_survives(
        make_harness: Callable[..., Harness]) -> None:
    h = make_harness(config_overrides=_fast_retries)
    h.platform.inject("rollback_to", TransientPlatformError("504 gateway timeout"), times=1)
    h.request(f"{SERVICE} --severity P0 --scope app", user="bob")
    msg = h.rollback_message()
    rid = h.bot.store.history(SERVICE)[0].id
    h.click(msg, ids.APPROVE, "bob")
    h.emulator.wait_for(lambda: any("retrying in" in t for t in h.thread_texts(msg)),
                        timeout=15)
    hotfix = h.platform.deploy(TARGET, "registry.example/app:v1.3.1", change_cause="hotfix")

    rb = h.wait_state(rid, "failed")
    assert "not rev 3" in (rb.last_error or "") and "nothing was changed" in rb.last_error
    assert h.platform.mutations()["rollback_to"] == 0
    assert h.platform.current_revision(TARGET).id == hotfix.id  # the newer deploy survives


def test_the_fence_refuses_anything_but_the_expected_or_pinned_revision() -> None:
    platform = FakePlatform()
    history = platform.history(TARGET)
    running = next(r for r in history if r.current)
    target = next(r for r in history if not r.current)
    other = platform.deploy(TARGET, "registry.example/app:v9", change_cause="someone else")

    with pytest.raises(TargetChanged, match="nothing was changed"):
        platform.rollback_to(TARGET, target, expected=running)
    assert platform.current_revision(TARGET).id == other.id

    # Idempotent when the pinned revision already runs; unfenced when no plan says otherwise.
    assert platform.rollback_to(TARGET, target, expected=None).changed
    assert not platform.rollback_to(TARGET, target, expected=running).changed
