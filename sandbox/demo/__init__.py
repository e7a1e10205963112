"""The demo hotel-voice-bot: a small HTTP service with Prometheus metrics and failure injection.

Its health follows the version a callable reports (a Deployment's image, say), so a
rollback in the sandbox visibly cures a bad release.
"""

from __future__ import annotations

from sandbox.demo.app import SERVICE_NAME, DemoApp, Drill, ServiceUnavailable, image_tag
from sandbox.demo.service import DemoService
from sandbox.demo.traffic import TrafficGenerator, TrafficStats

__all__ = [
    "SERVICE_NAME",
    "DemoApp",
    "DemoService",
    "Drill",
    "ServiceUnavailable",
    "TrafficGenerator",
    "TrafficStats",
    "image_tag",
]
