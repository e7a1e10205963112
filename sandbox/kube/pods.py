"""Pods the simulated ReplicaSets own, their graceful termination (the kubelet's part),
their log lines and their metrics.k8s.io usage.
"""

# Termination runs in real time on the emulator's scheduler thread: a delete marks the pod
# (deletionTimestamp, deletionGracePeriodSeconds: see Store.delete_gracefully); the pod stays
# listed, shown as Terminating, until its grace period has elapsed; then the "kubelet" deletes
# it with grace 0 and a UID precondition, as the kubelet's status manager does once the
# containers have stopped (kubernetes/kubernetes pkg/kubelet/status/status_manager.go). The
# emulated containers ignore SIGTERM, so they take the whole grace period: the worst case a
# rollback has to wait for.

from __future__ import annotations

import copy
import threading
import time

from .objects import HASH_LABEL, is_pod_active, now_rfc3339, pod_grace_period, safe_encode
from .scheduler import Scheduler
from .store import ApiError, Obj, Store

KUBELET = "kubelet"


class PodFleet:
    """Creates/readies/deletes pods for a ReplicaSet and keeps their logs and usage."""

    def __init__(self, store: Store, scheduler: Scheduler) -> None:
        self.store, self.scheduler = store, scheduler
        self._lock = threading.Lock()
        self._logs: dict[tuple[str, str], list[str]] = {}
        # (namespace, pod-template-hash or "") -> (cpu, memory) quantities
        self._usage: dict[tuple[str, str], tuple[str, str]] = {}
        # pods being terminated: uid -> monotonic time of the first delete / end of grace
        self._started: dict[str, float] = {}
        self._deadlines: dict[str, float] = {}

    # ------------------------------------------------------------------------ pods
    def pods_of(self, rs: Obj) -> list[Obj]:
        """The ReplicaSet's replicas: its active pods (FilterActivePods), Terminating ones
        excluded, as the ReplicaSet and Deployment controllers count them."""
        return [p for p in self.all_pods_of(rs) if is_pod_active(p)]

    def all_pods_of(self, rs: Obj) -> list[Obj]:
        """Every pod the ReplicaSet owns that the API still lists, Terminating included."""
        meta = rs["metadata"]
        pods, _ = self.store.list("pods", meta["namespace"])
        return [p for p in pods if any(ref.get("uid") == meta["uid"]
                                       for ref in p["metadata"].get("ownerReferences") or [])]

    def add(self, rs: Obj) -> Obj:
        """A new pod of the ReplicaSet, bound to the node and Pending: the kubelet
        (kubelet.py) takes it from there."""
        meta = rs["metadata"]
        template = copy.deepcopy(rs["spec"]["template"])
        # 7919 is coprime with 10**5, so the last five digits never repeat within 100k pods.
        suffix = safe_encode(f"{self.store.next_counter() * 7919 % 100000:05d}")
        name = f"{meta['name']}-{suffix}"
        pod: Obj = {
            "metadata": {
                "name": name, "namespace": meta["namespace"],
                "labels": dict((template.get("metadata") or {}).get("labels") or {}),
                "annotations": dict((template.get("metadata") or {}).get("annotations") or {}),
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                                     "name": meta["name"], "uid": meta["uid"],
                                     "controller": True, "blockOwnerDeletion": True}],
            },
            "spec": {**template.get("spec", {}), "nodeName": "emulator-node"},
            "status": {"phase": "Pending", "qosClass": "BestEffort",
                       "conditions": [{"type": "PodScheduled", "status": "True",
                                       "lastProbeTime": None,
                                       "lastTransitionTime": now_rfc3339()}]},
        }
        if not pod["metadata"]["annotations"]:
            del pod["metadata"]["annotations"]
        created = self.store.create("pods", pod, actor="controller")
        with self._lock:
            self._logs[(meta["namespace"], name)] = [
                f"{now_rfc3339()} starting container {c['name']} image={c.get('image')}"
                for c in pod["spec"].get("containers", [])
            ]
        return created

    def delete(self, pod: Obj, *, grace_seconds: int | None = None, uid: str | None = None,
               actor: str = "controller", dry_run: bool = False) -> Obj:
        """DELETE a pod the way the API server does (graceful unless the grace period is 0);
        returns the pod as the delete answered it (pods' storage returns the object)."""
        ns, name = pod["metadata"]["namespace"], pod["metadata"]["name"]
        obj, gone = self.store.delete_gracefully("pods", ns, name, requested=grace_seconds,
                                                 period_for=pod_grace_period, uid=uid,
                                                 actor=actor, dry_run=dry_run)
        if dry_run:
            return obj
        if gone:
            self._forget(obj)
        else:
            self._kill_after_grace(obj)
        return obj

    def _kill_after_grace(self, pod: Obj) -> None:
        meta = pod["metadata"]
        uid, grace = str(meta["uid"]), int(meta.get("deletionGracePeriodSeconds") or 0)
        now = time.monotonic()
        with self._lock:
            deadline = self._started.setdefault(uid, now) + grace  # shortening keeps the start
            if self._deadlines.get(uid) == deadline:
                return  # a repeated delete that changed nothing: already scheduled
            self._deadlines[uid] = deadline
        ns, name = meta["namespace"], meta["name"]
        self.scheduler.call_later(max(0.0, deadline - now),
                                  lambda: self._remove_terminated(ns, name, uid))

    def _remove_terminated(self, namespace: str, name: str, uid: str) -> None:
        with self._lock:
            deadline = self._deadlines.get(uid)
            if deadline is None or time.monotonic() < deadline - 0.001:
                return  # removed already, or the grace period was changed: a later call runs
        try:
            gone = self.store.delete_gracefully("pods", namespace, name, requested=0,
                                                period_for=pod_grace_period, uid=uid,
                                                actor=KUBELET)[0]
        except ApiError as exc:
            if exc.code not in (404, 409):  # gone already, or a new pod under the same name
                raise
            with self._lock:
                self._started.pop(uid, None)
                self._deadlines.pop(uid, None)
            return
        self._forget(gone)

    def _forget(self, pod: Obj) -> None:
        meta = pod["metadata"]
        with self._lock:
            self._started.pop(str(meta.get("uid")), None)
            self._deadlines.pop(str(meta.get("uid")), None)
            self._logs.pop((meta["namespace"], meta["name"]), None)

    @staticmethod
    def is_ready(pod: Obj) -> bool:
        return any(c.get("type") == "Ready" and c.get("status") == "True"
                   for c in (pod.get("status") or {}).get("conditions") or [])

    # ------------------------------------------------------------------------ logs
    def log(self, namespace: str, pod: str, line: str) -> None:
        with self._lock:
            if (namespace, pod) in self._logs:
                self._logs[(namespace, pod)].append(line)

    def read_log(self, namespace: str, pod: str, tail: int | None) -> str:
        with self._lock:
            lines = list(self._logs.get((namespace, pod), []))
        if tail is not None:
            lines = lines[-tail:] if tail > 0 else []
        return "".join(f"{line}\n" for line in lines)

    # --------------------------------------------------------------------- metrics
    def set_usage(self, namespace: str, cpu: str, memory: str, template_hash: str = "") -> None:
        self._usage[(namespace, template_hash)] = (cpu, memory)

    def metrics(self, namespace: str | None, label_selector: str | None) -> list[Obj]:
        pods, _ = self.store.list("pods", namespace, label_selector=label_selector)
        out: list[Obj] = []
        for pod in pods:
            if not self.is_ready(pod):
                continue  # metrics-server reports nothing for pods that are not running yet
            meta = pod["metadata"]
            tpl_hash = (meta.get("labels") or {}).get(HASH_LABEL, "")
            cpu, memory = self._usage.get((meta["namespace"], tpl_hash),
                                          self._usage.get((meta["namespace"], ""),
                                                          ("5m", "32Mi")))
            out.append({
                "kind": "PodMetrics", "apiVersion": "metrics.k8s.io/v1beta1",
                "metadata": {"name": meta["name"], "namespace": meta["namespace"],
                             "labels": meta.get("labels") or {},
                             "creationTimestamp": now_rfc3339()},
                "timestamp": now_rfc3339(), "window": "15s",
                "containers": [{"name": c["name"], "usage": {"cpu": cpu, "memory": memory}}
                               for c in pod["spec"].get("containers", [])],
            })
        return out
