"""Kubernetes API server emulator: ``KubeEmulator(seed=..., rollout_duration=...).start()``,
then ``emulator.api_client()`` for the Python client or ``write_kubeconfig(path)`` for kubectl.
"""

from __future__ import annotations

from .emulator import KubeEmulator
from .http import HeldRequest, RequestRecord
from .store import ApiError

__all__ = ["ApiError", "HeldRequest", "KubeEmulator", "RequestRecord"]
