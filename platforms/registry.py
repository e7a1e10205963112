"""Production's registry: the platforms ``rollback-bot`` knows (kubernetes, ecs, fly).

The core never names a platform, and never picks a registry either: config validation,
planning, the adapter factory, the help and command text, the checks and the steps read
the ``PlatformSpec`` of each registered platform from the ``PlatformSpecs``
(``platforms/base.py``) the configuration was parsed with. Only the entry points
(``bot/runtime/cli.py``, ``bot/runtime/app.py``) pass ``PRODUCTION``; the sandbox and the
tests build their own registry with ``PRODUCTION.plus(...)`` (the in-memory fake platform
lives in ``sandbox/``, never here). ``bot.domain`` never imports this module
(import-linter).

Importing this module imports every production adapter (a platform is one module: its
adapter and its spec), with the Kubernetes client and boto3; the factories build an
adapter only for a platform a service uses.
"""

from __future__ import annotations

from platforms.base import PlatformSpecs
from platforms.ecs import SPEC as ECS
from platforms.fly import SPEC as FLY
from platforms.kubernetes import SPEC as KUBERNETES

PRODUCTION = PlatformSpecs((KUBERNETES, ECS, FLY))
