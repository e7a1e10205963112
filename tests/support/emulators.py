"""The ECS and Fly emulators as the adapter tests and the ghost-write tests use them.

tests/integration/test_ecs_adapter.py and test_fly_adapter.py check the adapters against
the emulators; tests/adversarial/test_ghost_writes_ecs.py and _fly.py hold the adapters'
writes in the same emulators past the client's timeout. Both pairs start, seed and stop
the emulators the same way; this module is that one way.

* ECS: ``ecs_emulator_fixture`` (a module-scoped ``emulator`` fixture),
  ``reseed_ecs`` (a fresh seeded world per test) and ``ecs_target``.
* Fly: ``FlyClock`` (lease expiry that a test advances instead of sleeping),
  ``fly_emulator_fixture`` (a seeded ``emulator`` fixture on the test's ``clock``),
  ``fly_updates`` (the Machines_update requests it received) and ``fly_spec`` (Fly's
  OpenAPI document through tests/support/specs.py: skipped when absent outside CI).
* ``ecs_service_config`` is the ``ecs`` section of the sandbox service for an emulator,
  for the end-to-end tests that run the whole bot against it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from platforms.base import Target
from sandbox.ecs import EcsEmulator, Seeded
from sandbox.fly import SEED_APP, FlyEmulator, RequestRecord, seed_hotel_voice_bot
from tests.support.specs import load_spec

__all__ = ["FLY_SPEC", "FLY_TARGET", "FlyClock", "ecs_emulator_fixture", "ecs_service_config",
           "ecs_target", "fly_emulator_fixture", "fly_spec", "fly_updates", "reseed_ecs"]

FLY_SPEC = "fly-machines-openapi.yaml"  # the spec's name in SPECS_DIR / shared/specs
FLY_TARGET = Target("fly", "hotel", SEED_APP)


# --------------------------------------------------------------------------- ECS
def ecs_emulator_fixture(*, step_interval: float) -> Callable[[], Iterator[EcsEmulator]]:
    """A module-scoped ``emulator`` fixture: one moto server per test module (it is slow to
    start), its deployment simulator stepping every ``step_interval`` seconds. Assign it to
    a module-level name ``emulator``."""
    @pytest.fixture(scope="module")
    def emulator() -> Iterator[EcsEmulator]:
        em = EcsEmulator(step_interval=step_interval).start()
        try:
            yield em
        finally:
            em.stop()

    return emulator


def reseed_ecs(emulator: EcsEmulator, *, forget_seed_calls: bool = False) -> Seeded:
    """Reset the module's emulator and seed hotel-voice-bot again (four task definitions,
    v4 running). ``forget_seed_calls``: count only what the test sends, not the seed's."""
    emulator.reset()
    seeded = emulator.seed_hotel_voice_bot()
    if forget_seed_calls:
        emulator.wire.forget_calls()
    return seeded


def ecs_target(seeded: Seeded, emulator: EcsEmulator, *, endpoint_url: bool = False) -> Target:
    """The seeded service as the planner would target it (``endpoint_url``: with the
    emulator's endpoint in the options, as a configured ``ecs.endpoint_url`` puts it)."""
    options = {"family": seeded.family, "region": emulator.region}
    if endpoint_url:
        options["endpoint_url"] = emulator.endpoint_url
    return Target("ecs", seeded.cluster, seeded.service, options)


def ecs_service_config(emulator: EcsEmulator, *, cluster: str = "production",
                       service: str = "hotel-voice-bot", family: str = "hotel-voice-bot",
                       rollout_timeout_seconds: float = 30) -> dict[str, Any]:
    """The ``ecs`` section of a service in ``rollback.yml`` for the seeded emulator."""
    return {"cluster": cluster, "service": service, "family": family,
            "region": emulator.region, "rollout_timeout_seconds": rollout_timeout_seconds}


# --------------------------------------------------------------------------- Fly
class FlyClock:
    """Unix time for lease expiry that tests advance instead of sleeping."""

    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def fly_emulator_fixture(*, start_delay: float) -> Callable[..., Iterator[FlyEmulator]]:
    """A function-scoped ``emulator`` fixture: a Fly Machines emulator on the test's
    ``clock`` fixture (a ``FlyClock``), seeded with hotel-voice-bot; machines take
    ``start_delay`` seconds to start. Assign it to a module-level name ``emulator``."""
    @pytest.fixture
    def emulator(clock: FlyClock) -> Iterator[FlyEmulator]:
        em = FlyEmulator(start_delay=start_delay, clock=clock).start()
        seed_hotel_voice_bot(em)
        yield em
        em.stop()

    return emulator


def fly_updates(em: FlyEmulator) -> list[RequestRecord]:
    """POST /v1/apps/{app}/machines/{id} (Machines_update) requests."""
    return [r for r in em.requests
            if r.method == "POST" and r.path.count("/") == 5 and "/machines/" in r.path]


def fly_spec() -> dict[str, Any]:
    """Fly's Machines OpenAPI document. Missing: the test fails under CI and is skipped
    elsewhere, with the reason every spec-dependent test gives."""
    return dict(load_spec(FLY_SPEC))
