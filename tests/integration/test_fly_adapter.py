"""FlyPlatform through the wire (httpx -> Fly emulator): history from the GraphQL releases,
rolling rollback under leases as a new release, idempotency, error mapping, scale and stop,
confirm_running by digest, spec shapes.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import jsonschema
import pytest

from platforms._fly_client import FlyTokens
from platforms.base import (
    Capability,
    ConfigDifference,
    ConfigSnapshot,
    PermanentPlatformError,
    Platform,
    Revision,
    RevisionNotFound,
    RolloutFailed,
    Target,
    TargetNotFound,
    TransientPlatformError,
    Unsupported,
)
from platforms.fly import FlyPlatform
from sandbox.fly import (
    DEFAULT_DEPLOY_TOKEN,
    DEFAULT_MACAROON,
    DEFAULT_TOKEN,
    SEED_APP,
    FlyEmulator,
    seed_hotel_voice_bot,
    seed_image,
)
from tests.support.emulators import FLY_TARGET as TARGET
from tests.support.emulators import FlyClock, fly_emulator_fixture, fly_spec, fly_updates
from tests.support.waiting import reached

GOOD, BAD = seed_image("1.3.0"), seed_image("1.4.0")


@pytest.fixture
def clock() -> FlyClock:
    return FlyClock()


emulator = fly_emulator_fixture(start_delay=0.05)


def make_platform(em: FlyEmulator, token: str | None = DEFAULT_TOKEN,
                  **kwargs: Any) -> FlyPlatform:
    settings: dict[str, Any] = {"check_interval": 0.02, "check_timeout": 0.5,
                                "machine_timeout": 5.0}
    settings.update(kwargs)
    return FlyPlatform(token=token, api_url=em.url, platform_url=em.url, **settings)


@pytest.fixture
def fly(emulator: FlyEmulator) -> Iterator[FlyPlatform]:
    platform = make_platform(emulator)
    yield platform
    platform.close()


# ------------------------------------------------------------------------ history
def test_satisfies_platform_protocol(fly: FlyPlatform) -> None:
    assert isinstance(fly, Platform)
    assert fly.name == "fly"
    assert DEFAULT_TOKEN not in repr(fly)


def test_history_is_the_releases_fly_lists(fly: FlyPlatform) -> None:
    """Numbers are Fly's release versions; v4 (config only) keeps v3's image."""
    history = fly.history(TARGET)
    assert [r.id for r in history] == [seed_image(v) for v in ("1.4.0", "1.3.0", "1.3.0",
                                                                   "1.2.0", "1.1.0")]
    assert [r.number for r in history] == [5, 4, 3, 2, 1]
    assert [r.current for r in history] == [True, False, False, False, False]
    assert history[2].change_cause == "release v3 complete: Release by ops@hotel.example"
    assert all("@sha256:" in r.id and r.created is not None for r in history)
    assert history[0].created is not None and history[1].created is not None
    assert history[0].created > history[1].created
    current = fly.current_revision(TARGET)
    assert current.id == BAD


# ----------------------------------------------------------------------- rollback
def test_rollback_to_pinned_previous_image(emulator: FlyEmulator, fly: FlyPlatform) -> None:
    before = {m["id"]: m for m in emulator.machines(SEED_APP)}
    pinned = fly.history(TARGET)[1]
    result = fly.rollback_to(TARGET, pinned)
    assert result.changed and "3 of 3 machines updated" in result.message
    after = emulator.machines(SEED_APP)
    for machine in after:
        assert machine["state"] == "started"
        assert machine["config"]["image"] == GOOD
        assert [c["status"] for c in machine["checks"]] == ["passing"]
        old = before[machine["id"]]["config"]
        assert {k: v for k, v in machine["config"].items() if k not in ("image", "metadata")} \
            == {k: v for k, v in old.items() if k not in ("image", "metadata")}  # kept
        # the machine carries the rollback's release, not the bad one's (flyctl's keys)
        meta = machine["config"]["metadata"]
        assert meta["fly_release_version"] == "6" and meta["fly_release_id"] != \
            old["metadata"]["fly_release_id"]
        assert {k: v for k, v in meta.items() if not k.startswith("fly_release")} == \
            {k: v for k, v in old["metadata"].items() if not k.startswith("fly_release")}
        assert emulator.lease(SEED_APP, machine["id"]) is None
    # every update carried the lease nonce and was awaited for its own instance
    leases = [r for r in emulator.requests if r.method == "POST" and r.path.endswith("/lease")]
    assert len(fly_updates(emulator)) == 3 and all(r.nonce for r in fly_updates(emulator))
    assert {r.nonce for r in fly_updates(emulator)} <= {r.nonce for r in emulator.requests
                                                   if r.method == "DELETE"}
    assert len(leases) == 3
    waits = [r for r in emulator.requests if r.path.endswith("/wait")]
    assert {w.query["instance_id"] for w in waits} == {m["instance_id"] for m in after}
    assert all(w.query["state"] == "started" for w in waits)
    # rolling: machine N+1 is leased only after machine N's lease was released
    order = [(r.method, r.path.split("/")[5]) for r in emulator.requests
             if r.path.endswith("/lease")]
    assert order == [(m, mid) for mid in sorted(before) for m in ("POST", "DELETE")]
    # history: the rollback is Fly's newest release, v6, with the pinned image; v3 and v4
    # (the same image) are no rollback targets any more
    history = fly.history(TARGET)
    assert history[0].id == GOOD and history[0].current and history[0].number == 6
    assert [r.number for r in history] == [6, 5, 2, 1]


def test_second_rollback_is_idempotent(emulator: FlyEmulator, fly: FlyPlatform) -> None:
    pinned = fly.history(TARGET)[1]
    assert fly.rollback_to(TARGET, pinned).changed
    sent, mark = len(fly_updates(emulator)), len(emulator.requests)
    releases = len(emulator.releases(SEED_APP))
    again = fly.rollback_to(TARGET, pinned)
    assert not again.changed and again.message.startswith("skipped")
    assert len(fly_updates(emulator)) == sent
    # read-only: no lease, no release (GraphQL queries are POSTs, never a mutation here)
    assert {(r.method, r.path) for r in emulator.requests[mark:]
            if r.method != "GET"} == {("POST", "/graphql")}
    assert all("mutation" not in str(r.body) for r in emulator.requests[mark:])
    assert len(emulator.releases(SEED_APP)) == releases


def test_dry_run_changes_nothing(emulator: FlyEmulator, fly: FlyPlatform) -> None:
    result = fly.rollback_to(TARGET, fly.history(TARGET)[1], dry_run=True)
    assert not result.changed and "dry run" in result.message
    assert fly_updates(emulator) == []


def test_bad_image_stops_at_first_machine(emulator: FlyEmulator, fly: FlyPlatform) -> None:
    fly.rollback_to(TARGET, fly.history(TARGET)[1])
    bad = next(r for r in fly.history(TARGET) if r.id == BAD)
    first = sorted(m["id"] for m in emulator.machines(SEED_APP))[0]
    with pytest.raises(PermanentPlatformError, match=f"machine {first}.*critical"):
        fly.rollback_to(TARGET, bad)
    images = {m["id"]: m["config"]["image"] for m in emulator.machines(SEED_APP)}
    assert images.pop(first) == BAD and set(images.values()) == {GOOD}
    assert emulator.lease(SEED_APP, first) is None


def test_unknown_revision_is_refused(emulator: FlyEmulator, fly: FlyPlatform) -> None:
    ghost = fly.history(TARGET)[1].__class__(id="registry.fly.io/x:9@sha256:00", number=9)
    with pytest.raises(RevisionNotFound):
        fly.rollback_to(TARGET, ghost)
    assert fly_updates(emulator) == []


def test_lease_conflict_is_transient_until_it_expires(emulator: FlyEmulator, fly: FlyPlatform,
                                                      clock: FlyClock) -> None:
    first = sorted(m["id"] for m in emulator.machines(SEED_APP))[0]
    emulator.hold_lease(SEED_APP, first, ttl=60)
    pinned = fly.history(TARGET)[1]
    with pytest.raises(TransientPlatformError, match="lease currently held"):
        fly.rollback_to(TARGET, pinned)
    assert fly_updates(emulator) == []
    clock.now += 61  # the other holder's lease expires
    assert fly.rollback_to(TARGET, pinned).changed


def test_update_without_nonce_is_rejected_while_leased(emulator: FlyEmulator) -> None:
    machine = emulator.machines(SEED_APP)[0]
    emulator.hold_lease(SEED_APP, machine["id"])
    response = httpx.post(f"{emulator.url}/v1/apps/{SEED_APP}/machines/{machine['id']}",
                          json={"config": machine["config"]},
                          headers={"Authorization": f"Bearer {DEFAULT_TOKEN}"})
    assert response.status_code == 409


# ------------------------------------------------------------------------- errors
def test_unknown_app_is_target_not_found(fly: FlyPlatform) -> None:
    ghost = Target("fly", "hotel", "no-such-app")
    with pytest.raises(TargetNotFound):
        fly.history(ghost)
    with pytest.raises(TargetNotFound):
        fly.get_replicas(ghost)


def test_missing_token_is_permanent(emulator: FlyEmulator) -> None:
    platform = make_platform(emulator, token=None)
    with pytest.raises(PermanentPlatformError, match="401") as info:
        platform.history(TARGET)
    assert not isinstance(info.value, (TargetNotFound, TransientPlatformError))
    wrong = make_platform(emulator, token="not-the-token")
    with pytest.raises(PermanentPlatformError) as info:
        wrong.get_replicas(TARGET)
    assert "not-the-token" not in str(info.value)


def test_throttling_maps_to_transient_with_retry_after(emulator: FlyEmulator,
                                                       fly: FlyPlatform) -> None:
    emulator.fail_next("GET", f"/apps/{SEED_APP}/machines", 429, retry_after="7")
    with pytest.raises(TransientPlatformError) as info:
        fly.get_replicas(TARGET)
    assert info.value.retry_after == 7.0
    emulator.fail_next("GET", f"/apps/{SEED_APP}/machines", 503)
    with pytest.raises(TransientPlatformError):
        fly.get_replicas(TARGET)
    assert fly.get_replicas(TARGET) == 3


def test_unreachable_api_is_transient(emulator: FlyEmulator) -> None:
    url = emulator.url
    emulator.stop()
    platform = FlyPlatform(token=DEFAULT_TOKEN, api_url=url, request_timeout=2.0)
    with pytest.raises(TransientPlatformError):
        platform.get_replicas(TARGET)


# ------------------------------------------------------------- rollout and scale
def test_wait_for_rollout_reports_progress(emulator: FlyEmulator, fly: FlyPlatform) -> None:
    status = fly.rollout_status(TARGET)
    assert not status.done and status.message.startswith("0 of 3 machines on image")
    pinned = fly.history(TARGET)[1]
    worker = threading.Thread(target=fly.rollback_to, args=(TARGET, pinned))
    worker.start()
    worker.join()
    seen: list[str] = []
    final = fly.wait_for_rollout(TARGET, timeout=10, on_progress=seen.append)
    assert final.done and final.message.startswith(f"3 of 3 machines on image {GOOD}")
    assert seen == [final.message]


def test_wait_for_rollout_times_out_on_failing_checks(fly: FlyPlatform) -> None:
    seen: list[str] = []
    status = fly.wait_for_rollout(TARGET, timeout=0.2, on_progress=seen.append)
    assert not status.done and "timed out" in status.message
    assert "critical" in seen[0]


def test_scale_to_zero_and_back(emulator: FlyEmulator, fly: FlyPlatform) -> None:
    assert fly.get_replicas(TARGET) == 3
    fly.scale(TARGET, 0)
    assert fly.get_replicas(TARGET) == 0
    assert fly.wait_for_stopped(TARGET, timeout=10).done
    assert {m["state"] for m in emulator.machines(SEED_APP)} == {"stopped"}
    fly.scale(TARGET, 2)
    assert fly.get_replicas(TARGET) == 2
    fly.scale(TARGET, 3)
    assert fly.get_replicas(TARGET) == 3
    with pytest.raises(PermanentPlatformError, match="only 3 machines"):
        fly.scale(TARGET, 4)
    assert all(emulator.lease(SEED_APP, m["id"]) is None for m in emulator.machines(SEED_APP))


def auth() -> dict[str, str]:
    return {"Authorization": f"Bearer {DEFAULT_TOKEN}"}


def test_scale_to_zero_returns_before_the_machines_have_stopped_and_wait_blocks(
        emulator: FlyEmulator, fly: FlyPlatform) -> None:
    emulator.set_stop_delay(3.0)
    started = time.monotonic()
    fly.scale(TARGET, 0)
    assert time.monotonic() - started < 1.5  # stops are accepted, not awaited
    assert {m["state"] for m in emulator.machines(SEED_APP)} == {"stopping"}
    assert all(r.nonce for r in emulator.requests
               if r.method == "POST" and r.path.endswith("/stop"))  # each under its lease
    lines: list[str] = []
    # the API's wait takes whole seconds, so this waits 1 s server-side, then gives up
    status = fly.wait_for_stopped(TARGET, timeout=0.5, on_progress=lines.append)
    assert not status.done and not status.failed and "timed out after 0.5s" in status.message
    assert lines[0].startswith(f"3 machines of app {SEED_APP} still running: machine ")
    assert lines[0].count("stopping") == 3
    lines.clear()
    status = fly.wait_for_stopped(TARGET, timeout=10, on_progress=lines.append)
    assert status.done, status.message
    assert status.message == f"every machine of app {SEED_APP} is down (3 stopped)"
    assert lines[-1] == status.message
    assert {m["state"] for m in emulator.machines(SEED_APP)} == {"stopped"}
    waits = [r for r in emulator.requests if r.path.endswith("/wait")]
    assert waits and {w.query["state"] for w in waits} == {"stopped"}
    assert time.monotonic() - started >= 3.0


def test_wait_for_stopped_sees_a_machine_started_again(emulator: FlyEmulator,
                                                      fly: FlyPlatform) -> None:
    fly.scale(TARGET, 0)
    assert fly.wait_for_stopped(TARGET, timeout=10).done
    woken = sorted(m["id"] for m in emulator.machines(SEED_APP))[0]
    # as the Fly proxy does for a machine with services.autostart on incoming traffic
    httpx.post(f"{emulator.url}/v1/apps/{SEED_APP}/machines/{woken}/start", headers=auth())
    started = time.monotonic()
    status = fly.wait_for_stopped(TARGET, timeout=0.5)
    assert not status.done and time.monotonic() - started < 5
    assert f"1 machine of app {SEED_APP} still running: machine {woken}" in status.message
    assert status.message.endswith("started")


def test_confirm_running_lists_a_machine_left_on_another_image(
        emulator: FlyEmulator, fly: FlyPlatform) -> None:
    pinned = fly.history(TARGET)[1]
    assert pinned.id == GOOD
    before = fly.confirm_running(TARGET, pinned)
    assert not before.matches and before.running.startswith(f"{BAD}: ")
    assert fly.rollback_to(TARGET, pinned).changed
    check = fly.confirm_running(TARGET, pinned)
    assert check.matches, check.detail
    ids = sorted(m["id"] for m in emulator.machines(SEED_APP))
    assert check.running == f"{GOOD}: " + ", ".join(f"{i} started" for i in ids)
    # someone redeploys the bad image to the last machine by hand
    last = next(m for m in emulator.machines(SEED_APP) if m["id"] == ids[-1])
    response = httpx.post(f"{emulator.url}/v1/apps/{SEED_APP}/machines/{ids[-1]}",
                          json={"config": {**last["config"], "image": BAD}}, headers=auth())
    assert response.status_code == 200
    check = fly.confirm_running(TARGET, pinned)
    assert not check.matches
    assert f"{GOOD}: {ids[0]} " in check.running and f"{BAD}: {ids[-1]} " in check.running
    assert f"machine {ids[-1]} (hotel-voice-bot-3) runs {BAD}" in check.detail


def test_confirm_running_compares_digests_not_tags(emulator: FlyEmulator,
                                                   fly: FlyPlatform) -> None:
    pinned = fly.history(TARGET)[1]
    assert fly.rollback_to(TARGET, pinned).changed
    machine = sorted(emulator.machines(SEED_APP), key=lambda m: m["id"])[0]
    tag_only = GOOD.split("@", 1)[0]  # same tag: the registry resolves it to GOOD's digest
    httpx.post(f"{emulator.url}/v1/apps/{SEED_APP}/machines/{machine['id']}",
               json={"config": {**machine["config"], "image": tag_only}}, headers=auth())
    # not "updating" any more
    assert reached(lambda: not fly.confirm_running(TARGET, pinned).detail, 5, 0.02)
    check = fly.confirm_running(TARGET, pinned)
    assert check.matches, check.detail
    assert f"{tag_only} (resolved {GOOD.split('@', 1)[1]}): {machine['id']} started" \
        in check.running
    other = BAD.split("@", 1)[0]  # a tag that resolves to another digest
    httpx.post(f"{emulator.url}/v1/apps/{SEED_APP}/machines/{machine['id']}",
               json={"config": {**machine["config"], "image": other}}, headers=auth())
    check = fly.confirm_running(TARGET, pinned)
    assert not check.matches and f"machine {machine['id']}" in check.detail


def test_stopped_machine_is_updated_without_launch(emulator: FlyEmulator,
                                                   fly: FlyPlatform) -> None:
    """Fly leaves a stopped machine updated with skip_launch ``created`` (machine states)."""
    fly.scale(TARGET, 2)
    assert reached(lambda: "stopped" in {m["state"] for m in emulator.machines(SEED_APP)},
                   5, 0.02)
    fly.rollback_to(TARGET, fly.history(TARGET)[1])
    machines = emulator.machines(SEED_APP)
    assert {m["config"]["image"] for m in machines} == {GOOD}
    assert sorted(m["state"] for m in machines) == ["created", "started", "started"]
    assert [r.body.get("skip_launch") for r in fly_updates(emulator)].count(True) == 1
    assert fly.get_replicas(TARGET) == 2
    fly.scale(TARGET, 3)  # a created machine is idle: scaling up starts it
    assert sorted(m["state"] for m in emulator.machines(SEED_APP)) == ["started"] * 3


def test_unsupported_surfaces(fly: FlyPlatform) -> None:
    with pytest.raises(Unsupported, match="write-only") as err:
        fly.snapshot_config(TARGET)
    assert (err.value.platform, err.value.capability) == ("fly", Capability.CONFIG_SNAPSHOTS)
    with pytest.raises(Unsupported):
        fly.restore_config(TARGET, ConfigSnapshot(items={}))


# ---------------------------------------------------------------- spec conformance
def test_emulator_responses_match_the_openapi_schemas(emulator: FlyEmulator) -> None:
    spec = fly_spec()

    def validate(instance: Any, schema_name: str, many: bool = False) -> None:
        ref = {"$ref": f"#/components/schemas/{schema_name}"}
        schema = {"components": spec["components"],
                  **({"type": "array", "items": ref} if many else ref)}
        jsonschema.Draft4Validator(schema).validate(instance)

    auth = {"Authorization": f"Bearer {DEFAULT_TOKEN}"}
    base = f"{emulator.url}/v1/apps/{SEED_APP}"
    with httpx.Client(headers=auth) as client:
        machines = client.get(f"{base}/machines").json()
        validate(machines, "Machine", many=True)
        mid = machines[0]["id"]
        validate(client.get(f"{base}/machines/{mid}").json(), "Machine")
        validate(client.get(f"{base}/machines/{mid}/versions").json(), "MachineVersion",
                 many=True)
        validate(client.get(base).json(), "App")
        lease = client.post(f"{base}/machines/{mid}/lease", json={"ttl": 30}).json()
        validate(lease, "Lease")
        validate(client.get(f"{base}/machines/nope").json(), "ErrorResponse")
        response = client.get(f"{base}/machines/{mid}/wait",
                              params={"state": "stopped", "timeout": 1})
        assert response.status_code == 408
        validate(response.json(), "ErrorResponse")
        # StopRequest {signal, timeout}: the machine is "stopping", then "stopped"
        emulator.set_stop_delay(0.3)
        stop = client.post(f"{base}/machines/{mid}/stop", json={"signal": "SIGINT",
                                                                 "timeout": "10s"},
                           headers={"fly-machine-lease-nonce": lease["nonce"]})
        assert stop.status_code == 200
        stopping = client.get(f"{base}/machines/{mid}").json()
        validate(stopping, "Machine")
        assert stopping["state"] == "stopping"
        response = client.get(f"{base}/machines/{mid}/wait",
                              params={"state": "stopped", "timeout": 5})
        assert response.status_code == 200
        assert client.get(f"{base}/machines/{mid}").json()["state"] == "stopped"
        other = machines[1]["id"]  # a StopRequest timeout shorter than the shutdown wins
        client.post(f"{base}/machines/{other}/stop", json={"timeout": "0s"})
        assert client.get(f"{base}/machines/{other}").json()["state"] == "stopped"
        assert client.get(f"{base}/machines/{mid}/wait",
                          params={"state": "bogus"}).status_code == 400


def test_rollback_waits_for_checks_to_pass(clock: FlyClock) -> None:
    """Checks report ``warning`` for a while after start; the roll polls until passing."""
    with FlyEmulator(start_delay=0.02, check_delay=0.15, clock=clock) as em:
        seed_hotel_voice_bot(em, machines=2)
        platform = make_platform(em, check_timeout=5.0)
        try:
            assert platform.rollback_to(TARGET, platform.history(TARGET)[1]).changed
            reads = [r for r in em.requests if r.method == "GET" and r.path.count("/") == 5
                     and "/machines/" in r.path]
            assert len(reads) > 4  # one pre-update read per machine + repeated check polls
            assert platform.rollout_status(TARGET).done
        finally:
            platform.close()


# ------------------------------------------------------------- releases (GraphQL)
# What `fly releases` runs (superfly/fly-go resource_releases.go GetAppReleasesMachines).
FLY_RELEASES = """query($appName: String!, $limit: Int!) { app(name: $appName) {
  releases: releasesUnprocessed(first: $limit) { nodes { id version description reason status
  imageRef stable user { id email name } createdAt } } } }"""


def fly_releases(em: FlyEmulator) -> list[dict[str, Any]]:
    response = httpx.post(f"{em.url}/graphql", headers=auth(), json={
        "query": FLY_RELEASES, "variables": {"appName": SEED_APP, "limit": 25}})
    assert response.status_code == 200 and "errors" not in response.json(), response.text
    return list(response.json()["data"]["app"]["releases"]["nodes"])


def by_number(fly: FlyPlatform, number: int) -> Revision:
    return next(r for r in fly.history(TARGET) if r.number == number)


def test_rollback_to_release_n_across_a_config_only_release(emulator: FlyEmulator,
                                                            fly: FlyPlatform) -> None:
    """``--to 3`` is Fly's v3 (1.3.0) although v4, a config-only release, sits between."""
    assert [(r["version"], r["imageRef"]) for r in fly_releases(emulator)][:3] == \
        [(5, BAD), (4, GOOD), (3, GOOD)]
    pinned = by_number(fly, 3)
    assert (pinned.id, pinned.number) == (GOOD, 3)
    expected = fly.current_revision(TARGET)
    mark = len(emulator.requests)
    assert fly.rollback_to(TARGET, pinned, expected=expected).changed
    assert _reads(emulator, mark)[1] == 1  # the machines are listed once per rollback
    newest = fly_releases(emulator)[0]
    assert (newest["version"], newest["status"], newest["imageRef"]) == (6, "complete", GOOD)
    assert {m["config"]["metadata"]["fly_release_version"]
            for m in emulator.machines(SEED_APP)} == {"6"}
    # the release was recorded before the first machine was touched and finished after
    # the last one, as flyctl's machines deploy does
    order = [("mutation" in str(r.body) and "CreateRelease" in str(r.body), r.path)
             for r in emulator.requests if r.method == "POST"]
    first_write = next(i for i, (_, path) in enumerate(order) if path.endswith("/lease"))
    assert any(created for created, _ in order[:first_write])
    statuses = [r.body["variables"]["input"]["status"] for r in emulator.requests
                if r.method == "POST" and "UpdateRelease" in str(r.body)]
    assert statuses == ["running", "complete"]
    assert fly.current_revision(TARGET).number == 6


def test_a_failed_release_is_shown_but_never_offered(emulator: FlyEmulator,
                                                     fly: FlyPlatform) -> None:
    """A deploy that failed (flyctl marks its release failed) is no rollback target."""
    with emulator.state.cond:  # v6 failed; v5 still runs on every machine
        emulator.state.add_release(SEED_APP, seed_image("1.2.0"), status="failed",
                                   description="Release", user_email="ops@hotel.example",
                                   definition={"app": SEED_APP})
    history = fly.history(TARGET)
    assert 6 not in [r.number for r in history] and history[0].number == 5
    detail = fly.describe_revision(TARGET, 6)
    assert ("Status", "failed") in detail.fields
    assert ("Rollback target", "no (status failed, only complete releases are offered)") \
        in detail.fields
    assert "Image: " + seed_image("1.2.0") in detail.text
    with pytest.raises(RevisionNotFound, match="v9"):
        fly.describe_revision(TARGET, 9)


def _reads(em: FlyEmulator, since: int) -> tuple[int, int]:
    """(GraphQL requests, machine-list requests) since request ``since``."""
    return (sum(1 for r in em.requests[since:] if r.path == "/graphql"),
            sum(1 for r in em.requests[since:]
                if r.method == "GET" and r.path == f"/v1/apps/{SEED_APP}/machines"))


def test_describe_revision_is_the_release(emulator: FlyEmulator, fly: FlyPlatform) -> None:
    mark = len(emulator.requests)
    detail = fly.describe_revision(TARGET, 4)
    assert _reads(emulator, mark) == (1, 1)  # the releases and the machines, read once
    labels = dict(detail.fields)
    assert labels["Release"] == "v4" and labels["Status"] == "complete"
    assert labels["Image"] == GOOD and labels["User"] == "ops@hotel.example"
    assert labels["Description"] == "Release" and labels["Created"].endswith("UTC")
    assert detail.revision.number == 4 and not detail.revision.current
    assert dict(fly.describe_revision(TARGET, 5).fields)["Running"] == "yes (current)"


# ------------------------------------------------------------------- machine states
def test_a_scaled_down_app_is_created_after_the_rollback_and_started_again(
        emulator: FlyEmulator, fly: FlyPlatform) -> None:
    fly.scale(TARGET, 0)
    assert fly.wait_for_stopped(TARGET, timeout=10).done
    assert fly.rollback_to(TARGET, by_number(fly, 3)).changed
    machines = emulator.machines(SEED_APP)
    assert {m["state"] for m in machines} == {"created"}  # updated, not launched
    assert {m["config"]["image"] for m in machines} == {GOOD}
    assert fly.get_replicas(TARGET) == 0
    fly.scale(TARGET, 3)  # the scale-up step: created machines are idle, so they start
    assert {m["state"] for m in emulator.machines(SEED_APP)} == {"started"}
    assert fly.wait_for_rollout(TARGET, timeout=10).done
    assert fly.confirm_running(TARGET, by_number(fly, 6)).matches


@pytest.mark.parametrize(("mark", "state"), [("crashing", "failed"),
                                             ("unlaunchable", "launch_failed")])
def test_failed_machine_states_fail_the_rollout(emulator: FlyEmulator, fly: FlyPlatform,
                                                mark: str, state: str) -> None:
    getattr(emulator, f"mark_{mark}")(GOOD)
    first = sorted(m["id"] for m in emulator.machines(SEED_APP))[0]
    started = time.monotonic()
    with pytest.raises(RolloutFailed, match=f"machine {first}.*{state}"):
        fly.rollback_to(TARGET, by_number(fly, 3))
    assert time.monotonic() - started < 4  # seen at once, not at the machine timeout
    status = fly.rollout_status(TARGET)
    assert status.failed and f"is {state}" in status.message
    assert fly.wait_for_rollout(TARGET, timeout=5).failed
    newest = fly_releases(emulator)[0]
    assert (newest["version"], newest["status"]) == (6, "failed")
    assert [m["config"]["image"] for m in sorted(emulator.machines(SEED_APP),
                                                   key=lambda m: m["id"])] == [GOOD, BAD, BAD]


def test_a_machine_restarting_for_good_times_out_the_rollback(
        emulator: FlyEmulator, fly: FlyPlatform) -> None:
    """Restart policy "always": a crashing machine never settles (never ``failed``), so the
    rollback stops at the machine timeout instead."""
    emulator.mark_crashing(GOOD)
    first = sorted(m["id"] for m in emulator.machines(SEED_APP))[0]
    with emulator.state.cond:
        emulator.state.machine(SEED_APP, first).config["restart"] = {"policy": "always"}
    fly_short = make_platform(emulator, machine_timeout=1.5)
    try:
        with pytest.raises(PermanentPlatformError, match="not started after 1.5s"):
            fly_short.rollback_to(TARGET, by_number(fly_short, 3))
    finally:
        fly_short.close()
    assert next(m for m in emulator.machines(SEED_APP) if m["id"] == first)["state"] == \
        "replacing"  # still being launched, restart after restart


# ------------------------------------------------------------------------- tokens
def test_tokens_are_parsed_as_flyctl_parses_them() -> None:
    """superfly/fly-go tokens/tokens.go: scheme stripped, comma-split, macaroons as FlyV1."""
    deploy = FlyTokens.parse("FlyV1 fm2_abc, fm2_def")
    assert deploy.header() == "FlyV1 fm2_abc,fm2_def"
    assert FlyTokens.parse("bearer flyv1 fm2_abc").header() == "FlyV1 fm2_abc"
    mixed = FlyTokens.parse("fm1r_ro,personal")
    assert mixed.header() == "FlyV1 fm1r_ro"  # Machines API, logs, metrics: macaroons only
    assert mixed.header(with_user_tokens=True) == "FlyV1 fm1r_ro,personal"  # GraphQL: all
    assert FlyTokens.parse("Bearer personal").header() == "Bearer personal"
    assert FlyTokens.parse("").header() is None


def test_a_deploy_token_is_sent_as_flyv1_and_a_personal_token_as_bearer(
        emulator: FlyEmulator) -> None:
    deploy = make_platform(emulator, token=DEFAULT_DEPLOY_TOKEN)
    try:
        assert deploy.rollback_to(TARGET, by_number(deploy, 3)).changed
        deploy.logs_tail(TARGET, lines=5)
        deploy.resource_usage(TARGET)
    finally:
        deploy.close()
    assert {r.auth_scheme for r in emulator.requests} == {"FlyV1"}
    assert fly_releases(emulator)[0]["user"]["email"] == "deploy-token@hotel.example"
    mark = len(emulator.requests)
    personal = make_platform(emulator, token=DEFAULT_TOKEN)
    try:
        assert personal.history(TARGET)[0].number == 6
    finally:
        personal.close()
    assert {r.auth_scheme for r in emulator.requests[mark:]} == {"Bearer"}
    # a personal token pasted with a FlyV1 scheme is still a personal token (tokens.go)
    pasted = make_platform(emulator, token=f"FlyV1 {DEFAULT_TOKEN}")
    try:
        mark = len(emulator.requests)
        assert pasted.get_replicas(TARGET) == 3
        assert {r.auth_scheme for r in emulator.requests[mark:]} == {"Bearer"}
    finally:
        pasted.close()
    # a macaroon that is not the org's, a personal token that is not known: 401
    for token in ("FlyV1 fm2_someone-elses", "someone-elses-token"):
        wrong = make_platform(emulator, token=token)
        try:
            with pytest.raises(PermanentPlatformError, match="401") as info:
                wrong.history(TARGET)
            assert DEFAULT_MACAROON not in str(info.value)
        finally:
            wrong.close()


# ---------------------------------------------------------------- request bodies
def test_an_invalid_request_body_is_a_clear_permanent_error(emulator: FlyEmulator,
                                                            fly: FlyPlatform) -> None:
    """The API decodes the body into its request type: a wrong type is a 400, which stops
    the rollback with the API's words (not retried), and the release is marked failed."""
    first = sorted(m["id"] for m in emulator.machines(SEED_APP))[0]
    with emulator.state.cond:  # a config field in a shape the API does not accept
        emulator.state.machine(SEED_APP, first).config["guest"]["cpus"] = "1"
    with pytest.raises(PermanentPlatformError) as info:
        fly.rollback_to(TARGET, by_number(fly, 3))
    assert not isinstance(info.value, TransientPlatformError)
    assert f"rollback stopped at machine {first}" in str(info.value)
    assert "cannot unmarshal string into Go struct field UpdateMachineRequest.config.guest." \
           "cpus of type int (HTTP 400)" in str(info.value)
    assert fly_releases(emulator)[0]["status"] == "failed"
    assert {m["config"]["image"] for m in emulator.machines(SEED_APP)} == {BAD}


# ------------------------------------------------------------- logs, usage, config
def test_logs_tail_reads_fly_logs_api(emulator: FlyEmulator, fly: FlyPlatform) -> None:
    text = fly.logs_tail(TARGET, lines=3)
    lines = text.splitlines()
    assert len(lines) == 3 and all("hotel-voice-bot" not in line for line in lines)
    assert lines[-1].endswith("[error] GET /health 503 Service Unavailable")
    assert fly.rollback_to(TARGET, by_number(fly, 3)).changed
    with emulator.state.cond:  # a chatty app: more than one page of the logs API
        machine = next(iter(emulator.state.app(SEED_APP).machines.values()))
        for n in range(250):
            emulator.state.log(machine, f"request {n} served")
    after = fly.logs_tail(TARGET, lines=500)
    assert f"Pulling container image {GOOD}" in after and "Machine started" in after
    assert after.splitlines()[-1].endswith("[info] request 249 served")
    assert len(after.splitlines()) > 250
    pages = [r for r in emulator.requests if r.path.endswith("/logs")]
    assert any(r.query.get("next_token") not in (None, "", "0") for r in pages)


def test_resource_usage_from_the_org_prometheus(emulator: FlyEmulator,
                                                fly: FlyPlatform) -> None:
    usage = fly.resource_usage(TARGET)
    ids = sorted(m["id"] for m in emulator.machines(SEED_APP))
    assert [u.unit for u in usage] == [f"machine {i}" for i in ids]
    assert all(u.cpu_millicores == 600.0 and u.memory_mib == 435.2 for u in usage)  # bad
    queries = [r for r in emulator.requests if r.path == "/prometheus/hotel/api/v1/query"]
    assert any("fly_instance_cpu" in r.query["query"] for r in queries)
    fly.scale(TARGET, 1)  # two machines stop
    assert reached(lambda: len(fly.resource_usage(TARGET)) == 1, 10, 0.05)  # stopped: no series


def test_config_differences_between_releases(emulator: FlyEmulator,
                                             fly: FlyPlatform) -> None:
    running, pinned = fly.current_revision(TARGET), by_number(fly, 3)
    mark = len(emulator.requests)
    differences = fly.config_differences(TARGET, running, pinned)
    assert _reads(emulator, mark)[1] == 0  # the releases say it all; no machine list
    kept = "fly.toml (kept by the rollback)"
    assert ConfigDifference(kept, "env.LOG_LEVEL", "debug", "info") in differences
    assert ConfigDifference(kept, "env.FEATURE_NEW_ASR", "on", None) in differences
    secrets = [d for d in differences if d.kind.startswith("secret")]
    assert [d.key for d in secrets] == ["WAHA_API_KEY"]  # set after v3; DATABASE_URL before
    assert secrets[0].running is not None and secrets[0].running.startswith("digest ")
    assert "waha_api_key-seed" not in str(differences)  # never a value
    assert fly.config_differences(TARGET, running, running) == []
    assert fly.config_differences(TARGET, by_number(fly, 4), pinned) == [
        ConfigDifference(kept, "env.LOG_LEVEL", "debug", "info"),
        *secrets]


def test_missing_series_is_unknown_usage_not_zero(emulator: FlyEmulator,
                                                  fly: FlyPlatform) -> None:
    """A machine with CPU but no memory series (a scrape gap) has no usage to compare with a
    limit; zero would pass any limit."""
    first = sorted(m["id"] for m in emulator.machines(SEED_APP))[0]
    emulator.drop_series(first, "fly_instance_memory_mem_available")
    with pytest.raises(Unsupported, match=f"machine {first} \\(no memory series") as info:
        fly.resource_usage(TARGET)
    assert info.value.capability is Capability.RESOURCE_USAGE


# ----------------------------------------------------------- crashed apps, retries
def _crash(emulator: FlyEmulator, count: int) -> list[str]:
    """The bad image crash-loops ``count`` machines into ``failed`` (restart policy "no",
    relaunched through the API as a restart would); returns their ids."""
    emulator.mark_crashing(BAD)
    machines = sorted(emulator.machines(SEED_APP), key=lambda m: m["id"])[:count]
    for machine in machines:
        response = httpx.post(f"{emulator.url}/v1/apps/{SEED_APP}/machines/{machine['id']}",
                              json={"config": {**machine["config"],
                                               "restart": {"policy": "no"}}},
                              headers=auth())
        assert response.status_code == 200, response.text
    ids = [m["id"] for m in machines]
    assert reached(lambda: all(m["state"] == "failed" for m in emulator.machines(SEED_APP)
                               if m["id"] in ids), 5, 0.02)
    return ids


@pytest.mark.parametrize("crashed", [3, 1])
def test_a_rollback_relaunches_machines_the_bad_release_crashed(
        emulator: FlyEmulator, fly: FlyPlatform, crashed: int) -> None:
    """Machines the bad release left ``failed`` are updated *and launched* (flyctl's
    shouldSkipLaunch launches failed machines), not left ``created``: the rollback restores
    the app's capacity, and confirm_running agrees."""
    _crash(emulator, crashed)
    pinned = by_number(fly, 3)
    mark = len(emulator.requests)
    result = fly.rollback_to(TARGET, pinned)
    assert result.changed and "3 of 3 machines updated" in result.message
    machines = emulator.machines(SEED_APP)
    assert [(m["state"], m["config"]["image"]) for m in machines] == [("started", GOOD)] * 3
    assert not any(r.body.get("skip_launch") for r in fly_updates(emulator)[crashed:])
    waits = [r for r in emulator.requests[mark:] if r.path.endswith("/wait")]
    assert {r.path.split("/")[5] for r in waits} == {m["id"] for m in machines}  # all awaited
    check = fly.confirm_running(TARGET, by_number(fly, 6))
    assert check.matches, check.detail
    assert fly_releases(emulator)[0]["status"] == "complete"


def _machine_writes(emulator: FlyEmulator, since: int, machine_id: str) -> list[str]:
    """Restarting or updating requests for one machine since request ``since``."""
    base = f"/v1/apps/{SEED_APP}/machines/{machine_id}"
    return [f"{r.method} {r.path}" for r in emulator.requests[since:]
            if r.method == "POST" and r.path in (base, base + "/start", base + "/stop")]


def test_a_retry_resumes_its_release_and_restarts_no_rolled_machine(
        emulator: FlyEmulator, fly: FlyPlatform) -> None:
    """A transient failure on the 2nd machine leaves the release ``running``; the retry
    reuses it, leaves the machine already rolled alone and finishes it: one release."""
    ids = sorted(m["id"] for m in emulator.machines(SEED_APP))
    pinned = by_number(fly, 3)
    emulator.fail_next("POST", f"/machines/{ids[1]}", 503)
    with pytest.raises(TransientPlatformError, match="503"):
        fly.rollback_to(TARGET, pinned)
    assert [(r["version"], r["status"]) for r in fly_releases(emulator)][:2] == \
        [(6, "running"), (5, "complete")]
    first = next(m for m in emulator.machines(SEED_APP) if m["id"] == ids[0])
    mark = len(emulator.requests)
    result = fly.rollback_to(TARGET, pinned)  # the retry, same pinned revision
    assert result.changed and "resumed release v6" in result.message
    assert _machine_writes(emulator, mark, ids[0]) == []  # not updated, not restarted
    after = next(m for m in emulator.machines(SEED_APP) if m["id"] == ids[0])
    assert after["instance_id"] == first["instance_id"]
    assert [(r["version"], r["status"]) for r in fly_releases(emulator)][:2] == \
        [(6, "complete"), (5, "complete")]
    assert {(m["config"]["image"], m["config"]["metadata"]["fly_release_version"], m["state"])
            for m in emulator.machines(SEED_APP)} == {(GOOD, "6", "started")}


def test_someone_elses_unfinished_release_of_the_same_image_is_not_resumed(
        emulator: FlyEmulator, fly: FlyPlatform) -> None:
    """A human's `fly deploy --image` of the pinned image in flight (its release pending,
    the newest) is not ours: the rollback creates its own release and leaves theirs alone."""
    app = httpx.post(f"{emulator.url}/graphql", headers=auth(), json={
        "query": "query($n: String!) { app(name: $n) { id } }", "variables": {"n": SEED_APP}})
    created = httpx.post(f"{emulator.url}/graphql", headers=auth(), json={
        "query": "mutation($input: CreateReleaseInput!) { createRelease(input: $input) "
                 "{ release { id version } } }",
        "variables": {"input": {"appId": app.json()["data"]["app"]["id"], "image": GOOD,
                                "definition": {"app": SEED_APP},
                                "platformVersion": "machines", "strategy": "ROLLING"}}})
    assert created.status_code == 200 and "errors" not in created.json(), created.text
    theirs = created.json()["data"]["createRelease"]["release"]
    assert fly_releases(emulator)[0]["id"] == theirs["id"]
    result = fly.rollback_to(TARGET, by_number(fly, 3))
    assert result.changed and "resumed" not in result.message
    mine = fly_releases(emulator)[0]
    assert mine["version"] == theirs["version"] + 1 and mine["status"] == "complete"
    assert next(r for r in fly_releases(emulator) if r["id"] == theirs["id"])["status"] \
        == "pending"
    assert not any(r.method == "POST" and "UpdateRelease" in str(r.body)
                   and r.body["variables"]["input"]["releaseId"] == theirs["id"]
                   for r in emulator.requests)
    assert {m["config"]["metadata"]["fly_release_version"]
            for m in emulator.machines(SEED_APP)} == {str(mine["version"])}


def test_a_new_attempt_stamps_a_rolled_machine_without_restarting_it(
        emulator: FlyEmulator, fly: FlyPlatform) -> None:
    """After a permanent failure (release v6 failed), a new attempt is release v7: the
    machine v6 already rolled gets v7's stamp through the metadata endpoint - same version,
    never restarted."""
    ids = sorted(m["id"] for m in emulator.machines(SEED_APP))
    pinned = by_number(fly, 3)
    emulator.fail_next("POST", f"/machines/{ids[1]}", 400)
    with pytest.raises(PermanentPlatformError):
        fly.rollback_to(TARGET, pinned)
    first = next(m for m in emulator.machines(SEED_APP) if m["id"] == ids[0])
    mark = len(emulator.requests)
    assert fly.rollback_to(TARGET, pinned).changed
    assert _machine_writes(emulator, mark, ids[0]) == []
    after = next(m for m in emulator.machines(SEED_APP) if m["id"] == ids[0])
    assert after["instance_id"] == first["instance_id"] and after["state"] == "started"
    assert after["config"]["metadata"]["fly_release_version"] == "7"
    assert [(r["version"], r["status"]) for r in fly_releases(emulator)][:2] == \
        [(7, "complete"), (6, "failed")]


def test_a_finished_roll_is_not_failed_by_the_release_status(emulator: FlyEmulator,
                                                             fly: FlyPlatform) -> None:
    """Marking the release complete fails after every machine rolled: the rollback succeeds
    and says so; the next attempt marks the release, with no new release or write."""
    ids = sorted(m["id"] for m in emulator.machines(SEED_APP))
    pinned = by_number(fly, 3)
    # the request after the last machine's lease release is updateRelease(complete)
    held = emulator.hold("DELETE", f"/machines/{ids[2]}/lease")
    outcome: dict[str, Any] = {}
    worker = threading.Thread(target=lambda: outcome.update(
        result=fly.rollback_to(TARGET, pinned)))
    worker.start()
    assert held.arrived.wait(10)
    emulator.fail_next("POST", "/graphql", 503)
    held.release()
    worker.join(20)
    result = outcome["result"]
    assert result.changed and "3 of 3 machines updated" in result.message
    assert "release v6 could not be marked complete" in result.message
    assert fly_releases(emulator)[0]["status"] == "running"
    mark = len(emulator.requests)
    again = fly.rollback_to(TARGET, pinned)
    assert "resumed release v6" in again.message
    assert fly_updates(emulator)[3:] == [] and not any(
        _machine_writes(emulator, mark, i) for i in ids)
    assert [(r["version"], r["status"]) for r in fly_releases(emulator)][:1] == \
        [(6, "complete")]


def test_throttled_waits_do_not_abort_the_roll(emulator: FlyEmulator,
                                               fly: FlyPlatform) -> None:
    """A 429 on the ``wait`` polls is waited out (Retry-After), not a failure mid-roll."""
    emulator.fail_next("GET", "/wait", 429, times=3, retry_after="0")
    result = fly.rollback_to(TARGET, by_number(fly, 3))
    assert result.changed and "3 of 3 machines updated" in result.message
    throttled = [r for r in emulator.requests if r.path.endswith("/wait")]
    assert len(throttled) > 3  # the three refused polls were repeated
    assert fly_releases(emulator)[0]["status"] == "complete"


def test_throttled_health_polls_do_not_abort_the_roll(emulator: FlyEmulator,
                                                      fly: FlyPlatform) -> None:
    """A 429 on the health-check reads after an update is waited out too."""
    first = sorted(m["id"] for m in emulator.machines(SEED_APP))[0]
    held = emulator.hold("POST", f"/machines/{first}")
    outcome: dict[str, Any] = {}
    worker = threading.Thread(target=lambda: outcome.update(
        result=fly.rollback_to(TARGET, by_number(fly, 3))))
    worker.start()
    assert held.arrived.wait(10)
    # the reads of the machine after its update are the health polls
    emulator.fail_next("GET", f"/machines/{first}", 429, times=2, retry_after="0")
    held.release()
    worker.join(20)
    assert "3 of 3 machines updated" in outcome["result"].message
    reads = [r for r in emulator.requests if r.method == "GET"
             and r.path == f"/v1/apps/{SEED_APP}/machines/{first}"]
    assert len(reads) >= 4  # before the update, two throttled, one answered


def test_history_comes_from_api_fly_io_whatever_the_machines_url() -> None:
    """Fly's internal Machines endpoint serves no GraphQL: without ``platform_url`` the
    releases are asked of api.fly.io (seen at the transport, answered 401)."""
    hosts: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        hosts.append(f"{request.url.scheme}://{request.url.host}{request.url.path}")
        return httpx.Response(401, json={"error": "unauthorized"})

    platform = FlyPlatform(token=DEFAULT_TOKEN, api_url="http://_api.internal:4280",
                           transport=httpx.MockTransport(answer))
    try:
        with pytest.raises(PermanentPlatformError):
            platform.history(TARGET)
    finally:
        platform.close()
    assert hosts == ["https://api.fly.io/graphql"]


def test_config_differences_mask_nested_values_and_commands(emulator: FlyEmulator,
                                                            fly: FlyPlatform) -> None:
    """fly.toml sections other than env (build args, process commands, the release command)
    are masked value by value and word by word: no literal credential reaches Slack."""
    pinned = by_number(fly, 3)
    db_url = "postgres://app:s3cr3t-pw@db.internal:5432/app"
    token = "fm2_" + "A" * 24
    definition = {
        **fly_definition(emulator, 3),
        "build": {"args": {"NPM_TOKEN": "npm-literal-token", "NODE_ENV": "production"}},
        "processes": {"app": f"bin/server --db-password=hunter2 --api-token {token} --port 8080"},
        "deploy": {"release_command": f"bin/migrate DATABASE_URL={db_url}"},
        "experimental": {"cmd": ["bin/worker", "--secret", "w-literal", "--verbose"]},
    }
    created = httpx.post(f"{emulator.url}/graphql", headers=auth(), json={
        "query": CREATE_RELEASE, "variables": {"input": {
            "appId": emulator.state.app(SEED_APP).id, "image": BAD, "definition": definition,
            "platformVersion": "machines", "strategy": "ROLLING"}}}).json()
    version = created["data"]["createRelease"]["release"]["version"]
    running = fly.describe_revision(TARGET, version).revision
    differences = {d.key: d for d in fly.config_differences(TARGET, running, pinned)}
    text = str(differences)
    for literal in ("npm-literal-token", "hunter2", token, "s3cr3t-pw", "w-literal"):
        assert literal not in text, literal
    assert '"NODE_ENV":"production"' in str(differences["build"].running)  # not a secret
    assert "--port 8080" in str(differences["processes"].running)
    assert "bin/migrate DATABASE_URL=<hidden, sha256:" in str(differences["deploy"].running)
    assert differences["build"].pinned is None


CREATE_RELEASE = """mutation CreateRelease ($input: CreateReleaseInput!) {
  createRelease(input: $input) { release { id version } } }"""


def fly_definition(em: FlyEmulator, version: int) -> dict[str, Any]:
    with em.state.cond:
        release = next(r for r in em.state.app(SEED_APP).releases if r.version == version)
        return dict(release.definition or {})


def test_a_retry_awaits_a_machine_its_late_update_is_still_launching() -> None:
    """The update an attempt gave up on lands late; the retry finds the machine on the image
    but still ``replacing``: it is awaited (not updated again), not reported done."""
    with FlyEmulator(start_delay=0.6) as em:
        [only] = seed_hotel_voice_bot(em, machines=1)
        platform = make_platform(em, request_timeout=0.3)
        try:
            pinned = by_number(platform, 3)
            held = em.hold("POST", f"/machines/{only}")
            with pytest.raises(TransientPlatformError, match="may still apply it"):
                platform.rollback_to(TARGET, pinned)
            held.release()
            assert held.done.wait(10) and held.status == 200
            sent = len(fly_updates(em))
            result = platform.rollback_to(TARGET, pinned)
            assert "resumed release v6: 0 of 1 machines updated" in result.message
            assert len(fly_updates(em)) == sent  # not updated (restarted) again
            assert em.machines(SEED_APP)[0]["state"] == "started"
            assert fly_releases(em)[0]["status"] == "complete"
        finally:
            platform.close()
