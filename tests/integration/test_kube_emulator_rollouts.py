"""The Kubernetes emulator fails the way a cluster does, seen through the real kubectl:
strategy budgets, Recreate, minReadySeconds, crash loops and pull failures, the progress
deadline and its recovery by undo, history cleanup, ``kubectl apply`` validation, events.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path
from typing import Any

from sandbox.kube import KubeEmulator
from sandbox.kube.store import WatchEvent
from tests.integration.kube_fixtures import EmulatorFactory, Kubectl
from tests.support.waiting import wait_until

NS = "shop"
APP = "web"
IMAGE = "registry.local/web"
WAITING = f'Waiting for deployment "{APP}" rollout to finish: '
DONE = f'deployment "{APP}" successfully rolled out'
DEADLINE = f'error: deployment "{APP}" exceeded its progress deadline'


def dedupe(lines: list[str]) -> list[str]:
    out: list[str] = []
    for line in lines:
        if not out or out[-1] != line:
            out.append(line)
    return out


class Recorder:
    """Every Deployment status and every pod write the emulator commits, in order."""

    def __init__(self, em: KubeEmulator) -> None:
        self.lock = threading.Lock()
        self.statuses: list[dict[str, Any]] = []
        self.pod_events: list[tuple[float, str, WatchEvent]] = []
        em.store.add_listener(self._seen)

    def _seen(self, event: WatchEvent, actor: str) -> None:
        with self.lock:
            if event.key == "apps/deployments":
                self.statuses.append(dict(event.obj.get("status") or {}))
            elif event.key == "pods":
                self.pod_events.append((time.monotonic(), event.type, event))


def active_pods(em: KubeEmulator) -> list[dict[str, Any]]:
    return [p for p in em.deployment_pods(NS, APP) if not p["metadata"].get("deletionTimestamp")]


def kubectl_ok(kubectl: Kubectl, em: KubeEmulator, *args: str) -> str:
    proc = kubectl.run(em, *args, "-n", NS)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def condition(em: KubeEmulator, ctype: str) -> dict[str, Any]:
    conds = em.get_deployment(NS, APP).get("status", {}).get("conditions") or []
    return next(c for c in conds if c["type"] == ctype)


# --------------------------------------------------------------------- strategies
def test_max_surge_zero_rollout_as_kubectl_reports_it(
        kubectl: Kubectl, kube_emulator_factory: EmulatorFactory) -> None:
    """replicas=4, maxSurge=0, maxUnavailable=25% (1): never a 5th running pod, never fewer
    than 3 available; kubectl's rollout status walks through every new replica."""
    # observe_delay: kubectl attaches before the controller notices the new template.
    em = kube_emulator_factory(rollout_duration=1.2, observe_delay=3.0)
    em.create_deployment(NS, APP, image=f"{IMAGE}:1.0", replicas=4, termination_grace_period=1,
                         strategy={"rollingUpdate": {"maxSurge": 0, "maxUnavailable": "25%"}})
    rec = Recorder(em)
    most_active = [len(active_pods(em))]

    def count(event: WatchEvent, actor: str) -> None:
        if event.key == "pods":
            most_active[0] = max(most_active[0], len(active_pods(em)))

    em.store.add_listener(count)
    em.set_image(NS, APP, image=f"{IMAGE}:2.0", settle=False)
    watcher = kubectl.popen(em, "rollout", "status", f"deployment/{APP}", "-n", NS,
                            "--timeout=60s")
    out, err = watcher.communicate(timeout=90)
    assert watcher.returncode == 0, err
    assert dedupe(out.strip().splitlines()) == [
        "Waiting for deployment spec update to be observed...",
        f"{WAITING}0 out of 4 new replicas have been updated...",
        f"{WAITING}1 out of 4 new replicas have been updated...",
        f"{WAITING}2 out of 4 new replicas have been updated...",
        f"{WAITING}3 out of 4 new replicas have been updated...",
        f"{WAITING}3 of 4 updated replicas are available...",
        DONE,
    ]
    assert most_active[0] == 4
    assert min(int(s.get("availableReplicas") or 0) for s in rec.statuses) == 3
    assert max(int(s.get("replicas") or 0) for s in rec.statuses) == 4
    assert condition(em, "Available")["status"] == "True"
    scaling = kubectl_ok(kubectl, em, "get", "events", "--field-selector",
                         "reason=ScalingReplicaSet", "-o", "jsonpath={.items[*].message}")
    assert "Scaled down replica set" in scaling and "from 4 to 3" in scaling


def test_default_surge_keeps_every_replica_available(
        kube_emulator_factory: EmulatorFactory) -> None:
    """25%/25% of 3: surge 1 (rounded up), unavailable 0 (rounded down): an old ready pod
    goes only once a new one is available, so availability never dips (the old emulator
    dropped to 2 and Available=False)."""
    em = kube_emulator_factory(rollout_duration=0.6)
    em.create_deployment(NS, APP, image=f"{IMAGE}:1.0", replicas=3)
    rec = Recorder(em)
    em.set_image(NS, APP, image=f"{IMAGE}:2.0", settle=False)
    em.wait_settled(NS, APP)
    assert min(int(s.get("availableReplicas") or 0) for s in rec.statuses) == 3
    assert max(int(s.get("replicas") or 0) for s in rec.statuses) == 4
    assert all(c["status"] == "True" for s in rec.statuses for c in s.get("conditions") or []
               if c["type"] == "Available")


def test_scaling_a_stuck_rollout_is_proportional(kube_emulator: KubeEmulator) -> None:
    """The documented example (kubernetes.io, Deployments, "Proportional scaling"): 10
    replicas, maxSurge 3, maxUnavailable 2, a broken image leaves 8 old + 5 new; scaling to
    15 adds 3 to the old ReplicaSet and 2 to the new one."""
    em = kube_emulator
    em.create_deployment(NS, APP, image=f"{IMAGE}:1.0", replicas=10,
                         strategy={"rollingUpdate": {"maxSurge": 3, "maxUnavailable": 2}})
    em.set_image(NS, APP, image=f"{IMAGE}:crash-2.0")

    def sizes() -> dict[str, int]:
        return {rs["spec"]["template"]["spec"]["containers"][0]["image"]: rs["spec"]["replicas"]
                for rs in em.replica_sets(NS, APP)}

    assert sizes() == {f"{IMAGE}:1.0": 8, f"{IMAGE}:crash-2.0": 5}
    em.update_deployment(NS, APP, lambda d: d["spec"].__setitem__("replicas", 15))
    assert sizes() == {f"{IMAGE}:1.0": 11, f"{IMAGE}:crash-2.0": 7}
    annotations = [rs["metadata"]["annotations"] for rs in em.replica_sets(NS, APP)]
    assert {(a["deployment.kubernetes.io/desired-replicas"],
             a["deployment.kubernetes.io/max-replicas"]) for a in annotations} == {("15", "18")}


def test_recreate_starts_new_pods_only_after_the_old_ones_are_gone(
        kubectl: Kubectl, kube_emulator_factory: EmulatorFactory) -> None:
    em = kube_emulator_factory(rollout_duration=0.3)
    em.create_deployment(NS, APP, image=f"{IMAGE}:1.0", replicas=2, termination_grace_period=1,
                         strategy={"type": "Recreate"})
    old = {p["metadata"]["name"] for p in em.deployment_pods(NS, APP)}
    rec = Recorder(em)
    kubectl_ok(kubectl, em, "set", "image", f"deployment/{APP}", f"app={IMAGE}:2.0")
    status = kubectl.run(em, "rollout", "status", f"deployment/{APP}", "-n", NS,
                         "--timeout=30s")
    assert status.returncode == 0 and status.stdout.strip().endswith(DONE), status.stderr
    gone = [t for t, kind, e in rec.pod_events
            if kind == "DELETED" and e.obj["metadata"]["name"] in old]
    born = [t for t, kind, e in rec.pod_events
            if kind == "ADDED" and e.obj["metadata"]["name"] not in old]
    assert len(gone) == 2 and len(born) == 2
    # recreate.go oldPodsRunning: Terminating pods still count as running.
    assert min(born) >= max(gone)


def test_min_ready_seconds_delays_availability(kube_emulator_factory: EmulatorFactory) -> None:
    em = kube_emulator_factory(rollout_duration=0.2)
    em.create_deployment(NS, APP, image=f"{IMAGE}:1.0", replicas=1, min_ready_seconds=2)
    ready_at: list[float] = []
    available_at: list[float] = []

    def seen(event: WatchEvent, actor: str) -> None:
        obj = event.obj
        if event.key == "pods" and any(c["type"] == "Ready" and c["status"] == "True"
                                       for c in obj.get("status", {}).get("conditions") or []):
            ready_at.append(time.monotonic())
        if event.key == "apps/replicasets" and obj["spec"]["template"]["spec"]["containers"][0][
                "image"].endswith(":2.0") and obj.get("status", {}).get("availableReplicas"):
            available_at.append(time.monotonic())

    em.store.add_listener(seen)
    em.set_image(NS, APP, image=f"{IMAGE}:2.0", settle=False)
    em.wait_settled(NS, APP, timeout=15)
    assert ready_at and available_at
    # Available once Ready for 2 s by the whole-second Ready timestamp: 1 to 3 s later.
    assert 1.0 <= available_at[0] - ready_at[0] < 3.5


def test_a_deleted_replicaset_is_recreated_and_its_pods_collected(
        kubectl: Kubectl, kube_emulator_factory: EmulatorFactory) -> None:
    em = kube_emulator_factory(rollout_duration=0.3)
    em.create_deployment(NS, APP, image=f"{IMAGE}:1.0", replicas=2, termination_grace_period=1)
    (rs,) = em.replica_sets(NS, APP)
    old_pods = {p["metadata"]["name"] for p in em.deployment_pods(NS, APP)}
    kubectl_ok(kubectl, em, "delete", "rs", rs["metadata"]["name"], "--wait=false")
    wait_until(lambda: [r for r in em.replica_sets(NS, APP)
                        if r["metadata"]["uid"] != rs["metadata"]["uid"]],
               timeout=10, message="a new ReplicaSet")
    status = kubectl.run(em, "rollout", "status", f"deployment/{APP}", "-n", NS,
                         "--timeout=30s")
    assert status.returncode == 0, status.stderr
    pods = kubectl_ok(kubectl, em, "get", "pods", "-o",
                      "jsonpath={range .items[*]}{.metadata.name}={.metadata.deletionTimestamp}"
                      "{'\\n'}{end}").split()
    # The old pods were deleted (Terminating, then gone), two new ones run.
    assert all(line.split("=")[1] for line in pods if line.split("=")[0] in old_pods)
    assert len([line for line in pods if line.split("=")[0] not in old_pods]) == 2


# ----------------------------------------------------------- failures and deadline
def test_crash_loop_hits_the_progress_deadline_then_undo_converges(
        kubectl: Kubectl, kube_emulator_factory: EmulatorFactory) -> None:
    em = kube_emulator_factory(rollout_duration=0.3)
    em.create_deployment(NS, APP, image=f"{IMAGE}:1.0", replicas=3, progress_deadline=2,
                         termination_grace_period=1, change_cause="deploy 1.0")
    em.set_image(NS, APP, image=f"{IMAGE}:crash-1.1", change_cause="deploy 1.1",
                 settle=False)
    stuck = kubectl.run(em, "rollout", "status", f"deployment/{APP}", "-n", NS,
                        "--timeout=30s")
    assert stuck.returncode == 1
    assert stuck.stderr.strip() == DEADLINE
    assert stuck.stdout.strip().splitlines()[-1] == \
        f"{WAITING}1 out of 3 new replicas have been updated..."
    progressing = condition(em, "Progressing")
    assert (progressing["status"], progressing["reason"]) == ("False",
                                                             "ProgressDeadlineExceeded")
    assert progressing["message"].endswith("has timed out progressing.")
    # The surge pod crash-loops; the three old ones were never touched (maxUnavailable 0).
    # Between back-offs the crashing container runs for a moment (STATUS Running, as on a
    # cluster), so wait for kubectl to catch it in its back-off rather than snapshot once.
    def pod_rows() -> list[list[str]]:
        return [line.split() for line in kubectl_ok(kubectl, em, "get", "pods",
                                                    "--no-headers").splitlines()]

    rows = wait_until(lambda: (r := pod_rows()) and sorted(c[2] for c in r) == [
        "CrashLoopBackOff", "Running", "Running", "Running"] and r, timeout=15,
        message="three Running pods and one in CrashLoopBackOff")
    crashing = next(cols for cols in rows if cols[2] == "CrashLoopBackOff")
    assert int(crashing[3]) >= 1  # RESTARTS
    assert condition(em, "Available")["status"] == "True"
    backoff = kubectl_ok(kubectl, em, "get", "events", "--field-selector", "reason=BackOff",
                         "-o", "jsonpath={.items[*].message}")
    assert f"Back-off restarting failed container app in pod {crashing[0]}_{NS}" in backoff
    # Restarts are no progress: the reason stays while the pod keeps crashing.
    restarts = int(crashing[3])
    wait_until(lambda: max(c.get("restartCount", 0) for p in em.deployment_pods(NS, APP)
                           for c in p["status"].get("containerStatuses") or [])
               > restarts, timeout=10, message="another restart")
    assert condition(em, "Progressing")["reason"] == "ProgressDeadlineExceeded"
    # kubectl describe shows the condition and the events.
    described = kubectl_ok(kubectl, em, "describe", f"deployment/{APP}")
    assert "Progressing    False   ProgressDeadlineExceeded" in described
    assert "ScalingReplicaSet" in described

    assert kubectl_ok(kubectl, em, "rollout", "undo", f"deployment/{APP}").strip() == \
        f"deployment.apps/{APP} rolled back"
    recovered = kubectl.run(em, "rollout", "status", f"deployment/{APP}", "-n", NS,
                            "--timeout=30s")
    assert recovered.returncode == 0, recovered.stderr
    assert recovered.stdout.strip().splitlines()[-1] == DONE
    progressing = condition(em, "Progressing")
    assert (progressing["status"], progressing["reason"]) == ("True", "NewReplicaSetAvailable")
    wait_until(lambda: not [p for p in em.deployment_pods(NS, APP)
                            if ":crash" in p["spec"]["containers"][0]["image"]],
               timeout=10, message="the crashing pod to terminate")


def test_undo_after_deadline_is_found_again_not_found_anew(
        kube_emulator_factory: EmulatorFactory) -> None:
    """FoundNewReplicaSet is only set when no Progressing condition exists: after a
    deadline the undone-to ReplicaSet moves the condition on through progress alone."""
    em = kube_emulator_factory(rollout_duration=0.3)
    em.create_deployment(NS, APP, image=f"{IMAGE}:1.0", replicas=2, progress_deadline=1)
    seen: list[str] = []
    em.store.add_listener(lambda e, a: seen.extend(
        c["reason"] for c in (e.obj.get("status") or {}).get("conditions") or []
        if c["type"] == "Progressing" and (not seen or seen[-1] != c["reason"]))
        if e.key == "apps/deployments" else None)
    em.set_image(NS, APP, image=f"{IMAGE}:crash-2", settle=False)
    wait_until(lambda: condition(em, "Progressing")["reason"] == "ProgressDeadlineExceeded",
               timeout=15, message="the deadline")
    em.set_image(NS, APP, image=f"{IMAGE}:1.0", settle=False)
    em.wait_settled(NS, APP, timeout=15)
    assert seen[seen.index("ProgressDeadlineExceeded"):] == [
        "ProgressDeadlineExceeded", "ReplicaSetUpdated", "NewReplicaSetAvailable"]
    assert "FoundNewReplicaSet" not in seen


def test_image_pull_failure_stays_pending(kubectl: Kubectl,
                                          kube_emulator_factory: EmulatorFactory) -> None:
    em = kube_emulator_factory(rollout_duration=0.3)
    em.create_deployment(NS, APP, image=f"{IMAGE}:1.0", replicas=1)
    em.set_image(NS, APP, image=f"{IMAGE}-notfound:9.9", settle=False)

    def pulling_state() -> str | None:
        for p in em.deployment_pods(NS, APP):
            waiting = (p["status"].get("containerStatuses") or [{}])[0].get(
                "state", {}).get("waiting") or {}
            if waiting.get("reason") == "ImagePullBackOff":
                return str(p["metadata"]["name"])
        return None

    pod = wait_until(pulling_state, timeout=10, message="ImagePullBackOff")
    rows = {cols[0]: cols for cols in (line.split() for line in kubectl_ok(
        kubectl, em, "get", "pods", "--no-headers").splitlines())}
    assert rows[pod][1:3] in (["0/1", "ImagePullBackOff"], ["0/1", "ErrImagePull"])
    phase = kubectl_ok(kubectl, em, "get", "pod", pod, "-o", "jsonpath={.status.phase}")
    assert phase == "Pending"
    failed = kubectl_ok(kubectl, em, "get", "events", "--field-selector",
                        f"involvedObject.name={pod},reason=Failed",
                        "-o", "jsonpath={.items[*].message}")
    assert f'Failed to pull image "{IMAGE}-notfound:9.9"' in failed
    assert "Error: ErrImagePull" in failed


def test_image_fault_hook_overrides_the_name(kube_emulator_factory: EmulatorFactory) -> None:
    em = kube_emulator_factory(rollout_duration=0.3)
    em.create_deployment(NS, APP, image=f"{IMAGE}:1.0", replicas=1, progress_deadline=1)
    em.image_fault(f"{IMAGE}:2.0", "CrashLoopBackOff")
    em.set_image(NS, APP, image=f"{IMAGE}:2.0", settle=False)
    em.wait_settled(NS, APP, timeout=15)
    assert condition(em, "Progressing")["reason"] == "ProgressDeadlineExceeded"


# ------------------------------------------------------------------------ history
def test_history_after_cleanup(kubectl: Kubectl, kube_emulator_factory: EmulatorFactory) -> None:
    em = kube_emulator_factory(rollout_duration=0.3)
    em.create_deployment(NS, APP, image=f"{IMAGE}:1.0", replicas=2, revision_history_limit=2,
                         change_cause="deploy 1.0")
    for minor in (1, 2, 3):
        em.set_image(NS, APP, image=f"{IMAGE}:1.{minor}", change_cause=f"deploy 1.{minor}")
    # The last rollout runs live: cleanup happens once the controller sees it complete.
    em.set_image(NS, APP, image=f"{IMAGE}:1.4", change_cause="deploy 1.4", settle=False)
    em.wait_settled(NS, APP)
    assert len(em.replica_sets(NS, APP)) == 3  # revisionHistoryLimit old ones + current
    history = kubectl_ok(kubectl, em, "rollout", "history", f"deployment/{APP}")
    rows = [line.split(None, 1) for line in history.strip().splitlines()[2:]]
    assert rows == [["3", "deploy 1.2"], ["4", "deploy 1.3"], ["5", "deploy 1.4"]]
    gone = kubectl.run(em, "rollout", "undo", f"deployment/{APP}", "--to-revision=2",
                       "-n", NS)
    assert gone.returncode == 1
    assert gone.stderr.strip() == "error: unable to find specified revision 2 in history"
    assert kubectl_ok(kubectl, em, "rollout", "undo", f"deployment/{APP}",
                      "--to-revision=3").strip() == f"deployment.apps/{APP} rolled back"


# ---------------------------------------------------------------- apply, validation
MANIFEST = """apiVersion: apps/v1
kind: Deployment
metadata:
  name: {name}
  namespace: shop
spec:
  replicas: 2
  selector:
    matchLabels: {selector}
  template:
    metadata:
      labels: {labels}
    spec:
      containers:
      - name: app
        image: registry.local/web:{version}
{extra}"""


def manifest(tmp_path: Path, name: str = APP, *, selector: str = "{app: web}",
             labels: str = "{app: web}", version: str = "1.0", extra: str = "") -> str:
    path = tmp_path / f"{name}-{abs(hash((selector, labels, version, extra)))}.yaml"
    path.write_text(MANIFEST.format(name=name, selector=selector, labels=labels,
                                    version=version, extra=extra))
    return str(path)


def test_kubectl_apply_validates_without_validate_false(
        kubectl: Kubectl, kube_emulator: KubeEmulator, tmp_path: Path) -> None:
    kube_emulator.ensure_namespace(NS)
    typo = manifest(tmp_path, extra="        imagee: typo\n")
    bad = kubectl.run(kube_emulator, "apply", "-f", typo)
    assert bad.returncode == 1
    assert bad.stderr.strip() == (
        f'Error from server (BadRequest): error when creating "{typo}": Deployment in '
        'version "v1" cannot be handled as a Deployment: strict decoding error: unknown '
        'field "spec.template.spec.containers[0].imagee"')
    assert kube_emulator.store.try_get("apps/deployments", NS, APP) is None

    good = kubectl.run(kube_emulator, "apply", "-f", manifest(tmp_path))
    assert good.returncode == 0, good.stderr
    assert good.stdout.strip() == f"deployment.apps/{APP} created"
    updated = kubectl.run(kube_emulator, "apply", "-f", manifest(tmp_path, version="1.1"))
    assert updated.stdout.strip() == f"deployment.apps/{APP} configured", updated.stderr
    kube_emulator.wait_settled(NS, APP)
    assert kube_emulator.current_image(NS, APP) == "registry.local/web:1.1"
    paths = {r.path for r in kube_emulator.requests}
    assert {"/openapi/v3", "/openapi/v3/apis/apps/v1"} <= paths

    typo_update = kubectl.run(kube_emulator, "apply", "-f", typo)
    assert typo_update.returncode == 1
    assert typo_update.stderr.strip().endswith(
        'strict decoding error: unknown field "spec.template.spec.containers[0].imagee"')


def test_invalid_deployments_are_refused(kubectl: Kubectl, kube_emulator: KubeEmulator,
                                         tmp_path: Path) -> None:
    kube_emulator.ensure_namespace(NS)
    kubectl_ok(kubectl, kube_emulator, "apply", "-f", manifest(tmp_path))
    immutable = kubectl.run(kube_emulator, "apply", "-f", manifest(
        tmp_path, selector="{app: web, tier: x}", labels="{app: web, tier: x}"))
    assert immutable.returncode == 1
    assert immutable.stderr.strip() == (
        f'The Deployment "{APP}" is invalid: spec.selector: Invalid value: '
        'v1.LabelSelector{MatchLabels:map[string]string{"app":"web", "tier":"x"}, '
        "MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: field is immutable")
    mismatch = kubectl.run(kube_emulator, "apply", "-f", manifest(
        tmp_path, "other", labels="{app: other}"))
    assert mismatch.returncode == 1
    assert mismatch.stderr.strip() == (
        'The Deployment "other" is invalid: spec.template.metadata.labels: Invalid value: '
        'map[string]string{"app":"other"}: `selector` does not match template `labels`')
    frozen = kubectl.run(kube_emulator, "apply", "-f", manifest(
        tmp_path, "frozen", extra="  strategy:\n    rollingUpdate: {maxSurge: 0, "
        "maxUnavailable: 0}\n"))
    assert frozen.returncode == 1
    assert "spec.strategy.rollingUpdate.maxUnavailable: Invalid value: intstr.IntOrString" \
        "{Type:0, IntVal:0, StrVal:\"\"}: may not be 0 when `maxSurge` is 0" in frozen.stderr
    # Switching to Recreate through apply: $retainKeys drops the defaulted rollingUpdate.
    recreate = kubectl.run(kube_emulator, "apply", "-f", manifest(
        tmp_path, extra="  strategy:\n    type: Recreate\n"))
    assert recreate.returncode == 0, recreate.stderr
    stored = kube_emulator.get_deployment(NS, APP)["spec"]["strategy"]
    assert stored == {"type": "Recreate"}


def _deployment_body(name: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
            "spec": {"selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}},
                                  "spec": {"containers": [{"name": name,
                                                           "image": f"{IMAGE}:1.0"}]}},
                     **spec}}


def test_bad_surge_values_and_counts_are_refused_as_the_api_server_does(
        kubectl: Kubectl, kube_emulator: KubeEmulator, tmp_path: Path) -> None:
    """ValidatePositiveIntOrPercent / IsValidPercent (pkg/apis/apps/validation): 422; a count
    of the wrong JSON type fails decoding: 400 (apiserver transformDecodeError)."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    kube_emulator.ensure_namespace(NS)
    apps = client.AppsV1Api(kube_emulator.api_client())
    percent = ("a valid percent string must be a numeric string followed by an ending '%' "
               "(e.g. '1%',  or '93%', regex used for validation is '[0-9]+%')")
    cases = [
        ("maxSurge", "abc", 'Invalid value: intstr.IntOrString{Type:1, IntVal:0, '
                            f'StrVal:"abc"}}: {percent}'),
        ("maxUnavailable", "1.5%", 'Invalid value: intstr.IntOrString{Type:1, IntVal:0, '
                                   f'StrVal:"1.5%"}}: {percent}'),
        ("maxSurge", -1, "Invalid value: -1: must be greater than or equal to 0"),
        ("maxUnavailable", -2, "Invalid value: -2: must be greater than or equal to 0"),
    ]
    for index, (field, value, message) in enumerate(cases):
        rolling = {"maxSurge": 1, "maxUnavailable": 1, field: value}
        body = _deployment_body(f"bad{index}", strategy={"type": "RollingUpdate",
                                                         "rollingUpdate": rolling})
        try:
            apps.create_namespaced_deployment(NS, body)
        except ApiException as exc:
            status = json.loads(exc.body)
            assert (exc.status, status["reason"]) == (422, "Invalid"), exc.body
            assert f"spec.strategy.rollingUpdate.{field}: {message}" in status["message"]
            assert {"field": f"spec.strategy.rollingUpdate.{field}",
                    "reason": "FieldValueInvalid", "message": message} \
                in status["details"]["causes"]
        else:
            raise AssertionError(f"{field}={value!r} was accepted")
    # The Python client refuses replicas "x" itself; kubectl sends it as written.
    path = tmp_path / "badcount.json"
    path.write_text(json.dumps(_deployment_body("badcount", replicas="x")))
    count = kubectl.run(kube_emulator, "create", "-n", NS, "-f", str(path))
    assert count.returncode == 1
    assert count.stderr.strip().endswith(
        'Deployment in version "v1" cannot be handled as a Deployment: json: cannot '
        "unmarshal string into Go struct field DeploymentSpec.spec.replicas of type int32"), \
        count.stderr
    assert "(BadRequest)" in count.stderr
    assert [d.metadata.name for d in apps.list_namespaced_deployment(NS).items] == []


def test_concurrent_repeats_of_an_event_aggregate_into_one(
        kube_emulator: KubeEmulator) -> None:
    """client-go's recorder writes one event at a time: N concurrent emits of the same
    event are one Event with count N (read back through the API)."""
    from kubernetes import client

    kube_emulator.ensure_namespace(NS)
    api = client.ApiClient()
    apps = client.AppsV1Api(kube_emulator.api_client())
    created = apps.create_namespaced_deployment(NS, _deployment_body("events", replicas=0))
    obj = api.sanitize_for_serialization(created)
    recorder = kube_emulator.controller.events
    emitters = 16
    barrier = threading.Barrier(emitters)

    def emit() -> None:
        barrier.wait()
        recorder.emit(obj, "Concurrent", "the same event, many times", component="test")

    threads = [threading.Thread(target=emit) for _ in range(emitters)]
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # let the emitters interleave as finely as the GIL allows
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        sys.setswitchinterval(interval)
    core = client.CoreV1Api(kube_emulator.api_client())
    found = [e for e in core.list_namespaced_event(NS).items if e.reason == "Concurrent"]
    assert [e.count for e in found] == [emitters]


def test_openapi_documents_describe_the_served_kinds(kube_emulator: KubeEmulator) -> None:
    import urllib.request

    def get(path: str, accept: str = "application/json") -> Any:
        req = urllib.request.Request(kube_emulator.url + path, headers={"Accept": accept})
        with urllib.request.urlopen(req, timeout=10) as resp:
            return json.loads(resp.read())

    index = get("/openapi/v3")
    assert {"api/v1", "apis/apps/v1"} <= set(index["paths"])
    doc = get(index["paths"]["apis/apps/v1"]["serverRelativeURL"])
    patch = doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"]
    assert patch["x-kubernetes-group-version-kind"] == {"group": "apps", "kind": "Deployment",
                                                        "version": "v1"}
    assert any(p["name"] == "fieldValidation" for p in patch["parameters"])
    spec = doc["components"]["schemas"]["io.k8s.api.apps.v1.DeploymentSpec"]["properties"]
    assert {"progressDeadlineSeconds", "minReadySeconds", "strategy"} <= set(spec)
    v2 = get("/openapi/v2")
    containers = v2["definitions"]["io.k8s.api.core.v1.PodSpec"]["properties"]["containers"]
    assert containers["x-kubernetes-patch-merge-key"] == "name"
