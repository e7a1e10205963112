"""What the bot may act on: the configured services, the platform adapters built for them and
the process's shared HTTP client that reaches the services' probes and Prometheus.

Lookups refuse with a user-facing message (an unknown service lists the known ones; a
platform without an adapter here says so), so every use case, the executor and aftercare
answer the same way.
"""

from __future__ import annotations

from typing import Any

import httpx

from bot.domain.config import RollbackConfig, ServiceConfig
from bot.domain.errors import UnknownService, UserFacingError
from bot.integrations.http_client import shared_client
from platforms.base import Platform, PlatformSpec


class Catalog:
    def __init__(self, config: RollbackConfig, platforms: dict[str, Platform], *,
                 http: httpx.Client | None = None) -> None:
        self.config = config
        self.platforms = platforms
        # One client (pool, TLS context) for every check, monitor tick, assessment and
        # webhook (bot.integrations.http_client); the composition root passes the process's
        # and closes it. Without one (tests), the catalog makes its own.
        self.http = http if http is not None else shared_client()

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
