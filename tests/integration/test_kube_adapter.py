"""KubernetesPlatform through the wire (official client -> emulator): pinning by ReplicaSet
name, idempotency, error mapping, watch-driven waits, scale, logs, metrics, config restore.
"""

from __future__ import annotations

import json
import threading

import pytest

from platforms.base import (
    ConfigSnapshot,
    PermanentPlatformError,
    Platform,
    RevisionNotFound,
    RolloutFailed,
    RolloutPaused,
    Target,
    TargetNotFound,
    TransientPlatformError,
    Unsupported,
    WriteConflict,
)
from platforms.kubernetes import (
    KubernetesPlatform,
    format_history,
    parse_cpu_millicores,
    parse_memory_mib,
)
from sandbox.kube import KubeEmulator
from tests.integration.kube_fixtures import EmulatorFactory

NS = "hotel"
APP = "voice-bot"
TARGET = Target("kubernetes", NS, APP, config_maps=("voice-bot-config",),
                secrets=("voice-bot-secrets",))


def seed(em: KubeEmulator, *, versions: int = 3, replicas: int = 2,
         grace: int | None = None) -> None:
    em.create_deployment(NS, APP, image="registry.local/voice-bot:1.0", replicas=replicas,
                         change_cause="release 1.0", termination_grace_period=grace)
    for minor in range(1, versions):
        em.set_image(NS, APP, image=f"registry.local/voice-bot:1.{minor}",
                     change_cause=f"release 1.{minor}")


def test_satisfies_platform_protocol(kube_platform: KubernetesPlatform) -> None:
    assert isinstance(kube_platform, Platform)
    assert kube_platform.name == "kubernetes"


def test_history_is_newest_first_with_replicaset_names(kube_emulator: KubeEmulator,
                                                       kube_platform: KubernetesPlatform) -> None:
    seed(kube_emulator)
    history = kube_platform.history(TARGET)
    assert [r.number for r in history] == [3, 2, 1]
    assert [r.current for r in history] == [True, False, False]
    assert {r.id for r in history} == {rs["metadata"]["name"]
                                       for rs in kube_emulator.replica_sets(NS, APP)}
    assert history[0].images == ("registry.local/voice-bot:1.2",)
    assert history[2].change_cause == "release 1.0"
    assert all(r.created is not None for r in history)
    assert kube_platform.current_revision(TARGET) == history[0]


def test_rollback_is_pinned_by_name_and_idempotent(kube_emulator: KubeEmulator,
                                                   kube_platform: KubernetesPlatform) -> None:
    seed(kube_emulator)
    pinned = kube_platform.history(TARGET)[2]  # release 1.0, revision 1
    result = kube_platform.rollback_to(TARGET, pinned)
    assert result.changed and result.message == f"deployment.apps/{APP} rolled back"
    patches = [r for r in kube_emulator.requests if r.verb == "patch"]
    assert [(p.resource, p.content_type) for p in patches] == \
        [("deployments", "application/json-patch+json")]
    status = kube_platform.wait_for_rollout(TARGET, timeout=10)
    assert status.done
    assert kube_emulator.current_image(NS, APP) == "registry.local/voice-bot:1.0"
    # The controller renumbered the reused ReplicaSet (1 -> 4); the name still finds it.
    current = kube_platform.current_revision(TARGET)
    assert (current.id, current.number) == (pinned.id, 4)
    again = kube_platform.rollback_to(TARGET, pinned)  # a retried step
    assert not again.changed
    assert again.message == (f"deployment.apps/{APP} skipped rollback (current template "
                             "already matches revision 4)")
    assert len([r for r in kube_emulator.requests if r.verb == "patch"]) == 1


def test_rollback_dry_run_changes_nothing(kube_emulator: KubeEmulator,
                                          kube_platform: KubernetesPlatform) -> None:
    seed(kube_emulator)
    before = kube_emulator.get_deployment(NS, APP)
    result = kube_platform.rollback_to(TARGET, kube_platform.history(TARGET)[1], dry_run=True)
    assert not result.changed
    assert result.message.endswith("rolled back (server dry run)")
    assert kube_emulator.get_deployment(NS, APP) == before
    assert [r.dry_run for r in kube_emulator.requests if r.verb == "patch"] == [True]


def test_rollback_errors(kube_emulator: KubeEmulator,
                         kube_platform: KubernetesPlatform) -> None:
    seed(kube_emulator, versions=2)
    history = kube_platform.history(TARGET)
    gone = history[1].__class__(id="voice-bot-gone", number=7)
    with pytest.raises(RevisionNotFound, match="revision 7"):
        kube_platform.rollback_to(TARGET, gone)
    with pytest.raises(TargetNotFound, match='deployments.apps "nope" not found'):
        kube_platform.rollback_to(Target("kubernetes", NS, "nope"), history[1])
    kube_emulator.pause(NS, APP)
    with pytest.raises(RolloutPaused):
        kube_platform.rollback_to(TARGET, history[1])
    with pytest.raises(RevisionNotFound, match="unable to find specified revision -1"):
        kube_platform.undo(NS, APP, to_revision=-1)


@pytest.mark.parametrize("code", [409, 429, 500, 503])
def test_transient_errors_carry_retry_after(code: int, kube_emulator: KubeEmulator,
                                            kube_platform: KubernetesPlatform) -> None:
    seed(kube_emulator, versions=2)
    kube_emulator.inject_fault(code=code, retry_after=7, verb="get", resource="deployments")
    with pytest.raises(TransientPlatformError) as info:
        kube_platform.history(TARGET)
    assert info.value.retry_after == 7.0
    assert len(kube_platform.history(TARGET)) == 2  # the fault was one-shot


def test_forbidden_is_permanent_and_unreachable_is_transient(
        kube_emulator_factory: EmulatorFactory) -> None:
    em = kube_emulator_factory()
    seed(em, versions=1)
    platform = KubernetesPlatform(api_client=em.api_client(), request_timeout=5)
    em.inject_fault(code=403, verb="list", resource="replicasets")
    with pytest.raises(PermanentPlatformError) as info:
        platform.history(TARGET)
    assert not isinstance(info.value, TargetNotFound)
    em.stop()
    with pytest.raises(TransientPlatformError):
        platform.get_replicas(TARGET)


def test_wait_for_rollout_watches_and_reports_progress(
        kube_emulator_factory: EmulatorFactory) -> None:
    em = kube_emulator_factory(rollout_duration=0.9)
    seed(em, replicas=3)
    platform = KubernetesPlatform(api_client=em.api_client())
    platform.rollback_to(TARGET, platform.history(TARGET)[1])
    seen: list[str] = []
    status = platform.wait_for_rollout(TARGET, timeout=15, on_progress=seen.append)
    assert status.done and seen[-1] == f'deployment "{APP}" successfully rolled out'
    assert any("updated replicas are available" in s or "new replicas have been updated" in s
               for s in seen)
    verbs = [(r.verb, r.resource) for r in em.requests]
    assert ("watch", "deployments") in verbs  # event-driven, not polling GETs
    assert verbs.count(("get", "deployments")) == 2  # history + rollback only


def test_wait_for_rollout_times_out_and_reports_failure(
        kube_emulator_factory: EmulatorFactory) -> None:
    em = kube_emulator_factory(rollout_duration=30)
    seed(em, versions=2)
    platform = KubernetesPlatform(api_client=em.api_client())
    platform.rollback_to(TARGET, platform.history(TARGET)[1])
    status = platform.wait_for_rollout(TARGET, timeout=1.0)
    assert not status.done and not status.failed
    assert status.message.startswith("timed out waiting for the condition")

    em2 = kube_emulator_factory(rollout_duration=0.2)
    seed(em2, versions=1)
    # The controller declares the rollout stuck only after progressDeadlineSeconds without
    # progress (600 by default): 1 s here.
    em2.update_deployment(NS, APP, lambda d: d["spec"].__setitem__("progressDeadlineSeconds", 1))
    em2.fail_next_rollout(NS, APP)
    em2.set_image(NS, APP, image="registry.local/voice-bot:broken", settle=False)
    platform2 = KubernetesPlatform(api_client=em2.api_client())
    failed = platform2.wait_for_rollout(TARGET, timeout=10)
    assert failed.failed and "exceeded its progress deadline" in failed.message
    with pytest.raises(RolloutFailed):
        platform2.rollout_status(TARGET, raise_on_failure=True)


def test_scale_uses_the_scale_subresource(kube_emulator: KubeEmulator,
                                          kube_platform: KubernetesPlatform) -> None:
    seed(kube_emulator, versions=1, replicas=3, grace=1)
    assert kube_platform.get_replicas(TARGET) == 3
    kube_platform.scale(TARGET, 0)
    assert kube_platform.get_replicas(TARGET) == 0
    # Like kubectl, a scale-down is "rolled out" at once; pods terminate afterwards.
    assert kube_platform.wait_for_rollout(TARGET, timeout=10).done
    kube_emulator.wait_settled(NS, APP)
    assert len(kube_emulator.terminating_pods(NS, APP)) == 3
    assert kube_platform.wait_for_stopped(TARGET, timeout=10).done
    assert kube_emulator.deployment_pods(NS, APP) == []
    kube_platform.scale(TARGET, 3)
    assert kube_platform.wait_for_rollout(TARGET, timeout=10).done
    assert len(kube_emulator.deployment_pods(NS, APP)) == 3
    scale_calls = {(r.verb, r.subresource) for r in kube_emulator.requests
                   if r.resource == "deployments" and r.subresource}
    assert scale_calls == {("get", "scale"), ("patch", "scale")}
    with pytest.raises(PermanentPlatformError):
        kube_platform.scale(TARGET, -1)


def test_logs_tail_and_resource_usage(kube_emulator: KubeEmulator,
                                      kube_platform: KubernetesPlatform) -> None:
    seed(kube_emulator, versions=1, replicas=2)
    for n in range(5):
        kube_emulator.log(NS, APP, f"request {n} served")
    logs = kube_platform.logs_tail(TARGET, lines=2)
    assert logs is not None
    lines = logs.splitlines()
    assert len(lines) == 4 and all(line.startswith(f"[pod/{APP}-") for line in lines)
    assert lines[-1].endswith("request 4 served")
    kube_emulator.inject_fault(code=403, resource="pods", subresource="log")
    with pytest.raises(Unsupported, match="RBAC"):
        kube_platform.logs_tail(TARGET)

    kube_emulator.set_usage(NS, cpu="250m", memory="128Mi")
    usage = kube_platform.resource_usage(TARGET)
    assert [(u.cpu_millicores, u.memory_mib) for u in usage] == [(250.0, 128.0)] * 2
    kube_emulator.inject_fault(code=404, group="metrics.k8s.io")
    with pytest.raises(Unsupported, match="metrics.k8s.io unavailable"):
        kube_platform.resource_usage(TARGET)  # unknown, not "no pods": the check skips


def test_quantities() -> None:
    assert parse_cpu_millicores("250m") == 250.0
    assert parse_cpu_millicores("2") == 2000.0
    assert parse_cpu_millicores("1500000n") == pytest.approx(1.5)
    assert parse_memory_mib("128Mi") == 128.0
    assert parse_memory_mib("1Gi") == 1024.0
    assert parse_memory_mib("1G") == pytest.approx(953.674, rel=1e-4)
    with pytest.raises(PermanentPlatformError):
        parse_memory_mib("lots")


def test_config_snapshot_and_restore(kube_emulator: KubeEmulator,
                                     kube_platform: KubernetesPlatform) -> None:
    seed(kube_emulator, versions=1)
    kube_emulator.create_config_map(NS, "voice-bot-config", {"MODEL": "v1", "LANG": "en"})
    kube_emulator.create_secret(NS, "voice-bot-secrets", {"API_KEY": "s3cret"})
    snapshot = kube_platform.snapshot_config(TARGET)
    saved = snapshot.items["configmap/voice-bot-config"]
    assert "resourceVersion" not in saved["metadata"] and "uid" not in saved["metadata"]
    restored = ConfigSnapshot.from_dict(snapshot.to_dict())  # what the store persists

    kube_emulator.clear_requests()
    assert kube_platform.restore_config(TARGET, restored) is False
    assert not [r for r in kube_emulator.requests if r.verb in ("update", "create")]

    kube_emulator.store.mutate("configmaps", NS, "voice-bot-config",
                               lambda o: o["data"].update(MODEL="v2"), actor="client")
    kube_emulator.store.delete("secrets", NS, "voice-bot-secrets")
    assert kube_platform.restore_config(TARGET, restored) is True
    assert kube_emulator.store.get("configmaps", NS, "voice-bot-config")["data"]["MODEL"] == "v1"
    assert kube_emulator.store.get("secrets", NS, "voice-bot-secrets")["data"] == \
        {"API_KEY": "czNjcmV0"}
    assert kube_platform.restore_config(TARGET, restored) is False
    with pytest.raises(TargetNotFound):
        kube_platform.snapshot_config(Target("kubernetes", NS, APP, config_maps=("absent",)))


def test_target_options_select_kubeconfig_and_context(kube_emulator_factory: EmulatorFactory,
                                                      tmp_path: object) -> None:
    from pathlib import Path

    em = kube_emulator_factory()
    seed(em, versions=2)
    config = em.write_kubeconfig(Path(str(tmp_path)) / "kubeconfig", context="lab")
    platform = KubernetesPlatform(kubeconfig=str(config), context="lab")
    assert platform.current_revision(TARGET).number == 2
    other = Target("kubernetes", NS, APP, options={"kubeconfig": str(config), "context": "lab"})
    assert KubernetesPlatform(in_cluster=False, kubeconfig=str(config)).history(other)
    with pytest.raises(PermanentPlatformError, match="kubeconfig"):
        KubernetesPlatform(kubeconfig=str(config), context="missing").history(TARGET)
    built = KubernetesPlatform.from_config(kubeconfig=str(config), context="lab")
    assert built.current_revision(TARGET).number == 2
    with pytest.raises(PermanentPlatformError):  # no credentials: fail at wiring time
        KubernetesPlatform.from_config(kubeconfig=str(Path(str(tmp_path)) / "absent"))
    with pytest.raises(PermanentPlatformError, match="in-cluster"):
        KubernetesPlatform.from_config(in_cluster=True)


def test_format_history_without_revisions() -> None:
    assert format_history("x", []) == "deployment.apps/x \nNo rollout history found.\n"


def test_concurrent_rollbacks_are_safe(kube_emulator: KubeEmulator,
                                       kube_platform: KubernetesPlatform) -> None:
    """Two executors decide on the same read and race their PATCHes: the first lands, the
    second's fence fails (WriteConflict) and its retry re-reads and finds the work done.
    One rollout, never two, and the loser does not error out."""
    seed(kube_emulator)
    pinned = kube_platform.history(TARGET)[1]
    expected = kube_platform.current_revision(TARGET)
    generation = kube_emulator.get_deployment(NS, APP)["metadata"]["generation"]
    # Both PATCHes are held until both are in flight: both were decided on the same read.
    kube_emulator.inject_fault(code=None, delay=30, times=2, verb="patch",
                               resource="deployments")
    results: list[bool] = []
    conflicts: list[WriteConflict] = []

    def executor() -> None:
        for _ in range(3):  # what the executor's retry does: call again, which re-reads
            try:
                results.append(kube_platform.rollback_to(TARGET, pinned,
                                                         expected=expected).changed)
                return
            except WriteConflict as exc:
                conflicts.append(exc)

    threads = [threading.Thread(target=executor) for _ in range(2)]
    for t in threads:
        t.start()
    for held in kube_emulator.wait_held(2):
        held.release()
    for t in threads:
        t.join(timeout=20)
    assert sorted(results) == [False, True]
    assert len(conflicts) == 1 and "changed after it was read" in str(conflicts[0])
    answers = sorted((h.code, h.reason) for h in kube_emulator.held_requests)
    assert answers == [(200, ""), (422, "Invalid")]
    assert kube_emulator.get_deployment(NS, APP)["metadata"]["generation"] == generation + 1
    assert kube_platform.wait_for_rollout(TARGET, timeout=10).done
    assert kube_platform.current_revision(TARGET).id == pinned.id


def test_emulator_wire_protocol_with_the_official_client(kube_emulator: KubeEmulator) -> None:
    """Patch flavours, scale PUT, dry-run, conflicts, selectors and expired watches, all
    deserialised by the client's own models."""
    from kubernetes import client, watch
    from kubernetes.client.exceptions import ApiException

    seed(kube_emulator, versions=1)
    api = kube_emulator.api_client()
    apps, core = client.AppsV1Api(api), client.CoreV1Api(api)

    merged = apps.patch_namespaced_deployment(
        APP, NS, {"metadata": {"labels": {"team": "voice"}}},
        _content_type="application/merge-patch+json")
    assert merged.metadata.labels == {"app": APP, "team": "voice"}
    smp = apps.patch_namespaced_deployment(APP, NS, {"spec": {"template": {"spec": {
        "containers": [{"name": "app", "env": [{"name": "MODE", "value": "safe"}]}]}}}})
    container = smp.spec.template.spec.containers[0]
    assert (container.image, container.env[0].value) == ("registry.local/voice-bot:1.0", "safe")

    kube_emulator.wait_settled(NS, APP)  # else the controller's status writes bump the rv
    scale = apps.read_namespaced_deployment_scale(APP, NS)
    assert scale.status.selector == "app=voice-bot"
    scale.spec.replicas = 4
    assert apps.replace_namespaced_deployment_scale(APP, NS, scale).spec.replicas == 4
    dry = apps.patch_namespaced_deployment_scale(APP, NS, {"spec": {"replicas": 9}},
                                                 dry_run="All")
    assert dry.spec.replicas == 9 and apps.read_namespaced_deployment(APP, NS).spec.replicas == 4

    stale = apps.read_namespaced_deployment(APP, NS)
    apps.patch_namespaced_deployment(APP, NS, {"metadata": {"labels": {"x": "1"}}})
    with pytest.raises(ApiException) as conflict:
        apps.replace_namespaced_deployment(APP, NS, stale)
    assert conflict.value.status == 409
    with pytest.raises(ApiException) as missing:
        apps.read_namespaced_deployment("absent", NS)
    assert missing.value.status == 404
    assert json.loads(str(missing.value.body))["message"] == 'deployments.apps "absent" not found'

    kube_emulator.wait_settled(NS, APP)
    pods = core.list_namespaced_pod(NS, label_selector="app=voice-bot,pod-template-hash")
    replicas = [p for p in pods.items if p.metadata.deletion_timestamp is None]
    assert len(replicas) == 4 and all(p.status.phase == "Running" for p in replicas)
    # The rollout the patch started retired the old pods: still listed, Terminating, for the
    # template's default terminationGracePeriodSeconds.
    retired = [p for p in pods.items if p.metadata.deletion_timestamp is not None]
    assert retired and all(p.metadata.deletion_grace_period_seconds == 30 for p in retired)
    assert core.list_namespaced_pod(NS, label_selector="app notin (voice-bot)").items == []

    with pytest.raises(ApiException) as gone:
        for _ in watch.Watch().stream(apps.list_namespaced_deployment, NS,
                                      resource_version="1", timeout_seconds=2):
            pass
    assert gone.value.status == 410
