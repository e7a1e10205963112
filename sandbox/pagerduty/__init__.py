"""A PagerDuty Events API v2 stand-in on 127.0.0.1 (``POST /v2/enqueue``), for the sandbox
and the tests: the published validation, 202/400/429 answers and alerts kept by dedup key.
``PagerDutyEmulator`` (``server.py``) serves ``Events`` (``models.py``)."""

from sandbox.pagerduty.models import Alert, Events, Received
from sandbox.pagerduty.server import PagerDutyEmulator

__all__ = ["Alert", "Events", "PagerDutyEmulator", "Received"]
