"""``KubeEmulator``: start/stop the emulated API server and seed histories like a real cluster.
Two emulators given the same seed and the same calls hold identical objects (names, uids).
"""

from __future__ import annotations

import copy
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import yaml

from .api import ApiServer
from .controller import DeploymentController, RolloutSettings
from .http import EmulatorHTTPServer, Fault, HeldRequest, RequestRecord
from .kinds import ServiceRegistry, validate_pdb, validate_rolebinding, validate_statefulset
from .objects import CHANGE_CAUSE, HASH_LABEL, REVISION, is_pod_active, template_hash
from .pods import PodFleet
from .scheduler import Scheduler
from .store import ApiError, Obj, Store, WatchEvent
from .validation import validate_deployment

SEED_ACTOR = "controller"  # seeding writes must not wake the async controller: we sync inline


class KubeEmulator:
    """A Kubernetes API server stand-in on 127.0.0.1 (ephemeral port), run in threads."""

    def __init__(self, *, seed: str = "emulator", rollout_duration: float = 1.0,
                 observe_delay: float = 0.0, host: str = "127.0.0.1", port: int = 0) -> None:
        self.settings = RolloutSettings(duration=rollout_duration, observe_delay=observe_delay)
        self.store = Store(seed=seed)
        self.store.validators["apps/deployments"] = validate_deployment
        self.store.validators["apps/statefulsets"] = validate_statefulset
        self.store.validators["services"] = ServiceRegistry(self.store)
        self.store.validators["policy/poddisruptionbudgets"] = validate_pdb
        self.store.validators["rbac.authorization.k8s.io/rolebindings"] = validate_rolebinding
        self.scheduler = Scheduler()
        self.pods = PodFleet(self.store, self.scheduler)
        self.controller = DeploymentController(self.store, self.pods, self.scheduler,
                                               self.settings)
        self.api = ApiServer(self.store, self.pods)
        self._address = (host, port)
        self._server: EmulatorHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._deployment_hooks: list[Callable[[str, str, Obj | None], None]] = []
        self.store.add_listener(self._fire_hooks)
        self.ensure_namespace("default")

    # ----------------------------------------------------------------- lifecycle
    def start(self) -> KubeEmulator:
        self._server = EmulatorHTTPServer(self._address, self.api)
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.1},
                                        name="kube-emulator-http", daemon=True)
        self.scheduler.start()
        self._thread.start()
        return self

    def stop(self) -> None:
        self.store.close()  # releases every open watch
        if self._server is not None:
            self._server.stopping.set()  # held requests are dropped, never served
            self._server.shutdown()
            self._server.server_close()
            self._server.drop_connections()
        self.scheduler.stop()

    def __enter__(self) -> KubeEmulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._server is not None, "emulator not started"
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # ------------------------------------------------------------ client wiring
    def kubeconfig(self, *, namespace: str = "default", context: str = "emulator") -> Obj:
        return {
            "apiVersion": "v1", "kind": "Config", "preferences": {},
            "clusters": [{"name": context, "cluster": {"server": self.url}}],
            "users": [{"name": context, "user": {"token": "emulator-token"}}],
            "contexts": [{"name": context, "context": {"cluster": context, "user": context,
                                                       "namespace": namespace}}],
            "current-context": context,
        }

    def write_kubeconfig(self, path: str | Path, *, namespace: str = "default",
                         context: str = "emulator") -> Path:
        path = Path(path)
        path.write_text(yaml.safe_dump(self.kubeconfig(namespace=namespace, context=context)))
        return path

    def api_client(self) -> Any:
        """A ``kubernetes.client.ApiClient`` talking to this emulator."""
        from kubernetes import client

        cfg = client.Configuration()
        cfg.host = self.url
        # No hidden urllib3 retries: callers must see 429/503 + Retry-After themselves.
        cfg.retries = False
        return client.ApiClient(cfg)

    # ------------------------------------------------------------ request record
    @property
    def requests(self) -> list[RequestRecord]:
        assert self._server is not None
        with self._server.lock:
            return list(self._server.records)

    def clear_requests(self) -> None:
        assert self._server is not None
        with self._server.lock:
            self._server.records.clear()

    def inject_fault(self, *, code: int | None = 503, times: int = 1,
                     retry_after: float | str | None = None, delay: float = 0.0,
                     verb: str | None = None, resource: str | None = None,
                     subresource: str | None = None, group: str | None = None) -> None:
        """Make the next ``times`` matching resource requests fail with ``code``.

        ``retry_after``: seconds, or a header value sent verbatim ("99999999999", an
        HTTP-date). ``delay``: hold each matching request that long first (see
        ``held_requests``); with ``code=None`` it is then served as usual. That is the late
        write: the client timed out and moved on, the server still applies what it got."""
        assert self._server is not None
        with self._server.lock:
            self._server.faults.append(Fault(code, times, retry_after, verb, resource,
                                             subresource, group, delay))

    @property
    def held_requests(self) -> list[HeldRequest]:
        """Requests a ``delay`` fault held, in arrival order, with how each was answered."""
        assert self._server is not None
        with self._server.lock:
            return list(self._server.held)

    def wait_held(self, count: int = 1, *, timeout: float = 10.0) -> list[HeldRequest]:
        """Block until at least ``count`` requests are (or were) held; returns them all."""
        assert self._server is not None
        server = self._server
        with server.held_changed:
            if not server.held_changed.wait_for(lambda: len(server.held) >= count, timeout):
                raise TimeoutError(f"{len(server.held)} requests held, waited for {count}")
            return list(server.held)

    # ------------------------------------------------------------------ seeding
    def ensure_namespace(self, namespace: str) -> None:
        if not self.store.namespace_exists(namespace):
            self.store.create("namespaces", {"metadata": {"name": namespace},
                                             "spec": {"finalizers": ["kubernetes"]},
                                             "status": {"phase": "Active"}}, actor=SEED_ACTOR)

    def create_deployment(self, namespace: str, name: str, *, image: str, replicas: int = 1,
                          annotations: Mapping[str, str] | None = None,
                          labels: Mapping[str, str] | None = None, container: str = "app",
                          change_cause: str | None = None,
                          termination_grace_period: int | None = None,
                          strategy: Mapping[str, Any] | None = None,
                          min_ready_seconds: int | None = None,
                          progress_deadline: int | None = None,
                          revision_history_limit: int | None = None,
                          settle: bool = True) -> Obj:
        """A Deployment and its first rollout. ``termination_grace_period`` goes into the pod
        template (terminationGracePeriodSeconds; the API's default is 30 s): deleted pods
        stay Terminating that long. ``strategy`` is spec.strategy as the API takes it
        (``{"type": "Recreate"}``, ``{"rollingUpdate": {"maxSurge": 0}}``);
        ``progress_deadline`` is progressDeadlineSeconds (API default 600)."""
        self.ensure_namespace(namespace)
        pod_labels = dict(labels or {"app": name})
        ann = dict(annotations or {})
        if change_cause is not None:
            ann[CHANGE_CAUSE] = change_cause
        obj: Obj = {
            "metadata": {"name": name, "namespace": namespace, "labels": dict(pod_labels),
                         **({"annotations": ann} if ann else {})},
            "spec": {"replicas": replicas, "selector": {"matchLabels": dict(pod_labels)},
                     "template": {"metadata": {"labels": dict(pod_labels)},
                                  "spec": {"containers": [{"name": container, "image": image}]}}},
        }
        if termination_grace_period is not None:
            obj["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] = \
                termination_grace_period
        for field, value in (("strategy", strategy), ("minReadySeconds", min_ready_seconds),
                             ("progressDeadlineSeconds", progress_deadline),
                             ("revisionHistoryLimit", revision_history_limit)):
            if value is not None:
                obj["spec"][field] = copy.deepcopy(value)
        with self.controller.lock:
            self.store.create("apps/deployments", obj, actor=SEED_ACTOR)
            return self._after_seed(namespace, name, settle)

    def update_deployment(self, namespace: str, name: str, mutate: Callable[[Obj], None], *,
                          settle: bool = True) -> Obj:
        """Apply ``mutate`` to the stored Deployment, like a client PUT, then run the controller."""
        # Under the controller's lock: no queued sync may see the change before the seed's.
        with self.controller.lock:
            obj = self.store.get("apps/deployments", namespace, name)
            mutate(obj)
            self.store.replace("apps/deployments", obj, actor=SEED_ACTOR)
            return self._after_seed(namespace, name, settle)

    def set_image(self, namespace: str, name: str, *, image: str, container: str | None = None,
                  change_cause: str | None = None,
                  annotations: Mapping[str, str] | None = None, settle: bool = True) -> Obj:
        """``kubectl set image`` (+ ``--record``-style change-cause): a new rollout."""
        def mutate(obj: Obj) -> None:
            containers = obj["spec"]["template"]["spec"]["containers"]
            target = next((c for c in containers if c["name"] == container), containers[0])
            target["image"] = image
            ann = obj["metadata"].setdefault("annotations", {})
            ann.update(annotations or {})
            if change_cause is not None:
                ann[CHANGE_CAUSE] = change_cause
        return self.update_deployment(namespace, name, mutate, settle=settle)

    def pause(self, namespace: str, name: str) -> Obj:
        return self.update_deployment(namespace, name,
                                      lambda o: o["spec"].__setitem__("paused", True))

    def resume(self, namespace: str, name: str) -> Obj:
        return self.update_deployment(namespace, name, lambda o: o["spec"].pop("paused", None))

    def fail_next_rollout(self, namespace: str, name: str) -> None:
        """The pods of the deployment's next new ReplicaSet crash-loop (CrashLoopBackOff):
        the rollout ends in ProgressDeadlineExceeded after progressDeadlineSeconds, at
        once for a settled seed (history long past)."""
        self.controller.fail_next_rollout(namespace, name)

    def image_fault(self, image: str, fault: str | None) -> None:
        """Pods running ``image`` crash-loop ("CrashLoopBackOff"), cannot pull it
        ("ImagePullBackOff"), or run fine (None) whatever the image name suggests."""
        if fault not in (None, "CrashLoopBackOff", "ImagePullBackOff"):
            raise ValueError(f"unknown image fault {fault!r}")
        self.controller.kubelet.image_faults[image] = fault

    def create_config_map(self, namespace: str, name: str, data: Mapping[str, str]) -> Obj:
        self.ensure_namespace(namespace)
        return self.store.create("configmaps", {"metadata": {"name": name,
                                                             "namespace": namespace},
                                                "data": dict(data)}, actor=SEED_ACTOR)

    def create_secret(self, namespace: str, name: str, data: Mapping[str, str], *,
                      type_: str = "Opaque") -> Obj:
        import base64

        self.ensure_namespace(namespace)
        encoded = {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}
        return self.store.create("secrets", {"metadata": {"name": name, "namespace": namespace},
                                             "type": type_, "data": encoded}, actor=SEED_ACTOR)

    def set_usage(self, namespace: str, *, cpu: str, memory: str,
                  template_hash: str = "") -> None:
        """Usage metrics.k8s.io reports for the namespace's pods (or one template hash)."""
        self.pods.set_usage(namespace, cpu, memory, template_hash)

    def log(self, namespace: str, deployment: str, line: str) -> None:
        """Append a log line to every pod of the deployment."""
        for pod in self.deployment_pods(namespace, deployment):
            self.pods.log(namespace, pod["metadata"]["name"], line)

    def add_replica_set(self, namespace: str, deployment: str, *, image: str,
                        revision: str | None, controlled: bool = True) -> Obj:
        """Plant a ReplicaSet outside the controller's flow: odd or missing revision
        annotations, or no controller ownerReference (kubectl must ignore those)."""
        d = self.get_deployment(namespace, deployment)
        template = copy.deepcopy(d["spec"]["template"])
        template["spec"]["containers"][0]["image"] = image
        tpl_hash = template_hash(template)
        template["metadata"].setdefault("labels", {})[HASH_LABEL] = tpl_hash
        selector = copy.deepcopy(d["spec"]["selector"])
        selector.setdefault("matchLabels", {})[HASH_LABEL] = tpl_hash
        meta: Obj = {"name": f"{deployment}-{tpl_hash}", "namespace": namespace,
                     "labels": dict(template["metadata"]["labels"]), "annotations": {}}
        if revision is not None:
            meta["annotations"][REVISION] = revision
        if controlled:
            meta["ownerReferences"] = [{"apiVersion": "apps/v1", "kind": "Deployment",
                                        "name": deployment, "uid": d["metadata"]["uid"],
                                        "controller": True, "blockOwnerDeletion": True}]
        rs = {"metadata": meta, "status": {"replicas": 0},
              "spec": {"replicas": 0, "selector": selector, "template": template}}
        return self.store.create("apps/replicasets", rs, actor=SEED_ACTOR)

    def _after_seed(self, namespace: str, name: str, settle: bool) -> Obj:
        if settle:
            self.controller.sync(namespace, name, instant=True)
        else:
            self.controller.enqueue(namespace, name)
        return self.store.get("apps/deployments", namespace, name)

    # ---------------------------------------------------------------- accessors
    def get_deployment(self, namespace: str, name: str) -> Obj:
        return self.store.get("apps/deployments", namespace, name)

    def replica_sets(self, namespace: str, name: str) -> list[Obj]:
        return self.controller.owned_replica_sets(self.get_deployment(namespace, name))

    def deployment_pods(self, namespace: str, name: str) -> list[Obj]:
        """Every pod of the deployment's ReplicaSets the API lists, Terminating included."""
        return [p for rs in self.replica_sets(namespace, name)
                for p in self.pods.all_pods_of(rs)]

    def terminating_pods(self, namespace: str, name: str) -> list[Obj]:
        return [p for p in self.deployment_pods(namespace, name) if not is_pod_active(p)]

    def current_image(self, namespace: str, name: str, *, container: str | None = None) -> str:
        """Image the deployment is serving: that of its ready pods, else of its template.

        A demo service reads this to answer with "the version that is running". Terminating
        pods serve nothing: an EndpointSlice never marks a terminating endpoint ready
        (kubernetes/kubernetes staging/src/k8s.io/endpointslice/utils.go podToEndpoint)."""
        ready = [p for p in self.deployment_pods(namespace, name)
                 if self.pods.is_ready(p) and is_pod_active(p)]
        source = ready[-1]["spec"] if ready else \
            self.get_deployment(namespace, name)["spec"]["template"]["spec"]
        containers = source["containers"]
        chosen = next((c for c in containers if c["name"] == container), containers[0])
        return str(chosen["image"])

    def on_deployment_change(self, hook: Callable[[str, str, Obj | None], None]) -> None:
        """Call ``hook(namespace, name, deployment_or_None)`` after every Deployment write."""
        self._deployment_hooks.append(hook)

    def _fire_hooks(self, event: WatchEvent, actor: str) -> None:
        if event.key == "apps/deployments" and self._deployment_hooks:
            obj = None if event.type == "DELETED" else copy.deepcopy(event.obj)
            for hook in list(self._deployment_hooks):
                hook(event.namespace, event.obj["metadata"]["name"], obj)

    def wait_settled(self, namespace: str, name: str, *, timeout: float = 10.0) -> Obj:
        """Block until the controller has nothing left to do for the deployment."""
        deadline = time.monotonic() + timeout
        with self.store.changed:
            while self.controller.busy(namespace, name):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"deployment {namespace}/{name} did not settle")
                self.store.changed.wait(remaining)
        return self.get_deployment(namespace, name)

    def template_hash_of(self, namespace: str, name: str) -> str:
        """pod-template-hash of the deployment's current ReplicaSet (for ``set_usage``)."""
        for rs in self.replica_sets(namespace, name):
            if rs["metadata"]["name"] == self.controller.current_rs_name(namespace, name):
                return str(rs["spec"]["template"]["metadata"]["labels"][HASH_LABEL])
        raise ApiError(404, "NotFound", f"no current ReplicaSet for {namespace}/{name}")
