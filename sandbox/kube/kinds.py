"""Server behaviour of the stored kinds nothing reconciles here (Service, StatefulSet,
PodDisruptionBudget, RoleBinding): what the registry sets on write and what validation
refuses with 422, worded as kubernetes/kubernetes does it.
"""

# Only what matters for applying a package (deploy/) is modelled; each rule cites its source.
# Messages render values as apimachinery pkg/util/validation/field/errors.go ErrorBody does
# (strings quoted, structs with Go's %#v) inside apierrors.NewInvalid (see validation.py).

from __future__ import annotations

import copy
import ipaddress
from typing import Any

from .objects import prune, selector_matches, selector_to_string
from .store import ApiError, Obj, Store
from .validation import (
    NEGATIVE,
    _Errors,
    _go_intstr,
    _go_map,
    _go_selector,
    _go_string,
    _int_or_percent,
    _positive_int_or_percent,
    _valid_percent,
)

# kubeadm's default --service-cluster-ip-range. The allocator
# (pkg/registry/core/service/ipallocator/bitmap.go) hands out dynamic addresses from above a
# static band kept for clients that pick their own (ServiceIPStaticSubrange: min(max(16,
# size/16), 256) addresses); it picks at random there, the emulator picks the lowest free
# one so that two emulators with the same calls agree.
SERVICE_CIDR = ipaddress.ip_network("10.96.0.0/12")
_STATIC_BAND = 256


def _go_strings(values: Any) -> str:
    if values is None:
        return "[]string(nil)"
    return "[]string{" + ", ".join(_go_string(str(v)) for v in values) + "}"


def _needs_cluster_ip(spec: Obj) -> bool:
    return bool(spec.get("type", "ClusterIP") != "ExternalName")


class ServiceRegistry:
    """Store check for services: clusterIP allocation and ValidateService(Update)."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def __call__(self, obj: Obj, old: Obj | None) -> None:
        spec = obj.setdefault("spec", {})
        name = obj["metadata"]["name"]
        errs = _Errors()
        if old is None:
            self._normalize_create(spec)
            self._allocate(obj, spec)
        else:
            self._normalize_update(spec, old.get("spec") or {})
            self._immutable_ips(errs, spec, old.get("spec") or {})
        # ValidateService (pkg/apis/core/validation/validation.go): ports are required unless
        # the Service is headless or an ExternalName.
        if not spec.get("ports") and spec.get("clusterIP") != "None" \
                and spec.get("type") != "ExternalName":
            errs.required("spec.ports")
        errs.raise_if_any(name, "Service", "")

    @staticmethod
    def _normalize_create(spec: Obj) -> None:
        """NormalizeClusterIPs on create (pkg/registry/core/service/strategy.go): the singular
        field and the plural one describe the same primary address."""
        if spec.get("clusterIP") and not spec.get("clusterIPs"):
            spec["clusterIPs"] = [spec["clusterIP"]]
        elif spec.get("clusterIPs") and not spec.get("clusterIP"):
            spec["clusterIP"] = spec["clusterIPs"][0]

    @staticmethod
    def _normalize_update(spec: Obj, old: Obj) -> None:
        """patchAllocatedValues + NormalizeClusterIPs on update: a client that leaves the
        allocated address out (a PUT of its own manifest) keeps it; one that changes clusterIP
        alone changes clusterIPs with it, so validation sees the change."""
        if _needs_cluster_ip(old) and _needs_cluster_ip(spec):
            if not spec.get("clusterIP"):
                spec["clusterIP"] = old.get("clusterIP")
            if not spec.get("clusterIPs") and old.get("clusterIPs"):
                spec["clusterIPs"] = copy.deepcopy(old["clusterIPs"])
            for key in ("ipFamilies", "ipFamilyPolicy"):
                if key not in spec and key in old:
                    spec[key] = copy.deepcopy(old[key])
        if spec.get("clusterIP") != old.get("clusterIP") and spec.get("clusterIP") and \
                spec.get("clusterIPs") == old.get("clusterIPs"):
            spec["clusterIPs"] = [spec["clusterIP"]]

    @staticmethod
    def _immutable_ips(errs: _Errors, spec: Obj, old: Obj) -> None:
        """validateUpgradeDowngradeClusterIPs (ValidateServiceUpdate): the primary address may
        not change once set ("may not change once set", "primary clusterIP can not be unset")."""
        if not _needs_cluster_ip(spec) or not _needs_cluster_ip(old):
            return
        new_ips, old_ips = spec.get("clusterIPs") or [], old.get("clusterIPs") or []
        if "None" in old_ips and "None" in new_ips:
            return
        shown = _go_strings(spec.get("clusterIPs"))
        if len(new_ips) == len(old_ips):
            for i, ip in enumerate(old_ips):
                if ip != new_ips[i]:
                    errs.invalid(f"spec.clusterIPs[{i}]", shown, "may not change once set")
        elif len(old_ips) > len(new_ips):
            if not new_ips:
                errs.invalid("spec.clusterIPs[0]", shown, "primary clusterIP can not be unset")
            elif new_ips[0] != old_ips[0]:
                errs.invalid("spec.clusterIPs[0]", shown, "may not change once set")

    def _allocate(self, obj: Obj, spec: Obj) -> None:
        """pkg/registry/core/service/storage/alloc.go: initIPFamilyFields (single-stack IPv4
        cluster; headless without selector asks for both families) and allocIPs (a requested
        address must be in range and free: 422 'failed to allocate IP <ip>: <reason>')."""
        if not _needs_cluster_ip(spec):
            return
        headless = spec.get("clusterIP") == "None"
        if headless and not spec.get("selector"):
            spec.setdefault("ipFamilyPolicy", "RequireDualStack")
        spec.setdefault("ipFamilyPolicy", "SingleStack")
        families = spec.setdefault("ipFamilies", ["IPv4"])
        if headless and len(families) < 2 and spec["ipFamilyPolicy"] != "SingleStack":
            families.append("IPv6")
        if headless:
            spec["clusterIPs"] = ["None"]
            return
        taken = self._taken(obj)
        wanted = spec.get("clusterIP")
        if not wanted:
            network = int(SERVICE_CIDR.network_address)
            for offset in range(_STATIC_BAND, SERVICE_CIDR.num_addresses - 1):
                candidate = str(ipaddress.ip_address(network + offset))
                if candidate not in taken:
                    spec["clusterIP"], spec["clusterIPs"] = candidate, [candidate]
                    return
            raise ApiError(500, "InternalError", "failed to allocate a serviceIP: range is full")
        try:
            inside = ipaddress.ip_address(wanted) in SERVICE_CIDR
        except ValueError:
            inside = False
        reason = None
        if not inside:
            # ipallocator ErrNotInRange
            reason = (f"the provided IP ({wanted}) is not in the valid range. The range of "
                      f"valid IPs is {SERVICE_CIDR}")
        elif wanted in taken:
            reason = "provided IP is already allocated"  # ipallocator.ErrAllocated
        if reason is not None:
            errs = _Errors()
            errs.invalid("spec.clusterIPs", _go_strings(spec.get("clusterIPs")),
                         f"failed to allocate IP {wanted}: {reason}")
            errs.raise_if_any(obj["metadata"]["name"], "Service", "")

    def _taken(self, obj: Obj) -> set[str]:
        me = (obj["metadata"].get("namespace"), obj["metadata"]["name"])
        taken: set[str] = set()
        for svc in self.store.iter_objects("services"):
            if (svc["metadata"].get("namespace"), svc["metadata"]["name"]) != me:
                taken.update((svc.get("spec") or {}).get("clusterIPs") or [])
        return taken


# ---------------------------------------------------------------------- StatefulSet
# ValidateStatefulSetUpdate (pkg/apis/apps/validation/validation.go): only these spec fields
# may change; the selector, serviceName, volumeClaimTemplates, ... are fixed at creation.
_STS_MUTABLE = ("replicas", "ordinals", "template", "updateStrategy",
                "persistentVolumeClaimRetentionPolicy", "minReadySeconds")
STS_FORBIDDEN = ("updates to statefulset spec for fields other than 'replicas', 'ordinals', "
                 "'template', 'updateStrategy', 'persistentVolumeClaimRetentionPolicy' and "
                 "'minReadySeconds' are forbidden")


def validate_statefulset(obj: Obj, old: Obj | None) -> None:
    """ValidateStatefulSetSpec: selector required and non-empty, matching the template labels,
    non-negative replicas; on update ValidateStatefulSetUpdate's fixed fields."""
    spec = obj.get("spec") or {}
    errs = _Errors()
    for field in ("replicas", "minReadySeconds"):
        if int(spec.get(field) or 0) < 0:
            errs.invalid(f"spec.{field}", str(spec[field]), NEGATIVE)
    selector = spec.get("selector")
    if selector is None:
        errs.required("spec.selector")
    elif not selector.get("matchLabels") and not selector.get("matchExpressions"):
        errs.invalid("spec.selector", _go_selector(selector),
                     "empty selector is invalid for statefulset")
    else:
        labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
        if not selector_matches(selector_to_string(selector), labels):
            errs.invalid("spec.template.metadata.labels", _go_map(labels),
                         "`selector` does not match template `labels`")
    if old is not None:
        fixed = {k: v for k, v in spec.items() if k not in _STS_MUTABLE}
        old_fixed = {k: v for k, v in (old.get("spec") or {}).items() if k not in _STS_MUTABLE}
        if prune(fixed) != prune(old_fixed):
            errs.forbidden("spec", STS_FORBIDDEN)
    errs.raise_if_any(obj["metadata"]["name"], "StatefulSet", "apps")


# --------------------------------------------------------------- PodDisruptionBudget
def _go_pointer(type_name: str, value: Any, address: int) -> str:
    # %#v of a pointer field prints its address, which differs on every real request; the
    # emulator prints fixed ones (clients must not parse them).
    if value is None:
        return f"(*{type_name})(nil)"
    return f"(*{type_name})(0xc000a{address:05x})"


def validate_pdb(obj: Obj, old: Obj | None) -> None:
    """ValidatePodDisruptionBudgetSpec (pkg/apis/policy/validation/validation.go):
    minAvailable and maxUnavailable are mutually exclusive (the whole spec is the invalid
    value), each a non-negative int or a percent of at most 100%."""
    spec = obj.get("spec") or {}
    errs = _Errors()
    min_available, max_unavailable = spec.get("minAvailable"), spec.get("maxUnavailable")
    if min_available is not None and max_unavailable is not None:
        shown = ("policy.PodDisruptionBudgetSpec{"
                 f"MinAvailable:{_go_pointer('intstr.IntOrString', min_available, 0x40)}, "
                 f"Selector:{_go_pointer('v1.LabelSelector', spec.get('selector'), 0x60)}, "
                 f"MaxUnavailable:{_go_pointer('intstr.IntOrString', max_unavailable, 0x80)}, "
                 "UnhealthyPodEvictionPolicy:" + _go_pointer(
                     "policy.UnhealthyPodEvictionPolicyType",
                     spec.get("unhealthyPodEvictionPolicy"), 0xa0) + "}")
        errs.invalid("spec", shown, "minAvailable and maxUnavailable cannot be both set")
    for field, value in (("minAvailable", min_available), ("maxUnavailable", max_unavailable)):
        if value is None:
            continue
        _positive_int_or_percent(errs, f"spec.{field}", value)
        # IsNotMoreThan100Percent
        if isinstance(value, str) and _valid_percent(value) and _int_or_percent(value) > 100:
            errs.invalid(f"spec.{field}", _go_intstr(value), "must not be greater than 100%")
    errs.raise_if_any(obj["metadata"]["name"], "PodDisruptionBudget", "policy")


# ----------------------------------------------------------------------- RoleBinding
RBAC_GROUP = "rbac.authorization.k8s.io"


def _go_role_ref(ref: Obj) -> str:
    return (f"rbac.RoleRef{{APIGroup:{_go_string(str(ref.get('apiGroup', '')))}, "
            f"Kind:{_go_string(str(ref.get('kind', '')))}, "
            f"Name:{_go_string(str(ref.get('name', '')))}}}")


def validate_rolebinding(obj: Obj, old: Obj | None) -> None:
    """ValidateRoleBinding / ValidateRoleBindingUpdate (pkg/apis/rbac/validation/
    validation.go): roleRef names a Role or ClusterRole of the RBAC group and cannot change
    once the binding exists (delete and recreate it instead)."""
    ref = obj.get("roleRef") or {}
    errs = _Errors()
    if ref.get("apiGroup", "") != RBAC_GROUP:
        errs.not_supported("roleRef.apiGroup", str(ref.get("apiGroup", "")), [RBAC_GROUP])
    if ref.get("kind") not in ("Role", "ClusterRole"):
        errs.not_supported("roleRef.kind", str(ref.get("kind", "")), ["Role", "ClusterRole"])
    if not ref.get("name"):
        errs.required("roleRef.name")
    if old is not None and ref != (old.get("roleRef") or {}):
        errs.invalid("roleRef", _go_role_ref(ref), "cannot change roleRef")
    errs.raise_if_any(obj["metadata"]["name"], "RoleBinding", RBAC_GROUP)
