"""Kubernetes adapter resource helpers: quantity parsing, pod log tails, metrics.k8s.io usage
and ConfigMap/Secret snapshot/restore.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Mapping
from typing import Any

import urllib3
from kubernetes.client import (
    ApiClient,
    CoreV1Api,
    CustomObjectsApi,
    V1ConfigMap,
    V1Pod,
    V1Secret,
)
from kubernetes.client.exceptions import ApiException
from kubernetes.utils.quantity import parse_quantity

from platforms._kube_client import EPOCH, map_api_error, serialize, status_message, translate
from platforms.base import (
    PermanentPlatformError,
    ResourceUsage,
    TargetNotFound,
    TransientPlatformError,
)

# Records keep the adapter's logger name, as before these helpers left platforms.kubernetes.
log = logging.getLogger("platforms.kubernetes")

MAX_LOG_PODS = 10  # a tail for a Slack thread, not a log shipper
METRICS = ("metrics.k8s.io", "v1beta1")
# Server-managed metadata that must not travel inside a config snapshot.
_VOLATILE_METADATA = ("resourceVersion", "uid", "managedFields", "creationTimestamp",
                      "generation", "selfLink", "deletionTimestamp", "deletionGracePeriodSeconds")


# ==================================================================== quantities
def parse_cpu_millicores(quantity: str) -> float:
    """"250m" -> 250.0, "1" -> 1000.0, "12345n" -> 0.012345."""
    return _quantity(quantity) * 1000.0


def parse_memory_mib(quantity: str) -> float:
    """"128Mi" -> 128.0, "1Gi" -> 1024.0, "1G" -> 953.67..."""
    return _quantity(quantity) / (1024.0 * 1024.0)


def _quantity(quantity: str) -> float:
    try:
        return float(parse_quantity(quantity))  # type: ignore[no-untyped-call]
    except ValueError as exc:
        raise PermanentPlatformError(f"unparsable resource quantity {quantity!r}") from exc


# ==================================================================== logs and metrics
def tail_logs(core: CoreV1Api, pods: list[V1Pod], namespace: str, *, lines: int,
              timeout: float, describe: str) -> str | None:
    """``kubectl logs --prefix`` tails of the newest ``MAX_LOG_PODS`` pods (sorts ``pods``
    in place, newest first); None when RBAC forbids reading logs."""
    pods.sort(key=lambda p: (p.metadata.creation_timestamp or EPOCH, str(p.metadata.name))
              if p.metadata else (EPOCH, ""), reverse=True)
    chunks: list[str] = []
    for pod in sorted(pods[:MAX_LOG_PODS], key=lambda p: str(p.metadata.name
                                                             if p.metadata else "")):
        pod_name = str(pod.metadata.name if pod.metadata else "")
        for container in pod.spec.containers if pod.spec else []:
            prefix = f"[pod/{pod_name}/{container.name}] "
            try:
                text = core.read_namespaced_pod_log(
                    pod_name, namespace, container=container.name, tail_lines=lines,
                    _request_timeout=timeout)
            except ApiException as exc:
                if exc.status in (401, 403):
                    log.warning("logs forbidden for %s: %s", describe, status_message(exc))
                    return None
                if exc.status in (400, 404):  # not started yet / already gone
                    chunks.append(f"{prefix}(no logs: {status_message(exc)})")
                    continue
                raise map_api_error(exc) from exc
            except (urllib3.exceptions.HTTPError, TimeoutError, ConnectionError) as exc:
                raise TransientPlatformError(f"kubernetes API unreachable: {exc}") from exc
            chunks.extend(prefix + line for line in str(text).splitlines())
    return "\n".join(chunks)


def pod_metrics(api: ApiClient, namespace: str, selector: str, *, timeout: float) -> Any:
    """The metrics.k8s.io PodMetricsList document (raises TargetNotFound without the API)."""
    with translate():
        return CustomObjectsApi(api).list_namespaced_custom_object(
            *METRICS, namespace, "pods", label_selector=selector, _request_timeout=timeout)


def usage_from_metrics(doc: Any) -> list[ResourceUsage]:
    """Per-pod usage summed over containers, sorted by pod name."""
    usage = []
    for item in doc.get("items", []) if isinstance(doc, dict) else []:
        containers = item.get("containers") or []
        usage.append(ResourceUsage(
            unit=str(item["metadata"]["name"]),
            cpu_millicores=sum(parse_cpu_millicores(c["usage"].get("cpu", "0"))
                               for c in containers),
            memory_mib=sum(parse_memory_mib(c["usage"].get("memory", "0"))
                           for c in containers)))
    return sorted(usage, key=lambda u: u.unit)


# ==================================================================== config snapshot
def portable(obj: Mapping[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(dict(obj))
    meta = out.setdefault("metadata", {})
    for field in _VOLATILE_METADATA:
        meta.pop(field, None)
    return {k: v for k, v in out.items() if k != "status"}


def read_config(api: ApiClient, kind: str, name: str, ns: str, *,
                timeout: float) -> dict[str, Any]:
    core = CoreV1Api(api)
    obj: V1ConfigMap | V1Secret
    if kind == "configmap":
        obj = core.read_namespaced_config_map(name, ns, _request_timeout=timeout)
    else:
        obj = core.read_namespaced_secret(name, ns, _request_timeout=timeout)
    return dict(serialize(api, obj))


def write_config(api: ApiClient, kind: str, ns: str, body: dict[str, Any], *, create: bool,
                 timeout: float) -> None:
    core = CoreV1Api(api)
    name = str(body["metadata"]["name"])
    if kind == "configmap":
        cm = V1ConfigMap.from_dict(body)
        assert cm is not None
        if create:
            core.create_namespaced_config_map(ns, cm, _request_timeout=timeout)
        else:
            core.replace_namespaced_config_map(name, ns, cm, _request_timeout=timeout)
        return
    secret = V1Secret.from_dict(body)
    assert secret is not None
    if create:
        core.create_namespaced_secret(ns, secret, _request_timeout=timeout)
    else:
        core.replace_namespaced_secret(name, ns, secret, _request_timeout=timeout)


def restore_item(api: ApiClient, ns: str, key: str, saved: Mapping[str, Any], *,
                 timeout: float) -> bool:
    """PUT back one ``kind/name`` snapshot item if it differs (create it when deleted);
    True when something was written."""
    kind, _, name = key.partition("/")
    if kind not in ("configmap", "secret"):
        raise PermanentPlatformError(f"unknown config snapshot item {key!r}")
    body = copy.deepcopy(dict(saved))
    body.setdefault("metadata", {}).update(name=name, namespace=ns)
    try:
        with translate():
            current = read_config(api, kind, name, ns, timeout=timeout)
    except TargetNotFound:
        with translate():
            write_config(api, kind, ns, body, create=True, timeout=timeout)
        return True
    if portable(current) == portable(body):
        return False  # restore only what differs: no write, no resourceVersion churn
    if current.get("immutable"):
        raise PermanentPlatformError(f"{key} is immutable; restore it by recreating it")
    # Optimistic concurrency: a concurrent edit makes this a 409 (transient), not a
    # silent overwrite.
    body["metadata"]["resourceVersion"] = current["metadata"].get("resourceVersion")
    with translate():
        write_config(api, kind, ns, body, create=False, timeout=timeout)
    return True
