"""deploy/ is a kustomize base that real kubectl renders and the Kubernetes emulator accepts.

`kubectl kustomize deploy/` (kubectl's built-in kustomize) must render the whole package; every
object of a kind the emulator serves is applied to it with real kubectl (server-side dry run,
then a real apply that is read back), so the emulator's OpenAPI validation and admission see
exactly what `kubectl apply -k deploy/` would send. Kinds the emulator does not serve are
checked field by field against the kubernetes client's generated models instead (the same
walker as tests/unit/test_deploy_manifests.py). The RBAC part is tests/integration/test_rbac.py.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from handlers import ids
from sandbox.kube import KubeEmulator
from tests.integration.kube_fixtures import EmulatorFactory, Kubectl
from tests.unit.test_deploy_manifests import schema_problems

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
BOT_NS = "rollback-bot"
# (apiVersion, kind) -> the kubernetes client model that describes it
MODELS = {
    ("v1", "Namespace"): "V1Namespace",
    ("v1", "ServiceAccount"): "V1ServiceAccount",
    ("v1", "ConfigMap"): "V1ConfigMap",
    ("v1", "Service"): "V1Service",
    ("apps/v1", "Deployment"): "V1Deployment",
    ("apps/v1", "StatefulSet"): "V1StatefulSet",
    ("policy/v1", "PodDisruptionBudget"): "V1PodDisruptionBudget",
    ("networking.k8s.io/v1", "NetworkPolicy"): "V1NetworkPolicy",
    ("networking.k8s.io/v1", "Ingress"): "V1Ingress",
    ("rbac.authorization.k8s.io/v1", "Role"): "V1Role",
    ("rbac.authorization.k8s.io/v1", "RoleBinding"): "V1RoleBinding",
}


def render(kubectl: Kubectl, root: Path) -> list[dict[str, Any]]:
    out = subprocess.run([kubectl.binary, "kustomize", str(root)], capture_output=True,
                         text=True, timeout=60, check=False)
    assert out.returncode == 0, f"kubectl kustomize {root} failed: {out.stderr}"
    return [doc for doc in yaml.safe_load_all(out.stdout) if doc]


@pytest.fixture(scope="module")
def rendered(kubectl: Kubectl) -> list[dict[str, Any]]:
    return render(kubectl, DEPLOY)


def by_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def served_kinds(kubectl: Kubectl, em: KubeEmulator) -> set[tuple[str, str]]:
    """(apiVersion, kind) the emulator's discovery lists, as kubectl reads it."""
    out = kubectl.run(em, "api-resources", "--no-headers")
    assert out.returncode == 0, out.stderr
    served = set()
    for line in out.stdout.splitlines():
        fields = line.split()
        served.add((fields[-3], fields[-1]))  # ... APIVERSION NAMESPACED KIND
    return served


def test_base_renders_the_whole_package(rendered: list[dict[str, Any]]) -> None:
    assert sorted(d["kind"] for d in rendered) == [
        "ConfigMap", "Deployment", "Namespace", "NetworkPolicy", "PodDisruptionBudget",
        "Role", "RoleBinding", "Service", "ServiceAccount"]
    (namespace,) = by_kind(rendered, "Namespace")
    assert namespace["metadata"]["name"] == BOT_NS
    for doc in rendered:
        if doc["kind"] not in {"Namespace", "Role", "RoleBinding"}:
            assert doc["metadata"]["namespace"] == BOT_NS, doc["kind"]


def test_catalog_config_map_is_generated_and_referenced(rendered: list[dict[str, Any]]) -> None:
    """configMapGenerator hashes the name; the Deployment must mount that very name, so a
    changed catalog rolls the pods."""
    (config_map,) = by_kind(rendered, "ConfigMap")
    name = config_map["metadata"]["name"]
    assert name.startswith("rollback-bot-config-") and name != "rollback-bot-config-"
    assert config_map["data"]["rollback.yml"] == (DEPLOY / "rollback.yml").read_text()
    (deployment,) = by_kind(rendered, "Deployment")
    volumes = deployment["spec"]["template"]["spec"]["volumes"]
    assert [v["configMap"]["name"] for v in volumes if "configMap" in v] == [name]


def test_deployment_is_production_shaped(rendered: list[dict[str, Any]]) -> None:
    (deployment,) = by_kind(rendered, "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert deployment["spec"]["replicas"] == 2
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"]
    assert container["livenessProbe"]["httpGet"]["path"] == ids.HEALTHZ_PATH
    assert container["readinessProbe"]["httpGet"]["path"] == ids.READYZ_PATH
    assert container["resources"]["limits"]["memory"]
    assert container["resources"]["requests"]["memory"]
    (pdb,) = by_kind(rendered, "PodDisruptionBudget")
    assert pdb["spec"]["selector"]["matchLabels"] == deployment["spec"]["selector"]["matchLabels"]
    assert pdb["spec"]["minAvailable"] < deployment["spec"]["replicas"]


def test_network_policy_admits_the_http_port_and_the_needed_egress(
        rendered: list[dict[str, Any]]) -> None:
    (policy,) = by_kind(rendered, "NetworkPolicy")
    (deployment,) = by_kind(rendered, "Deployment")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert policy["spec"]["podSelector"]["matchLabels"] == \
        deployment["spec"]["template"]["metadata"]["labels"]
    assert sorted(policy["spec"]["policyTypes"]) == ["Egress", "Ingress"]
    ingress_ports = {p["port"] for rule in policy["spec"]["ingress"] for p in rule["ports"]}
    assert ingress_ports == {p["containerPort"] for p in container["ports"]}
    egress = {(p["protocol"], p["port"]) for rule in policy["spec"]["egress"]
              for p in rule["ports"]}
    # DNS, Slack + Kubernetes API (HTTPS), PostgreSQL
    assert {("UDP", 53), ("TCP", 53), ("TCP", 443), ("TCP", 5432)} <= egress


def test_every_object_is_accepted(kubectl: Kubectl, kube_emulator_factory: EmulatorFactory,
                                  rendered: list[dict[str, Any]], tmp_path: Path) -> None:
    """Served kinds: real kubectl applies them to the emulator (dry run, then for real, then
    read back). The rest: the kubernetes client's models. Each object gets at least one."""
    em = kube_emulator_factory()
    served = served_kinds(kubectl, em)
    on_server = [d for d in rendered if (d["apiVersion"], d["kind"]) in served]
    elsewhere = [d for d in rendered if (d["apiVersion"], d["kind"]) not in served]
    # The emulator serves at least the bot's own namespace, catalog and workload.
    assert {d["kind"] for d in on_server} >= {"Namespace", "ConfigMap", "Deployment"}

    manifest = tmp_path / "served.yaml"
    manifest.write_text(yaml.safe_dump_all(on_server))
    dry = kubectl.run(em, "apply", "--dry-run=server", "-f", str(manifest))
    # a dry-run Namespace is not created, so its objects may only fail on "not found" here
    assert dry.returncode == 0 or "namespaces \"rollback-bot\" not found" in dry.stderr, \
        dry.stderr
    applied = kubectl.run(em, "apply", "-f", str(manifest))
    assert applied.returncode == 0, applied.stderr
    for doc in on_server:
        meta = doc["metadata"]
        where = ["-n", meta["namespace"]] if "namespace" in meta else []
        got = kubectl.run(em, "get", f"{doc['kind'].lower()}.{doc['apiVersion'].split('/')[0]}"
                          if "/" in doc["apiVersion"] else doc["kind"].lower(),
                          meta["name"], *where, "-o", "json")
        assert got.returncode == 0, got.stderr
        live = json.loads(got.stdout)
        if doc["kind"] == "Deployment":
            assert live["spec"]["replicas"] == 2
            assert live["spec"]["template"]["spec"]["containers"][0]["securityContext"][
                "readOnlyRootFilesystem"] is True

    for doc in rendered:  # the models cover every kind, served or not
        model = MODELS[(doc["apiVersion"], doc["kind"])]
        assert list(schema_problems(doc, model, doc["kind"])) == [], doc["kind"]
    print("\nkinds checked against the client models only (the emulator does not serve them): "
          + ", ".join(sorted({d["kind"] for d in elsewhere})))


def test_emulator_rejects_a_broken_deployment(kubectl: Kubectl,
                                              kube_emulator_factory: EmulatorFactory,
                                              rendered: list[dict[str, Any]],
                                              tmp_path: Path) -> None:
    """The server-side check above can fail: a misspelt field in the rendered Deployment is
    refused by the emulator's strict field validation."""
    em = kube_emulator_factory()
    (deployment,) = by_kind(rendered, "Deployment")
    broken = json.loads(json.dumps(deployment))
    broken["metadata"]["namespace"] = "default"
    broken["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
    manifest = tmp_path / "broken.yaml"
    manifest.write_text(yaml.safe_dump(broken))
    out = kubectl.run(em, "apply", "--dry-run=server", "-f", str(manifest))
    assert out.returncode != 0
    assert "readinesProbe" in out.stderr


def test_target_namespaces_are_a_kustomize_setting(kubectl: Kubectl, tmp_path: Path) -> None:
    """The documented procedure: copy deploy/targets/production, change `namespace:`, list it.
    The new namespace gets the same Role bound to the bot's ServiceAccount, nothing else moves."""
    root = tmp_path / "deploy"
    shutil.copytree(DEPLOY, root)
    staging = root / "targets" / "staging"
    shutil.copytree(root / "targets" / "production", staging)
    kustomization = staging / "kustomization.yaml"
    kustomization.write_text(kustomization.read_text().replace("namespace: production",
                                                               "namespace: staging"))
    base = root / "kustomization.yaml"
    base.write_text(base.read_text().replace("  - targets/production\n",
                                             "  - targets/production\n  - targets/staging\n"))
    docs = render(kubectl, root)
    roles = {d["metadata"]["namespace"]: d for d in by_kind(docs, "Role")}
    bindings = {d["metadata"]["namespace"]: d for d in by_kind(docs, "RoleBinding")}
    assert set(roles) == set(bindings) == {"production", "staging"}
    assert roles["staging"]["rules"] == roles["production"]["rules"]
    for binding in bindings.values():
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "rollback-bot",
                                        "namespace": BOT_NS}]
    (account,) = by_kind(docs, "ServiceAccount")
    assert account["metadata"]["namespace"] == BOT_NS


@pytest.mark.parametrize("name", ["ingress.yaml", "postgres.yaml"])
def test_examples_are_valid_objects(name: str) -> None:
    docs = [d for d in yaml.safe_load_all((DEPLOY / "examples" / name).read_text()) if d]
    assert docs
    for doc in docs:
        model = MODELS[(doc["apiVersion"], doc["kind"])]
        assert list(schema_problems(doc, model, doc["kind"])) == [], doc["kind"]
        assert doc["metadata"]["namespace"] == BOT_NS


def test_ingress_example_routes_slack_events_to_the_service(
        rendered: list[dict[str, Any]]) -> None:
    (ingress,) = yaml.safe_load_all((DEPLOY / "examples" / "ingress.yaml").read_text())
    (service,) = by_kind(rendered, "Service")
    paths = [p for rule in ingress["spec"]["rules"] for p in rule["http"]["paths"]]
    assert [p["path"] for p in paths] == [ids.EVENTS_PATH]
    backend = paths[0]["backend"]["service"]
    assert backend["name"] == service["metadata"]["name"]
    assert backend["port"]["name"] in {p["name"] for p in service["spec"]["ports"]}
