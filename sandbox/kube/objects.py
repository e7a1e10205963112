"""Object rules the real API server applies: defaulting, label selectors, template hashing.
"""

# Defaulting matters for parity: kubectl sends Go-serialised templates (``resources: {}``,
# ``creationTimestamp: null``) while the Python client omits empty fields, so both writers
# must land on the same stored form, exactly as they would on a real cluster.

from __future__ import annotations

import copy
import json
import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

HASH_LABEL = "pod-template-hash"
REVISION = "deployment.kubernetes.io/revision"
REVISION_HISTORY = "deployment.kubernetes.io/revision-history"
DESIRED_REPLICAS = "deployment.kubernetes.io/desired-replicas"
MAX_REPLICAS = "deployment.kubernetes.io/max-replicas"
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
CHANGE_CAUSE = "kubernetes.io/change-cause"
# What the deployment controller never copies from a Deployment to its ReplicaSets.
CONTROLLER_SKIP = frozenset({
    LAST_APPLIED, REVISION, REVISION_HISTORY, DESIRED_REPLICAS, MAX_REPLICAS,
    "deployment.kubernetes.io/replicaset-replicas-before-scale",
    "deprecated.deployment.rollback.to",
})

_SAFE_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"


def now_rfc3339(*, after: float = 0.0) -> str:
    """metav1.Time as it travels: RFC 3339, whole seconds, UTC (``after`` seconds from now)."""
    return (datetime.now(UTC) + timedelta(seconds=after)).strftime("%Y-%m-%dT%H:%M:%SZ")


def fnv32a(data: bytes) -> int:
    value = 0x811C9DC5
    for byte in data:
        value ^= byte
        value = (value * 0x01000193) & 0xFFFFFFFF
    return value


def safe_encode(value: int | str) -> str:
    """Like apimachinery's rand.SafeEncodeString on the decimal digits: no vowels, no 0/1/3."""
    return "".join(_SAFE_ALPHABET[ord(ch) % len(_SAFE_ALPHABET)] for ch in str(value))


def without_hash(template: Mapping[str, Any]) -> dict[str, Any]:
    tpl = copy.deepcopy(dict(template))
    labels = (tpl.get("metadata") or {}).get("labels")
    if isinstance(labels, dict):
        labels.pop(HASH_LABEL, None)
    return tpl


def template_hash(template: Mapping[str, Any], collision_count: int = 0) -> str:
    canon = json.dumps(prune(without_hash(template)), sort_keys=True, separators=(",", ":"))
    return safe_encode(fnv32a(f"{canon}#{collision_count}".encode()))


def prune(value: Any) -> Any:
    """Drop nulls and empty maps/lists: Go's semantic equality treats them as unset."""
    if isinstance(value, dict):
        out = {k: prune(v) for k, v in value.items()}
        return {k: v for k, v in out.items() if v not in (None, {}, [])}
    if isinstance(value, list):
        return [prune(v) for v in value]
    return value


def equal_ignore_hash(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    return bool(prune(without_hash(a)) == prune(without_hash(b)))


# ------------------------------------------------------------------------- defaulting
def _default_image_pull_policy(image: str) -> str:
    last = image.rsplit("/", 1)[-1]
    if "@" in last:
        return "IfNotPresent"
    return "Always" if ":" not in last or last.endswith(":latest") else "IfNotPresent"


def default_pod_spec(spec: dict[str, Any]) -> None:
    for key in ("containers", "initContainers"):
        for c in spec.get(key) or []:
            c.setdefault("resources", {})
            c.setdefault("terminationMessagePath", "/dev/termination-log")
            c.setdefault("terminationMessagePolicy", "File")
            c.setdefault("imagePullPolicy", _default_image_pull_policy(str(c.get("image", ""))))
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("securityContext", {})
    spec.setdefault("schedulerName", "default-scheduler")


def default_template(template: dict[str, Any]) -> None:
    meta = template.setdefault("metadata", {})
    meta.setdefault("creationTimestamp", None)
    default_pod_spec(template.setdefault("spec", {}))


def apply_defaults(resource_key: str, obj: dict[str, Any]) -> None:
    """Server-side defaulting for the kinds whose shape the emulator cares about."""
    spec = obj.get("spec")
    if resource_key == "apps/deployments" and isinstance(spec, dict):
        spec.setdefault("replicas", 1)
        spec.setdefault("revisionHistoryLimit", 10)
        spec.setdefault("progressDeadlineSeconds", 600)
        # SetDefaults_Deployment (pkg/apis/apps/v1/defaults.go): each of maxUnavailable and
        # maxSurge defaults to 25% on its own.
        strategy = spec.setdefault("strategy", {"type": "RollingUpdate"})
        if strategy.get("type", "RollingUpdate") == "RollingUpdate":
            strategy.setdefault("type", "RollingUpdate")
            rolling = strategy.get("rollingUpdate")
            if not isinstance(rolling, dict):
                rolling = strategy["rollingUpdate"] = {}
            rolling.setdefault("maxUnavailable", "25%")
            rolling.setdefault("maxSurge", "25%")
        default_template(spec.setdefault("template", {}))
    elif resource_key == "apps/replicasets" and isinstance(spec, dict):
        spec.setdefault("replicas", 1)
        default_template(spec.setdefault("template", {}))
    elif resource_key == "pods" and isinstance(spec, dict):
        default_pod_spec(spec)
    elif resource_key == "secrets":
        obj.setdefault("type", "Opaque")
    elif resource_key == "services" and isinstance(spec, dict):
        _default_service(spec)
    elif resource_key == "apps/statefulsets" and isinstance(spec, dict):
        _default_statefulset(spec)
    elif resource_key == "rbac.authorization.k8s.io/rolebindings":
        # SetDefaults_RoleBinding (pkg/apis/rbac/v1/defaults.go): an empty roleRef.apiGroup
        # is the RBAC group.
        ref = obj.get("roleRef")
        if isinstance(ref, dict) and not ref.get("apiGroup"):
            ref["apiGroup"] = "rbac.authorization.k8s.io"


def _default_service(spec: dict[str, Any]) -> None:
    """SetDefaults_Service (kubernetes/kubernetes pkg/apis/core/v1/defaults.go): type
    ClusterIP, sessionAffinity None, port protocol TCP, targetPort = port when unset,
    externalTrafficPolicy Cluster for NodePort/LoadBalancer, internalTrafficPolicy Cluster
    for every type but ExternalName. clusterIP(s) and ipFamilies are the allocator's
    (sandbox/kube/kinds.py)."""
    spec.setdefault("type", "ClusterIP")
    spec.setdefault("sessionAffinity", "None")
    if spec["sessionAffinity"] == "None":
        spec.pop("sessionAffinityConfig", None)
    for port in spec.get("ports") or []:
        if isinstance(port, dict):
            port.setdefault("protocol", "TCP")
            if port.get("targetPort") in (None, 0, ""):
                port["targetPort"] = port.get("port")
    if spec["type"] in ("NodePort", "LoadBalancer"):
        spec.setdefault("externalTrafficPolicy", "Cluster")
    if spec["type"] in ("ClusterIP", "NodePort", "LoadBalancer"):
        spec.setdefault("internalTrafficPolicy", "Cluster")
    if spec["type"] == "LoadBalancer":
        spec.setdefault("allocateLoadBalancerNodePorts", True)


def _default_statefulset(spec: dict[str, Any]) -> None:
    """SetDefaults_StatefulSet (pkg/apis/apps/v1/defaults.go; StatefulSetAutoDeletePVC is on
    by default since 1.27): OrderedReady, RollingUpdate with partition 0, PVC retention
    Retain/Retain, 1 replica, 10 revisions; the template like any pod template."""
    spec.setdefault("podManagementPolicy", "OrderedReady")
    strategy = spec.setdefault("updateStrategy", {})
    if not strategy.get("type"):
        strategy["type"] = "RollingUpdate"
        strategy.setdefault("rollingUpdate", {})
    if strategy["type"] == "RollingUpdate" and isinstance(strategy.get("rollingUpdate"), dict):
        strategy["rollingUpdate"].setdefault("partition", 0)
    retention = spec.setdefault("persistentVolumeClaimRetentionPolicy", {})
    retention.setdefault("whenDeleted", "Retain")
    retention.setdefault("whenScaled", "Retain")
    spec.setdefault("replicas", 1)
    spec.setdefault("revisionHistoryLimit", 10)
    default_template(spec.setdefault("template", {}))
    for claim in spec.get("volumeClaimTemplates") or []:
        # SetDefaults_PersistentVolumeClaimSpec + SetDefaults_PersistentVolumeClaim
        claim.setdefault("spec", {}).setdefault("volumeMode", "Filesystem")
        claim.setdefault("status", {}).setdefault("phase", "Pending")


# What a create stores as status: the strategies' PrepareForCreate reset it (a client cannot
# set status on create) and Go serialises the zero value's non-omitempty fields
# (pkg/registry/core/service/strategy.go, apps/statefulset/strategy.go,
# policy/poddisruptionbudget/strategy.go, networking/ingress/strategy.go).
_INITIAL_STATUS: dict[str, dict[str, Any]] = {
    "services": {"loadBalancer": {}},
    "apps/statefulsets": {"replicas": 0, "availableReplicas": 0},
    "policy/poddisruptionbudgets": {"disruptionsAllowed": 0, "currentHealthy": 0,
                                    "desiredHealthy": 0, "expectedPods": 0},
    "networking.k8s.io/ingresses": {"loadBalancer": {}},
}


def prepare_for_create(resource_key: str, obj: dict[str, Any]) -> None:
    if resource_key in _INITIAL_STATUS:
        obj["status"] = copy.deepcopy(_INITIAL_STATUS[resource_key])


# -------------------------------------------------------------------- pod deletion
def pod_grace_period(pod: Mapping[str, Any], requested: int | None) -> int:
    """Seconds a pod delete waits before the pod is gone: the pod strategy's
    CheckGracefulDelete (kubernetes/kubernetes pkg/registry/core/pod/strategy.go).

    The request's gracePeriodSeconds wins, else the pod's terminationGracePeriodSeconds (the
    API defaults it to 30, pkg/apis/core/v1/defaults.go); a pod that was never scheduled or
    has already terminated goes at once; a negative value means 1 s
    (staging/src/k8s.io/apiserver/pkg/registry/rest/delete.go BeforeDelete)."""
    spec = pod.get("spec") or {}
    period = requested if requested is not None else \
        int(spec.get("terminationGracePeriodSeconds") or 0)
    if not spec.get("nodeName"):
        period = 0
    if (pod.get("status") or {}).get("phase") in ("Failed", "Succeeded"):
        period = 0
    return 1 if period < 0 else period


def is_pod_active(pod: Mapping[str, Any]) -> bool:
    """controller.IsPodActive (pkg/controller/controller_utils.go): a pod that is terminating
    (deletionTimestamp set) or finished is no replica any more: ReplicaSet and Deployment
    counters skip it and the ReplicaSet controller replaces it at once."""
    phase = (pod.get("status") or {}).get("phase")
    return phase not in ("Failed", "Succeeded") and \
        not (pod.get("metadata") or {}).get("deletionTimestamp")


# --------------------------------------------------------------------- label selectors
_REQ = re.compile(r"^\s*(!?)([A-Za-z0-9_./-]+)\s*(?:(==|=|!=)\s*([A-Za-z0-9_.-]*)|"
                  r"\s+(in|notin)\s*\(([^)]*)\))?\s*$")


def _split_requirements(text: str) -> list[str]:
    parts, depth, cur = [], 0, ""
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    if cur.strip():
        parts.append(cur)
    return parts


def selector_matches(selector: str | None, labels: Mapping[str, str] | None) -> bool:
    """Evaluate a label selector string (=, ==, !=, in, notin, exists, !exists)."""
    labels = labels or {}
    if not selector:
        return True
    for raw in _split_requirements(selector):
        m = _REQ.match(raw)
        if not m:
            raise ValueError(f"unable to parse requirement: {raw!r}")
        neg, key, op, val, set_op, set_vals = m.groups()
        if op:
            equal = labels.get(key) == val
            if (op == "!=") == equal:
                return False
        elif set_op:
            values = {v.strip() for v in set_vals.split(",") if v.strip()}
            inside = key in labels and labels[key] in values
            if set_op == "in" and not inside:
                return False
            if set_op == "notin" and inside:
                return False
        elif bool(neg) == (key in labels):
            return False
    return True


def selector_to_string(selector: Mapping[str, Any] | None) -> str:
    """metav1.LabelSelector -> selector string, as LabelSelectorAsSelector renders it."""
    if not selector:
        return ""
    reqs = [f"{k}={v}" for k, v in sorted((selector.get("matchLabels") or {}).items())]
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], sorted(expr.get("values") or [])
        if op == "In":
            reqs.append(f"{key} in ({','.join(values)})")
        elif op == "NotIn":
            reqs.append(f"{key} notin ({','.join(values)})")
        elif op == "Exists":
            reqs.append(key)
        elif op == "DoesNotExist":
            reqs.append(f"!{key}")
    return ",".join(sorted(reqs))


def field_matches(selector: str | None, obj: Mapping[str, Any]) -> bool:
    """Field selectors as clients send them: metadata.name / metadata.namespace, and the
    event fields kubectl describe asks for (involvedObject.kind/name/namespace/uid, type,
    reason; pkg/registry/core/event/strategy.go ToSelectableFields)."""
    if not selector:
        return True
    for raw in selector.split(","):
        negate = "!=" in raw
        key, _, val = raw.replace("!=", "=").replace("==", "=").partition("=")
        node: Any = obj
        for part in key.strip().split("."):
            node = node.get(part) if isinstance(node, Mapping) else None
        if (str(node if node is not None else "") == val.strip()) == negate:
            return False
    return True
