"""The Fly emulator on its own, through the wire (httpx): GraphQL releases as flyctl reads and
writes them, token schemes, request-body decoding, machine states and restart policy, logs
paging and the org Prometheus. The oracle here is Fly's schema, docs and clients, not our
adapter.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from sandbox.fly import (
    DEFAULT_DEPLOY_TOKEN,
    DEFAULT_MACAROON,
    DEFAULT_TOKEN,
    SEED_APP,
    FlyEmulator,
    seed_hotel_voice_bot,
    seed_image,
)
from tests.support.emulators import fly_spec
from tests.support.waiting import reached

BEARER = {"Authorization": f"Bearer {DEFAULT_TOKEN}"}
GOOD, BAD = seed_image("1.3.0"), seed_image("1.4.0")


@pytest.fixture
def em() -> Iterator[FlyEmulator]:
    with FlyEmulator(start_delay=0.02) as emulator:
        seed_hotel_voice_bot(emulator)
        yield emulator


@pytest.fixture
def http(em: FlyEmulator) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=em.url, headers=BEARER, timeout=10) as client:
        yield client


def gql(http: httpx.Client, query: str, **variables: Any) -> dict[str, Any]:
    response = http.post("/graphql", json={"query": query, "variables": variables})
    assert response.status_code == 200, response.text  # GraphQL errors come with a 200
    return dict(response.json())


def machines(http: httpx.Client) -> list[dict[str, Any]]:
    return sorted(http.get(f"/v1/apps/{SEED_APP}/machines").json(), key=lambda m: m["id"])


# ------------------------------------------------------------------------ GraphQL
RELEASES = """query($appName: String!, $limit: Int!) { app(name: $appName) {
  releases: releasesUnprocessed(first: $limit) { nodes { id version description reason status
  imageRef stable user { id email name } createdAt } } } }"""


def test_releases_as_fly_releases_reads_them(http: httpx.Client) -> None:
    nodes = gql(http, RELEASES, appName=SEED_APP, limit=25)["data"]["app"]["releases"]["nodes"]
    assert [(n["version"], n["imageRef"], n["status"]) for n in nodes] == [
        (5, BAD, "complete"), (4, GOOD, "complete"), (3, GOOD, "complete"),
        (2, seed_image("1.2.0"), "complete"), (1, seed_image("1.1.0"), "complete")]
    assert nodes[0]["user"]["email"] == "ops@hotel.example" and nodes[0]["stable"]
    assert nodes[0]["createdAt"] > nodes[1]["createdAt"]
    two = gql(http, RELEASES, appName=SEED_APP, limit=2)["data"]["app"]["releases"]["nodes"]
    assert [n["version"] for n in two] == [5, 4]


def test_graphql_fails_as_graphql_does(http: httpx.Client) -> None:
    missing = gql(http, RELEASES, appName="no-such-app", limit=5)
    assert missing["data"] == {"app": None}
    assert missing["errors"][0]["extensions"]["code"] == "NOT_FOUND"
    assert "Could not find App" in missing["errors"][0]["message"]
    unknown = gql(http, '{ app(name: "hotel-voice-bot") { releases { nodes { id } } } }')
    assert unknown["data"] is None
    assert "Cannot query field 'releases' on type 'App'" in unknown["errors"][0]["message"]


CREATE = """mutation CreateRelease ($input: CreateReleaseInput!) {
  createRelease(input: $input) { release { id version } } }"""
UPDATE = """mutation UpdateRelease ($input: UpdateReleaseInput!) {
  updateRelease(input: $input) { release { id } } }"""


def test_create_and_update_release_as_a_machines_deploy_does(http: httpx.Client) -> None:
    app_id = gql(http, '{ app(name: "hotel-voice-bot") { id } }')["data"]["app"]["id"]
    created = gql(http, CREATE, input={
        "appId": app_id, "image": GOOD, "definition": {"app": SEED_APP},
        "platformVersion": "machines", "strategy": "ROLLING"})
    release = created["data"]["createRelease"]["release"]
    assert release["version"] == 6
    newest = gql(http, RELEASES, appName=SEED_APP, limit=1)["data"]["app"]["releases"]
    assert newest["nodes"][0]["status"] == "pending"
    for status in ("running", "complete"):
        answer = gql(http, UPDATE, input={"releaseId": release["id"], "status": status})
        assert "errors" not in answer
    newest = gql(http, RELEASES, appName=SEED_APP, limit=1)["data"]["app"]["releases"]
    assert newest["nodes"][0]["status"] == "complete"
    bad = gql(http, UPDATE, input={"releaseId": release["id"], "status": "done"})
    assert "invalid release status" in bad["errors"][0]["message"]
    # a required input field missing is a validation error, nothing created
    partial = gql(http, CREATE, input={"appId": app_id, "image": GOOD})
    assert partial["errors"] and partial.get("data") is None
    newest = gql(http, RELEASES, appName=SEED_APP, limit=1)["data"]["app"]["releases"]
    assert newest["nodes"][0]["version"] == 6


def test_secrets_are_names_and_digests_only(http: httpx.Client) -> None:
    secrets = gql(http, '{ app(name: "hotel-voice-bot") { secrets { name digest '
                        'createdAt } } }')["data"]["app"]["secrets"]
    assert [s["name"] for s in secrets] == ["DATABASE_URL", "WAHA_API_KEY"]
    assert all(len(s["digest"]) == 16 for s in secrets)
    value = gql(http, '{ app(name: "hotel-voice-bot") { secrets { value } } }')
    assert "Cannot query field 'value'" in value["errors"][0]["message"]


# ------------------------------------------------------------------------- tokens
@pytest.mark.parametrize(("header", "status"), [
    (f"Bearer {DEFAULT_TOKEN}", 200),
    (DEFAULT_DEPLOY_TOKEN, 200),  # FlyV1 with the macaroon and a discharge token
    (f"FlyV1 {DEFAULT_MACAROON}", 200),
    (f"FlyV1 {DEFAULT_TOKEN}", 401),  # FlyV1 carries macaroons only
    (f"Token {DEFAULT_TOKEN}", 401),
    ("FlyV1 fm2_not-this-orgs", 401),
    (None, 401),
])
def test_token_schemes(em: FlyEmulator, header: str | None, status: int) -> None:
    headers = {"Authorization": header} if header else {}
    for path in (f"/v1/apps/{SEED_APP}/machines", f"/api/v1/apps/{SEED_APP}/logs"):
        response = httpx.get(em.url + path, headers=headers)
        assert response.status_code == status, (path, response.text)
    schemes = {r.auth_scheme for r in em.requests}
    assert schemes == {header.split(" ", 1)[0] if header else None}
    assert all(DEFAULT_MACAROON not in str(r) and DEFAULT_TOKEN not in str(r)
               for r in em.requests)  # the log keeps the scheme, never the token


# ---------------------------------------------------------------- request bodies
def test_request_bodies_are_decoded_against_the_openapi_schemas(em: FlyEmulator,
                                                                http: httpx.Client) -> None:
    fly_spec()  # the spec must be there (fails under CI, skipped elsewhere)
    assert em.schemas.origin.endswith("fly-machines-openapi.yaml")
    machine = machines(http)[0]
    base = f"/v1/apps/{SEED_APP}/machines/{machine['id']}"
    config = machine["config"]
    for body, error in (
            ({"config": {**config, "guest": {**config["guest"], "memory_mb": "512"}}},
             "cannot unmarshal string into Go struct field "
             "UpdateMachineRequest.config.guest.memory_mb of type int"),
            ({"config": {**config, "env": {"PORT": 8080}}},
             "cannot unmarshal number into Go struct field UpdateMachineRequest.config.env.PORT"
             " of type string"),
            ({"config": config, "skip_launch": "yes"},
             "cannot unmarshal string into Go struct field UpdateMachineRequest.skip_launch "
             "of type bool"),
            ({"config": {**config, "services": {"internal_port": 8080}}},
             "cannot unmarshal object into Go struct field "
             "UpdateMachineRequest.config.services of type []")):
        response = http.post(base, json=body)
        assert response.status_code == 400, response.text
        assert response.json()["error"] == f"json: {error}"
    lease = http.post(base + "/lease", json={"ttl": "30"})
    assert lease.status_code == 400 and "CreateLeaseRequest.ttl" in lease.json()["error"]
    stop = http.post(base + "/stop", json={"timeout": 10})  # StopRequest.timeout: string
    assert stop.status_code == 400 and "StopRequest.timeout" in stop.json()["error"]
    assert machines(http)[0]["instance_id"] == machine["instance_id"]  # nothing changed
    # unknown fields are ignored, as Go's encoding/json ignores them
    ok = http.post(base, json={"config": config, "not_a_field": True})
    assert ok.status_code == 200


def test_without_the_spec_an_embedded_schema_validates(tmp_path: Any) -> None:
    with FlyEmulator(spec_path=str(tmp_path / "absent.yaml")) as em:
        seed_hotel_voice_bot(em, machines=1)
        assert em.schemas.origin.startswith("embedded minimal schema")
        with httpx.Client(base_url=em.url, headers=BEARER) as http:
            machine = machines(http)[0]
            response = http.post(f"/v1/apps/{SEED_APP}/machines/{machine['id']}",
                                 json={"config": {**machine["config"], "image": 42}})
            assert response.status_code == 400
            assert "UpdateMachineRequest.config.image of type string" in response.text


# ---------------------------------------------------------------- machine states
def test_updating_a_stopped_machine_leaves_it_created_until_started(
        http: httpx.Client) -> None:
    machine = machines(http)[0]
    base = f"/v1/apps/{SEED_APP}/machines/{machine['id']}"
    assert http.post(base + "/stop").status_code == 200
    assert http.get(base + "/wait", params={"state": "stopped", "timeout": 5}).status_code == 200
    response = http.post(base, json={"config": {**machine["config"], "image": GOOD},
                                     "skip_launch": True})
    assert response.status_code == 200 and response.json()["state"] == "created"
    assert http.post(base + "/start").status_code == 200
    assert http.get(base + "/wait", params={"state": "started", "timeout": 5}).status_code == 200
    events = http.get(base).json()["events"]
    assert events[0]["type"] == "start" and events[0]["status"] == "started"


def test_an_update_launches_through_replacing(http: httpx.Client) -> None:
    machine = machines(http)[1]
    base = f"/v1/apps/{SEED_APP}/machines/{machine['id']}"
    response = http.post(base, json={"config": {**machine["config"], "image": GOOD}})
    assert response.json()["state"] == "replacing"
    assert reached(lambda: http.get(base).json()["state"] == "started", 5, 0.02)


@pytest.mark.parametrize(("restart", "starts"), [({"policy": "no"}, 1),
                                                 ({"policy": "on-failure", "max_retries": 3},
                                                  4)])
def test_a_crashing_image_follows_the_restart_policy(em: FlyEmulator, http: httpx.Client,
                                                     restart: dict[str, Any],
                                                     starts: int) -> None:
    """Each retry is one more start, then ``failed``; a ``started`` wait never succeeds."""
    em.mark_crashing(GOOD)
    em.state.start_delay = 0.1  # one start attempt
    machine = machines(http)[0]
    base = f"/v1/apps/{SEED_APP}/machines/{machine['id']}"
    config = {**machine["config"], "image": GOOD, "restart": restart}
    mark = len(machine["events"])
    http.post(base, json={"config": config})
    assert reached(lambda: http.get(base).json()["state"] == "failed", 5, 0.01)
    events = http.get(base).json()["events"]  # newest first
    new = events[:len(events) - mark]
    # every restart took one more start, and flyd records each attempt's start and exit
    assert sum(1 for e in new if e["type"] == "exit") == starts
    assert sum(1 for e in new if (e["type"], e["status"]) == ("start", "started")) == starts
    assert (new[0]["type"], new[0]["status"]) == ("exit", "failed")
    wait = http.get(base + "/wait", params={"state": "started", "timeout": 1})
    assert wait.status_code == 408
    logs = http.get(f"/api/v1/apps/{SEED_APP}/logs", params={"instance": machine["id"]})
    messages = [d["attributes"]["message"] for d in logs.json()["data"]]
    assert "machine has reached its max restart count" in messages


def test_an_image_the_registry_cannot_serve_is_launch_failed(em: FlyEmulator,
                                                             http: httpx.Client) -> None:
    em.mark_unlaunchable(GOOD)
    machine = machines(http)[2]
    base = f"/v1/apps/{SEED_APP}/machines/{machine['id']}"
    http.post(base, json={"config": {**machine["config"], "image": GOOD}})
    assert reached(lambda: http.get(base).json()["state"] == "launch_failed", 5, 0.01)
    # a machine that could not launch starts again once asked (with a servable image)
    http.post(base, json={"config": {**machine["config"], "image": BAD}})
    assert reached(lambda: http.get(base).json()["state"] == "started", 5, 0.01)


def test_metadata_is_set_in_place_without_a_new_version(http: httpx.Client) -> None:
    """Machines_update_metadata: 204, the key in the config, same instance, no restart."""
    machine = machines(http)[0]
    base = f"/v1/apps/{SEED_APP}/machines/{machine['id']}"
    response = http.post(base + "/metadata/fly_release_version", json={"value": "9"})
    assert response.status_code == 204 and response.content == b""
    after = http.get(base).json()
    assert after["config"]["metadata"]["fly_release_version"] == "9"
    assert (after["instance_id"], after["state"]) == (machine["instance_id"], "started")
    assert http.post(base + "/metadata/k", json={}).status_code == 400
    assert http.delete(base + "/metadata/fly_release_version").status_code == 204
    assert "fly_release_version" not in http.get(base).json()["config"]["metadata"]


# ------------------------------------------------------------------ logs, metrics
def test_logs_page_with_next_token_and_filter_by_instance(em: FlyEmulator,
                                                          http: httpx.Client) -> None:
    first_id = machines(http)[0]["id"]
    with em.state.cond:
        machine = em.state.machine(SEED_APP, first_id)
        for n in range(150):
            em.state.log(machine, f"line {n}")
    first = http.get(f"/api/v1/apps/{SEED_APP}/logs").json()
    assert len(first["data"]) == 100
    entry = first["data"][0]
    assert set(entry["attributes"]) >= {"timestamp", "message", "level", "instance", "region",
                                        "meta"}
    second = http.get(f"/api/v1/apps/{SEED_APP}/logs",
                      params={"next_token": first["meta"]["next_token"]}).json()
    assert second["data"] and second["data"][-1]["attributes"]["message"] == "line 149"
    done = http.get(f"/api/v1/apps/{SEED_APP}/logs",
                    params={"next_token": second["meta"]["next_token"]}).json()
    assert done["data"] == [] and done["meta"]["next_token"] == second["meta"]["next_token"]
    only = http.get(f"/api/v1/apps/{SEED_APP}/logs",
                    params={"instance": machine.id}).json()["data"]
    assert {d["attributes"]["instance"] for d in only} == {machine.id}
    assert http.get("/api/v1/apps/nope/logs").status_code == 404


def test_prometheus_serves_the_instance_metrics(http: httpx.Client) -> None:
    def query(expr: str) -> httpx.Response:
        return http.get("/prometheus/hotel/api/v1/query", params={"query": expr})

    cpu = query('sum by (instance) (rate(fly_instance_cpu{app="hotel-voice-bot",'
                'mode!="idle"}[1m]))').json()
    assert cpu["status"] == "success" and cpu["data"]["resultType"] == "vector"
    assert {r["metric"]["instance"] for r in cpu["data"]["result"]} == \
        {m["id"] for m in machines(http)}
    assert {r["value"][1] for r in cpu["data"]["result"]} == {"60"}  # 0.6 CPU: bad image
    total = query('fly_instance_memory_mem_total{app="hotel-voice-bot"}').json()
    assert {r["value"][1] for r in total["data"]["result"]} == {str(512 * 2**20)}
    assert query('fly_instance_cpu{app="hotel-voice-bot"}').status_code == 400  # a counter
    broken = query("sum(")
    assert broken.status_code == 400 and broken.json()["errorType"] == "bad_data"
    other = query('fly_instance_memory_mem_total{app="hotel-voice-bot"}'.replace("hotel",
                                                                                  "x"))
    assert other.json()["data"]["result"] == []
    elsewhere = http.get("/prometheus/other-org/api/v1/query",
                         params={"query": "fly_instance_memory_mem_total"})
    assert elsewhere.json()["data"]["result"] == []  # another org's Prometheus
