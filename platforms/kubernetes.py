"""Kubernetes adapter: ``kubectl rollout undo/status/history`` semantics on the official
client, plus scale, logs, metrics and ConfigMap/Secret snapshot/restore for Deployments.

The module ends with ``SPEC``: this platform as data for the registry (config block, target,
factory, words, what it cannot do).
"""

# kubectl's algorithms live in ``_kube_rollout`` (undo, revisions, status, history), resource
# helpers in ``_kube_resources`` and client/error plumbing in ``_kube_client``; this module is
# the adapter that wires them to the ``Platform`` protocol. ``Revision.id`` is the ReplicaSet
# *name*: the controller renumbers a reused ReplicaSet to max+1, names never change. Status is
# observed through a watch, never a sleep loop: rollouts on the Deployment, scale-to-zero on
# its pods. A pod whose deletion started (Terminating) still runs until its grace period ends
# (terminationGracePeriodSeconds, 30 s by default), so "stopped" means no pod of the selector
# is listed at all; the controllers' counters already skip Terminating pods and cannot tell.
#
# Every write is fenced on the read it was decided on, so a request given up on the wire
# (client timeout) cannot land later over a newer change: the undo PATCH carries a JSON
# Patch ``test`` of the Deployment's resourceVersion, the scale PATCH the Scale's
# resourceVersion, a ConfigMap/Secret restore the object's. A refused write is a
# ``WriteConflict``; the executor's retry calls again, which reads afresh and decides anew
# (``expected`` turns a newer deploy into ``TargetChanged``), never replaying the old write.

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterable, Mapping
from typing import Any

from kubernetes.client import (
    ApiClient,
    AppsV1Api,
    CoreV1Api,
    V1Deployment,
    V1Pod,
    V1ReplicaSet,
)
from pydantic import BaseModel, ConfigDict, Field

from platforms._kube_client import (
    from_kubeconfig,
    in_cluster_client,
    label_selector,
    list_then_watch,
    map_api_error,
    serialize,
    translate,
)
from platforms._kube_describe import revision_text, template_differences
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
    running_check,
    select_revision,
    template_replica_set,
)
from platforms.base import (
    Capability,
    ConfigDifference,
    ConfigSnapshot,
    PermanentPlatformError,
    Platform,
    PlatformSpec,
    PlatformUnavailable,
    ProgressCallback,
    ResourceUsage,
    Revision,
    RevisionDetail,
    RevisionNotFound,
    RollbackResult,
    RolloutStatus,
    RunningCheck,
    SecretReader,
    Target,
    TargetNotFound,
    TransientPlatformError,
    Unsupported,
    basic_detail,
    refuse_if_changed,
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
        return self._revisions(api, dep, rss)

    @staticmethod
    def _revisions(api: ApiClient, dep: V1Deployment,
                   rss: list[V1ReplicaSet]) -> list[Revision]:
        """The history from a Deployment and its ReplicaSets as read (``history``)."""
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

    def rollback_to(self, target: Target, revision: Revision, *, dry_run: bool = False,
                    expected: Revision | None = None) -> RollbackResult:
        """kubectl ``rollout undo --to-revision`` where the revision is pinned by RS name.

        Decided on one read of the Deployment and its ReplicaSets: with ``expected``, what
        the Deployment's template is (the ReplicaSet whose template it equals) must be
        ``expected`` or the pinned revision, else ``TargetChanged`` and nothing is written.
        A template no ReplicaSet has yet is a deploy the controller has not picked up: a
        change too. The PATCH is fenced on the read's resourceVersion (``WriteConflict``)."""
        api = self._api(target)
        with translate():
            dep = self._read_deployment(api, target.scope, target.name)
            rss = replica_sets(api, dep, timeout=self._timeout)
        running = template_replica_set(api, dep, rss)
        refuse_if_changed(target, running_id=str(running.metadata.name)
                          if running is not None and running.metadata else "",
                          running_label=running_label(running, dep), revision=revision,
                          expected=expected)
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
        last: list[RolloutStatus] = []

        def observe(dep: V1Deployment) -> bool:
            status = deployment_status(dep)
            if on_progress is not None and (not last or last[-1].message != status.message):
                on_progress(status.message)
            last.append(status)
            return status.done or status.failed

        def on_list(listed: Any) -> bool:
            if not listed.items:
                raise TargetNotFound(f'deployments.apps "{name}" not found')
            return observe(listed.items[0])

        def on_event(kind: str, dep: Any) -> bool:
            if kind == "DELETED":
                raise TargetNotFound(f'deployment "{name}": object has been deleted')
            return kind in ("ADDED", "MODIFIED") and observe(dep)

        if list_then_watch(apps.list_namespaced_deployment, ns,
                           deadline=time.monotonic() + timeout, request_timeout=self._timeout,
                           on_list=on_list, on_event=on_event, describe=f"{ns}/{name}",
                           field_selector=f"metadata.name={name}"):
            return checked(last[-1], raise_on_failure)
        message = last[-1].message if last else "no status observed"
        return RolloutStatus(done=False, message=f"timed out waiting for the condition "
                                                 f"after {timeout:g}s: {message.rstrip('.')}")

    def wait_for_stopped(self, target: Target, *, timeout: float,
                         on_progress: ProgressCallback | None = None) -> RolloutStatus:
        """After ``scale(target, 0)``: block until no pod of the Deployment's selector is
        listed, Terminating ones included (they run until their grace period ends). Lists
        the pods, then watches them; progress reads "2 pods still terminating"."""
        api = self._api(target)
        ns, name = target.scope, target.name
        with translate():
            dep = self._read_deployment(api, ns, name)
        selector = label_selector(dep.spec.selector if dep.spec else None)
        if not selector:  # an empty selector would wait for every pod of the namespace
            raise PermanentPlatformError(f'deployment "{name}" has no pod selector')
        wanted = dep.spec.replicas if dep.spec and dep.spec.replicas is not None else 1
        if wanted:
            return RolloutStatus(done=False, message=f'deployment "{name}" is scaled to '
                                                     f"{wanted} replica{'s' if wanted != 1 else ''}"
                                                     ": its pods will not stop")
        pods: dict[str, tuple[str, bool]] = {}  # uid -> (name, terminating)
        last: list[str] = []

        def report() -> bool:
            message = pods_left(pods.values()) if pods else \
                f'all pods of deployment "{name}" are gone'
            if on_progress is not None and (not last or last[-1] != message):
                on_progress(message)
            last.append(message)
            return not pods

        def track(pod: V1Pod) -> None:
            meta = pod.metadata
            if meta is None:
                return
            key = str(meta.uid or meta.name)
            # A pod in a terminal phase has no running container (evicted pods, completed
            # Job pods with the same labels stay listed for a long time): not a writer.
            # kubernetes/kubernetes pkg/api/v1/pod/util.go IsPodTerminal.
            if pod.status is not None and pod.status.phase in ("Succeeded", "Failed"):
                pods.pop(key, None)
                return
            pods[key] = (str(meta.name), meta.deletion_timestamp is not None)

        def on_list(listed: Any) -> bool:
            pods.clear()
            for pod in listed.items:
                track(pod)
            return report()

        def on_event(kind: str, pod: Any) -> bool:
            if kind == "DELETED" and pod.metadata is not None:
                pods.pop(str(pod.metadata.uid or pod.metadata.name), None)
            elif kind in ("ADDED", "MODIFIED"):
                track(pod)
            else:
                return False
            return report()

        if list_then_watch(CoreV1Api(api).list_namespaced_pod, ns,
                           deadline=time.monotonic() + timeout, request_timeout=self._timeout,
                           on_list=on_list, on_event=on_event, describe=f"pods of {ns}/{name}",
                           label_selector=selector):
            return RolloutStatus(done=True, message=last[-1])
        left = pods_left(pods.values(), names=True) if pods else (last[-1] if last else "")
        return RolloutStatus(done=False, message=f'timed out after {timeout:g}s waiting for the '
                                                 f'pods of deployment "{name}" to stop: {left}')

    def confirm_running(self, target: Target, revision: Revision) -> RunningCheck:
        """Does the Deployment run ReplicaSet ``revision.id`` on every replica? Its template
        must equal that ReplicaSet's (pod-template-hash aside, as the controller compares),
        DeploymentComplete must hold and no active pod may belong to another ReplicaSet."""
        api = self._api(target)
        with translate():
            dep = self._read_deployment(api, target.scope, target.name)
            rss = replica_sets(api, dep, timeout=self._timeout)
            pods = CoreV1Api(api).list_namespaced_pod(
                target.scope,
                label_selector=label_selector(dep.spec.selector if dep.spec else None),
                _request_timeout=self._timeout).items
        active = [p for p in pods if p.metadata is None or p.metadata.deletion_timestamp is None]
        return running_check(api, dep, rss, active, revision.id)

    def get_replicas(self, target: Target) -> int:
        apps = AppsV1Api(self._api(target))
        with translate():
            scale = apps.read_namespaced_deployment_scale(target.name, target.scope,
                                                          _request_timeout=self._timeout)
        return int(scale.spec.replicas or 0) if scale.spec else 0

    def scale(self, target: Target, replicas: int) -> None:
        """Set the desired count through the scale subresource, fenced on the Scale as read
        here: the API server copies the Scale's resourceVersion onto the Deployment, so a
        stale one is a 409 (pkg/registry/apps/deployment/storage/storage.go
        scaleUpdatedObjectInfo), a ``WriteConflict``. Already at ``replicas``: no write."""
        if replicas < 0:
            raise PermanentPlatformError(f"replicas must be >= 0, got {replicas}")
        apps = AppsV1Api(self._api(target))
        with translate():
            current = apps.read_namespaced_deployment_scale(target.name, target.scope,
                                                            _request_timeout=self._timeout)
        have = int(current.spec.replicas or 0) if current.spec else 0
        read_at = current.metadata.resource_version if current.metadata else None
        if have == replicas:
            return
        if not read_at:
            raise PermanentPlatformError(f'the scale of deployment "{target.name}" was read '
                                         "without a resourceVersion: refusing an unfenced write")
        with translate():
            # A dict body is sent as a strategic merge patch, which the scale subresource takes.
            apps.patch_namespaced_deployment_scale(
                target.name, target.scope,
                {"metadata": {"resourceVersion": read_at}, "spec": {"replicas": replicas}},
                _request_timeout=self._timeout)

    def logs_tail(self, target: Target, *, lines: int = 100) -> str:
        """Last ``lines`` lines of each container of the deployment's newest pods (at most
        ``MAX_LOG_PODS``), prefixed like ``kubectl logs --prefix``; ``Unsupported`` when
        RBAC forbids reading them."""
        api = self._api(target)
        core = CoreV1Api(api)
        with translate():
            dep = self._read_deployment(api, target.scope, target.name)
            pods = core.list_namespaced_pod(
                target.scope,
                label_selector=label_selector(dep.spec.selector if dep.spec else None),
                _request_timeout=self._timeout).items
        text = tail_logs(core, pods, target.scope, lines=lines, timeout=self._timeout,
                         describe=target.describe())
        if text is None:
            raise Unsupported(SPEC.name, Capability.LOGS, "RBAC forbids reading the pods' logs")
        return text

    def resource_usage(self, target: Target) -> list[ResourceUsage]:
        """Per-pod usage from metrics.k8s.io (``kubectl top pods``).

        Raises ``Unsupported`` when the cluster serves no metrics API (no metrics-server):
        "unknown" must not read as "no pods running"."""
        api = self._api(target)
        with translate():
            dep = self._read_deployment(api, target.scope, target.name)
        selector = label_selector(dep.spec.selector if dep.spec else None)
        try:
            doc = pod_metrics(api, target.scope, selector, timeout=self._timeout)
        except (TargetNotFound, TransientPlatformError) as exc:
            log.warning("metrics.k8s.io unavailable for %s: %s", target.describe(), exc)
            raise Unsupported(SPEC.name, Capability.RESOURCE_USAGE,
                              f"metrics.k8s.io unavailable ({exc})") from None
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

    def describe_revision(self, target: Target, number: int) -> RevisionDetail:
        """Revision ``number`` as ``kubectl rollout history deployment/x --revision=N``
        prints it (``_kube_describe``; credential-like literals masked): the ReplicaSet of
        that revision, found like kubectl finds it."""
        api = self._api(target)
        with translate():
            dep = self._read_deployment(api, target.scope, target.name)
            rss = replica_sets(api, dep, timeout=self._timeout)
        found = [rs for rs in rss if revision_number(rs) == number]
        history = self._revisions(api, dep, rss)
        if not found:  # kubectl: "unable to find the specified revision"
            raise RevisionNotFound(f"unable to find revision {number} of deployment "
                                   f"{target.scope}/{target.name}",
                                   known=tuple(rev.number for rev in history))
        # Two ReplicaSets with one number is an anomaly; history.go's map keeps the last.
        rs = found[-1]
        basic = basic_detail(history, number)
        meta = rs.metadata
        assert meta is not None and rs.spec is not None
        cause = (meta.annotations or {}).get(CHANGE_CAUSE_ANNOTATION)
        text = revision_text(f"deployment.apps/{target.name}", number,
                             serialize(api, rs.spec.template), cause).rstrip("\n")
        return RevisionDetail(basic.revision, (*basic.fields, ("ReplicaSet", str(meta.name))),
                              text)

    def config_differences(self, target: Target, running: Revision,
                           pinned: Revision) -> list[ConfigDifference]:
        """Environment literals (masked), secret/config map references and envFrom sources
        that differ between the two revisions' ReplicaSets (by name: ``Revision.id``)."""
        api = self._api(target)
        with translate():
            dep = self._read_deployment(api, target.scope, target.name)
            rss = replica_sets(api, dep, timeout=self._timeout)
        by_name = {rs.metadata.name: rs for rs in rss if rs.metadata is not None}
        templates = []
        for revision in (running, pinned):
            rs = by_name.get(revision.id)
            if rs is None or rs.spec is None:
                raise RevisionNotFound(f"ReplicaSet {revision.id} ({revision.label()}) is no "
                                       f"longer in the history of {target.describe()}")
            templates.append(serialize(api, rs.spec.template))
        return template_differences(templates[0], templates[1])

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
    def credential_values(self) -> list[str]:
        """The bearer tokens this adapter authenticates with, for the core's scrubber: an
        API error can echo one without the word "Bearer" next to it."""
        clients = [c for c in (self._default, *self._clients.values()) if c is not None]
        values = []
        for api in clients:
            for value in (api.configuration.api_key or {}).values():
                token = str(value).removeprefix("Bearer ").strip()
                if token:
                    values.append(token)
        return values

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


def running_label(rs: V1ReplicaSet | None, dep: V1Deployment) -> str:
    """What the Deployment's template is, worded like ``Revision.label()``."""
    if rs is not None:
        return f"rev {revision_number(rs)} ({', '.join(images(rs)) or '?'})"
    tpl = dep.spec.template.spec if dep.spec and dep.spec.template else None
    shown = ", ".join(str(c.image) for c in (tpl.containers if tpl else [])) or "?"
    return f"a new template not rolled out yet ({shown})"


def pods_left(pods: Iterable[tuple[str, bool]], *, names: bool = False) -> str:
    """"1 pod still running, 2 pods still terminating" for (name, terminating) pairs."""
    items = sorted(pods)
    parts = []
    for state, terminating in (("running", False), ("terminating", True)):
        count = sum(1 for _, t in items if t is terminating)
        if count:
            parts.append(f"{count} pod{'s' if count != 1 else ''} still {state}")
    text = ", ".join(parts)
    if names:
        shown = [n for n, _ in items[:5]] + (["..."] if len(items) > 5 else [])
        text += f" ({', '.join(shown)})"
    return text


__all__ = ["KubernetesPlatform", "deployment_status", "format_history", "map_api_error",
           "parse_cpu_millicores", "parse_memory_mib"]


# ------------------------------------------------------------------ the platform as data
# What the core knows of this platform (platforms/registry.py lists it): its config block,
# its Target, how to build the adapter, its words and what it cannot do.
NAME = "kubernetes"


class KubernetesTarget(BaseModel):
    """A service's ``kubernetes:`` block: one Deployment."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    namespace: str
    deployment: str
    context: str | None = None
    kubeconfig: str | None = None
    config_maps: list[str] = Field(default_factory=list)
    secrets: list[str] = Field(default_factory=list)
    rollout_timeout_seconds: float = 600
    # Scale-down waits until nothing of the target runs (writers gone) before a backup or
    # restore starts; past this the step fails and the replicas are restored.
    stop_timeout_seconds: float = Field(default=300, gt=0)


def _target(block: KubernetesTarget) -> Target:
    options = {key: value for key, value in (("context", block.context),
                                             ("kubeconfig", block.kubeconfig)) if value}
    return Target(NAME, block.namespace, block.deployment, options,
                  tuple(block.config_maps), tuple(block.secrets))


def _build(block: KubernetesTarget, secret: SecretReader) -> Platform:
    """In-cluster credentials, else the block's kubeconfig/context, resolved now."""
    try:
        return KubernetesPlatform.from_config(kubeconfig=block.kubeconfig, context=block.context)
    except Exception as exc:  # no cluster credentials here: the platform is unavailable
        raise PlatformUnavailable(str(exc)) from exc


def _scale_command(target: Target, replicas: int) -> str:
    context = f" --context {target.options['context']}" if target.options.get("context") else ""
    return (f"kubectl{context} -n {target.scope} scale deployment/{target.name} "
            f"--replicas={replicas}")


SPEC: PlatformSpec[KubernetesTarget] = PlatformSpec(
    name=NAME,
    config_model=KubernetesTarget,
    target=_target,
    build=_build,
    unit="pod",
    summary="a Deployment (`namespace`, `deployment`)",
    scale_command=_scale_command,
)
