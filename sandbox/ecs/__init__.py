"""ECS emulator: moto's ECS backend over HTTP plus a deployment simulator, e.g.
``EcsEmulator().start()`` then ``seed_hotel_voice_bot()`` and ``client()`` (boto3).
"""

from __future__ import annotations

from .emulator import EcsEmulator, Seeded, task_definition
from .faults import EcsCall, Held
from .simulator import DeploymentSimulator
from .tasks import TaskFault
from .telemetry import Usage

__all__ = ["DeploymentSimulator", "EcsCall", "EcsEmulator", "Held", "Seeded", "TaskFault", "Usage",
           "task_definition"]
