"""``wait_for_stopped`` and ``confirm_running`` through the wire (official client -> emulator),
with real kubectl as the oracle for what the cluster shows, and the emulator's graceful pod
termination both depend on: a deleted pod stays listed as Terminating for its grace period.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

import pytest
from kubernetes import client, watch

from platforms.base import Revision, RolloutStatus, Target, TargetNotFound
from platforms.kubernetes import KubernetesPlatform
from sandbox.kube import KubeEmulator
from tests.integration.kube_fixtures import EmulatorFactory, Kubectl
from tests.integration.test_rbac import allowed, load_documents, role_rules

NS = "shop"
APP = "web"
IMAGE = "registry.local/web"
TARGET = Target("kubernetes", NS, APP)


STOP_GRACE = 6  # seconds of termination grace in the stop-wait test


def seed(em: KubeEmulator, *, versions: int = 1, replicas: int = 3, grace: int = 2) -> None:
    em.create_deployment(NS, APP, image=f"{IMAGE}:1.0", replicas=replicas,
                         change_cause="deploy 1.0", termination_grace_period=grace)
    for minor in range(1, versions):
        em.set_image(NS, APP, image=f"{IMAGE}:1.{minor}", change_cause=f"deploy 1.{minor}")


def platform_for(em: KubeEmulator) -> KubernetesPlatform:
    return KubernetesPlatform(api_client=em.api_client(), request_timeout=10.0)


def kubectl_pods(kubectl: Kubectl, em: KubeEmulator) -> dict[str, str]:
    """``kubectl get pods``: pod name -> STATUS column."""
    proc = kubectl.run(em, "get", "pods", "-n", NS, "-l", f"app={APP}", "--no-headers")
    assert proc.returncode == 0, proc.stderr
    return {line.split()[0]: line.split()[2] for line in proc.stdout.splitlines() if line}


def kubectl_get(kubectl: Kubectl, em: KubeEmulator, *args: str) -> str:
    proc = kubectl.run(em, "get", *args, "-n", NS)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


@dataclass
class StopWait:
    """``wait_for_stopped`` on a thread, recording when it returned and what the API listed
    at that moment."""

    platform: KubernetesPlatform
    api: Any
    timeout: float
    progress: list[str] = field(default_factory=list)
    result: RolloutStatus | None = None
    returned_at: float = 0.0
    pods_at_return: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        self.result = self.platform.wait_for_stopped(TARGET, timeout=self.timeout,
                                                     on_progress=self.progress.append)
        self.returned_at = time.monotonic()
        listed = client.CoreV1Api(self.api).list_namespaced_pod(NS, label_selector=f"app={APP}")
        self.pods_at_return = [p.metadata.name for p in listed.items]

    def join(self) -> RolloutStatus:
        self.thread.join(self.timeout + 10)
        assert self.result is not None, "wait_for_stopped did not return"
        return self.result


# ----------------------------------------------------------------------- wait_for_stopped
def test_wait_for_stopped_returns_only_once_the_last_pod_is_gone(
        kubectl: Kubectl, kube_emulator_factory: EmulatorFactory) -> None:
    em = kube_emulator_factory()
    # Long enough that the checks below (kubectl runs while the adapter waits) finish
    # inside the grace period even on a loaded machine.
    seed(em, grace=STOP_GRACE)
    platform = platform_for(em)
    api = em.api_client()
    em.clear_requests()
    platform.scale(TARGET, 0)
    scaled_at = time.monotonic()
    waiter = StopWait(platform, api, timeout=STOP_GRACE + 20)

    em.wait_settled(NS, APP)  # the ReplicaSet controller has deleted every pod
    shown = kubectl_pods(kubectl, em)  # while the adapter waits
    assert waiter.thread.is_alive() and waiter.result is None
    assert sorted(shown.values()) == ["Terminating"] * 3, shown
    # Terminating pods are no replicas: the Deployment already reads 0/0.
    assert kubectl_get(kubectl, em, "deployment", APP, "--no-headers").split()[1:4] == \
        ["0/0", "0", "0"]

    status = waiter.join()
    assert status.done and not status.failed
    assert status.message == f'all pods of deployment "{APP}" are gone'
    assert waiter.pods_at_return == []  # nothing left the moment it returned ...
    assert waiter.returned_at - scaled_at >= STOP_GRACE  # ... and not before the grace ran out
    assert kubectl_pods(kubectl, em) == {}
    assert "3 pods still terminating" in waiter.progress
    assert waiter.progress[-2:] == ["1 pod still terminating", status.message]
    pod_calls = [r.verb for r in em.requests if r.resource == "pods"]
    # Event-driven: one list and one watch; the other lists are kubectl's two and ours.
    assert pod_calls.count("watch") == 1 and pod_calls.count("list") == 1 + 2 + 1
    api.close()


def test_wait_for_stopped_ignores_pods_in_a_terminal_phase(
        kubectl: Kubectl, kube_emulator_factory: EmulatorFactory) -> None:
    """An evicted pod (phase Failed) or a finished migration Job pod (Succeeded) with the
    app's labels stays listed for a long time on a real cluster; it runs nothing."""
    em = kube_emulator_factory()
    seed(em, grace=1)
    core = client.CoreV1Api(em.api_client())
    for name, phase in (("web-migrate-1", "Succeeded"), ("web-evicted-1", "Failed")):
        core.create_namespaced_pod(NS, {
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "labels": {"app": APP}},
            "spec": {"containers": [{"name": "c", "image": f"{IMAGE}:1.0"}]}})
        em.store.mutate("pods", NS, name,
                        lambda pod, phase=phase: pod.setdefault("status", {}).update(
                            phase=phase), actor="kubelet")
    platform = platform_for(em)
    platform.scale(TARGET, 0)
    status = platform.wait_for_stopped(TARGET, timeout=15)
    assert status.done, status.message
    shown = kubectl_pods(kubectl, em)
    assert set(shown) == {"web-migrate-1", "web-evicted-1"}, shown  # still listed


def test_wait_for_stopped_times_out_while_pods_are_still_terminating(
        kubectl: Kubectl, kube_emulator_factory: EmulatorFactory) -> None:
    em = kube_emulator_factory()
    seed(em, grace=30)
    platform = platform_for(em)
    platform.scale(TARGET, 0)
    em.wait_settled(NS, APP)
    started = time.monotonic()
    status = platform.wait_for_stopped(TARGET, timeout=1.0)
    assert time.monotonic() - started < 5
    assert not status.done and not status.failed
    assert status.message.startswith(
        f'timed out after 1s waiting for the pods of deployment "{APP}" to stop: '
        "3 pods still terminating (web-")
    shown = kubectl_pods(kubectl, em)
    assert sorted(shown.values()) == ["Terminating"] * 3
    assert all(name in status.message for name in shown)


def test_wait_for_stopped_refuses_a_deployment_that_wants_pods(
        kube_emulator_factory: EmulatorFactory) -> None:
    em = kube_emulator_factory()
    seed(em, grace=1, replicas=2)
    platform = platform_for(em)
    status = platform.wait_for_stopped(TARGET, timeout=10)
    assert not status.done
    assert status.message == f'deployment "{APP}" is scaled to 2 replicas: its pods will not stop'
    with pytest.raises(TargetNotFound):
        platform.wait_for_stopped(Target("kubernetes", NS, "nope"), timeout=1)


# --------------------------------------------------------------- emulator: pod termination
def test_pod_deletion_is_graceful_on_the_wire(kubectl: Kubectl,
                                              kube_emulator_factory: EmulatorFactory) -> None:
    """kubectl delete: MODIFIED (deletionTimestamp, grace from the pod spec), still listed as
    Terminating, DELETED once the grace period ran out; the ReplicaSet replaces the pod at
    once; grace 0 (--force) removes a pod immediately."""
    em = kube_emulator_factory(rollout_duration=0.3)
    seed(em, grace=1, replicas=2)
    api = em.api_client()
    core = client.CoreV1Api(api)
    listed = core.list_namespaced_pod(NS, label_selector=f"app={APP}")
    first, second = sorted(p.metadata.name for p in listed.items)
    events: list[tuple[float, str, Any]] = []

    def collect() -> None:
        stream = watch.Watch()
        for event in stream.stream(core.list_namespaced_pod, NS,
                                   resource_version=listed.metadata.resource_version,
                                   field_selector=f"metadata.name={first}", timeout_seconds=10):
            events.append((time.monotonic(), event["type"], event["object"].metadata))
            if event["type"] == "DELETED":
                stream.stop()

    watcher = threading.Thread(target=collect, daemon=True)
    watcher.start()
    deleted = kubectl.run(em, "delete", "pod", first, "-n", NS, "--wait=false")
    assert deleted.returncode == 0 and deleted.stdout.strip() == f'pod "{first}" deleted'
    pod = core.read_namespaced_pod(first, NS)
    assert pod.metadata.deletion_timestamp is not None
    assert pod.metadata.deletion_grace_period_seconds == 1
    assert kubectl_pods(kubectl, em)[first] == "Terminating"

    watcher.join(15)
    kinds = [kind for _, kind, _ in events]
    assert kinds[0] == "MODIFIED" and kinds[-1] == "DELETED", kinds
    assert events[0][2].deletion_timestamp is not None
    assert events[-1][0] - events[0][0] >= 0.9  # removed when the grace period elapsed

    em.wait_settled(NS, APP)  # the ReplicaSet replaced the pod
    replaced = kubectl_pods(kubectl, em)
    assert first not in replaced and second in replaced
    assert sorted(replaced.values()) == ["Running", "Running"]

    forced = kubectl.run(em, "delete", "pod", second, "-n", NS, "--grace-period=0", "--force")
    assert forced.returncode == 0, forced.stderr
    assert second not in {p.metadata.name for p in core.list_namespaced_pod(NS).items}
    api.close()


# ----------------------------------------------------------------------- confirm_running
def pinned_revision(platform: KubernetesPlatform, image: str) -> Revision:
    return next(r for r in platform.history(TARGET) if r.images == (image,))


def test_confirm_running_after_an_undo(kubectl: Kubectl,
                                       kube_emulator_factory: EmulatorFactory) -> None:
    em = kube_emulator_factory()
    seed(em, versions=3, grace=1)
    platform = platform_for(em)
    pinned = pinned_revision(platform, f"{IMAGE}:1.1")
    assert platform.rollback_to(TARGET, pinned).changed
    assert platform.wait_for_rollout(TARGET, timeout=15).done

    check = platform.confirm_running(TARGET, pinned)
    assert check.matches, check
    assert check.running == f"ReplicaSet {pinned.id} (revision 4: {IMAGE}:1.1)"
    assert check.detail == f'deployment "{APP}" runs ReplicaSet {pinned.id} on all 3 replicas, ' \
        "all available"
    assert kubectl_get(kubectl, em, "deployment", APP, "-o",
                       "jsonpath={.spec.template.spec.containers[0].image}") == f"{IMAGE}:1.1"
    assert kubectl_get(kubectl, em, "rs", pinned.id, "-o",
                       "jsonpath={.status.availableReplicas}") == "3"


def test_confirm_running_sees_another_actors_change(
        kubectl: Kubectl, kube_emulator_factory: EmulatorFactory) -> None:
    em = kube_emulator_factory(rollout_duration=0.6)
    seed(em, versions=3, grace=1)
    platform = platform_for(em)
    pinned = pinned_revision(platform, f"{IMAGE}:1.0")
    assert platform.rollback_to(TARGET, pinned).changed
    # Mid-rollout, someone else ships a third image.
    proc = kubectl.run(em, "set", "image", f"deployment/{APP}", f"app={IMAGE}:9.9", "-n", NS)
    assert proc.returncode == 0, proc.stderr
    assert platform.wait_for_rollout(TARGET, timeout=15).done

    check = platform.confirm_running(TARGET, pinned)
    assert not check.matches
    by_image = dict(line.split("=", 1)[::-1] for line in kubectl_get(
        kubectl, em, "rs", "-l", f"app={APP}", "-o", "jsonpath={range .items[*]}"
        "{.metadata.name}={.spec.template.spec.containers[0].image}{'\\n'}{end}").split())
    actual = by_image[f"{IMAGE}:9.9"]
    assert check.running.startswith(f"ReplicaSet {actual} (revision ")
    assert check.running.endswith(f": {IMAGE}:9.9)")
    assert f"no longer that of the pinned ReplicaSet {pinned.id}" in check.detail
    assert f"{IMAGE}:1.0" in check.detail


def test_confirm_running_reports_counts_when_pods_are_not_available(
        kubectl: Kubectl, kube_emulator_factory: EmulatorFactory) -> None:
    em = kube_emulator_factory(rollout_duration=0.3)
    seed(em, versions=2, grace=1)
    platform = platform_for(em)
    pinned = pinned_revision(platform, f"{IMAGE}:1.0")
    # Stuck after 1 s without progress (progressDeadlineSeconds; 600 by default).
    em.update_deployment(NS, APP, lambda d: d["spec"].__setitem__("progressDeadlineSeconds", 1))
    em.fail_next_rollout(NS, APP)  # its pods crash-loop, never ready
    assert platform.rollback_to(TARGET, pinned).changed
    assert platform.wait_for_rollout(TARGET, timeout=15).failed

    check = platform.confirm_running(TARGET, pinned)
    assert not check.matches
    counts = kubectl_get(kubectl, em, "deployment", APP, "-o", "jsonpath="
                         "{.spec.replicas} {.status.updatedReplicas} "
                         "{.status.availableReplicas} {.status.replicas}").split()
    desired, updated, available, total = counts
    assert (desired, updated, available, total) == ("3", "1", "3", "4")
    assert (f"not complete: {updated} of {desired} replicas updated, {available} available, "
            f"{total} in total") in check.detail
    # What runs: the pinned ReplicaSet's template, but most pods are still on the old one.
    assert check.running.startswith(f"ReplicaSet {pinned.id} (revision 3: {IMAGE}:1.0); "
                                    f"pods: 1 on {pinned.id}, 3 on ")
    assert f"{IMAGE}:1.1" in check.running


def test_confirm_running_when_the_pinned_replicaset_is_gone(
        kube_emulator_factory: EmulatorFactory) -> None:
    em = kube_emulator_factory()
    seed(em, versions=2, grace=1)
    platform = platform_for(em)
    check = platform.confirm_running(TARGET, Revision(id="web-gone", number=1))
    assert not check.matches
    assert "the pinned ReplicaSet web-gone no longer exists" in check.detail
    assert check.running.endswith(f": {IMAGE}:1.1)")


# -------------------------------------------------------------------------------- RBAC
def test_the_role_allows_stop_and_confirm(kube_emulator_factory: EmulatorFactory) -> None:
    em = kube_emulator_factory()
    em.create_deployment("production", APP, image=f"{IMAGE}:1.0", replicas=2,
                         termination_grace_period=1)
    em.set_image("production", APP, image=f"{IMAGE}:1.1")
    platform = platform_for(em)
    target = Target("kubernetes", "production", APP)
    current = platform.current_revision(target)
    em.clear_requests()
    assert platform.confirm_running(target, current).matches
    platform.scale(target, 0)
    assert platform.wait_for_stopped(target, timeout=10).done
    rules = role_rules(load_documents())
    denied = [r for r in em.requests if not any(allowed(rule, r) for rule in rules)]
    assert not denied, [(r.verb, r.resource, r.subresource) for r in denied]
    assert {(r.verb, r.resource) for r in em.requests} >= {("watch", "pods"), ("list", "pods")}
