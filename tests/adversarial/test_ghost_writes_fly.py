"""Late writes and throttling on Fly, through httpx against the Machines API emulator: a
machine update held by the server past the client's timeout is checked, when the server gets
to it, against the lease and the machine version it carries, as the real API does.
"""

# The emulator refuses a mutating call with 409 while someone else holds the machine's lease,
# and an update whose ``current_version`` is not the machine's latest ``instance_id``
# (sandbox/fly/state.py cites the Fly docs and staff for both). So on Fly the abandoned update
# is fenced server-side: it lands only if nothing newer happened to the machine.

from __future__ import annotations

import email.utils
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import jsonschema
import pytest

from platforms.base import Revision, TargetChanged, TransientPlatformError, WriteConflict
from platforms.fly import FlyPlatform
from sandbox.fly import (
    DEFAULT_TOKEN,
    SEED_APP,
    FlyEmulator,
    seed_image,
)
from tests.support.emulators import FLY_TARGET as TARGET
from tests.support.emulators import FlyClock, fly_emulator_fixture, fly_spec, fly_updates

BAD, GOOD, HOTFIX = seed_image("1.4.0"), seed_image("1.3.0"), seed_image("1.5.0")
CLIENT_TIMEOUT = 0.5  # the bot gives up on an answer after this long
AUTH = {"Authorization": f"Bearer {DEFAULT_TOKEN}"}


@pytest.fixture
def clock() -> FlyClock:
    return FlyClock()


emulator = fly_emulator_fixture(start_delay=0.02)


@pytest.fixture
def ids(emulator: FlyEmulator) -> list[str]:
    return sorted(m["id"] for m in emulator.machines(SEED_APP))


def make_platform(em: FlyEmulator, *, timeout: float = CLIENT_TIMEOUT) -> FlyPlatform:
    return FlyPlatform(token=DEFAULT_TOKEN, api_url=em.url, platform_url=em.url,
                       request_timeout=timeout,
                       check_interval=0.02, check_timeout=2.0, machine_timeout=5.0)


@pytest.fixture
def fly(emulator: FlyEmulator) -> Iterator[FlyPlatform]:
    platform = make_platform(emulator)
    yield platform
    platform.close()


def plan(fly: FlyPlatform) -> tuple[Revision, Revision]:
    """(current, pinned) as the planner pins them: move away from 1.4.0 to 1.3.0."""
    history = fly.history(TARGET)
    assert (history[0].id, history[1].id) == (BAD, GOOD)
    return history[0], history[1]


def machine(em: FlyEmulator, machine_id: str) -> dict[str, Any]:
    return next(m for m in em.machines(SEED_APP) if m["id"] == machine_id)


def versions(em: FlyEmulator, machine_id: str) -> int:
    with em.state.cond:
        return len(em.state.machine(SEED_APP, machine_id).versions)


class Deployer:
    """Another operator deploying over the Machines API the way flyctl does: lease, read the
    machine under the lease, update with the nonce and ``current_version``, release
    (flyctl internal/machine/lease.go and flaps Update)."""

    def __init__(self, em: FlyEmulator) -> None:
        self.http = httpx.Client(base_url=f"{em.url}/v1/apps/{SEED_APP}/machines",
                                 headers=AUTH, timeout=5)

    def lease(self, machine_id: str) -> str:
        response = self.http.post(f"/{machine_id}/lease", json={"ttl": 120})
        assert response.status_code == 200, response.text
        return str(response.json()["nonce"])

    def update(self, machine_id: str, image: str, nonce: str) -> None:
        current = self.http.get(f"/{machine_id}").json()
        response = self.http.post(f"/{machine_id}", headers={"fly-machine-lease-nonce": nonce},
                                  json={"config": {**current["config"], "image": image},
                                        "current_version": current["instance_id"]})
        assert response.status_code == 200, response.text

    def release(self, machine_id: str, nonce: str) -> None:
        self.http.delete(f"/{machine_id}/lease", headers={"fly-machine-lease-nonce": nonce})

    def deploy(self, machine_ids: list[str], image: str) -> None:
        for machine_id in machine_ids:
            nonce = self.lease(machine_id)
            try:
                self.update(machine_id, image, nonce)
            finally:
                self.release(machine_id, nonce)


def abandoned_update(em: FlyEmulator, fly: FlyPlatform, machine_id: str,
                     current: Revision, pinned: Revision) -> Any:
    """The bot's update of ``machine_id`` is held by the server past the client's timeout."""
    held = em.hold("POST", f"/machines/{machine_id}")
    before = machine(em, machine_id)["instance_id"]
    with pytest.raises(TransientPlatformError, match="may still apply it") as info:
        fly.rollback_to(TARGET, pinned, expected=current)
    assert not isinstance(info.value, WriteConflict)
    assert f"version {before}" in str(info.value)
    assert held.arrived.is_set() and held.body["current_version"] == before and held.nonce
    assert em.lease(SEED_APP, machine_id) is None  # released; the version still fences it
    assert machine(em, machine_id)["config"]["image"] == BAD  # nothing applied yet
    return held


# ------------------------------------------------------------- the scenario
def test_a_late_update_after_retry_completion_and_a_hotfix_is_refused_on_version(
        emulator: FlyEmulator, fly: FlyPlatform, ids: list[str]) -> None:
    current, pinned = plan(fly)
    held = abandoned_update(emulator, fly, ids[0], current, pinned)
    result = fly.rollback_to(TARGET, pinned, expected=current)  # the executor's retry
    assert result.changed and "3 of 3 machines updated" in result.message
    assert fly.wait_for_rollout(TARGET, timeout=10).done
    assert fly.confirm_running(TARGET, pinned).matches  # the bot completes

    Deployer(emulator).deploy(ids, HOTFIX)  # the team ships a hotfix
    hotfixed = versions(emulator, ids[0])
    held.release()  # ...and now the server processes the abandoned update
    assert held.done.wait(10)
    assert held.status == 409 and "version mismatch" in str(held.error)
    assert {m["config"]["image"] for m in emulator.machines(SEED_APP)} == {HOTFIX}
    assert versions(emulator, ids[0]) == hotfixed  # no version was written


def test_a_late_update_meeting_another_lease_is_refused_and_the_retry_refuses_too(
        emulator: FlyEmulator, fly: FlyPlatform, ids: list[str]) -> None:
    """The lease alone fences it: the machine is still at the version the bot read, but the
    hotfix deployer holds the lease when the abandoned update is processed."""
    current, pinned = plan(fly)
    held = abandoned_update(emulator, fly, ids[0], current, pinned)
    deployer = Deployer(emulator)
    nonce = deployer.lease(ids[0])
    held.release()
    assert held.done.wait(10)
    assert held.status == 409 and "lease currently held by" in str(held.error)
    deployer.update(ids[0], HOTFIX, nonce)
    deployer.release(ids[0], nonce)
    sent = len(fly_updates(emulator))
    with pytest.raises(TargetChanged, match="1.5.0") as info:
        fly.rollback_to(TARGET, pinned, expected=current)  # the retry decides again
    assert ids[0] in str(info.value)
    assert len(fly_updates(emulator)) == sent
    assert machine(emulator, ids[0])["config"]["image"] == HOTFIX


def test_a_late_update_with_nothing_newer_lands_and_the_retry_builds_on_it(
        emulator: FlyEmulator, fly: FlyPlatform, ids: list[str]) -> None:
    current, pinned = plan(fly)
    held = abandoned_update(emulator, fly, ids[0], current, pinned)
    held.release()
    assert held.done.wait(10) and held.status == 200  # what we asked for, nothing newer
    sent = len(fly_updates(emulator))
    first = emulator.releases(SEED_APP)[0]
    assert first.status == "running"  # a transient failure: left for the retry to resume
    result = fly.rollback_to(TARGET, pinned, expected=current)
    # The retry resumes that release: the machine updated late already runs the pinned image
    # with the release's stamp, so it is not updated (restarted) again; the others are.
    assert result.changed and f"resumed release v{first.version}: 2 of 3 machines updated" \
        in result.message
    assert len(fly_updates(emulator)) == sent + 2
    retry = emulator.releases(SEED_APP)[0]
    assert retry.version == first.version and retry.status == "complete"
    assert {m["config"]["metadata"]["fly_release_version"]
            for m in emulator.machines(SEED_APP)} == {str(retry.version)}
    assert fly.wait_for_rollout(TARGET, timeout=10).done
    assert fly.confirm_running(TARGET, pinned).matches


# ---------------------------------------------------------------- refuse, conflict
def test_a_hotfix_on_one_machine_before_execution_is_target_changed_nothing_written(
        emulator: FlyEmulator, fly: FlyPlatform, ids: list[str]) -> None:
    current, pinned = plan(fly)
    Deployer(emulator).deploy(ids[-1:], HOTFIX)  # a canary of the hotfix
    mark = len(emulator.requests)
    with pytest.raises(TargetChanged, match=f"{ids[-1]}") as info:
        fly.rollback_to(TARGET, pinned, expected=current)
    assert "nothing was changed" in str(info.value)
    # not even a lease, nor a release record: reads only (GraphQL queries are POSTs)
    assert {(r.method, r.path) for r in emulator.requests[mark:]
            if r.method != "GET"} <= {("POST", "/graphql")}
    assert all("mutation" not in str(r.body) for r in emulator.requests[mark:])
    assert len(emulator.releases(SEED_APP)) == 5
    assert [machine(emulator, i)["config"]["image"] for i in ids] == [BAD, BAD, HOTFIX]


def test_a_hotfix_landing_while_the_bot_waits_for_a_lease_is_caught_under_the_lease(
        emulator: FlyEmulator, ids: list[str]) -> None:
    fly = make_platform(emulator, timeout=5.0)
    try:
        current, pinned = plan(fly)
        held = emulator.hold("POST", f"/machines/{ids[1]}/lease")
        outcome: dict[str, Any] = {}

        def attempt() -> None:
            try:
                fly.rollback_to(TARGET, pinned, expected=current)
            except Exception as exc:  # noqa: BLE001 - asserted below
                outcome["error"] = exc

        worker = threading.Thread(target=attempt)
        worker.start()
        assert held.arrived.wait(10)
        Deployer(emulator).deploy(ids[1:2], HOTFIX)
        held.release()
        worker.join(30)
    finally:
        fly.close()
    error = outcome.get("error")
    assert isinstance(error, TargetChanged), outcome
    assert f"on that machine (rolled back earlier in this attempt: {ids[0]})" in str(error)
    assert [machine(emulator, i)["config"]["image"] for i in ids] == [GOOD, HOTFIX, BAD]
    assert all(emulator.lease(SEED_APP, i) is None for i in ids)


def test_a_write_refused_on_the_version_is_a_write_conflict(
        emulator: FlyEmulator, ids: list[str], clock: FlyClock) -> None:
    """The bot's lease expires while its update is on the wire; someone else leases and
    deploys; the update then arrives with a stale current_version: 409, WriteConflict."""
    fly = make_platform(emulator, timeout=5.0)
    try:
        current, pinned = plan(fly)
        held = emulator.hold("POST", f"/machines/{ids[0]}")
        outcome: dict[str, Any] = {}

        def attempt() -> None:
            try:
                fly.rollback_to(TARGET, pinned, expected=current)
            except Exception as exc:  # noqa: BLE001
                outcome["error"] = exc

        worker = threading.Thread(target=attempt)
        worker.start()
        assert held.arrived.wait(10)
        clock.now += 301  # past the bot's lease ttl (300 s)
        Deployer(emulator).deploy(ids[:1], HOTFIX)
        held.release()
        worker.join(30)
    finally:
        fly.close()
    error = outcome.get("error")
    assert isinstance(error, WriteConflict), outcome
    assert "version mismatch" in str(error) and "HTTP 409" in str(error)
    assert machine(emulator, ids[0])["config"]["image"] == HOTFIX


def test_a_lease_held_by_someone_else_is_a_write_conflict_for_rollback_and_scale(
        emulator: FlyEmulator, fly: FlyPlatform, ids: list[str], clock: FlyClock) -> None:
    current, pinned = plan(fly)
    emulator.hold_lease(SEED_APP, ids[-1], ttl=60, owner="deployer@example.com")
    with pytest.raises(WriteConflict, match="lease currently held by deployer@example.com"):
        fly.scale(TARGET, 0)  # the highest id is stopped first
    assert machine(emulator, ids[-1])["state"] == "started"
    emulator.hold_lease(SEED_APP, ids[0], ttl=60, owner="deployer@example.com")
    with pytest.raises(WriteConflict, match="lease currently held"):
        fly.rollback_to(TARGET, pinned, expected=current)
    assert fly_updates(emulator) == []
    clock.now += 61
    assert fly.rollback_to(TARGET, pinned, expected=current).changed


def test_scale_decides_under_the_lease_and_sends_no_redundant_stop(
        emulator: FlyEmulator, fly: FlyPlatform, ids: list[str]) -> None:
    httpx.post(f"{emulator.url}/v1/apps/{SEED_APP}/machines/{ids[-1]}/stop", headers=AUTH)
    fly.scale(TARGET, 0)
    stops = [r for r in emulator.requests if r.path.endswith("/stop")]
    assert [r.path.split("/")[5] for r in stops] == [ids[-1], ids[1], ids[0]]
    assert all(r.nonce for r in stops[1:])
    assert fly.wait_for_stopped(TARGET, timeout=10).done


# --------------------------------------------------------------------- throttling
@pytest.mark.parametrize("retry_after", ["7", "date"])
def test_throttled_update_is_transient_with_retry_after_and_the_lease_released(
        emulator: FlyEmulator, fly: FlyPlatform, ids: list[str], retry_after: str) -> None:
    current, pinned = plan(fly)
    header = retry_after if retry_after != "date" else email.utils.formatdate(
        time.time() + 30, usegmt=True)
    emulator.fail_next("POST", f"/machines/{ids[0]}", 429, retry_after=header)
    with pytest.raises(TransientPlatformError, match="HTTP 429") as info:
        fly.rollback_to(TARGET, pinned, expected=current)
    assert not isinstance(info.value, WriteConflict)
    assert info.value.retry_after is not None
    if retry_after == "7":
        assert info.value.retry_after == 7.0
    else:
        assert 20 < info.value.retry_after <= 30
    assert machine(emulator, ids[0])["config"]["image"] == BAD
    assert emulator.lease(SEED_APP, ids[0]) is None
    emulator.fail_next("POST", f"/machines/{ids[0]}/lease", 429, retry_after="3")
    with pytest.raises(TransientPlatformError) as info:
        fly.rollback_to(TARGET, pinned, expected=current)
    assert info.value.retry_after == 3.0
    assert fly.rollback_to(TARGET, pinned, expected=current).changed


def test_the_live_api_lease_shape_is_understood(emulator: FlyEmulator, fly: FlyPlatform,
                                                ids: list[str]) -> None:
    """The live API wraps a new lease in {"status", "data"} (fly-go MachineLease) where the
    OpenAPI spec shows it flat: the adapter reads both."""
    from platforms._fly_client import lease_nonce
    assert lease_nonce({"status": "success", "data": {"nonce": "abc"}}) == "abc"
    assert lease_nonce({"nonce": "def", "expires_at": 1}) == "def"
    assert lease_nonce(None) == "" and lease_nonce({"status": "error"}) == ""


# ------------------------------------------------------------------ spec shapes
def test_conflict_bodies_match_the_openapi_error_schema(emulator: FlyEmulator,
                                                        ids: list[str]) -> None:
    spec = fly_spec()
    schema = {"components": spec["components"], "$ref": "#/components/schemas/ErrorResponse"}
    update = spec["paths"]["/apps/{app_name}/machines/{machine_id}"]["post"]
    fields = spec["components"]["schemas"]["UpdateMachineRequest"]["properties"]
    assert update["operationId"] == "Machines_update" and "current_version" in fields
    base = f"{emulator.url}/v1/apps/{SEED_APP}/machines/{ids[0]}"
    current = httpx.get(base, headers=AUTH).json()
    stale = httpx.post(base, headers=AUTH, json={"config": current["config"],
                                                  "current_version": "01STALE"})
    assert stale.status_code == 409
    jsonschema.Draft4Validator(schema).validate(stale.json())
    emulator.hold_lease(SEED_APP, ids[0])
    held = httpx.post(base, headers=AUTH, json={"config": current["config"]})
    assert held.status_code == 409 and "lease currently held by" in held.json()["error"]
    jsonschema.Draft4Validator(schema).validate(held.json())
