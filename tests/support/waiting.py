"""Polling a condition with a deadline: the one way tests and benchmarks wait for something.

Waiting is never a fixed sleep: a sleep long enough for a loaded CI machine is wasted
time everywhere else, and one short enough to be cheap fails under load. Poll what you
are waiting for instead:

* ``wait_until`` returns the predicate's first truthy value, or fails with a
  ``WaitTimeout`` (an ``AssertionError``, so pytest reports a failure, not an error)
  naming what was awaited, plus ``diagnostics()`` when given (log tails, states).
* ``reached`` answers yes or no instead of failing, for callers that assert themselves.

The Slack emulator has its own ``wait_for``, woken by every change in Slack; use it for
conditions on Slack state. Use these for everything else (the database, a platform, a
process, a pool), which the emulator's wake-ups would see only late, at its timeout.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

__all__ = ["WaitTimeout", "reached", "wait_until"]


class WaitTimeout(AssertionError):
    """A condition was not met within its deadline."""


def wait_until(
    predicate: Callable[[], T | None], timeout: float = 10.0, interval: float = 0.05,
    message: str = "a condition", *, diagnostics: Callable[[], str] | None = None,
) -> T:
    """Poll ``predicate`` every ``interval`` seconds until it returns something truthy and
    return that; after ``timeout`` seconds raise ``WaitTimeout`` saying it waited for
    ``message``. The predicate runs at least once, and once more at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            extra = diagnostics() if diagnostics is not None else ""
            raise WaitTimeout(f"timed out after {timeout:g}s waiting for {message}"
                              + (f"\n{extra}" if extra else ""))
        time.sleep(interval)


def reached(predicate: Callable[[], object], timeout: float = 10.0,
            interval: float = 0.05) -> bool:
    """Whether ``predicate`` became truthy within ``timeout`` seconds (polled like
    ``wait_until``); never raises on the deadline."""
    try:
        wait_until(predicate, timeout, interval)
    except WaitTimeout:
        return False
    return True
