"""Fly Machines API emulator: ``FlyEmulator(token=...).start()`` serves ``/v1`` on
127.0.0.1; ``seed_hotel_voice_bot(emulator)`` loads the demo app (1.4.0 current and bad).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from typing import Any

from .server import MAX_HOLD_SECONDS, Fault, Held, HttpFront, RequestRecord, Router
from .state import FlyError, FlyState, Lease

DEFAULT_TOKEN = "fly-emulator-token"
SEED_APP = "hotel-voice-bot"
SEED_ORG = "hotel"
SEED_VERSIONS = ("1.1.0", "1.2.0", "1.3.0", "1.4.0")


def seed_image(version: str, app: str = SEED_APP) -> str:
    digest = hashlib.sha256(f"{app}:{version}".encode()).hexdigest()
    return f"registry.fly.io/{app}:{version}@sha256:{digest}"


class FlyEmulator:
    """State + HTTP front. ``start_delay``: seconds an updated/started machine spends in
    ``updating``/``starting``; ``stop_delay``: seconds a stopped machine spends in
    ``stopping`` (default: ``start_delay``); ``check_delay``: seconds before checks pass after
    start; ``clock``: unix time used for lease expiry (tests advance it instead of sleeping)."""

    def __init__(self, *, token: str = DEFAULT_TOKEN, start_delay: float = 0.05,
                 check_delay: float = 0.0, clock: Callable[[], float] = time.time,
                 port: int = 0, stop_delay: float | None = None) -> None:
        self.state = FlyState(start_delay=start_delay, check_delay=check_delay, clock=clock,
                              stop_delay=stop_delay)
        self.http = HttpFront(Router(self.state), token, port)
        self.url = ""

    def start(self) -> FlyEmulator:
        self.url = self.http.start()
        return self

    def stop(self) -> None:
        self.http.stop()

    def __enter__(self) -> FlyEmulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------ test helpers
    @property
    def requests(self) -> list[RequestRecord]:
        with self.http._lock:
            return list(self.http.requests)

    def fail_next(self, method: str, path_suffix: str, status: int, *, times: int = 1,
                  retry_after: str | None = None) -> None:
        with self.http._lock:
            self.http.faults.append(Fault(method, path_suffix, status, times, retry_after))

    def hold(self, method: str, path_suffix: str, *, times: int = 1,
             max_hold: float = MAX_HOLD_SECONDS) -> Held:
        """Hold the next ``times`` requests ``method ...path_suffix`` until ``release()`` (or
        ``max_hold`` seconds), then process them as received: lease and version are checked
        against the machine as it is by then, and the answer goes to whoever still listens."""
        held = Held(method, path_suffix, times, max_hold)
        with self.http._lock:
            self.http.holds.append(held)
        return held

    def machines(self, app: str) -> list[dict[str, Any]]:
        with self.state.cond:
            a = self.state.app(app)
            return [self.state.machine_json(app, m) for m in a.machines.values()]

    def set_stop_delay(self, seconds: float) -> None:
        with self.state.cond:
            self.state.stop_delay = seconds

    def mark_bad(self, image: str) -> None:
        with self.state.cond:
            self.state.bad_images.add(image)

    def hold_lease(self, app: str, machine_id: str, *, ttl: int = 60,
                   owner: str = "someone-else@example.com") -> Lease:
        with self.state.cond:
            m = self.state.machine(app, machine_id)
            return self.state.create_lease(m, None, ttl, "manual deploy", owner)

    def lease(self, app: str, machine_id: str) -> Lease | None:
        with self.state.cond:
            m = self.state.machine(app, machine_id)
            if m.lease is not None and m.lease.expires_at <= self.state.clock():
                m.lease = None
            return m.lease


def machine_config(image: str, release: int, process_group: str = "app") -> dict[str, Any]:
    """A flyctl-shaped machine config (metadata, env, guest, services, checks)."""
    return {
        "image": image,
        "env": {"PRIMARY_REGION": "fra", "LOG_LEVEL": "info"},
        "guest": {"cpu_kind": "shared", "cpus": 1, "memory_mb": 512},
        "metadata": {"fly_release_version": str(release), "fly_platform_version": "v2",
                     "fly_process_group": process_group, "fly_flyctl_version": "0.3.40"},
        "services": [{"protocol": "tcp", "internal_port": 8080,
                      "ports": [{"port": 443, "handlers": ["tls", "http"]}],
                      "autostart": True, "autostop": False}],
        "checks": {"health": {"type": "http", "port": 8080, "path": "/health",
                              "interval": "10s", "timeout": "2s", "grace_period": "5s"}},
        "restart": {"policy": "on-failure", "max_retries": 10},
    }


def seed_hotel_voice_bot(emulator: FlyEmulator, *, machines: int = 3,
                         app: str = SEED_APP, org: str = SEED_ORG) -> list[str]:
    """App with ``machines`` started machines, versions 1.1.0..1.4.0 (one day apart);
    1.4.0 is current and marked bad (its health checks fail). Returns the machine ids."""
    st = emulator.state
    st.add_app(app, org)
    history = [machine_config(seed_image(v, app), n)
               for n, v in enumerate(SEED_VERSIONS, start=1)]
    start = time.time() - 86400 * (len(SEED_VERSIONS) + 1)
    ids = []
    for i in range(machines):
        machine_id = f"{0x148e0000 + i:x}d{i:03d}"
        st.add_machine(app, machine_id, f"{app}-{i + 1}", ("fra", "ams", "cdg")[i % 3],
                       history, start=start + i)
        ids.append(machine_id)
    emulator.mark_bad(seed_image(SEED_VERSIONS[-1], app))
    with st.cond:  # the registry resolves each seeded tag to its digest
        for version in SEED_VERSIONS:
            name, _, digest = seed_image(version, app).partition("@")
            st.registry_digests[name] = digest
    return ids


__all__ = ["DEFAULT_TOKEN", "SEED_APP", "SEED_ORG", "SEED_VERSIONS", "FlyEmulator", "FlyError",
           "Held", "RequestRecord", "machine_config", "seed_hotel_voice_bot", "seed_image"]
