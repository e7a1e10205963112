"""ECS service deployments through the wire (boto3 -> the ECS emulator): the emulator's
ListServiceDeployments / DescribeServiceDeployments / DescribeServiceRevisions (window,
pages, limits, states, circuit-breaker rollback), and the adapter's ``Revision.ran`` built
from them, so the planner's "previous" never returns to a revision that never ran.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from botocore.exceptions import ClientError

from bot.domain.planner import choose_revision
from platforms._ecs_deployments import deployment_record
from platforms.ecs import EcsPlatform
from sandbox.ecs import EcsEmulator, Seeded, task_definition
from tests.support.emulators import ecs_emulator_fixture, ecs_target
from tests.support.waiting import wait_until

emulator = ecs_emulator_fixture(step_interval=0.05)


def fresh(emulator: EcsEmulator, **seed: Any) -> tuple[Seeded, Any]:
    emulator.reset()
    return emulator.seed_hotel_voice_bot(**seed), emulator.client()


def listed(client: Any, seeded: Seeded, **kwargs: Any) -> list[dict[str, Any]]:
    return list(client.list_service_deployments(
        cluster=seeded.cluster, service=seeded.service, **kwargs)["serviceDeployments"])


def task_definitions_of(client: Any, briefs: list[dict[str, Any]]) -> list[str]:
    arns = [b["targetServiceRevisionArn"] for b in briefs]
    revisions = client.describe_service_revisions(serviceRevisionArns=arns)["serviceRevisions"]
    by_arn = {r["serviceRevisionArn"]: r["taskDefinition"] for r in revisions}
    return [by_arn[a] for a in arns]


def deploy(client: Any, seeded: Seeded, arn: str) -> None:
    client.update_service(cluster=seeded.cluster, service=seeded.service, taskDefinition=arn)


# ------------------------------------------------------------------- the emulator
def test_each_deployment_is_listed_newest_first_with_its_revision_and_sources(
        emulator: EcsEmulator) -> None:
    """v1 (CreateService), v2 and v4 were deployed; v3 only registered."""
    seeded, client = fresh(emulator, revisions=4, never_deployed={3})
    briefs = listed(client, seeded)
    assert [b["status"] for b in briefs] == ["SUCCESSFUL"] * 3
    assert task_definitions_of(client, briefs) == [seeded.arns[3], seeded.arns[1], seeded.arns[0]]
    created = [b["createdAt"] for b in briefs]
    assert created == sorted(created, reverse=True)
    assert all(b["finishedAt"] >= b["startedAt"] for b in briefs)
    full = client.describe_service_deployments(
        serviceDeploymentArns=[b["serviceDeploymentArn"] for b in briefs])
    assert full["failures"] == []
    newest, _, first = full["serviceDeployments"]
    assert [s["arn"] for s in newest["sourceServiceRevisions"]] == [
        briefs[1]["targetServiceRevisionArn"]]  # v2 ran when v4 was deployed
    assert first["sourceServiceRevisions"] == []  # CreateService: nothing ran before
    assert newest["targetServiceRevision"]["runningTaskCount"] == seeded.desired_count
    assert newest["serviceArn"].endswith(f":service/{seeded.cluster}/{seeded.service}")
    assert ":service-deployment/production/hotel-voice-bot/" in newest["serviceDeploymentArn"]


def test_pages_default_to_20_and_take_at_most_100(emulator: EcsEmulator) -> None:
    seeded, client = fresh(emulator, revisions=23)
    first = client.list_service_deployments(cluster=seeded.cluster, service=seeded.service)
    assert len(first["serviceDeployments"]) == 20 and first["nextToken"]
    rest = client.list_service_deployments(cluster=seeded.cluster, service=seeded.service,
                                           nextToken=first["nextToken"])
    assert len(rest["serviceDeployments"]) == 3 and "nextToken" not in rest
    arns = [d["serviceDeploymentArn"] for d in first["serviceDeployments"]
            + rest["serviceDeployments"]]
    assert len(set(arns)) == 23
    small = client.list_service_deployments(cluster=seeded.cluster, service=seeded.service,
                                            maxResults=22)
    assert len(small["serviceDeployments"]) == 22
    for bad in (0, 101):
        with pytest.raises(ClientError) as refused:
            client.list_service_deployments(cluster=seeded.cluster, service=seeded.service,
                                            maxResults=bad)
        assert refused.value.response["Error"]["Code"] == "InvalidParameterException"
    with pytest.raises(ClientError) as too_many:
        client.describe_service_deployments(serviceDeploymentArns=arns[:21])
    assert too_many.value.response["Error"]["Code"] == "InvalidParameterException"


def test_filters_errors_and_unknown_arns(emulator: EcsEmulator) -> None:
    seeded, client = fresh(emulator, revisions=2)
    assert listed(client, seeded, status=["STOPPED"]) == []
    assert len(listed(client, seeded, status=["SUCCESSFUL"])) == 2
    newest = listed(client, seeded)[0]
    assert listed(client, seeded, createdAt={"after": newest["createdAt"]}) == []
    assert len(listed(client, seeded, createdAt={"before": newest["createdAt"]})) == 1
    for kwargs, code in (({"cluster": seeded.cluster, "service": "nope"},
                          "ServiceNotFoundException"),
                         ({"cluster": "nope", "service": seeded.service},
                          "ClusterNotFoundException")):
        with pytest.raises(ClientError) as refused:
            client.list_service_deployments(**kwargs)
        assert refused.value.response["Error"]["Code"] == code
    ghost = newest["targetServiceRevisionArn"][:-3] + "000"
    answer = client.describe_service_revisions(serviceRevisionArns=[ghost])
    assert answer["serviceRevisions"] == [] and answer["failures"] == [
        {"arn": ghost, "reason": "MISSING"}]


def test_deployments_older_than_90_days_leave_the_listing(emulator: EcsEmulator) -> None:
    seeded, client = fresh(emulator, revisions=2)
    briefs = listed(client, seeded)
    emulator.advance_clock(timedelta(days=89))
    assert len(listed(client, seeded)) == 2
    emulator.advance_clock(timedelta(days=2))
    assert listed(client, seeded) == []
    old = briefs[0]["serviceDeploymentArn"]
    assert client.describe_service_deployments(serviceDeploymentArns=[old])["failures"] == [
        {"arn": old, "reason": "MISSING"}]
    # the revision running now stays describable
    revision = client.describe_service_revisions(
        serviceRevisionArns=[briefs[0]["targetServiceRevisionArn"]])["serviceRevisions"]
    assert revision[0]["taskDefinition"] == seeded.arns[1]


def test_a_deployment_replaced_while_in_progress_is_stopped(emulator: EcsEmulator) -> None:
    seeded, client = fresh(emulator, revisions=3, never_deployed={2, 3})
    emulator.simulator.pause()
    deploy(client, seeded, seeded.arns[1])
    assert listed(client, seeded)[0]["status"] == "IN_PROGRESS"
    deploy(client, seeded, seeded.arns[2])
    newest, replaced, _ = listed(client, seeded)
    assert (newest["status"], replaced["status"]) == ("IN_PROGRESS", "STOPPED")
    emulator.simulator.resume()
    wait_until(lambda: listed(client, seeded)[0]["status"] == "SUCCESSFUL", 20,
               message="the newest deployment to succeed")


def test_circuit_breaker_states_with_and_without_rollback(emulator: EcsEmulator) -> None:
    seeded, client = fresh(emulator, revisions=3, never_deployed={3}, circuit_breaker=(True, True))
    emulator.fail_task_definition(seeded.arns[2])
    deploy(client, seeded, seeded.arns[2])
    wait_until(lambda: listed(client, seeded)[0]["status"] == "ROLLBACK_SUCCESSFUL", 30,
               message="the circuit breaker's rollback to succeed")
    failed, previous = listed(client, seeded)[:2]
    detail = client.describe_service_deployments(
        serviceDeploymentArns=[failed["serviceDeploymentArn"]])["serviceDeployments"][0]
    assert detail["rollback"]["serviceRevisionArn"] == previous["targetServiceRevisionArn"]
    assert detail["statusReason"].startswith("ECS deployment circuit breaker")
    assert detail["deploymentCircuitBreaker"]["status"] == "TRIGGERED"
    assert detail["deploymentCircuitBreaker"]["threshold"] == 3

    seeded, client = fresh(emulator, revisions=3, never_deployed={3},
                           circuit_breaker=(True, False))
    emulator.fail_task_definition(seeded.arns[2])
    deploy(client, seeded, seeded.arns[2])
    stopped = wait_until(lambda: next((b for b in listed(client, seeded)
                                       if b["status"] == "STOPPED"), None), 30,
                         message="the failed deployment to stop")
    assert "rollback" not in client.describe_service_deployments(
        serviceDeploymentArns=[stopped["serviceDeploymentArn"]])["serviceDeployments"][0]


def test_a_rollback_whose_target_fails_too_is_rollback_failed(emulator: EcsEmulator) -> None:
    """v3 fails, the breaker rolls back to v2, whose new tasks fail as well (with
    minimumHealthyPercent 0 v3's rollout stopped v2's running ones): the v3 deployment ends
    ROLLBACK_FAILED and v2's own SUCCESSFUL record stays as it was."""
    seeded, client = fresh(emulator, revisions=3, never_deployed={3}, circuit_breaker=(True, True))
    client.update_service(cluster=seeded.cluster, service=seeded.service,
                          deploymentConfiguration={
                              "maximumPercent": 200, "minimumHealthyPercent": 0,
                              "deploymentCircuitBreaker": {"enable": True, "rollback": True}})
    before = {b["serviceDeploymentArn"]: b for b in listed(client, seeded)}
    emulator.fail_task_definition(seeded.arns[2])
    emulator.fail_task_definition(seeded.arns[1])
    deploy(client, seeded, seeded.arns[2])
    failed = wait_until(lambda: next((b for b in listed(client, seeded)
                                      if b["status"] == "ROLLBACK_FAILED"), None), 30,
                        message="the circuit breaker's rollback to fail")
    assert failed["serviceDeploymentArn"] not in before
    assert task_definitions_of(client, [failed]) == [seeded.arns[2]]
    assert failed["finishedAt"] >= failed["startedAt"]
    after = {b["serviceDeploymentArn"]: b for b in listed(client, seeded)}
    assert {arn: after[arn] for arn in before} == before  # v1 and v2 untouched
    assert [b["status"] for b in listed(client, seeded)] == [
        "ROLLBACK_FAILED", "SUCCESSFUL", "SUCCESSFUL"]


# --------------------------------------------------------------------- the adapter
def test_history_tells_never_deployed_revisions_and_previous_skips_them(
        emulator: EcsEmulator) -> None:
    """v3 was registered by a pipeline that failed before deploying it: "previous" is v2,
    the one that ran before v4; `--to 3` is still possible, flagged."""
    seeded, client = fresh(emulator, revisions=4, never_deployed={3})
    target = ecs_target(seeded, emulator, endpoint_url=True)
    emulator.wire.forget_calls()
    history = EcsPlatform(client=client).history(target)
    ran = {r.number: r.ran for r in history}
    assert ran == {4: True, 3: False, 2: True, 1: True}
    never = next(r for r in history if r.number == 3)
    assert "never deployed to this service" in (never.change_cause or "")
    assert choose_revision(history, None).target.id == seeded.arns[1]
    assert choose_revision(history, 3).never_deployed
    # one listing, one describe of the oldest deployment, one batch of revisions
    assert [len(emulator.calls(op)) for op in ("ListServiceDeployments",
                                               "DescribeServiceDeployments",
                                               "DescribeServiceRevisions")] == [1, 1, 1]


@pytest.mark.parametrize(("operation", "code"), [
    ("ListServiceDeployments", "AccessDeniedException"),
    ("ListServiceDeployments", "UnknownOperationException"),
    ("ListServiceDeployments", "InvalidAction"),
    ("ListServiceDeployments", "UnsupportedFeatureException"),
    ("DescribeServiceRevisions", "AccessDeniedException")])
def test_without_the_api_history_works_as_before(emulator: EcsEmulator, operation: str,
                                                 code: str) -> None:
    """No IAM permission, or an endpoint that predates the API: nobody can tell, so ran is
    None for every revision and "previous" is v3, as it was before the API existed."""
    seeded, client = fresh(emulator, revisions=4, never_deployed={3})
    target = ecs_target(seeded, emulator, endpoint_url=True)
    emulator.refuse_next(operation, code=code, message="not for you")
    history = EcsPlatform(client=client).history(target)
    assert [(r.number, r.ran) for r in history] == [(4, None), (3, None), (2, None), (1, None)]
    assert (history[1].change_cause or "").endswith("no deployment record retained by ECS")
    assert choose_revision(history, None).target.id == seeded.arns[2]


def test_revisions_older_than_the_window_are_unknown_not_never_run(
        emulator: EcsEmulator) -> None:
    """100 days after v1..v4 (v3 never deployed), v5 is registered and skipped and v6 goes
    out: v6's deployment is the only one ECS still lists; v4 was its source (it ran), v5 is
    known never to have run, v1..v3 predate the window: nobody can tell."""
    seeded, client = fresh(emulator, revisions=4, never_deployed={3})
    emulator.advance_clock(timedelta(days=100))
    arns = [client.register_task_definition(**task_definition(seeded.family, n, emulator.region))
            ["taskDefinition"]["taskDefinitionArn"] for n in (5, 6)]
    deploy(client, seeded, arns[1])
    emulator.simulator.settle()
    target = ecs_target(seeded, emulator, endpoint_url=True)
    later = datetime.now(UTC) + timedelta(days=100)
    history = EcsPlatform(client=client, now=lambda: later).history(target)
    assert {r.number: r.ran for r in history} == {6: True, 5: False, 4: True, 3: None,
                                                  2: None, 1: None}
    assert choose_revision(history, None).target.number == 4


def test_a_listing_cut_short_proves_nothing_older_than_what_it_read(
        emulator: EcsEmulator) -> None:
    """Read one page of two (of five deployments: v1 v2 v3 v4 v6): only back to v4's
    deployment is the record complete. v5 and v1..v2 were registered before that, so they
    may have run in a deployment not read: unknown. v7, registered afterwards and never
    deployed, is known never to have run; v3 ran when v4 went out (a source)."""
    seeded, client = fresh(emulator, revisions=6, never_deployed={5})
    v7 = client.register_task_definition(**task_definition(seeded.family, 7, emulator.region))
    record = deployment_record(client, seeded.cluster, seeded.service, now=datetime.now(UTC),
                               page=2, max_pages=1)
    assert record is not None and record.since is not None
    registered = {n: client.describe_task_definition(taskDefinition=arn)["taskDefinition"]
                  ["registeredAt"] for n, arn in enumerate((*seeded.arns,
                  v7["taskDefinition"]["taskDefinitionArn"]), 1)}
    arns = {n: arn for n, arn in enumerate(seeded.arns, 1)}
    arns[7] = v7["taskDefinition"]["taskDefinitionArn"]
    assert {n: record.ran_on_service(arns[n], registered[n]) for n in arns} == {
        1: None, 2: None, 3: True, 4: True, 5: None, 6: True, 7: False}
    complete = deployment_record(client, seeded.cluster, seeded.service,
                                 now=datetime.now(UTC), page=2)
    assert complete is not None
    assert {n: complete.ran_on_service(arns[n], registered[n]) for n in arns} == {
        1: True, 2: True, 3: True, 4: True, 5: False, 6: True, 7: False}


def test_a_revision_whose_only_deployment_failed_is_never_the_default_target(
        emulator: EcsEmulator) -> None:
    """v3's rollout tripped the circuit breaker, which rolled back to v2; v4 then went out.
    "previous" from v4 is v2, not the failed v3; `--to 3` is possible, flagged."""
    seeded, client = fresh(emulator, revisions=4, never_deployed={3, 4},
                           circuit_breaker=(True, True))
    emulator.fail_task_definition(seeded.arns[2])
    deploy(client, seeded, seeded.arns[2])
    wait_until(lambda: listed(client, seeded)[0]["status"] == "ROLLBACK_SUCCESSFUL", 30,
               message="the circuit breaker's rollback to succeed")
    deploy(client, seeded, seeded.arns[3])
    wait_until(lambda: listed(client, seeded)[0]["status"] == "SUCCESSFUL", 30,
               message="v4's deployment to complete")
    target = ecs_target(seeded, emulator, endpoint_url=True)
    history = EcsPlatform(client=client).history(target)
    assert {r.number: r.ran for r in history} == {4: True, 3: False, 2: True, 1: True}
    failed = next(r for r in history if r.number == 3)
    assert "no deployment of it completed" in (failed.change_cause or "")
    assert choose_revision(history, None).target.id == seeded.arns[1]
    assert choose_revision(history, 3).never_deployed


def test_an_old_revision_whose_only_recent_deployment_failed_is_not_the_default(
        emulator: EcsEmulator) -> None:
    """v3 was registered 100 days ago (before the window) and first deployed now; the
    circuit breaker rolled it back. Its age does not make it "unknown": the window shows its
    deployment failing, so "previous" from v4 is v2."""
    seeded, client = fresh(emulator, revisions=4, never_deployed={3, 4},
                           circuit_breaker=(True, True))
    emulator.advance_clock(timedelta(days=100))
    emulator.fail_task_definition(seeded.arns[2])
    deploy(client, seeded, seeded.arns[2])
    wait_until(lambda: listed(client, seeded)[0]["status"] == "ROLLBACK_SUCCESSFUL", 30,
               message="the circuit breaker's rollback to succeed")
    deploy(client, seeded, seeded.arns[3])
    wait_until(lambda: listed(client, seeded)[0]["status"] == "SUCCESSFUL", 30,
               message="v4's deployment to complete")
    later = datetime.now(UTC) + timedelta(days=100)  # the adapter's calendar moves on too
    history = EcsPlatform(client=client, now=lambda: later).history(
        ecs_target(seeded, emulator, endpoint_url=True))
    assert next(r for r in history if r.number == 3).ran is False
    assert choose_revision(history, None).target.id == seeded.arns[1]
