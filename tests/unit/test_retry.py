"""The retry decision table: bounded Retry-After, durable attempt counts, a budget that ends."""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any, cast

import pytest

from bot.domain.config import ExecutorSettings
from bot.execution.errors import CancelRequested, LeaseLost
from bot.execution.executor import WAIT_SLICE_SECONDS, Executor
from bot.execution.retry import (
    DEFAULT_MAX_RETRY_AFTER_SECONDS,
    GiveUp,
    Retry,
    bounded_delay,
    decide,
    max_retry_after,
)
from platforms.base import TransientPlatformError, parse_retry_after

CAP = DEFAULT_MAX_RETRY_AFTER_SECONDS


@dataclass(frozen=True)
class Capped:
    max_transient_retries: int = 5
    backoff_base_seconds: float = 1.0
    max_retry_after_seconds: float = 10.0


def _retry(**kw: object) -> Retry:
    decision = decide(**{"attempt": 1, "durable_attempts": 1, "retry_after": None,
                         "settings": ExecutorSettings(), **kw})  # type: ignore[arg-type]
    assert isinstance(decision, Retry), decision
    return decision


@pytest.mark.parametrize("hint", [
    3600.0, 99999999999.0, 1e12, 1e308, math.inf, math.nan, -1.0, -math.inf,
    10 ** 400,  # an int too big for a float: OverflowError if converted naively
    "soon", True,
])
def test_absurd_hints_wait_the_cap(hint: object) -> None:
    decision = _retry(retry_after=hint)
    assert (decision.delay, decision.capped) == (CAP, True)


def test_an_http_date_in_year_9999_waits_the_cap() -> None:
    hint = parse_retry_after("Fri, 31 Dec 9999 23:59:59 GMT")
    assert hint is not None and hint > 1e10
    assert (_retry(retry_after=hint).delay, _retry(retry_after=hint).capped) == (CAP, True)


@pytest.mark.parametrize(("hint", "delay"), [(0.1, 0.1), (1, 1.0), (59.5, 59.5), (CAP, CAP)])
def test_sane_hints_are_obeyed(hint: float, delay: float) -> None:
    decision = _retry(retry_after=hint)
    assert (decision.delay, decision.capped) == (delay, False)


@pytest.mark.parametrize(("attempts", "delay"), [(1, 1.0), (2, 2.0), (3, 4.0), (5, 16.0)])
def test_no_hint_backs_off_exponentially(attempts: int, delay: float) -> None:
    decision = _retry(attempt=attempts, durable_attempts=attempts, retry_after=None)
    assert (decision.delay, decision.capped) == (delay, False)


def test_zero_hint_backs_off_instead_of_spinning() -> None:
    assert _retry(retry_after=0).delay == 1.0


def test_backoff_is_capped_and_never_overflows() -> None:
    settings = Capped(max_transient_retries=10_000)
    delay, capped = bounded_delay(None, attempts=5_000, backoff_base=1.0, cap=10.0)
    assert (delay, capped) == (10.0, False)
    decision = decide(attempt=1, durable_attempts=5_000, retry_after=None, settings=settings)
    assert isinstance(decision, Retry) and decision.delay == 10.0


def test_the_cap_comes_from_settings_when_present() -> None:
    assert max_retry_after(Capped()) == 10.0
    assert max_retry_after(ExecutorSettings()) == CAP  # field not there yet: the default
    assert max_retry_after(Capped(max_retry_after_seconds=math.nan)) == CAP
    assert max_retry_after(Capped(max_retry_after_seconds=-5)) == CAP
    decision = decide(attempt=1, durable_attempts=1, retry_after=3600, settings=Capped())
    assert decision == Retry(10.0, 1, capped=True)


def test_budget_exhausted_gives_up_with_a_reason() -> None:
    settings = ExecutorSettings(max_transient_retries=2)
    assert isinstance(decide(attempt=2, durable_attempts=2, retry_after=None,
                             settings=settings), Retry)
    decision = decide(attempt=3, durable_attempts=3, retry_after=1e12, settings=settings)
    assert decision == GiveUp("gave up after 3 attempts (retry budget: 2 retries)", 3)


def test_durable_count_wins_over_a_restarted_local_counter() -> None:
    """A re-claimed rollback starts its local counter at 1; the step row remembers 6."""
    settings = ExecutorSettings(max_transient_retries=5)
    decision = decide(attempt=1, durable_attempts=6, retry_after=None, settings=settings)
    assert isinstance(decision, GiveUp) and "gave up after 6 attempts" in decision.reason
    # ...and the backoff continues from the durable count too
    assert _retry(attempt=1, durable_attempts=4).delay == 8.0


def test_zero_retries_means_the_first_failure_is_final() -> None:
    decision = decide(attempt=1, durable_attempts=1, retry_after=None,
                      settings=ExecutorSettings(max_transient_retries=0))
    assert decision == GiveUp("gave up after 1 attempt (retry budget: 0 retries)", 1)


# ------------------------------------------------ the executor's wait between attempts
# ``Executor._wait`` sleeps a retry's delay in slices of the injected ``sleep``, checking
# Cancel (the rollback row) and the lease before each slice. Only ``store.get`` is needed
# for that, so a one-method stand-in replaces PostgreSQL and nothing really sleeps.
class _Row:
    def __init__(self) -> None:
        self.cancel_requested_by: str | None = None


class _Store:
    def __init__(self) -> None:
        self.row = _Row()
        self.reads = 0

    def get(self, rollback_id: int) -> _Row:
        self.reads += 1
        return self.row


class _Sleep:
    """Records each slice; runs ``then(n)`` after the n-th one (a click, a lost lease)."""

    def __init__(self, then: Callable[[int], None] = lambda n: None) -> None:
        self.slices: list[float] = []
        self.then = then

    def __call__(self, seconds: float) -> None:
        self.slices.append(seconds)
        self.then(len(self.slices))


def _executor(store: _Store, sleep: _Sleep, settings: object = None) -> Executor:
    return Executor(catalog=cast(Any, None), store=cast(Any, store), chat=cast(Any, None),
                    settings=cast(Any, settings or ExecutorSettings()),
                    aftercare=lambda rb: None, sleep=sleep, owner="unit")


RB = cast(Any, SimpleNamespace(id=7))


def test_the_default_cap_is_a_minute() -> None:
    assert CAP == 60.0
    assert max_retry_after(ExecutorSettings()) == 60.0
    decision = decide(attempt=1, durable_attempts=1, retry_after=3600,
                      settings=ExecutorSettings())
    assert decision == Retry(60.0, 1, capped=True)


def test_a_capped_wait_sleeps_the_cap_in_short_slices() -> None:
    store, sleep = _Store(), _Sleep()
    delay = _retry(retry_after=1e12).delay
    _executor(store, sleep)._wait(RB, delay)
    assert math.isclose(sum(sleep.slices), CAP)
    assert max(sleep.slices) <= WAIT_SLICE_SECONDS
    assert len(sleep.slices) == math.ceil(CAP / WAIT_SLICE_SECONDS)
    assert store.reads == len(sleep.slices) + 1  # Cancel is checked before every slice


def test_a_short_wait_is_one_slice_of_its_own_length() -> None:
    sleep = _Sleep()
    _executor(_Store(), sleep)._wait(RB, 0.2)
    assert sleep.slices == [0.2]


def test_cancel_ends_a_long_wait_at_the_next_slice() -> None:
    store = _Store()

    def click(n: int) -> None:
        if n == 3:
            store.row.cancel_requested_by = "U_BOB"

    sleep = _Sleep(click)
    with pytest.raises(CancelRequested):
        _executor(store, sleep)._wait(RB, 3600.0)
    assert len(sleep.slices) == 3  # not 7,200 slices: stopped within one slice of the click


def test_a_wait_that_is_not_cancellable_ignores_cancel() -> None:
    """Compensation is what a Cancel asks for: its waits run to their end."""
    store, sleep = _Store(), _Sleep()
    store.row.cancel_requested_by = "U_BOB"
    _executor(store, sleep)._wait(RB, 2.0, cancellable=False)
    assert math.isclose(sum(sleep.slices), 2.0)
    assert store.reads == 0


@pytest.mark.parametrize("cancellable", [True, False])
def test_a_lost_lease_ends_any_wait(cancellable: bool) -> None:
    executor = _executor(_Store(), _Sleep())
    lost = threading.Event()
    executor._lost[RB.id] = lost
    executor.sleep = _Sleep(lambda n: lost.set() if n == 2 else None)
    with pytest.raises(LeaseLost):
        executor._wait(RB, 3600.0, cancellable=cancellable)
    assert len(executor.sleep.slices) == 2  # type: ignore[attr-defined]


def test_waits_outside_the_step_budget_are_capped_too() -> None:
    """The pre-check and compensation retry outside ``decide``: same cap, same backoff."""
    executor = _executor(_Store(), _Sleep(), Capped())
    assert executor._bounded(TransientPlatformError("429", retry_after=1e12), 1) == 10.0
    assert executor._bounded(TransientPlatformError("429", retry_after=3.0), 1) == 3.0
    assert executor._bounded(TransientPlatformError("503"), 3) == 4.0  # base 1 s, 3rd try
