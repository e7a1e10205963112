"""A real Prometheus server (the Debian package's binary) scraping sandbox targets on loopback.

The sandbox has no Prometheus stand-in on purpose: the release watcher and the monitoring
read Prometheus' HTTP API, and only the real server answers PromQL faithfully (``rate``
windows, extrapolation, range-query alignment). ``SandboxPrometheus`` runs one privately,
scraping every second, for the drills that need error-rate data (``sandbox.drill``); the
test suite's Prometheus fixtures (``tests/integration/prom_fixtures.py``) run theirs with it.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import httpx

READY_TIMEOUT = 30.0

# ``host:port`` targets of job ``demo``, or targets per job name.
Targets = Sequence[str] | Mapping[str, Sequence[str]]


class PrometheusUnavailable(Exception):
    """No Prometheus binary here, or it would not start; the message says what to do."""


def find_prometheus() -> str | None:
    """``$PROMETHEUS_BIN``, else ``prometheus`` on PATH, else Debian's path."""
    explicit = os.environ.get("PROMETHEUS_BIN")
    if explicit:
        return explicit if os.access(explicit, os.X_OK) else None
    return shutil.which("prometheus") or (
        "/usr/bin/prometheus" if os.access("/usr/bin/prometheus", os.X_OK) else None)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def render_config(targets: Targets, *, scrape_interval: str) -> str:
    """A prometheus.yml scraping ``targets`` (one job per mapping key, else job ``demo``)."""
    jobs = dict(targets) if isinstance(targets, Mapping) else {"demo": list(targets)}
    # JSON is valid YAML; scrape_timeout must not exceed the interval (default 10 s).
    return json.dumps({
        "global": {"scrape_interval": scrape_interval, "scrape_timeout": scrape_interval,
                   "evaluation_interval": scrape_interval},
        "scrape_configs": [{"job_name": job, "static_configs": [{"targets": list(addrs)}]}
                           for job, addrs in jobs.items()]}, indent=2)


@functools.cache
def _speedup_flags(binary: str) -> tuple[str, ...]:
    # New targets are picked up on the scrape manager's reload tick, 5s by default. The
    # hidden flag below shortens it where honoured (recent releases; e.g. 2.42 in Debian 12
    # accepts it but clamps to 5s). Probe it: an unknown flag would abort the start.
    flag = "--scrape.discovery-reload-interval=1s"
    probe = subprocess.run([binary, flag, "--version"], capture_output=True, check=False)
    return (flag,) if probe.returncode == 0 else ()


class SandboxPrometheus:
    """One Prometheus in ``workdir`` scraping ``targets``."""

    def __init__(self, *, targets: Targets, workdir: Path, binary: str | None = None,
                 scrape_interval: str = "1s", log_level: str = "warn") -> None:
        self.targets = targets
        self.workdir = workdir
        self.binary = binary or find_prometheus()
        self.scrape_interval = scrape_interval
        self.log_level = log_level
        self.url = ""
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def log_path(self) -> Path:
        return self.workdir / "prometheus.log"

    def start(self) -> SandboxPrometheus:
        if self.binary is None:
            raise PrometheusUnavailable(
                "This drill needs a real Prometheus and none was found: install the Debian "
                "package `prometheus` (apt-get install prometheus) or set PROMETHEUS_BIN.")
        self.workdir.mkdir(parents=True, exist_ok=True)
        config = self.workdir / "prometheus.yml"
        config.write_text(render_config(self.targets, scrape_interval=self.scrape_interval))
        tail = ""
        for _attempt in range(3):  # the free port can be taken before Prometheus binds it
            port = _free_port()
            with self.log_path.open("wb") as log_file:
                self._process = subprocess.Popen(
                    [self.binary, f"--config.file={config}",
                     f"--storage.tsdb.path={self.workdir / 'data'}",
                     f"--web.listen-address=127.0.0.1:{port}",
                     "--storage.tsdb.retention.time=1h", f"--log.level={self.log_level}",
                     *_speedup_flags(self.binary)],
                    stdout=log_file, stderr=subprocess.STDOUT)
            self.url = f"http://127.0.0.1:{port}"
            if self._wait_ready():
                return self
            tail = self.log_tail()
            self.stop()
            if "address already in use" not in tail:
                break
        raise PrometheusUnavailable(f"Prometheus did not become ready; log tail:\n{tail}")

    def _wait_ready(self) -> bool:
        deadline = time.monotonic() + READY_TIMEOUT
        with httpx.Client(timeout=1.0) as client:
            while time.monotonic() < deadline:
                if self._process is None or self._process.poll() is not None:
                    return False
                try:
                    if client.get(f"{self.url}/-/ready").status_code == 200:
                        return True
                except httpx.HTTPError:
                    pass  # not listening yet
                time.sleep(0.1)  # polling the readiness endpoint with a deadline
        return False

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()  # SIGTERM: Prometheus closes its TSDB cleanly
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
