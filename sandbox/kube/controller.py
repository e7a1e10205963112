"""Deployment controller simulation: ReplicaSet selection/renumbering and timed rollouts.
"""

# Mirrors kube-controller-manager's rules that rollback parity depends on: reuse the RS whose
# template matches (ignoring pod-template-hash), give it revision max(old)+1, keep the old
# numbers in ``revision-history``, copy annotations minus the skip list. Rollout progress is
# driven by one scheduler thread: add new pod -> retire an old pod -> new pod ready. Counters
# see active pods only (controller.IsPodActive, pkg/controller/controller_utils.go, and the
# ReplicaSet controller's calculateStatus, pkg/controller/replicaset/replica_set_utils.go): a
# retired pod keeps Terminating for its grace period without holding the rollout back, and
# counts as neither a replica nor an available one.

from __future__ import annotations

import copy
import threading
import time
from dataclasses import dataclass

from .objects import (
    CONTROLLER_SKIP,
    DESIRED_REPLICAS,
    HASH_LABEL,
    MAX_REPLICAS,
    REVISION,
    REVISION_HISTORY,
    equal_ignore_hash,
    now_rfc3339,
    template_hash,
)
from .pods import PodFleet
from .scheduler import Scheduler
from .store import Obj, Store, WatchEvent

Key = tuple[str, str]


@dataclass
class RolloutSettings:
    duration: float = 1.0  # wall time of a whole rollout (3 steps per replica)
    observe_delay: float = 0.0  # how long before the controller notices a spec change


class DeploymentController:
    def __init__(self, store: Store, pods: PodFleet, scheduler: Scheduler,
                 settings: RolloutSettings) -> None:
        self.store, self.pods, self.scheduler, self.settings = store, pods, scheduler, settings
        self.lock = threading.RLock()
        self._pending: dict[Key, int] = {}  # outstanding sync/tick callbacks per deployment
        self._token: dict[Key, int] = {}
        self._current: dict[Key, str] = {}  # RS name of the rollout in progress / done
        self._progress: dict[Key, tuple[str, str]] = {}  # Progressing reason, message
        self._started: dict[Key, float] = {}
        self._failing: set[Key] = set()
        self._timed_out: set[Key] = set()
        self._fail_next: set[Key] = set()
        store.add_listener(self._on_event)

    # ------------------------------------------------------------------- plumbing
    def _on_event(self, event: WatchEvent, actor: str) -> None:
        if event.key == "pods" and actor == "client":
            # A client deleted (or changed) a pod: the ReplicaSet controller sees it through
            # its pod informer and replaces a pod that is no longer active at once.
            owner = self._deployment_of(event.obj)
            if owner is not None:
                self.enqueue(*owner)
            return
        if actor == "controller" or event.key != "apps/deployments":
            return
        self.enqueue(event.namespace, event.obj["metadata"]["name"])

    def _deployment_of(self, pod: Obj) -> Key | None:
        namespace = pod["metadata"].get("namespace", "")
        for ref in pod["metadata"].get("ownerReferences") or []:
            if ref.get("kind") != "ReplicaSet" or not ref.get("controller"):
                continue
            rs = self.store.try_get("apps/replicasets", namespace, ref.get("name", ""))
            for owner in (rs or {}).get("metadata", {}).get("ownerReferences") or []:
                if owner.get("kind") == "Deployment" and owner.get("controller"):
                    return namespace, str(owner["name"])
        return None

    def enqueue(self, namespace: str, name: str) -> None:
        """Sync the deployment asynchronously, after ``observe_delay`` (the informer lag)."""
        key = (namespace, name)
        with self.store.lock:
            self._pending[key] = self._pending.get(key, 0) + 1
        self.scheduler.call_later(self.settings.observe_delay, lambda: self._run_sync(key))

    def current_rs_name(self, namespace: str, name: str) -> str | None:
        return self._current.get((namespace, name))

    def _run_sync(self, key: Key) -> None:
        try:
            self.sync(*key)
        finally:
            self._done(key)

    def _done(self, key: Key) -> None:
        with self.store.changed:
            self._pending[key] = self._pending.get(key, 1) - 1
            self.store.changed.notify_all()

    def busy(self, namespace: str, name: str) -> bool:
        return self._pending.get((namespace, name), 0) > 0

    def fail_next_rollout(self, namespace: str, name: str) -> None:
        self._fail_next.add((namespace, name))

    # ----------------------------------------------------------------------- sync
    def owned_replica_sets(self, d: Obj) -> list[Obj]:
        rss, _ = self.store.list("apps/replicasets", d["metadata"]["namespace"])
        uid = d["metadata"]["uid"]
        return [rs for rs in rss if any(ref.get("uid") == uid and ref.get("controller")
                                        for ref in rs["metadata"].get("ownerReferences") or [])]

    def sync(self, namespace: str, name: str, *, instant: bool = False) -> None:
        key = (namespace, name)
        with self.lock:
            d = self.store.try_get("apps/deployments", namespace, name)
            if d is None:
                self._garbage_collect(namespace, name)
                return
            rss = self.owned_replica_sets(d)
            rss.sort(key=lambda r: (r["metadata"]["creationTimestamp"], r["metadata"]["name"]))
            new_rs = next((r for r in rss if equal_ignore_hash(r["spec"]["template"],
                                                               d["spec"]["template"])), None)
            old = [r for r in rss
                   if new_rs is None or r["metadata"]["uid"] != new_rs["metadata"]["uid"]]
            max_old = max((_revision(r) for r in old), default=0)
            created = False
            if new_rs is not None:
                new_rs = self._renumber(d, new_rs, max_old + 1)
            elif not d["spec"].get("paused"):
                new_rs, created = self._create_rs(d, max_old + 1), True
            if new_rs is not None and self._current.get(key) != new_rs["metadata"]["name"]:
                self._start_rollout(key, new_rs, created=created)
            revision = new_rs["metadata"]["annotations"][REVISION] if new_rs else None
            self._write_status(key, observed=int(d["metadata"].get("generation", 1)),
                               revision=revision)
            self._cleanup(d)
            self._schedule(key, instant=instant)

    def _renumber(self, d: Obj, rs: Obj, new_revision: int) -> Obj:
        ann = rs["metadata"].setdefault("annotations", {})
        before = copy.deepcopy(ann)
        for k, v in (d["metadata"].get("annotations") or {}).items():
            if k not in CONTROLLER_SKIP:
                ann[k] = v
        had_revision = REVISION in ann
        old_revision = _revision(rs)
        if old_revision < new_revision:
            ann[REVISION] = str(new_revision)
            if had_revision:  # a reused ReplicaSet keeps its former numbers
                history = [h for h in ann.get(REVISION_HISTORY, "").split(",") if h]
                ann[REVISION_HISTORY] = ",".join([*history, str(old_revision)])
        if ann == before:
            return rs
        return self.store.replace("apps/replicasets", rs, actor="controller", check_rv=False,
                                  keep_status=False)

    def _create_rs(self, d: Obj, revision: int) -> Obj:
        meta, spec = d["metadata"], d["spec"]
        template = copy.deepcopy(spec["template"])
        tpl_hash = template_hash(template)
        template.setdefault("metadata", {}).setdefault("labels", {})[HASH_LABEL] = tpl_hash
        selector = copy.deepcopy(spec.get("selector") or {})
        selector.setdefault("matchLabels", {})[HASH_LABEL] = tpl_hash
        replicas = int(spec.get("replicas", 1))
        ann = {k: v for k, v in (meta.get("annotations") or {}).items() if k not in CONTROLLER_SKIP}
        ann.update({REVISION: str(revision), DESIRED_REPLICAS: str(replicas),
                    MAX_REPLICAS: str(replicas + _max_surge(d))})
        rs: Obj = {
            "metadata": {
                "name": f"{meta['name']}-{tpl_hash}", "namespace": meta["namespace"],
                "labels": dict(template["metadata"]["labels"]), "annotations": ann,
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment",
                                     "name": meta["name"], "uid": meta["uid"],
                                     "controller": True, "blockOwnerDeletion": True}],
            },
            "spec": {"replicas": 0, "selector": selector, "template": template},
            "status": {"replicas": 0, "observedGeneration": 1},
        }
        return self.store.create("apps/replicasets", rs, actor="controller")

    def _start_rollout(self, key: Key, new_rs: Obj, *, created: bool) -> None:
        name = new_rs["metadata"]["name"]
        self._current[key] = name
        self._started[key] = time.monotonic()
        self._failing.discard(key)
        self._timed_out.discard(key)
        if key in self._fail_next:
            self._fail_next.discard(key)
            self._failing.add(key)
        self._progress[key] = (("FoundNewReplicaSet", f'Found new replica set "{name}"')
                               if not created else
                               ("NewReplicaSetCreated", f'Created new replica set "{name}"'))

    def _cleanup(self, d: Obj) -> None:
        """Delete the oldest idle ReplicaSets beyond revisionHistoryLimit."""
        limit = int(d["spec"].get("revisionHistoryLimit", 10))
        current = self._current.get((d["metadata"]["namespace"], d["metadata"]["name"]))
        # cleanupDeployment (pkg/controller/deployment/sync.go) needs status.replicas == 0,
        # which counts active pods only; Terminating pods outlive their ReplicaSet then.
        idle = [r for r in self.owned_replica_sets(d)
                if r["metadata"]["name"] != current and not r["spec"].get("replicas")
                and not self.pods.pods_of(r)]
        idle.sort(key=_revision)
        for rs in idle[: max(0, len(idle) - limit)]:
            self.store.delete("apps/replicasets", rs["metadata"]["namespace"],
                              rs["metadata"]["name"], actor="controller")

    def _garbage_collect(self, namespace: str, name: str) -> None:
        for rs in list(self.store.iter_objects("apps/replicasets")):
            refs = rs["metadata"].get("ownerReferences") or []
            if rs["metadata"]["namespace"] == namespace and any(
                    r.get("kind") == "Deployment" and r.get("name") == name for r in refs):
                for pod in self.pods.all_pods_of(rs):
                    self.pods.delete(pod)
                self.store.delete("apps/replicasets", namespace, rs["metadata"]["name"],
                                  actor="controller")
        self._current.pop((namespace, name), None)

    # -------------------------------------------------------------------- rollout
    def _schedule(self, key: Key, *, instant: bool) -> None:
        self._token[key] = token = self._token.get(key, 0) + 1
        if instant:
            while self._step(key, instant=True):
                pass
            return
        d = self.store.try_get("apps/deployments", *key)
        if d is None or not self._remaining(key):
            return
        interval = self.settings.duration / (3 * max(1, int(d["spec"].get("replicas", 1))))
        self._pending[key] = self._pending.get(key, 0) + 1

        def tick() -> None:
            try:
                with self.lock:
                    if self._token.get(key) == token and self._step(key, instant=False):
                        self._schedule(key, instant=False)
            finally:
                self._done(key)

        self.scheduler.call_later(interval, tick)

    def _split(self, key: Key) -> tuple[Obj | None, Obj | None, list[Obj]]:
        d = self.store.try_get("apps/deployments", *key)
        if d is None:
            return None, None, []
        rss = self.owned_replica_sets(d)
        new_rs = next((r for r in rss if r["metadata"]["name"] == self._current.get(key)), None)
        return d, new_rs, [r for r in rss if r is not new_rs]

    def _remaining(self, key: Key) -> bool:
        d, new_rs, old = self._split(key)
        if d is None or new_rs is None or d["spec"].get("paused") or key in self._timed_out:
            return False
        new_pods = self.pods.pods_of(new_rs)
        want = int(d["spec"].get("replicas", 1))
        return (len(new_pods) != want or any(not self.pods.is_ready(p) for p in new_pods)
                or any(self.pods.pods_of(r) for r in old))

    def _step(self, key: Key, *, instant: bool) -> bool:
        """Advance one rollout step; False once converged, timed out or paused."""
        if not self._remaining(key):
            return False
        d, new_rs, old = self._split(key)
        assert d is not None and new_rs is not None
        want = int(d["spec"].get("replicas", 1))
        new_pods = self.pods.pods_of(new_rs)
        old_pods = [p for r in old for p in self.pods.pods_of(r)]
        unready = [p for p in new_pods if not self.pods.is_ready(p)]
        # A settled seed stands for history long past: its retired pods are gone already.
        grace = 0 if instant else None
        if key in self._failing:  # pods never become ready; the deadline trips
            if not new_pods and want:
                self.pods.add(new_rs, ready=False)
            elif instant or time.monotonic() - self._started[key] >= self.settings.duration:
                self._timed_out.add(key)
                self._progress[key] = ("ProgressDeadlineExceeded",
                                       f'ReplicaSet "{new_rs["metadata"]["name"]}" has timed '
                                       "out progressing.")
        elif len(new_pods) > want:
            for pod in new_pods[want:]:
                self.pods.delete(pod, grace_seconds=grace)
        elif unready and old_pods and len(old_pods) + len(new_pods) > want:
            self.pods.delete(old_pods[0], grace_seconds=grace)
        elif unready:
            self.pods.set_ready(unready[0])
        elif len(new_pods) < want:
            self.pods.add(new_rs, ready=False)
        elif old_pods:
            self.pods.delete(old_pods[0], grace_seconds=grace)
        if key not in self._timed_out and self._progress.get(key, ("",))[0] != "ReplicaSetUpdated":
            self._progress[key] = ("ReplicaSetUpdated",
                                   f'ReplicaSet "{new_rs["metadata"]["name"]}" is progressing.')
        self._sync_replica_sets(d)
        self._write_status(key)
        return self._remaining(key)

    def _sync_replica_sets(self, d: Obj) -> None:
        for rs in self.owned_replica_sets(d):
            pods = self.pods.pods_of(rs)
            ready = sum(1 for p in pods if self.pods.is_ready(p))

            def update(obj: Obj, count: int = len(pods), ready: int = ready) -> None:
                obj["spec"]["replicas"] = count
                # ReplicaSetStatus.replicas has no omitempty; the other counters do.
                obj["status"] = {"replicas": count, **{k: v for k, v in {
                    "fullyLabeledReplicas": count, "readyReplicas": ready,
                    "availableReplicas": ready,
                    "observedGeneration": obj["metadata"].get("generation", 1)}.items() if v}}

            self.store.mutate("apps/replicasets", rs["metadata"]["namespace"],
                              rs["metadata"]["name"], update)

    def _write_status(self, key: Key, *, observed: int | None = None,
                      revision: str | None = None) -> None:
        d, new_rs, _ = self._split(key)
        if d is None:
            return
        want = int(d["spec"].get("replicas", 1))
        all_pods = [p for r in self.owned_replica_sets(d) for p in self.pods.pods_of(r)]
        updated = len(self.pods.pods_of(new_rs)) if new_rs is not None else 0
        available = sum(1 for p in all_pods if self.pods.is_ready(p))
        counters = {"replicas": len(all_pods), "updatedReplicas": updated,
                    "readyReplicas": available, "availableReplicas": available,
                    "unavailableReplicas": max(0, want - available)}
        if d["spec"].get("paused"):
            progressing = ("Unknown", "DeploymentPaused", "Deployment is paused")
        elif key in self._timed_out:
            progressing = ("False", *self._progress[key])
        elif new_rs is not None and not self._remaining(key):
            progressing = ("True", "NewReplicaSetAvailable",
                           f'ReplicaSet "{new_rs["metadata"]["name"]}" has successfully '
                           "progressed.")
        elif key in self._progress:
            progressing = ("True", *self._progress[key])
        else:
            progressing = ("Unknown", "", "")
        minimum_ok = available >= want - _max_unavailable(d)

        def update(obj: Obj) -> None:
            if revision is not None:
                obj["metadata"].setdefault("annotations", {})[REVISION] = revision
            status = obj.setdefault("status", {})
            if observed is not None:
                status["observedGeneration"] = observed
            for field, value in counters.items():
                if value:
                    status[field] = value
                else:
                    status.pop(field, None)  # Go omits zero counters (omitempty)
            if minimum_ok:
                _set_condition(obj, "Available", "True", "MinimumReplicasAvailable",
                               "Deployment has minimum availability.")
            else:
                _set_condition(obj, "Available", "False", "MinimumReplicasUnavailable",
                               "Deployment does not have minimum availability.")
            if progressing[1]:
                _set_condition(obj, "Progressing", *progressing)

        self.store.mutate("apps/deployments", *key, update)


# ------------------------------------------------------------------------- helpers
def _revision(rs: Obj) -> int:
    try:
        return int((rs["metadata"].get("annotations") or {}).get(REVISION, "0"))
    except ValueError:
        return 0  # unparsable revisions are skipped by the real controller


def _percent_or_int(value: object, total: int, *, round_up: bool) -> int:
    if isinstance(value, str) and value.endswith("%"):
        scaled = int(value[:-1]) * total
        return -(-scaled // 100) if round_up else scaled // 100
    return int(str(value)) if value is not None else 0


def _rolling(d: Obj) -> dict[str, object]:
    return (d["spec"].get("strategy") or {}).get("rollingUpdate") or {}


def _max_surge(d: Obj) -> int:
    return _percent_or_int(_rolling(d).get("maxSurge", "25%"),
                           int(d["spec"].get("replicas", 1)), round_up=True)


def _max_unavailable(d: Obj) -> int:
    return _percent_or_int(_rolling(d).get("maxUnavailable", "25%"),
                           int(d["spec"].get("replicas", 1)), round_up=False)


def _set_condition(d: Obj, ctype: str, status: str, reason: str, message: str) -> None:
    conditions = d.setdefault("status", {}).setdefault("conditions", [])
    now = now_rfc3339()
    for cond in conditions:
        if cond["type"] == ctype:
            if (cond["status"], cond["reason"], cond["message"]) == (status, reason, message):
                return
            if cond["status"] != status:
                cond["lastTransitionTime"] = now
            cond.update(status=status, reason=reason, message=message, lastUpdateTime=now)
            return
    conditions.append({"type": ctype, "status": status, "reason": reason, "message": message,
                       "lastUpdateTime": now, "lastTransitionTime": now})
