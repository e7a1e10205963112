"""The ECS platform as data: the ``ecs:`` block of a service, its ``Target``, the adapter
factory, its words and what it cannot do. Exported as ``platforms.ecs.SPEC``.

Kept apart from ``platforms/ecs.py`` so that validating a configuration never imports
boto3; the factory imports the adapter only when a service uses this platform.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from platforms.base import Capability, Platform, PlatformSpec, SecretReader, Target

NAME = "ecs"


class EcsTarget(BaseModel):
    """A service's ``ecs:`` block: one ECS service and its task-definition family."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    cluster: str
    service: str
    family: str
    region: str = "us-east-1"
    endpoint_url: str | None = None
    rollout_timeout_seconds: float = 600
    # Scale-down waits until nothing of the target runs (writers gone) before a backup or
    # restore starts; past this the step fails and the replicas are restored.
    stop_timeout_seconds: float = Field(default=300, gt=0)


def target(block: EcsTarget) -> Target:
    options = {"family": block.family, "region": block.region}
    if block.endpoint_url:
        options["endpoint_url"] = block.endpoint_url
    return Target(NAME, block.cluster, block.service, options)


def build(block: EcsTarget, secret: SecretReader) -> Platform:
    """boto3's default credential chain; the region comes with each target."""
    from platforms.ecs import EcsPlatform

    return EcsPlatform()


def scale_command(target: Target, replicas: int) -> str:
    region = target.options.get("region")
    return (f"aws ecs update-service --cluster {target.scope} --service {target.name} "
            f"--desired-count {replicas}" + (f" --region {region}" if region else ""))


SPEC: PlatformSpec[EcsTarget] = PlatformSpec(
    name=NAME,
    config_model=EcsTarget,
    target=target,
    build=build,
    unit="task",
    summary="a service (`cluster`, `service`, `family`)",
    unsupported={
        Capability.LOGS: "ECS logs live in CloudWatch Logs (awslogs driver), which is not "
                         "wired",
        Capability.RESOURCE_USAGE: "ECS: CloudWatch metrics not wired",
        # Not a gap: env and secret references live in the immutable task definition,
        # which the rollback itself pins and restores.
        Capability.CONFIG_SNAPSHOTS: "an ECS service's configuration lives in its task "
                                     "definition, which the rollback restores with the "
                                     "revision",
    },
    scale_command=scale_command,
)
