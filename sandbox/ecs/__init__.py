"""ECS emulator: moto's ECS backend over HTTP plus a deployment simulator, e.g.
``EcsEmulator().start()`` then ``seed_hotel_voice_bot()`` and ``client()`` (boto3).
"""

from __future__ import annotations

from .emulator import EcsEmulator, Seeded
from .faults import EcsCall, Held
from .simulator import DeploymentSimulator

__all__ = ["DeploymentSimulator", "EcsCall", "EcsEmulator", "Held", "Seeded"]
