"""Late writes and Retry-After on Kubernetes, through the official client and real kubectl
against the API emulator.

The ghost write (issue 10, measured failure 6): the emulator holds a mutating request past
the client's timeout and serves it later, as an API server behind a slow network does. The
client gave up and retried; the team deployed a hotfix; then the abandoned request lands.
kubectl's own undo has no precondition and puts the bad release back (first test: the fault
is real, so these tests can fail). The adapter's writes carry the resourceVersion they were
decided on, so the server refuses the late one and the hotfix survives: the undo PATCH
(JSON Patch ``test``: 422), the scale PATCH and a ConfigMap restore (409 Conflict).
"""

from __future__ import annotations

import email.utils
import json
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from kubernetes.client import AppsV1Api, CoreV1Api
from kubernetes.client.exceptions import ApiException

from bot.domain.config import parse_config
from handlers import ids
from platforms.base import (
    Revision,
    Target,
    TargetChanged,
    TransientPlatformError,
    WriteConflict,
    parse_retry_after,
)
from platforms.kubernetes import KubernetesPlatform
from platforms.registry import PRODUCTION
from sandbox.config import sandbox_config_dict
from sandbox.kube import HeldRequest, KubeEmulator
from sandbox.kube_seed import DEPLOYMENT, IMAGE, NAMESPACE, kubernetes_target, seed_incident
from sandbox.stack import SandboxStack
from tests.e2e.conftest import CHANNEL
from tests.integration.kube_fixtures import EmulatorFactory, Kubectl
from tests.support.messages import request_message, thread_texts

CONFIG = f"{DEPLOYMENT}-config"
TARGET = Target("kubernetes", NAMESPACE, DEPLOYMENT, config_maps=(CONFIG,))
BAD, GOOD, HOTFIX = f"{IMAGE}:1.4.0", f"{IMAGE}:1.3.0", f"{IMAGE}:1.4.1"
CLIENT_TIMEOUT = 1.0  # the adapter gives up on a request after this long
HOLD = 60.0  # the emulator serves a held request this late, unless the test releases it first
CONFLICT = ('Operation cannot be fulfilled on {kind} "{name}": the object has been modified; '
            "please apply your changes to the latest version and try again")
# What a real API server answers for a JSON Patch whose `test` op fails (patch.go
# applyJSPatch -> errors.NewGenericServerResponse(422, ...), the library's text dropped).
TEST_OP_REFUSED = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                   "message": "the server rejected our request due to an error in our request",
                   "reason": "Invalid", "details": {}, "code": 422}


@pytest.fixture
def kube(kube_emulator_factory: EmulatorFactory) -> KubeEmulator:
    emulator = kube_emulator_factory(seed="ghost", rollout_duration=0.3)
    seed_incident(emulator)  # 1.4.0 (rev 4) is the bad release, 1.3.0 (rev 3) the target
    return emulator


@pytest.fixture
def platform(kube: KubeEmulator) -> Iterator[KubernetesPlatform]:
    client = kube.api_client()
    yield KubernetesPlatform(api_client=client, request_timeout=CLIENT_TIMEOUT)
    client.close()


def template_image(em: KubeEmulator) -> str:
    return str(em.get_deployment(NAMESPACE, DEPLOYMENT)["spec"]["template"]["spec"]
               ["containers"][0]["image"])


def plan(platform: KubernetesPlatform) -> tuple[Revision, Revision]:
    """What the planner pins: the running revision (expected) and the one before it."""
    history = platform.history(TARGET)
    assert history[0].images == (BAD,) and history[1].images == (GOOD,)
    return history[0], history[1]


def deploy_hotfix(em: KubeEmulator) -> None:
    """The team's CI ships 1.4.1 over the API: the strategic merge patch `kubectl set image`
    sends, then the controller rolls it out."""
    client = em.api_client()
    try:
        AppsV1Api(client).patch_namespaced_deployment(DEPLOYMENT, NAMESPACE, {"spec": {
            "template": {"spec": {"containers": [{"name": "app", "image": HOTFIX}]}}}})
    finally:
        client.close()
    em.wait_settled(NAMESPACE, DEPLOYMENT)


def on_undo(em: KubeEmulator, *, code: int | None = None, delay: float = 0.0,
            retry_after: str | None = None) -> None:
    """A fault on the next PATCH of the Deployment itself (the undo), not its scale."""
    em.inject_fault(code=code, delay=delay, retry_after=retry_after, verb="patch",
                    resource="deployments", subresource="")


def land(ghost: HeldRequest) -> HeldRequest:
    """Let the abandoned request reach the server now and wait for the server's answer."""
    ghost.release()
    assert ghost.wait_answered(10), "the held request was never served"
    return ghost


def in_background(call: Callable[[], Any]) -> tuple[threading.Thread, list[Any]]:
    outcome: list[Any] = []

    def run() -> None:
        try:
            outcome.append(call())
        except Exception as exc:  # the outcome is asserted by the test
            outcome.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, outcome


# ------------------------------------------------------------ the fault, without a fence
def test_kubectls_unfenced_undo_abandoned_on_the_wire_undoes_the_hotfix(
        kube: KubeEmulator, kubectl: Kubectl) -> None:
    """Measured failure 6 with kubectl itself: `rollout undo` times out, the team ships a
    hotfix, the held PATCH lands and 1.3.0 replaces the hotfix. This is what every fenced
    test below would see if the fence were missing."""
    on_undo(kube, delay=HOLD)
    undo = kubectl.popen(kube, "rollout", "undo", f"deployment/{DEPLOYMENT}", "-n", NAMESPACE,
                         "--request-timeout=1s")
    _, err = undo.communicate(timeout=60)
    assert undo.returncode != 0 and "failed restoring revision" in err, err
    (ghost,) = kube.wait_held(1)
    assert not ghost.answered and template_image(kube) == BAD  # nothing applied yet

    hotfix = kubectl.run(kube, "set", "image", f"deployment/{DEPLOYMENT}", f"app={HOTFIX}",
                         "-n", NAMESPACE)
    assert hotfix.returncode == 0, hotfix.stderr
    kube.wait_settled(NAMESPACE, DEPLOYMENT)
    assert kube.current_image(NAMESPACE, DEPLOYMENT) == HOTFIX

    assert land(ghost).code == 200  # no precondition: the server applies it
    kube.wait_settled(NAMESPACE, DEPLOYMENT)
    assert template_image(kube) == GOOD
    assert kube.current_image(NAMESPACE, DEPLOYMENT) == GOOD  # the hotfix is gone
    assert len([r for r in kube.requests if r.verb == "patch"]) == 2  # kubectl's + set image


# ------------------------------------------------------------------ the fenced adapter
def test_an_undo_abandoned_on_the_wire_is_refused_after_the_retry_and_a_hotfix(
        kube: KubeEmulator, platform: KubernetesPlatform) -> None:
    expected, pinned = plan(platform)
    on_undo(kube, delay=HOLD)
    with pytest.raises(TransientPlatformError, match="failed restoring revision 3") as timeout:
        platform.rollback_to(TARGET, pinned, expected=expected)
    assert not isinstance(timeout.value, WriteConflict)  # a timeout: nobody knows yet
    (ghost,) = kube.wait_held(1)

    # The executor's retry: a fresh read (the ghost has not landed), a fresh fenced PATCH.
    retried = platform.rollback_to(TARGET, pinned, expected=expected)
    assert retried.changed
    assert platform.wait_for_rollout(TARGET, timeout=10).done
    assert platform.current_revision(TARGET).id == pinned.id

    deploy_hotfix(kube)
    assert land(ghost).code == 422
    assert (ghost.reason, ghost.message) == ("Invalid", TEST_OP_REFUSED["message"])
    kube.wait_settled(NAMESPACE, DEPLOYMENT)
    assert template_image(kube) == HOTFIX
    assert kube.current_image(NAMESPACE, DEPLOYMENT) == HOTFIX
    assert platform.current_revision(TARGET).images == (HOTFIX,)


@pytest.mark.parametrize("rolled_out", [True, False], ids=["rolled-out", "not-yet-observed"])
def test_a_hotfix_between_plan_and_execution_is_target_changed_and_nothing_is_written(
        rolled_out: bool, kube_emulator_factory: EmulatorFactory) -> None:
    """Planned while 1.4.0 ran; 1.4.1 shipped before the rollback started. Also when the
    controller has not yet created the hotfix's ReplicaSet (its informer lags): the
    Deployment's template is a deploy then too, even though its revision annotation
    still names 1.4.0's ReplicaSet."""
    em = kube_emulator_factory(seed="ghost", rollout_duration=0.3,
                               observe_delay=0.0 if rolled_out else 30.0)
    seed_incident(em)
    client = em.api_client()
    platform = KubernetesPlatform(api_client=client, request_timeout=CLIENT_TIMEOUT)
    expected, pinned = plan(platform)
    em.set_image(NAMESPACE, DEPLOYMENT, image=HOTFIX, settle=rolled_out)
    before = em.get_deployment(NAMESPACE, DEPLOYMENT)
    em.clear_requests()

    with pytest.raises(TargetChanged) as refused:
        platform.rollback_to(TARGET, pinned, expected=expected)
    what = "rev 5 (" if rolled_out else "a new template not rolled out yet ("
    assert str(refused.value) == (
        f"{DEPLOYMENT} now runs {what}{HOTFIX}), not rev 4 ({BAD}) as planned: something "
        "else was deployed since; nothing was changed")
    assert [r.verb for r in em.requests if r.verb not in ("get", "list")] == []
    assert em.get_deployment(NAMESPACE, DEPLOYMENT) == before
    client.close()


@pytest.mark.parametrize("change", ["hotfix", "label"])
def test_a_write_between_the_read_and_the_patch_is_a_conflict_and_the_retry_decides_again(
        change: str, kube: KubeEmulator) -> None:
    """The PATCH is in flight (held, within the client's timeout) while someone writes the
    Deployment. The fence refuses it: WriteConflict. The retry decides on a fresh read:
    a hotfix is TargetChanged, a harmless change (a label) goes ahead."""
    client = kube.api_client()
    platform = KubernetesPlatform(api_client=client, request_timeout=10.0)
    expected, pinned = plan(platform)
    on_undo(kube, delay=HOLD)
    thread, outcome = in_background(lambda: platform.rollback_to(TARGET, pinned,
                                                                 expected=expected))
    (in_flight,) = kube.wait_held(1)
    if change == "hotfix":
        deploy_hotfix(kube)
    else:
        kube.update_deployment(NAMESPACE, DEPLOYMENT,
                               lambda d: d["metadata"]["labels"].update(team="voice"))
    in_flight.release()
    thread.join(timeout=20)
    assert in_flight.code == 422
    assert isinstance(outcome[0], WriteConflict), outcome
    assert "changed after it was read" in str(outcome[0])

    if change == "hotfix":
        with pytest.raises(TargetChanged, match=f"now runs rev 5 \\({HOTFIX}\\)"):
            platform.rollback_to(TARGET, pinned, expected=expected)
        assert template_image(kube) == HOTFIX
    else:
        assert platform.rollback_to(TARGET, pinned, expected=expected).changed
        assert platform.wait_for_rollout(TARGET, timeout=10).done
        assert kube.current_image(NAMESPACE, DEPLOYMENT) == GOOD
    client.close()


def test_a_scale_abandoned_on_the_wire_cannot_stop_the_service_later(
        kube: KubeEmulator, platform: KubernetesPlatform) -> None:
    """scale_down's PATCH to 0 times out and is retried; the service is scaled back to 3
    after the restore; the abandoned scale-to-0 lands then, and is refused (409)."""
    kube.inject_fault(code=None, delay=HOLD, verb="patch", resource="deployments",
                      subresource="scale")
    with pytest.raises(TransientPlatformError) as timeout:
        platform.scale(TARGET, 0)
    assert not isinstance(timeout.value, WriteConflict)
    (ghost,) = kube.wait_held(1)
    platform.scale(TARGET, 0)  # the retry reads the Scale again and writes on that read
    assert platform.wait_for_stopped(TARGET, timeout=10).done
    platform.scale(TARGET, 3)  # scale_up
    assert platform.wait_for_rollout(TARGET, timeout=10).done

    assert land(ghost).code == 409
    assert (ghost.reason, ghost.message) == (
        "Conflict", CONFLICT.format(kind="deployments.apps", name=DEPLOYMENT))
    kube.wait_settled(NAMESPACE, DEPLOYMENT)
    assert platform.get_replicas(TARGET) == 3
    assert kube.get_deployment(NAMESPACE, DEPLOYMENT)["spec"]["replicas"] == 3


def test_a_config_restore_abandoned_on_the_wire_cannot_overwrite_a_later_edit(
        kube: KubeEmulator, platform: KubernetesPlatform) -> None:
    snapshot = platform.snapshot_config(TARGET)  # VOICE_MODEL v2: the known-good config
    kube.store.mutate("configmaps", NAMESPACE, CONFIG,
                      lambda o: o["data"].update(VOICE_MODEL="v3-bad"), actor="client")
    kube.inject_fault(code=None, delay=HOLD, verb="update", resource="configmaps")
    with pytest.raises(TransientPlatformError):
        platform.restore_config(TARGET, snapshot)
    (ghost,) = kube.wait_held(1)
    assert platform.restore_config(TARGET, snapshot) is True  # the retry: read, compare, PUT

    core = CoreV1Api(kube.api_client())
    live: Any = core.read_namespaced_config_map(CONFIG, NAMESPACE)
    live.data["VOICE_MODEL"] = "v4-fixed"  # the team's own later edit
    core.replace_namespaced_config_map(CONFIG, NAMESPACE, live)

    assert land(ghost).code == 409
    assert ghost.message == CONFLICT.format(kind="configmaps", name=CONFIG)
    assert kube.store.get("configmaps", NAMESPACE, CONFIG)["data"]["VOICE_MODEL"] == "v4-fixed"
    core.api_client.close()


# ------------------------------------------------------- the emulator answers as the server
def test_stale_preconditions_get_the_api_servers_exact_answers(kube: KubeEmulator) -> None:
    """The Status bodies a real API server sends for each fenced write that lost its race:
    409 Conflict (stale resourceVersion in a patch, a scale or a PUT; apierrors.NewConflict
    with OptimisticLockErrorMsg) and 422 Invalid for a failed JSON Patch `test`."""
    client = kube.api_client()
    apps, core = AppsV1Api(client), CoreV1Api(client)
    kube.wait_settled(NAMESPACE, DEPLOYMENT)
    read: Any = apps.read_namespaced_deployment(DEPLOYMENT, NAMESPACE)
    stale = read.metadata.resource_version
    stale_cm = core.read_namespaced_config_map(CONFIG, NAMESPACE)
    kube.update_deployment(NAMESPACE, DEPLOYMENT,
                           lambda d: d["metadata"]["labels"].update(moved="yes"))
    kube.store.mutate("configmaps", NAMESPACE, CONFIG, lambda o: o["data"].update(X="1"),
                      actor="client")

    def refusal(call: Callable[[], Any]) -> dict[str, Any]:
        with pytest.raises(ApiException) as info:
            call()
        body = json.loads(str(info.value.body))
        assert body["code"] == info.value.status
        return dict(body)

    deployment_conflict = {
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": CONFLICT.format(kind="deployments.apps", name=DEPLOYMENT),
        "reason": "Conflict", "details": {"name": DEPLOYMENT, "group": "apps",
                                          "kind": "deployments"}, "code": 409}
    assert refusal(lambda: apps.patch_namespaced_deployment(
        DEPLOYMENT, NAMESPACE, [{"op": "test", "path": "/metadata/resourceVersion",
                                 "value": stale},
                                {"op": "replace", "path": "/spec/replicas", "value": 0}])) \
        == TEST_OP_REFUSED
    assert refusal(lambda: apps.patch_namespaced_deployment(
        DEPLOYMENT, NAMESPACE, {"metadata": {"resourceVersion": stale},
                                "spec": {"replicas": 0}},
        _content_type="application/merge-patch+json")) == deployment_conflict
    assert refusal(lambda: apps.patch_namespaced_deployment_scale(
        DEPLOYMENT, NAMESPACE, {"metadata": {"resourceVersion": stale},
                                "spec": {"replicas": 0}})) == deployment_conflict
    assert refusal(lambda: core.replace_namespaced_config_map(CONFIG, NAMESPACE, stale_cm)) \
        == {**deployment_conflict, "message": CONFLICT.format(kind="configmaps", name=CONFIG),
            "details": {"name": CONFIG, "kind": "configmaps"}}
    assert kube.get_deployment(NAMESPACE, DEPLOYMENT)["spec"]["replicas"] == 3
    # The same JSON Patch with the current resourceVersion goes through.
    read = apps.read_namespaced_deployment(DEPLOYMENT, NAMESPACE)
    current = read.metadata.resource_version
    done: Any = apps.patch_namespaced_deployment(DEPLOYMENT, NAMESPACE, [
        {"op": "test", "path": "/metadata/resourceVersion", "value": current},
        {"op": "add", "path": "/metadata/labels/fenced", "value": "ok"}])
    assert done.metadata.labels["fenced"] == "ok"
    client.close()


# ------------------------------------------------------------------------- Retry-After
def _two_minutes_ahead() -> str:
    return email.utils.format_datetime(datetime.now(UTC) + timedelta(seconds=120),
                                       usegmt=True)


# id -> (Retry-After header, the seconds the adapter must report; None: no usable hint)
RETRY_AFTER: dict[str, tuple[Callable[[], str], Callable[[float | None], bool]]] = {
    "seconds": (lambda: "7", lambda got: got == 7.0),
    "an-hour": (lambda: "3600", lambda got: got == 3600.0),
    "absurd-number": (lambda: "99999999999", lambda got: got == 99999999999.0),
    "http-date": (_two_minutes_ahead, lambda got: got is not None and 110 < got <= 120),
    "http-date-year-9999": (lambda: "Fri, 31 Dec 9999 23:59:59 GMT",
                            lambda got: got is not None and got > 2.5e11),
    "http-date-past": (lambda: "Wed, 21 Oct 2015 07:28:00 GMT", lambda got: got == 0.0),
    "unreadable": (lambda: "soon", lambda got: got is None),
}


@pytest.mark.parametrize("case", list(RETRY_AFTER))
def test_a_throttled_undo_carries_the_servers_retry_after(
        case: str, kube: KubeEmulator, platform: KubernetesPlatform) -> None:
    """429 on the undo PATCH: transient, nothing written, and the Retry-After header read
    by platforms.base.parse_retry_after, however absurd (bounding it is
    bot/execution/retry.py's)."""
    make_header, reported = RETRY_AFTER[case]
    header = make_header()
    expected, pinned = plan(platform)
    generation = kube.get_deployment(NAMESPACE, DEPLOYMENT)["metadata"]["generation"]
    on_undo(kube, code=429, retry_after=header)
    with pytest.raises(TransientPlatformError) as throttled:
        platform.rollback_to(TARGET, pinned, expected=expected)
    assert not isinstance(throttled.value, WriteConflict)
    assert "(HTTP 429)" in str(throttled.value)
    got = throttled.value.retry_after
    assert reported(got), (header, got)
    wanted = parse_retry_after(header)  # the shared reading, not one of the adapter's own
    assert got == wanted or (got is not None and wanted is not None and abs(got - wanted) < 5)
    assert kube.get_deployment(NAMESPACE, DEPLOYMENT)["metadata"]["generation"] == generation
    assert platform.rollback_to(TARGET, pinned, expected=expected).changed  # one-shot fault


# -------------------------------------------------------------- the whole bot, via Slack
def _stack(kube: KubeEmulator, db: str, tmp_path: Path) -> tuple[SandboxStack, Any]:
    data = sandbox_config_dict(platform="kubernetes", kubernetes=kubernetes_target(),
                               postmortem_dir=str(tmp_path / "pm"))
    client = kube.api_client()
    platform = KubernetesPlatform(api_client=client, request_timeout=CLIENT_TIMEOUT)
    return SandboxStack(config=parse_config(data, platforms=PRODUCTION), database_url=db,
                        platforms={"kubernetes": platform}), client


def _approve(stack: SandboxStack) -> tuple[int, dict[str, Any]]:
    em, driver, bot = stack.emulator, stack.driver, stack.bot
    assert driver is not None and bot is not None
    driver.slash_command("/rollback", f"{DEPLOYMENT} --severity P0 --reason 5xx", user="bob")
    msg = request_message(em, timeout=20)
    rid = bot.store.history(DEPLOYMENT)[0].id
    planned = bot.store.get(rid).current_revision
    assert planned is not None and planned.images == (BAD,)
    driver.click(CHANNEL, msg["ts"], ids.APPROVE, "bob")  # P0 break glass, app only
    return rid, msg


def _thread(stack: SandboxStack, msg: dict[str, Any]) -> str:
    return "\n".join(thread_texts(stack.emulator, msg))


def test_the_bots_abandoned_undo_lands_after_the_hotfix_and_is_refused(
        kube: KubeEmulator, kubectl: Kubectl, db: str, tmp_path: Path) -> None:
    """Through Slack: the undo PATCH times out, the executor retries and the rollback
    completes; the team ships 1.4.1; the abandoned PATCH lands and the server refuses it.
    kubectl, the oracle, still sees the hotfix."""
    on_undo(kube, delay=HOLD)
    stack, client = _stack(kube, db, tmp_path)
    with stack:
        em, bot = stack.emulator, stack.bot
        assert bot is not None
        rid, msg = _approve(stack)
        (ghost,) = kube.wait_held(1, timeout=30)
        em.wait_for(lambda: bot.store.get(rid).state.value == "completed", timeout=60)
        assert kube.current_image(NAMESPACE, DEPLOYMENT) == GOOD
        thread = _thread(stack, msg)
        assert "failed restoring revision 3: kubernetes API unreachable" in thread
        assert "retrying in" in thread and "deployment.apps/hotel-voice-bot rolled back" in thread
        step = next(s for s in bot.store.steps(rid) if s.kind == "app_rollback")
        assert (step.status, step.attempts) == ("done", 2)

        hotfix = kubectl.run(kube, "set", "image", f"deployment/{DEPLOYMENT}",
                             f"app={HOTFIX}", "-n", NAMESPACE)
        assert hotfix.returncode == 0, hotfix.stderr
        kube.wait_settled(NAMESPACE, DEPLOYMENT)
        assert land(ghost).code == 422
        kube.wait_settled(NAMESPACE, DEPLOYMENT)
        proc = kubectl.run(kube, "get", f"deployment/{DEPLOYMENT}", "-n", NAMESPACE, "-o",
                           "jsonpath={.spec.template.spec.containers[0].image}")
        assert proc.stdout == HOTFIX
        assert kube.current_image(NAMESPACE, DEPLOYMENT) == HOTFIX
    client.close()


def test_a_hotfix_during_the_bots_retry_wait_fails_the_rollback_without_a_write(
        kube: KubeEmulator, db: str, tmp_path: Path) -> None:
    """The undo PATCH times out; while the executor waits to retry, the team ships 1.4.1.
    The retry reads afresh, sees neither the planned nor the pinned revision and stops:
    TargetChanged, a permanent failure, nothing written. The abandoned PATCH then lands
    and is refused too."""
    on_undo(kube, delay=HOLD)
    stack, client = _stack(kube, db, tmp_path)
    with stack:
        em, bot = stack.emulator, stack.bot
        assert bot is not None
        hotfixed = threading.Event()

        def clock(_seconds: float) -> None:  # the executor's injected sleep: no real wait
            if not hotfixed.is_set():
                deploy_hotfix(kube)
                hotfixed.set()

        bot.executor.sleep = clock
        rid, msg = _approve(stack)
        (ghost,) = kube.wait_held(1, timeout=30)
        em.wait_for(lambda: bot.store.get(rid).state.value == "failed", timeout=30)
        rb = bot.store.get(rid)
        assert hotfixed.is_set()
        assert rb.last_error == (
            f"app_rollback: {DEPLOYMENT} now runs rev 5 ({HOTFIX}), not rev 4 ({BAD}) as "
            "planned: something else was deployed since; nothing was changed")
        patches = [r for r in kube.requests if r.verb == "patch" and r.resource == "deployments"]
        assert len(patches) == 2  # the abandoned undo and the team's hotfix, no retried undo
        assert land(ghost).code == 422
        kube.wait_settled(NAMESPACE, DEPLOYMENT)
        assert template_image(kube) == HOTFIX
        assert kube.current_image(NAMESPACE, DEPLOYMENT) == HOTFIX
        em.wait_for(lambda: "nothing was changed" in _thread(stack, msg))
    client.close()
