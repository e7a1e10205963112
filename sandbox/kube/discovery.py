"""The API surface the emulator serves: resource table and (legacy) discovery documents;
client-go falls back to legacy discovery when /api and /apis answer plain JSON.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

SERVER_VERSION = {
    "major": "1",
    "minor": "32",
    "gitVersion": "v1.32.0-rollback-bot-emulator",
    "gitCommit": "0000000000000000000000000000000000000000",
    "gitTreeState": "clean",
    "buildDate": "2025-01-01T00:00:00Z",
    "goVersion": "go1.23.0",
    "compiler": "gc",
    "platform": "linux/amd64",
}

_RW = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")


@dataclass(frozen=True)
class Resource:
    """One served resource; ``key`` ("apps/deployments", "pods") indexes the store."""

    group: str
    version: str
    plural: str
    singular: str
    kind: str
    namespaced: bool = True
    verbs: tuple[str, ...] = _RW
    short_names: tuple[str, ...] = ()
    subresources: tuple[str, ...] = ()
    has_generation: bool = False

    @property
    def key(self) -> str:
        return f"{self.group}/{self.plural}" if self.group else self.plural

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def qualified(self) -> str:
        """How the API server names the resource in error messages ("deployments.apps")."""
        return f"{self.plural}.{self.group}" if self.group else self.plural


RESOURCES: tuple[Resource, ...] = (
    Resource("", "v1", "namespaces", "namespace", "Namespace", namespaced=False,
             short_names=("ns",)),
    Resource("", "v1", "pods", "pod", "Pod", short_names=("po",), subresources=("log", "status")),
    Resource("", "v1", "configmaps", "configmap", "ConfigMap", short_names=("cm",)),
    Resource("", "v1", "secrets", "secret", "Secret"),
    Resource("", "v1", "events", "event", "Event", short_names=("ev",)),
    Resource("", "v1", "serviceaccounts", "serviceaccount", "ServiceAccount",
             short_names=("sa",)),
    Resource("", "v1", "services", "service", "Service", short_names=("svc",),
             subresources=("status",)),
    Resource("apps", "v1", "deployments", "deployment", "Deployment", short_names=("deploy",),
             subresources=("scale", "status"), has_generation=True),
    Resource("apps", "v1", "replicasets", "replicaset", "ReplicaSet", short_names=("rs",),
             subresources=("scale", "status"), has_generation=True),
    # Stored kinds without a controller (what deploy/ renders): served, defaulted and
    # validated like the API server does, but nothing reconciles them (docs/emulator-kubernetes.md).
    Resource("apps", "v1", "statefulsets", "statefulset", "StatefulSet", short_names=("sts",),
             subresources=("scale", "status"), has_generation=True),
    Resource("policy", "v1", "poddisruptionbudgets", "poddisruptionbudget",
             "PodDisruptionBudget", short_names=("pdb",), subresources=("status",),
             has_generation=True),
    Resource("rbac.authorization.k8s.io", "v1", "roles", "role", "Role"),
    Resource("rbac.authorization.k8s.io", "v1", "rolebindings", "rolebinding", "RoleBinding"),
    Resource("networking.k8s.io", "v1", "networkpolicies", "networkpolicy", "NetworkPolicy",
             short_names=("netpol",), has_generation=True),
    Resource("networking.k8s.io", "v1", "ingresses", "ingress", "Ingress", short_names=("ing",),
             subresources=("status",), has_generation=True),
    Resource("metrics.k8s.io", "v1beta1", "pods", "", "PodMetrics", verbs=("get", "list")),
)

GROUP_VERSIONS: dict[str, str] = {"apps": "v1", "policy": "v1", "rbac.authorization.k8s.io": "v1",
                                  "networking.k8s.io": "v1", "metrics.k8s.io": "v1beta1"}


def find(group: str, version: str, plural: str) -> Resource | None:
    for res in RESOURCES:
        if (res.group, res.version, res.plural) == (group, version, plural):
            return res
    return None


def by_key(key: str) -> Resource:
    for res in RESOURCES:
        if res.key == key:
            return res
    raise KeyError(key)


def api_versions(server_address: str) -> dict[str, Any]:
    return {
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0",
                                        "serverAddress": server_address}],
    }


def _group(name: str, version: str) -> dict[str, Any]:
    gv = {"groupVersion": f"{name}/{version}", "version": version}
    return {"name": name, "versions": [gv], "preferredVersion": gv}


def api_group_list() -> dict[str, Any]:
    return {
        "kind": "APIGroupList",
        "apiVersion": "v1",
        "groups": [_group(name, version) for name, version in GROUP_VERSIONS.items()],
    }


def api_group(name: str) -> dict[str, Any] | None:
    if name not in GROUP_VERSIONS:
        return None
    return {"kind": "APIGroup", "apiVersion": "v1", **_group(name, GROUP_VERSIONS[name])}


def resource_list(group: str, version: str) -> dict[str, Any] | None:
    served = [r for r in RESOURCES if (r.group, r.version) == (group, version)]
    if not served:
        return None
    entries: list[dict[str, Any]] = []
    for res in served:
        entry: dict[str, Any] = {
            "name": res.plural,
            "singularName": res.singular,
            "namespaced": res.namespaced,
            "kind": res.kind,
            "verbs": list(res.verbs),
        }
        if res.short_names:
            entry["shortNames"] = list(res.short_names)
        # The "all" category (kubectl get all) as the real server lists it: pods, services and
        # the apps workloads (pkg/registry/*/storage Categories()).
        if res.group == "apps" or res.plural in ("pods", "services") and not res.group:
            entry["categories"] = ["all"]
        entries.append(entry)
        for sub in res.subresources:
            sub_entry: dict[str, Any] = {
                "name": f"{res.plural}/{sub}",
                "singularName": "",
                "namespaced": res.namespaced,
                "kind": res.kind,
                "verbs": ["get", "patch", "update"],
            }
            if sub == "scale":
                sub_entry.update(group="autoscaling", version="v1", kind="Scale")
            elif sub == "log":
                sub_entry.update(kind="Pod", verbs=["get"])
            entries.append(sub_entry)
    gv = f"{group}/{version}" if group else version
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv,
            "resources": entries}
