"""The Fly.io platform as data: the ``fly:`` block of a service, its ``Target``, the adapter
factory (the API token comes from the variable the block names), its words and what it
cannot do. Exported as ``platforms.fly.SPEC``.

Kept apart from ``platforms/fly.py`` like the other specs: validating a configuration
imports no adapter; the factory imports it only when a service uses this platform.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from platforms.base import (
    Capability,
    Platform,
    PlatformSpec,
    PlatformUnavailable,
    SecretReader,
    Target,
)

NAME = "fly"


class FlyTarget(BaseModel):
    """A service's ``fly:`` block: one Fly app and the variable holding the API token."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    app: str
    org: str = "personal"
    api_url: str = "https://api.machines.dev"
    token_env: str = "FLY_API_TOKEN"
    rollout_timeout_seconds: float = 600
    # Scale-down waits until nothing of the target runs (writers gone) before a backup or
    # restore starts; past this the step fails and the replicas are restored.
    stop_timeout_seconds: float = Field(default=300, gt=0)


def target(block: FlyTarget) -> Target:
    return Target(NAME, block.org, block.app, {"api_url": block.api_url})


def build(block: FlyTarget, secret: SecretReader) -> Platform:
    token = secret(block.token_env)
    if not token:  # never guess credentials; say which variable is missing
        raise PlatformUnavailable(f"env {block.token_env} is not set")
    from platforms.fly import FlyPlatform

    return FlyPlatform(token=token, api_url=block.api_url)


def scale_command(target: Target, replicas: int) -> str:
    # The scale-down stopped the app's machines (it did not destroy them): start the
    # same machines again; `fly scale count` would create or destroy machines instead.
    return (f"fly machine list --app {target.name}, then fly machine start <id> "
            f"--app {target.name} for each of the {replicas} stopped machines")


SPEC: PlatformSpec[FlyTarget] = PlatformSpec(
    name=NAME,
    config_model=FlyTarget,
    target=target,
    build=build,
    unit="machine",
    summary="an app (`app`, `org`; API token from `token_env`)",
    unsupported={
        Capability.LOGS: "Fly logs live in its NATS log stream, not in the Machines API",
        Capability.RESOURCE_USAGE: "the Fly Machines API exposes no per-machine usage "
                                   "metrics",
        # Not a gap: secrets are write-only and the app's config lives in each machine's
        # config, which rollback_to already preserves.
        Capability.CONFIG_SNAPSHOTS: "Fly secrets are write-only and each machine keeps its "
                                     "config through the rollback",
    },
    scale_command=scale_command,
)
