"""``describe_revision`` and ``config_differences`` of the Kubernetes adapter through the
wire, with real kubectl as the oracle: ``kubectl rollout history deployment/x --revision=N``
prints what the adapter returns, except that a credential-like literal is masked."""

from __future__ import annotations

from typing import Any

import pytest

from platforms.base import Capability, ConfigDifference, RevisionNotFound, Target, mask_value
from platforms.kubernetes import SPEC, KubernetesPlatform
from sandbox.kube import KubeEmulator
from tests.integration.kube_fixtures import Kubectl

NS, APP = "hotel", "voice-bot"
TARGET = Target("kubernetes", NS, APP)
TOKEN = "s3cr3t-token-value"  # env literals named like a credential
OTHER_TOKEN = "another-token-value"
ARG_TOKEN = "argument-token-value"  # a credential on the command line
PROBE_TOKEN = "probe-token-value"  # a credential on an exec probe's command line


def _release_1_1(obj: dict[str, Any]) -> None:
    """A richer pod template: what kubectl prints for it is the oracle."""
    tpl = obj["spec"]["template"]
    tpl["metadata"].setdefault("annotations", {})["prometheus.io/scrape"] = "true"
    c = tpl["spec"]["containers"][0]
    c["image"] = "registry.local/voice-bot:1.1"
    c["ports"] = [{"containerPort": 8080, "protocol": "TCP"},
                  {"containerPort": 9090, "name": "metrics", "protocol": "TCP"}]
    c["env"] = [
        {"name": "LOG_LEVEL", "value": "info"},
        {"name": "API_TOKEN", "value": TOKEN},
        {"name": "DB_PASSWORD", "valueFrom": {"secretKeyRef": {"name": "db", "key": "password"}}},
        {"name": "MODE", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "mode",
                                                           "optional": True}}},
        {"name": "POD_IP", "valueFrom": {"fieldRef": {"apiVersion": "v1",
                                                      "fieldPath": "status.podIP"}}},
        {"name": "MULTI", "value": "line one\nline two"},
    ]
    c["envFrom"] = [{"configMapRef": {"name": "voice-bot-config"}},
                    {"secretRef": {"name": "voice-bot-secrets"}, "prefix": "S_"}]
    c["volumeMounts"] = [{"name": "data", "mountPath": "/data"},
                         {"name": "cfg", "mountPath": "/etc/cfg", "readOnly": True,
                          "subPath": "app.yaml"}]
    c["command"] = ["/bin/app", "--serve"]
    c["args"] = ["--port", "8080", f"--api-token={ARG_TOKEN}", "--db-password", ARG_TOKEN]
    c["resources"] = {"limits": {"cpu": "500m", "memory": "256Mi"}, "requests": {"cpu": "100m"}}
    c["livenessProbe"] = {"httpGet": {"path": "/healthz", "port": 8080, "scheme": "HTTP"},
                          "periodSeconds": 10, "timeoutSeconds": 1, "successThreshold": 1,
                          "failureThreshold": 3}
    c["readinessProbe"] = {"tcpSocket": {"port": "metrics"}, "initialDelaySeconds": 5}
    tpl["spec"]["containers"].append({
        "name": "sidecar", "image": "registry.local/proxy:2",
        "ports": [{"containerPort": 15001, "protocol": "TCP"}],
        "livenessProbe": {"exec": {"command": ["/bin/check", f"--auth-token={PROBE_TOKEN}",
                                               "-v"]}, "periodSeconds": 20}})
    tpl["spec"]["initContainers"] = [{"name": "migrate", "image": "registry.local/voice-bot:1.1",
                                      "command": ["/bin/migrate"],
                                      "env": [{"name": "MIGRATE_MODE", "value": "safe"}]}]
    tpl["spec"]["volumes"] = [
        {"name": "data", "emptyDir": {}},
        {"name": "cfg", "configMap": {"name": "voice-bot-config"}},
        {"name": "tls", "secret": {"secretName": "voice-bot-tls", "optional": True}},
        {"name": "store", "persistentVolumeClaim": {"claimName": "voice-bot-data"}},
    ]
    tpl["spec"]["serviceAccountName"] = "voice-bot"
    tpl["spec"]["nodeSelector"] = {"pool": "apps", "arch": "amd64"}
    tpl["spec"]["tolerations"] = [{"key": "dedicated", "operator": "Equal", "value": "apps",
                                   "effect": "NoSchedule"},
                                  {"key": "node.kubernetes.io/unreachable",
                                   "operator": "Exists", "effect": "NoExecute",
                                   "tolerationSeconds": 300}]
    obj["metadata"].setdefault("annotations", {})["kubernetes.io/change-cause"] = "release 1.1"


def _release_1_2(obj: dict[str, Any]) -> None:
    c = obj["spec"]["template"]["spec"]["containers"][0]
    c["image"] = "registry.local/voice-bot:1.2"
    c["env"] = [e for e in c["env"] if e["name"] not in ("MODE", "MULTI")]
    for e in c["env"]:
        if e["name"] == "LOG_LEVEL":
            e["value"] = "debug"
        if e["name"] == "API_TOKEN":
            e["value"] = OTHER_TOKEN
        if e["name"] == "DB_PASSWORD":
            e["valueFrom"]["secretKeyRef"]["name"] = "db-v2"
    c["env"].append({"name": "FEATURE_X", "value": "on"})
    c["envFrom"] = [{"configMapRef": {"name": "voice-bot-config"}}]
    init = obj["spec"]["template"]["spec"]["initContainers"][0]
    init["env"] = [{"name": "MIGRATE_MODE", "value": "fast"}]
    obj["metadata"]["annotations"]["kubernetes.io/change-cause"] = "release 1.2"


@pytest.fixture
def seeded(kube_emulator: KubeEmulator) -> KubeEmulator:
    kube_emulator.create_deployment(NS, APP, image="registry.local/voice-bot:1.0", replicas=2,
                                    change_cause="release 1.0")
    kube_emulator.update_deployment(NS, APP, _release_1_1)
    kube_emulator.update_deployment(NS, APP, _release_1_2)
    return kube_emulator


def _kubectl_history(kubectl: Kubectl, em: KubeEmulator, number: int) -> str:
    out = kubectl.run(em, "rollout", "history", f"deployment/{APP}", "-n", NS,
                      f"--revision={number}")
    assert out.returncode == 0, out.stderr
    return out.stdout


@pytest.mark.parametrize("number", [1, 2, 3])
def test_the_detail_is_what_kubectl_prints_with_credentials_masked(
        seeded: KubeEmulator, kube_platform: KubernetesPlatform, kubectl: Kubectl,
        number: int) -> None:
    detail = kube_platform.describe_revision(TARGET, number)
    expected = _kubectl_history(kubectl, seeded, number)
    literal = {2: TOKEN, 3: OTHER_TOKEN}.get(number)
    if literal is not None:
        # The one difference: kubectl prints the literal, the bot its fingerprint.
        assert f"API_TOKEN:\t{literal}\n" in expected
        expected = expected.replace(literal, str(mask_value("API_TOKEN", literal)))
        assert literal not in detail.text
    if number >= 2:
        assert f"--api-token={ARG_TOKEN}\n" in expected and f"{ARG_TOKEN}\n" in expected
        expected = expected.replace(f"--api-token={ARG_TOKEN}", "--api-token=" + str(
            mask_value("api-token", ARG_TOKEN))).replace(
            f"--db-password\n      {ARG_TOKEN}",
            f"--db-password\n      {mask_value('db-password', ARG_TOKEN)}")
        assert ARG_TOKEN not in detail.text
        assert f"exec [/bin/check --auth-token={PROBE_TOKEN} -v]" in expected
        expected = expected.replace(f"--auth-token={PROBE_TOKEN}", "--auth-token=" + str(
            mask_value("auth-token", PROBE_TOKEN)))
        assert PROBE_TOKEN not in detail.text
    assert detail.text == expected.rstrip("\n")
    assert detail.revision.number == number
    assert ("ReplicaSet", detail.revision.id) in detail.fields


def test_an_unknown_revision_is_not_found_as_kubectl_refuses_it(
        seeded: KubeEmulator, kube_platform: KubernetesPlatform, kubectl: Kubectl) -> None:
    out = kubectl.run(seeded, "rollout", "history", f"deployment/{APP}", "-n", NS,
                      "--revision=9")
    assert out.returncode != 0 and "unable to find the specified revision" in out.stderr
    with pytest.raises(RevisionNotFound):
        kube_platform.describe_revision(TARGET, 9)


def test_config_differences_between_the_running_and_an_older_revision(
        seeded: KubeEmulator, kube_platform: KubernetesPlatform) -> None:
    assert SPEC.supports(Capability.CONFIG_VIEW)
    history = kube_platform.history(TARGET)
    running, pinned = history[0], history[1]  # release 1.2 -> back to release 1.1
    diffs = kube_platform.config_differences(TARGET, running, pinned)
    masked = str(mask_value("API_TOKEN", TOKEN))
    assert diffs == [
        ConfigDifference("env", "app/API_TOKEN",
                         mask_value("API_TOKEN", OTHER_TOKEN), masked),
        ConfigDifference("secret ref", "app/DB_PASSWORD", "secret db-v2 key password",
                         "secret db key password"),
        ConfigDifference("env", "app/FEATURE_X", "on", None),
        ConfigDifference("env", "app/LOG_LEVEL", "debug", "info"),
        ConfigDifference("configmap ref", "app/MODE", None, "configmap cfg key mode"),
        ConfigDifference("env", "app/MULTI", None, "line one\nline two"),
        ConfigDifference("envFrom", "app/secret voice-bot-secrets", None,
                         "all keys, prefix 'S_'"),
        ConfigDifference("env", "init migrate/MIGRATE_MODE", "fast", "safe"),
    ]
    assert all(TOKEN not in str(d) and OTHER_TOKEN not in str(d) for d in diffs)
    assert kube_platform.config_differences(TARGET, running, running) == []
    assert [r.number for r in kube_platform.history(TARGET)] == [3, 2, 1]  # read-only


def test_a_revision_gone_from_history_is_not_found(
        seeded: KubeEmulator, kube_platform: KubernetesPlatform) -> None:
    history = kube_platform.history(TARGET)
    gone = type(history[1])(id="voice-bot-gone", number=7)
    with pytest.raises(RevisionNotFound):
        kube_platform.config_differences(TARGET, history[0], gone)
