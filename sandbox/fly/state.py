"""In-memory Fly state: apps, machines with config versions (ULIDs), leases, lazy state
transitions (replacing/starting -> started, stopping -> stopped, crashes -> failed) and health
checks; the app-level records of Fly's GraphQL API (releases, secrets) and its log buffer.
"""

# Machine states follow fly.io/docs/machines/machine-states/: persistent ``created``,
# ``started``, ``stopped``, ``suspended``, ``failed``; transient ``starting``, ``stopping``,
# ``replacing`` (a user-initiated config change such as a new image), ``destroying``;
# ``launch_failed`` when the machine could not be launched at all (here: an image the registry
# cannot serve). Updating a machine that is not running does not start it when the update
# says ``skip_launch``: it is left ``created`` (the docs: "created: initial status", also what
# a machine is after an update that did not launch it), and ``POST .../start`` starts it like
# a stopped one. A crashing image follows the config's restart policy (``restart.policy``
# "no" | "always" | "on-failure" with ``max_retries``, fly.io/docs/machines/api/
# machines-resource/ "restart" and fly-go machine_types.go MachineRestart; flyd's default for
# on-failure is 10 retries): each retry is one more start, after the last the machine is
# ``failed``; with "always" it keeps restarting and never settles. flyd records every attempt
# as it happens: a ``start`` machine event when the process starts and an ``exit`` event when
# it exits (the event log `fly machine status` shows; MachineEvent in the Machines OpenAPI
# spec), so here each attempt adds one ``start`` (started) and one ``exit`` event, once its
# time (``start_delay``) has come: ``stopped`` while a restart follows, ``failed`` after the
# last (which status strings flyd puts on intermediate exits is not documented; ours).
# The Machines OpenAPI spec (Machine.state) only says
# "string"; its ``GET .../wait`` accepts ``state`` in {started, stopped, destroyed} and answers
# 200 once there, or an error after ``timeout`` (we answer 408 deadline_exceeded, as the API
# does). ``POST .../stop`` takes an optional StopRequest {signal, timeout}: the machine is
# ``stopping`` while its process shuts down, for ``stop_delay`` seconds here, but never
# longer than the request's ``timeout`` (after which the VM is killed).
#
# Leases and versions, as the real API refuses them (both HTTP 409 Conflict):
#   * while a lease is held, a mutating call (update, start, stop, a new lease, a release)
#     without that lease's ``fly-machine-lease-nonce`` fails with "machine ID <id> lease
#     currently held by <owner>, expires at <time>" (superfly/docs
#     reference/machines/_lease_resp.erb and machines/api/machines-resource.html.markerb;
#     flyctl matches "lease currently held by" in internal/command/deploy/plan.go);
#   * an update whose ``current_version`` is not the machine's latest ``instance_id``
#     (UpdateMachineRequest in the Machines OpenAPI spec; machines-resource.html.markerb:
#     "The latest instance_id value of the Machine") fails: Fly staff list both as the 409
#     cases of Machines_update (community.fly.io/t/409-conflict-error-from-machines-api/15555;
#     412 is reserved for a volume already in use). The wording of the version error is not
#     documented; ours names both versions.
# With no lease held, a nonce is not checked: the docs only say an update fails when the
# machine *is* leased and the header is missing. Checks run when a request is processed, so a
# request held past its client's timeout meets whatever lease and version exist by then.

from __future__ import annotations

import copy
import hashlib
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
IDLE = ("stopped", "suspended", "created")  # not running; ``start`` launches them
FAILED = ("failed", "launch_failed")
TRANSITIONAL = ("replacing", "starting", "stopping")
DEFAULT_MAX_RETRIES = 10


class FlyError(Exception):
    """An API error: HTTP status + ErrorResponse ``error`` text."""

    def __init__(self, status: int, error: str) -> None:
        super().__init__(error)
        self.status, self.error = status, error


def ulid(millis: int, counter: int) -> str:
    value = (millis << 80) | (counter & ((1 << 80) - 1))
    return "".join(_CROCKFORD[(value >> (5 * i)) & 31] for i in reversed(range(26)))


def go_duration(value: Any) -> float | None:
    """Seconds in a StopRequest ``timeout``: a number or a Go duration such as "10s"."""
    if value is None or value == "":
        return None
    text = str(value).strip()
    units = (("ms", 0.001), ("s", 1.0), ("m", 60.0), ("h", 3600.0))
    try:
        for suffix, factor in units:
            if text.endswith(suffix):  # "ms" is tried before "s"
                return float(text[: -len(suffix)]) * factor
        return float(text)
    except ValueError:
        raise FlyError(400, f"invalid stop timeout {value!r}") from None


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def image_ref(image: str, registry_digests: dict[str, str] | None = None) -> dict[str, Any]:
    """ImageRef for ``registry/repository:tag@digest``; a reference without a digest is
    resolved through ``registry_digests`` (what the registry serves for that tag), as Fly
    resolves a tag when the machine is deployed."""
    name, _, digest = image.partition("@")
    digest = digest or (registry_digests or {}).get(name, "")
    registry, _, rest = name.partition("/") if "/" in name else ("", "", name)
    repository, _, tag = rest.partition(":")
    return {"registry": registry, "repository": repository, "tag": tag,
            "digest": digest or "sha256:" + hashlib.sha256(image.encode()).hexdigest(),
            "labels": {}}


@dataclass
class Lease:
    nonce: str
    expires_at: float
    owner: str
    description: str
    version: str

    def to_json(self) -> dict[str, Any]:
        return {"nonce": self.nonce, "expires_at": int(self.expires_at), "owner": self.owner,
                "description": self.description, "version": self.version}


@dataclass
class Machine:
    id: str
    name: str
    region: str
    config: dict[str, Any]
    instance_id: str
    state: str = "started"
    versions: list[tuple[str, dict[str, Any]]] = field(default_factory=list)  # newest first
    ready_at: float = 0.0  # monotonic time the transitional state settles
    started_at: float = 0.0
    lease: Lease | None = None
    created_at: float = field(default_factory=time.time)
    updated_at: float = field(default_factory=time.time)
    settles_to: str = "started"  # what the transitional state ends in
    events: list[dict[str, Any]] = field(default_factory=list)  # newest first
    # A crashing launch: when it began, how many attempts it makes (None: "always", for
    # good), and how many of their start/exit events are recorded so far.
    crash_began: float = 0.0
    crash_attempts: int | None = 0
    crash_starts: int = 0
    crash_exits: int = 0


@dataclass
class Release:
    """One row of ``fly releases``: GraphQL ReleaseUnprocessed (superfly/fly-go
    schema.graphql) as createRelease/updateRelease leave it."""

    id: str
    version: int
    image_ref: str
    status: str
    description: str
    reason: str
    user_email: str
    created_at: float
    updated_at: float
    definition: dict[str, Any] | None = None
    strategy: str = "ROLLING"
    platform_version: str = "machines"
    metadata: dict[str, Any] | None = None


@dataclass
class Secret:
    """``app.secrets`` in GraphQL: name and digest only; Fly never returns a value."""

    name: str
    digest: str
    created_at: float


@dataclass
class App:
    name: str
    org: str
    id: str
    machines: dict[str, Machine] = field(default_factory=dict)
    releases: list[Release] = field(default_factory=list)  # oldest first
    secrets: dict[str, Secret] = field(default_factory=dict)
    logs: list[dict[str, Any]] = field(default_factory=list)  # oldest first


class FlyState:
    """Thread-safe store; ``cond`` is notified on every change (the ``wait`` endpoint)."""

    def __init__(self, *, start_delay: float = 0.05, check_delay: float = 0.0,
                 clock: Callable[[], float] = time.time, stop_delay: float | None = None) -> None:
        self.start_delay, self.check_delay, self.clock = start_delay, check_delay, clock
        self.stop_delay = start_delay if stop_delay is None else stop_delay
        self.apps: dict[str, App] = {}
        self.bad_images: set[str] = set()  # start, but their health checks fail
        self.crashing_images: set[str] = set()  # the process exits: restart policy applies
        self.unlaunchable_images: set[str] = set()  # the registry cannot serve them
        self.registry_digests: dict[str, str] = {}  # "registry/repo:tag" -> "sha256:..."
        self.cond = threading.Condition()
        self._counter = 0
        self._last_ms = 0

    # ------------------------------------------------------------------ identities
    def new_ulid(self, at: float | None = None) -> str:
        millis = int((time.time() if at is None else at) * 1000)
        self._counter += 1
        self._last_ms = max(self._last_ms, millis) if at is None else millis
        return ulid(self._last_ms, self._counter)

    # ------------------------------------------------------------------- seeding
    def add_app(self, name: str, org: str) -> App:
        with self.cond:
            app = App(name, org, self.new_ulid())
            self.apps[name] = app
            return app

    def add_machine(self, app: str, machine_id: str, name: str, region: str,
                    history: list[dict[str, Any]], *, start: float) -> Machine:
        """A started machine whose versions are ``history`` (oldest first), one day apart."""
        with self.cond:
            versions = [(self.new_ulid(start + i * 86400), copy.deepcopy(c))
                        for i, c in enumerate(history)]
            versions.reverse()
            machine = Machine(machine_id, name, region, copy.deepcopy(history[-1]),
                              versions[0][0], versions=versions, started_at=time.monotonic(),
                              created_at=start)
            self.apps[app].machines[machine_id] = machine
            return machine

    # ------------------------------------------------------------------ releases
    def add_release(self, app: str, image: str, *, status: str, description: str,
                    user_email: str, definition: dict[str, Any] | None,
                    strategy: str = "ROLLING", at: float | None = None,
                    reason: str = "change_image") -> Release:
        """A new release numbered max+1 (createRelease: every deploy is one, whatever it
        changes; flyctl internal/inmem/server.go CreateRelease numbers them the same way)."""
        a = self.app(app)
        when = time.time() if at is None else at
        version = max((r.version for r in a.releases), default=0) + 1
        release = Release(id=f"rel_{self.new_ulid(when).lower()}", version=version,
                          image_ref=image, status=status, description=description,
                          reason=reason, user_email=user_email, created_at=when,
                          updated_at=when, definition=copy.deepcopy(definition),
                          strategy=strategy)
        a.releases.append(release)
        return release

    def release(self, release_id: str) -> Release:
        for app in self.apps.values():
            for release in app.releases:
                if release.id == release_id:
                    return release
        raise FlyError(404, f"Could not find Release with id {release_id!r}")

    def set_secret(self, app: str, name: str, value: str, *, at: float | None = None) -> None:
        """``fly secrets set``: Fly keeps the value write-only and shows a digest."""
        digest = hashlib.sha256(value.encode()).hexdigest()[:16]
        self.app(app).secrets[name] = Secret(name, digest, time.time() if at is None else at)

    # ------------------------------------------------------------------- lookups
    def app(self, name: str) -> App:
        if name not in self.apps:
            raise FlyError(404, f"app {name} not found")
        return self.apps[name]

    def machine(self, app: str, machine_id: str) -> Machine:
        found = self.app(app).machines.get(machine_id)
        if found is None:
            raise FlyError(404, f"machine {machine_id} not found")
        self.settle(found)
        return found

    def settle(self, m: Machine) -> float | None:
        """Apply a due transition; returns seconds until the pending one, if any."""
        self._crash_events(m)
        if m.state in TRANSITIONAL:
            remaining = m.ready_at - time.monotonic()
            if remaining > 0:
                return remaining
            m.state = "stopped" if m.state == "stopping" else m.settles_to
            if m.state == "started":
                m.started_at = time.monotonic()
            m.updated_at = time.time()
            self._transition_logs(m)
        return None

    def launch(self, m: Machine, transitional: str) -> None:
        """Start the machine's current config: ``transitional`` now, later ``started``, or
        ``launch_failed`` (image not servable) or ``failed`` (crashes past the restart
        policy; "always" keeps it ``starting`` for good)."""
        image = m.config.get("image")
        m.state = transitional
        restart = m.config.get("restart") or {}
        if image in self.unlaunchable_images:
            m.settles_to, delay = "launch_failed", self.start_delay
        elif image in self.crashing_images:
            policy = str(restart.get("policy") or "on-failure")
            retries = int(restart.get("max_retries") or DEFAULT_MAX_RETRIES)
            m.settles_to = "failed"
            attempts = None if policy == "always" else 1 + (0 if policy == "no" else retries)
            delay = float("inf") if attempts is None else self.start_delay * attempts
            m.crash_began, m.crash_attempts = time.monotonic(), attempts
            m.crash_starts = m.crash_exits = 0
        else:
            m.settles_to, delay = "started", self.start_delay
        if image not in self.crashing_images:
            m.crash_attempts = 0
        m.ready_at = time.monotonic() + delay
        self.event(m, "launch" if transitional == "replacing" else "start", "pending")
        self.log(m, f"Pulling container image {image}", provider="runner")

    def _crash_events(self, m: Machine) -> None:
        """The start/exit events of a crashing launch's attempts begun/ended by now (each
        attempt lasts ``start_delay``); once it settles ``failed``, all of them."""
        if m.crash_attempts == 0 or m.settles_to != "failed" \
                or m.state not in ("starting", "replacing"):
            return
        elapsed = time.monotonic() - m.crash_began
        step = self.start_delay if self.start_delay > 0 else 1e-9
        ended = int(elapsed / step)
        if m.crash_attempts is not None:
            ended = m.crash_attempts if m.ready_at <= time.monotonic() \
                else min(ended, m.crash_attempts)
        begun = ended if m.crash_attempts is not None and ended >= m.crash_attempts \
            else ended + 1
        while m.crash_starts < begun or m.crash_exits < ended:
            if m.crash_starts <= m.crash_exits:
                m.crash_starts += 1
                self.event(m, "start", "started")
            else:
                m.crash_exits += 1
                last = m.crash_attempts is not None and m.crash_exits >= m.crash_attempts
                self.event(m, "exit", "failed" if last else "stopped")
                if not last:
                    self.log(m, "Main child exited normally with code: 1", level="error")

    def _transition_logs(self, m: Machine) -> None:
        image = m.config.get("image")
        if m.state == "started":
            self.event(m, "start", "started")
            self.log(m, "Machine started", provider="runner")
            if image in self.bad_images:
                self.log(m, "GET /health 503 Service Unavailable", level="error")
        elif m.state == "launch_failed":
            self.event(m, "launch", "launch_failed")
            self.log(m, f"failed to launch VM: unable to pull image {image}: not found",
                     level="error", provider="runner")
        elif m.state == "failed":  # its start/exit events: _crash_events
            self.log(m, "Main child exited normally with code: 1", level="error")
            self.log(m, "machine has reached its max restart count", level="error",
                     provider="runner")
        elif m.state == "stopped":
            self.event(m, "exit", "stopped")
            self.log(m, "Machine stopped", provider="runner")

    def event(self, m: Machine, kind: str, status: str) -> None:
        """A MachineEvent (Machines OpenAPI spec), newest first as the API lists them."""
        m.events.insert(0, {"id": uuid.uuid4().hex[:26].upper(), "type": kind,
                            "status": status, "source": "flyd",
                            "timestamp": int(time.time() * 1000)})

    def log(self, m: Machine, message: str, *, level: str = "info",
            provider: str = "app") -> None:
        """One entry of the app's log stream as Fly's logs API serves it (fly-go types.go
        LogEntry: timestamp, message, level, instance, region, meta)."""
        for app in self.apps.values():
            if app.machines.get(m.id) is m:
                app.logs.append({
                    "timestamp": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
                    "message": message, "level": level, "instance": m.id,
                    "region": m.region,
                    "meta": {"instance": m.id, "region": m.region,
                             "event": {"provider": provider}}})
                del app.logs[:-1000]  # a bounded buffer, as the API keeps recent logs only
                return

    def checks(self, m: Machine) -> list[dict[str, Any]]:
        defined = sorted((m.config.get("checks") or {}).keys())
        if m.state != "started":
            return []
        if m.config.get("image") in self.bad_images:
            status, output = "critical", "HTTP GET /health: 503 Service Unavailable"
        elif time.monotonic() - m.started_at < self.check_delay:
            status, output = "warning", "waiting for first check"
        else:
            status, output = "passing", "HTTP GET /health: 200 OK"
        return [{"name": n, "status": status, "output": output,
                 "updated_at": iso(time.time())} for n in defined]

    def machine_json(self, app: str, m: Machine) -> dict[str, Any]:
        self.settle(m)
        region = self.apps[app].machines[m.id].region
        return {"id": m.id, "name": m.name, "state": m.state, "region": region,
                "instance_id": m.instance_id, "private_ip": "fdaa:0:1::" + m.id[-4:],
                "config": copy.deepcopy(m.config),
                "image_ref": image_ref(m.config["image"], self.registry_digests),
                "created_at": iso(m.created_at), "updated_at": iso(m.updated_at),
                "checks": self.checks(m), "events": copy.deepcopy(m.events[:10])}

    # -------------------------------------------------------------------- leases
    def check_lease(self, m: Machine, nonce: str | None) -> None:
        lease = m.lease
        if lease is not None and lease.expires_at <= self.clock():
            m.lease = lease = None
        if lease is not None and nonce != lease.nonce:
            expires = datetime.fromtimestamp(lease.expires_at, tz=UTC)
            raise FlyError(409, f"machine ID {m.id} lease currently held by {lease.owner}, "
                                f"expires at {expires:%Y-%m-%d %H:%M:%S} +0000 UTC")

    def create_lease(self, m: Machine, nonce: str | None, ttl: int, description: str,
                     owner: str) -> Lease:
        self.check_lease(m, nonce)
        if m.lease is not None:  # refresh by the holder
            m.lease.expires_at = self.clock() + ttl
            return m.lease
        m.lease = Lease(uuid.uuid4().hex, self.clock() + ttl, owner, description,
                        m.instance_id)
        return m.lease

    # ---------------------------------------------------------------- mutations
    def update(self, m: Machine, body: dict[str, Any], nonce: str | None) -> None:
        self.check_lease(m, nonce)
        config = body.get("config")
        if not isinstance(config, dict) or not isinstance(config.get("image"), str):
            raise FlyError(400, "config.image is required")
        current = body.get("current_version")
        if current and current != m.instance_id:
            raise FlyError(409, f"machine {m.id} version mismatch: current_version {current} "
                                f"is not the latest version {m.instance_id}")
        m.config = copy.deepcopy(config)
        m.instance_id = self.new_ulid()
        m.versions.insert(0, (m.instance_id, copy.deepcopy(config)))
        m.updated_at = time.time()
        if m.lease is not None:
            m.lease.version = m.instance_id
        self.event(m, "update", "pending")
        if m.state in IDLE + FAILED and body.get("skip_launch"):
            m.state = "created"  # updated, not launched (module comment)
        else:
            self.launch(m, "replacing")
        self.cond.notify_all()

    def set_metadata(self, m: Machine, key: str, value: str | None) -> None:
        """One metadata key set (or, with None, deleted) in the machine's config, in place:
        the docs describe no lease check, new version or restart for it (server.py cites
        them), so the machine keeps its ``instance_id`` and state."""
        metadata = dict(m.config.get("metadata") or {})
        if value is None:
            metadata.pop(key, None)
        else:
            metadata[key] = value
        m.config["metadata"] = metadata
        m.updated_at = time.time()
        self.cond.notify_all()

    def power(self, m: Machine, action: str, nonce: str | None,
              body: dict[str, Any] | None = None) -> None:
        self.check_lease(m, nonce)
        if action == "start" and m.state in IDLE + FAILED:
            self.launch(m, "starting")
        elif action == "stop" and m.state not in IDLE + FAILED and m.state != "stopping":
            grace = go_duration((body or {}).get("timeout"))
            delay = self.stop_delay if grace is None else min(self.stop_delay, grace)
            m.state, m.ready_at = "stopping", time.monotonic() + delay
            self.event(m, "stop", "pending")
        m.updated_at = time.time()
        self.cond.notify_all()

    def wait(self, m: Machine, state: str, instance_id: str | None, timeout: float) -> bool:
        """Block (``cond`` held) until the machine is in ``state`` (for ``instance_id``)."""
        deadline = time.monotonic() + timeout
        while True:
            pending = self.settle(m)
            if m.state == state and instance_id in (None, "", m.instance_id):
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            self.cond.wait(min(remaining, pending if pending is not None else remaining))
