"""Fly emulator: ``FlyEmulator(token=...).start()`` serves the Machines API (``/v1``) and
api.fly.io's GraphQL releases, logs and Prometheus on 127.0.0.1; ``seed_hotel_voice_bot``
loads the demo app (releases v1..v5: v4 changes only config, v5 runs 1.4.0, current and bad).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from typing import Any

from .server import MAX_HOLD_SECONDS, Fault, Held, HttpFront, RequestRecord, Router
from .state import FlyError, FlyState, Lease, Release
from .validation import BodyValidator, load_schemas

DEFAULT_TOKEN = "fly-emulator-token"  # a personal access token: sent as ``Bearer``
# An org deploy token as `fly tokens create deploy` prints it: "FlyV1 fm2_<macaroon>,fm2_<
# discharge>"; the API wants the macaroons after the ``FlyV1`` scheme (server.py).
DEFAULT_MACAROON = "fm2_lJPECAAAAAAAAemulatormacaroon"
DEFAULT_DEPLOY_TOKEN = f"FlyV1 {DEFAULT_MACAROON},fm2_lJPEdischargeemulator"
SEED_APP = "hotel-voice-bot"
SEED_ORG = "hotel"
SEED_VERSIONS = ("1.1.0", "1.2.0", "1.3.0", "1.4.0")


def seed_image(version: str, app: str = SEED_APP) -> str:
    digest = hashlib.sha256(f"{app}:{version}".encode()).hexdigest()
    return f"registry.fly.io/{app}:{version}@sha256:{digest}"


class FlyEmulator:
    """State + HTTP front. ``start_delay``: seconds an updated/started machine spends in
    ``replacing``/``starting``; ``stop_delay``: seconds a stopped machine spends in
    ``stopping`` (default: ``start_delay``); ``check_delay``: seconds before checks pass after
    start; ``clock``: unix time used for lease expiry (tests advance it instead of sleeping)."""

    def __init__(self, *, token: str = DEFAULT_TOKEN, start_delay: float = 0.05,
                 check_delay: float = 0.0, clock: Callable[[], float] = time.time,
                 port: int = 0, stop_delay: float | None = None,
                 macaroon: str = DEFAULT_MACAROON, spec_path: str | None = None) -> None:
        self.state = FlyState(start_delay=start_delay, check_delay=check_delay, clock=clock,
                              stop_delay=stop_delay)
        self.schemas = load_schemas(spec_path)  # .origin: the spec file, or "embedded ..."
        self.http = HttpFront(Router(self.state, BodyValidator(self.schemas)), token, port,
                              macaroon=macaroon)
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
        """Machines on ``image`` start, but their health checks fail."""
        with self.state.cond:
            self.state.bad_images.add(image)

    def mark_crashing(self, image: str) -> None:
        """``image``'s process exits at once: the restart policy applies, then ``failed``."""
        with self.state.cond:
            self.state.crashing_images.add(image)

    def mark_unlaunchable(self, image: str) -> None:
        """The registry cannot serve ``image``: a machine updated to it is ``launch_failed``."""
        with self.state.cond:
            self.state.unlaunchable_images.add(image)

    def drop_series(self, machine_id: str, metric: str) -> None:
        """The org's Prometheus has no ``metric`` series for this machine (a scrape gap)."""
        with self.state.cond:
            self.http.router.metrics.missing.add((machine_id, metric))

    def releases(self, app: str) -> list[Release]:
        """The app's releases, newest first (what `fly releases` lists)."""
        with self.state.cond:
            return sorted(self.state.app(app).releases, key=lambda r: -r.version)

    def set_secret(self, app: str, name: str, value: str) -> None:
        with self.state.cond:
            self.state.set_secret(app, name, value)

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


def machine_config(image: str, release: int, process_group: str = "app", *,
                   release_id: str = "", env: dict[str, str] | None = None) -> dict[str, Any]:
    """A flyctl-shaped machine config: metadata as flyctl's machines deploy writes it
    (internal/command/deploy/machines_launchinput.go: fly_release_id, fly_release_version,
    fly_platform_version, fly_process_group, fly_flyctl_version), env, guest, services,
    checks, restart policy."""
    return {
        "image": image,
        "env": dict(env or {"PRIMARY_REGION": "fra", "LOG_LEVEL": "info"}),
        "guest": {"cpu_kind": "shared", "cpus": 1, "memory_mb": 512},
        "metadata": {"fly_release_id": release_id, "fly_release_version": str(release),
                     "fly_platform_version": "v2", "fly_process_group": process_group,
                     "fly_flyctl_version": "0.3.40"},
        "services": [{"protocol": "tcp", "internal_port": 8080,
                      "ports": [{"port": 443, "handlers": ["tls", "http"]}],
                      "autostart": True, "autostop": False}],
        "checks": {"health": {"type": "http", "port": 8080, "path": "/health",
                              "interval": "10s", "timeout": "2s", "grace_period": "5s"}},
        "restart": {"policy": "on-failure", "max_retries": 10},
    }


def app_definition(app: str, config: dict[str, Any]) -> dict[str, Any]:
    """The release's ``definition`` (CreateReleaseInput): the app's fly.toml as JSON, the
    parts a machine config is made from (flyctl internal/appconfig)."""
    return {"app": app, "primary_region": "fra", "env": dict(config.get("env") or {}),
            "services": config.get("services") or [], "checks": config.get("checks") or {},
            "vm": [config.get("guest") or {}],
            "restart": [config.get("restart") or {}]}


# The seeded releases, oldest first: (image version, env, secrets set just before it).
# v4 is a config/secret-only release (same image as v3), as `fly secrets set` or a fly.toml
# change deploys one; v5 adds a feature flag with the bad image.
_BASE_ENV = {"PRIMARY_REGION": "fra", "LOG_LEVEL": "info"}
SEED_RELEASES: tuple[tuple[str, dict[str, str], tuple[str, ...]], ...] = (
    ("1.1.0", _BASE_ENV, ("DATABASE_URL",)),
    ("1.2.0", _BASE_ENV, ()),
    ("1.3.0", _BASE_ENV, ()),
    ("1.3.0", {**_BASE_ENV, "LOG_LEVEL": "debug"}, ("WAHA_API_KEY",)),
    ("1.4.0", {**_BASE_ENV, "LOG_LEVEL": "debug", "FEATURE_NEW_ASR": "on"}, ()),
)


def seed_hotel_voice_bot(emulator: FlyEmulator, *, machines: int = 3,
                         app: str = SEED_APP, org: str = SEED_ORG) -> list[str]:
    """App with ``machines`` started machines and releases v1..v5 (one day apart, all
    complete): v1-v3 images 1.1.0-1.3.0, v4 config and a secret only (image 1.3.0), v5 1.4.0,
    current and marked bad (its health checks fail). The last machine was created at v4, so
    its versions start there. Returns the machine ids."""
    st = emulator.state
    st.add_app(app, org)
    start = time.time() - 86400 * (len(SEED_RELEASES) + 1)
    configs = []
    with st.cond:
        for n, (version, env, secrets) in enumerate(SEED_RELEASES):
            at = start + n * 86400
            for name in secrets:
                st.set_secret(app, name, f"{name.lower()}-seed-{n}", at=at - 3600)
            image = seed_image(version, app)
            config = machine_config(image, n + 1, env=env)
            release = st.add_release(app, image, status="complete", description="Release",
                                     user_email="ops@hotel.example",
                                     definition=app_definition(app, config), at=at)
            config["metadata"]["fly_release_id"] = release.id
            configs.append(config)
    ids = []
    for i in range(machines):
        machine_id = f"{0x148e0000 + i:x}d{i:03d}"
        late = i == machines - 1 and machines > 1
        history = configs[3:] if late else configs
        st.add_machine(app, machine_id, f"{app}-{i + 1}",
                                 ("fra", "ams", "cdg")[i % 3], history,
                                 start=start + (3 * 86400 if late else 0) + i)
        ids.append(machine_id)
    emulator.mark_bad(seed_image(SEED_RELEASES[-1][0], app))
    with st.cond:  # what the machines have logged since v5 went out
        for machine in st.app(app).machines.values():
            st.log(machine, "Machine started", provider="runner")
            st.log(machine, "GET /health 503 Service Unavailable", level="error")
    with st.cond:  # the registry resolves each seeded tag to its digest
        for version in SEED_VERSIONS:
            name, _, digest = seed_image(version, app).partition("@")
            st.registry_digests[name] = digest
    return ids


__all__ = ["DEFAULT_DEPLOY_TOKEN", "DEFAULT_MACAROON", "DEFAULT_TOKEN", "SEED_APP", "SEED_ORG",
           "SEED_RELEASES", "SEED_VERSIONS", "FlyEmulator", "FlyError", "Held", "RequestRecord",
           "app_definition", "machine_config", "seed_hotel_voice_bot", "seed_image"]
