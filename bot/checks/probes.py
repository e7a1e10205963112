"""HTTP verification checks: the health endpoint with timed samples and declarative probes.

Header values (secret or not) never appear in a result: only header *names* and env var
names do, and any error text is scrubbed of the secret values that were sent.
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import quote, quote_plus, urlsplit, urlunsplit

import httpx

from bot.checks.runner import CheckResult, Outcome, guarded, timed_out
from bot.domain.config import HealthCheck, HttpProbe, probe_headers
from bot.domain.errors import MissingSecret

_BODY_SNIPPET = 200


def safe_url(url: str) -> str:
    """``url`` without userinfo, query or fragment: the parts that can carry tokens."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparsable url>"
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def _secret_forms(value: str) -> set[str]:
    # Error texts quote values in many spellings (repr of str or bytes, JSON, URL-encoded).
    forms = {value, repr(value)[1:-1], repr(value.encode())[2:-1], json.dumps(value)[1:-1]}
    forms |= {quote(value, safe=""), quote_plus(value)}
    return {f for f in forms if f}


def scrub_secrets(text: str, secrets: list[str]) -> str:
    for value in secrets:
        for form in sorted(_secret_forms(value), key=len, reverse=True):
            text = text.replace(form, "***")
    return text


# ------------------------------------------------------------------------------ health
def check_health(
    cfg: HealthCheck,
    *,
    client: httpx.Client,
    name: str = "health",
    max_latency_ms: float | None = None,
) -> CheckResult:
    """Expected status, then ``cfg.samples`` timed requests (the runbook's curl loop)."""
    return guarded(name, cfg.timeout_seconds, lambda: _health(cfg, client, max_latency_ms))


def _health(cfg: HealthCheck, client: httpx.Client, max_latency_ms: float | None) -> Outcome:
    details: dict[str, Any] = {"url": safe_url(cfg.url), "expected_status": cfg.expect_status}
    total = cfg.samples + 1

    def get() -> tuple[httpx.Response | None, float]:
        started = time.perf_counter()
        try:
            resp = client.get(cfg.url, timeout=cfg.timeout_seconds)
        except httpx.TimeoutException:
            return None, (time.perf_counter() - started) * 1000
        return resp, (time.perf_counter() - started) * 1000

    resp, _ = get()
    if resp is None:
        return "fail", f"{timed_out(cfg.timeout_seconds)} (request 1 of {total})", details
    details["status"] = resp.status_code
    if resp.status_code != cfg.expect_status:
        return "fail", f"HTTP {resp.status_code}, expected {cfg.expect_status}", details

    latencies: list[float] = []
    unexpected: list[int] = []
    for n in range(2, total + 1):
        sample, ms = get()
        if sample is None:
            # One timeout is enough to call the service unhealthy; more would only make
            # the verification take samples × timeout to say the same thing.
            details["latencies_ms"] = latencies
            return "fail", f"{timed_out(cfg.timeout_seconds)} (request {n} of {total})", details
        latencies.append(round(ms, 1))
        if sample.status_code != cfg.expect_status:
            unexpected.append(sample.status_code)
    details["latencies_ms"] = latencies
    if not latencies:
        return "pass", f"HTTP {resp.status_code}", details

    lo, med, hi = min(latencies), statistics.median(latencies), max(latencies)
    details.update(min_ms=lo, median_ms=round(med, 1), max_ms=hi)
    summary = (
        f"HTTP {resp.status_code}; latency min {lo:.0f} / median {med:.0f} / max {hi:.0f} ms"
        f" over {len(latencies)} requests"
    )
    if unexpected:
        details["unexpected_statuses"] = unexpected
        seen = ", ".join(str(s) for s in sorted(set(unexpected)))
        why = f"{len(unexpected)}/{len(latencies)} samples not HTTP {cfg.expect_status} ({seen})"
        return "fail", f"{why}; {summary}", details
    if max_latency_ms is not None and med > max_latency_ms:
        return "fail", f"median latency {med:.0f} ms > {max_latency_ms:g} ms; {summary}", details
    return "pass", summary, details


# ------------------------------------------------------------------------------ probes
def check_http_probe(
    probe: HttpProbe, *, client: httpx.Client, name: str | None = None
) -> CheckResult:
    """One declarative probe: method, URL, headers (literal and from env), JSON body,
    expected status list and maximum latency."""
    sent: list[str] = []  # secret values, filled while building headers, for scrubbing

    def scrub(text: str) -> str:
        return scrub_secrets(text, sent)

    return guarded(
        name or probe.name, probe.timeout_seconds, lambda: _probe(probe, client, sent, scrub),
        scrub=scrub,
    )


def _probe(
    probe: HttpProbe, client: httpx.Client, sent: list[str], scrub: Callable[[str], str]
) -> Outcome:
    details: dict[str, Any] = {
        "method": probe.method,
        "url": safe_url(probe.url),
        "expected_status": list(probe.expect_status),
    }
    try:
        headers, values = probe_headers(probe)
    except MissingSecret as exc:
        details.update(missing_env=exc.env, header=exc.header)
        return "fail", str(exc), details
    sent.extend(values)
    details["headers"] = sorted(headers)  # names only

    started = time.perf_counter()
    try:
        resp = client.request(
            probe.method,
            probe.url,
            headers=headers,
            json=probe.json_body,  # None sends no body
            timeout=probe.timeout_seconds,
        )
    except httpx.TimeoutException:
        return "fail", timed_out(probe.timeout_seconds), details
    except (httpx.LocalProtocolError, UnicodeEncodeError):
        # These quote the offending header verbatim; say what failed, not the value.
        return "fail", "request could not be sent: invalid header value or body", details
    latency = (time.perf_counter() - started) * 1000
    details.update(status=resp.status_code, latency_ms=round(latency, 1))

    problems: list[str] = []
    if resp.status_code not in probe.expect_status:
        expected = "/".join(str(s) for s in probe.expect_status)
        problems.append(f"HTTP {resp.status_code}, expected {expected}")
    if probe.max_latency_ms is not None and latency > probe.max_latency_ms:
        problems.append(f"latency {latency:.0f} ms > max {probe.max_latency_ms:g} ms")
    if problems:
        # A server may echo request headers back (httpbin-style); with a secret in the
        # request no part of the body is shown, scrubbing alone could miss an encoding.
        if not sent:
            details["body"] = scrub(resp.text[:_BODY_SNIPPET])
        return "fail", "; ".join(problems), details
    return "pass", f"HTTP {resp.status_code} in {latency:.0f} ms", details
