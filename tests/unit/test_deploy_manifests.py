"""deploy/deployment.yaml: the bot's own Deployment, Service and PDB, with the catalog ConfigMap
that deploy/kustomization.yaml's configMapGenerator makes from deploy/rollback.yml.

Parsed with ``yaml.safe_load_all`` and checked field by field against the Kubernetes API models
shipped with the ``kubernetes`` client (so a misspelt key fails), then held to the production
rules: two replicas on a shared database, secrets from the ``rollback-bot`` Secret, probes on
``handlers.ids`` paths, a locked-down container, and a catalog the bot's own loader accepts.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml
from kubernetes import client as k8s

from bot.domain.config import parse_config
from handlers import ids
from platforms.registry import PRODUCTION

REPO_ROOT = Path(__file__).resolve().parents[2]
MANIFEST = REPO_ROOT / "deploy" / "deployment.yaml"
KUSTOMIZATION = REPO_ROOT / "deploy" / "kustomization.yaml"

NAME = "rollback-bot"
SECRET_ENV = ("SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET", "DATABASE_URL")
CONFIG_PATH = "/etc/rollback-bot/rollback.yml"
MODELS = {
    ("apps/v1", "Deployment"): "V1Deployment",
    ("v1", "Service"): "V1Service",
    ("v1", "ConfigMap"): "V1ConfigMap",
    ("policy/v1", "PodDisruptionBudget"): "V1PodDisruptionBudget",
}
PRIMITIVES: dict[str, type | tuple[type, ...]] = {
    "str": str,
    "int": int,
    "bool": bool,
    "float": (int, float),
}
OPAQUE = {"object", "datetime", "bytes"}  # int-or-string, quantities, timestamps: as written
LIST_TYPE = re.compile(r"^(?:list|List)\[(.+)\]$")  # spelling differs across client versions
DICT_TYPE = re.compile(r"^(?:dict\(|Dict\[)str, (.+)[)\]]$")


def schema_problems(value: Any, type_name: str, path: str) -> Iterator[str]:
    """Unknown keys and wrongly typed scalars, using the client's generated model metadata."""
    if match := LIST_TYPE.match(type_name):
        if not isinstance(value, list):
            yield f"{path}: expected a list"
            return
        for n, item in enumerate(value):
            yield from schema_problems(item, match.group(1), f"{path}[{n}]")
    elif match := DICT_TYPE.match(type_name):
        if not isinstance(value, dict):
            yield f"{path}: expected a mapping"
            return
        for key, item in value.items():
            yield from schema_problems(item, match.group(1), f"{path}.{key}")
    elif type_name in PRIMITIVES:
        expected = PRIMITIVES[type_name]
        if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
            yield f"{path}: expected {type_name}, got {value!r}"
    elif type_name in OPAQUE:
        return
    elif hasattr(k8s, type_name):
        model = getattr(k8s, type_name)
        if not isinstance(value, dict):
            yield f"{path}: expected a {type_name} mapping"
            return
        by_json_name = {json_name: attr for attr, json_name in model.attribute_map.items()}
        for key, item in value.items():
            if key not in by_json_name:
                yield f"{path}.{key}: not a field of {type_name}"
            else:
                field_type = model.openapi_types[by_json_name[key]]
                yield from schema_problems(item, field_type, f"{path}.{key}")
    else:  # never skip silently: an unknown type name means this walker needs teaching
        yield f"{path}: cannot check type {type_name!r}"


@pytest.fixture(scope="module")
def docs() -> list[dict[str, Any]]:
    loaded = [d for d in yaml.safe_load_all(MANIFEST.read_text(encoding="utf-8")) if d]
    assert all(isinstance(d, dict) for d in loaded)
    # The catalog ConfigMap as the kustomization's configMapGenerator builds it (files become
    # keys); tests/integration/test_deploy_manifests.py checks the real kubectl rendering.
    for generator in yaml.safe_load(KUSTOMIZATION.read_text(encoding="utf-8"))[
            "configMapGenerator"]:
        files = {PurePosixPath(f).name: (KUSTOMIZATION.parent / f).read_text(encoding="utf-8")
                 for f in generator["files"]}
        loaded.append({"apiVersion": "v1", "kind": "ConfigMap",
                       "metadata": {"name": generator["name"],
                                    "namespace": generator["namespace"]},
                       "data": files})
    return loaded


def one(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


@pytest.fixture(scope="module")
def deployment(docs: list[dict[str, Any]]) -> dict[str, Any]:
    return one(docs, "Deployment")


@pytest.fixture(scope="module")
def pod(deployment: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = deployment["spec"]["template"]["spec"]
    return spec


@pytest.fixture(scope="module")
def container(pod: dict[str, Any]) -> dict[str, Any]:
    (only,) = pod["containers"]
    assert only["name"] == NAME
    c: dict[str, Any] = only
    return c


def env_of(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in container.get("env", [])}


def container_port(container: dict[str, Any], port: int | str) -> int:
    """Resolve a numeric or named port against the container's declared ports."""
    for p in container["ports"]:
        if port in (p["containerPort"], p.get("name")):
            return int(p["containerPort"])
    raise AssertionError(f"port {port!r} is not declared by the container")


def test_schema_checker_catches_misspelt_and_mistyped_fields() -> None:
    broken = {"spec": {"replicas": "2", "template": {"spec": {"containers": [{"nam": "x"}]}}}}
    assert sorted(schema_problems(broken, "V1Deployment", "Deployment")) == [
        "Deployment.spec.replicas: expected int, got '2'",
        "Deployment.spec.template.spec.containers[0].nam: not a field of V1Container",
    ]


def test_every_document_is_a_known_kind_with_only_real_fields(
    docs: list[dict[str, Any]],
) -> None:
    assert sorted(d["kind"] for d in docs) == [
        "ConfigMap",
        "Deployment",
        "PodDisruptionBudget",
        "Service",
    ]
    for doc in docs:
        model = MODELS[(doc["apiVersion"], doc["kind"])]
        assert list(schema_problems(doc, model, doc["kind"])) == []


def test_rbac_is_left_to_its_own_file(docs: list[dict[str, Any]]) -> None:
    kinds = {d["kind"] for d in docs}
    assert not kinds & {"ServiceAccount", "Role", "ClusterRole", "RoleBinding", "Secret"}


def test_two_replicas_share_one_postgresql(
    deployment: dict[str, Any], container: dict[str, Any]
) -> None:
    assert deployment["spec"]["replicas"] == 2
    # Without DATABASE_URL each replica would start its own embedded PostgreSQL.
    assert "DATABASE_URL" in env_of(container)
    rolling = deployment["spec"]["strategy"]["rollingUpdate"]
    assert rolling["maxUnavailable"] == 0


def test_selector_matches_pod_labels(
    docs: list[dict[str, Any]], deployment: dict[str, Any]
) -> None:
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert selector.items() <= labels.items()
    assert one(docs, "Service")["spec"]["selector"].items() <= labels.items()
    pdb = one(docs, "PodDisruptionBudget")["spec"]
    assert pdb["selector"]["matchLabels"].items() <= labels.items()
    assert 0 < pdb["minAvailable"] < deployment["spec"]["replicas"]


def test_service_account(pod: dict[str, Any]) -> None:
    assert pod["serviceAccountName"] == NAME


@pytest.mark.parametrize("name", SECRET_ENV)
def test_secrets_come_from_the_rollback_bot_secret(container: dict[str, Any], name: str) -> None:
    ref = env_of(container)[name]["valueFrom"]["secretKeyRef"]
    assert ref["name"] == NAME
    assert ref["key"]
    assert not ref.get("optional", False)


def test_no_secret_written_inline(container: dict[str, Any]) -> None:
    secretish = re.compile(r"TOKEN|SECRET|PASSWORD|DATABASE_URL|API_KEY", re.I)
    inline = [n for n, e in env_of(container).items() if secretish.search(n) and "value" in e]
    assert inline == []


def test_probes_use_the_bot_health_routes(container: dict[str, Any]) -> None:
    readiness = container["readinessProbe"]["httpGet"]
    liveness = container["livenessProbe"]["httpGet"]
    assert readiness["path"] == ids.READYZ_PATH
    assert liveness["path"] == ids.HEALTHZ_PATH
    port = int(env_of(container)["PORT"]["value"])
    assert container_port(container, readiness["port"]) == port
    assert container_port(container, liveness["port"]) == port
    if "startupProbe" in container:
        assert container["startupProbe"]["httpGet"]["path"] == ids.HEALTHZ_PATH


def test_metrics_annotation_points_at_the_metrics_route(deployment: dict[str, Any]) -> None:
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/path"] == ids.METRICS_PATH


def test_service_reaches_the_http_port(
    docs: list[dict[str, Any]], container: dict[str, Any]
) -> None:
    (port,) = one(docs, "Service")["spec"]["ports"]
    assert container_port(container, port["targetPort"]) == int(env_of(container)["PORT"]["value"])


def test_container_is_locked_down(pod: dict[str, Any], container: dict[str, Any]) -> None:
    pod_ctx = pod["securityContext"]
    ctx = container["securityContext"]
    assert pod_ctx["runAsNonRoot"] is True and ctx["runAsNonRoot"] is True
    assert pod_ctx["runAsUser"] == 10001  # the Dockerfile's USER
    assert ctx["readOnlyRootFilesystem"] is True
    assert ctx["allowPrivilegeEscalation"] is False
    assert ctx["capabilities"]["drop"] == ["ALL"]
    assert not ctx["capabilities"].get("add")
    assert "privileged" not in ctx or ctx["privileged"] is False
    assert container["resources"]["requests"]
    assert container["resources"]["limits"]["memory"]


def test_writable_paths_are_volumes(pod: dict[str, Any], container: dict[str, Any]) -> None:
    """With a read-only root filesystem the data dir and /tmp must be mounted volumes."""
    volumes = {v["name"]: v for v in pod["volumes"]}
    writable = {
        m["mountPath"]
        for m in container["volumeMounts"]
        if not m.get("readOnly") and "emptyDir" in volumes[m["name"]]
    }
    data_dir = env_of(container)["ROLLBACK_DATA_DIR"]["value"]
    assert {"/tmp", data_dir} <= writable


def test_config_map_is_mounted_where_rollback_config_points(
    docs: list[dict[str, Any]], pod: dict[str, Any], container: dict[str, Any]
) -> None:
    assert env_of(container)["ROLLBACK_CONFIG"]["value"] == CONFIG_PATH
    volumes = {v["name"]: v for v in pod["volumes"]}
    config_maps = {d["metadata"]["name"]: d for d in docs if d["kind"] == "ConfigMap"}
    mounted = {}
    for mount in container["volumeMounts"]:
        source = volumes[mount["name"]].get("configMap")
        if not source:
            continue
        assert mount.get("readOnly") is True
        items = source.get("items") or [
            {"key": k, "path": k} for k in config_maps[source["name"]]["data"]
        ]
        for item in items:
            path = PurePosixPath(mount["mountPath"]) / mount.get("subPath", item["path"])
            mounted[str(path)] = (source["name"], item["key"])
    name, key = mounted[CONFIG_PATH]
    assert key in config_maps[name]["data"], f"ConfigMap {name} has no key {key}"


def test_config_stub_is_accepted_by_the_bot(docs: list[dict[str, Any]]) -> None:
    text = one(docs, "ConfigMap")["data"]["rollback.yml"]
    config = parse_config(yaml.safe_load(text), source="deploy/deployment.yaml",
                          platforms=PRODUCTION)
    assert config.services, "the stub must declare at least one service"
    assert config.slack.approvers.usergroup, "approvals need an approver group or users"
