"""Kubernetes adapter plumbing: API client construction, wire-format helpers (serialization,
label selectors) and translation of vendor errors into the ``platforms.base`` error tree.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import urllib3
from kubernetes import config as kube_config
from kubernetes import watch
from kubernetes.client import ApiClient, Configuration, V1LabelSelector
from kubernetes.client.exceptions import ApiException

from platforms.base import (
    PermanentPlatformError,
    PlatformError,
    TargetNotFound,
    TransientPlatformError,
    WriteConflict,
    parse_retry_after,
)

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)  # sort key for objects without a timestamp


def configuration() -> Configuration:
    """Retry only connection failures in urllib3. Its default would also sleep through
    429/503 ``Retry-After`` inside the call; the core owns that decision (retry_after)."""
    cfg = Configuration()
    cfg.retries = urllib3.Retry(total=3, connect=3, read=0, status=0, redirect=0,
                                respect_retry_after_header=False, raise_on_status=False)
    return cfg


def from_kubeconfig(path: str | None, context: str | None) -> ApiClient:
    try:
        client: ApiClient = kube_config.new_client_from_config(  # type: ignore[no-untyped-call]
            config_file=path, context=context, persist_config=False,
            client_configuration=configuration())
    except (kube_config.ConfigException, OSError) as exc:
        raise PermanentPlatformError(f"cannot load kubeconfig {path or '(default)'} "
                                     f"context {context or '(current)'}: {exc}") from exc
    return client


def in_cluster_client() -> ApiClient:
    cfg = configuration()
    try:
        kube_config.load_incluster_config(  # type: ignore[no-untyped-call]
            client_configuration=cfg)
    except kube_config.ConfigException as exc:
        raise PermanentPlatformError(f"in-cluster credentials unusable: {exc}") from exc
    return ApiClient(cfg)


def serialize(api: ApiClient, model: Any) -> Any:
    """Model -> wire-format JSON (camelCase keys, no unset fields)."""
    return api.sanitize_for_serialization(model)  # type: ignore[no-untyped-call]


def label_selector(selector: V1LabelSelector | None) -> str:
    """metav1.LabelSelectorAsSelector rendered as a query string."""
    if selector is None:
        return ""
    reqs = [f"{k}={v}" for k, v in (selector.match_labels or {}).items()]
    for expr in selector.match_expressions or []:
        values = ",".join(sorted(expr.values or []))
        reqs.append({"In": f"{expr.key} in ({values})", "NotIn": f"{expr.key} notin ({values})",
                     "Exists": f"{expr.key}", "DoesNotExist": f"!{expr.key}"}[expr.operator])
    return ",".join(sorted(reqs))


def _retry_after(exc: ApiException) -> float | None:
    return parse_retry_after((exc.headers or {}).get("Retry-After") if exc.headers else None)


def status_message(exc: ApiException) -> str:
    try:
        body = json.loads(exc.body or "")
        if isinstance(body, dict) and body.get("message"):
            return str(body["message"])
    except ValueError:
        pass
    return f"{exc.status} {exc.reason}".strip()


def map_api_error(exc: ApiException) -> PlatformError:
    """Vendor error -> platform error tree: 404 gone; 409 a failed precondition (a stale
    resourceVersion, or a create that found the object already there): ``WriteConflict``,
    re-read and decide again; 429/5xx retry with the server's Retry-After; else permanent."""
    status = int(exc.status or 0)
    message = status_message(exc)
    if status == 404:
        return TargetNotFound(message)
    if status == 409:
        return WriteConflict(f"{message} (HTTP 409)", retry_after=_retry_after(exc))
    if status == 429 or status >= 500:
        return TransientPlatformError(f"{message} (HTTP {status})", retry_after=_retry_after(exc))
    return PermanentPlatformError(f"{message} (HTTP {status})" if status else message)


def http_status(exc: BaseException) -> int | None:
    """The HTTP status behind a translated error (None when it was not an API answer)."""
    cause = exc.__cause__ if not isinstance(exc, ApiException) else exc
    return int(cause.status or 0) if isinstance(cause, ApiException) else None


@contextmanager
def translate() -> Iterator[None]:
    try:
        yield
    except ApiException as exc:
        raise map_api_error(exc) from exc
    except (urllib3.exceptions.HTTPError, TimeoutError, ConnectionError) as exc:
        raise TransientPlatformError(f"kubernetes API unreachable: {exc}") from exc


def list_then_watch(list_call: Callable[..., Any], namespace: str, *, deadline: float,
                    request_timeout: float, on_list: Callable[[Any], bool],
                    on_event: Callable[[str, Any], bool], describe: str,
                    **selectors: str) -> bool:
    """List, then watch from the list's resourceVersion (how kubectl's waits observe), until
    ``on_list(list)`` or ``on_event(type, object)`` returns True or the monotonic
    ``deadline`` passes; returns whether they stopped it. No sleep loop: a 410 Gone (the
    resourceVersion expired) or a watch the server closed lists again."""
    while (remaining := deadline - time.monotonic()) > 0:
        with translate():
            listed = list_call(namespace, _request_timeout=request_timeout, **selectors)
        if on_list(listed):
            return True
        rv = listed.metadata.resource_version if listed.metadata else None
        stream = watch.Watch()  # type: ignore[no-untyped-call]
        try:
            events: Iterator[dict[str, Any]] = stream.stream(  # type: ignore[no-untyped-call]
                list_call, namespace, resource_version=rv,
                timeout_seconds=max(1, math.ceil(remaining)),
                _request_timeout=remaining + 5, **selectors)
            for event in events:
                if on_event(str(event["type"]), event["object"]):
                    return True
        except ApiException as exc:
            if exc.status != 410:
                raise map_api_error(exc) from exc
        except (urllib3.exceptions.HTTPError, TimeoutError, ConnectionError) as exc:
            raise TransientPlatformError(f"watch on {describe} broke: {exc}") from exc
        finally:
            stream.stop()  # type: ignore[no-untyped-call]
    return False
