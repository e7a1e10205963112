"""What EcsPlatform shows besides rollouts, through the wire (boto3 -> moto's ECS, Logs and
CloudWatch on the emulator's port): task logs from the awslogs streams, the service's
CPU/memory from AWS/ECS metrics, the task-definition summary and the configuration
differences (literals masked, secret references as references).
"""

from __future__ import annotations

from typing import Any

import pytest

from platforms.base import (
    Capability,
    ConfigDifference,
    RevisionNotFound,
    Target,
    Unsupported,
    mask_value,
)
from platforms.ecs import EcsPlatform
from sandbox.ecs import EcsEmulator, Seeded
from tests.support.emulators import ecs_emulator_fixture, ecs_target, reseed_ecs
from tests.support.waiting import wait_until

emulator = ecs_emulator_fixture(step_interval=0.05)


@pytest.fixture
def seeded(emulator: EcsEmulator) -> Seeded:
    return reseed_ecs(emulator)


@pytest.fixture
def client(emulator: EcsEmulator) -> Any:
    return emulator.client()


@pytest.fixture
def platform(client: Any) -> EcsPlatform:
    return EcsPlatform(client=client, poll_interval=0.05)


@pytest.fixture
def target(seeded: Seeded, emulator: EcsEmulator) -> Target:
    return ecs_target(seeded, emulator, endpoint_url=True)


def running_ids(client: Any, target: Target) -> set[str]:
    arns = client.list_tasks(cluster=target.scope, serviceName=target.name)["taskArns"]
    return {a.rsplit("/", 1)[-1] for a in arns}


# ------------------------------------------------------------------------------ logs
def test_logs_are_the_awslogs_streams_of_the_newest_tasks(
        platform: EcsPlatform, target: Target, client: Any) -> None:
    text = platform.logs_tail(target, lines=2)
    ids = running_ids(client, target)
    prefixes = {line.split("]", 1)[0].removeprefix("[task/").rsplit("/", 1)[0]
                for line in text.splitlines()}
    assert prefixes == ids  # three RUNNING tasks, newer than every stopped one
    lines = text.splitlines()
    assert len(lines) == 3 * 2  # the newest two events of each stream
    assert all(line.endswith(("Listening on 0.0.0.0:8080", "Health check passed: ready"))
               for line in lines)
    # the same events as CloudWatch Logs serves for the stream ECS names
    task_id = sorted(ids)[0]
    events = platform._aws(target, "logs").get_log_events(
        logGroupName="/ecs/hotel-voice-bot", logStreamName=f"ecs/hotel-voice-bot/{task_id}",
        startFromHead=True)["events"]
    assert [e["message"] for e in events] == [
        "Starting registry.example/hotel-voice-bot:1.4.0", "Listening on 0.0.0.0:8080",
        "Health check passed: ready"]


def test_logs_of_a_crashing_deployment_show_the_exit_and_the_last_words(
        platform: EcsPlatform, target: Target, seeded: Seeded, emulator: EcsEmulator) -> None:
    emulator.crash_task_definition(seeded.arns[2], exit_code=2,
                                   logs=("config error: VOICE_MODEL is not set",))
    platform.rollback_to(target, platform.history(target)[1])
    text = wait_until(lambda: (t := platform.logs_tail(target, lines=5))
                      and "exit code 2" in t and t, timeout=20, message="a crashed task")
    assert "STOPPED: EssentialContainerExited: Essential container in task exited " \
           "(hotel-voice-bot exit code 2)" in text
    assert "/hotel-voice-bot] config error: VOICE_MODEL is not set" in text


def test_logs_are_read_from_the_emulator_without_a_configured_endpoint(
        seeded: Seeded, emulator: EcsEmulator, client: Any) -> None:
    """The e2e path: the adapter gets an ECS client, the target no endpoint_url; the logs
    client follows the ECS client's endpoint and credentials, never real AWS."""
    target = ecs_target(seeded, emulator)
    assert "endpoint_url" not in target.options
    text = EcsPlatform(client=client).logs_tail(target, lines=1)
    assert len(text.splitlines()) == 3


def test_logs_unsupported_when_no_container_logs_to_cloudwatch_per_task(
        platform: EcsPlatform, target: Target, seeded: Seeded, client: Any) -> None:
    definition = client.describe_task_definition(
        taskDefinition=seeded.arns[3])["taskDefinition"]
    container = {k: v for k, v in definition["containerDefinitions"][0].items()
                 if k != "logConfiguration"}
    arn = client.register_task_definition(family=seeded.family, cpu="256", memory="512",
                                          containerDefinitions=[container]
                                          )["taskDefinition"]["taskDefinitionArn"]
    client.update_service(cluster=target.scope, service=target.name, taskDefinition=arn)
    assert platform.wait_for_rollout(target, timeout=20).done
    with pytest.raises(Unsupported, match="awslogs-stream-prefix") as err:
        platform.logs_tail(target)
    assert err.value.capability == Capability.LOGS


# ------------------------------------------------------------------------- resources
def test_resource_usage_is_the_mean_task_from_cloudwatch(
        platform: EcsPlatform, target: Target, seeded: Seeded, emulator: EcsEmulator) -> None:
    """50% of 256 CPU units = 128 units = 125 millicores; 75% of 512 MiB = 384 MiB."""
    emulator.set_usage(seeded.arns[3], cpu_percent=50, memory_percent=75)
    emulator.forget_metrics()
    usage = wait_until(lambda: _usage(platform, target), timeout=10,
                       message="a CloudWatch datapoint")
    assert [(u.unit, u.cpu_millicores, u.memory_mib) for u in usage] == \
        [("service/hotel-voice-bot (mean of 3 RUNNING tasks)", 125.0, 384.0)]


def _usage(platform: EcsPlatform, target: Target) -> Any:
    try:
        return platform.resource_usage(target)
    except Unsupported:
        return None


def test_resource_usage_unknown_without_datapoints_and_empty_when_nothing_runs(
        platform: EcsPlatform, target: Target, emulator: EcsEmulator) -> None:
    emulator.simulator.pause()
    try:
        emulator.forget_metrics()
        with pytest.raises(Unsupported, match="no AWS/ECS cpu or memory utilization") as err:
            platform.resource_usage(target)
        assert err.value.capability == Capability.RESOURCE_USAGE
    finally:
        emulator.simulator.resume()
    platform.scale(target, 0)
    assert platform.wait_for_stopped(target, timeout=20).done
    assert platform.resource_usage(target) == []


# --------------------------------------------------------------------- configuration
def test_config_differences_between_running_and_pinned_task_definitions(
        platform: EcsPlatform, target: Target, seeded: Seeded) -> None:
    history = platform.history(target)
    running, pinned = history[0], history[1]  # v4 -> v3
    differences = platform.config_differences(target, running, pinned)
    assert differences == [
        ConfigDifference("image", "hotel-voice-bot", "registry.example/hotel-voice-bot:1.4.0",
                         "registry.example/hotel-voice-bot:1.3.0"),
        ConfigDifference("env", "LOG_LEVEL", "debug", "info"),
        ConfigDifference("env", "PARTNER_API_KEY",
                         mask_value("PARTNER_API_KEY", "pk-live-0004-do-not-leak"),
                         mask_value("PARTNER_API_KEY", "pk-live-0003-do-not-leak")),
        ConfigDifference("env", "RELEASE", "1.4.0", "1.3.0"),
        ConfigDifference("secret ref", "OPENAI_API_KEY",
                         "arn:aws:ssm:us-east-1:123456789012:parameter/hotel-voice-bot/"
                         "openai-api-key", None),
    ]
    shown = repr([d.to_dict() for d in differences])
    assert "do-not-leak" not in shown and "<hidden, sha256:" in shown
    assert platform.config_differences(target, running, running) == []


def test_config_differences_show_task_size_and_added_containers(
        platform: EcsPlatform, target: Target, seeded: Seeded, client: Any) -> None:
    definition = client.describe_task_definition(
        taskDefinition=seeded.arns[3])["taskDefinition"]
    sidecar = {"name": "envoy", "image": "envoyproxy/envoy:v1.30", "memory": 128,
               "essential": False}
    arn = client.register_task_definition(
        family=seeded.family, cpu="512", memory="1024",
        containerDefinitions=[definition["containerDefinitions"][0], sidecar]
    )["taskDefinition"]["taskDefinitionArn"]
    bigger = next(r for r in platform.history(target) if r.id == arn)
    differences = platform.config_differences(target, platform.current_revision(target),
                                              bigger)
    assert differences == [
        ConfigDifference("container", "envoy", None, "envoyproxy/envoy:v1.30"),
        ConfigDifference("task size", "cpu", "256", "512"),
        ConfigDifference("task size", "memory", "512", "1024"),
    ]


def test_describe_revision_is_the_task_definition_summary(
        platform: EcsPlatform, target: Target, seeded: Seeded) -> None:
    detail = platform.describe_revision(target, 4)
    fields = dict(detail.fields)
    assert detail.revision.id == seeded.arns[3] and detail.revision.current
    assert fields["Task definition"] == "hotel-voice-bot:4"
    assert fields["Status"] == "ACTIVE"
    assert fields["Images"] == "hotel-voice-bot=registry.example/hotel-voice-bot:1.4.0"
    assert fields["CPU / memory"] == "256 units / 512 MiB"
    assert fields["Environment"] == "LOG_LEVEL, PARTNER_API_KEY, RELEASE"  # keys only
    assert fields["Secrets"] == (
        "DATABASE_URL <- arn:aws:secretsmanager:us-east-1:123456789012:secret:"
        "hotel-voice-bot/database-url-Ab12Cd; OPENAI_API_KEY <- arn:aws:ssm:us-east-1:"
        "123456789012:parameter/hotel-voice-bot/openai-api-key")
    assert fields["Logs"] == "awslogs /ecs/hotel-voice-bot"
    assert fields["Registered by"] == "arn:aws:sts::123456789012:user/moto"
    assert fields["Registered"].endswith(" UTC")
    assert fields["Change-cause"].startswith("deployed: PRIMARY deployment ecs-svc/")
    assert "do-not-leak" not in detail.text
    assert detail.text.splitlines()[0] == "Task definition: hotel-voice-bot:4"
    older = dict(platform.describe_revision(target, 2).fields)
    assert "Running" not in older and "OPENAI_API_KEY" not in older["Secrets"]
    with pytest.raises(RevisionNotFound, match="revision 9 not found"):
        platform.describe_revision(target, 9)
