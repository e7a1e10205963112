"""Verification check primitives: ``CheckResult``, ``Check``, the suite runner and text output.

A check never raises: whatever goes wrong becomes a ``fail`` with a short message, so one
broken probe cannot hide the others' results from the people watching the rollback.
"""

from __future__ import annotations

import logging
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx

log = logging.getLogger(__name__)

Status = Literal["pass", "fail", "skip"]
Outcome = tuple[Status, str, dict[str, Any]]
ICONS: dict[str, str] = {"pass": "✅", "fail": "❌", "skip": "⏭"}
_MAX_MESSAGE = 300


@dataclass(frozen=True)
class CheckResult:
    name: str
    status: Status
    summary: str
    details: dict[str, Any] = field(default_factory=dict)
    duration_ms: float = 0.0

    @property
    def ok(self) -> bool:
        """Skipped checks do not fail a verification."""
        return self.status != "fail"

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "status": self.status,
            "summary": self.summary,
            "details": self.details,
            "duration_ms": round(self.duration_ms, 1),
        }


@dataclass(frozen=True)
class Check:
    """A named, time-boxed unit for ``run_suite``; calling it runs the check."""

    name: str
    timeout: float
    run: Callable[[], CheckResult]

    def __call__(self) -> CheckResult:
        return self.run()


def timed_out(timeout: float) -> str:
    return f"timed out after {timeout:g}s"


def short_error(exc: BaseException, *, scrub: Callable[[str], str] | None = None) -> str:
    """First line of the exception, bounded, optionally scrubbed of secrets."""
    text = (str(exc).strip().splitlines() or [""])[0]
    text = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    if scrub is not None:
        text = scrub(text)
    return text if len(text) <= _MAX_MESSAGE else text[: _MAX_MESSAGE - 1] + "…"


def guarded(
    name: str,
    timeout: float,
    body: Callable[[], Outcome],
    *,
    scrub: Callable[[str], str] | None = None,
) -> CheckResult:
    """Run ``body`` and turn any exception into a ``fail`` result; time the whole thing."""
    started = time.perf_counter()
    try:
        status, summary, details = body()
    except (httpx.TimeoutException, TimeoutError, subprocess.TimeoutExpired):
        status, summary, details = "fail", timed_out(timeout), {}
    except Exception as exc:  # a check must never take the suite down with it
        log.warning("check %s raised %s", name, type(exc).__name__)
        status, summary, details = "fail", short_error(exc, scrub=scrub), {}
    return CheckResult(name, status, summary, details, (time.perf_counter() - started) * 1000)


# ------------------------------------------------------------------------------ runner
def _name_of(check: Callable[[], CheckResult], index: int) -> str:
    name = getattr(check, "name", None) or getattr(check, "__name__", None)
    if not isinstance(name, str) or name == "<lambda>":
        return f"check {index + 1}"
    return name


def _timeout_of(check: Callable[[], CheckResult], default: float) -> float:
    timeout = getattr(check, "timeout", None)
    return float(timeout) if isinstance(timeout, int | float) and timeout > 0 else default


def _call_safely(check: Callable[[], CheckResult], name: str) -> CheckResult:
    started = time.perf_counter()
    try:
        result = check()
    except Exception as exc:  # plain callables may raise; Check units never do
        elapsed = (time.perf_counter() - started) * 1000
        return CheckResult(name, "fail", short_error(exc), {}, elapsed)
    if not isinstance(result, CheckResult):
        return CheckResult(name, "fail", f"check returned {type(result).__name__}", {})
    return result


def run_suite(
    checks: Sequence[Callable[[], CheckResult]],
    *,
    overall_timeout: float = 120.0,
    max_workers: int = 8,
) -> list[CheckResult]:
    """Run checks concurrently; results come back in input order.

    Each check is bounded by its own ``timeout`` (``Check.timeout``; callables without one
    get ``overall_timeout``) counted from when it starts, and the whole suite by
    ``overall_timeout``. A late check is reported as failed and abandoned: Python cannot
    kill a thread, so it finishes in the background, bounded by its own I/O timeouts.
    """
    if not checks:
        return []
    names = [_name_of(c, i) for i, c in enumerate(checks)]
    timeouts = [min(_timeout_of(c, overall_timeout), overall_timeout) for c in checks]
    started: dict[int, float] = {}
    lock = threading.Lock()

    def runner(i: int) -> CheckResult:
        with lock:
            started[i] = time.monotonic()
        return _call_safely(checks[i], names[i])

    results: list[CheckResult | None] = [None] * len(checks)
    pool = ThreadPoolExecutor(
        max_workers=max(1, min(max_workers, len(checks))), thread_name_prefix="check"
    )
    begin = time.monotonic()
    suite_deadline = begin + overall_timeout
    futures: dict[Future[CheckResult], int] = {
        pool.submit(runner, i): i for i in range(len(checks))
    }
    pending = set(futures)
    try:
        while pending:
            now = time.monotonic()
            for fut in [f for f in pending if f.done()]:
                pending.discard(fut)
                results[futures[fut]] = fut.result()
            with lock:
                starts = dict(started)
            next_wake = suite_deadline
            for fut in list(pending):
                i = futures[fut]
                begun = starts.get(i)
                late: CheckResult | None = None
                if fut.done():
                    next_wake = now  # finished meanwhile: its real result wins, collect it
                    continue
                if begun is not None and now >= begun + timeouts[i]:
                    late = CheckResult(
                        names[i], "fail", timed_out(timeouts[i]), {}, (now - begun) * 1000
                    )
                elif now >= suite_deadline:
                    why = timed_out(overall_timeout) + " (suite deadline"
                    why += ", never started: all workers busy)" if begun is None else ")"
                    late = CheckResult(names[i], "fail", why, {}, (now - begin) * 1000)
                if late is None:
                    # Not started yet: it cannot end before now + its timeout, so waking
                    # then is never late and avoids polling.
                    next_wake = min(next_wake, (begun if begun is not None else now) + timeouts[i])
                    continue
                results[i] = late
                pending.discard(fut)
                fut.cancel()
                log.warning("check %s: %s", names[i], late.summary)
            if pending:
                wait(pending, timeout=max(0.0, next_wake - now), return_when=FIRST_COMPLETED)
    finally:
        # Do not wait for abandoned checks; queued ones that never started are dropped.
        pool.shutdown(wait=False, cancel_futures=True)
    return [r for r in results if r is not None]


def summarize(results: Sequence[CheckResult]) -> str:
    counts = {s: sum(1 for r in results if r.status == s) for s in ("pass", "fail", "skip")}
    parts = [f"{counts['pass']} passed", f"{counts['fail']} failed"]
    if counts["skip"]:
        parts.append(f"{counts['skip']} skipped")
    return ", ".join(parts)


def render_text(results: Sequence[CheckResult]) -> str:
    """One line per check, e.g. ``✅ health: HTTP 200; latency … (1234 ms)``."""
    lines = []
    for r in results:
        summary = " ".join(r.summary.split())  # keep it one line whatever the check said
        lines.append(f"{ICONS.get(r.status, '?')} {r.name}: {summary} ({r.duration_ms:.0f} ms)")
    return "\n".join(lines)
