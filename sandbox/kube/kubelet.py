"""The kubelet's part of a pod's life: ContainerCreating -> Running -> Ready, or the two
failures a rollout meets most: an image that cannot be pulled and a container that crashes.
"""

# What the pod status looks like at each step follows the kubelet's status generation
# (kubernetes/kubernetes pkg/kubelet/kubelet_pods.go generateAPIPodStatus / convertToAPI-
# ContainerStatuses) and the documented states (kubernetes.io/docs/concepts/workloads/pods/
# pod-lifecycle/): a created pod is Pending with its container waiting in ContainerCreating;
# a pull failure keeps it Pending, waiting in ErrImagePull then ImagePullBackOff
# (pkg/kubelet/images/image_manager.go); a crashing container under restartPolicy Always
# leaves the pod Running, the container waiting in CrashLoopBackOff with lastState
# terminated (Error, exit code 1) and restartCount rising, back-off doubling up to a cap
# (pkg/kubelet/kuberuntime/kuberuntime_manager.go doBackOff: 10 s doubling to 300 s; here
# scaled to the emulator's rollout speed). Events carry the kubelet's reasons and messages
# (pkg/kubelet/events/event.go). Terminating pods are left alone: their end is pods.py's.
#
# Failures are chosen by image name (a tag starting "crash" crash-loops; "notfound" or
# "does-not-exist" in the image cannot be pulled) or set by a test through
# ``Kubelet.image_faults`` / ``failing_hashes`` (KubeEmulator.image_fault, fail_next_rollout).

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from .events import EventRecorder
from .objects import HASH_LABEL, now_rfc3339
from .pods import PodFleet
from .scheduler import Scheduler
from .store import Obj, Store

COMPONENT = "kubelet"
NODE = "emulator-node"
CRASH = "CrashLoopBackOff"
PULL = "ImagePullBackOff"


@dataclass
class Timings:
    """Seconds from creation: containers created, ready; crash/back-off pacing."""

    created: float
    ready: float

    @property
    def crash_run(self) -> float:
        return max(0.02, self.created)

    def backoff(self, restarts: int) -> float:
        base = max(0.05, self.ready)
        return float(min(base * 2.0 ** max(0, restarts - 1), base * 8))


def image_failure(image: str) -> str | None:
    tag = image.rsplit("/", 1)[-1].partition(":")[2]
    if tag.startswith("crash"):
        return CRASH
    if "notfound" in image or "does-not-exist" in image:
        return PULL
    return None


class Kubelet:
    def __init__(self, store: Store, pods: PodFleet, scheduler: Scheduler,
                 events: EventRecorder, lock: threading.RLock,
                 on_change: Callable[[Obj, float], None]) -> None:
        self.store, self.pods, self.scheduler, self.events = store, pods, scheduler, events
        self.lock = lock
        self.on_change = on_change  # (pod, resync delay): the ReplicaSet must look again
        self.image_faults: dict[str, str | None] = {}  # image -> CRASH / PULL / None (healthy)
        self.failing_hashes: set[tuple[str, str]] = set()  # (namespace, pod-template-hash)

    # ------------------------------------------------------------------- policy
    def failure_of(self, pod: Obj) -> str | None:
        meta = pod["metadata"]
        if (meta["namespace"], (meta.get("labels") or {}).get(HASH_LABEL, "")) in \
                self.failing_hashes:
            return CRASH
        for c in pod["spec"].get("containers", []):
            image = str(c.get("image", ""))
            mode = self.image_faults[image] if image in self.image_faults \
                else image_failure(image)
            if mode is not None:
                return mode
        return None

    # ---------------------------------------------------------------- lifecycle
    def start(self, pod: Obj, timings: Timings, *, instant: bool, min_ready: int = 0) -> Obj:
        """Take over a pod the ReplicaSet just created. ``instant``: history long past, the
        pod is written straight into its lasting state (ready for ``min_ready`` s already,
        or failing with a few restarts behind it)."""
        mode = self.failure_of(pod)
        name = pod["metadata"]["name"]
        self.events.emit(pod, "Scheduled", f"Successfully assigned {pod['metadata']['namespace']}"
                         f"/{name} to {NODE}", component="default-scheduler")
        if instant:
            if mode is None:
                since = now_rfc3339(after=-(min_ready + 1))
                return self._write(pod, _status(pod, "ready", since=since), notify=False)
            written = self._write(pod, _status(pod, mode, restarts=3), notify=False)
            self._later(written, timings.backoff(3), lambda p: self._fail(p, mode, timings))
            return written
        creating = self._write(pod, _status(pod, "creating"))
        self._later(creating, timings.created,
                    lambda p: self._containers_created(p, mode, timings))
        return creating

    def _containers_created(self, pod: Obj, mode: str | None, timings: Timings) -> None:
        images = [str(c.get("image", "")) for c in pod["spec"].get("containers", [])]
        for image in images:
            self.events.emit(pod, "Pulling", f'Pulling image "{image}"', component=COMPONENT,
                             host=NODE)
        if mode == PULL:
            self._fail(pod, PULL, timings)
            return
        for c in pod["spec"].get("containers", []):
            self.events.emit(pod, "Pulled", f'Successfully pulled image "{c.get("image")}"',
                             component=COMPONENT, host=NODE)
            self.events.emit(pod, "Created", f"Created container {c['name']}",
                             component=COMPONENT, host=NODE)
            self.events.emit(pod, "Started", f"Started container {c['name']}",
                             component=COMPONENT, host=NODE)
        running = self._write(pod, _status(pod, "running"))
        if mode == CRASH:
            self._later(running, timings.crash_run, lambda p: self._fail(p, CRASH, timings))
        else:
            self._later(running, max(0.0, timings.ready - timings.created), self._ready)

    def _ready(self, pod: Obj) -> None:
        ready = self._write(pod, _status(pod, "ready", started=_started(pod)))
        self.pods.log(pod["metadata"]["namespace"], pod["metadata"]["name"],
                      f"{now_rfc3339()} ready: serving traffic")
        min_ready = int(self._min_ready(ready))
        if min_ready:  # availability comes later: the ReplicaSet requeues itself then
            self.on_change(ready, min_ready + 1.0)

    def _fail(self, pod: Obj, mode: str, timings: Timings, attempt: int = 1) -> None:
        """One more failed attempt, then back-off before the next one."""
        restarts = _restarts(pod)
        if mode == CRASH:
            restarts += 1
            failed = self._write(pod, _status(pod, CRASH, restarts=restarts))
            for c in pod["spec"].get("containers", []):
                self.events.emit(pod, "BackOff", f"Back-off restarting failed container "
                                 f"{c['name']} in pod {_pod_ref(pod)}", component=COMPONENT,
                                 host=NODE, type_="Warning")
            self._later(failed, timings.backoff(restarts),
                        lambda p: self._restart(p, timings))
            return
        image = str(pod["spec"]["containers"][0].get("image", ""))
        self.events.emit(pod, "Failed", f'Failed to pull image "{image}": {_pull_error(image)}',
                         component=COMPONENT, host=NODE, type_="Warning")
        self.events.emit(pod, "Failed", "Error: ErrImagePull", component=COMPONENT, host=NODE,
                         type_="Warning")
        pulled = self._write(pod, _status(pod, "ErrImagePull"))

        def back_off(p: Obj) -> None:
            self.events.emit(p, "BackOff", f'Back-off pulling image "{image}"',
                             component=COMPONENT, host=NODE)
            self.events.emit(p, "Failed", "Error: ImagePullBackOff", component=COMPONENT,
                             host=NODE, type_="Warning")
            waiting = self._write(p, _status(p, PULL))
            self._later(waiting, timings.backoff(attempt),
                        lambda q: self._pull_again(q, timings, attempt + 1))

        self._later(pulled, min(timings.backoff(1), timings.ready) / 2, back_off)

    def _pull_again(self, pod: Obj, timings: Timings, attempt: int) -> None:
        image = str(pod["spec"]["containers"][0].get("image", ""))
        self.events.emit(pod, "Pulling", f'Pulling image "{image}"', component=COMPONENT,
                         host=NODE)
        self._fail(pod, PULL, timings, attempt)

    def _restart(self, pod: Obj, timings: Timings) -> None:
        for c in pod["spec"].get("containers", []):
            self.events.emit(pod, "Pulled", f'Container image "{c.get("image")}" already '
                             "present on machine", component=COMPONENT, host=NODE)
            self.events.emit(pod, "Started", f"Started container {c['name']}",
                             component=COMPONENT, host=NODE)
        running = self._write(pod, _status(pod, "running", restarts=_restarts(pod)))
        self._later(running, timings.crash_run, lambda p: self._fail(p, CRASH, timings))

    # ----------------------------------------------------------------- plumbing
    def _min_ready(self, pod: Obj) -> int:
        for ref in pod["metadata"].get("ownerReferences") or []:
            rs = self.store.try_get("apps/replicasets", pod["metadata"]["namespace"],
                                    ref.get("name", ""))
            if rs is not None:
                return int(rs["spec"].get("minReadySeconds") or 0)
        return 0

    def _later(self, pod: Obj, delay: float, step: Callable[[Obj], None]) -> None:
        ns, name, uid = pod["metadata"]["namespace"], pod["metadata"]["name"], \
            pod["metadata"]["uid"]

        def run() -> None:
            with self.lock:
                current = self.store.try_get("pods", ns, name)
                if current is None or current["metadata"]["uid"] != uid or \
                        current["metadata"].get("deletionTimestamp"):
                    return  # gone or Terminating: the kubelet is stopping it, not starting it
                step(current)

        self.scheduler.call_later(delay, run)

    def _write(self, pod: Obj, status: Obj, *, notify: bool = True) -> Obj:
        """Write ``status`` onto the stored pod, as the kubelet's status manager patches only
        the pod's status (pkg/kubelet/status/status_manager.go syncPod ->
        statusutil.PatchPodStatus): a client's concurrent change to labels or spec stays. A pod
        deleted (or replaced by a namesake) since it was read is done: nothing is written, and
        the next scheduled step finds it gone."""
        meta = pod["metadata"]
        uid = meta.get("uid")

        def set_status(current: Obj) -> None:
            if current["metadata"].get("uid") == uid:
                current["status"] = status

        written = self.store.mutate("pods", meta["namespace"], meta["name"], set_status,
                                    actor=COMPONENT)
        pod["status"] = status
        if written is None or written["metadata"].get("uid") != uid:
            return pod
        if notify:  # a seed's sync is running already: nothing to wake
            self.on_change(written, 0.0)
        return written


# ------------------------------------------------------------------------- statuses
def _restarts(pod: Obj) -> int:
    return max((int(c.get("restartCount") or 0)
                for c in (pod.get("status") or {}).get("containerStatuses") or []), default=0)


def _started(pod: Obj) -> str | None:
    return (pod.get("status") or {}).get("startTime")


def _pod_ref(pod: Obj) -> str:
    meta = pod["metadata"]
    return f"{meta['name']}_{meta['namespace']}({meta['uid']})"


def _pull_error(image: str) -> str:
    ref = image if "/" in image.split(":")[0] else f"docker.io/library/{image}"
    return (f'rpc error: code = NotFound desc = failed to pull and unpack image "{ref}": '
            f'failed to resolve reference "{ref}": {ref}: not found')


def _ago(seconds: float) -> str:
    return (datetime.now(UTC) - timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%SZ")


def _status(pod: Obj, state: str, *, restarts: int = 0, since: str | None = None,
            started: str | None = None) -> Obj:
    """The pod status the kubelet reports in ``state``: "creating", "running", "ready",
    CrashLoopBackOff, ErrImagePull or ImagePullBackOff."""
    now = now_rfc3339()
    start = started or _started(pod) or now
    ready = state == "ready"
    pending = state in ("creating", "ErrImagePull", PULL)
    containers = pod["spec"].get("containers", [])
    unready = ", ".join(c["name"] for c in containers)

    def condition(ctype: str, ok: bool) -> Obj:
        cond: Obj = {"type": ctype, "status": "True" if ok else "False",
                     "lastProbeTime": None, "lastTransitionTime": since or now}
        if not ok and ctype in ("Ready", "ContainersReady"):
            cond["reason"] = "ContainersNotReady"
            cond["message"] = f"containers with unready status: [{unready}]"
        return cond

    statuses: list[Obj] = []
    for c in containers:
        image = str(c.get("image", ""))
        entry: Obj = {"name": c["name"], "image": image, "imageID": "",
                      "ready": ready, "restartCount": restarts,
                      "started": state in ("running", "ready"), "lastState": {}}
        if not pending:
            entry["imageID"] = f"{image.split(':')[0]}@sha256:{'0' * 64}"
            entry["containerID"] = f"containerd://{pod['metadata']['uid'].replace('-', '')}"
        if state in ("running", "ready"):
            entry["state"] = {"running": {"startedAt": since or now}}
        elif state == "creating":
            entry["state"] = {"waiting": {"reason": "ContainerCreating"}}
        elif state == "ErrImagePull":
            entry["state"] = {"waiting": {"reason": "ErrImagePull",
                                          "message": _pull_error(image)}}
        elif state == PULL:
            entry["state"] = {"waiting": {"reason": PULL,
                                          "message": f'Back-off pulling image "{image}"'}}
        elif state == CRASH:
            entry["state"] = {"waiting": {
                "reason": CRASH, "message": f"back-off 10s restarting failed "
                f"container={c['name']} pod={_pod_ref(pod)}"}}
        if restarts:
            entry["lastState"] = {"terminated": {"exitCode": 1, "reason": "Error",
                                                 "startedAt": _ago(1), "finishedAt": now}}
        statuses.append(entry)
    status: Obj = {
        "phase": "Pending" if pending else "Running",
        "conditions": [condition("PodReadyToStartContainers", state != "creating"),
                       condition("Initialized", True), condition("Ready", ready),
                       condition("ContainersReady", ready), condition("PodScheduled", True)],
        "hostIP": "127.0.0.1", "hostIPs": [{"ip": "127.0.0.1"}],
        "startTime": start, "containerStatuses": statuses, "qosClass": "BestEffort",
    }
    if state != "creating":
        status["podIP"] = "10.0.0.1"
        status["podIPs"] = [{"ip": "10.0.0.1"}]
    return status

