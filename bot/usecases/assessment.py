"""The immediate assessment posted with a request: revisions, rollout, health, errors, logs.

Every probe runs concurrently with its own timeout; a probe that fails or times out is
reported as such and never blocks or fails the request itself.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any, TypeVar

import httpx

from bot.domain.config import ServiceConfig
from bot.observability.scrub import scrub, scrub_data
from platforms.base import Capability, Platform, PlatformSpec, Target, Unsupported

log = logging.getLogger(__name__)

PROBE_TIMEOUT = 5.0
_pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="assess")
T = TypeVar("T")


class TimedOut(Exception):
    """``bounded``'s wait ended (its own class: a socket timeout raised *by* the call is a
    builtin ``TimeoutError`` and says something else)."""


def bounded(fn: Callable[[], T], timeout: float) -> T:
    """``fn()`` on the assessment's pool, waited for at most ``timeout`` seconds (then
    ``TimedOut``; the call finishes in the background, its answer unused). For the
    request's other decorations: a platform API that hangs (retries × read timeouts) must
    not hold the request, nor ``rollback-bot auto``, for minutes."""
    try:
        return _pool.submit(fn).result(timeout=timeout)
    except FutureTimeout:
        raise TimedOut(f"timed out after {timeout:g}s") from None


def _rollout(platform: Platform, target: Target) -> dict[str, Any]:
    st = platform.rollout_status(target)
    return {"ok": st.done and not st.failed, "text": st.message}


def _health(service: ServiceConfig, client: httpx.Client) -> dict[str, Any]:
    assert service.health is not None
    started = time.perf_counter()
    resp = client.get(service.health.url, timeout=service.health.timeout_seconds)
    ms = (time.perf_counter() - started) * 1000
    ok = resp.status_code == service.health.expect_status
    return {"ok": ok, "text": f"HTTP {resp.status_code} in {ms:.0f} ms"}


def _error_rate(service: ServiceConfig, client: httpx.Client) -> dict[str, Any]:
    from bot.integrations.prometheus import instant_query

    assert service.prometheus is not None
    value = instant_query(service.prometheus.url, service.prometheus.error_rate_query,
                          client=client, timeout=PROBE_TIMEOUT)
    if value is None:
        return {"ok": True, "text": "no data"}
    ok = value <= service.prometheus.error_rate_threshold
    return {"ok": ok, "text": f"{value * 100:.2f}% 5xx", "value": value}


def _logs(platform: Platform, target: Target, spec: PlatformSpec[Any] | None) -> dict[str, Any]:
    try:
        if spec is not None:
            spec.require(Capability.LOGS)  # known in advance: no round trip
        text = platform.logs_tail(target, lines=100)
    except Unsupported as exc:  # not a failed probe: the platform has none to give
        return {"ok": True, "text": f"not provided by the platform ({exc})"}
    return {"ok": True, "text": f"{len(text.splitlines())} lines attached", "logs": text}


def assess(
    *, service: ServiceConfig, platform: Platform, target: Target, client: httpx.Client,
    timeout: float = PROBE_TIMEOUT,
) -> dict[str, Any]:
    """Run the probes concurrently; returns {probe: {ok, text, ...}} for every probe.
    ``client``: the process's (``bot.integrations.http_client``); each probe passes its
    own timeout."""
    probes: dict[str, Callable[[], dict[str, Any]]] = {
        "rollout": lambda: _rollout(platform, target),
        "logs": lambda: _logs(platform, target, service.platform_specs.get(target.platform)),
    }
    if service.health:
        probes["health"] = lambda: _health(service, client)
    if service.prometheus:
        probes["error_rate"] = lambda: _error_rate(service, client)
    futures = {name: _pool.submit(fn) for name, fn in probes.items()}
    deadline = time.monotonic() + timeout
    out: dict[str, Any] = {}
    for name, fut in futures.items():
        try:
            out[name] = fut.result(timeout=max(0.0, deadline - time.monotonic()))
        except FutureTimeout:
            out[name] = {"ok": False, "text": f"timed out after {timeout:.0f}s"}
        except Exception as exc:  # a broken probe is a finding, not a failure of the request
            log.info("assessment probe %s failed: %s", name, type(exc).__name__)
            said = scrub(str(exc))[:200]  # scrubbed before it is cut: no secret cut in half
            out[name] = {"ok": False, "text": f"failed: {type(exc).__name__}: {said}"}
    # Stored and shown in the request message: a platform's error may quote a URL with its
    # credentials (scrubbed like every other error that is stored).
    return scrub_data(out)
