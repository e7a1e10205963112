"""Server-side printing (``meta.k8s.io/v1`` Table) so ``kubectl get`` shows real columns."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from .objects import selector_to_string
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
    """printPod (kubernetes/kubernetes pkg/printers/internalversion/printers.go): STATUS is
    the phase, overridden by a container's waiting or terminated reason (ContainerCreating,
    CrashLoopBackOff, ImagePullBackOff), "Terminating" once deletion started; RESTARTS adds
    "(<age> ago)" of the last restart."""
    status = _status(obj)
    statuses = status.get("containerStatuses") or []
    reason = status.get("reason") or status.get("phase", "Pending")
    ready = restarts = 0
    last_restart = ""
    for c in reversed(statuses):
        restarts += int(c.get("restartCount") or 0)
        finished = ((c.get("lastState") or {}).get("terminated") or {}).get("finishedAt")
        if finished and finished > last_restart:
            last_restart = finished
        state = c.get("state") or {}
        if (state.get("waiting") or {}).get("reason"):
            reason = state["waiting"]["reason"]
        elif (state.get("terminated") or {}).get("reason"):
            reason = state["terminated"]["reason"]
        elif state.get("terminated"):
            reason = f"ExitCode:{state['terminated'].get('exitCode', 0)}"
        elif c.get("ready") and state.get("running") is not None:
            ready += 1
    if (obj.get("metadata") or {}).get("deletionTimestamp"):
        reason = "Terminating"
    shown = str(restarts)
    if restarts and last_restart:
        shown = f"{restarts} ({_age({'metadata': {'creationTimestamp': last_restart}})} ago)"
    return [f"{ready}/{len(obj['spec'].get('containers', []))}", reason, shown]


def _event(obj: Obj) -> list[Any]:
    involved = obj.get("involvedObject") or {}
    last = obj.get("lastTimestamp") or obj.get("eventTime") or ""
    first = obj.get("firstTimestamp") or last
    source = (obj.get("source") or {}).get("component", "")
    host = (obj.get("source") or {}).get("host")
    return [_age({"metadata": {"creationTimestamp": last}}), obj.get("type", ""),
            obj.get("reason", ""), f"{str(involved.get('kind', '')).lower()}/"
            f"{involved.get('name', '')}", involved.get("fieldPath", ""),
            f"{source}, {host}" if host else source, obj.get("message", ""),
            _age({"metadata": {"creationTimestamp": first}}), obj.get("count", 1),
            obj["metadata"]["name"]]


def _service(obj: Obj) -> list[Any]:
    """printService: CLUSTER-IP "<none>" when unset, EXTERNAL-IP by type (getServiceExternalIP),
    PORT(S) "port[:nodePort]/protocol" joined by "," (makePortString)."""
    spec = obj.get("spec") or {}
    kind = spec.get("type", "ClusterIP")
    external = ",".join(spec.get("externalIPs") or []) or "<none>"
    if kind == "LoadBalancer":
        ingress = ((obj.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
        addresses = [i.get("ip") or i.get("hostname") for i in ingress]
        external = ",".join(a for a in addresses if a) or "<pending>"
    elif kind == "ExternalName":
        external = spec.get("externalName", "")
    ports = []
    for port in spec.get("ports") or []:
        node = f":{port['nodePort']}" if port.get("nodePort") else ""
        ports.append(f"{port.get('port')}{node}/{port.get('protocol', 'TCP')}")
    return [kind, spec.get("clusterIP") or "<none>", external, ",".join(ports) or "<none>"]


def _ingress(obj: Obj) -> list[Any]:
    """printIngress: CLASS, HOSTS (formatHosts: "*" for a rule without host, at most three
    then "+ N more..."), ADDRESS from status, PORTS "80" or "80, 443" with TLS."""
    spec = obj.get("spec") or {}
    hosts = [rule.get("host") or "*" for rule in spec.get("rules") or []] or ["*"]
    shown = ",".join(hosts[:3]) + (f" + {len(hosts) - 3} more..." if len(hosts) > 3 else "")
    ingress = ((obj.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
    address = ",".join(a for a in (i.get("ip") or i.get("hostname") for i in ingress) if a)
    return [spec.get("ingressClassName") or "<none>", shown, address,
            "80, 443" if spec.get("tls") else "80"]


def _pdb_bound(value: Any) -> str:
    return "N/A" if value is None else str(value)


# Event columns as the API server prints them (printers.go AddHandlers, eventColumnDefinitions):
# no leading Name column; priority-1 columns only show with -o wide.
EVENT_COLUMNS = [("Last Seen", "string", 0), ("Type", "string", 0), ("Reason", "string", 0),
                 ("Object", "string", 0), ("Subobject", "string", 1), ("Source", "string", 1),
                 ("Message", "string", 0), ("First Seen", "string", 1),
                 ("Count", "integer", 1), ("Name", "string", 1)]


COLUMNS: dict[str, tuple[list[tuple[str, str]], Callable[[Obj], list[Any]]]] = {
    "apps/deployments": ([("Ready", "string"), ("Up-to-date", "integer"),
                          ("Available", "integer")], _deployment),
    "apps/replicasets": ([("Desired", "integer"), ("Current", "integer"), ("Ready", "integer")],
                         _replicaset),
    "pods": ([("Ready", "string"), ("Status", "string"), ("Restarts", "string")], _pod),
    "configmaps": ([("Data", "integer")], lambda o: [len(o.get("data") or {})]),
    "secrets": ([("Type", "string"), ("Data", "integer")],
                lambda o: [o.get("type", "Opaque"), len(o.get("data") or {})]),
    # printers.go: serviceAccountColumnDefinitions ... statefulSetColumnDefinitions
    "serviceaccounts": ([("Secrets", "string")], lambda o: [len(o.get("secrets") or [])]),
    "services": ([("Type", "string"), ("Cluster-IP", "string"), ("External-IP", "string"),
                  ("Port(s)", "string")], _service),
    "apps/statefulsets": ([("Ready", "string")], lambda o: [
        f"{_status(o).get('readyReplicas', 0)}/{(o.get('spec') or {}).get('replicas', 1)}"]),
    "policy/poddisruptionbudgets": (
        [("Min Available", "string"), ("Max Unavailable", "string"),
         ("Allowed Disruptions", "integer")],
        lambda o: [_pdb_bound(o["spec"].get("minAvailable")),
                   _pdb_bound(o["spec"].get("maxUnavailable")),
                   _status(o).get("disruptionsAllowed", 0)]),
    "rbac.authorization.k8s.io/rolebindings": (
        [("Role", "string")],
        lambda o: ["{kind}/{name}".format(**{"kind": "", "name": "", **(o.get("roleRef") or {})})]),
    "networking.k8s.io/networkpolicies": (
        [("Pod-Selector", "string")],
        lambda o: [selector_to_string((o.get("spec") or {}).get("podSelector")) or "<none>"]),
    "networking.k8s.io/ingresses": ([("Class", "string"), ("Hosts", "string"),
                                     ("Address", "string"), ("Ports", "string")], _ingress),
}
# Kinds printed without AGE: printRole shows the creation time as a date instead.
NO_AGE: dict[str, tuple[list[tuple[str, str]], Callable[[Obj], list[Any]]]] = {
    "rbac.authorization.k8s.io/roles": (
        [("Created At", "date")], lambda o: [o["metadata"].get("creationTimestamp", "")]),
}


def wants_table(accept: str) -> bool:
    return "as=Table" in accept


def to_table(resource_key: str, items: list[Obj], resource_version: str) -> Obj:
    if resource_key == "events":
        return {
            "kind": "Table", "apiVersion": "meta.k8s.io/v1",
            "metadata": {"resourceVersion": resource_version},
            "columnDefinitions": [{"name": name, "type": kind, "format": "",
                                   "description": "", "priority": priority}
                                  for name, kind, priority in EVENT_COLUMNS],
            "rows": [{"cells": _event(item),
                      "object": {"kind": "PartialObjectMetadata",
                                 "apiVersion": "meta.k8s.io/v1", "metadata": item["metadata"]}}
                     for item in items],
        }
    extra, cells = COLUMNS.get(resource_key, ([], lambda o: []))
    columns = [("Name", "string"), *extra, ("Age", "string")]
    age: Callable[[Obj], list[Any]] = lambda o: [_age(o)]  # noqa: E731
    if resource_key in NO_AGE:
        extra, cells = NO_AGE[resource_key]
        columns = [("Name", "string"), *extra]
        age = lambda o: []  # noqa: E731
    return {
        "kind": "Table", "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": resource_version},
        "columnDefinitions": [{"name": name, "type": kind, "format": "name" if i == 0 else "",
                               "description": "", "priority": 0}
                              for i, (name, kind) in enumerate(columns)],
        "rows": [{"cells": [item["metadata"]["name"], *cells(item), *age(item)],
                  "object": {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                             "metadata": item["metadata"]}}
                 for item in items],
    }
