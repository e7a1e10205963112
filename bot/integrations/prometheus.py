"""A tiny typed client for the Prometheus HTTP API (instant and range queries).

Every failure (unreachable server, HTTP error, Prometheus ``status: error``, an answer
of an unexpected shape) surfaces as one ``PrometheusError`` (``bot.integrations.errors``)
whose message names the server and the problem, so checks can show it without a traceback.
"""

from __future__ import annotations

import logging
import math
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx

from bot.integrations.errors import PrometheusError

log = logging.getLogger(__name__)

__all__ = ["Sample", "instant_query", "range_query"]

# (unix timestamp, value)
Sample = tuple[float, float]
Timestamp = datetime | float
# A request's timeout in seconds; None: the client's own (a client made for one caller).
Timeout = float | None


def instant_query(
    base_url: str,
    query: str,
    *,
    client: httpx.Client,
    at: Timestamp | None = None,
    timeout: Timeout = None,
) -> float | None:
    """Evaluate ``query`` at ``at`` (default: now) and return its first sample's value.

    Returns ``None`` when there is no data: an empty vector, or NaN (e.g. ``0/0`` for an
    error ratio while a service gets no traffic). Aggregate the query (``sum(...)``) if
    it could return several series: which one comes first is up to Prometheus.
    """
    params: dict[str, str] = {"query": query}
    if at is not None:
        params["time"] = _format_time(at)
    data = _call(base_url, "/api/v1/query", params, query=query, client=client,
                 timeout=timeout)
    result_type = data.get("resultType")
    result = data.get("result")
    if result_type == "scalar":
        return _none_if_nan(_sample(result, base_url=base_url, query=query)[1])
    if result_type == "vector":
        if not isinstance(result, list):
            raise _shape_error(base_url, query, "vector result is not a list")
        if not result:
            return None
        if len(result) > 1:
            log.debug("instant query returned %d series; using the first", len(result))
        first = result[0]
        if not isinstance(first, dict):
            raise _shape_error(base_url, query, "vector element is not an object")
        return _none_if_nan(_sample(first.get("value"), base_url=base_url, query=query)[1])
    raise PrometheusError(
        f"Prometheus at {_redact(base_url)} returned a {result_type!r} result for {query!r}; "
        "an instant query must yield a scalar or an instant vector",
        query=query,
    )


def range_query(
    base_url: str,
    query: str,
    *,
    start: Timestamp,
    end: Timestamp,
    step: timedelta | float,
    client: httpx.Client,
    timeout: Timeout = None,
) -> list[Sample]:
    """Evaluate ``query`` over ``[start, end]`` every ``step`` and return the first series.

    Samples are ``(unix_ts, value)`` in time order; NaN points are dropped for the same
    reason ``instant_query`` maps NaN to ``None``. No data gives an empty list.
    """
    step_seconds = step.total_seconds() if isinstance(step, timedelta) else float(step)
    if step_seconds <= 0:
        raise ValueError(f"step must be positive, got {step!r}")
    params = {
        "query": query,
        "start": _format_time(start),
        "end": _format_time(end),
        "step": repr(step_seconds),
    }
    data = _call(base_url, "/api/v1/query_range", params, query=query, client=client,
                 timeout=timeout)
    result = data.get("result")
    if data.get("resultType") != "matrix" or not isinstance(result, list):
        raise _shape_error(base_url, query, f"expected a matrix, got {data.get('resultType')!r}")
    if not result:
        return []
    first = result[0]
    values = first.get("values") if isinstance(first, dict) else None
    if not isinstance(values, list):
        raise _shape_error(base_url, query, "matrix series has no 'values' list")
    samples = [_sample(v, base_url=base_url, query=query) for v in values]
    return [s for s in samples if not math.isnan(s[1])]


def _call(
    base_url: str, path: str, params: dict[str, str], *, query: str, client: httpx.Client,
    timeout: Timeout,
) -> dict[str, Any]:
    url = base_url.rstrip("/") + path
    where = _redact(base_url)
    try:
        # POST (form-encoded) is accepted by every endpoint we use and keeps long PromQL
        # out of URLs, where proxies truncate it and access logs record it.
        # The caller's timeout on a shared client (bot.integrations.http_client).
        response = client.post(url, data=params,
                               timeout=httpx.USE_CLIENT_DEFAULT if timeout is None else timeout)
    except httpx.TimeoutException as exc:
        raise PrometheusError(
            f"Prometheus at {where} timed out answering {query!r}", query=query
        ) from exc
    except httpx.HTTPError as exc:
        raise PrometheusError(
            f"Prometheus at {where} is unreachable: {type(exc).__name__}: {exc}", query=query
        ) from exc

    try:
        body: Any = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        snippet = response.text[:200].strip()
        raise PrometheusError(
            f"Prometheus at {where} answered HTTP {response.status_code} without a JSON "
            f"object (is this really Prometheus?): {snippet!r}",
            query=query,
            status_code=response.status_code,
        )
    if body.get("status") != "success":
        error_type = body.get("errorType")
        detail = body.get("error") or "no error message"
        raise PrometheusError(
            f"Prometheus at {where} rejected {query!r} (HTTP {response.status_code}, "
            f"{error_type or 'unknown error'}): {detail}",
            query=query,
            status_code=response.status_code,
            error_type=error_type if isinstance(error_type, str) else None,
        )
    data = body.get("data")
    if not isinstance(data, dict):
        raise _shape_error(base_url, query, "'data' is missing")
    warnings = body.get("warnings")
    if warnings:
        log.warning("Prometheus at %s warned about %r: %s", where, query, warnings)
    return data


def _sample(raw: Any, *, base_url: str, query: str) -> Sample:
    # The API encodes a sample as [<unix float>, "<value as string>"]; the string keeps
    # NaN and ±Inf representable in JSON.
    if not (isinstance(raw, list) and len(raw) == 2):
        raise _shape_error(base_url, query, f"malformed sample {raw!r}")
    try:
        return float(raw[0]), float(raw[1])
    except (TypeError, ValueError) as exc:
        raise _shape_error(base_url, query, f"malformed sample {raw!r}") from exc


def _none_if_nan(value: float) -> float | None:
    return None if math.isnan(value) else value


def _format_time(value: Timestamp) -> str:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            # A naive datetime would silently be read as local time; refuse the ambiguity.
            raise ValueError(f"timestamp {value!r} must be timezone-aware")
        return repr(value.timestamp())
    return repr(float(value))


def _shape_error(base_url: str, query: str, problem: str) -> PrometheusError:
    return PrometheusError(
        f"Prometheus at {_redact(base_url)} gave an unexpected answer to {query!r}: {problem}",
        query=query,
    )


def _redact(base_url: str) -> str:
    """The URL without user:password, which must never reach Slack or logs."""
    parts = urlsplit(base_url)
    if parts.username is None and parts.password is None:
        return base_url
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))
