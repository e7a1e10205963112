"""The RBAC in the rendered kustomize base (`kubectl kustomize deploy/`) is least privilege: the
Role in the target namespace allows every request the Kubernetes adapter makes during a full
rollback, a scale-to-zero-and-back and a config restore, and nothing more."""

from __future__ import annotations

import functools
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from platforms.base import Target
from platforms.kubernetes import KubernetesPlatform
from sandbox.kube import KubeEmulator, RequestRecord
from tests.integration.kube_fixtures import KUBECTL_TIMEOUT, EmulatorFactory, find_kubectl

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
NS = "production"  # deploy/targets/production: the stub catalog's namespace
BOT_NS = "rollback-bot"
APP = "hotel-voice-bot"
RBAC_KINDS = {"ServiceAccount", "Role", "ClusterRole", "RoleBinding", "ClusterRoleBinding"}


@functools.lru_cache(maxsize=1)
def rendered() -> tuple[dict[str, Any], ...]:
    """Every object `kubectl kustomize deploy/` renders (real kubectl's built-in kustomize)."""
    binary = find_kubectl()
    if binary is None:
        message = "kubectl not found: install it or set $KUBECTL (renders deploy/)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    out = subprocess.run([binary, "kustomize", str(DEPLOY)], capture_output=True, text=True,
                         timeout=KUBECTL_TIMEOUT, check=False)
    assert out.returncode == 0, f"kubectl kustomize deploy/ failed: {out.stderr}"
    return tuple(doc for doc in yaml.safe_load_all(out.stdout) if doc)


def load_documents() -> list[dict[str, Any]]:
    """The identity and authorisation objects of the rendered base."""
    return [doc for doc in rendered() if doc["kind"] in RBAC_KINDS]


def role_rules(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    roles = [d for d in docs if d["kind"] == "Role"]
    assert len(roles) == 1
    assert roles[0]["metadata"]["namespace"] == NS
    return list(roles[0]["rules"])


def allowed(rule: dict[str, Any], rec: RequestRecord) -> bool:
    resource = f"{rec.resource}/{rec.subresource}" if rec.subresource else rec.resource
    return (rec.group in rule.get("apiGroups", []) or "*" in rule.get("apiGroups", [])) and \
        (resource in rule.get("resources", []) or "*" in rule.get("resources", [])) and \
        (rec.verb in rule.get("verbs", []) or "*" in rule.get("verbs", [])) and \
        (not rule.get("resourceNames") or rec.name in rule["resourceNames"])


def grants(rules: list[dict[str, Any]]) -> set[tuple[str, str, str]]:
    return {(group, resource, verb) for rule in rules for group in rule["apiGroups"]
            for resource in rule["resources"] for verb in rule["verbs"]}


def drive_everything(em: KubeEmulator) -> None:
    """What an executor does for the runbook: assess, roll back, bounce, restore, verify."""
    em.create_deployment(NS, APP, image="registry.local/hotel-voice-bot:1.4", replicas=2,
                         change_cause="release 1.4", termination_grace_period=1)
    em.set_image(NS, APP, image="registry.local/hotel-voice-bot:1.5", change_cause="release 1.5")
    em.create_config_map(NS, "voice-bot-config", {"MODEL": "v5"})
    em.create_secret(NS, "voice-bot-secrets", {"WAHA_TOKEN": "t0k3n"})
    em.clear_requests()

    platform = KubernetesPlatform(api_client=em.api_client(), request_timeout=10)
    target = Target("kubernetes", NS, APP, config_maps=("voice-bot-config",),
                    secrets=("voice-bot-secrets",))
    snapshot = platform.snapshot_config(target)
    history = platform.history(target)
    assert platform.current_revision(target).number == 2
    assert platform.rollback_to(target, history[1], dry_run=True).message.endswith("dry run)")

    replicas = platform.get_replicas(target)
    platform.scale(target, 0)
    assert platform.wait_for_stopped(target, timeout=10).done
    assert platform.rollback_to(target, history[1]).changed
    em.store.mutate("configmaps", NS, "voice-bot-config",
                    lambda cm: cm["data"].update(MODEL="v6"), actor="client")
    em.store.delete("secrets", NS, "voice-bot-secrets")
    assert platform.restore_config(target, snapshot)  # update the map, recreate the secret
    em.store.delete("configmaps", NS, "voice-bot-config")
    em.store.mutate("secrets", NS, "voice-bot-secrets",
                    lambda s: s["data"].update(WAHA_TOKEN="bGVha2Vk"), actor="client")
    assert platform.restore_config(target, snapshot)  # and the other way round
    platform.scale(target, replicas)
    assert platform.wait_for_rollout(target, timeout=10).done
    assert platform.confirm_running(target, history[1]).matches
    assert platform.rollout_status(target).done
    assert platform.logs_tail(target, lines=20)
    assert platform.resource_usage(target)
    assert platform.undo(NS, APP, to_revision=3).endswith("skipped rollback (current "
                                                          "template already matches revision 3)")


def test_rbac_manifest_is_well_formed() -> None:
    docs = load_documents()
    kinds = {d["kind"]: d for d in docs}
    # no cluster-wide grants: one Role + RoleBinding per target namespace only
    assert sorted(d["kind"] for d in docs) == ["Role", "RoleBinding", "ServiceAccount"]
    binding, account = kinds["RoleBinding"], kinds["ServiceAccount"]
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                                  "name": kinds["Role"]["metadata"]["name"]}
    assert binding["metadata"]["namespace"] == NS
    assert binding["subjects"] == [{"kind": "ServiceAccount",
                                    "name": account["metadata"]["name"],
                                    "namespace": account["metadata"]["namespace"]}]
    # the bot's identity stays in its own namespace, the one its Deployment runs in
    assert account["metadata"]["namespace"] == BOT_NS
    (deployment,) = [d for d in rendered() if d["kind"] == "Deployment"]
    assert deployment["metadata"]["namespace"] == BOT_NS
    assert deployment["spec"]["template"]["spec"]["serviceAccountName"] == \
        account["metadata"]["name"]
    for rule in role_rules(docs):
        assert "*" not in rule["verbs"] and "*" not in rule["resources"]


def test_role_allows_exactly_what_the_adapter_uses(
        kube_emulator_factory: EmulatorFactory) -> None:
    em = kube_emulator_factory(rollout_duration=0.3)
    drive_everything(em)
    seen = em.requests
    assert seen, "the emulator recorded no requests"
    assert all(r.resource for r in seen), "the adapter should need no discovery/non-resource URLs"
    assert {r.namespace for r in seen} == {NS}

    rules = role_rules(load_documents())
    denied = [r for r in seen if not any(allowed(rule, r) for rule in rules)]
    assert not denied, "requests the Role does not allow: " + ", ".join(
        f"{r.verb} {r.group or 'core'}/{r.resource}{'/' + r.subresource if r.subresource else ''}"
        for r in denied)

    used = {(r.group, f"{r.resource}/{r.subresource}" if r.subresource else r.resource, r.verb)
            for r in seen}
    unused = grants(rules) - used
    assert not unused, f"the Role grants more than the adapter uses: {sorted(unused)}"
    # list and watch are distinct verbs; patch is not update (and the reverse)
    assert ("apps", "deployments", "watch") in used and ("apps", "deployments", "list") in used
    assert ("apps", "deployments", "update") not in used


@pytest.mark.parametrize("verb", ["update", "delete", "deletecollection", "create"])
def test_role_denies_writes_it_does_not_need(verb: str) -> None:
    rules = role_rules(load_documents())
    rec = RequestRecord("X", "/", verb, "apps", "v1", "deployments", "", NS, APP)
    assert not any(allowed(rule, rec) for rule in rules)
