"""A real Prometheus server (the Debian package's binary) scraping sandbox targets on loopback.

The sandbox has no Prometheus stand-in on purpose: the release watcher and the monitoring
read Prometheus' HTTP API, and only the real server answers PromQL faithfully (``rate``
windows, extrapolation, range-query alignment). ``SandboxPrometheus`` runs one privately,
scraping every second, for the drills that need error-rate data (``sandbox.drill``).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

import httpx

READY_TIMEOUT = 30.0


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


class SandboxPrometheus:
    """One Prometheus in ``workdir`` scraping ``targets`` (``host:port``) as job ``demo``."""

    def __init__(self, *, targets: Sequence[str], workdir: Path, binary: str | None = None,
                 scrape_interval: str = "1s") -> None:
        self.targets = list(targets)
        self.workdir = workdir
        self.binary = binary or find_prometheus()
        self.scrape_interval = scrape_interval
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
        interval = self.scrape_interval
        # JSON is valid YAML; scrape_timeout must not exceed the interval (default 10 s).
        config.write_text(json.dumps({
            "global": {"scrape_interval": interval, "scrape_timeout": interval,
                       "evaluation_interval": interval},
            "scrape_configs": [{"job_name": "demo",
                                "static_configs": [{"targets": self.targets}]}]}, indent=2))
        tail = ""
        for _attempt in range(3):  # the free port can be taken before Prometheus binds it
            port = _free_port()
            with self.log_path.open("wb") as log_file:
                self._process = subprocess.Popen(
                    [self.binary, f"--config.file={config}",
                     f"--storage.tsdb.path={self.workdir / 'data'}",
                     f"--web.listen-address=127.0.0.1:{port}",
                     "--storage.tsdb.retention.time=1h", "--log.level=warn"],
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
