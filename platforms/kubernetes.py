"""Kubernetes adapter: ``kubectl rollout undo/status/history`` semantics on the official
client, plus scale, logs, metrics and ConfigMap/Secret snapshot/restore for Deployments.
"""

# Rollback = kubectl's DeploymentRollbacker (pkg/polymorphichelpers/rollback.go): ReplicaSets
# selected by the Deployment's selector AND controller ownerReference, revision from
# ``deployment.kubernetes.io/revision`` (missing = 0, unparsable skipped), paused check before
# the "already matches" check, then ONE JSON Patch with two ``replace`` ops (template without
# ``pod-template-hash``; annotations = the Deployment's skip-list values + the ReplicaSet's
# other annotations). ``Revision.id`` is the ReplicaSet *name*: the controller renumbers a
# reused ReplicaSet to max+1, names never change. Status follows rollout_status.go and is
# observed through a watch, never a sleep loop.

from __future__ import annotations

import copy
import email.utils
import json
import logging
import math
import os
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import urllib3
from kubernetes import config as kube_config
from kubernetes import watch
from kubernetes.client import (
    ApiClient,
    AppsV1Api,
    Configuration,
    CoreV1Api,
    CustomObjectsApi,
    V1ConfigMap,
    V1Deployment,
    V1DeploymentCondition,
    V1LabelSelector,
    V1ReplicaSet,
    V1Secret,
)
from kubernetes.client.exceptions import ApiException
from kubernetes.utils.quantity import parse_quantity

from platforms.base import (
    ConfigSnapshot,
    PermanentPlatformError,
    PlatformError,
    ProgressCallback,
    ResourceUsage,
    Revision,
    RevisionNotFound,
    RollbackResult,
    RolloutFailed,
    RolloutPaused,
    RolloutStatus,
    Target,
    TargetNotFound,
    TransientPlatformError,
)

log = logging.getLogger(__name__)

HASH_LABEL = "pod-template-hash"
REVISION_ANNOTATION = "deployment.kubernetes.io/revision"
CHANGE_CAUSE_ANNOTATION = "kubernetes.io/change-cause"
# kubectl's annotationsToSkip: kept from the Deployment, never copied from the ReplicaSet.
SKIP_ANNOTATIONS = frozenset({
    "kubectl.kubernetes.io/last-applied-configuration",
    REVISION_ANNOTATION,
    "deployment.kubernetes.io/revision-history",
    "deployment.kubernetes.io/desired-replicas",
    "deployment.kubernetes.io/max-replicas",
    "deprecated.deployment.rollback.to",
})
# Server-managed metadata that must not travel inside a config snapshot.
_VOLATILE_METADATA = ("resourceVersion", "uid", "managedFields", "creationTimestamp",
                      "generation", "selfLink", "deletionTimestamp", "deletionGracePeriodSeconds")
_METRICS = ("metrics.k8s.io", "v1beta1")
MAX_LOG_PODS = 10  # a tail for a Slack thread, not a log shipper


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
        with _translate():
            dep = self._read_deployment(api, target.scope, target.name)
            rss = self._replica_sets(api, dep)
        current = _current_replica_set(api, dep, rss)
        revisions = []
        for rs in rss:
            number = _revision_number(rs)
            if number is None:
                continue  # kubectl skips unparsable revisions
            meta = rs.metadata
            assert meta is not None
            revisions.append(Revision(
                id=str(meta.name), number=number, images=_images(rs),
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
        with _translate():
            dep = self._read_deployment(api, target.scope, target.name)
            rss = self._replica_sets(api, dep)
        rs = next((r for r in rss if r.metadata is not None and r.metadata.name == revision.id),
                  None)
        if rs is None:
            raise RevisionNotFound(f"unable to find specified revision {revision.number} in "
                                   f"history (ReplicaSet {revision.id} no longer exists)")
        changed, message = self._rollback(api, dep, rs, to_revision=_revision_number(rs) or 0,
                                          dry_run=dry_run)
        return RollbackResult(changed=changed and not dry_run, message=message)

    def rollout_status(self, target: Target, *, raise_on_failure: bool = False) -> RolloutStatus:
        api = self._api(target)
        with _translate():
            dep = self._read_deployment(api, target.scope, target.name)
        return _checked(deployment_status(dep), raise_on_failure)

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
            return _checked(status, raise_on_failure)

        while (remaining := deadline - time.monotonic()) > 0:
            with _translate():
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
        with _translate():
            scale = apps.read_namespaced_deployment_scale(target.name, target.scope,
                                                          _request_timeout=self._timeout)
        return int(scale.spec.replicas or 0) if scale.spec else 0

    def scale(self, target: Target, replicas: int) -> None:
        if replicas < 0:
            raise PermanentPlatformError(f"replicas must be >= 0, got {replicas}")
        apps = AppsV1Api(self._api(target))
        with _translate():
            # A dict body is sent as a strategic merge patch, which the scale subresource takes.
            apps.patch_namespaced_deployment_scale(target.name, target.scope,
                                                   {"spec": {"replicas": replicas}},
                                                   _request_timeout=self._timeout)

    def logs_tail(self, target: Target, *, lines: int = 100) -> str | None:
        """Last ``lines`` lines of each container of the deployment's newest pods (at most
        ``MAX_LOG_PODS``), prefixed like ``kubectl logs --prefix``; None when RBAC forbids."""
        api = self._api(target)
        core = CoreV1Api(api)
        with _translate():
            dep = self._read_deployment(api, target.scope, target.name)
            pods = core.list_namespaced_pod(
                target.scope, label_selector=_selector(dep.spec.selector if dep.spec else None),
                _request_timeout=self._timeout).items
        pods.sort(key=lambda p: (p.metadata.creation_timestamp or _EPOCH, str(p.metadata.name))
                  if p.metadata else (_EPOCH, ""), reverse=True)
        chunks: list[str] = []
        for pod in sorted(pods[:MAX_LOG_PODS], key=lambda p: str(p.metadata.name
                                                                 if p.metadata else "")):
            pod_name = str(pod.metadata.name if pod.metadata else "")
            for container in pod.spec.containers if pod.spec else []:
                prefix = f"[pod/{pod_name}/{container.name}] "
                try:
                    text = core.read_namespaced_pod_log(
                        pod_name, target.scope, container=container.name, tail_lines=lines,
                        _request_timeout=self._timeout)
                except ApiException as exc:
                    if exc.status in (401, 403):
                        log.warning("logs forbidden for %s: %s", target.describe(),
                                    _status_message(exc))
                        return None
                    if exc.status in (400, 404):  # not started yet / already gone
                        chunks.append(f"{prefix}(no logs: {_status_message(exc)})")
                        continue
                    raise map_api_error(exc) from exc
                except (urllib3.exceptions.HTTPError, TimeoutError, ConnectionError) as exc:
                    raise TransientPlatformError(f"kubernetes API unreachable: {exc}") from exc
                chunks.extend(prefix + line for line in str(text).splitlines())
        return "\n".join(chunks)

    def resource_usage(self, target: Target) -> list[ResourceUsage]:
        """Per-pod usage from metrics.k8s.io (``kubectl top pods``); [] without metrics-server."""
        api = self._api(target)
        with _translate():
            dep = self._read_deployment(api, target.scope, target.name)
        selector = _selector(dep.spec.selector if dep.spec else None)
        try:
            with _translate():
                doc = CustomObjectsApi(api).list_namespaced_custom_object(
                    *_METRICS, target.scope, "pods", label_selector=selector,
                    _request_timeout=self._timeout)
        except (TargetNotFound, TransientPlatformError) as exc:
            log.warning("metrics.k8s.io unavailable for %s: %s", target.describe(), exc)
            return []
        usage = []
        for item in doc.get("items", []) if isinstance(doc, dict) else []:
            containers = item.get("containers") or []
            usage.append(ResourceUsage(
                unit=str(item["metadata"]["name"]),
                cpu_millicores=sum(parse_cpu_millicores(c["usage"].get("cpu", "0"))
                                   for c in containers),
                memory_mib=sum(parse_memory_mib(c["usage"].get("memory", "0"))
                               for c in containers)))
        return sorted(usage, key=lambda u: u.unit)

    def snapshot_config(self, target: Target) -> ConfigSnapshot:
        api = self._api(target)
        items: dict[str, Mapping[str, Any]] = {}
        with _translate():
            for kind, names in (("configmap", target.config_maps), ("secret", target.secrets)):
                for name in names:
                    items[f"{kind}/{name}"] = _portable(
                        self._read_config(api, kind, name, target.scope))
        return ConfigSnapshot(items=items)

    def restore_config(self, target: Target, snapshot: ConfigSnapshot) -> bool:
        """PUT back every captured object that differs (create it when it was deleted)."""
        api = self._api(target)
        changed = False
        for key, saved in sorted(snapshot.items.items()):
            kind, _, name = key.partition("/")
            if kind not in ("configmap", "secret"):
                raise PermanentPlatformError(f"unknown config snapshot item {key!r}")
            body = copy.deepcopy(dict(saved))
            body.setdefault("metadata", {}).update(name=name, namespace=target.scope)
            try:
                with _translate():
                    current = self._read_config(api, kind, name, target.scope)
            except TargetNotFound:
                with _translate():
                    self._write_config(api, kind, target.scope, body, create=True)
                changed = True
                continue
            if _portable(current) == _portable(body):
                continue  # restore only what differs: no write, no resourceVersion churn
            if current.get("immutable"):
                raise PermanentPlatformError(f"{key} is immutable; restore it by recreating it")
            # Optimistic concurrency: a concurrent edit makes this a 409 (transient), not a
            # silent overwrite.
            body["metadata"]["resourceVersion"] = current["metadata"].get("resourceVersion")
            with _translate():
                self._write_config(api, kind, target.scope, body, create=False)
            changed = True
        return changed

    def _read_config(self, api: ApiClient, kind: str, name: str, ns: str) -> dict[str, Any]:
        core = CoreV1Api(api)
        obj: V1ConfigMap | V1Secret
        if kind == "configmap":
            obj = core.read_namespaced_config_map(name, ns, _request_timeout=self._timeout)
        else:
            obj = core.read_namespaced_secret(name, ns, _request_timeout=self._timeout)
        return dict(_serialize(api, obj))

    def _write_config(self, api: ApiClient, kind: str, ns: str, body: dict[str, Any], *,
                      create: bool) -> None:
        core = CoreV1Api(api)
        name = str(body["metadata"]["name"])
        if kind == "configmap":
            cm = V1ConfigMap.from_dict(body)
            assert cm is not None
            if create:
                core.create_namespaced_config_map(ns, cm, _request_timeout=self._timeout)
            else:
                core.replace_namespaced_config_map(name, ns, cm, _request_timeout=self._timeout)
            return
        secret = V1Secret.from_dict(body)
        assert secret is not None
        if create:
            core.create_namespaced_secret(ns, secret, _request_timeout=self._timeout)
        else:
            core.replace_namespaced_secret(name, ns, secret, _request_timeout=self._timeout)

    # ==================================================== kubectl parity surface
    def undo(self, namespace: str, name: str, *, to_revision: int = 0,
             dry_run: bool = False) -> str:
        """Exactly ``kubectl rollout undo deployment/NAME [--to-revision=N] [--dry-run=server]``.

        Returns kubectl's stdout line; raises PlatformError subclasses whose message is
        kubectl's error text (without the ``error: `` prefix)."""
        api = self._api(Target("kubernetes", namespace, name))
        if to_revision < 0:
            raise RevisionNotFound(f"unable to find specified revision {to_revision} in history")
        with _translate():
            dep = self._read_deployment(api, namespace, name)
            rss = self._replica_sets(api, dep)
        rs = _select_revision(dep, rss, to_revision)
        return self._rollback(api, dep, rs, to_revision=to_revision, dry_run=dry_run)[1]

    # ================================================================ internals
    def _rollback(self, api: ApiClient, dep: V1Deployment, rs: V1ReplicaSet, *,
                  to_revision: int, dry_run: bool) -> tuple[bool, str]:
        """DeploymentRollbacker.Rollback from the point the target ReplicaSet is known."""
        meta, spec = dep.metadata, dep.spec
        assert meta is not None and spec is not None and rs.spec is not None
        suffix = " (server dry run)" if dry_run else ""
        prefix = f"deployment.apps/{meta.name}"
        if spec.paused:
            # kubectl >= 1.2x wording (older releases appended "deployment/NAME").
            raise RolloutPaused("you cannot rollback a paused deployment; resume it first with "
                                "'kubectl rollout resume' and try again")
        rs_template = _serialize(api, rs.spec.template) or {}
        dep_template = _serialize(api, spec.template) or {}
        if _same_template(rs_template, dep_template):
            return False, (f"{prefix} skipped rollback (current template already matches "
                           f"revision {to_revision}){suffix}")
        template = _without_hash(rs_template)
        own = meta.annotations or {}
        annotations = {k: own[k] for k in SKIP_ANNOTATIONS if k in own}
        annotations.update({k: v for k, v in ((rs.metadata.annotations if rs.metadata else None)
                                              or {}).items() if k not in SKIP_ANNOTATIONS})
        # A list body is what makes the client send application/json-patch+json.
        patch = [{"op": "replace", "path": "/spec/template", "value": template},
                 {"op": "replace", "path": "/metadata/annotations", "value": annotations}]
        try:
            with _translate():
                AppsV1Api(api).patch_namespaced_deployment(
                    str(meta.name), str(meta.namespace), patch,
                    dry_run="All" if dry_run else None, _request_timeout=self._timeout)
        except TransientPlatformError as exc:
            raise TransientPlatformError(f"failed restoring revision {to_revision}: {exc}",
                                         retry_after=exc.retry_after) from exc
        except PlatformError as exc:
            raise type(exc)(f"failed restoring revision {to_revision}: {exc}") from exc
        return True, f"{prefix} rolled back{suffix}"

    def _read_deployment(self, api: ApiClient, namespace: str, name: str) -> V1Deployment:
        return AppsV1Api(api).read_namespaced_deployment(name, namespace,
                                                         _request_timeout=self._timeout)

    def _replica_sets(self, api: ApiClient, dep: V1Deployment) -> list[V1ReplicaSet]:
        """deploymentutil.GetAllReplicaSets: selector match + controller ownerReference."""
        meta, spec = dep.metadata, dep.spec
        assert meta is not None and spec is not None
        listed = AppsV1Api(api).list_namespaced_replica_set(
            str(meta.namespace), label_selector=_selector(spec.selector),
            _request_timeout=self._timeout)
        return [rs for rs in listed.items
                if any(ref.controller and ref.uid == meta.uid
                       for ref in (rs.metadata.owner_references if rs.metadata else None) or [])]

    def _api(self, target: Target) -> ApiClient:
        kubeconfig = target.options.get("kubeconfig") if target.options else None
        context = target.options.get("context") if target.options else None
        with self._lock:
            if kubeconfig or context:
                key = (kubeconfig or self._kubeconfig, context)
                if key not in self._clients:
                    self._clients[key] = _from_kubeconfig(*key)
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
            cfg = _configuration()
            try:
                kube_config.load_incluster_config(  # type: ignore[no-untyped-call]
                    client_configuration=cfg)
            except kube_config.ConfigException as exc:
                raise PermanentPlatformError(f"in-cluster credentials unusable: {exc}") from exc
            return ApiClient(cfg)
        return _from_kubeconfig(self._kubeconfig, self._context)


# ==================================================================== pure helpers
def _configuration() -> Configuration:
    """Retry only connection failures in urllib3. Its default would also sleep through
    429/503 ``Retry-After`` inside the call; the core owns that decision (retry_after)."""
    cfg = Configuration()
    cfg.retries = urllib3.Retry(total=3, connect=3, read=0, status=0, redirect=0,
                                respect_retry_after_header=False, raise_on_status=False)
    return cfg


def _from_kubeconfig(path: str | None, context: str | None) -> ApiClient:
    try:
        client: ApiClient = kube_config.new_client_from_config(  # type: ignore[no-untyped-call]
            config_file=path, context=context, persist_config=False,
            client_configuration=_configuration())
    except (kube_config.ConfigException, OSError) as exc:
        raise PermanentPlatformError(f"cannot load kubeconfig {path or '(default)'} "
                                     f"context {context or '(current)'}: {exc}") from exc
    return client


def deployment_status(dep: V1Deployment) -> RolloutStatus:
    """rollout_status.go's DeploymentStatusViewer (revision 0), without the trailing newline."""
    meta, spec, st = dep.metadata, dep.spec, dep.status
    name = meta.name if meta else ""
    generation = (meta.generation if meta else None) or 0
    observed = (st.observed_generation if st else None) or 0
    if generation > observed:
        return RolloutStatus(False, "Waiting for deployment spec update to be observed...")
    conditions: list[V1DeploymentCondition] = (st.conditions if st else None) or []
    progressing = next((c for c in conditions if c.type == "Progressing"), None)
    if progressing is not None and progressing.reason == "ProgressDeadlineExceeded":
        return RolloutStatus(False, f'deployment "{name}" exceeded its progress deadline',
                             failed=True)
    desired = spec.replicas if spec else None
    updated = (st.updated_replicas if st else None) or 0
    total = (st.replicas if st else None) or 0
    available = (st.available_replicas if st else None) or 0
    waiting = f'Waiting for deployment "{name}" rollout to finish: '
    if desired is not None and updated < desired:
        return RolloutStatus(False, f"{waiting}{updated} out of {desired} new replicas have "
                                    "been updated...")
    if total > updated:
        return RolloutStatus(False, f"{waiting}{total - updated} old replicas are pending "
                                    "termination...")
    if available < updated:
        return RolloutStatus(False, f"{waiting}{available} of {updated} updated replicas are "
                                    "available...")
    return RolloutStatus(True, f'deployment "{name}" successfully rolled out')


def format_history(name: str, revisions: list[Revision]) -> str:
    """What ``kubectl rollout history deployment/NAME`` prints for these revisions."""
    by_number: dict[int, Revision] = {}
    for rev in sorted(revisions, key=lambda r: (r.current, r.created or _EPOCH)):
        by_number[rev.number] = rev  # like kubectl's map: the newest ReplicaSet wins
    if not by_number:
        return f"deployment.apps/{name} \nNo rollout history found.\n"
    rows = [("REVISION", "CHANGE-CAUSE")] + [(str(n), by_number[n].change_cause or "<none>")
                                             for n in sorted(by_number)]
    width = max(len(r[0]) for r in rows) + 2  # text/tabwriter: padding 2, no trailing pad
    body = "".join(f"{r[0].ljust(width)}{r[1]}\n" for r in rows)
    return f"deployment.apps/{name} \n{body}\n"


def parse_cpu_millicores(quantity: str) -> float:
    """"250m" -> 250.0, "1" -> 1000.0, "12345n" -> 0.012345."""
    return _quantity(quantity) * 1000.0


def parse_memory_mib(quantity: str) -> float:
    """"128Mi" -> 128.0, "1Gi" -> 1024.0, "1G" -> 953.67..."""
    return _quantity(quantity) / (1024.0 * 1024.0)


def _quantity(quantity: str) -> float:
    try:
        return float(parse_quantity(quantity))  # type: ignore[no-untyped-call]
    except ValueError as exc:
        raise PermanentPlatformError(f"unparsable resource quantity {quantity!r}") from exc


def _serialize(api: ApiClient, model: Any) -> Any:
    """Model -> wire-format JSON (camelCase keys, no unset fields)."""
    return api.sanitize_for_serialization(model)  # type: ignore[no-untyped-call]


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _select_revision(dep: V1Deployment, rss: list[V1ReplicaSet],
                     to_revision: int) -> V1ReplicaSet:
    """kubectl's deploymentRevision(): exact match, or the second-highest for 0."""
    latest: tuple[int, V1ReplicaSet | None] = (-1, None)
    previous: tuple[int, V1ReplicaSet | None] = (-1, None)
    for rs in rss:
        number = _revision_number(rs)
        if number is None:
            continue
        if to_revision == 0:
            if latest[0] < number:
                previous, latest = latest, (number, rs)
            elif previous[0] < number:
                previous = (number, rs)
        elif number == to_revision:
            return rs
    if to_revision > 0:
        raise RevisionNotFound(f"unable to find specified revision {to_revision} in history")
    if previous[1] is None:
        name = dep.metadata.name if dep.metadata else ""
        raise RevisionNotFound(f'no rollout history found for deployment "{name}"')
    return previous[1]


def _current_replica_set(api: ApiClient, dep: V1Deployment,
                         rss: list[V1ReplicaSet]) -> V1ReplicaSet | None:
    """findNewReplicaSet (oldest template match); else the Deployment's recorded revision."""
    dep_tpl = _serialize(api, dep.spec.template) if dep.spec else {}
    ordered = sorted(rss, key=lambda r: (r.metadata.creation_timestamp or _EPOCH,
                                         str(r.metadata.name)) if r.metadata else (_EPOCH, ""))
    for rs in ordered:
        if rs.spec and _same_template(_serialize(api, rs.spec.template), dep_tpl):
            return rs
    recorded = (dep.metadata.annotations or {}).get(REVISION_ANNOTATION) if dep.metadata else None
    numbered = [(n, rs) for rs in rss if (n := _revision_number(rs)) is not None]
    for number, rs in numbered:
        if recorded is not None and str(number) == recorded:
            return rs
    return max(numbered, key=lambda item: item[0])[1] if numbered else None


def _revision_number(rs: V1ReplicaSet) -> int | None:
    """deploymentutil.Revision: missing annotation = 0, unparsable = None (skipped)."""
    value = ((rs.metadata.annotations if rs.metadata else None) or {}).get(REVISION_ANNOTATION)
    if value is None:
        return 0
    try:
        return int(value)
    except ValueError:
        return None


def _images(rs: V1ReplicaSet) -> tuple[str, ...]:
    spec = rs.spec.template.spec if rs.spec and rs.spec.template else None
    return tuple(str(c.image) for c in (spec.containers if spec else []))


def _selector(selector: V1LabelSelector | None) -> str:
    """metav1.LabelSelectorAsSelector rendered as a query string."""
    if selector is None:
        return ""
    reqs = [f"{k}={v}" for k, v in (selector.match_labels or {}).items()]
    for expr in selector.match_expressions or []:
        values = ",".join(sorted(expr.values or []))
        reqs.append({"In": f"{expr.key} in ({values})", "NotIn": f"{expr.key} notin ({values})",
                     "Exists": f"{expr.key}", "DoesNotExist": f"!{expr.key}"}[expr.operator])
    return ",".join(sorted(reqs))


def _without_hash(template: Mapping[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(dict(template))
    labels = (out.get("metadata") or {}).get("labels")
    if isinstance(labels, dict):
        labels.pop(HASH_LABEL, None)
    return out


def _prune(value: Any) -> Any:
    """apimachinery's semantic equality treats nil and empty maps/slices alike."""
    if isinstance(value, dict):
        pruned = {k: _prune(v) for k, v in value.items()}
        return {k: v for k, v in pruned.items() if v not in (None, {}, [])}
    if isinstance(value, list):
        return [_prune(v) for v in value]
    return value


def _same_template(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    return bool(_prune(_without_hash(a)) == _prune(_without_hash(b)))


def _portable(obj: Mapping[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(dict(obj))
    meta = out.setdefault("metadata", {})
    for field in _VOLATILE_METADATA:
        meta.pop(field, None)
    return {k: v for k, v in out.items() if k != "status"}


def _checked(status: RolloutStatus, raise_on_failure: bool) -> RolloutStatus:
    if status.failed and raise_on_failure:
        raise RolloutFailed(status.message)
    return status


def _retry_after(exc: ApiException) -> float | None:
    value = (exc.headers or {}).get("Retry-After") if exc.headers else None
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        return max(0.0, (when - datetime.now(UTC)).total_seconds())


def _status_message(exc: ApiException) -> str:
    try:
        body = json.loads(exc.body or "")
        if isinstance(body, dict) and body.get("message"):
            return str(body["message"])
    except ValueError:
        pass
    return f"{exc.status} {exc.reason}".strip()


def map_api_error(exc: ApiException) -> PlatformError:
    """Vendor error -> platform error tree (404 gone, 409/429/5xx retry, else permanent)."""
    status = int(exc.status or 0)
    message = _status_message(exc)
    if status == 404:
        return TargetNotFound(message)
    if status in (409, 429) or status >= 500:
        return TransientPlatformError(f"{message} (HTTP {status})", retry_after=_retry_after(exc))
    return PermanentPlatformError(f"{message} (HTTP {status})" if status else message)


@contextmanager
def _translate() -> Iterator[None]:
    try:
        yield
    except ApiException as exc:
        raise map_api_error(exc) from exc
    except (urllib3.exceptions.HTTPError, TimeoutError, ConnectionError) as exc:
        raise TransientPlatformError(f"kubernetes API unreachable: {exc}") from exc


__all__ = ["KubernetesPlatform", "deployment_status", "format_history", "map_api_error",
           "parse_cpu_millicores", "parse_memory_mib"]
