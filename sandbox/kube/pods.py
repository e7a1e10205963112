"""Pods the simulated ReplicaSets own, their log lines and their metrics.k8s.io usage."""

from __future__ import annotations

import copy
import threading
from collections.abc import Mapping
from typing import Any

from .objects import HASH_LABEL, now_rfc3339, safe_encode
from .store import Obj, Store


class PodFleet:
    """Creates/readies/deletes pods for a ReplicaSet and keeps their logs and usage."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._lock = threading.Lock()
        self._logs: dict[tuple[str, str], list[str]] = {}
        # (namespace, pod-template-hash or "") -> (cpu, memory) quantities
        self._usage: dict[tuple[str, str], tuple[str, str]] = {}

    # ------------------------------------------------------------------------ pods
    def pods_of(self, rs: Obj) -> list[Obj]:
        meta = rs["metadata"]
        pods, _ = self.store.list("pods", meta["namespace"])
        return [p for p in pods if any(ref.get("uid") == meta["uid"]
                                       for ref in p["metadata"].get("ownerReferences") or [])]

    def add(self, rs: Obj, *, ready: bool) -> Obj:
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
            "status": self._status(template, ready=ready),
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

    def set_ready(self, pod: Obj) -> None:
        pod["status"] = self._status({"spec": pod["spec"]}, ready=True,
                                     started=pod["status"].get("startTime"))
        self.store.replace("pods", pod, actor="controller", keep_status=False, check_rv=False)
        self.log(pod["metadata"]["namespace"], pod["metadata"]["name"],
                 f"{now_rfc3339()} ready: serving traffic")

    def delete(self, pod: Obj) -> None:
        ns, name = pod["metadata"]["namespace"], pod["metadata"]["name"]
        self.store.delete("pods", ns, name, actor="controller")
        with self._lock:
            self._logs.pop((ns, name), None)

    @staticmethod
    def is_ready(pod: Obj) -> bool:
        return any(c.get("type") == "Ready" and c.get("status") == "True"
                   for c in (pod.get("status") or {}).get("conditions") or [])

    @staticmethod
    def _status(template: Mapping[str, Any], *, ready: bool,
                started: str | None = None) -> Obj:
        ts = now_rfc3339()
        flag = "True" if ready else "False"
        return {
            "phase": "Running",
            "podIP": "10.0.0.1",
            "hostIP": "127.0.0.1",
            "startTime": started or ts,
            "conditions": [{"type": t, "status": flag if t in ("Ready", "ContainersReady")
                            else "True", "lastTransitionTime": ts}
                           for t in ("Initialized", "Ready", "ContainersReady", "PodScheduled")],
            "containerStatuses": [
                {"name": c["name"], "image": c.get("image", ""), "imageID": "",
                 "ready": ready, "started": True, "restartCount": 0,
                 "state": {"running": {"startedAt": started or ts}}}
                for c in (template.get("spec") or {}).get("containers", [])
            ],
        }

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
