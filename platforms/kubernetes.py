"""Kubernetes adapter: ``kubectl rollout undo/status/history`` semantics on the official
client, plus scale, logs, metrics and ConfigMap/Secret snapshot/restore for Deployments.
"""

# kubectl's algorithms live in ``_kube_rollout`` (undo, revisions, status, history), resource
# helpers in ``_kube_resources`` and client/error plumbing in ``_kube_client``; this module is
# the adapter that wires them to the ``Platform`` protocol. ``Revision.id`` is the ReplicaSet
# *name*: the controller renumbers a reused ReplicaSet to max+1, names never change. Status is
# observed through a watch, never a sleep loop.

from __future__ import annotations

import logging
import math
import os
import threading
import time
from collections.abc import Iterator, Mapping
from typing import Any

import urllib3
from kubernetes import watch
from kubernetes.client import ApiClient, AppsV1Api, CoreV1Api, V1Deployment
from kubernetes.client.exceptions import ApiException

from platforms._kube_client import (
    from_kubeconfig,
    in_cluster_client,
    label_selector,
    map_api_error,
    translate,
)
from platforms._kube_resources import (
    parse_cpu_millicores,
    parse_memory_mib,
    pod_metrics,
    portable,
    read_config,
    restore_item,
    tail_logs,
    usage_from_metrics,
)
from platforms._kube_rollout import (
    CHANGE_CAUSE_ANNOTATION,
    checked,
    current_replica_set,
    deployment_status,
    format_history,
    images,
    replica_sets,
    revision_number,
    rollback,
    select_revision,
)
from platforms.base import (
    ConfigSnapshot,
    PermanentPlatformError,
    ProgressCallback,
    ResourceUsage,
    Revision,
    RevisionNotFound,
    RollbackResult,
    RolloutStatus,
    Target,
    TargetNotFound,
    TransientPlatformError,
)

log = logging.getLogger(__name__)


class KubernetesPlatform:
    """``Platform`` for Deployments. Target: scope = namespace, name = deployment;
    ``options`` may carry ``kubeconfig`` and/or ``context`` to pick another cluster.

    Client: ``api_client`` as given (set its ``configuration.retries`` to False so 429/503
    reach us), else in-cluster service account when ``KUBERNETES_SERVICE_HOST`` is set (or
    ``in_cluster=True``), else ``kubeconfig``/``context`` (None = kubectl's defaults)."""

    name = "kubernetes"

    def __init__(self, *, api_client: ApiClient | None = None, kubeconfig: str | None = None,
                 context: str | None = None, in_cluster: bool | None = None,
                 request_timeout: float = 30.0) -> None:
        self._default = api_client
        self._kubeconfig, self._context, self._in_cluster = kubeconfig, context, in_cluster
        self._timeout = request_timeout
        self._clients: dict[tuple[str | None, str | None], ApiClient] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_config(cls, *, kubeconfig: str | None = None, context: str | None = None,
                    in_cluster: bool | None = None,
                    request_timeout: float = 30.0) -> KubernetesPlatform:
        """Build with credentials resolved now (the composition root's entry point);
        raises PermanentPlatformError when neither in-cluster nor kubeconfig credentials work."""
        platform = cls(kubeconfig=kubeconfig, context=context, in_cluster=in_cluster,
                       request_timeout=request_timeout)
        platform._default = platform._build_default()
        return platform

    # ============================================================ Platform protocol
    def history(self, target: Target) -> list[Revision]:
        api = self._api(target)
        with translate():
            dep = self._read_deployment(api, target.scope, target.name)
            rss = replica_sets(api, dep, timeout=self._timeout)
        current = current_replica_set(api, dep, rss)
        revisions = []
        for rs in rss:
            number = revision_number(rs)
            if number is None:
                continue  # kubectl skips unparsable revisions
            meta = rs.metadata
            assert meta is not None
            revisions.append(Revision(
                id=str(meta.name), number=number, images=images(rs),
                change_cause=(meta.annotations or {}).get(CHANGE_CAUSE_ANNOTATION),
                created=meta.creation_timestamp, current=rs is current))
        revisions.sort(key=lambda r: (r.number, r.current), reverse=True)
        return revisions

    def current_revision(self, target: Target) -> Revision:
        for revision in self.history(target):
            if revision.current:
                return revision
        raise RevisionNotFound(f"deployment {target.scope}/{target.name} has no rollout "
                               "history yet")

    def rollback_to(self, target: Target, revision: Revision, *,
                    dry_run: bool = False) -> RollbackResult:
        """kubectl ``rollout undo --to-revision`` where the revision is pinned by RS name."""
        api = self._api(target)
        with translate():
            dep = self._read_deployment(api, target.scope, target.name)
            rss = replica_sets(api, dep, timeout=self._timeout)
        rs = next((r for r in rss if r.metadata is not None and r.metadata.name == revision.id),
                  None)
        if rs is None:
            raise RevisionNotFound(f"unable to find specified revision {revision.number} in "
                                   f"history (ReplicaSet {revision.id} no longer exists)")
        changed, message = rollback(api, dep, rs, to_revision=revision_number(rs) or 0,
                                    dry_run=dry_run, timeout=self._timeout)
        return RollbackResult(changed=changed and not dry_run, message=message)

    def rollout_status(self, target: Target, *, raise_on_failure: bool = False) -> RolloutStatus:
        api = self._api(target)
        with translate():
            dep = self._read_deployment(api, target.scope, target.name)
        return checked(deployment_status(dep), raise_on_failure)

    def wait_for_rollout(self, target: Target, *, timeout: float,
                         on_progress: ProgressCallback | None = None,
                         raise_on_failure: bool = False) -> RolloutStatus:
        """Like ``kubectl rollout status``: list, then watch from that resourceVersion."""
        apps = AppsV1Api(self._api(target))
        ns, name = target.scope, target.name
        selector = f"metadata.name={name}"
        deadline = time.monotonic() + timeout
        last: list[str] = []

        def report(status: RolloutStatus) -> RolloutStatus:
            if on_progress is not None and (not last or last[-1] != status.message):
                on_progress(status.message)
            last.append(status.message)
            return checked(status, raise_on_failure)

        while (remaining := deadline - time.monotonic()) > 0:
            with translate():
                listed = apps.list_namespaced_deployment(ns, field_selector=selector,
                                                         _request_timeout=self._timeout)
            if not listed.items:
                raise TargetNotFound(f'deployments.apps "{name}" not found')
            status = report(deployment_status(listed.items[0]))
            if status.done or status.failed:
                return status
            rv = listed.metadata.resource_version if listed.metadata else None
            stream = watch.Watch()  # type: ignore[no-untyped-call]
            try:
                events: Iterator[dict[str, Any]] = stream.stream(  # type: ignore[no-untyped-call]
                    apps.list_namespaced_deployment, ns, field_selector=selector,
                    resource_version=rv, timeout_seconds=max(1, math.ceil(remaining)),
                    _request_timeout=remaining + 5)
                for event in events:
                    if event["type"] == "DELETED":
                        raise TargetNotFound(f'deployment "{name}": object has been deleted')
                    if event["type"] not in ("ADDED", "MODIFIED"):
                        continue
                    status = report(deployment_status(event["object"]))
                    if status.done or status.failed:
                        return status
            except ApiException as exc:
                if exc.status != 410:  # 410 Gone: our resourceVersion expired -> list again
                    raise map_api_error(exc) from exc
            except (urllib3.exceptions.HTTPError, TimeoutError, ConnectionError) as exc:
                raise TransientPlatformError(f"watch on {ns}/{name} broke: {exc}") from exc
            finally:
                stream.stop()  # type: ignore[no-untyped-call]
        message = last[-1] if last else "no status observed"
        return RolloutStatus(done=False, message=f"timed out waiting for the condition "
                                                 f"after {timeout:g}s: {message.rstrip('.')}")

    def get_replicas(self, target: Target) -> int:
        apps = AppsV1Api(self._api(target))
        with translate():
            scale = apps.read_namespaced_deployment_scale(target.name, target.scope,
                                                          _request_timeout=self._timeout)
        return int(scale.spec.replicas or 0) if scale.spec else 0

    def scale(self, target: Target, replicas: int) -> None:
        if replicas < 0:
            raise PermanentPlatformError(f"replicas must be >= 0, got {replicas}")
        apps = AppsV1Api(self._api(target))
        with translate():
            # A dict body is sent as a strategic merge patch, which the scale subresource takes.
            apps.patch_namespaced_deployment_scale(target.name, target.scope,
                                                   {"spec": {"replicas": replicas}},
                                                   _request_timeout=self._timeout)

    def logs_tail(self, target: Target, *, lines: int = 100) -> str | None:
        """Last ``lines`` lines of each container of the deployment's newest pods (at most
        ``MAX_LOG_PODS``), prefixed like ``kubectl logs --prefix``; None when RBAC forbids."""
        api = self._api(target)
        core = CoreV1Api(api)
        with translate():
            dep = self._read_deployment(api, target.scope, target.name)
            pods = core.list_namespaced_pod(
                target.scope,
                label_selector=label_selector(dep.spec.selector if dep.spec else None),
                _request_timeout=self._timeout).items
        return tail_logs(core, pods, target.scope, lines=lines, timeout=self._timeout,
                         describe=target.describe())

    def resource_usage(self, target: Target) -> list[ResourceUsage]:
        """Per-pod usage from metrics.k8s.io (``kubectl top pods``).

        Raises NotImplementedError when the cluster serves no metrics API (no
        metrics-server): "unknown" must not read as "no pods running"."""
        api = self._api(target)
        with translate():
            dep = self._read_deployment(api, target.scope, target.name)
        selector = label_selector(dep.spec.selector if dep.spec else None)
        try:
            doc = pod_metrics(api, target.scope, selector, timeout=self._timeout)
        except (TargetNotFound, TransientPlatformError) as exc:
            log.warning("metrics.k8s.io unavailable for %s: %s", target.describe(), exc)
            raise NotImplementedError(f"metrics.k8s.io unavailable ({exc})") from None
        return usage_from_metrics(doc)

    def snapshot_config(self, target: Target) -> ConfigSnapshot:
        api = self._api(target)
        items: dict[str, Mapping[str, Any]] = {}
        with translate():
            for kind, names in (("configmap", target.config_maps), ("secret", target.secrets)):
                for name in names:
                    items[f"{kind}/{name}"] = portable(
                        read_config(api, kind, name, target.scope, timeout=self._timeout))
        return ConfigSnapshot(items=items)

    def restore_config(self, target: Target, snapshot: ConfigSnapshot) -> bool:
        """PUT back every captured object that differs (create it when it was deleted)."""
        api = self._api(target)
        changed = False
        for key, saved in sorted(snapshot.items.items()):
            changed = restore_item(api, target.scope, key, saved, timeout=self._timeout) or changed
        return changed

    # ==================================================== kubectl parity surface
    def undo(self, namespace: str, name: str, *, to_revision: int = 0,
             dry_run: bool = False) -> str:
        """Exactly ``kubectl rollout undo deployment/NAME [--to-revision=N] [--dry-run=server]``.

        Returns kubectl's stdout line; raises PlatformError subclasses whose message is
        kubectl's error text (without the ``error: `` prefix)."""
        api = self._api(Target("kubernetes", namespace, name))
        if to_revision < 0:
            raise RevisionNotFound(f"unable to find specified revision {to_revision} in history")
        with translate():
            dep = self._read_deployment(api, namespace, name)
            rss = replica_sets(api, dep, timeout=self._timeout)
        rs = select_revision(dep, rss, to_revision)
        return rollback(api, dep, rs, to_revision=to_revision, dry_run=dry_run,
                        timeout=self._timeout)[1]

    # ================================================================ internals
    def _read_deployment(self, api: ApiClient, namespace: str, name: str) -> V1Deployment:
        return AppsV1Api(api).read_namespaced_deployment(name, namespace,
                                                         _request_timeout=self._timeout)

    def _api(self, target: Target) -> ApiClient:
        kubeconfig = target.options.get("kubeconfig") if target.options else None
        context = target.options.get("context") if target.options else None
        with self._lock:
            if kubeconfig or context:
                key = (kubeconfig or self._kubeconfig, context)
                if key not in self._clients:
                    self._clients[key] = from_kubeconfig(*key)
                return self._clients[key]
            if self._default is None:
                self._default = self._build_default()
            return self._default

    def _build_default(self) -> ApiClient:
        in_cluster = self._in_cluster
        if in_cluster is None:
            in_cluster = (not self._kubeconfig and not self._context
                          and "KUBERNETES_SERVICE_HOST" in os.environ)
        if in_cluster:
            return in_cluster_client()
        return from_kubeconfig(self._kubeconfig, self._context)


__all__ = ["KubernetesPlatform", "deployment_status", "format_history", "map_api_error",
           "parse_cpu_millicores", "parse_memory_mib"]
