"""Platforms as data: a platform defined only in this module (``nomad``) is known wherever the
core reads the registry (config validation, help text, command text, planning, the adapter
factory, the checks), production's registry refuses the sandbox-only ``fake``, and each
production adapter answers a capability its spec lacks with ``Unsupported``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel, ConfigDict

from bot.checks.suite import check_resources
from bot.domain.command_parsing import parse
from bot.domain.config import parse_config
from bot.domain.errors import ConfigError, ParseError
from bot.domain.planner import target_for
from bot.runtime.app import build_platforms
from handlers import views
from platforms.base import (
    Capability,
    Platform,
    PlatformSpec,
    PlatformSpecs,
    Revision,
    SecretReader,
    Target,
    Unsupported,
)
from platforms.registry import PRODUCTION
from sandbox.config import PLATFORMS as SANDBOX_PLATFORMS
from sandbox.config import sandbox_config_dict
from sandbox.fake_platform import FakePlatform

ROOT = Path(__file__).resolve().parents[2]
SERVICE = "hotel-voice-bot"


# ------------------------------------------------------------------ a platform of our own
class NomadTarget(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    job: str
    namespace: str = "default"
    rollout_timeout_seconds: float = 120


class NomadPlatform(FakePlatform):
    """A trivial adapter: the fake platform under another name."""

    def __init__(self) -> None:
        super().__init__(name="nomad")


def _nomad_build(block: NomadTarget, secret: SecretReader) -> Platform:
    return NomadPlatform()


NOMAD: PlatformSpec[NomadTarget] = PlatformSpec(
    name="nomad", config_model=NomadTarget,
    target=lambda block: Target("nomad", block.namespace, block.job),
    build=_nomad_build, unit="allocation", summary="a job (`job`, `namespace`)")
REGISTRY = PRODUCTION.plus(NOMAD)


def _example(**nomad: Any) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((ROOT / "rollback.example.yml").read_text())
    svc = data["services"][SERVICE]
    for name in ("kubernetes", "ecs", "fly"):
        svc.pop(name)
    svc["nomad"] = nomad
    svc["default_platform"] = "nomad"
    return data


def _problems(data: dict[str, Any], platforms: PlatformSpecs = PRODUCTION) -> list[str]:
    with pytest.raises(ConfigError) as err:
        parse_config(data, platforms=platforms)
    return err.value.problems


# --------------------------------------------------------------------- config validation
def test_a_registered_platform_block_parses() -> None:
    svc = parse_config(_example(job="web"), platforms=REGISTRY).services[SERVICE]
    assert svc.platforms() == ["nomad"]
    assert svc.platform_config("nomad") == NomadTarget(job="web")
    assert svc.platform_or_default(None) == "nomad"


def test_bad_blocks_and_unknown_keys_name_the_key_path_and_the_known_platforms() -> None:
    assert f"services.{SERVICE}.nomad.job: field required" in _problems(_example(), REGISTRY)
    typo = _example(job="web")
    typo["services"][SERVICE]["nomda"] = typo["services"][SERVICE].pop("nomad")
    assert (f"services.{SERVICE}.nomda: unknown key (known platforms: kubernetes, ecs, fly, "
            "nomad)") in _problems(typo, REGISTRY)
    # Without nomad in the registry, the same file is refused at the same key.
    assert (f"services.{SERVICE}.nomad: unknown key (known platforms: kubernetes, ecs, fly)"
            in _problems(_example(job="web")))


def test_default_platform_must_be_a_known_one() -> None:
    data = _example(job="web")
    data["services"][SERVICE]["default_platform"] = "nomda"
    problems = _problems(data, REGISTRY)
    assert any(p.startswith(f"services.{SERVICE}.default_platform:") and "nomad" in p
               for p in problems), problems


# ------------------------------------------------------------- help, commands, planning
def test_help_text_lists_the_registered_platforms() -> None:
    text = str(views.help_blocks("/rollback", REGISTRY))
    assert "--platform kubernetes|ecs|fly|nomad" in text
    assert "`nomad`: a job" in text
    assert "nomad" not in str(views.help_blocks("/rollback", PRODUCTION))


def test_command_text_accepts_the_registered_platforms() -> None:
    assert parse("svc --platform nomad", platforms=REGISTRY).platform == "nomad"
    assert parse("known-bad svc --platform nomad", platforms=REGISTRY).platform == "nomad"
    with pytest.raises(ParseError, match="choose kubernetes, ecs or fly"):
        parse("svc --platform nomad", platforms=PRODUCTION)


def test_planning_and_the_factory_use_the_spec() -> None:
    config = parse_config(_example(job="web", namespace="prod"), platforms=REGISTRY)
    svc = config.services[SERVICE]
    assert target_for(svc, "nomad") == Target("nomad", "prod", "web")
    adapters = build_platforms(config)
    assert list(adapters) == ["nomad"] and isinstance(adapters["nomad"], NomadPlatform)
    result = check_resources(adapters["nomad"], target_for(svc, "nomad"), spec=NOMAD)
    assert result.status == "pass" and result.summary.startswith("3 allocations:")


# ------------------------------------------------------------------- production vs fake
def test_production_refuses_fake_and_the_sandbox_registry_accepts_it() -> None:
    data = sandbox_config_dict()
    assert (f"services.{SERVICE}.fake: unknown key (known platforms: kubernetes, ecs, fly)"
            in _problems(data))
    svc = parse_config(data, platforms=SANDBOX_PLATFORMS).services[SERVICE]
    assert svc.platforms() == ["fake"]
    assert "fake" not in PRODUCTION and PRODUCTION.names() == ("kubernetes", "ecs", "fly")


@pytest.mark.parametrize(("key", "value"), [
    ("helth", {"url": "http://svc/health"}),  # a service setting misspelt
    ("colour", "red"),  # not a block at all
])
def test_an_unknown_service_setting_names_no_platforms(key: str, value: Any) -> None:
    data = _example(job="web")
    data["services"][SERVICE][key] = value
    problems = _problems(data, REGISTRY)
    assert f"services.{SERVICE}.{key}: unknown key" in problems, problems
    assert not any("known platforms" in p for p in problems), problems


def test_the_domain_imports_no_adapter() -> None:
    """The registry is the caller's: the domain and the Slack views load without it."""
    code = ("import sys, bot.domain.config, bot.domain.command_parsing, "
            "bot.domain.compensation, bot.domain.planner, handlers.views; "
            "print(sorted(m for m in sys.modules if m in ('platforms.registry', "
            "'platforms.kubernetes', 'platforms.ecs', 'platforms.fly', 'kubernetes', "
            "'boto3')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=ROOT, check=True, timeout=60)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


def test_a_platform_is_registered_once() -> None:
    with pytest.raises(ValueError, match="registered twice: nomad"):
        REGISTRY.plus(NOMAD)


# ---------------------------------------------------------------------- production specs
def test_each_adapter_module_exports_its_registry_spec() -> None:
    from platforms import ecs, fly, kubernetes

    assert [kubernetes.SPEC, ecs.SPEC, fly.SPEC] == list(PRODUCTION)


def _use(adapter: Platform, capability: Capability) -> object:
    target = Target("x", "scope", "name")
    if capability == Capability.LOGS:
        return adapter.logs_tail(target)
    if capability == Capability.RESOURCE_USAGE:
        return adapter.resource_usage(target)
    if capability == Capability.CONFIG_VIEW:
        rev = Revision("a", 1)
        return adapter.config_differences(target, rev, rev)
    return adapter.snapshot_config(target)


@pytest.mark.parametrize("capability", list(Capability))
def test_a_missing_capability_is_unsupported_with_the_specs_reason(
        capability: Capability) -> None:
    from platforms.ecs import EcsPlatform
    from platforms.fly import FlyPlatform

    # Whatever a spec's unsupported map lists, its adapter refuses with the map's reason.
    # Neither call reaches the network: the adapter refuses before building a client.
    adapters: dict[str, Platform] = {"ecs": EcsPlatform(), "fly": FlyPlatform(token=None)}
    for name, adapter in adapters.items():
        spec = PRODUCTION[name]
        if spec.supports(capability):
            continue
        with pytest.raises(Unsupported) as err:
            _use(adapter, capability)
        assert (err.value.platform, err.value.capability) == (spec.name, capability)
        assert str(err.value) == spec.unsupported[capability]
    # ECS and Fly show logs, resources and the configuration view (issue 13); ECS keeps its
    # configuration in the task definition the rollback restores and Fly secrets are
    # write-only, so neither has anything to snapshot.
    for name in ("ecs", "fly"):
        assert PRODUCTION[name].supports(capability) == (capability != Capability.CONFIG_SNAPSHOTS)
    assert PRODUCTION["kubernetes"].supports(capability)


def test_a_production_platform_is_one_module() -> None:
    """Its config model, target, factory and adapter class live in one file: adding a
    platform is that file (plus its tests and one registry line)."""
    from platforms import ecs, fly, kubernetes

    for module, adapter in ((kubernetes, kubernetes.KubernetesPlatform),
                            (ecs, ecs.EcsPlatform), (fly, fly.FlyPlatform)):
        spec = module.SPEC
        assert {spec.config_model.__module__, spec.target.__module__, spec.build.__module__,
                adapter.__module__} == {module.__name__}
