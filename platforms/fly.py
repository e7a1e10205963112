"""Fly.io adapter (httpx): history is Fly's releases (GraphQL, what `fly releases` lists); a
rollback redeploys a previous release's image the way `fly deploy --image` does in machines
mode - a new release record, then the app's machines one at a time under leases, waiting for
``started`` and checks, then the release's final status. Logs and usage come from api.fly.io.

The module ends with ``SPEC``: this platform as data for the registry (config block, target,
factory, words, what it cannot do).
"""

# History: Fly's releases from the GraphQL API (``releasesUnprocessed``, _fly_graphql.py), not
# the machines: config- and secret-only deploys are releases too (same image, new number), and
# a machine created later has none of the older versions. ``Revision.number`` is the release
# version (``/rollback --to 5`` means Fly's v5) and ``Revision.id`` the release's image
# reference (stable pinning: a digest-pinned ``repo:tag@sha256:...`` when the deploy pinned
# one). The current release is the one flyctl wrote into the live machines' metadata
# (``fly_release_version``, the newest among them whose image a machine runs). Offered as
# rollback targets, besides the current release: only ``complete`` releases (flyctl marks a
# deploy failed or interrupted otherwise; pending/running ones are in progress), and only those
# whose image differs from the running one - an image redeploy cannot undo a config- or
# secret-only release, so offering one would "roll back" to what already runs.
# ``describe_revision`` still shows every release, failed ones included, with its status.
#
# A rollback is a release, as `fly deploy --image` makes one (flyctl
# internal/command/deploy/machines.go createReleaseInBackend, then
# machines_deploymachinesapp.go: status "running", the machines, then "complete" or "failed"
# with post_deployment_info.error): createRelease (pending), updateRelease running, every
# live machine updated with the image and the new release's ``fly_release_id`` /
# ``fly_release_version`` metadata (no machine keeps the bad release's), then updateRelease
# complete or failed. So `fly releases` and `fly status` show the rollback as the newest
# release. The app's config (env, services, checks) and secrets are kept as they run: the
# release's definition is the running release's (config_differences shows what differed).
#
# Machines rule: destroyed/destroying machines are ignored. Machines deliberately not running
# (stopped, suspended, created) are updated with ``skip_launch`` (so autostart or a later
# scale-up cannot resurrect the bad image) and are not waited on: Fly leaves them ``created``
# (fly.io/docs/machines/machine-states/), which ``scale`` starts like a stopped one. Machines
# that could not run (``failed``, ``launch_failed``: the bad release crashed them) are
# updated and launched like running ones, as flyctl's shouldSkipLaunch launches failed
# machines: the rollback restores capacity, it does not leave it down. Every launched
# machine must reach ``started`` with passing checks before the next one is touched; one
# that ends ``failed`` or ``launch_failed`` fails the rollout at once (a ``RolloutFailed``).
#
# Retries resume, they do not restart. A transient error (throttling, a lease held, no
# answer) leaves the release ``running``; the next attempt for the same image finds it (the
# newest release, unfinished, same image, and created by this adapter: ``_unfinished_release``)
# and reuses it rather than creating another. "Created by this adapter" is remembered in
# memory (the release ids ``rollback_to`` created, per app): CreateReleaseInput has no field
# to mark a release as ours, and a newest pending/running release for the same image may
# just as well be a human's `fly deploy --image` in flight, which must never be stamped on
# machines or marked complete/failed by us. After a process restart the memory is gone: the
# next attempt creates a new release and the one left unfinished stays ``running`` in
# `fly releases` (it is no longer known to be ours, so it is left as it is).
# A machine already on the image is never updated or restarted again; if
# it lacks the release's stamp, only its metadata keys are set (Machines_update_metadata,
# no new version, no restart). The release's final status is set once: complete, or failed
# on a permanent error, or interrupted; failing to record it does not fail a finished roll
# (the result says so, the next rollback to the image marks it). A 429 while waiting for a
# machine is waited out (Retry-After), not an abort half-way through the roll.
#
# Seeing the app (api.fly.io, _fly_metrics.py): ``logs_tail`` pages Fly's logs API as `fly logs`
# polls it, ``resource_usage`` asks the org's Prometheus for ``fly_instance_cpu`` and
# ``fly_instance_memory_*`` per machine, ``config_differences`` compares the two releases'
# fly.toml definitions and lists the secrets set since the pinned one (name and digest only:
# Fly secrets are write-only, `fly secrets list` shows no more). Tokens are parsed as flyctl
# parses them (_fly_client.FlyTokens): deploy/org macaroons go out as ``FlyV1``, a personal
# token as ``Bearer``.
#
# Scale and stop: ``scale`` stops machines with ``POST .../stop`` (each under its lease) and
# returns once every stop is accepted; a machine then spends its stop timeout in ``stopping``
# while its process drains. ``wait_for_stopped`` is what blocks until nothing runs, using the
# server-side ``GET .../wait?state=stopped`` (Machines OpenAPI spec) on each machine still up.
# Starting (scale up) still waits for ``started`` machine by machine, as before.
#
# Fenced writes. Every mutation runs under a lease (POST .../lease, then the
# ``fly-machine-lease-nonce`` header on update/start/stop and on the release), and decides on
# the machine as read *after* the lease was granted, as flyctl does (internal/machine/lease.go
# re-fetches the machine once it holds the lease). An update also carries the version it was
# decided on: ``current_version`` = the ``instance_id`` just read (UpdateMachineRequest in the
# Machines OpenAPI spec). The API refuses it with 409 if another lease is held or the machine
# has a newer version (sandbox/fly/state.py cites where), which maps to WriteConflict; so an
# update we gave up on (timeout) can only land while the machine is still exactly as we read
# it, and never after someone deployed something newer. ``rollback_to`` with ``expected``
# refuses (TargetChanged, nothing written) when a machine runs neither ``expected`` nor the
# pinned image, checked for every machine before the first write and again per machine under
# its lease. What remains: start/stop carry only the lease nonce (no version in the API), so a
# stop held past our timeout lands if no lease is held when it is processed; and a late update
# still lands on a machine nothing else has touched, which is the write we wanted anyway unless
# the rollback was cancelled meanwhile.

from __future__ import annotations

import json
import logging
import threading
import time
from collections import Counter
from collections.abc import Mapping
from datetime import UTC
from typing import Any

import httpx
from pydantic import BaseModel, ConfigDict, Field

from platforms._fly_client import (
    DOWN_STATES,
    FAILED_STATES,
    GONE_STATES,
    IDLE_STATES,
    RELEASE_ID_KEY,
    RELEASE_KEY,
    FlyApi,
    FlyTokens,
    Json,
    NoAnswer,
    checks_state,
    describe,
    image_of,
    lease_nonce,
    map_response_error,
    runs_image,
    same_image,
)
from platforms._fly_graphql import FlyGraphQL, FlyRelease
from platforms._fly_mask import masked_section
from platforms._fly_metrics import machine_usage, recent_logs
from platforms.base import (
    Capability,
    ConfigDifference,
    ConfigSnapshot,
    PermanentPlatformError,
    Platform,
    PlatformSpec,
    PlatformUnavailable,
    ProgressCallback,
    ResourceUsage,
    Revision,
    RevisionDetail,
    RevisionNotFound,
    RollbackResult,
    RolloutFailed,
    RolloutStatus,
    RunningCheck,
    SecretReader,
    Target,
    TargetChanged,
    TransientPlatformError,
    mask_value,
    parse_retry_after,
    refuse_if_changed,
)

log = logging.getLogger(__name__)

DEFAULT_API_URL = "https://api.machines.dev"
DEFAULT_PLATFORM_URL = "https://api.fly.io"  # GraphQL, logs and the orgs' Prometheus
MAX_WAIT_SECONDS = 60  # the API's own per-request cap on ?timeout=
# A ``started`` wait is sliced this short (the API takes whole seconds) so a machine that
# ends ``failed``/``launch_failed`` instead is seen within a second, not at the timeout.
START_PROBE_SECONDS = 1
RELEASES_LIMIT = 50


class FlyPlatform:
    """``Platform`` for Fly apps. Target: scope = organisation slug, name = app;
    ``options["api_url"]`` overrides the Machines API base URL (without ``/v1``) and
    ``options["platform_url"]`` the api.fly.io base (GraphQL, logs, Prometheus), which is
    https://api.fly.io unless set, whatever ``api_url`` is (a stand-in serving both, like
    the sandbox's emulator, is configured with both).

    ``token`` is parsed as flyctl parses it (``FlyTokens``: macaroons go out as ``FlyV1``,
    a personal token as ``Bearer``) and never logged or repr'd. ``machine_timeout``
    bounds one machine's ``started`` wait, ``check_timeout`` its health checks, polled
    every ``check_interval`` seconds (the API has no event stream for checks)."""

    name = "fly"

    def __init__(self, *, token: str | None, api_url: str = DEFAULT_API_URL,
                 platform_url: str | None = None,
                 request_timeout: float = 30.0, lease_ttl: int = 300,
                 machine_timeout: float = 120.0, check_timeout: float = 60.0,
                 check_interval: float = 1.0,
                 transport: httpx.BaseTransport | None = None) -> None:
        self._token = token
        self._tokens = FlyTokens.parse(token or "")
        self._api_url = api_url.rstrip("/")
        self._platform_url = platform_url.rstrip("/") if platform_url else None
        self._timeout = request_timeout
        self._lease_ttl = lease_ttl
        self._machine_timeout = machine_timeout
        self._check_timeout = check_timeout
        self._check_interval = check_interval
        self._transport = transport
        self._clients: dict[str, FlyApi] = {}
        self._web: dict[str, httpx.Client] = {}
        self._lock = threading.Lock()
        # Release ids this adapter created, per app (``_unfinished_release`` resumes only
        # these); in memory only, under ``_lock``.
        self._created: dict[str, set[str]] = {}

    def __repr__(self) -> str:
        return f"FlyPlatform(api_url={self._api_url!r}, token={'***' if self._token else None})"

    def close(self) -> None:
        with self._lock:
            clients, self._clients = list(self._clients.values()), {}
            web, self._web = list(self._web.values()), {}
        for api in clients:
            api.client.close()
        for client in web:
            client.close()

    # ============================================================ Platform protocol
    def history(self, target: Target) -> list[Revision]:
        """The rollback targets among Fly's releases, newest first (module comment)."""
        _, releases, current = self._app_releases(target)
        return [_revision(r, current=r.version == current.version)
                for r in _offered(releases, current)]

    def current_revision(self, target: Target) -> Revision:
        for revision in self.history(target):
            if revision.current:
                return revision
        raise RevisionNotFound(f"app {target.name} has no current image")  # pragma: no cover

    def rollback_to(self, target: Target, revision: Revision, *, dry_run: bool = False,
                    expected: Revision | None = None) -> RollbackResult:
        """Redeploy ``revision.id`` as a new release (module comment), machine by machine,
        each under its lease with ``current_version`` (fencing). With ``expected``, a machine
        running anything else than ``expected`` or the pinned image is a newer change:
        TargetChanged before the first write."""
        api = self._api(target)
        image = revision.id
        machines = self._live_machines(api, target)
        app_id, releases, current = self._app_releases(target, machines)
        if not any(r.succeeded and same_image(r.image, image) for r in releases):
            raise RevisionNotFound(f"image {image} is not the image of a complete release of "
                                   f"app {target.name}")
        for machine in machines:
            _refuse_if_changed(target, machine, revision, expected)
        # A machine on another image, or one that could not run (failed/launch_failed, even
        # on the pinned image: it must be launched again), still needs the rollback.
        pending = [m for m in machines if not same_image(image_of(m.get("config")), image)
                   or m.get("state") in FAILED_STATES]
        with self._lock:
            ours = frozenset(self._created.get(target.name, ()))
        resumed = _unfinished_release(releases, image, ours)
        if not pending and resumed is None:
            return RollbackResult(False, f"skipped: all {len(machines)} machines of app "
                                         f"{target.name} already run {image}")
        if dry_run:
            names = ", ".join(str(m.get("id")) for m in pending) or "none"
            release = (f"release v{resumed.version} (resumed)" if resumed is not None
                       else "a new release")
            return RollbackResult(False, f"would roll {len(pending)} of {len(machines)} "
                                         f"machines to {image} as {release} (dry run): "
                                         f"{names}")
        graphql = self._graphql(target)
        if resumed is None:
            release_id, version = graphql.create_release(
                app_id=app_id, image=image, definition=dict(current.definition or {}),
                what=f"create a release of app {target.name}")
            with self._lock:
                self._created.setdefault(target.name, set()).add(release_id)
            status = "pending"
        else:
            release_id, version, status = resumed.id, resumed.version, resumed.status
            log.info("fly: resuming release v%s of %s (%s, image %s)", version, target.name,
                     status, image)
        if status != "running":
            graphql.update_release(release_id, "running",
                                   what=f"mark release v{version} of app {target.name} "
                                        "running")
        stamp = {RELEASE_ID_KEY: release_id, RELEASE_KEY: str(version)}
        rolled: list[str] = []
        try:
            for machine in sorted(machines, key=lambda m: str(m["id"])):
                try:
                    if self._roll_machine(api, target, str(machine["id"]), revision,
                                          expected, stamp):
                        rolled.append(str(machine["id"]))
                except TargetChanged as exc:
                    done = (f" on that machine (rolled back earlier in this attempt: "
                            f"{', '.join(rolled)})" if rolled else "")
                    raise TargetChanged(f"{exc}{done}") from exc
        except BaseException as exc:
            self._finish_release(graphql, target, release_id, version, exc)
            raise
        note = self._finish_release(graphql, target, release_id, version, None)
        how = "resumed " if resumed is not None else ""
        return RollbackResult(True, f"app {target.name} rolled back to {revision.label()} as "
                                    f"{how}release v{version}: {len(rolled)} of "
                                    f"{len(machines)} machines updated{note}")

    def rollout_status(self, target: Target) -> RolloutStatus:
        api = self._api(target)
        machines = self._live_machines(api, target)
        image = self._current_image(machines)
        return self._status(machines, image)[0]

    def wait_for_rollout(self, target: Target, *, timeout: float,
                         on_progress: ProgressCallback | None = None) -> RolloutStatus:
        """Until every machine runs the current image, started, checks passing. Machines not
        yet started are awaited with the server-side ``wait?state=started``; checks polled."""
        api = self._api(target)
        deadline = time.monotonic() + timeout
        last = ""
        while True:
            machines = self._live_machines(api, target)
            image = self._current_image(machines)
            status, laggard = self._status(machines, image)
            if on_progress is not None and status.message != last:
                on_progress(status.message)
            last = status.message
            remaining = deadline - time.monotonic()
            if status.done or status.failed or laggard is None:
                return status
            if remaining <= 0:
                return RolloutStatus(False, f"timed out after {timeout:g}s: {last}")
            if laggard.get("state") != "started":
                self._wait_state(api, target, laggard, "started", remaining)
            else:
                time.sleep(min(self._check_interval, remaining))

    def get_replicas(self, target: Target) -> int:
        machines = self._live_machines(self._api(target), target)
        return sum(1 for m in machines if m.get("state") == "started")

    def scale(self, target: Target, replicas: int) -> None:
        """Start or stop existing machines (lowest ids start first, highest stop first)
        until ``replicas`` are started; Fly machines are never created or destroyed here.
        Starting waits for ``started``; stopping returns once each stop is accepted (machines
        are then ``stopping``): ``wait_for_stopped`` waits for them."""
        if replicas < 0:
            raise PermanentPlatformError(f"replicas must be >= 0, got {replicas}")
        api = self._api(target)
        machines = sorted(self._live_machines(api, target), key=lambda m: str(m["id"]))
        if replicas > len(machines):
            raise PermanentPlatformError(f"app {target.name} has only {len(machines)} machines;"
                                         f" cannot start {replicas} (scale creates none)")
        started = [m for m in machines if m.get("state") not in DOWN_STATES]
        if len(started) > replicas:
            for machine in reversed(started[replicas:]):
                self._power(api, target, machine, "stop", None)
        else:
            idle = [m for m in machines if m.get("state") in IDLE_STATES]
            for machine in idle[:replicas - len(started)]:
                self._power(api, target, machine, "start", "started")

    def wait_for_stopped(self, target: Target, *, timeout: float,
                         on_progress: ProgressCallback | None = None) -> RolloutStatus:
        """Until every machine of the app is stopped, suspended, created, failed or destroyed:
        the server-side ``wait?state=stopped`` (``destroyed`` for one being destroyed) on the
        first machine still up, then a fresh list. A machine that is ``started`` rather than
        ``stopping`` is waited on too: nothing may be stopping it (the Fly proxy's autostart
        can start a stopped machine on traffic), which the progress message says."""
        api = self._api(target)
        deadline = time.monotonic() + timeout
        last = ""
        while True:
            machines = self._all_machines(api, target)
            up = sorted((m for m in machines if m.get("state") not in DOWN_STATES),
                        key=lambda m: str(m.get("id")))
            if up:
                noun = "machine" if len(up) == 1 else "machines"
                status = RolloutStatus(False, f"{len(up)} {noun} of app {target.name} still "
                                              "running: " + ", ".join(
                                                  f"{describe(m)} {m.get('state')}" for m in up))
            else:
                states = Counter(str(m.get("state")) for m in machines)
                status = RolloutStatus(True, f"every machine of app {target.name} is down (" +
                                       ", ".join(f"{n} {state}" for state, n in
                                                 sorted(states.items())) + ")")
            if on_progress is not None and status.message != last:
                on_progress(status.message)
            last = status.message
            if status.done:
                return status
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return RolloutStatus(False, f"timed out after {timeout:g}s waiting for app "
                                            f"{target.name} to stop: {last}")
            state = "destroyed" if up[0].get("state") == "destroying" else "stopped"
            self._wait_state(api, target, up[0], state, remaining)

    def confirm_running(self, target: Target, revision: Revision) -> RunningCheck:
        """Every live machine runs ``revision.id`` (by digest when both sides have one, see
        ``runs_image``) and is ``started``; a machine that was stopped or suspended before the
        rollback may stay so (``rollback_to`` updates it with ``skip_launch``), but at least
        one machine must be started. ``running`` lists each image with its machines."""
        machines = sorted(self._live_machines(self._api(target), target),
                          key=lambda m: str(m.get("id")))
        by_image: dict[str, list[str]] = {}
        wrong: list[str] = []
        unsettled: list[str] = []
        for machine in machines:
            image = image_of(machine.get("config")) or "?"
            resolved = (machine.get("image_ref") or {}).get("digest")
            if resolved and resolved not in image:
                image += f" (resolved {resolved})"
            state = str(machine.get("state"))
            by_image.setdefault(image, []).append(f"{machine.get('id')} {state}")
            if not runs_image(machine, revision.id):
                wrong.append(f"{describe(machine)} runs {image}")
            elif state != "started" and state not in IDLE_STATES:
                unsettled.append(f"{describe(machine)} is {state}")
        problems = wrong + unsettled
        if not any(m.get("state") == "started" for m in machines):
            problems.append(f"no machine of app {target.name} is started")
        running = "; ".join(f"{image}: {', '.join(ids)}" for image, ids in by_image.items())
        return RunningCheck(matches=not problems, running=running or "no machine",
                            detail="; ".join(problems))

    # The capabilities this adapter lacks, each with its reason, are in SPEC.unsupported.
    def logs_tail(self, target: Target, *, lines: int = 100) -> str:
        """The app's recent log lines from Fly's logs API (what `fly logs` polls)."""
        return recent_logs(self._web_client(target), target.name, lines=max(1, lines))

    def resource_usage(self, target: Target) -> list[ResourceUsage]:
        """CPU and memory per machine from the org's Prometheus (``fly_instance_*``)."""
        return machine_usage(self._web_client(target), target.scope, target.name)

    def snapshot_config(self, target: Target) -> ConfigSnapshot:
        """Nothing to snapshot: Fly secrets are write-only and app config lives in each
        machine's config, which ``rollback_to`` already preserves."""
        raise SPEC.refuse(Capability.CONFIG_SNAPSHOTS)

    def describe_revision(self, target: Target, number: int) -> RevisionDetail:
        """Release ``number`` as `fly releases` shows it (version, status, image,
        description, user, created), failed and config-only releases included; a release
        that is no rollback target says why."""
        _, releases, current = self._app_releases(target)
        found = next((r for r in releases if r.version == number), None)
        if found is None:
            raise RevisionNotFound(f"release v{number} of app {target.name} not found "
                                   f"(known: {', '.join(f'v{r.version}' for r in releases)})",
                                   known=tuple(r.version for r in releases))
        offered = {r.version for r in _offered(releases, current)}
        fields = [("Release", f"v{found.version}"), ("Status", found.status or "?"),
                  ("Image", found.image or "?"), ("Description", found.description or "-"),
                  ("User", found.user or "?")]
        if found.created is not None:
            fields.append(("Created", found.created.astimezone(UTC)
                           .strftime("%Y-%m-%d %H:%M UTC")))
        if found.version == current.version:
            fields.append(("Running", "yes (current)"))
        elif found.version not in offered:
            why = (f"status {found.status}, only complete releases are" if not found.succeeded
                   else "same image as the running release; an image redeploy cannot undo "
                        "a config-only change, so it is not")
            fields.append(("Rollback target", f"no ({why} offered)"))
        return RevisionDetail(_revision(found, current=found.version == current.version),
                              tuple(fields),
                              "\n".join(f"{label}: {value}" for label, value in fields))

    def config_differences(self, target: Target, running: Revision,
                           pinned: Revision) -> list[ConfigDifference]:
        """What differs between the two releases' configs (their fly.toml definitions: env,
        services, checks, VM and restart settings; literal values masked) and which secrets
        were set since the pinned release (names and digests only: Fly secrets are
        write-only). The rollback redeploys the image only, so these stay as they run."""
        # The releases alone: which one runs (the machines) does not matter here.
        _, releases = self._graphql(target).releases(target.name, limit=RELEASES_LIMIT)
        by_version = {r.version: r for r in releases}
        now, then = by_version.get(running.number), by_version.get(pinned.number)
        if now is None or then is None:
            missing = running.number if now is None else pinned.number
            raise RevisionNotFound(f"release v{missing} of app {target.name} not found")
        if now.definition is None or then.definition is None:
            raise SPEC.refuse(Capability.CONFIG_VIEW)
        kept = "fly.toml (kept by the rollback)"
        out: list[ConfigDifference] = []
        env_now = dict(now.definition.get("env") or {})
        env_then = dict(then.definition.get("env") or {})
        for key in sorted(set(env_now) | set(env_then)):
            if env_now.get(key) != env_then.get(key):
                out.append(ConfigDifference(
                    kept, f"env.{key}",
                    mask_value(key, _text(env_now.get(key))),
                    mask_value(key, _text(env_then.get(key)))))
        for section in sorted((set(now.definition) | set(then.definition)) - {"env", "app"}):
            a, b = now.definition.get(section), then.definition.get(section)
            if a != b:  # every nested value masked, commands word by word (_fly_mask.py)
                out.append(ConfigDifference(kept, section, _text(masked_section(section, a)),
                                            _text(masked_section(section, b))))
        since = then.created
        for secret in sorted(self._graphql(target).secrets(target.name), key=lambda s: s.name):
            if since is not None and secret.created is not None and secret.created > since:
                out.append(ConfigDifference(
                    "secret (kept by the rollback)", secret.name, f"digest {secret.digest}",
                    f"unset or another value (set after v{then.version})"))
        return out

    def restore_config(self, target: Target, snapshot: ConfigSnapshot) -> bool:
        """Nothing to restore (see ``snapshot_config``)."""
        raise SPEC.refuse(Capability.CONFIG_SNAPSHOTS)

    # ================================================================ internals
    def _roll_machine(self, api: FlyApi, target: Target, machine_id: str, revision: Revision,
                      expected: Revision | None, stamp: Mapping[str, str]) -> bool:
        """Lease, read, decide, update the image and the release metadata ``stamp``
        (everything else verbatim) fenced on the lease nonce and the version just read,
        wait, check, release the lease. False: nothing to do on this machine."""
        image = revision.id
        base = f"/apps/{target.name}/machines/{machine_id}"
        nonce = lease_nonce(api.json("POST", base + "/lease", what=f"lease machine {machine_id}",
                                     json={"ttl": self._lease_ttl, "description":
                                           f"rollback-bot: roll back to {image}"}))
        if not nonce:
            raise TransientPlatformError(f"lease on machine {machine_id} returned no nonce")
        try:
            machine: Json = api.json("GET", base, what=f"read machine {machine_id}")
            if machine.get("state") in GONE_STATES:
                return False
            metadata = dict((machine.get("config") or {}).get("metadata") or {})
            state = machine.get("state")
            if (same_image(image_of(machine.get("config")), image)
                    and state not in FAILED_STATES):
                # Already on the image (an earlier attempt, or someone else while we waited
                # for the lease): never restarted; at most the release stamp is set, through
                # the metadata endpoint, which changes no version and restarts nothing.
                self._stamp(api, base, nonce, machine, metadata, stamp)
                if state in ("replacing", "starting"):
                    # e.g. the update an earlier attempt gave up on, landed late: still
                    # launching, so it is awaited like one we launched, not taken as done
                    self._await_healthy(api, target, machine)
                return False
            _refuse_if_changed(target, machine, revision, expected)
            # Only a machine deliberately not running stays so (flyctl
            # internal/command/deploy/machines_launchinput.go shouldSkipLaunch: started,
            # starting and failed machines launch). ``launch_failed`` launches too: it was
            # meant to run and never could. Left ``created``, a crashed machine would keep
            # the app down, or short of capacity, after a "successful" rollback.
            idle = state in IDLE_STATES
            config = dict(machine.get("config") or {})
            config["image"] = image
            config["metadata"] = {**metadata, **stamp}
            version = str(machine.get("instance_id") or "")
            body: Json = {"config": config, "current_version": version}
            if idle:
                body["skip_launch"] = True
            log.info("fly: %s -> %s (from version %s)", describe(machine), image, version)
            try:
                updated: Json = api.json("POST", base, what=f"update {describe(machine)}",
                                         json=body, nonce=nonce)
            except NoAnswer as exc:
                raise TransientPlatformError(
                    f"{exc}; the API may still apply it, but only while {describe(machine)} "
                    f"is at version {version} (current_version): the next attempt reads it "
                    "again") from exc
            except PermanentPlatformError as exc:
                raise PermanentPlatformError(f"rollback stopped at {describe(machine)}: "
                                             f"{exc}") from exc
            if not idle:
                self._await_healthy(api, target, updated)
            return True
        finally:
            self._release(api, base, nonce, describe({"id": machine_id}))

    def _stamp(self, api: FlyApi, base: str, nonce: str, machine: Mapping[str, Any],
               metadata: Mapping[str, Any], stamp: Mapping[str, str]) -> None:
        """Set the release keys a machine lacks with ``POST .../metadata/{key}``
        (Machines_update_metadata: the key in place, no new version, no restart)."""
        for key, value in stamp.items():
            if metadata.get(key) != value:
                api.call("POST", f"{base}/metadata/{key}", json={"value": value},
                         nonce=nonce, what=f"set {key} on {describe(machine)}")

    def _finish_release(self, graphql: FlyGraphQL, target: Target, release_id: str,
                        version: int, error: BaseException | None) -> str:
        """updateRelease complete/failed/interrupted, as flyctl ends a deploy, once. A
        transient error leaves the release ``running``: the retry finds it
        (``_unfinished_release``), rolls only what is left and finishes it. A failure to
        record the status is logged, never raised over the rollout's own outcome; after a
        finished roll it is returned as a note for the result message (the next rollback to
        the same image marks it)."""
        if isinstance(error, TransientPlatformError):
            log.info("fly: release v%s of %s left running for the retry: %s", version,
                     target.name, error)
            return ""
        status = ("complete" if error is None else
                  "failed" if isinstance(error, Exception) else "interrupted")
        try:
            graphql.update_release(release_id, status,
                                   error=str(error) if error is not None else None,
                                   what=f"mark release v{version} of app {target.name} "
                                        f"{status}")
        except (TransientPlatformError, PermanentPlatformError) as exc:
            log.warning("fly: release v%s of %s not marked %s: %s", version, target.name,
                        status, exc)
            return (f"; release v{version} could not be marked {status} ({exc}): it shows "
                    "running until the next rollback to this image marks it")
        return ""

    def _release(self, api: FlyApi, base: str, nonce: str, what: str) -> None:
        try:
            api.call("DELETE", base + "/lease", what=f"release lease on {what}", nonce=nonce)
        except (TransientPlatformError, PermanentPlatformError) as exc:
            log.warning("fly: lease on %s not released (expires by ttl): %s", what, exc)

    def _await_healthy(self, api: FlyApi, target: Target, machine: Json) -> None:
        if not self._wait_state(api, target, machine, "started", self._machine_timeout):
            raise PermanentPlatformError(f"rollback stopped at {describe(machine)}: not started "
                                         f"after {self._machine_timeout:g}s")
        deadline = time.monotonic() + self._check_timeout
        path = f"/apps/{target.name}/machines/{machine['id']}"
        while True:
            response = api.call("GET", path, what=f"read {describe(machine)}", ok=(429,))
            if response.status_code == 429:  # throttled polling: wait, as in _wait_state
                if time.monotonic() >= deadline:
                    raise map_response_error(response, f"read {describe(machine)}")
                self._throttled(response, deadline)
                continue
            current: Json = response.json()
            if current.get("instance_id") != machine.get("instance_id"):
                raise PermanentPlatformError(f"rollback stopped at {describe(machine)}: it was "
                                             f"changed by someone else during the rollback")
            passing, summary = checks_state(current)
            if passing:
                return
            if time.monotonic() >= deadline:
                raise PermanentPlatformError(f"rollback stopped at {describe(machine)}: health "
                                             f"{summary} after {self._check_timeout:g}s")
            time.sleep(min(self._check_interval, max(0.0, deadline - time.monotonic())))

    def _wait_state(self, api: FlyApi, target: Target, machine: Mapping[str, Any], state: str,
                    timeout: float) -> bool:
        """Server-side ``wait?state=`` for this instance, in <=60 s slices; False on timeout.
        A ``started`` wait goes in ``START_PROBE_SECONDS`` slices with a read in between:
        a machine that ended ``failed``/``launch_failed`` raises RolloutFailed."""
        deadline = time.monotonic() + timeout
        path = f"/apps/{target.name}/machines/{machine['id']}/wait"
        cap = START_PROBE_SECONDS if state == "started" else MAX_WAIT_SECONDS
        while (remaining := deadline - time.monotonic()) > 0:
            seconds = max(1, min(cap, int(remaining + 0.999)))
            params: dict[str, str | int] = {"state": state, "timeout": seconds}
            if machine.get("instance_id") and state == "started":
                params["instance_id"] = str(machine["instance_id"])
            response = api.call("GET", path, what=f"wait for {describe(machine)} {state}",
                                params=params, timeout=seconds + self._timeout,
                                ok=(408, 429))
            if response.status_code == 429:
                # Throttled while polling: wait as told and poll again; aborting a roll
                # half-way for a rate limit on a read would leave the app split.
                self._throttled(response, deadline)
                continue
            if response.status_code != 408:
                return True
            if state == "started":
                probe = api.call("GET", f"/apps/{target.name}/machines/{machine['id']}",
                                 what=f"read {describe(machine)}", ok=(429,))
                if probe.status_code == 429:
                    self._throttled(probe, deadline)
                    continue
                now: Json = probe.json()
                if now.get("state") in FAILED_STATES:
                    raise RolloutFailed(f"rollback stopped at {describe(now)}: it is "
                                        f"{now.get('state')}{_last_event(now)}")
        return False

    @staticmethod
    def _throttled(response: httpx.Response, deadline: float) -> None:
        """Sleep what a 429's ``Retry-After`` asks (1 s without one), within ``deadline``."""
        wait = parse_retry_after(response.headers.get("Retry-After"))
        log.info("fly: throttled (HTTP 429) while waiting; retrying in %.1fs",
                 1.0 if wait is None else wait)
        time.sleep(max(0.0, min(1.0 if wait is None else wait,
                                deadline - time.monotonic())))

    def _power(self, api: FlyApi, target: Target, machine: Json, action: str,
               state: str | None) -> None:
        """``POST .../start|stop`` under a lease, decided on the machine as read once the
        lease is held (someone may have started or stopped it meanwhile); then wait for
        ``state`` unless None."""
        base = f"/apps/{target.name}/machines/{machine['id']}"
        nonce = lease_nonce(api.json("POST", base + "/lease", what=f"lease {describe(machine)}",
                                     json={"ttl": self._lease_ttl,
                                           "description": f"rollback-bot: {action}"}))
        if not nonce:  # never an unfenced start/stop
            raise TransientPlatformError(f"lease on {describe(machine)} returned no nonce")
        try:
            fresh: Json = api.json("GET", base, what=f"read {describe(machine)}")
            now = fresh.get("state")
            if now in GONE_STATES:
                return
            if action == "start":
                send = now in IDLE_STATES
            else:
                send = now not in DOWN_STATES and now != "stopping"
            if send:
                api.call("POST", f"{base}/{action}", what=f"{action} {describe(machine)}",
                         nonce=nonce)
            else:
                log.info("fly: %s is %s already; no %s sent", describe(fresh), now, action)
            if state is None:
                return
            waiting = {k: v for k, v in fresh.items() if k != "instance_id"}
            if not self._wait_state(api, target, waiting, state, self._machine_timeout):
                raise TransientPlatformError(f"{describe(machine)} not {state} after "
                                             f"{self._machine_timeout:g}s")
        finally:
            if nonce:
                self._release(api, base, nonce, describe(machine))

    def _status(self, machines: list[Json], image: str) -> tuple[RolloutStatus, Json | None]:
        """Status toward ``image`` and the first machine not yet there (None when done); a
        machine that is ``failed``/``launch_failed`` makes it a failed rollout."""
        broken = [m for m in machines if m.get("state") in FAILED_STATES]
        if broken:
            return RolloutStatus(False, "; ".join(
                f"{describe(m)} is {m.get('state')} on {image_of(m.get('config'))}"
                f"{_last_event(m)}" for m in sorted(broken, key=lambda m: str(m.get("id")))),
                failed=True), None
        active = [m for m in machines if m.get("state") not in IDLE_STATES]
        ready, laggard, why = 0, None, ""
        for machine in sorted(active, key=lambda m: str(m.get("id"))):
            on_image = same_image(image_of(machine.get("config")), image)
            passing, summary = checks_state(machine)
            if on_image and machine.get("state") == "started" and passing:
                ready += 1
            elif laggard is None:
                laggard = machine
                if not on_image:
                    why = f"; {describe(machine)} runs {image_of(machine.get('config'))}"
                elif machine.get("state") != "started":
                    why = f"; {describe(machine)} is {machine.get('state')}"
                else:
                    why = f"; {describe(machine)} {summary}"
        message = f"{ready} of {len(active)} machines on image {image}{why}"
        if laggard is None:
            return RolloutStatus(True, f"{message}: rollout complete"), None
        return RolloutStatus(False, message), laggard

    @staticmethod
    def _current_image(machines: list[Json]) -> str:
        """The image of the machine with the newest version (``instance_id``)."""
        newest: dict[str, str] = {}
        for machine in machines:
            image = image_of(machine.get("config"))
            if image:
                newest[image] = max(newest.get(image, ""), str(machine.get("instance_id") or ""))
        if not newest:
            raise RevisionNotFound("no live machine has an image")
        return max(newest, key=lambda i: (newest[i], i))

    def _all_machines(self, api: FlyApi, target: Target) -> list[Json]:
        machines = api.json("GET", f"/apps/{target.name}/machines",
                            what=f"list machines of app {target.name}")
        if not isinstance(machines, list):
            raise TransientPlatformError(f"unexpected machine list for app {target.name}")
        return [m for m in machines if isinstance(m, dict)]

    def _live_machines(self, api: FlyApi, target: Target) -> list[Json]:
        return [m for m in self._all_machines(api, target)
                if m.get("state") not in GONE_STATES]

    def _app_releases(self, target: Target, machines: list[Json] | None = None
                      ) -> tuple[str, list[FlyRelease], FlyRelease]:
        """(the app's GraphQL id, every release newest first, the current one). Current: the
        newest release recorded in a live machine's metadata whose image that machine runs;
        without one, the newest complete release whose image runs; else the newest.
        ``machines``: the live machines when the caller has just listed them (else listed)."""
        app_id, releases = self._graphql(target).releases(target.name, limit=RELEASES_LIMIT)
        if not releases:
            raise RevisionNotFound(f"app {target.name} has no release")
        if machines is None:
            machines = self._live_machines(self._api(target), target)
        by_version = {r.version: r for r in releases}
        stamped = []
        for machine in machines:
            number = str(((machine.get("config") or {}).get("metadata") or {})
                         .get(RELEASE_KEY) or "")
            release = by_version.get(int(number)) if number.isdigit() else None
            if release is not None and same_image(image_of(machine.get("config")),
                                                  release.image):
                stamped.append(release)
        if stamped:
            return app_id, releases, max(stamped, key=lambda r: r.version)
        images = {image_of(m.get("config")) for m in machines}
        running = [r for r in releases if r.succeeded
                   and any(same_image(r.image, i) for i in images)]
        return app_id, releases, (running[0] if running else releases[0])

    def _graphql(self, target: Target) -> FlyGraphQL:
        return FlyGraphQL(self._web_client(target, with_user_tokens=True))

    def _web_client(self, target: Target, *, with_user_tokens: bool = False) -> httpx.Client:
        """An httpx client on api.fly.io (or the configured ``platform_url``); GraphQL takes
        user tokens beside macaroons, the logs and metrics APIs macaroons only (tokens.go)."""
        options = target.options or {}
        # Always api.fly.io unless configured: the Machines API has other documented bases
        # (the internal ``http://_api.internal:4280``) that serve no GraphQL, logs or metrics.
        url = (options.get("platform_url") or self._platform_url
               or DEFAULT_PLATFORM_URL).rstrip("/")
        key = f"{url}|{with_user_tokens}"
        with self._lock:
            if key not in self._web:
                headers = {"User-Agent": "rollback-bot"}
                auth = self._tokens.header(with_user_tokens=with_user_tokens)
                if auth:
                    headers["Authorization"] = auth
                self._web[key] = httpx.Client(base_url=url, headers=headers,
                                              timeout=self._timeout,
                                              transport=self._transport)
            return self._web[key]

    def _api(self, target: Target) -> FlyApi:
        url = (target.options.get("api_url") if target.options else None) or self._api_url
        url = url.rstrip("/")
        with self._lock:
            if url not in self._clients:
                headers = {"User-Agent": "rollback-bot"}
                auth = self._tokens.header()  # FlapsHeader: macaroons as FlyV1, else Bearer
                if auth:
                    headers["Authorization"] = auth
                self._clients[url] = FlyApi(httpx.Client(
                    base_url=url, headers=headers, timeout=self._timeout,
                    transport=self._transport))
            return self._clients[url]


def _revision(release: FlyRelease, *, current: bool) -> Revision:
    cause = f"release v{release.version} {release.status}"
    if release.description:
        cause += f": {release.description}"
    if release.user:
        cause += f" by {release.user}"
    return Revision(id=release.image, number=release.version,
                    images=(release.image,) if release.image else (), change_cause=cause,
                    created=release.created, current=current)


def _offered(releases: list[FlyRelease], current: FlyRelease) -> list[FlyRelease]:
    """The rollback targets among ``releases`` (module comment): the current release, and
    complete releases whose image differs from the running one."""
    return [r for r in releases if r.version == current.version or
            (r.succeeded and r.image and not same_image(r.image, current.image))]


def _unfinished_release(releases: list[FlyRelease], image: str,
                        ours: frozenset[str]) -> FlyRelease | None:
    """The release an earlier attempt of this rollback left unfinished: the newest release,
    still ``pending``/``running``, for the same image, and one this adapter created (its id
    in ``ours``). CreateReleaseInput has no description or marker field (superfly/fly-go
    schema.graphql), so the adapter's memory is what tells ours from someone else's
    `fly deploy --image` in flight; after a restart nothing is resumed (module comment)."""
    newest = releases[0] if releases else None
    if newest is not None and newest.id in ours and newest.status in ("pending", "running") \
            and same_image(newest.image, image):
        return newest
    return None


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def _last_event(machine: Mapping[str, Any]) -> str:
    """The machine's newest event, for a failure message (MachineEvent in the spec)."""
    events = [e for e in machine.get("events") or [] if isinstance(e, dict)]
    if not events:
        return ""
    newest = max(events, key=lambda e: e.get("timestamp") or 0)
    return f" (last event: {newest.get('type')} {newest.get('status')})"


def _refuse_if_changed(target: Target, machine: Mapping[str, Any], revision: Revision,
                       expected: Revision | None) -> None:
    """TargetChanged when ``machine`` runs neither ``expected`` nor the pinned image (by
    reference, or digest when both are pinned)."""
    running = image_of(machine.get("config"))
    if expected is None or any(same_image(running, r.id) for r in (expected, revision)):
        return
    refuse_if_changed(target, running_id=running, revision=revision, expected=expected,
                      running_label=f"{running or 'no image'} on {describe(machine)}")


__all__ = ["DEFAULT_API_URL", "FlyPlatform"]


# ------------------------------------------------------------------ the platform as data
# What the core knows of this platform (platforms/registry.py lists it): its config block,
# its Target, how to build the adapter, its words and what it cannot do.
NAME = "fly"


class FlyTarget(BaseModel):
    """A service's ``fly:`` block: one Fly app and the variable holding the API token."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    app: str
    org: str = "personal"
    api_url: str = "https://api.machines.dev"
    # api.fly.io: releases (GraphQL), logs and the org's Prometheus; None: https://api.fly.io
    platform_url: str | None = None
    # A personal token (``Bearer``) or an org/deploy token as `fly tokens create` prints it
    # ("FlyV1 fm2_..."): either is parsed as flyctl does and sent with the right scheme.
    token_env: str = "FLY_API_TOKEN"
    rollout_timeout_seconds: float = 600
    # Scale-down waits until nothing of the target runs (writers gone) before a backup or
    # restore starts; past this the step fails and the replicas are restored.
    stop_timeout_seconds: float = Field(default=300, gt=0)


def _target(block: FlyTarget) -> Target:
    options = {"api_url": block.api_url}
    if block.platform_url:
        options["platform_url"] = block.platform_url
    return Target(NAME, block.org, block.app, options)


def _build(block: FlyTarget, secret: SecretReader) -> Platform:
    token = secret(block.token_env)
    if not token:  # never guess credentials; say which variable is missing
        raise PlatformUnavailable(f"env {block.token_env} is not set")
    return FlyPlatform(token=token, api_url=block.api_url, platform_url=block.platform_url)


def _scale_command(target: Target, replicas: int) -> str:
    # The scale-down stopped the app's machines (it did not destroy them): start the
    # same machines again; `fly scale count` would create or destroy machines instead.
    return (f"fly machine list --app {target.name}, then fly machine start <id> "
            f"--app {target.name} for each of the {replicas} stopped machines")


SPEC: PlatformSpec[FlyTarget] = PlatformSpec(
    name=NAME,
    config_model=FlyTarget,
    target=_target,
    build=_build,
    unit="machine",
    summary="an app (`app`, `org`; API token from `token_env`)",
    unsupported={
        # Not a gap: secrets are write-only and the app's config lives in each machine's
        # config, which rollback_to already preserves.
        Capability.CONFIG_SNAPSHOTS: "Fly secrets are write-only and each machine keeps its "
                                     "config through the rollback",
    },
    scale_command=_scale_command,
)
