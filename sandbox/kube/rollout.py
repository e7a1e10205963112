"""The deployment controller's arithmetic as pure functions over plain objects: surge and
unavailability budgets, the new ReplicaSet's next size, status and conditions.
"""

# Each function follows kubernetes/kubernetes pkg/controller/deployment/util/deployment_util.go
# (named in its docstring) or pkg/controller/deployment/{sync,progress}.go. They read the
# objects as the API serves them (dicts), never our adapters: the emulator is an oracle.

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

Obj = dict[str, Any]

# Condition reasons (deployment_util.go constants).
NEW_RS_AVAILABLE = "NewReplicaSetAvailable"
RS_UPDATED = "ReplicaSetUpdated"
TIMED_OUT = "ProgressDeadlineExceeded"
FOUND_NEW_RS = "FoundNewReplicaSet"
NEW_RS_CREATED = "NewReplicaSetCreated"
PAUSED = "DeploymentPaused"
RESUMED = "DeploymentResumed"
MIN_AVAILABLE = "MinimumReplicasAvailable"
MIN_UNAVAILABLE = "MinimumReplicasUnavailable"


def replicas(d: Mapping[str, Any]) -> int:
    return int((d.get("spec") or {}).get("replicas", 1) or 0)


def scaled_value(value: object, total: int, *, round_up: bool) -> int:
    """intstr.GetScaledValueFromIntOrPercent (apimachinery pkg/util/intstr): an int as is,
    "N%" of ``total`` rounded up (maxSurge) or down (maxUnavailable)."""
    if isinstance(value, str):
        if not value.endswith("%"):
            raise ValueError(f"invalid value for IntOrString: invalid type: string is not a "
                             f"percentage: {value!r}")
        scaled = int(value[:-1]) * total / 100
        return math.ceil(scaled) if round_up else math.floor(scaled)
    return int(str(value)) if value is not None else 0


def _rolling(d: Mapping[str, Any]) -> Mapping[str, Any]:
    return ((d.get("spec") or {}).get("strategy") or {}).get("rollingUpdate") or {}


def is_rolling(d: Mapping[str, Any]) -> bool:
    strategy = (d.get("spec") or {}).get("strategy") or {}
    return bool(strategy.get("type", "RollingUpdate") == "RollingUpdate")


def resolve_fenceposts(d: Mapping[str, Any]) -> tuple[int, int]:
    """ResolveFenceposts: (surge, unavailable) scaled against spec.replicas; when both come
    out 0 (e.g. 0 and 10% of 4) unavailable becomes 1, or the rollout could never move."""
    rolling, desired = _rolling(d), replicas(d)
    surge = scaled_value(rolling.get("maxSurge", "25%"), desired, round_up=True)
    unavailable = scaled_value(rolling.get("maxUnavailable", "25%"), desired, round_up=False)
    if surge == 0 and unavailable == 0:
        unavailable = 1
    return surge, unavailable


def max_surge(d: Mapping[str, Any]) -> int:
    """MaxSurge: 0 unless RollingUpdate."""
    return resolve_fenceposts(d)[0] if is_rolling(d) else 0


def max_unavailable(d: Mapping[str, Any]) -> int:
    """MaxUnavailable: 0 unless RollingUpdate or with 0 replicas; never above replicas."""
    if not is_rolling(d) or replicas(d) == 0:
        return 0
    return min(resolve_fenceposts(d)[1], replicas(d))


def spec_replicas(rs: Mapping[str, Any]) -> int:
    return int((rs.get("spec") or {}).get("replicas") or 0)


def _status(rs: Mapping[str, Any], field: str) -> int:
    return int((rs.get("status") or {}).get(field) or 0)


def replica_count(rss: Iterable[Mapping[str, Any]]) -> int:
    """GetReplicaCountForReplicaSets: the sum of spec.replicas (what was asked for)."""
    return sum(spec_replicas(rs) for rs in rss)


def actual_count(rss: Iterable[Mapping[str, Any]]) -> int:
    """GetActualReplicaCountForReplicaSets: the sum of status.replicas (active pods)."""
    return sum(_status(rs, "replicas") for rs in rss)


def available_count(rss: Iterable[Mapping[str, Any]]) -> int:
    return sum(_status(rs, "availableReplicas") for rs in rss)


def ready_count(rss: Iterable[Mapping[str, Any]]) -> int:
    return sum(_status(rs, "readyReplicas") for rs in rss)


def new_rs_new_replicas(d: Mapping[str, Any], all_rss: list[Obj],
                        new_rs: Mapping[str, Any]) -> int:
    """NewRSNewReplicas: how far the new ReplicaSet may grow now. RollingUpdate: up to
    replicas + maxSurge pods asked for across all ReplicaSets (spec counts, so a pod still
    Terminating after its ReplicaSet shrank is already out of the budget); Recreate: all."""
    if not is_rolling(d):
        return replicas(d)
    current = replica_count(all_rss)
    max_total = replicas(d) + max_surge(d)
    if current >= max_total:
        return spec_replicas(new_rs)
    scale_up = min(max_total - current, replicas(d) - spec_replicas(new_rs))
    return spec_replicas(new_rs) + scale_up


# ---------------------------------------------------------------------- conditions
def now_time(now: datetime) -> str:
    return now.strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(stamp: str) -> datetime:
    return datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)


def get_condition(status: Mapping[str, Any], ctype: str) -> Obj | None:
    for cond in status.get("conditions") or []:
        if cond.get("type") == ctype:
            return dict(cond)
    return None


def new_condition(ctype: str, status: str, reason: str, message: str, now: datetime) -> Obj:
    stamp = now_time(now)
    return {"type": ctype, "status": status, "lastUpdateTime": stamp,
            "lastTransitionTime": stamp, "reason": reason, "message": message}


def remove_condition(status: Obj, ctype: str) -> None:
    status["conditions"] = [c for c in status.get("conditions") or [] if c.get("type") != ctype]
    if not status["conditions"]:
        del status["conditions"]


def set_condition(status: Obj, cond: Obj) -> None:
    """SetDeploymentCondition: same status and reason -> nothing changes (not even the
    message); same status -> keep lastTransitionTime; the condition moves to the end."""
    current = get_condition(status, cond["type"])
    if current is not None and (current["status"], current.get("reason")) == \
            (cond["status"], cond.get("reason")):
        return
    if current is not None and current["status"] == cond["status"]:
        cond = {**cond, "lastTransitionTime": current["lastTransitionTime"]}
    others = [c for c in status.get("conditions") or [] if c.get("type") != cond["type"]]
    status["conditions"] = [*others, cond]


def has_progress_deadline(d: Mapping[str, Any]) -> bool:
    """HasProgressDeadline: set and not MaxInt32 (the "no deadline" value)."""
    value = (d.get("spec") or {}).get("progressDeadlineSeconds")
    return value is not None and int(value) != 2**31 - 1


def calculate_status(d: Mapping[str, Any], all_rss: list[Obj],
                     new_rs: Mapping[str, Any] | None, now: datetime) -> Obj:
    """calculateStatus (sync.go): counters from the ReplicaSets' statuses (replicas and
    updatedReplicas are active pods; unavailable is asked-for minus available) and the
    Available condition against replicas - maxUnavailable."""
    available = available_count(all_rss)
    status: Obj = {
        "observedGeneration": int((d.get("metadata") or {}).get("generation") or 1),
        "replicas": actual_count(all_rss),
        "updatedReplicas": actual_count([new_rs]) if new_rs is not None else 0,
        "readyReplicas": ready_count(all_rss),
        "availableReplicas": available,
        "unavailableReplicas": max(0, replica_count(all_rss) - available),
    }
    status = {k: v for k, v in status.items() if v}  # every counter is omitempty in Go
    old = d.get("status") or {}
    if old.get("collisionCount"):
        status["collisionCount"] = old["collisionCount"]
    if old.get("conditions"):
        status["conditions"] = [dict(c) for c in old["conditions"]]
    if available >= replicas(d) - max_unavailable(d):
        set_condition(status, new_condition("Available", "True", MIN_AVAILABLE,
                                            "Deployment has minimum availability.", now))
    else:
        set_condition(status, new_condition("Available", "False", MIN_UNAVAILABLE,
                                            "Deployment does not have minimum availability.",
                                            now))
    return status


def deployment_complete(d: Mapping[str, Any], status: Mapping[str, Any]) -> bool:
    """DeploymentComplete: every replica updated, no old ones, all available, observed."""
    want = replicas(d)
    return (int(status.get("updatedReplicas") or 0) == want
            and int(status.get("replicas") or 0) == want
            and int(status.get("availableReplicas") or 0) == want
            and int(status.get("observedGeneration") or 0)
            >= int((d.get("metadata") or {}).get("generation") or 1))


def deployment_progressing(d: Mapping[str, Any], new: Mapping[str, Any]) -> bool:
    """DeploymentProgressing: more updated, fewer old, more ready or more available pods
    than the stored status says."""
    old = d.get("status") or {}

    def get(s: Mapping[str, Any], field: str) -> int:
        return int(s.get(field) or 0)

    old_old = get(old, "replicas") - get(old, "updatedReplicas")
    new_old = get(new, "replicas") - get(new, "updatedReplicas")
    return (get(new, "updatedReplicas") > get(old, "updatedReplicas") or new_old < old_old
            or get(new, "readyReplicas") > get(old, "readyReplicas")
            or get(new, "availableReplicas") > get(old, "availableReplicas"))


def deployment_timed_out(d: Mapping[str, Any], new: Mapping[str, Any], now: datetime) -> bool:
    """DeploymentTimedOut: lastUpdateTime of Progressing + progressDeadlineSeconds is before
    now; never after a completed rollout, always once ProgressDeadlineExceeded was set."""
    if not has_progress_deadline(d):
        return False
    cond = get_condition(new, "Progressing")
    if cond is None or cond.get("reason") == NEW_RS_AVAILABLE:
        return False
    if cond.get("reason") == TIMED_OUT:
        return True
    deadline = parse_time(cond["lastUpdateTime"]) + timedelta(
        seconds=int(d["spec"]["progressDeadlineSeconds"]))
    return deadline < now


def sync_rollout_status(d: Mapping[str, Any], all_rss: list[Obj],
                        new_rs: Mapping[str, Any] | None, now: datetime, *,
                        check_at: datetime | None = None) -> Obj:
    """syncRolloutStatus (progress.go): the status to write, Progressing included.

    Complete -> NewReplicaSetAvailable; any progress -> ReplicaSetUpdated (its
    lastUpdateTime restarts the deadline, lastTransitionTime kept while True); otherwise,
    past the deadline -> False/ProgressDeadlineExceeded, which then stays until progress is
    observed again. A rollout already complete (same counts, NewReplicaSetAvailable) is left
    alone. ``check_at``: the time the deadline is checked against (default ``now``)."""
    name = d["metadata"]["name"]
    status = calculate_status(d, all_rss, new_rs, now)
    if not has_progress_deadline(d):
        remove_condition(status, "Progressing")
    current = get_condition(d.get("status") or {}, "Progressing")
    complete_before = (status.get("replicas", 0) == status.get("updatedReplicas", 0)
                       and current is not None
                       and current.get("reason") == NEW_RS_AVAILABLE)
    what = f'ReplicaSet "{new_rs["metadata"]["name"]}"' if new_rs is not None \
        else f'Deployment "{name}"'
    if has_progress_deadline(d) and not complete_before:
        if deployment_complete(d, status):
            set_condition(status, new_condition("Progressing", "True", NEW_RS_AVAILABLE,
                                                f"{what} has successfully progressed.", now))
        elif deployment_progressing(d, status):
            cond = new_condition("Progressing", "True", RS_UPDATED, f"{what} is progressing.",
                                 now)
            if current is not None:
                if current["status"] == "True":
                    cond["lastTransitionTime"] = current["lastTransitionTime"]
                remove_condition(status, "Progressing")
            set_condition(status, cond)
        elif deployment_timed_out(d, status, check_at or now):
            set_condition(status, new_condition("Progressing", "False", TIMED_OUT,
                                                f"{what} has timed out progressing.", now))
    return status


def seconds_until_deadline(d: Mapping[str, Any], status: Mapping[str, Any],
                           now: datetime) -> float | None:
    """requeueStuckDeployment (progress.go): when to look again so a stuck rollout times out
    on time; None when no check is due (done, timed out, no deadline)."""
    cond = get_condition(status, "Progressing")
    if not has_progress_deadline(d) or cond is None or cond.get("reason") in (
            NEW_RS_AVAILABLE, TIMED_OUT) or deployment_complete(d, status):
        return None
    after = parse_time(cond["lastUpdateTime"]) + timedelta(
        seconds=int(d["spec"]["progressDeadlineSeconds"]))
    return max(0.0, (after - now).total_seconds()) + 1.0  # "Before(now)": strictly past
