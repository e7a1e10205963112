"""What the bot may act on: the configured services and the platform adapters built for them.

Lookups refuse with a user-facing message (an unknown service lists the known ones; a
platform without an adapter here says so), so every use case, the executor and aftercare
answer the same way.
"""

from __future__ import annotations

from typing import Any

from bot.domain.config import RollbackConfig, ServiceConfig
from bot.domain.errors import UnknownService, UserFacingError
from platforms.base import Platform, PlatformSpec


class Catalog:
    def __init__(self, config: RollbackConfig, platforms: dict[str, Platform]) -> None:
        self.config = config
        self.platforms = platforms

    def service_config(self, name: str) -> ServiceConfig:
        svc = self.config.service(name)
        if svc is None:
            raise UnknownService(name, sorted(self.config.services))
        return svc

    def platform(self, name: str) -> Platform:
        adapter = self.platforms.get(name)
        if adapter is None:
            raise UserFacingError(f"The `{name}` platform adapter is not available here.")
        return adapter

    def spec(self, platform: str) -> PlatformSpec[Any] | None:
        """What the configuration's registry says of ``platform`` (its capabilities, its
        scale command); None for one the registry no longer knows (a stored rollback's
        platform since removed from the configuration)."""
        return self.config.platform_specs.get(platform)
