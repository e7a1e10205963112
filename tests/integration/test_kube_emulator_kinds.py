"""The stored kinds the Kubernetes emulator serves for deploy/ (Service, StatefulSet,
PodDisruptionBudget, Role/RoleBinding, NetworkPolicy, Ingress, ServiceAccount), driven through
real kubectl: discovery, strict field validation, defaulting, what the registry allocates and
what the API server refuses (docs/emulator-kubernetes.md cites the Kubernetes source for each).
"""

from __future__ import annotations

import ipaddress
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from sandbox.kube import KubeEmulator
from tests.integration.kube_fixtures import Kubectl

NS = "default"
SELECTOR = {"matchLabels": {"app": "db"}}
TEMPLATE = {"metadata": {"labels": {"app": "db"}},
            "spec": {"containers": [{"name": "db", "image": "postgres:17"}]}}


def apply(kubectl: Kubectl, em: KubeEmulator, tmp_path: Path, *docs: dict[str, Any],
          verb: str = "apply", dry_run: bool = False) -> subprocess.CompletedProcess[str]:
    manifest = tmp_path / "manifest.yaml"
    manifest.write_text(yaml.safe_dump_all(docs))
    extra = ["--dry-run=server"] if dry_run else []
    return kubectl.run(em, verb, "-f", str(manifest), *extra)


def get(kubectl: Kubectl, em: KubeEmulator, resource: str, name: str) -> dict[str, Any]:
    out = kubectl.run(em, "get", resource, name, "-n", NS, "-o", "json")
    assert out.returncode == 0, out.stderr
    return dict(json.loads(out.stdout))


def service(name: str, **spec: Any) -> dict[str, Any]:
    body = {"selector": {"app": name}, "ports": [{"name": "http", "port": 80}], **spec}
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "namespace": NS},
            "spec": {k: v for k, v in body.items() if v is not None}}


def statefulset(name: str = "db", **spec: Any) -> dict[str, Any]:
    body = {"serviceName": name, "replicas": 1, "selector": SELECTOR, "template": TEMPLATE,
            **spec}
    return {"apiVersion": "apps/v1", "kind": "StatefulSet",
            "metadata": {"name": name, "namespace": NS}, "spec": body}


def role_binding(role: str = "reader", kind: str = "Role") -> dict[str, Any]:
    return {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
            "metadata": {"name": "bot", "namespace": NS},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": kind, "name": role},
            "subjects": [{"kind": "ServiceAccount", "name": "bot", "namespace": NS}]}


def pdb(**spec: Any) -> dict[str, Any]:
    return {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
            "metadata": {"name": "db", "namespace": NS},
            "spec": {"selector": SELECTOR, **spec}}


# ------------------------------------------------------------------------ discovery
def test_discovery_lists_the_stored_kinds(kubectl: Kubectl, kube_emulator: KubeEmulator) -> None:
    out = kubectl.run(kube_emulator, "api-resources", "--no-headers")
    assert out.returncode == 0, out.stderr
    rows = {tuple(line.split()[-3:]) for line in out.stdout.splitlines()}
    for row in [("v1", "true", "ServiceAccount"), ("v1", "true", "Service"),
                ("apps/v1", "true", "StatefulSet"), ("policy/v1", "true", "PodDisruptionBudget"),
                ("rbac.authorization.k8s.io/v1", "true", "Role"),
                ("rbac.authorization.k8s.io/v1", "true", "RoleBinding"),
                ("networking.k8s.io/v1", "true", "NetworkPolicy"),
                ("networking.k8s.io/v1", "true", "Ingress")]:
        assert row in rows
    short = {line.split()[0]: line.split()[1] for line in out.stdout.splitlines()
             if len(line.split()) == 5}
    assert {short[k] for k in ("serviceaccounts", "services", "statefulsets",
                               "poddisruptionbudgets", "networkpolicies", "ingresses")} == \
        {"sa", "svc", "sts", "pdb", "netpol", "ing"}


def test_unknown_field_of_a_stored_kind_is_refused(kubectl: Kubectl, kube_emulator: KubeEmulator,
                                                  tmp_path: Path) -> None:
    """kubectl's server-side validation reaches the new kinds through /openapi/v3."""
    broken = pdb(minAvailable=1)
    broken["spec"]["minAvailabel"] = 1
    out = apply(kubectl, kube_emulator, tmp_path, broken, dry_run=True)
    assert out.returncode != 0
    assert 'PodDisruptionBudget in version "v1" cannot be handled as a PodDisruptionBudget: ' \
        'strict decoding error: unknown field "spec.minAvailabel"' in out.stderr


# -------------------------------------------------------------------------- Service
def test_service_gets_a_cluster_ip_and_defaults(kubectl: Kubectl, kube_emulator: KubeEmulator,
                                                tmp_path: Path) -> None:
    em = kube_emulator
    out = apply(kubectl, em, tmp_path, service("web"), service("api"),
                service("db", clusterIP="None", ports=None))
    assert out.returncode == 0, out.stderr
    web, api, db = (get(kubectl, em, "service", n)["spec"] for n in ("web", "api", "db"))
    cidr = ipaddress.ip_network("10.96.0.0/12")
    assert ipaddress.ip_address(web["clusterIP"]) in cidr
    assert ipaddress.ip_address(api["clusterIP"]) in cidr
    assert web["clusterIP"] != api["clusterIP"]
    assert web["clusterIPs"] == [web["clusterIP"]]
    assert (web["type"], web["sessionAffinity"], web["internalTrafficPolicy"]) == \
        ("ClusterIP", "None", "Cluster")
    assert (web["ipFamilies"], web["ipFamilyPolicy"]) == (["IPv4"], "SingleStack")
    assert web["ports"] == [{"name": "http", "port": 80, "protocol": "TCP", "targetPort": 80}]
    # headless: no address, no ports needed
    assert (db["clusterIP"], db["clusterIPs"]) == ("None", ["None"])
    table = kubectl.run(em, "get", "services", "-n", NS)
    assert table.returncode == 0, table.stderr
    assert table.stdout.split("\n")[0].split() == ["NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP",
                                                   "PORT(S)", "AGE"]
    assert f"web    ClusterIP   {web['clusterIP']}" in table.stdout


def test_service_cluster_ip_is_immutable(kubectl: Kubectl, kube_emulator: KubeEmulator,
                                         tmp_path: Path) -> None:
    em = kube_emulator
    assert apply(kubectl, em, tmp_path, service("web")).returncode == 0
    allocated = get(kubectl, em, "service", "web")["spec"]["clusterIP"]
    # A PUT of the manifest without the address keeps it (the registry's patchAllocatedValues).
    replaced = apply(kubectl, em, tmp_path, service("web"), verb="replace")
    assert replaced.returncode == 0, replaced.stderr
    assert get(kubectl, em, "service", "web")["spec"]["clusterIP"] == allocated
    other = "10.96.0.77" if allocated != "10.96.0.77" else "10.96.0.78"
    out = kubectl.run(em, "patch", "service", "web", "-n", NS, "-p",
                      json.dumps({"spec": {"clusterIP": other}}))
    assert out.returncode != 0
    assert 'The Service "web" is invalid: spec.clusterIPs[0]: Invalid value: ' \
        f'[]string{{"{other}"}}: may not change once set' in out.stderr
    assert get(kubectl, em, "service", "web")["spec"]["clusterIP"] == allocated


@pytest.mark.parametrize(("address", "reason"), [
    ("taken", "provided IP is already allocated"),
    ("192.168.0.10", "the provided IP (192.168.0.10) is not in the valid range. "
                     "The range of valid IPs is 10.96.0.0/12"),
])
def test_service_cannot_have_an_address_it_cannot_allocate(
        kubectl: Kubectl, kube_emulator: KubeEmulator, tmp_path: Path, address: str,
        reason: str) -> None:
    em = kube_emulator
    assert apply(kubectl, em, tmp_path, service("web")).returncode == 0
    if address == "taken":
        address = get(kubectl, em, "service", "web")["spec"]["clusterIP"]
    out = apply(kubectl, em, tmp_path, service("api", clusterIP=address), dry_run=True)
    assert out.returncode != 0
    assert 'The Service "api" is invalid: spec.clusterIPs: Invalid value: ' \
        f'[]string{{"{address}"}}: failed to allocate IP {address}: {reason}' in out.stderr


def test_service_needs_ports(kubectl: Kubectl, kube_emulator: KubeEmulator,
                             tmp_path: Path) -> None:
    out = apply(kubectl, kube_emulator, tmp_path, service("web", ports=None))
    assert out.returncode != 0
    assert 'The Service "web" is invalid: spec.ports: Required value' in out.stderr


# ----------------------------------------------------------------------- RoleBinding
def test_role_binding_role_ref_is_immutable(kubectl: Kubectl, kube_emulator: KubeEmulator,
                                            tmp_path: Path) -> None:
    em = kube_emulator
    role = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
            "metadata": {"name": "reader", "namespace": NS},
            "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]}]}
    assert apply(kubectl, em, tmp_path, role, role_binding()).returncode == 0
    # subjects may change ...
    more = role_binding()
    more["subjects"].append({"kind": "ServiceAccount", "name": "other", "namespace": NS})
    changed = apply(kubectl, em, tmp_path, more)
    assert changed.returncode == 0, changed.stderr
    # ... the role it grants may not
    out = apply(kubectl, em, tmp_path, role_binding("admin", "ClusterRole"))
    assert out.returncode != 0
    assert ('The RoleBinding "bot" is invalid: roleRef: Invalid value: rbac.RoleRef{'
            'APIGroup:"rbac.authorization.k8s.io", Kind:"ClusterRole", Name:"admin"}: '
            "cannot change roleRef") in out.stderr
    live = get(kubectl, em, "rolebinding.rbac.authorization.k8s.io", "bot")
    assert live["roleRef"]["name"] == "reader" and len(live["subjects"]) == 2
    table = kubectl.run(em, "get", "rolebindings", "-n", NS)
    assert "Role/reader" in table.stdout, table.stdout


def test_role_binding_must_name_a_role(kubectl: Kubectl, kube_emulator: KubeEmulator,
                                       tmp_path: Path) -> None:
    out = apply(kubectl, kube_emulator, tmp_path, role_binding("reader", "Deployment"))
    assert out.returncode != 0
    assert 'roleRef.kind: Unsupported value: "Deployment": supported values: "Role", ' \
        '"ClusterRole"' in out.stderr


# ------------------------------------------------------------------------------ PDB
def test_pdb_min_available_and_max_unavailable_exclude_each_other(
        kubectl: Kubectl, kube_emulator: KubeEmulator, tmp_path: Path) -> None:
    em = kube_emulator
    out = apply(kubectl, em, tmp_path, pdb(minAvailable=1, maxUnavailable="50%"))
    assert out.returncode != 0
    assert 'The PodDisruptionBudget "db" is invalid: spec: Invalid value: ' \
        "policy.PodDisruptionBudgetSpec{MinAvailable:(*intstr.IntOrString)(" in out.stderr
    assert "minAvailable and maxUnavailable cannot be both set" in out.stderr
    out = apply(kubectl, em, tmp_path, pdb(maxUnavailable="150%"))
    assert out.returncode != 0
    assert "spec.maxUnavailable: Invalid value: " in out.stderr
    assert "must not be greater than 100%" in out.stderr


def test_pdb_status_is_the_servers(kubectl: Kubectl, kube_emulator: KubeEmulator,
                                   tmp_path: Path) -> None:
    """A create cannot set status (PrepareForCreate resets it); a spec change bumps the
    generation."""
    em = kube_emulator
    claimed = pdb(minAvailable=1)
    claimed["status"] = {"disruptionsAllowed": 5, "currentHealthy": 5, "desiredHealthy": 1,
                         "expectedPods": 5}
    assert apply(kubectl, em, tmp_path, claimed).returncode == 0
    live = get(kubectl, em, "poddisruptionbudget.policy", "db")
    assert live["status"] == {"disruptionsAllowed": 0, "currentHealthy": 0, "desiredHealthy": 0,
                              "expectedPods": 0}
    assert live["metadata"]["generation"] == 1
    assert apply(kubectl, em, tmp_path, pdb(minAvailable=2)).returncode == 0
    assert get(kubectl, em, "poddisruptionbudget.policy", "db")["metadata"]["generation"] == 2
    table = kubectl.run(em, "get", "pdb", "-n", NS)
    assert table.stdout.split("\n")[1].split()[:4] == ["db", "2", "N/A", "0"], table.stdout


# ----------------------------------------------------------------------- StatefulSet
def test_statefulset_is_defaulted_and_scales(kubectl: Kubectl, kube_emulator: KubeEmulator,
                                             tmp_path: Path) -> None:
    em = kube_emulator
    assert apply(kubectl, em, tmp_path, statefulset()).returncode == 0
    live = get(kubectl, em, "statefulset.apps", "db")
    spec = live["spec"]
    assert (spec["podManagementPolicy"], spec["revisionHistoryLimit"]) == ("OrderedReady", 10)
    assert spec["updateStrategy"] == {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}}
    assert spec["persistentVolumeClaimRetentionPolicy"] == {"whenDeleted": "Retain",
                                                            "whenScaled": "Retain"}
    assert spec["template"]["spec"]["restartPolicy"] == "Always"
    assert live["status"] == {"replicas": 0, "availableReplicas": 0}  # no controller here
    scaled = kubectl.run(em, "scale", "statefulset", "db", "-n", NS, "--replicas=3")
    assert scaled.returncode == 0, scaled.stderr
    live = get(kubectl, em, "statefulset.apps", "db")
    assert (live["spec"]["replicas"], live["metadata"]["generation"]) == (3, 2)


def test_statefulset_selector_must_match_and_is_fixed(kubectl: Kubectl,
                                                      kube_emulator: KubeEmulator,
                                                      tmp_path: Path) -> None:
    em = kube_emulator
    mismatch = statefulset(selector={"matchLabels": {"app": "other"}})
    out = apply(kubectl, em, tmp_path, mismatch, dry_run=True)
    assert out.returncode != 0
    assert 'The StatefulSet "db" is invalid: spec.template.metadata.labels: Invalid value: ' \
        'map[string]string{"app":"db"}: `selector` does not match template `labels`' in out.stderr

    assert apply(kubectl, em, tmp_path, statefulset()).returncode == 0
    forbidden = ("spec: Forbidden: updates to statefulset spec for fields other than "
                 "'replicas', 'ordinals', 'template', 'updateStrategy', "
                 "'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden")
    for changed in (statefulset(serviceName="elsewhere"),
                    statefulset(selector={"matchLabels": {"app": "db", "tier": "x"}},
                                template={**TEMPLATE, "metadata": {
                                    "labels": {"app": "db", "tier": "x"}}})):
        out = apply(kubectl, em, tmp_path, changed)
        assert out.returncode != 0
        assert forbidden in out.stderr
    # the template may change
    newer = statefulset(template={**TEMPLATE, "spec": {"containers": [
        {"name": "db", "image": "postgres:17.1"}]}})
    out = apply(kubectl, em, tmp_path, newer)
    assert out.returncode == 0, out.stderr
    live = get(kubectl, em, "statefulset.apps", "db")
    assert live["spec"]["serviceName"] == "db"
    assert live["spec"]["template"]["spec"]["containers"][0]["image"] == "postgres:17.1"


# ----------------------------------------------------------- NetworkPolicy, Ingress
def test_network_policy_and_ingress_are_stored_with_generation(
        kubectl: Kubectl, kube_emulator: KubeEmulator, tmp_path: Path) -> None:
    em = kube_emulator
    policy = {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
              "metadata": {"name": "web", "namespace": NS},
              "spec": {"podSelector": {"matchLabels": {"app": "web"}},
                       "policyTypes": ["Ingress"]}}
    ingress = {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
               "metadata": {"name": "web", "namespace": NS},
               "spec": {"ingressClassName": "nginx", "rules": [{"host": "web.example.com",
                        "http": {"paths": [{"path": "/", "pathType": "Prefix", "backend": {
                            "service": {"name": "web", "port": {"number": 80}}}}]}}]}}
    assert apply(kubectl, em, tmp_path, policy, ingress).returncode == 0
    live = get(kubectl, em, "ingress.networking.k8s.io", "web")
    assert (live["metadata"]["generation"], live["status"]) == (1, {"loadBalancer": {}})
    policy["spec"]["policyTypes"] = ["Ingress", "Egress"]
    assert apply(kubectl, em, tmp_path, policy).returncode == 0
    assert get(kubectl, em, "networkpolicy.networking.k8s.io", "web")["metadata"][
        "generation"] == 2
    table = kubectl.run(em, "get", "ingress", "-n", NS)
    assert table.stdout.split("\n")[1].split()[:4] == ["web", "nginx", "web.example.com", "80"]
