"""Pytest fixtures that run the real Prometheus server (Debian package) on loopback.

``prometheus_server(["127.0.0.1:8081"])`` starts a private Prometheus scraping those
targets every second and returns a handle with query and wait-on-condition helpers. The
process is ``sandbox.prometheus.SandboxPrometheus``, the one the drills run.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import httpx
import pytest

from bot.integrations.errors import PrometheusError
from bot.integrations.prometheus import Sample, instant_query, range_query
from sandbox.demo import DemoService
from sandbox.prometheus import SandboxPrometheus, Targets, find_prometheus


class PrometheusFactory(Protocol):
    def __call__(self, targets: Targets, *, scrape_interval: str = "1s") -> PrometheusServer: ...


@dataclass
class PrometheusServer:
    """One running Prometheus; ``url`` is its base URL for ``bot.integrations.prometheus``."""

    url: str
    runner: SandboxPrometheus  # the process (``sandbox.prometheus``: the drills run it too)
    client: httpx.Client = field(default_factory=lambda: httpx.Client(timeout=5.0))

    def log_tail(self, lines: int = 30) -> str:
        return self.runner.log_tail(lines)

    def query(self, promql: str) -> float | None:
        return instant_query(self.url, promql, client=self.client)

    def query_range(
        self, promql: str, *, start: float, end: float, step: float = 1.0
    ) -> list[Sample]:
        return range_query(self.url, promql, start=start, end=end, step=step, client=self.client)

    def wait_for(
        self,
        promql: str,
        predicate: Callable[[float | None], bool],
        *,
        timeout: float = 60.0,
        interval: float = 0.5,
        what: str = "condition",
    ) -> float | None:
        """Poll ``promql`` until ``predicate(value)`` holds; fail with the value history."""
        started = time.monotonic()
        history: list[str] = []
        while True:
            try:
                value = self.query(promql)
            except PrometheusError as exc:  # e.g. while the first scrapes are still missing
                history.append(f"{time.monotonic() - started:5.1f}s error: {exc}")
            else:
                history.append(f"{time.monotonic() - started:5.1f}s {value!r}")
                if predicate(value):
                    return value
            if time.monotonic() - started > timeout:
                pytest.fail(
                    f"Prometheus: {what} not reached within {timeout:.0f}s for {promql!r}; "
                    "last values:\n  " + "\n  ".join(history[-12:]),
                    pytrace=False,
                )
            time.sleep(interval)

    def wait_targets_up(self, *, timeout: float = 30.0) -> None:
        """Wait until every target has been scraped successfully at least once."""
        deadline = time.monotonic() + timeout
        states: list[tuple[str, str, str]] = []
        while time.monotonic() < deadline:
            body = self.client.get(f"{self.url}/api/v1/targets").json()
            states = [
                (t["scrapeUrl"], t["health"], t.get("lastError", ""))
                for t in body["data"]["activeTargets"]
            ]
            if states and all(health == "up" for _, health, _ in states):
                return
            time.sleep(0.2)
        pytest.fail(f"Prometheus targets not up within {timeout:.0f}s: {states}", pytrace=False)

    def stop(self) -> None:
        self.runner.stop()
        self.client.close()


def start_prometheus(
    binary: str, workdir: Path, targets: Targets, *, scrape_interval: str = "1s"
) -> PrometheusServer:
    """Start Prometheus in ``workdir`` and return once ``/-/ready`` answers 200."""
    runner = SandboxPrometheus(targets=targets, workdir=workdir, binary=binary,
                               scrape_interval=scrape_interval, log_level="info").start()
    return PrometheusServer(url=runner.url, runner=runner)


def scraping(factory: PrometheusFactory, demo: DemoService, *,
             healthy: str | None = None, timeout: float = 30.0) -> PrometheusServer:
    """A Prometheus scraping ``demo`` with its target up and, given the ``healthy`` error-ratio
    query, a healthy baseline (under 1 %) on record before the test breaks anything."""
    server = factory([demo.target])
    server.wait_targets_up()
    if healthy is not None:
        server.wait_for(healthy, lambda v: v is not None and v < 0.01, timeout=timeout,
                        what="a healthy error-rate baseline")
    return server


@pytest.fixture(scope="session")
def prometheus_binary() -> str:
    """Path of the Prometheus binary; fails on CI (where it must exist), skips locally."""
    binary = find_prometheus()
    if binary is None:
        message = (
            "Prometheus binary not found (install the Debian package `prometheus`, "
            "run .ci/install-system-deps.sh, or set PROMETHEUS_BIN)"
        )
        if os.environ.get("CI"):
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    return binary


@pytest.fixture(scope="session")
def prometheus_server(
    prometheus_binary: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[PrometheusFactory]:
    """Factory: ``prometheus_server(targets, scrape_interval="1s") -> PrometheusServer``.

    Each call starts its own Prometheus so tests never see each other's series; all are
    stopped at session end (call ``.stop()`` to free one earlier).
    """
    started: list[PrometheusServer] = []

    def start(targets: Targets, *, scrape_interval: str = "1s") -> PrometheusServer:
        workdir = tmp_path_factory.mktemp("prometheus")
        server = start_prometheus(
            prometheus_binary, workdir, targets, scrape_interval=scrape_interval
        )
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()
