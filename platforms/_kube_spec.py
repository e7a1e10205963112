"""The Kubernetes platform as data: the ``kubernetes:`` block of a service, its ``Target``,
the adapter factory, its words. Exported as ``platforms.kubernetes.SPEC``.

Kept apart from ``platforms/kubernetes.py`` so that validating a configuration (every CLI
call, ``check-config``) never imports the Kubernetes client, which takes most of a second;
the factory imports the adapter only when a service uses this platform.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from platforms.base import Platform, PlatformSpec, PlatformUnavailable, SecretReader, Target

NAME = "kubernetes"


class KubernetesTarget(BaseModel):
    """A service's ``kubernetes:`` block: one Deployment."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    namespace: str
    deployment: str
    context: str | None = None
    kubeconfig: str | None = None
    config_maps: list[str] = Field(default_factory=list)
    secrets: list[str] = Field(default_factory=list)
    rollout_timeout_seconds: float = 600
    # Scale-down waits until nothing of the target runs (writers gone) before a backup or
    # restore starts; past this the step fails and the replicas are restored.
    stop_timeout_seconds: float = Field(default=300, gt=0)


def target(block: KubernetesTarget) -> Target:
    options = {key: value for key, value in (("context", block.context),
                                             ("kubeconfig", block.kubeconfig)) if value}
    return Target(NAME, block.namespace, block.deployment, options,
                  tuple(block.config_maps), tuple(block.secrets))


def build(block: KubernetesTarget, secret: SecretReader) -> Platform:
    """In-cluster credentials, else the block's kubeconfig/context, resolved now."""
    try:
        from platforms.kubernetes import KubernetesPlatform

        return KubernetesPlatform.from_config(kubeconfig=block.kubeconfig, context=block.context)
    except Exception as exc:  # no cluster credentials here: the platform is unavailable
        raise PlatformUnavailable(str(exc)) from exc


def scale_command(target: Target, replicas: int) -> str:
    context = f" --context {target.options['context']}" if target.options.get("context") else ""
    return (f"kubectl{context} -n {target.scope} scale deployment/{target.name} "
            f"--replicas={replicas}")


SPEC: PlatformSpec[KubernetesTarget] = PlatformSpec(
    name=NAME,
    config_model=KubernetesTarget,
    target=target,
    build=build,
    unit="pod",
    summary="a Deployment (`namespace`, `deployment`)",
    scale_command=scale_command,
)
