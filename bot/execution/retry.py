"""Retry policy for temporary errors: which errors are worth another attempt, and one pure
decision after each failed attempt.

``TEMPORARY`` errors (a platform's ``TransientPlatformError``, ``WriteConflict`` included, or
a step's ``TemporaryStepError``) are retried by ``decide``; ``PERMANENT`` ones (a platform's
``PermanentPlatformError`` or a step's ``PermanentStepError``) stop the step at once.

Given the attempt number in this run, the step's durable attempt count (it survives a
re-claim by another executor), the error's Retry-After hint and the executor settings,
say *retry after D seconds* or *give up, because ...*. A Retry-After hint is obeyed only
up to a cap: a huge, infinite, NaN, negative or unreadable hint waits the cap, so no
header can park a rollback for an hour or crash the sleep with an ``OverflowError``; and
the budget is counted durably, so ``max_transient_retries`` always ends in a failure.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final, Protocol

from bot.execution.errors import PermanentStepError, TemporaryStepError
from platforms.base import PermanentPlatformError, TransientPlatformError

__all__ = [
    "DEFAULT_MAX_RETRY_AFTER_SECONDS",
    "PERMANENT",
    "TEMPORARY",
    "Decision",
    "GiveUp",
    "Retry",
    "RetrySettings",
    "bounded_delay",
    "decide",
    "max_retry_after",
]

DEFAULT_MAX_RETRY_AFTER_SECONDS = 60.0
_MAX_BACKOFF_EXPONENT = 30  # 2**30 times any sane base is past every cap already

# Worth another attempt (each carries ``retry_after``, the hint ``decide`` bounds)...
TEMPORARY: Final = (TransientPlatformError, TemporaryStepError)
# ...and not: the step fails, the executor compensates and hands over.
PERMANENT: Final = (PermanentPlatformError, PermanentStepError)


class RetrySettings(Protocol):
    @property
    def max_transient_retries(self) -> int: ...

    @property
    def backoff_base_seconds(self) -> float: ...


@dataclass(frozen=True)
class Retry:
    """Wait ``delay`` seconds, then try again; ``capped`` when the platform asked for more
    (or for something unreadable) and the cap was used instead."""

    delay: float
    attempts: int
    capped: bool = False


@dataclass(frozen=True)
class GiveUp:
    """Stop retrying; ``reason`` is the sentence for the step error."""

    reason: str
    attempts: int


Decision = Retry | GiveUp


def _finite_positive(value: object) -> float | None:
    """``value`` as a finite float > 0, or None (wrong type, NaN, inf, <= 0, too big)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        number = float(value)
    except OverflowError:  # an int with hundreds of digits
        return None
    if not math.isfinite(number) or number <= 0:
        return None
    return number


def max_retry_after(settings: object) -> float:
    """The longest wait a Retry-After hint may ask for (``max_retry_after_seconds``)."""
    configured = _finite_positive(getattr(settings, "max_retry_after_seconds",
                                          DEFAULT_MAX_RETRY_AFTER_SECONDS))
    return configured if configured is not None else DEFAULT_MAX_RETRY_AFTER_SECONDS


def bounded_delay(retry_after: object, *, attempts: int, backoff_base: float,
                  cap: float) -> tuple[float, bool]:
    """Seconds to wait and whether the cap replaced the platform's hint.

    No hint (None) or ``0``: exponential backoff from ``backoff_base`` (also capped).
    A hint in (0, cap]: the hint. Anything else (above the cap, inf, NaN, negative, not a
    number): the cap, because a platform asking for nonsense is still asking us to wait.
    """
    if retry_after is None or (isinstance(retry_after, int | float)
                               and not isinstance(retry_after, bool) and retry_after == 0):
        base = _finite_positive(backoff_base) or 1.0
        exponent = min(max(attempts - 1, 0), _MAX_BACKOFF_EXPONENT)
        return min(base * 2 ** exponent, cap), False
    hint = _finite_positive(retry_after)
    if hint is None or hint > cap:
        return cap, True
    return hint, False


def decide(*, attempt: int, durable_attempts: int, retry_after: object,
           settings: RetrySettings) -> Decision:
    """After attempt number ``attempt`` (this run) of a step whose row says it was tried
    ``durable_attempts`` times in all, failed with a ``TEMPORARY`` error: retry or give up.

    The larger count wins, so a re-claimed rollback continues the budget instead of
    starting over. ``max_transient_retries`` retries means at most that many plus one
    attempts.
    """
    attempts = max(attempt, durable_attempts, 1)
    budget = max(0, settings.max_transient_retries)
    if attempts > budget:
        return GiveUp(f"gave up after {attempts} attempt{'' if attempts == 1 else 's'} "
                      f"(retry budget: {budget} {'retry' if budget == 1 else 'retries'})",
                      attempts)
    delay, capped = bounded_delay(retry_after, attempts=attempts,
                                  backoff_base=settings.backoff_base_seconds,
                                  cap=max_retry_after(settings))
    return Retry(delay, attempts, capped)
