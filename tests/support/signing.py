"""Slack's v0 request signature, for tests and benchmarks that sign requests themselves.

Slack signs ``v0:<timestamp>:<raw body>`` with HMAC-SHA256 under the app's signing secret
and sends ``X-Slack-Request-Timestamp`` and ``X-Slack-Signature: v0=<hex>``
(https://api.slack.com/authentication/verifying-requests-from-slack). The Slack emulator's
driver signs what it sends; this is the one copy for everything that builds requests by
hand: forged and stale variants (tests/adversarial/test_front_door.py), raw-socket bodies
streamed in pieces (bench/hostile.py) and the load generator (bench/_load.py).
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Iterable

__all__ = ["FORM", "sign", "signed_headers"]

FORM = "application/x-www-form-urlencoded"


def sign(secret: str, timestamp: str | int, body: bytes | str | Iterable[bytes]) -> str:
    """``v0=<hex digest>`` of ``body`` at ``timestamp``. ``body`` may be given in pieces
    (an iterable of bytes), so a large body need not be held in memory to be signed."""
    mac = hmac.new(secret.encode(), f"v0:{timestamp}:".encode(), hashlib.sha256)
    if isinstance(body, str):
        mac.update(body.encode())
    elif isinstance(body, bytes | bytearray | memoryview):
        mac.update(body)
    else:
        for part in body:
            mac.update(part)
    return "v0=" + mac.hexdigest()


def signed_headers(secret: str, body: bytes | str | Iterable[bytes], *,
                   timestamp: str | int | None = None,
                   content_type: str = FORM) -> dict[str, str]:
    """The headers of a request Slack would send with ``body`` (timestamp: now)."""
    ts = str(int(time.time())) if timestamp is None else str(timestamp)
    return {"Content-Type": content_type, "X-Slack-Request-Timestamp": ts,
            "X-Slack-Signature": sign(secret, ts, body)}
