"""deploy/ is a kustomize base that real kubectl renders and the Kubernetes emulator accepts.

`kubectl kustomize deploy/` (kubectl's built-in kustomize) must render the whole package, and
`kubectl apply -k deploy/` must succeed against the emulator as an operator runs it: a
server-side dry run of the whole package, then the apply, every object read back, then the
examples (deploy/examples/). The emulator serves every kind the package uses, with the API
server's strict field validation, defaulting and the validation rules that matter here
(docs/emulator-kubernetes.md); the kubernetes client's generated models are a second, offline
check (the same walker as tests/unit/test_deploy_manifests.py). The RBAC part is
tests/integration/test_rbac.py.
"""

from __future__ import annotations

import ipaddress
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


def examples() -> list[dict[str, Any]]:
    return [doc for path in sorted((DEPLOY / "examples").glob("*.yaml"))
            for doc in yaml.safe_load_all(path.read_text()) if doc]


def resource_of(doc: dict[str, Any]) -> str:
    """How kubectl names the kind unambiguously: "rolebinding.rbac.authorization.k8s.io"."""
    group = doc["apiVersion"].rpartition("/")[0]
    return f"{doc['kind'].lower()}.{group}" if group else doc["kind"].lower()


def contained(want: Any, got: Any, path: str = "") -> list[str]:
    """Where ``got`` (the live object) lacks or changed what ``want`` (the manifest) says; the
    server may add defaults, never drop or alter a field the package set."""
    if isinstance(want, dict):
        if not isinstance(got, dict):
            return [f"{path}: {got!r} is not a map"]
        return [problem for key, value in want.items()
                for problem in contained(value, got.get(key), f"{path}.{key}")]
    if isinstance(want, list):
        if not isinstance(got, list) or len(got) != len(want):
            return [f"{path}: {got!r} is not a list of {len(want)}"]
        return [problem for i, (w, g) in enumerate(zip(want, got, strict=True))
                for problem in contained(w, g, f"{path}[{i}]")]
    return [] if want == got else [f"{path}: {got!r} != {want!r}"]


def apply_text(kubectl: Kubectl, em: KubeEmulator, tmp_path: Path, text: str,
               *args: str) -> subprocess.CompletedProcess[str]:
    manifest = tmp_path / f"manifest-{abs(hash(text))}.yaml"
    manifest.write_text(text)
    return kubectl.run(em, "apply", "-f", str(manifest), *args)


TARGET_NAMESPACE = "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: production\n"


def deploy_base(kubectl: Kubectl, em: KubeEmulator, tmp_path: Path) -> None:
    """The documented order: the target namespace exists (the catalog's app runs there), the
    bot's Namespace goes first, then `kubectl apply -k deploy/`."""
    for step in (apply_text(kubectl, em, tmp_path, TARGET_NAMESPACE),
                 kubectl.run(em, "apply", "-f", str(DEPLOY / "namespace.yaml")),
                 kubectl.run(em, "apply", "-k", str(DEPLOY))):
        assert step.returncode == 0, step.stderr


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
    """`kubectl apply -k deploy/` (server dry run, then for real) and the examples succeed
    whole against the emulator, and every object reads back as the package wrote it."""
    em = kube_emulator_factory()
    created = apply_text(kubectl, em, tmp_path, TARGET_NAMESPACE)
    assert created.returncode == 0, created.stderr

    # A dry run creates no Namespace, so the objects inside it are refused exactly as a real
    # API server refuses them (NamespaceLifecycle admission: NotFound) ...
    first = kubectl.run(em, "apply", "-k", str(DEPLOY), "--dry-run=server")
    assert first.returncode != 0
    assert 'namespaces "rollback-bot" not found' in first.stderr
    refusals = [line for line in first.stderr.splitlines() if line.strip()]
    assert all('namespaces "rollback-bot" not found' in line for line in refusals), first.stderr

    # ... so the Namespace goes first; then the whole package passes the dry run ...
    namespace = kubectl.run(em, "apply", "-f", str(DEPLOY / "namespace.yaml"))
    assert namespace.returncode == 0, namespace.stderr
    dry = kubectl.run(em, "apply", "-k", str(DEPLOY), "--dry-run=server")
    assert dry.returncode == 0, dry.stderr
    assert dry.stdout.count("(server dry run)") == len(rendered), dry.stdout
    # ... and the apply, once for every object.
    applied = kubectl.run(em, "apply", "-k", str(DEPLOY))
    assert applied.returncode == 0, applied.stderr
    assert len(applied.stdout.splitlines()) == len(rendered), applied.stdout

    extra = examples()
    for args in (("--dry-run=server",), ()):
        out = kubectl.run(em, "apply", "-f", str(DEPLOY / "examples"), *args)
        assert out.returncode == 0, out.stderr

    for doc in [*rendered, *extra]:
        meta = doc["metadata"]
        where = ["-n", meta["namespace"]] if "namespace" in meta else []
        got = kubectl.run(em, "get", resource_of(doc), meta["name"], *where, "-o", "json")
        assert got.returncode == 0, got.stderr
        live = json.loads(got.stdout)
        assert (live["apiVersion"], live["kind"]) == (doc["apiVersion"], doc["kind"])
        wanted = {k: v for k, v in doc.items() if k != "metadata"}
        assert contained(wanted, live) == [], doc["kind"]
        assert contained({k: meta[k] for k in ("labels", "namespace") if k in meta},
                         live["metadata"]) == [], doc["kind"]

    # What the server adds: an allocated cluster IP, a headless Service kept headless.
    services = {d["metadata"]["name"]: d for d in [*rendered, *extra] if d["kind"] == "Service"}
    for name in services:
        got = kubectl.run(em, "get", "service", name, "-n", BOT_NS, "-o",
                          "jsonpath={.spec.clusterIP}")
        assert got.returncode == 0, got.stderr
        if services[name]["spec"].get("clusterIP") == "None":
            assert got.stdout == "None"
        else:
            assert ipaddress.ip_address(got.stdout) in ipaddress.ip_network("10.96.0.0/12")

    for doc in [*rendered, *extra]:  # second line of defence, offline: the client models
        model = MODELS[(doc["apiVersion"], doc["kind"])]
        assert list(schema_problems(doc, model, doc["kind"])) == [], doc["kind"]


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


def test_emulator_refuses_to_change_a_role_binding(kubectl: Kubectl,
                                                  kube_emulator_factory: EmulatorFactory,
                                                  rendered: list[dict[str, Any]],
                                                  tmp_path: Path) -> None:
    """The server side of the check covers the new kinds too: once applied, the RoleBinding's
    roleRef is immutable (a changed target role needs delete + recreate), as on a real
    cluster; the dry run already says so."""
    em = kube_emulator_factory()
    deploy_base(kubectl, em, tmp_path)
    (binding,) = by_kind(rendered, "RoleBinding")
    changed = json.loads(json.dumps(binding))
    changed["roleRef"]["name"] = "admin"
    for args in (("--dry-run=server",), ()):
        out = apply_text(kubectl, em, tmp_path, yaml.safe_dump(changed), *args)
        assert out.returncode != 0
        assert 'RoleBinding "rollback-bot" is invalid: roleRef: Invalid value: ' in out.stderr
        assert "cannot change roleRef" in out.stderr
    live = kubectl.run(em, "get", "rolebinding.rbac.authorization.k8s.io", "rollback-bot",
                       "-n", "production", "-o", "jsonpath={.roleRef.name}")
    assert live.stdout == "rollback-bot"


def test_emulator_refuses_a_service_without_ports(kubectl: Kubectl,
                                                 kube_emulator_factory: EmulatorFactory,
                                                 rendered: list[dict[str, Any]],
                                                 tmp_path: Path) -> None:
    em = kube_emulator_factory()
    (service,) = by_kind(rendered, "Service")
    broken = json.loads(json.dumps(service))
    broken["metadata"]["namespace"] = "default"
    del broken["spec"]["ports"]
    out = apply_text(kubectl, em, tmp_path, yaml.safe_dump(broken), "--dry-run=server")
    assert out.returncode != 0
    assert 'The Service "rollback-bot" is invalid: spec.ports: Required value' in out.stderr


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
