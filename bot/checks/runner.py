"""Verification check primitives: ``CheckResult``, ``Check``, the suite runner and text output.

A check never raises: whatever goes wrong becomes a ``fail`` with a short message, so one
broken probe cannot hide the others' results from the people watching the rollback.
"""

from __future__ import annotations

import logging
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
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
    """A named, time-boxed unit for ``run_suite``; calling it runs the check.

    ``name`` wins over the name the check function put in its result, so the suite's
    report and its timeout messages always use the same label.
    """

    name: str
    timeout: float
    run: Callable[[], CheckResult]

    def __call__(self) -> CheckResult:
        result = self.run()
        return result if result.name == self.name else replace(result, name=self.name)


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
    """Run checks concurrently (at most ``max_workers`` at once); results in input order.

    Each check is bounded by its own ``timeout`` (``Check.timeout``; callables without one
    get ``overall_timeout``) counted from when it starts, and the whole suite by
    ``overall_timeout``. A late check is reported as failed and abandoned: Python cannot
    kill a thread, so it runs on in a daemon thread (bounded by its own I/O timeouts) but
    gives its worker slot back at once, so one hung probe cannot starve the queue.
    """
    names = [_name_of(c, i) for i, c in enumerate(checks)]
    timeouts = [_timeout_of(c, overall_timeout) for c in checks]
    results: list[CheckResult | None] = [None] * len(checks)
    finished: dict[int, CheckResult] = {}
    cond = threading.Condition()

    def worker(i: int) -> None:
        result = _call_safely(checks[i], names[i])
        with cond:
            finished[i] = result
            cond.notify_all()

    queue = deque(range(len(checks)))
    running: dict[int, float] = {}  # index -> start time
    begin = time.monotonic()
    deadline = begin + overall_timeout
    with cond:
        while queue or running:
            now = time.monotonic()
            for i, since in list(running.items()):
                if i in finished:
                    results[i] = finished.pop(i)
                elif now >= since + timeouts[i]:
                    results[i] = _late(names[i], timed_out(timeouts[i]), now - since)
                elif now >= deadline:
                    why = f"{timed_out(overall_timeout)} (suite deadline)"
                    results[i] = _late(names[i], why, now - since)
                else:
                    continue
                del running[i]
            if now >= deadline:
                for i in queue:
                    why = f"{timed_out(overall_timeout)} (suite deadline; never started)"
                    results[i] = _late(names[i], why, 0.0)
                queue.clear()
            while queue and len(running) < max(1, max_workers):
                i = queue.popleft()
                running[i] = now
                threading.Thread(
                    target=worker, args=(i,), name=f"check-{names[i]}", daemon=True
                ).start()
            if running:
                wake = min([deadline, *(since + timeouts[i] for i, since in running.items())])
                cond.wait(timeout=max(0.0, wake - now))
    return [r for r in results if r is not None]


def _late(name: str, summary: str, elapsed: float) -> CheckResult:
    log.warning("check %s: %s", name, summary)
    return CheckResult(name, "fail", summary, {}, elapsed * 1000)


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
