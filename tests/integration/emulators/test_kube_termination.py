"""The Kubernetes emulator's pod deletion rules, in process: the pod strategy's grace period,
the registry's two-phase graceful delete, and the kubelet removing a pod when its grace ends.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from sandbox.kube.objects import is_pod_active, pod_grace_period
from sandbox.kube.pods import PodFleet
from sandbox.kube.scheduler import Scheduler
from sandbox.kube.store import ApiError, Obj, Store, WatchEvent
from sandbox.kube.tables import to_table

NS = "shop"


def pod(name: str = "web-1", *, grace: int | None = 30, node: str = "node-a",
        phase: str = "Running") -> Obj:
    spec: Obj = {"containers": [{"name": "app", "image": "web:1"}], "nodeName": node}
    if grace is not None:
        spec["terminationGracePeriodSeconds"] = grace
    return {"metadata": {"name": name, "namespace": NS}, "spec": spec,
            "status": {"phase": phase}}


@pytest.fixture
def store() -> Store:
    s = Store(seed="unit")
    s.create("namespaces", {"metadata": {"name": NS}})
    return s


@pytest.fixture
def events(store: Store) -> list[WatchEvent]:
    seen: list[WatchEvent] = []
    store.add_listener(lambda event, actor: seen.append(event) if event.key == "pods" else None)
    return seen


@pytest.fixture
def fleet(store: Store) -> Iterator[PodFleet]:
    scheduler = Scheduler()
    scheduler.start()
    yield PodFleet(store, scheduler)
    scheduler.stop()


def delete(store: Store, name: str, grace: int | None = None,
           uid: str | None = None) -> tuple[Obj, bool]:
    return store.delete_gracefully("pods", NS, name, requested=grace,
                                   period_for=pod_grace_period, uid=uid)


def seconds_until(stamp: str) -> float:
    when = datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    return (when - datetime.now(UTC)).total_seconds()


def test_grace_period_follows_the_pod_strategy() -> None:
    assert pod_grace_period(pod(grace=30), None) == 30
    assert pod_grace_period(pod(grace=30), 5) == 5  # the request wins
    assert pod_grace_period(pod(grace=None), None) == 0  # unset: immediately
    assert pod_grace_period(pod(node=""), None) == 0  # never scheduled
    assert pod_grace_period(pod(phase="Succeeded"), None) == 0  # already terminated
    assert pod_grace_period(pod(), -3) == 1


def test_graceful_delete_marks_then_keeps_the_pod(store: Store,
                                                  events: list[WatchEvent]) -> None:
    store.create("pods", pod(grace=30))
    marked, gone = delete(store, "web-1")
    assert not gone
    meta = marked["metadata"]
    assert meta["deletionGracePeriodSeconds"] == 30
    assert 28 <= seconds_until(meta["deletionTimestamp"]) <= 31
    assert store.get("pods", NS, "web-1")["metadata"]["deletionTimestamp"]
    assert not is_pod_active(store.get("pods", NS, "web-1"))
    assert [e.type for e in events] == ["ADDED", "MODIFIED"]
    # A second delete with the same or a longer grace changes nothing ...
    assert delete(store, "web-1", grace=60) == (store.get("pods", NS, "web-1"), False)
    assert len(events) == 2
    # ... a shorter one moves the deadline forward, from the original start.
    shortened, gone = delete(store, "web-1", grace=10)
    assert not gone and shortened["metadata"]["deletionGracePeriodSeconds"] == 10
    assert 8 <= seconds_until(shortened["metadata"]["deletionTimestamp"]) <= 11
    # Grace 0 (the kubelet, or --force): MODIFIED then DELETED, gone from storage.
    _, gone = delete(store, "web-1", grace=0)
    assert gone and store.try_get("pods", NS, "web-1") is None
    assert [e.type for e in events] == ["ADDED", "MODIFIED", "MODIFIED", "MODIFIED", "DELETED"]
    assert events[-1].obj["metadata"]["deletionGracePeriodSeconds"] == 0


def test_zero_grace_deletes_at_once_and_uid_preconditions_hold(
        store: Store, events: list[WatchEvent]) -> None:
    created = store.create("pods", pod(grace=0))
    with pytest.raises(ApiError) as conflict:
        delete(store, "web-1", uid="someone-else")
    assert conflict.value.code == 409 and "UID in the precondition" in conflict.value.message
    _, gone = delete(store, "web-1", uid=created["metadata"]["uid"])
    assert gone and [e.type for e in events] == ["ADDED", "MODIFIED", "DELETED"]
    with pytest.raises(ApiError) as missing:
        delete(store, "web-1")
    assert missing.value.code == 404


def test_updates_cannot_touch_the_deletion_fields(store: Store) -> None:
    store.create("pods", pod(grace=30))
    marked, _ = delete(store, "web-1")
    edited = {**marked, "metadata": {**marked["metadata"], "labels": {"x": "1"}}}
    del edited["metadata"]["deletionTimestamp"]
    kept = store.replace("pods", edited)
    assert kept["metadata"]["deletionTimestamp"] == marked["metadata"]["deletionTimestamp"]
    store.create("pods", pod("web-2"))
    sneaky = store.get("pods", NS, "web-2")
    sneaky["metadata"]["deletionTimestamp"] = "2000-01-01T00:00:00Z"
    assert "deletionTimestamp" not in store.replace("pods", sneaky)["metadata"]


def test_the_kubelet_removes_the_pod_when_its_grace_period_ends(
        store: Store, fleet: PodFleet) -> None:
    created = store.create("pods", pod(grace=1))
    removed = threading.Event()
    store.add_listener(lambda e, actor: removed.set() if e.type == "DELETED" else None)
    fleet.delete(created)
    assert store.try_get("pods", NS, "web-1") is not None
    assert not removed.wait(0.5)  # not before the grace period ...
    assert removed.wait(5)  # ... but once it ran out
    assert store.try_get("pods", NS, "web-1") is None


def test_a_terminating_pod_prints_as_terminating(store: Store) -> None:
    store.create("pods", pod("web-1"))
    store.create("pods", pod("web-2"))
    delete(store, "web-2")
    items, rv = store.list("pods", NS)
    rows = {r["cells"][0]: r["cells"][2] for r in to_table("pods", items, str(rv))["rows"]}
    assert rows == {"web-1": "Running", "web-2": "Terminating"}
