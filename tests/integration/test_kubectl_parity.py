"""Parity: the Kubernetes adapter against real ``kubectl rollout undo/history/status``.
Two identical emulators per scenario: kubectl rolls back #1, the adapter #2; resulting
objects, messages/errors, history and status output must be equal.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from platforms.base import PlatformError, Target, TargetNotFound
from platforms.kubernetes import KubernetesPlatform, format_history
from sandbox.kube import KubeEmulator
from tests.integration.kube_fixtures import EmulatorFactory, Kubectl
from tests.support.waiting import wait_until

NS = "shop"
APP = "web"
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
STATUS_LINE = re.compile(
    r'^(Waiting for deployment spec update to be observed\.\.\.|'
    r'Waiting for deployment "web" rollout to finish: (\d+ out of \d+ new replicas have been '
    r'updated|\d+ old replicas are pending termination|\d+ of \d+ updated replicas are '
    r'available)\.\.\.|deployment "web" successfully rolled out)$')


# ------------------------------------------------------------------------ histories
def one_revision(em: KubeEmulator) -> None:
    em.create_deployment(NS, APP, image="registry.local/web:1.0", replicas=2,
                         change_cause="deploy 1.0")


def two_revisions(em: KubeEmulator) -> None:
    one_revision(em)
    em.set_image(NS, APP, image="registry.local/web:1.1", change_cause="deploy 1.1")


def three_revisions(em: KubeEmulator) -> None:
    two_revisions(em)
    em.set_image(NS, APP, image="registry.local/web:1.2", change_cause="deploy 1.2")


def paused(em: KubeEmulator) -> None:
    two_revisions(em)
    em.pause(NS, APP)


def annotated(em: KubeEmulator) -> None:
    em.create_deployment(NS, APP, image="registry.local/web:1.0", replicas=2,
                         change_cause="kubectl apply -f web.yaml",
                         annotations={LAST_APPLIED: '{"kind":"Deployment","v":1}',
                                      "team": "payments", "deprecated.deployment.rollback.to": "0"})
    em.set_image(NS, APP, image="registry.local/web:2.0", change_cause="hotfix INC-42",
                 annotations={LAST_APPLIED: '{"kind":"Deployment","v":2}', "team": "checkout",
                              "ticket": "INC-42"})


def odd_revisions(em: KubeEmulator) -> None:
    two_revisions(em)
    # Unparsable revision: skipped. No revision annotation: revision 0. Not controlled by
    # the Deployment (no ownerReference) although its labels match: ignored.
    em.add_replica_set(NS, APP, image="registry.local/web:banana", revision="banana")
    em.add_replica_set(NS, APP, image="registry.local/web:0.9", revision=None)
    em.add_replica_set(NS, APP, image="registry.local/web:foreign", revision="9",
                       controlled=False)


def failed_rollout(em: KubeEmulator) -> None:
    two_revisions(em)
    em.fail_next_rollout(NS, APP)
    em.set_image(NS, APP, image="registry.local/web:1.2-broken", change_cause="deploy broken")


def stuck_rollout(em: KubeEmulator) -> None:
    """A live rollout whose pods crash-loop until progressDeadlineSeconds (1 s) passes: the
    controller itself declares ProgressDeadlineExceeded; nothing is decided by the test."""
    two_revisions(em)
    em.update_deployment(NS, APP, lambda d: d["spec"].__setitem__("progressDeadlineSeconds", 1))
    em.set_image(NS, APP, image="registry.local/web:crash-1.2", change_cause="deploy 1.2",
                 settle=False)
    wait_until(lambda: any(c["reason"] == "ProgressDeadlineExceeded" for c in
                           em.get_deployment(NS, APP)["status"].get("conditions") or []),
               timeout=15, message="ProgressDeadlineExceeded")
    em.wait_settled(NS, APP)


@dataclass(frozen=True)
class Scenario:
    id: str
    seed: Callable[[KubeEmulator], None]
    undos: tuple[tuple[str, ...], ...] = ((),)  # extra kubectl flags, one tuple per undo
    deployment: str = APP


SCENARIOS = [
    Scenario("previous", three_revisions),
    Scenario("to-revision", three_revisions, (("--to-revision=1",),)),
    Scenario("missing-revision", three_revisions, (("--to-revision=7",),)),
    Scenario("no-history", one_revision),
    Scenario("paused", paused),
    Scenario("already-matching", three_revisions, (("--to-revision=3",),)),
    Scenario("change-cause-and-last-applied", annotated),
    Scenario("reuse-old-replicaset-twice", two_revisions, ((), ())),
    Scenario("odd-revision-annotations", odd_revisions, ((), ("--to-revision=9",))),
    Scenario("server-dry-run", three_revisions, (("--dry-run=server",),)),
    Scenario("deployment-missing", one_revision, deployment="nope"),
    Scenario("after-progress-deadline", failed_rollout),
    Scenario("after-live-progress-deadline", stuck_rollout),
]


# ------------------------------------------------------------------------- helpers
def adapter_kwargs(flags: tuple[str, ...]) -> dict[str, Any]:
    kwargs: dict[str, Any] = {}
    for flag in flags:
        if flag.startswith("--to-revision="):
            kwargs["to_revision"] = int(flag.split("=", 1)[1])
        elif flag == "--dry-run=server":
            kwargs["dry_run"] = True
    return kwargs


def kubectl_style(exc: PlatformError) -> str:
    """How kubectl prints the same error on stderr."""
    if isinstance(exc, TargetNotFound) and isinstance(exc.__cause__, ApiException):
        return f"Error from server (NotFound): {exc}"
    return f"error: {exc}"


def outcome(proc: Any) -> str:
    return str(proc.stdout if proc.returncode == 0 else proc.stderr).strip()


def view(em: KubeEmulator) -> dict[str, Any]:
    """What a rollback may change: Deployment spec/annotations and ReplicaSet numbering."""
    dep = em.get_deployment(NS, APP)
    return {
        "template": dep["spec"]["template"],
        "annotations": dep["metadata"].get("annotations"),
        "replicas": dep["spec"].get("replicas"),
        "paused": dep["spec"].get("paused"),
        "generation": dep["metadata"].get("generation"),
        "replicasets": {rs["metadata"]["name"]: (rs["metadata"].get("annotations"),
                                                 rs["spec"].get("replicas"))
                        for rs in em.replica_sets(NS, APP)},
    }


def platform_for(em: KubeEmulator) -> KubernetesPlatform:
    return KubernetesPlatform(api_client=em.api_client(), request_timeout=10.0)


# --------------------------------------------------------------------------- tests
@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.id for s in SCENARIOS])
def test_undo_matches_kubectl(scenario: Scenario, kubectl: Kubectl,
                              kube_emulator_factory: EmulatorFactory) -> None:
    print(f"kubectl: {kubectl.version}")
    em_kubectl = kube_emulator_factory(seed=scenario.id)
    em_adapter = kube_emulator_factory(seed=scenario.id)
    scenario.seed(em_kubectl)
    scenario.seed(em_adapter)
    assert view(em_kubectl) == view(em_adapter), "seeding must be deterministic"
    platform = platform_for(em_adapter)
    target = Target("kubernetes", NS, APP)

    for flags in scenario.undos:
        expected = outcome(kubectl.run(em_kubectl, "rollout", "undo",
                                       f"deployment/{scenario.deployment}", "-n", NS, *flags))
        try:
            got = platform.undo(NS, scenario.deployment, **adapter_kwargs(flags))
        except PlatformError as exc:
            got = kubectl_style(exc)
        assert got == expected
        em_kubectl.wait_settled(NS, APP)
        em_adapter.wait_settled(NS, APP)
        assert view(em_adapter) == view(em_kubectl)

    history = kubectl.run(em_kubectl, "rollout", "history", f"deployment/{APP}", "-n", NS)
    assert history.returncode == 0, history.stderr
    assert format_history(APP, platform.history(target)) == history.stdout
    assert format_history(APP, platform_for(em_kubectl).history(target)) == history.stdout

    status = kubectl.run(em_kubectl, "rollout", "status", f"deployment/{APP}", "-n", NS,
                         "--timeout=20s")
    adapter_status = platform.rollout_status(target)
    if status.returncode == 0:
        assert status.stdout.strip().splitlines()[-1] == adapter_status.message
        assert adapter_status.done
    else:
        assert status.stderr.strip() == f"error: {adapter_status.message}"
        assert adapter_status.failed


def test_status_of_failed_rollout_matches_kubectl(kubectl: Kubectl,
                                                  kube_emulator_factory: EmulatorFactory) -> None:
    em = kube_emulator_factory(seed="deadline")
    failed_rollout(em)
    proc = kubectl.run(em, "rollout", "status", f"deployment/{APP}", "-n", NS, "--timeout=20s")
    status = platform_for(em).wait_for_rollout(Target("kubernetes", NS, APP), timeout=20)
    assert proc.returncode == 1
    assert proc.stderr.strip() == f"error: {status.message}"
    assert status.failed and status.message == f'deployment "{APP}" exceeded its progress deadline'


def _dedupe(lines: list[str]) -> list[str]:
    out: list[str] = []
    for line in lines:
        if not out or out[-1] != line:
            out.append(line)
    return out


def test_rollout_status_stream_matches_kubectl(kubectl: Kubectl,
                                               kube_emulator_factory: EmulatorFactory) -> None:
    """Both watch the same deterministic rollout: each deduplicated message stream is a
    suffix of the other's (whoever started watching later saw fewer early states)."""
    # observe_delay: the controller notices the spec change late, like a real informer.
    em_kubectl = kube_emulator_factory(seed="stream", rollout_duration=1.5, observe_delay=0.3)
    em_adapter = kube_emulator_factory(seed="stream", rollout_duration=1.5, observe_delay=0.3)
    for em in (em_kubectl, em_adapter):
        three_revisions(em)
        em.update_deployment(NS, APP, lambda d: d["spec"].__setitem__("replicas", 3))
    assert outcome(kubectl.run(em_kubectl, "rollout", "undo", f"deployment/{APP}", "-n", NS)) \
        == f"deployment.apps/{APP} rolled back"
    watcher = kubectl.popen(em_kubectl, "rollout", "status", f"deployment/{APP}", "-n", NS,
                            "--timeout=30s")
    platform = platform_for(em_adapter)
    seen: list[str] = []
    assert platform.undo(NS, APP) == f"deployment.apps/{APP} rolled back"
    final = platform.wait_for_rollout(Target("kubernetes", NS, APP), timeout=30,
                                      on_progress=seen.append)
    out, err = watcher.communicate(timeout=60)
    assert watcher.returncode == 0, err
    kubectl_lines = _dedupe(out.strip().splitlines())
    assert final.done and final.message == kubectl_lines[-1] == seen[-1]
    assert all(STATUS_LINE.match(line) for line in kubectl_lines + seen), (kubectl_lines, seen)
    assert any(line.startswith("Waiting for deployment") for line in kubectl_lines)
    assert seen[0] == "Waiting for deployment spec update to be observed..."
    shorter, longer = sorted((kubectl_lines, seen), key=len)
    assert longer[len(longer) - len(shorter):] == shorter, (kubectl_lines, seen)


def test_emulator_accepts_kubectl_writes_and_reads(kubectl: Kubectl,
                                                   kube_emulator: KubeEmulator) -> None:
    """The stand-in speaks the wire protocol real kubectl uses beyond rollouts: strategic
    merge (set image, pause), merge and JSON patches, the scale subresource, server-side
    tables, pod logs and metrics.k8s.io."""
    two_revisions(kube_emulator)

    def ok(*args: str) -> str:
        proc = kubectl.run(kube_emulator, *args, "-n", NS)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout

    assert ok("set", "image", f"deployment/{APP}", "app=registry.local/web:1.3") == \
        f"deployment.apps/{APP} image updated\n"
    kube_emulator.wait_settled(NS, APP)
    ok("annotate", f"deployment/{APP}", "kubernetes.io/change-cause=set image 1.3", "--overwrite")
    ok("scale", f"deployment/{APP}", "--replicas=3")
    ok("patch", f"deployment/{APP}", "--type=merge", "-p", '{"metadata":{"labels":{"t":"a"}}}')
    ok("patch", f"deployment/{APP}", "--type=json", "-p",
       '[{"op":"add","path":"/metadata/labels/u","value":"b"}]')
    ok("rollout", "pause", f"deployment/{APP}")
    assert kube_emulator.get_deployment(NS, APP)["spec"]["paused"] is True
    ok("rollout", "resume", f"deployment/{APP}")
    kube_emulator.wait_settled(NS, APP)
    dep = kube_emulator.get_deployment(NS, APP)
    assert dep["metadata"]["labels"] == {"app": APP, "t": "a", "u": "b"}
    assert dep["spec"]["replicas"] == 3 and not dep["spec"].get("paused")
    assert kube_emulator.current_image(NS, APP) == "registry.local/web:1.3"

    table = ok("get", "deployment", APP)
    assert table.split("\n")[0].split() == ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"]
    assert table.split("\n")[1].split()[:4] == [APP, "3/3", "3", "3"]
    assert "set image 1.3" in ok("rollout", "history", f"deployment/{APP}")
    assert "registry.local/web:1.0" in ok("rollout", "history", f"deployment/{APP}",
                                          "--revision=1")
    kube_emulator.log(NS, APP, "GET /health 200")
    assert ok("logs", f"deployment/{APP}", "--tail=1").strip() == "GET /health 200"
    kube_emulator.set_usage(NS, cpu="120m", memory="64Mi")
    top = ok("top", "pods").splitlines()
    # Pods retired by the rollouts above are still Terminating (30 s default grace period),
    # their containers still running: top lists them along with the three replicas.
    rows = [line.split() for line in ok("get", "pods", "--no-headers").splitlines()]
    pods = {cols[0]: cols[2] for cols in rows}  # NAME -> STATUS
    assert sorted(pods.values()).count("Running") == 3
    assert set(pods.values()) <= {"Running", "Terminating"}
    assert {line.split()[0] for line in top[1:]} == set(pods)
    assert top[1].split()[1:] == ["120m", "64Mi"]
