"""The deployment controller's arithmetic in the Kubernetes emulator, in process: surge
and unavailability rounding, fenceposts, the new ReplicaSet's next size, the progress
deadline, and the API server's Deployment validation.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from sandbox.kube import rollout as ro
from sandbox.kube.store import ApiError
from sandbox.kube.validation import validate_deployment

NOW = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)


def deployment(replicas: int = 4, *, surge: Any = "25%", unavailable: Any = "25%",
               strategy: str = "RollingUpdate", **spec: Any) -> dict[str, Any]:
    strat: dict[str, Any] = {"type": strategy}
    if strategy == "RollingUpdate":
        strat["rollingUpdate"] = {"maxSurge": surge, "maxUnavailable": unavailable}
    return {"metadata": {"name": "web", "generation": 2},
            "spec": {"replicas": replicas, "strategy": strat, "progressDeadlineSeconds": 600,
                     "selector": {"matchLabels": {"app": "web"}},
                     "template": {"metadata": {"labels": {"app": "web"}}}, **spec},
            "status": {"observedGeneration": 1}}


def rs(replicas: int, available: int = 0, actual: int | None = None) -> dict[str, Any]:
    return {"metadata": {"name": f"rs-{replicas}-{available}"}, "spec": {"replicas": replicas},
            "status": {"replicas": replicas if actual is None else actual,
                       "availableReplicas": available, "readyReplicas": available}}


@pytest.mark.parametrize(("replicas", "surge", "unavailable", "expected"), [
    (4, "25%", "25%", (1, 1)),
    (3, "25%", "25%", (1, 0)),  # surge rounds up, unavailable down
    (10, "33%", "33%", (4, 3)),
    (4, 0, "10%", (0, 1)),  # both 0 after scaling: unavailable becomes 1
    (4, 2, 1, (2, 1)),
])
def test_fenceposts(replicas: int, surge: Any, unavailable: Any,
                    expected: tuple[int, int]) -> None:
    assert ro.resolve_fenceposts(deployment(replicas, surge=surge,
                                            unavailable=unavailable)) == expected


def test_max_unavailable_is_capped_and_zero_without_rolling() -> None:
    assert ro.max_unavailable(deployment(2, unavailable=5)) == 2
    assert ro.max_unavailable(deployment(0)) == 0
    assert ro.max_unavailable(deployment(4, strategy="Recreate")) == 0
    assert ro.max_surge(deployment(4, strategy="Recreate")) == 0


def test_new_replica_set_grows_within_the_surge_budget() -> None:
    d = deployment(4, surge=1, unavailable=0)
    new = rs(0)
    assert ro.new_rs_new_replicas(d, [rs(4, 4), new], new) == 1
    # Spec counts, not pods: a ReplicaSet scaled down frees budget at once.
    new = rs(1)
    assert ro.new_rs_new_replicas(d, [rs(3, 3, actual=4), new], new) == 2
    assert ro.new_rs_new_replicas(d, [rs(4, 4), new], new) == 1  # 5 asked for already
    assert ro.new_rs_new_replicas(deployment(4, strategy="Recreate"), [new], new) == 4


def progressing(status: dict[str, Any], reason: str, updated: datetime) -> None:
    stamp = ro.now_time(updated)
    status["conditions"] = [{"type": "Progressing", "status": "True", "reason": reason,
                             "message": "", "lastUpdateTime": stamp,
                             "lastTransitionTime": stamp}]


def test_deadline_counts_from_the_last_progress() -> None:
    d = deployment(4, progressDeadlineSeconds=10)
    status: dict[str, Any] = {}
    progressing(status, ro.RS_UPDATED, NOW - timedelta(seconds=10))
    assert not ro.deployment_timed_out(d, status, NOW)  # "Before(now)": strictly past
    assert ro.deployment_timed_out(d, status, NOW + timedelta(seconds=1))
    progressing(status, ro.NEW_RS_AVAILABLE, NOW - timedelta(days=1))
    assert not ro.deployment_timed_out(d, status, NOW)
    progressing(status, ro.TIMED_OUT, NOW)
    assert ro.deployment_timed_out(d, status, NOW)
    assert not ro.deployment_timed_out(deployment(4, progressDeadlineSeconds=2**31 - 1),
                                       status, NOW)


def test_timed_out_stays_until_progress_then_resumes() -> None:
    d = deployment(3, progressDeadlineSeconds=5)
    d["status"] = {"observedGeneration": 2, "replicas": 4, "updatedReplicas": 1,
                   "availableReplicas": 3, "readyReplicas": 3}
    progressing(d["status"], ro.RS_UPDATED, NOW - timedelta(seconds=30))
    stuck = [rs(3, 3), rs(1, 0)]
    timed_out = ro.sync_rollout_status(d, stuck, stuck[1], NOW)
    assert ro.get_condition(timed_out, "Progressing")["reason"] == ro.TIMED_OUT
    d["status"] = timed_out
    again = ro.sync_rollout_status(d, stuck, stuck[1], NOW + timedelta(minutes=5))
    assert ro.get_condition(again, "Progressing") == ro.get_condition(timed_out, "Progressing")
    # Undo: the good ReplicaSet is the new one and has more updated replicas: progress.
    undone = [rs(1, 0), rs(3, 3)]
    moving = ro.sync_rollout_status(d, undone, undone[1], NOW + timedelta(minutes=6))
    cond = ro.get_condition(moving, "Progressing")
    assert (cond["status"], cond["reason"]) == ("True", ro.RS_UPDATED)


def test_status_counts_active_pods_and_omits_zeros() -> None:
    d = deployment(3)  # maxUnavailable 25% of 3 = 0: all three must be available
    status = ro.calculate_status(d, [rs(0, 0, actual=0), rs(3, 2)], rs(3, 2), NOW)
    assert status["replicas"] == 3 and status["availableReplicas"] == 2
    assert status["unavailableReplicas"] == 1
    assert ro.get_condition(status, "Available")["reason"] == ro.MIN_UNAVAILABLE
    empty = ro.calculate_status(deployment(0), [rs(0, 0, actual=0)], rs(0, 0, actual=0), NOW)
    assert set(empty) == {"observedGeneration", "conditions"}  # omitempty counters
    assert ro.get_condition(empty, "Available")["status"] == "True"


@pytest.mark.parametrize(("change", "field", "detail"), [
    (lambda d: d["spec"]["template"]["metadata"].__setitem__("labels", {"app": "x"}),
     "spec.template.metadata.labels", "`selector` does not match template `labels`"),
    (lambda d: d["spec"]["strategy"].__setitem__("rollingUpdate",
                                                 {"maxSurge": 0, "maxUnavailable": "0%"}),
     "spec.strategy.rollingUpdate.maxUnavailable", "may not be 0 when `maxSurge` is 0"),
    (lambda d: d["spec"].__setitem__("strategy", {"type": "Recreate",
                                                  "rollingUpdate": {"maxSurge": 1}}),
     "spec.strategy.rollingUpdate", "may not be specified when strategy `type` is 'Recreate'"),
    (lambda d: d["spec"].update(minReadySeconds=30, progressDeadlineSeconds=30),
     "spec.progressDeadlineSeconds", "must be greater than minReadySeconds"),
    (lambda d: d["spec"]["selector"].__setitem__("matchLabels", {}),
     "spec.selector", "empty selector is invalid for deployment"),
])
def test_validation_refuses_invalid_specs(change: Any, field: str, detail: str) -> None:
    d = deployment(3)
    change(d)
    with pytest.raises(ApiError) as err:
        validate_deployment(d, None)
    assert err.value.code == 422 and err.value.reason == "Invalid"
    causes = (err.value.details or {})["causes"]
    assert [c["field"] for c in causes] == [field]
    assert causes[0]["message"].endswith(detail)
    assert err.value.message.startswith('Deployment.apps "web" is invalid: ')


def test_selector_is_immutable_on_update() -> None:
    old = deployment(3)
    new = deployment(3)
    new["spec"]["selector"] = {"matchLabels": {"app": "web", "tier": "x"}}
    new["spec"]["template"]["metadata"]["labels"] = {"app": "web", "tier": "x"}
    validate_deployment(new, None)  # fine on create
    with pytest.raises(ApiError) as err:
        validate_deployment(new, old)
    assert err.value.message.endswith(": field is immutable")
