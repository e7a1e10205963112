"""The demo hotel-voice-bot as a pytest fixture: one definition for every test folder.

``tests/conftest.py`` provides ``demo`` (version 1.2.0, no traffic, a fresh service per
test). A module that needs traffic for its metrics, or one service for all its tests,
declares its own with ``demo = demo_fixture(...)``, which shadows the shared one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal

import pytest

from sandbox.demo import DemoService


def demo_fixture(*, scope: Literal["function", "module"] = "function",
                 version_source: str = "1.2.0", **options: Any
                 ) -> Callable[[], Iterator[DemoService]]:
    """A ``demo`` fixture: a running ``DemoService`` (``options`` as its constructor's:
    ``traffic_rps``, ``seed``, ...), stopped after the test or module."""

    @pytest.fixture(scope=scope)
    def demo() -> Iterator[DemoService]:
        with DemoService(version_source=version_source, **options) as service:
            yield service

    return demo


def health_monitored(demo_url: str, tmp: Path, **monitoring: Any
                     ) -> Callable[[dict[str, Any]], None]:
    """A ``config_overrides`` for the e2e harness: hotel-voice-bot's health is the demo's,
    watched for 10 minutes (a check every 5, two failures in a row fail it; ``monitoring``
    overrides these), post-mortems written under ``tmp``."""
    def change(data: dict[str, Any]) -> None:
        svc = data["services"]["hotel-voice-bot"]
        svc["health"] = {"url": f"{demo_url}/api/health", "timeout_seconds": 2, "samples": 3}
        svc["monitoring"] = {"duration_seconds": 600, "interval_seconds": 300,
                             "consecutive_health_failures": 2, **monitoring}
        data["aftercare"] = {"postmortem_dir": str(tmp / "post-mortems")}
    return change
