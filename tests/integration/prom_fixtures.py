"""Pytest fixtures that run the real Prometheus server (Debian package) on loopback.

``prometheus_server(["127.0.0.1:8081"])`` starts a private Prometheus scraping those
targets every second and returns a handle with query and wait-on-condition helpers.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import httpx
import pytest

from bot.integrations.errors import PrometheusError
from bot.integrations.prometheus import Sample, instant_query, range_query

Targets = Sequence[str] | Mapping[str, Sequence[str]]
READY_TIMEOUT = 30.0


class PrometheusFactory(Protocol):
    def __call__(self, targets: Targets, *, scrape_interval: str = "1s") -> PrometheusServer: ...


@dataclass
class PrometheusServer:
    """One running Prometheus; ``url`` is its base URL for ``bot.integrations.prometheus``."""

    url: str
    process: subprocess.Popen[bytes]
    workdir: Path
    client: httpx.Client = field(default_factory=lambda: httpx.Client(timeout=5.0))

    @property
    def log_path(self) -> Path:
        return self.workdir / "prometheus.log"

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

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
        if self.process.poll() is None:
            self.process.terminate()  # SIGTERM: Prometheus closes the TSDB cleanly
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        self.client.close()


def find_prometheus() -> str | None:
    """``$PROMETHEUS_BIN``, else ``prometheus`` on PATH, else Debian's path."""
    explicit = os.environ.get("PROMETHEUS_BIN")
    if explicit:
        return explicit if os.access(explicit, os.X_OK) else None
    found = shutil.which("prometheus")
    if found:
        return found
    return "/usr/bin/prometheus" if os.access("/usr/bin/prometheus", os.X_OK) else None


def render_config(targets: Targets, *, scrape_interval: str) -> str:
    """A prometheus.yml scraping ``targets`` (one job per mapping key, else job ``demo``)."""
    jobs = dict(targets) if isinstance(targets, Mapping) else {"demo": list(targets)}
    config = {
        # scrape_timeout defaults to 10s and must not exceed the interval.
        "global": {
            "scrape_interval": scrape_interval,
            "scrape_timeout": scrape_interval,
            "evaluation_interval": scrape_interval,
        },
        "scrape_configs": [
            {"job_name": job, "static_configs": [{"targets": list(addrs)}]}
            for job, addrs in jobs.items()
        ],
    }
    # JSON is valid YAML; no YAML emitter needed for a file only Prometheus reads.
    return json.dumps(config, indent=2)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_prometheus(
    binary: str, workdir: Path, targets: Targets, *, scrape_interval: str = "1s"
) -> PrometheusServer:
    """Start Prometheus in ``workdir`` and return once ``/-/ready`` answers 200."""
    workdir.mkdir(parents=True, exist_ok=True)
    config_path = workdir / "prometheus.yml"
    config_path.write_text(render_config(targets, scrape_interval=scrape_interval))
    extra_flags = _speedup_flags(binary)
    last_log = ""
    # The free port can be taken between probing and Prometheus binding it; retry then.
    for _attempt in range(3):
        port = _free_port()
        log_file = (workdir / "prometheus.log").open("wb")
        process = subprocess.Popen(
            [
                binary,
                f"--config.file={config_path}",
                f"--storage.tsdb.path={workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--storage.tsdb.retention.time=1h",
                "--log.level=info",
                *extra_flags,
            ],
            stdout=log_file,
            # Same process group as pytest on purpose: a Ctrl-C stops Prometheus too
            # instead of leaving it orphaned when teardown never runs.
            stderr=subprocess.STDOUT,
        )
        log_file.close()
        server = PrometheusServer(url=f"http://127.0.0.1:{port}", process=process, workdir=workdir)
        if _wait_ready(server):
            return server
        last_log = server.log_tail()
        server.stop()
        if "address already in use" not in last_log:
            break
    raise RuntimeError(f"Prometheus did not become ready; log tail:\n{last_log}")


@functools.cache
def _speedup_flags(binary: str) -> tuple[str, ...]:
    # New targets are picked up on the scrape manager's reload tick, 5s by default. The
    # hidden flag below shortens it where honoured (recent releases; e.g. 2.42 in Debian 12
    # accepts it but clamps to 5s). Probe it: an unknown flag would abort the start.
    flag = "--scrape.discovery-reload-interval=1s"
    probe = subprocess.run([binary, flag, "--version"], capture_output=True, check=False)
    return (flag,) if probe.returncode == 0 else ()


def _wait_ready(server: PrometheusServer) -> bool:
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            return False
        try:
            if server.client.get(f"{server.url}/-/ready", timeout=1.0).status_code == 200:
                return True
        except httpx.HTTPError:
            pass  # not listening yet
        time.sleep(0.1)
    return False


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
