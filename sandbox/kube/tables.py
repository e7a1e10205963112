"""Server-side printing (``meta.k8s.io/v1`` Table) so ``kubectl get`` shows real columns."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from .store import Obj


def _age(obj: Obj) -> str:
    stamp = (obj.get("metadata") or {}).get("creationTimestamp")
    if not stamp:
        return "<unknown>"
    seconds = int((datetime.now(UTC) - datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ")
                   .replace(tzinfo=UTC)).total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= 2 * size:
            return f"{seconds // size}{unit}"
    return f"{max(seconds, 0)}s"


def _status(obj: Obj) -> dict[str, Any]:
    return dict(obj.get("status") or {})


def _deployment(obj: Obj) -> list[Any]:
    st, want = _status(obj), obj["spec"].get("replicas", 1)
    return [f"{st.get('readyReplicas', 0)}/{want}", st.get("updatedReplicas", 0),
            st.get("availableReplicas", 0)]


def _replicaset(obj: Obj) -> list[Any]:
    st = _status(obj)
    return [obj["spec"].get("replicas", 0), st.get("replicas", 0), st.get("readyReplicas", 0)]


def _pod(obj: Obj) -> list[Any]:
    statuses = _status(obj).get("containerStatuses") or []
    ready = sum(1 for c in statuses if c.get("ready"))
    reason = _status(obj).get("reason") or _status(obj).get("phase", "Pending")
    if (obj.get("metadata") or {}).get("deletionTimestamp"):
        # printPod (pkg/printers/internalversion/printers.go): a pod being deleted shows
        # STATUS "Terminating" whatever its phase.
        reason = "Terminating"
    return [f"{ready}/{len(obj['spec'].get('containers', []))}", reason,
            sum(c.get("restartCount", 0) for c in statuses)]


COLUMNS: dict[str, tuple[list[tuple[str, str]], Callable[[Obj], list[Any]]]] = {
    "apps/deployments": ([("Ready", "string"), ("Up-to-date", "integer"),
                          ("Available", "integer")], _deployment),
    "apps/replicasets": ([("Desired", "integer"), ("Current", "integer"), ("Ready", "integer")],
                         _replicaset),
    "pods": ([("Ready", "string"), ("Status", "string"), ("Restarts", "integer")], _pod),
    "configmaps": ([("Data", "integer")], lambda o: [len(o.get("data") or {})]),
    "secrets": ([("Type", "string"), ("Data", "integer")],
                lambda o: [o.get("type", "Opaque"), len(o.get("data") or {})]),
}


def wants_table(accept: str) -> bool:
    return "as=Table" in accept


def to_table(resource_key: str, items: list[Obj], resource_version: str) -> Obj:
    extra, cells = COLUMNS.get(resource_key, ([], lambda o: []))
    columns = [("Name", "string"), *extra, ("Age", "string")]
    return {
        "kind": "Table", "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": resource_version},
        "columnDefinitions": [{"name": name, "type": kind, "format": "name" if i == 0 else "",
                               "description": "", "priority": 0}
                              for i, (name, kind) in enumerate(columns)],
        "rows": [{"cells": [item["metadata"]["name"], *cells(item), _age(item)],
                  "object": {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                             "metadata": item["metadata"]}}
                 for item in items],
    }
