"""A platform that answers 429 with an absurd Retry-After: the wait is capped, Cancel ends it
at once, the retry budget is counted durably across a re-claim and always ends in failure."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from bot.execution.retry import DEFAULT_MAX_RETRY_AFTER_SECONDS as CAP
from handlers import ids
from platforms.base import TransientPlatformError
from tests.e2e.conftest import Harness
from tests.e2e.conftest import make_harness as make_harness  # noqa: F401  (fixture)


def _budget(retries: int) -> Callable[[dict], None]:
    return lambda d: d["executor"].update(max_transient_retries=retries)


class RecordingSleep:
    """Stands in for the executor's clock: records every slice, waits for none of them."""

    def __init__(self, on_first: Callable[[], None] | None = None) -> None:
        self.slices: list[float] = []
        self._on_first = on_first
        self._lock = threading.Lock()

    def __call__(self, seconds: float) -> None:
        with self._lock:
            self.slices.append(seconds)
            first, self._on_first = self._on_first, None
        if first is not None:
            first()


def test_cancel_during_a_one_hour_retry_after_stops_within_a_second(
        make_harness: Callable[..., Harness]) -> None:
    h = make_harness()
    h.platform.inject("rollback_to", TransientPlatformError("429 throttled", retry_after=3600),
                      times=50)
    rid, msg = h.request_and_approve_p0()
    before = h.bot.store.get(rid)
    waiting = h.emulator.wait_for(lambda: next(
        (t for t in h.thread_texts(msg) if "retrying in" in t), None), timeout=20)
    assert f"retrying in {CAP:.0f}s" in waiting and "capped" in waiting  # not 3600 s

    clicked = time.monotonic()
    h.click(msg, ids.CANCEL, "bob")
    rb = h.wait_state(rid, "cancelled", timeout=10)
    assert rb, h.bot.store.get(rid).state
    assert time.monotonic() - clicked < 2.5  # the wait ends at once, not after 60 s or 1 h

    assert h.platform.calls()["rollback_to"] == 1
    assert h.platform.mutations()["rollback_to"] == 0
    assert before.current_revision is not None
    assert h.platform.current_revision(rb.target).id == before.current_revision.id
    steps = {s.kind: s.status for s in h.bot.store.steps(rid)}
    assert steps == {"app_rollback": "pending", "wait_rollout": "pending"}
    h.emulator.wait_for(lambda: any("cancelled by" in t for t in h.thread_texts(msg)))


def test_a_retry_after_of_1e12_is_capped_and_the_budget_ends_in_failure(
        make_harness: Callable[..., Harness]) -> None:
    h = make_harness(config_overrides=_budget(2))
    sleep = RecordingSleep()
    h.bot.executor.sleep = sleep
    h.platform.inject("rollback_to", TransientPlatformError("429 throttled", retry_after=1e12),
                      times=50)
    rid, msg = h.request_and_approve_p0()
    rb = h.wait_state(rid, "failed", timeout=30)
    assert rb.last_error == ("app_rollback: 429 throttled (gave up after 3 attempts "
                             "(retry budget: 2 retries))")
    h.emulator.wait_idle(quiet=0.5)  # a re-claim would post "Resuming" in the thread
    assert h.platform.calls()["rollback_to"] == 3  # the budget: 1 attempt + 2 retries
    assert h.platform.mutations()["rollback_to"] == 0
    assert max(sleep.slices) <= 0.5 and sum(sleep.slices) == 2 * CAP  # two capped waits
    texts = h.thread_texts(msg)
    assert sum("retrying in" in t for t in texts) == 2
    assert not any("Resuming" in t for t in texts)
    step = next(s for s in h.bot.store.steps(rid) if s.kind == "app_rollback")
    assert (step.status, step.attempts) == ("failed", 3)


def test_a_lost_lease_mid_wait_does_not_restart_the_retry_budget(
        make_harness: Callable[..., Harness]) -> None:
    """The lease is taken away during the first wait: the executor stops, claims the
    rollback again and resumes, and the step row's attempt count carries the budget on."""
    h = make_harness(config_overrides=_budget(2))
    store = h.bot.store
    rid_box: list[int] = []

    def steal_lease() -> None:
        with store.pool.connection() as conn:
            conn.execute("UPDATE rollbacks SET lease_owner = 'another-replica',"
                         " lease_expires_at = now() - interval '1 second' WHERE id = %s",
                         (rid_box[0],))

    h.bot.executor.sleep = RecordingSleep(on_first=steal_lease)
    h.platform.inject("rollback_to", TransientPlatformError("429 throttled", retry_after=1e12),
                      times=50)
    h.request("hotel-voice-bot --severity P0 --scope app", user="bob")
    msg = h.rollback_message()
    rid_box.append(store.history("hotel-voice-bot")[0].id)
    h.click(msg, ids.APPROVE, "bob")

    rb = h.wait_state(rid_box[0], "failed", timeout=30)
    assert "gave up after 3 attempts" in (rb.last_error or "")
    h.emulator.wait_for(lambda: any("Resuming" in t for t in h.thread_texts(msg)))  # re-claimed
    h.emulator.wait_idle(quiet=0.5)  # the failure notice and re-renders have landed
    assert h.platform.calls()["rollback_to"] == 3  # not 3 more after the re-claim
    step = next(s for s in store.steps(rid_box[0]) if s.kind == "app_rollback")
    assert (step.status, step.attempts) == ("failed", 3)
