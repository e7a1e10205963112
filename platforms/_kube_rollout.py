"""kubectl's rollout algorithms for the Kubernetes adapter: ReplicaSet/revision selection,
template comparison, the undo JSON Patch, rollout status semantics and history formatting.
"""

# Rollback = kubectl's DeploymentRollbacker (pkg/polymorphichelpers/rollback.go): ReplicaSets
# selected by the Deployment's selector AND controller ownerReference, revision from
# ``deployment.kubernetes.io/revision`` (missing = 0, unparsable skipped), paused check before
# the "already matches" check, then ONE JSON Patch with two ``replace`` ops (template without
# ``pod-template-hash``; annotations = the Deployment's skip-list values + the ReplicaSet's
# other annotations). Status follows rollout_status.go. Confirming what runs uses the
# controller's own tests (pkg/controller/deployment/util/deployment_util.go): EqualIgnoreHash
# for "this template is that ReplicaSet's" and DeploymentComplete for "and it is all that
# runs".
#
# Fencing, the one departure from kubectl: its undo patch has no precondition, so a PATCH
# it gave up on can land after a newer deploy and undo it. Ours starts with a JSON Patch
# ``test`` op on /metadata/resourceVersion, the value the decision was made on. The API
# server applies a JSON Patch to the object as stored *at write time* and retries it on a
# concurrent write (GuaranteedUpdate), so the test holds only if nothing changed since our
# read; otherwise the whole patch is refused with 422 Invalid and a generic message
# (staging/src/k8s.io/apiserver/pkg/endpoints/handlers/patch.go applyJSPatch: the
# json-patch library's "testing value ... failed" is not passed on). The 422 says only that
# some op failed, so the refusal is confirmed by reading the resourceVersion again.

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from kubernetes.client import (
    ApiClient,
    AppsV1Api,
    V1Deployment,
    V1DeploymentCondition,
    V1Pod,
    V1ReplicaSet,
)

from platforms._kube_client import EPOCH, http_status, label_selector, serialize, translate
from platforms.base import (
    PermanentPlatformError,
    Revision,
    RevisionNotFound,
    RolloutFailed,
    RolloutPaused,
    RolloutStatus,
    RunningCheck,
    TransientPlatformError,
    WriteConflict,
)

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


# ============================================================ ReplicaSets and revisions
def replica_sets(api: ApiClient, dep: V1Deployment, *, timeout: float) -> list[V1ReplicaSet]:
    """deploymentutil.GetAllReplicaSets: selector match + controller ownerReference."""
    meta, spec = dep.metadata, dep.spec
    assert meta is not None and spec is not None
    listed = AppsV1Api(api).list_namespaced_replica_set(
        str(meta.namespace), label_selector=label_selector(spec.selector),
        _request_timeout=timeout)
    return [rs for rs in listed.items
            if any(ref.controller and ref.uid == meta.uid
                   for ref in (rs.metadata.owner_references if rs.metadata else None) or [])]


def select_revision(dep: V1Deployment, rss: list[V1ReplicaSet],
                    to_revision: int) -> V1ReplicaSet:
    """kubectl's deploymentRevision(): exact match, or the second-highest for 0."""
    latest: tuple[int, V1ReplicaSet | None] = (-1, None)
    previous: tuple[int, V1ReplicaSet | None] = (-1, None)
    for rs in rss:
        number = revision_number(rs)
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


def template_replica_set(api: ApiClient, dep: V1Deployment,
                         rss: list[V1ReplicaSet]) -> V1ReplicaSet | None:
    """deploymentutil.FindNewReplicaSet: the oldest ReplicaSet whose template equals the
    Deployment's, pod-template-hash aside (None before the controller created it)."""
    dep_tpl = serialize(api, dep.spec.template) if dep.spec else {}
    for rs in sorted(rss, key=_age):
        if rs.spec and same_template(serialize(api, rs.spec.template), dep_tpl):
            return rs
    return None


def current_replica_set(api: ApiClient, dep: V1Deployment,
                        rss: list[V1ReplicaSet]) -> V1ReplicaSet | None:
    """findNewReplicaSet (oldest template match); else the Deployment's recorded revision."""
    found = template_replica_set(api, dep, rss)
    if found is not None:
        return found
    recorded = (dep.metadata.annotations or {}).get(REVISION_ANNOTATION) if dep.metadata else None
    numbered = [(n, rs) for rs in rss if (n := revision_number(rs)) is not None]
    for number, rs in numbered:
        if recorded is not None and str(number) == recorded:
            return rs
    return max(numbered, key=lambda item: item[0])[1] if numbered else None


def revision_number(rs: V1ReplicaSet) -> int | None:
    """deploymentutil.Revision: missing annotation = 0, unparsable = None (skipped)."""
    value = ((rs.metadata.annotations if rs.metadata else None) or {}).get(REVISION_ANNOTATION)
    if value is None:
        return 0
    try:
        return int(value)
    except ValueError:
        return None


def images(rs: V1ReplicaSet) -> tuple[str, ...]:
    spec = rs.spec.template.spec if rs.spec and rs.spec.template else None
    return tuple(str(c.image) for c in (spec.containers if spec else []))


# ==================================================================== templates
def without_hash(template: Mapping[str, Any]) -> dict[str, Any]:
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


def same_template(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    return bool(_prune(without_hash(a)) == _prune(without_hash(b)))


# ==================================================================== undo
def rollback_patch(dep: V1Deployment, rs: V1ReplicaSet,
                   rs_template: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The undo JSON Patch: RS template without the hash label, merged annotations."""
    own = (dep.metadata.annotations if dep.metadata else None) or {}
    annotations = {k: own[k] for k in SKIP_ANNOTATIONS if k in own}
    annotations.update({k: v for k, v in ((rs.metadata.annotations if rs.metadata else None)
                                          or {}).items() if k not in SKIP_ANNOTATIONS})
    return [{"op": "replace", "path": "/spec/template", "value": without_hash(rs_template)},
            {"op": "replace", "path": "/metadata/annotations", "value": annotations}]


def fenced(ops: list[dict[str, Any]], resource_version: str) -> list[dict[str, Any]]:
    """``ops`` applied only if the object is still at ``resource_version`` (RFC 6902 ``test``
    first: one failing op rejects the whole patch)."""
    return [{"op": "test", "path": "/metadata/resourceVersion", "value": resource_version},
            *ops]


def rollback(api: ApiClient, dep: V1Deployment, rs: V1ReplicaSet, *, to_revision: int,
             dry_run: bool, timeout: float) -> tuple[bool, str]:
    """DeploymentRollbacker.Rollback from the point the target ReplicaSet is known, the
    PATCH fenced on ``dep``'s resourceVersion (a changed Deployment: ``WriteConflict``)."""
    meta, spec = dep.metadata, dep.spec
    assert meta is not None and spec is not None and rs.spec is not None
    if not meta.resource_version:
        raise PermanentPlatformError(f'deployment "{meta.name}" was read without a '
                                     "resourceVersion: refusing an unfenced write")
    suffix = " (server dry run)" if dry_run else ""
    prefix = f"deployment.apps/{meta.name}"
    if spec.paused:
        # kubectl >= 1.2x wording (older releases appended "deployment/NAME").
        raise RolloutPaused("you cannot rollback a paused deployment; resume it first with "
                            "'kubectl rollout resume' and try again")
    rs_template = serialize(api, rs.spec.template) or {}
    dep_template = serialize(api, spec.template) or {}
    if same_template(rs_template, dep_template):
        return False, (f"{prefix} skipped rollback (current template already matches "
                       f"revision {to_revision}){suffix}")
    # A list body is what makes the client send application/json-patch+json.
    read_at = str(meta.resource_version)
    patch = fenced(rollback_patch(dep, rs, rs_template), read_at)
    apps = AppsV1Api(api)
    failed = f"failed restoring revision {to_revision}"
    try:
        with translate():
            apps.patch_namespaced_deployment(
                str(meta.name), str(meta.namespace), patch,
                dry_run="All" if dry_run else None, _request_timeout=timeout)
    except TransientPlatformError as exc:  # WriteConflict (409) keeps its type
        raise type(exc)(f"{failed}: {exc}", retry_after=exc.retry_after) from exc
    except PermanentPlatformError as exc:
        if http_status(exc) == 422:
            with translate():
                now = apps.read_namespaced_deployment(str(meta.name), str(meta.namespace),
                                                      _request_timeout=timeout)
            moved = now.metadata.resource_version if now.metadata else None
            if moved != read_at:
                raise WriteConflict(
                    f'{failed}: deployment "{meta.name}" changed after it was read '
                    f"(resourceVersion {read_at}, now {moved}); the write was refused and "
                    "will be decided again on a fresh read") from exc
        raise type(exc)(f"{failed}: {exc}") from exc
    return True, f"{prefix} rolled back{suffix}"


# ============================================================ status and history
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


def deployment_complete(dep: V1Deployment) -> str | None:
    """None when DeploymentComplete holds (every desired replica updated and available, no
    old pod left, the newest spec observed), else what falls short, with the counters."""
    meta, spec, st = dep.metadata, dep.spec, dep.status
    desired = spec.replicas if spec and spec.replicas is not None else 1  # API default
    updated = (st.updated_replicas if st else None) or 0
    total = (st.replicas if st else None) or 0
    available = (st.available_replicas if st else None) or 0
    generation = (meta.generation if meta else None) or 0
    observed = (st.observed_generation if st else None) or 0
    if (updated, total, available) == (desired, desired, desired) and observed >= generation:
        return None
    shortfall = (f"{updated} of {desired} replicas updated, {available} available, "
                 f"{total} in total")
    if observed < generation:
        shortfall += f"; generation {generation} not observed yet (at {observed})"
    return shortfall


def running_check(api: ApiClient, dep: V1Deployment, rss: list[V1ReplicaSet],
                  pods: list[V1Pod], pinned: str) -> RunningCheck:
    """Is ReplicaSet ``pinned`` what the Deployment runs, everywhere? ``rss`` are the
    Deployment's ReplicaSets, ``pods`` its active (not terminating) pods."""
    name = dep.metadata.name if dep.metadata else ""
    by_name = {str(rs.metadata.name): rs for rs in rss if rs.metadata is not None}
    pods = [p for p in pods if _owner(p) in by_name]  # the controller ignores foreign pods
    current = template_replica_set(api, dep, rss)
    running = describe_running(current, dep, pods, by_name)
    problems: list[str] = []
    target = by_name.get(pinned)
    if target is None:
        problems.append(f"the pinned ReplicaSet {pinned} no longer exists")
    elif current is None or current.metadata is None or current.metadata.name != pinned:
        problems.append(f"the Deployment's template is no longer that of the pinned "
                        f"ReplicaSet {_label(target)}")
    shortfall = deployment_complete(dep)
    if shortfall is not None:
        problems.append(f'rollout of deployment "{name}" not complete: {shortfall}')
    strays = sorted({str(_owner(p)) for p in pods} - {pinned})
    if target is not None and strays:
        count = sum(1 for p in pods if _owner(p) != pinned)
        problems.append(f"{count} pod{'s' if count != 1 else ''} still run"
                        f"{'s' if count == 1 else ''} {', '.join(strays)}")
    if problems:
        return RunningCheck(matches=False, running=running, detail="; ".join(problems))
    desired = dep.spec.replicas if dep.spec and dep.spec.replicas is not None else 1
    return RunningCheck(matches=True, running=running,
                        detail=f'deployment "{name}" runs ReplicaSet {pinned} on all '
                               f"{desired} replica{'s' if desired != 1 else ''}, all available")


def describe_running(current: V1ReplicaSet | None, dep: V1Deployment, pods: list[V1Pod],
                     by_name: dict[str, V1ReplicaSet]) -> str:
    """"ReplicaSet web-5d8f (revision 4: registry/web:1.0)", plus where the pods really are
    when some belong to another ReplicaSet."""
    if current is not None and current.metadata is not None:
        head = f"ReplicaSet {_label(current)}"
        home = str(current.metadata.name)
    else:
        tpl = dep.spec.template.spec if dep.spec and dep.spec.template else None
        shown = ", ".join(str(c.image) for c in (tpl.containers if tpl else [])) or "?"
        head = f"no ReplicaSet yet for the Deployment's template ({shown})"
        home = ""
    counts: dict[str, int] = {}
    for pod in pods:
        owner = str(_owner(pod))
        counts[owner] = counts.get(owner, 0) + 1
    if not counts or set(counts) == {home}:
        return head
    parts = []
    for owner, n in sorted(counts.items(), key=lambda kv: (kv[0] != home, kv[0])):
        rs = by_name.get(owner)
        where = owner if owner == home or rs is None else _label(rs)
        parts.append(f"{n} on {where}")
    return f"{head}; pods: {', '.join(parts)}"


def _label(rs: V1ReplicaSet) -> str:
    number = revision_number(rs)
    shown = ", ".join(images(rs)) or "?"
    name = rs.metadata.name if rs.metadata else "?"
    return f"{name} (revision {number}: {shown})" if number is not None else f"{name} ({shown})"


def _owner(pod: V1Pod) -> str | None:
    refs = (pod.metadata.owner_references if pod.metadata else None) or []
    return next((str(r.name) for r in refs if r.controller and r.kind == "ReplicaSet"), None)


def _age(rs: V1ReplicaSet) -> tuple[Any, str]:
    meta = rs.metadata
    return (meta.creation_timestamp or EPOCH, str(meta.name)) if meta else (EPOCH, "")


def checked(status: RolloutStatus, raise_on_failure: bool) -> RolloutStatus:
    if status.failed and raise_on_failure:
        raise RolloutFailed(status.message)
    return status


def format_history(name: str, revisions: list[Revision]) -> str:
    """What ``kubectl rollout history deployment/NAME`` prints for these revisions."""
    by_number: dict[int, Revision] = {}
    for rev in sorted(revisions, key=lambda r: (r.current, r.created or EPOCH)):
        by_number[rev.number] = rev  # like kubectl's map: the newest ReplicaSet wins
    if not by_number:
        return f"deployment.apps/{name} \nNo rollout history found.\n"
    rows = [("REVISION", "CHANGE-CAUSE")] + [(str(n), by_number[n].change_cause or "<none>")
                                             for n in sorted(by_number)]
    width = max(len(r[0]) for r in rows) + 2  # text/tabwriter: padding 2, no trailing pad
    body = "".join(f"{r[0].ljust(width)}{r[1]}\n" for r in rows)
    return f"deployment.apps/{name} \n{body}\n"
