"""Which platforms the bot knows: the registry type and the production registry.

The core never names a platform. Config validation, planning, the adapter factory, the
help and command text, the checks and the steps all read the ``PlatformSpec`` of each
registered platform from a ``PlatformSpecs``. Production knows ``PRODUCTION``
(kubernetes, ecs, fly); the sandbox and the tests build their own registry with
``PRODUCTION.plus(...)`` (the in-memory fake platform lives in ``sandbox/``, never here).

Importing this module imports every production adapter (a platform is one module: its
adapter and its spec); the factories build an adapter only for a platform a service uses.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from platforms.base import PlatformSpec
from platforms.ecs import SPEC as ECS
from platforms.fly import SPEC as FLY
from platforms.kubernetes import SPEC as KUBERNETES


@dataclass(frozen=True)
class PlatformSpecs:
    """An ordered, immutable set of platform specs, one per name (the order is the
    order of help text and of a service's platforms). Hashable, so a config schema built
    from it can be cached."""

    specs: tuple[PlatformSpec[Any], ...] = ()

    def __post_init__(self) -> None:
        names = [spec.name for spec in self.specs]
        twice = sorted({name for name in names if names.count(name) > 1})
        if twice:
            raise ValueError(f"platform registered twice: {', '.join(twice)}")

    def plus(self, *specs: PlatformSpec[Any]) -> PlatformSpecs:
        """This registry with more platforms (the sandbox's fake, a test's own)."""
        return PlatformSpecs((*self.specs, *specs))

    def names(self) -> tuple[str, ...]:
        return tuple(spec.name for spec in self.specs)

    def get(self, name: str) -> PlatformSpec[Any] | None:
        return next((spec for spec in self.specs if spec.name == name), None)

    def __getitem__(self, name: str) -> PlatformSpec[Any]:
        spec = self.get(name)
        if spec is None:
            raise KeyError(name)
        return spec

    def __contains__(self, name: object) -> bool:
        return any(spec.name == name for spec in self.specs)

    def __iter__(self) -> Iterator[PlatformSpec[Any]]:
        return iter(self.specs)

    def __len__(self) -> int:
        return len(self.specs)

    def listing(self, conjunction: str = "or") -> str:
        """``kubernetes, ecs or fly``: the names for a sentence."""
        names = list(self.names())
        if len(names) < 2:
            return "".join(names)
        return f"{', '.join(names[:-1])} {conjunction} {names[-1]}"


PRODUCTION = PlatformSpecs((KUBERNETES, ECS, FLY))
