"""Deployment and ReplicaSet controllers: ReplicaSet selection and revisions, RollingUpdate
and Recreate rollouts within maxSurge/maxUnavailable, the progress deadline, history cleanup.
"""

# One sync follows kube-controller-manager's syncDeployment (kubernetes/kubernetes
# pkg/controller/deployment/deployment_controller.go): paused and scaling events take sync()
# (sync.go), otherwise rolloutRolling (rolling.go) or rolloutRecreate (recreate.go), each
# ending in syncRolloutStatus (progress.go). The arithmetic lives in rollout.py. The
# ReplicaSet controller (pkg/controller/replicaset/replica_set.go manageReplicas,
# replica_set_utils.go calculateStatus) then makes each ReplicaSet's active pods match its
# spec and reports ready/available counts. A real cluster reacts to every write through
# informers within milliseconds; here one sync repeats both controllers until nothing
# changes, and only the kubelet (kubelet.py), minReadySeconds, the progress deadline and
# grace periods take time. Counters see active pods only (controller.IsPodActive,
# pkg/controller/controller_utils.go): a Terminating pod is no replica, yet Recreate waits
# for it (recreate.go oldPodsRunning).

from __future__ import annotations

import copy
import math
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from . import rollout as ro
from .events import EventRecorder
from .kubelet import Kubelet, Timings
from .objects import (
    CONTROLLER_SKIP,
    DESIRED_REPLICAS,
    HASH_LABEL,
    MAX_REPLICAS,
    REVISION,
    REVISION_HISTORY,
    equal_ignore_hash,
    template_hash,
)
from .pods import PodFleet
from .scheduler import Scheduler
from .store import Obj, Store, WatchEvent

Key = tuple[str, str]
DEPLOYMENT_CONTROLLER = "deployment-controller"
REPLICASET_CONTROLLER = "replicaset-controller"


@dataclass
class RolloutSettings:
    duration: float = 1.0  # about the wall time of a one-pod-at-a-time rollout
    observe_delay: float = 0.0  # how long before the controller notices a spec change


class DeploymentController:
    def __init__(self, store: Store, pods: PodFleet, scheduler: Scheduler,
                 settings: RolloutSettings, events: EventRecorder | None = None) -> None:
        self.store, self.pods, self.scheduler, self.settings = store, pods, scheduler, settings
        self.events = events or EventRecorder(store)
        self.lock = threading.RLock()
        self.kubelet = Kubelet(store, pods, scheduler, self.events, self.lock,
                               self._pod_changed)
        self._pending: dict[Key, int] = {}  # outstanding sync callbacks per deployment
        self._visible_at: dict[Key, float] = {}  # a client's change is seen from then on
        self._current: dict[Key, str] = {}  # name of the deployment's new ReplicaSet
        self._fail_next: set[Key] = set()
        self._deadline_token: dict[Key, int] = {}
        store.add_listener(self._on_event)

    # ------------------------------------------------------------------- plumbing
    def _on_event(self, event: WatchEvent, actor: str) -> None:
        if event.key == "pods" and (actor == "client" or event.type == "DELETED"):
            # A client deleted or changed a pod, or the kubelet removed one after its grace
            # period: the ReplicaSet controller sees it through its pod informer (and
            # Recreate waits for old pods to be gone).
            owner = self._deployment_of(event.obj)
            if owner is not None:
                self.enqueue(*owner, delay=0.0)
            return
        if event.key == "apps/replicasets" and actor == "client":
            # A client changed or deleted a ReplicaSet: the deployment controller's
            # ReplicaSet informer requeues the owner; a deleted one's pods go with it (the
            # garbage collector's background propagation, ownerReferences).
            if event.type == "DELETED":
                self._collect_pods_of(event.obj)
            for ref in event.obj["metadata"].get("ownerReferences") or []:
                if ref.get("kind") == "Deployment" and ref.get("controller"):
                    self.enqueue(event.namespace, str(ref["name"]), delay=0.0)
            return
        if actor in ("controller", DEPLOYMENT_CONTROLLER) or event.key != "apps/deployments":
            return
        self.enqueue(event.namespace, event.obj["metadata"]["name"])

    def _collect_pods_of(self, rs: Obj) -> None:
        def collect() -> None:
            with self.lock:
                for pod in self.pods.all_pods_of(rs):
                    if not pod["metadata"].get("deletionTimestamp"):
                        self.pods.delete(pod)

        self.scheduler.call_later(0.0, collect)

    def _pod_changed(self, pod: Obj, delay: float) -> None:
        owner = self._deployment_of(pod)
        if owner is not None:
            self.enqueue(*owner, delay=delay)

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

    def enqueue(self, namespace: str, name: str, *, delay: float | None = None) -> None:
        """Sync the deployment asynchronously. A client's change is seen ``observe_delay``
        later (the informer lag); no sync runs before that, so none sees it early."""
        key = (namespace, name)
        now = time.monotonic()
        with self.store.lock:
            if delay is None:
                delay = self.settings.observe_delay
                self._visible_at[key] = max(self._visible_at.get(key, 0.0), now + delay)
            delay = max(delay, self._visible_at.get(key, 0.0) - now)
            self._pending[key] = self._pending.get(key, 0) + 1
        self.scheduler.call_later(delay, lambda: self._run_sync(key))

    def current_rs_name(self, namespace: str, name: str) -> str | None:
        return self._current.get((namespace, name))

    def _run_sync(self, key: Key) -> None:
        try:
            self.sync(*key)
        finally:
            with self.store.changed:
                self._pending[key] = self._pending.get(key, 1) - 1
                self.store.changed.notify_all()

    def busy(self, namespace: str, name: str) -> bool:
        """A sync is queued, or the rollout is still moving: not complete, not paused, not
        past its progress deadline. Pods still Terminating do not count."""
        if self._pending.get((namespace, name), 0) > 0:
            return True
        d = self.store.try_get("apps/deployments", namespace, name)
        if d is None or d["spec"].get("paused"):
            return False
        status = d.get("status") or {}
        cond = ro.get_condition(status, "Progressing")
        if cond is not None and cond.get("reason") == ro.TIMED_OUT:
            return False
        return not ro.deployment_complete(d, status)

    def fail_next_rollout(self, namespace: str, name: str) -> None:
        self._fail_next.add((namespace, name))

    # ----------------------------------------------------------------------- sync
    def owned_replica_sets(self, d: Obj) -> list[Obj]:
        rss, _ = self.store.list("apps/replicasets", d["metadata"]["namespace"])
        uid = d["metadata"]["uid"]
        return [rs for rs in rss if any(ref.get("uid") == uid and ref.get("controller")
                                        for ref in rs["metadata"].get("ownerReferences") or [])]

    def sync(self, namespace: str, name: str, *, instant: bool = False) -> None:
        """Both controllers until nothing changes. ``instant``: a seed standing for history
        long past: pods start ready (or failing), retired ones are gone at once, and a
        rollout that made no progress is past its deadline."""
        key = (namespace, name)
        with self.lock:
            for _ in range(200):
                before = self.store.resource_version
                d = self.store.try_get("apps/deployments", namespace, name)
                if d is None:
                    self._garbage_collect(namespace, name)
                    return
                self._sync_deployment(key, d, instant=instant)
                self._sync_replica_sets(key, instant=instant)
                if self.store.resource_version == before:
                    break
            if not instant:
                self._requeue_stuck(key)

    def _requeue_stuck(self, key: Key) -> None:
        d = self.store.try_get("apps/deployments", *key)
        if d is None:
            return
        after = ro.seconds_until_deadline(d, d.get("status") or {}, datetime.now(UTC))
        if after is None:
            return
        # The work queue's AddAfter keeps one entry per key: only the latest check counts,
        # and a deadline check far ahead does not make the deployment busy.
        self._deadline_token[key] = token = self._deadline_token.get(key, 0) + 1

        def check() -> None:
            if self._deadline_token.get(key) == token:
                self.enqueue(*key, delay=0.0)

        self.scheduler.call_later(after, check)

    # ------------------------------------------------------- deployment controller
    def _sync_deployment(self, key: Key, d: Obj, *, instant: bool) -> None:
        """syncDeployment (deployment_controller.go)."""
        now = datetime.now(UTC)
        check_at = now + timedelta(days=3650) if instant else now
        d = self._check_paused_conditions(d, now)
        rss = self.owned_replica_sets(d)
        if d["spec"].get("paused"):
            self._sync_only(key, d, rss, now)
            return
        if self._is_scaling_event(d, rss):
            self._sync_only(key, d, rss, now)
            return
        if ro.is_rolling(d):
            self._rollout_rolling(key, d, rss, now, check_at)
        else:
            self._rollout_recreate(key, d, rss, now, check_at)

    def _check_paused_conditions(self, d: Obj, now: datetime) -> Obj:
        """checkPausedConditions (sync.go): Unknown/DeploymentPaused while paused, then
        Unknown/DeploymentResumed, so a resumed rollout's deadline starts afresh; a
        ProgressDeadlineExceeded is never overwritten."""
        if not ro.has_progress_deadline(d):
            return d
        status = copy.deepcopy(d.get("status") or {})
        cond = ro.get_condition(status, "Progressing")
        if cond is not None and cond.get("reason") == ro.TIMED_OUT:
            return d
        paused_exists = cond is not None and cond.get("reason") == ro.PAUSED
        if d["spec"].get("paused") and not paused_exists:
            ro.set_condition(status, ro.new_condition("Progressing", "Unknown", ro.PAUSED,
                                                      "Deployment is paused", now))
        elif not d["spec"].get("paused") and paused_exists:
            ro.set_condition(status, ro.new_condition("Progressing", "Unknown", ro.RESUMED,
                                                      "Deployment is resumed", now))
        else:
            return d
        return self._write_status(d, status)

    def _split(self, d: Obj, rss: list[Obj]) -> tuple[Obj | None, list[Obj]]:
        """FindNewReplicaSet / FindOldReplicaSets (deployment_util.go): the oldest
        ReplicaSet whose template equals the Deployment's (pod-template-hash aside)."""
        rss = sorted(rss, key=lambda r: (r["metadata"]["creationTimestamp"],
                                         r["metadata"]["name"]))
        new_rs = next((r for r in rss if equal_ignore_hash(r["spec"]["template"],
                                                           d["spec"]["template"])), None)
        old = [r for r in rss
               if new_rs is None or r["metadata"]["uid"] != new_rs["metadata"]["uid"]]
        return new_rs, old

    def _new_and_old(self, key: Key, d: Obj, rss: list[Obj], *, create: bool,
                     now: datetime) -> tuple[Obj, Obj | None, list[Obj]]:
        """getAllReplicaSetsAndSyncRevision + getNewReplicaSet (sync.go): renumber (or
        create) the new ReplicaSet with revision max(old)+1, copy the Deployment's
        annotations to it and its revision back to the Deployment."""
        new_rs, old = self._split(d, rss)
        new_revision = max((_revision(r) for r in old), default=0) + 1
        created = False
        if new_rs is not None:
            new_rs = self._renumber(d, new_rs, new_revision)
        elif create:
            new_rs, created = self._create_rs(d, old, new_revision), True
        if new_rs is not None and self._current.get(key) != new_rs["metadata"]["name"]:
            self._current[key] = new_rs["metadata"]["name"]
            if key in self._fail_next:  # the test's hook: this rollout's pods crash
                self._fail_next.discard(key)
                self.kubelet.failing_hashes.add(
                    (key[0], new_rs["spec"]["template"]["metadata"]["labels"][HASH_LABEL]))
        if new_rs is None:
            return d, None, old
        revision = new_rs["metadata"]["annotations"][REVISION]
        if (d["metadata"].get("annotations") or {}).get(REVISION) != revision:
            def set_revision(obj: Obj) -> None:
                obj["metadata"].setdefault("annotations", {})[REVISION] = revision

            d = self.store.mutate("apps/deployments", *key, set_revision,
                                  actor=DEPLOYMENT_CONTROLLER) or d
        if ro.has_progress_deadline(d):
            status = copy.deepcopy(d.get("status") or {})
            name = new_rs["metadata"]["name"]
            if created:
                ro.set_condition(status, ro.new_condition(
                    "Progressing", "True", ro.NEW_RS_CREATED,
                    f'Created new replica set "{name}"', now))
                d = self._write_status(d, status)
            elif ro.get_condition(status, "Progressing") is None:
                # Only when no Progressing condition was ever recorded.
                ro.set_condition(status, ro.new_condition(
                    "Progressing", "True", ro.FOUND_NEW_RS, f'Found new replica set "{name}"',
                    now))
                d = self._write_status(d, status)
        return d, new_rs, old

    def _renumber(self, d: Obj, rs: Obj, new_revision: int) -> Obj:
        """SetNewReplicaSetAnnotations (deployment_util.go): the Deployment's annotations
        (minus the controller's own), revision bumped with the old one kept in
        revision-history; minReadySeconds follows the Deployment."""
        ann = rs["metadata"].setdefault("annotations", {})
        before = (copy.deepcopy(ann), rs["spec"].get("minReadySeconds"))
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
        min_ready = d["spec"].get("minReadySeconds")
        if min_ready:
            rs["spec"]["minReadySeconds"] = min_ready
        else:
            rs["spec"].pop("minReadySeconds", None)
        if (ann, rs["spec"].get("minReadySeconds")) == before:
            return rs
        return self.store.replace("apps/replicasets", rs, actor="controller", check_rv=False,
                                  keep_status=True)

    def _create_rs(self, d: Obj, old: list[Obj], revision: int) -> Obj:
        """getNewReplicaSet's create branch: sized by NewRSNewReplicas at once."""
        meta, spec = d["metadata"], d["spec"]
        template = copy.deepcopy(spec["template"])
        tpl_hash = template_hash(template)
        template.setdefault("metadata", {}).setdefault("labels", {})[HASH_LABEL] = tpl_hash
        selector = copy.deepcopy(spec.get("selector") or {})
        selector.setdefault("matchLabels", {})[HASH_LABEL] = tpl_hash
        ann = {k: v for k, v in (meta.get("annotations") or {}).items() if k not in CONTROLLER_SKIP}
        ann.update(_replicas_annotations(d))
        ann[REVISION] = str(revision)
        rs: Obj = {
            "metadata": {
                "name": f"{meta['name']}-{tpl_hash}", "namespace": meta["namespace"],
                "labels": dict(template["metadata"]["labels"]), "annotations": ann,
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment",
                                     "name": meta["name"], "uid": meta["uid"],
                                     "controller": True, "blockOwnerDeletion": True}],
            },
            "spec": {"replicas": 0, "selector": selector, "template": template},
            "status": {"replicas": 0},
        }
        if spec.get("minReadySeconds"):
            rs["spec"]["minReadySeconds"] = spec["minReadySeconds"]
        size = ro.new_rs_new_replicas(d, [*old, rs], rs)
        rs["spec"]["replicas"] = size
        created = self.store.create("apps/replicasets", rs, actor="controller")
        if size > 0:
            self.events.emit(d, "ScalingReplicaSet", f"Scaled up replica set "
                             f"{created['metadata']['name']} from 0 to {size}",
                             component=DEPLOYMENT_CONTROLLER)
        return created

    def _scale(self, d: Obj, rs: Obj, size: int, *, always: bool = False) -> Obj:
        """scaleReplicaSetAndRecordEvent (sync.go): nothing when the size is right already;
        else scaleReplicaSet: new size and desired/max-replicas annotations, one
        ScalingReplicaSet event per size change. ``always``: scaleReplicaSet directly, as
        proportional scaling calls it, refreshing stale annotations at an unchanged size."""
        old_size = ro.spec_replicas(rs)
        wanted = _replicas_annotations(d)
        ann = rs["metadata"].get("annotations") or {}
        if old_size == size and (not always or
                                 all(ann.get(k) == v for k, v in wanted.items())):
            return rs

        def update(obj: Obj) -> None:
            obj["spec"]["replicas"] = size
            obj["metadata"].setdefault("annotations", {}).update(wanted)

        updated = self.store.mutate("apps/replicasets", rs["metadata"]["namespace"],
                                    rs["metadata"]["name"], update, actor="controller") or rs
        if old_size != size:
            verb = "up" if size > old_size else "down"
            self.events.emit(d, "ScalingReplicaSet", f"Scaled {verb} replica set "
                             f"{rs['metadata']['name']} from {old_size} to {size}",
                             component=DEPLOYMENT_CONTROLLER)
        return updated

    def _rollout_rolling(self, key: Key, d: Obj, rss: list[Obj], now: datetime,
                         check_at: datetime) -> None:
        """rolloutRolling (rolling.go): scale up if we can, else scale down if we can, else
        clean up history once the stored status says complete; status every time."""
        d, new_rs, old = self._new_and_old(key, d, rss, create=True, now=now)
        assert new_rs is not None
        all_rss = [*old, new_rs]
        if not self._reconcile_new(d, all_rss, new_rs):
            active_old = [r for r in old if ro.spec_replicas(r) > 0]
            if not self._reconcile_old(d, all_rss, active_old, new_rs) and \
                    ro.deployment_complete(d, d.get("status") or {}):
                self._cleanup(d, old)
        self._sync_rollout_status(key, now, check_at)

    def _reconcile_new(self, d: Obj, all_rss: list[Obj], new_rs: Obj) -> bool:
        """reconcileNewReplicaSet: shrink a new ReplicaSet above replicas, else grow it by
        NewRSNewReplicas (within replicas + maxSurge asked-for pods)."""
        want, have = ro.replicas(d), ro.spec_replicas(new_rs)
        if have == want:
            return False
        size = want if have > want else ro.new_rs_new_replicas(d, all_rss, new_rs)
        return ro.spec_replicas(self._scale(d, new_rs, size)) != have

    def _reconcile_old(self, d: Obj, all_rss: list[Obj], old: list[Obj], new_rs: Obj) -> bool:
        """reconcileOldReplicaSets: never below replicas - maxUnavailable available pods,
        counting the new ReplicaSet's unavailable pods as already lost."""
        if ro.replica_count(old) == 0:
            return False
        min_available = ro.replicas(d) - ro.max_unavailable(d)
        new_unavailable = ro.spec_replicas(new_rs) - \
            int((new_rs.get("status") or {}).get("availableReplicas") or 0)
        max_scaled_down = ro.replica_count(all_rss) - min_available - new_unavailable
        if max_scaled_down <= 0:
            return False
        old = sorted(old, key=_by_creation)
        old, cleaned = self._cleanup_unhealthy(d, old, max_scaled_down)
        scaled = self._scale_down_old(d, [*old, new_rs], old)
        return cleaned + scaled > 0

    def _cleanup_unhealthy(self, d: Obj, old: list[Obj],
                           max_cleanup: int) -> tuple[list[Obj], int]:
        """cleanupUnhealthyReplicas: first drop old pods that are not available anyway."""
        total = 0
        out: list[Obj] = []
        for rs in old:
            size = ro.spec_replicas(rs)
            available = int((rs.get("status") or {}).get("availableReplicas") or 0)
            if total >= max_cleanup or size == 0 or size == available:
                out.append(rs)
                continue
            count = min(max_cleanup - total, size - available)
            out.append(self._scale(d, rs, size - count))
            total += count
        return out, total

    def _scale_down_old(self, d: Obj, all_rss: list[Obj], old: list[Obj]) -> int:
        """scaleDownOldReplicaSetsForRollingUpdate: only the available pods above
        replicas - maxUnavailable may go, oldest ReplicaSets first."""
        min_available = ro.replicas(d) - ro.max_unavailable(d)
        available = ro.available_count(all_rss)
        if available <= min_available:
            return 0
        budget, total = available - min_available, 0
        for rs in sorted(old, key=_by_creation):
            if total >= budget:
                break
            size = ro.spec_replicas(rs)
            if size == 0:
                continue
            count = min(size, budget - total)
            self._scale(d, rs, size - count)
            total += count
        return total

    def _rollout_recreate(self, key: Key, d: Obj, rss: list[Obj], now: datetime,
                          check_at: datetime) -> None:
        """rolloutRecreate (recreate.go): scale every old ReplicaSet to 0, wait until no old
        pod runs (Terminating ones included), only then create/scale up the new one."""
        d, new_rs, old = self._new_and_old(key, d, rss, create=False, now=now)
        scaled = False
        for rs in old:
            if ro.spec_replicas(rs) > 0:
                self._scale(d, rs, 0)
                scaled = True
        if not scaled and not self._old_pods_running(old):
            if new_rs is None:
                d, new_rs, old = self._new_and_old(key, d, self.owned_replica_sets(d),
                                                   create=True, now=now)
            assert new_rs is not None
            self._scale(d, new_rs, ro.replicas(d))
            if ro.deployment_complete(d, d.get("status") or {}):
                self._cleanup(d, old)
        self._sync_rollout_status(key, now, check_at)

    def _old_pods_running(self, old: list[Obj]) -> bool:
        """oldPodsRunning: any old active pod, or any old pod not Failed/Succeeded."""
        if ro.actual_count(old) > 0:
            return True
        return any((p.get("status") or {}).get("phase") not in ("Failed", "Succeeded")
                   for rs in old for p in self.pods.all_pods_of(rs))

    def _is_scaling_event(self, d: Obj, rss: list[Obj]) -> bool:
        """isScalingEvent (sync.go): an active ReplicaSet was sized for another replicas."""
        for rs in rss:
            desired = (rs["metadata"].get("annotations") or {}).get(DESIRED_REPLICAS)
            if ro.spec_replicas(rs) > 0 and desired is not None and \
                    int(desired) != ro.replicas(d):
                return True
        return False

    def _sync_only(self, key: Key, d: Obj, rss: list[Obj], now: datetime) -> None:
        """sync() (sync.go): scale, clean up when paused, write counters (no Progressing
        estimate, which is why a paused rollout never times out)."""
        d, new_rs, old = self._new_and_old(key, d, rss, create=False, now=now)
        self._proportional_scale(d, new_rs, old)
        if d["spec"].get("paused"):
            self._cleanup(d, old)
        d = self.store.get("apps/deployments", *key)
        all_rss = self.owned_replica_sets(d)
        new_rs, _ = self._split(d, all_rss)
        status = ro.calculate_status(d, all_rss, new_rs, now)
        if status != (d.get("status") or {}):
            self._write_status(d, status)

    def _proportional_scale(self, d: Obj, new_rs: Obj | None, old: list[Obj]) -> None:
        """scale() (sync.go): one active (or the latest) ReplicaSet takes all replicas; a
        saturated new one leaves the old at 0; otherwise (RollingUpdate) the replicas to add
        or remove, within replicas + maxSurge, are shared in proportion (GetProportion and
        getReplicaSetFraction, deployment_util.go), larger ReplicaSets first, leftovers to
        the first."""
        everything = ([new_rs] if new_rs is not None else []) + old
        active = [r for r in everything if ro.spec_replicas(r) > 0]
        if len(active) <= 1:
            latest = active[0] if active else (new_rs if new_rs is not None else (
                max(old, key=_by_creation) if old else None))
            if latest is not None and ro.spec_replicas(latest) != ro.replicas(d):
                self._scale(d, latest, ro.replicas(d))
            return
        if _is_saturated(d, new_rs):
            for rs in old:
                if ro.spec_replicas(rs) > 0:
                    self._scale(d, rs, 0)
            return
        if not ro.is_rolling(d):
            return
        allowed = ro.replicas(d) + ro.max_surge(d) if ro.replicas(d) > 0 else 0
        to_add = allowed - ro.replica_count(active)
        # ReplicaSetsBySizeNewer (up) / BySizeOlder (down): larger first, then by age.
        newer_first = to_add > 0
        active.sort(key=lambda r: (-ro.spec_replicas(r), _invert(_by_creation(r)[0])
                                   if newer_first else _by_creation(r)[0]))
        sizes: dict[str, int] = {}
        added = 0
        for rs in active:
            share = _proportion(d, rs, to_add, added) if to_add else 0
            sizes[rs["metadata"]["name"]] = ro.spec_replicas(rs) + share
            added += share
        for i, rs in enumerate(active):
            name = rs["metadata"]["name"]
            if i == 0 and to_add:
                sizes[name] = max(0, sizes[name] + to_add - added)
            self._scale(d, rs, sizes[name], always=True)

    def _sync_rollout_status(self, key: Key, now: datetime, check_at: datetime) -> None:
        d = self.store.get("apps/deployments", *key)
        all_rss = self.owned_replica_sets(d)
        new_rs, _ = self._split(d, all_rss)
        status = ro.sync_rollout_status(d, all_rss, new_rs, now, check_at=check_at)
        if status != (d.get("status") or {}):
            self._write_status(d, status)

    def _write_status(self, d: Obj, status: Obj) -> Obj:
        def update(obj: Obj) -> None:
            obj["status"] = status

        return self.store.mutate("apps/deployments", d["metadata"]["namespace"],
                                 d["metadata"]["name"], update,
                                 actor=DEPLOYMENT_CONTROLLER) or d

    def _cleanup(self, d: Obj, old: list[Obj]) -> None:
        """cleanupDeployment (sync.go): beyond revisionHistoryLimit, delete the oldest old
        ReplicaSets by revision, skipping any with replicas asked for or still counted."""
        limit = d["spec"].get("revisionHistoryLimit")
        if limit is None:
            return
        alive = [r for r in old if not r["metadata"].get("deletionTimestamp")]
        diff = len(alive) - int(limit)
        if diff <= 0:
            return
        alive.sort(key=lambda r: (_revision(r), r["metadata"]["creationTimestamp"]))
        for rs in alive[:diff]:
            status = rs.get("status") or {}
            if int(status.get("replicas") or 0) or ro.spec_replicas(rs) or \
                    int(rs["metadata"].get("generation") or 1) > \
                    int(status.get("observedGeneration") or 0):
                continue
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

    # ------------------------------------------------------- replicaset controller
    def _sync_replica_sets(self, key: Key, *, instant: bool) -> None:
        d = self.store.try_get("apps/deployments", *key)
        if d is None:
            return
        for rs in self.owned_replica_sets(d):
            self._manage_replicas(d, rs, instant=instant)
            self._replica_set_status(rs)

    def _manage_replicas(self, d: Obj, rs: Obj, *, instant: bool) -> None:
        """manageReplicas (replica_set.go): create the missing pods at once, or delete the
        surplus, least valuable first (getPodsToDelete's ranking)."""
        pods = self.pods.pods_of(rs)
        diff = len(pods) - ro.spec_replicas(rs)
        if diff < 0:
            timings = self._timings(d)
            min_ready = int(rs["spec"].get("minReadySeconds") or 0)
            for _ in range(-diff):
                pod = self.pods.add(rs)
                self.events.emit(rs, "SuccessfulCreate", f"Created pod: {pod['metadata']['name']}",
                                 component=REPLICASET_CONTROLLER)
                self.kubelet.start(pod, timings, instant=instant, min_ready=min_ready)
        elif diff > 0:
            for pod in sorted(pods, key=_deletion_rank)[:diff]:
                for c in pod["spec"].get("containers", []):
                    if not instant:
                        self.events.emit(pod, "Killing", f"Stopping container {c['name']}",
                                         component="kubelet", host="emulator-node")
                self.pods.delete(pod, grace_seconds=0 if instant else None)
                self.events.emit(rs, "SuccessfulDelete", f"Deleted pod: {pod['metadata']['name']}",
                                 component=REPLICASET_CONTROLLER)

    def _timings(self, d: Obj) -> Timings:
        per_pod = self.settings.duration / max(1, ro.replicas(d))
        return Timings(created=per_pod / 2, ready=per_pod)

    def _replica_set_status(self, rs: Obj) -> None:
        """calculateStatus (replica_set_utils.go): active pods; ready; available = ready
        for minReadySeconds (podutil.IsPodAvailable)."""
        pods = self.pods.pods_of(rs)
        min_ready = int(rs["spec"].get("minReadySeconds") or 0)
        now = datetime.now(UTC)
        ready = [p for p in pods if self.pods.is_ready(p)]
        available = [p for p in ready if _available(p, min_ready, now)]
        labels = (rs["spec"].get("selector") or {}).get("matchLabels") or {}
        labelled = [p for p in pods if all((p["metadata"].get("labels") or {}).get(k) == v
                                           for k, v in labels.items())]

        def update(obj: Obj) -> None:
            # ReplicaSetStatus.replicas has no omitempty; the other counters do.
            obj["status"] = {"replicas": len(pods), **{k: v for k, v in {
                "fullyLabeledReplicas": len(labelled), "readyReplicas": len(ready),
                "availableReplicas": len(available),
                "observedGeneration": obj["metadata"].get("generation", 1)}.items() if v}}

        self.store.mutate("apps/replicasets", rs["metadata"]["namespace"],
                          rs["metadata"]["name"], update, actor="controller")


# ------------------------------------------------------------------------- helpers
def _revision(rs: Obj) -> int:
    try:
        return int((rs["metadata"].get("annotations") or {}).get(REVISION, "0"))
    except ValueError:
        return 0  # unparsable revisions are skipped by the real controller


def _by_creation(rs: Obj) -> tuple[str, str]:
    return rs["metadata"]["creationTimestamp"], rs["metadata"]["name"]


def _replicas_annotations(d: Obj) -> dict[str, str]:
    """SetReplicasAnnotations: desired-replicas and max-replicas (replicas + maxSurge)."""
    return {DESIRED_REPLICAS: str(ro.replicas(d)),
            MAX_REPLICAS: str(ro.replicas(d) + ro.max_surge(d))}


def _is_saturated(d: Obj, rs: Obj | None) -> bool:
    """IsSaturated (deployment_util.go): sized, annotated and available at replicas."""
    if rs is None:
        return False
    desired = (rs["metadata"].get("annotations") or {}).get(DESIRED_REPLICAS, "")
    want = ro.replicas(d)
    return ro.spec_replicas(rs) == want and desired == str(want) and \
        int((rs.get("status") or {}).get("availableReplicas") or 0) == want


def _proportion(d: Obj, rs: Obj, to_add: int, added: int) -> int:
    """GetProportion / getReplicaSetFraction: the ReplicaSet's share of the change, its size
    scaled by (replicas + maxSurge) / its max-replicas annotation, rounded half away from
    zero, never past what is left to add or remove."""
    size = ro.spec_replicas(rs)
    if size == 0 or to_add == 0 or to_add == added:
        return 0
    if ro.replicas(d) == 0:
        fraction = -size
    else:
        try:
            annotated = int((rs["metadata"].get("annotations") or {})[MAX_REPLICAS])
        except (KeyError, ValueError):
            annotated = int((d.get("status") or {}).get("replicas") or 0)
        scaled = size * (ro.replicas(d) + ro.max_surge(d)) / max(1, annotated)
        fraction = int(math.floor(scaled + 0.5) if scaled >= 0 else -math.floor(-scaled + 0.5)) \
            - size
    allowed = to_add - added
    return min(fraction, allowed) if to_add > 0 else max(fraction, allowed)


def _ready_since(pod: Obj) -> str:
    for cond in (pod.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "Ready" and cond.get("status") == "True":
            return str(cond.get("lastTransitionTime") or "")
    return ""


def _available(pod: Obj, min_ready: int, now: datetime) -> bool:
    if min_ready == 0:
        return True
    since = _ready_since(pod)
    return bool(since) and ro.parse_time(since) + timedelta(seconds=min_ready) < now


def _deletion_rank(pod: Obj) -> tuple[int, int, str, int, str]:
    """controller.ActivePodsWithRanks (controller_utils.go), ascending = deleted first:
    Pending < Running, not ready < ready, ready for less time first, more restarts first,
    newer first (the tuple sorts ready-since and creation descending via inversion)."""
    status = pod.get("status") or {}
    phase = {"Pending": 0, "Unknown": 1, "Running": 2}.get(status.get("phase", ""), 0)
    ready = 1 if PodFleet.is_ready(pod) else 0
    restarts = max((int(c.get("restartCount") or 0)
                    for c in status.get("containerStatuses") or []), default=0)
    return (phase, ready, _invert(_ready_since(pod)), -restarts,
            _invert(pod["metadata"].get("creationTimestamp", "")) + pod["metadata"]["name"])


def _invert(stamp: str) -> str:
    """A string that sorts in the reverse order of ``stamp`` (digits only matter)."""
    return "".join(chr(ord("9") - ord(ch) + ord("0")) if ch.isdigit() else ch for ch in stamp)
