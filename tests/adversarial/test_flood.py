"""A connection flood against the real server: 500 idle connections held open while
`/healthz` and a steady stream of signed `/rollback help` keep answering within 3 s.
"""

from __future__ import annotations

import socket
import statistics
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from sandbox.stack import SandboxStack
from tests.secret_scan import register_secret
from tests.support.hostile import http_stack, idle_flood, server_kept_open

IDLE_CONNECTIONS = 500
PARTIAL = 100  # of which this many sent half a request line and then went quiet
DEADLINE = 3.0  # Slack's ack deadline; the liveness probe's timeout is no more generous
STREAM_SECONDS = 8.0


@pytest.fixture
def stack(db: str, tmp_path: Path) -> Iterator[SandboxStack]:
    with http_stack(db, tmp_path / "pm") as running:
        register_secret(running.signing_secret, "a sandbox stack's signing secret")
        yield running


@pytest.fixture
def idle_sockets(stack: SandboxStack) -> Iterator[list[socket.socket]]:
    # Client and server ends live in this one process: ~2 descriptors per connection.
    assert stack.server is not None
    with idle_flood(stack.server.port, IDLE_CONNECTIONS, partial=PARTIAL) as opened:
        yield opened


def _timed(fn: object) -> float:
    started = time.monotonic()
    fn()  # type: ignore[operator]
    return time.monotonic() - started


def test_health_and_help_answer_under_500_idle_connections(
        stack: SandboxStack, idle_sockets: list[socket.socket]) -> None:
    assert stack.server is not None and stack.driver is not None

    health: list[float] = []
    helps: list[float] = []
    failures: list[str] = []
    with httpx.Client(timeout=DEADLINE) as client:
        def healthz() -> None:
            try:
                reply = client.get(f"{stack.server.url}/healthz")  # type: ignore[union-attr]
                if reply.status_code != 200:
                    failures.append(f"healthz {reply.status_code}")
            except httpx.HTTPError as exc:
                failures.append(f"healthz {type(exc).__name__}")

        def help_() -> None:
            try:
                reply = stack.driver.slash_command("/rollback", "help")  # type: ignore[union-attr]
                if reply.status != 200 or "/rollback status" not in reply.body:
                    failures.append(f"help {reply.status}")
            except httpx.HTTPError as exc:
                failures.append(f"help {type(exc).__name__}")

        end = time.monotonic() + STREAM_SECONDS
        while time.monotonic() < end:
            health.append(_timed(healthz))
            helps.append(_timed(help_))
            time.sleep(0.05)  # a steady stream, not a burst

    still_open = sum(1 for s in idle_sockets if server_kept_open(s))

    def p(values: list[float], q: int) -> float:
        return statistics.quantiles(values, n=100)[q - 1] * 1000

    print(f"{still_open} idle connections; {len(helps)} help, {len(health)} healthz; "
          f"help p50 {p(helps, 50):.0f} ms p99 {p(helps, 99):.0f} ms max "
          f"{max(helps) * 1000:.0f} ms; healthz p50 {p(health, 50):.0f} ms "
          f"max {max(health) * 1000:.0f} ms")
    assert still_open == IDLE_CONNECTIONS  # the flood lasted the whole stream
    assert failures == []
    assert max(health) < DEADLINE and max(helps) < DEADLINE
    assert len(helps) >= 20
