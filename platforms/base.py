"""The contract every deployment platform adapter satisfies, its value types, its errors,
and the spec that describes a platform to the core as data.

Adapters (one per file: ``kubernetes.py``, ``ecs.py``, ``fly.py``) translate vendor errors at
the edge into this tree, so the core decides retry vs. stop by type::

    PlatformError
    ├── TransientPlatformError(retry_after)   throttling, 5xx, timeouts: retry with backoff
    │   └── WriteConflict                      a fenced write's precondition failed: re-read
    └── PermanentPlatformError                 will not get better by retrying
        ├── TargetNotFound                     deployment/service/app does not exist
        ├── TargetChanged                      something other than the plan's revision runs
        ├── RevisionNotFound                   the pinned revision is gone from history
        ├── RolloutPaused                      platform refuses while paused (kubectl parity)
        ├── RolloutFailed                      rollout hit its deadline / circuit breaker
        └── Unsupported(platform, capability)  the platform cannot do this (see Capability)

Pinning: a ``Revision.id`` is the platform's *stable* identity of a version (Kubernetes
ReplicaSet name, ECS task-definition ARN, Fly image reference), never a position such
as "previous" or a renumbered revision counter. The core stores the Revision when it
builds the plan and passes it back unchanged at execution time, so a retried or resumed
rollback cannot flip back to the bad version. ``rollback_to`` is idempotent: when the
target already runs the pinned revision it reports ``changed=False`` and mutates nothing.

Fencing: every mutating call carries a precondition tied to the read it was decided on
(Kubernetes ``resourceVersion``, the ECS primary deployment as read, a Fly lease nonce and
the machine's version), so a request the bot abandoned on the wire cannot land after a
newer change. A failed precondition is a ``WriteConflict``: the retry re-reads and decides
again, it never re-applies the old decision blindly.

Specs: each adapter exports one ``PlatformSpec`` (its ``<name>:`` config block model, how a
block becomes a ``Target``, a factory for the adapter, what it cannot do, its words); the
core reads specs through a registry, a ``PlatformSpecs``, instead of naming platforms. The
core never picks the registry: the entry points pass production's
(``platforms/registry.py``, which imports every adapter), the sandbox and the tests their own.

This module imports nothing from ``bot`` or ``handlers`` (checked by import-linter).
"""

from __future__ import annotations

import email.utils
import hashlib
import hmac
import re
import secrets
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Generic, Protocol, TypeVar, runtime_checkable

from pydantic import BaseModel

ProgressCallback = Callable[[str], None]


# ---------------------------------------------------------------------------- errors
class PlatformError(Exception):
    """Base of every error an adapter raises."""


class TransientPlatformError(PlatformError):
    """Worth retrying; ``retry_after`` is the platform's hint in seconds (None = use backoff)."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


def parse_retry_after(value: str | None) -> float | None:
    """A ``Retry-After`` header (seconds or an HTTP date) as seconds from now; None if absent
    or unreadable. Shared by every adapter so the core sees one meaning of the hint."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        return max(0.0, (when - datetime.now(UTC)).total_seconds())


class WriteConflict(TransientPlatformError):
    """A fenced write was refused because the object changed since this attempt read it.
    Retrying is right, but only as a fresh read-and-decide, never a replay of the write."""


class PermanentPlatformError(PlatformError):
    """Retrying will not help; a human has to look."""


class TargetChanged(PermanentPlatformError):
    """The target runs neither the revision the plan moves away from nor the pinned one
    (a hotfix or another deploy landed): a rollback must not overwrite it."""


def refuse_if_changed(target: Target, *, running_id: str, running_label: str,
                      revision: Revision, expected: Revision | None) -> None:
    """The decision every adapter's fenced ``rollback_to`` makes on its fresh read: go on only
    if the pinned revision or the one the plan moves away from runs; anything else is a
    newer change that a rollback must not overwrite."""
    if expected is None or running_id in (expected.id, revision.id):
        return
    raise TargetChanged(
        f"{target.name} now runs {running_label}, not {expected.label()} as planned: "
        f"something else was deployed since; nothing was changed")


class TargetNotFound(PermanentPlatformError):
    """The deployment, service or app named by the target does not exist."""


class RevisionNotFound(PermanentPlatformError):
    """The requested or pinned revision is not in the platform's history. ``known``: the
    revision numbers the adapter read while looking, when it has them (so a caller naming
    them needs no second read of the history)."""

    def __init__(self, message: str, *, known: tuple[int, ...] | None = None) -> None:
        super().__init__(message)
        self.known = known


class RolloutPaused(PermanentPlatformError):
    """The platform refuses to roll back while the rollout is paused."""


class RolloutFailed(PermanentPlatformError):
    """The rollout did not converge (e.g. Kubernetes ProgressDeadlineExceeded)."""


class Capability(StrEnum):
    """The optional parts of the ``Platform`` protocol; everything else every adapter does."""

    LOGS = "logs"  # logs_tail
    RESOURCE_USAGE = "resource usage"  # resource_usage
    CONFIG_SNAPSHOTS = "config snapshots"  # snapshot_config / restore_config
    CONFIG_VIEW = "config view"  # config_differences


class Unsupported(PermanentPlatformError):
    """The one answer to "the platform cannot do this": a capability its spec lists as
    unsupported, or one that is out of reach right now (RBAC forbids reading logs, the
    cluster serves no metrics API). Permanent: retrying will not make it appear, and the
    core reports the reason (the message) instead of guessing at an empty result."""

    def __init__(self, platform: str, capability: Capability, reason: str) -> None:
        super().__init__(reason)
        self.platform, self.capability, self.reason = platform, capability, reason


# ----------------------------------------------------------------------- value types
@dataclass(frozen=True)
class Target:
    """Where a service runs on one platform.

    ``scope`` is the namespace (Kubernetes), cluster (ECS) or organisation (Fly);
    ``name`` the deployment, ECS service or Fly app. ``options`` carries adapter
    specifics (kube context, ECS task family, region) as plain strings.
    """

    platform: str
    scope: str
    name: str
    options: Mapping[str, str] = field(default_factory=dict)
    config_maps: tuple[str, ...] = ()
    secrets: tuple[str, ...] = ()

    def describe(self) -> str:
        return f"{self.platform}:{self.scope}/{self.name}"


@dataclass(frozen=True)
class Revision:
    """One deployable version in the platform's history (see module docstring on ``id``)."""

    id: str
    number: int
    images: tuple[str, ...] = ()
    change_cause: str | None = None
    created: datetime | None = None
    current: bool = False
    # Did this revision ever run successfully on this target? None: the platform cannot tell
    # (no record, or the record no longer reaches back that far); False: known never to have run
    # well (registered but never deployed, or no deployment of it completed), so "previous" must
    # not pick it.
    ran: bool | None = None

    def label(self) -> str:
        image = ", ".join(self.images) if self.images else "?"
        return f"rev {self.number} ({image})"

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "number": self.number,
            "images": list(self.images),
            "change_cause": self.change_cause,
            "created": self.created.isoformat() if self.created else None,
            "current": self.current,
            "ran": self.ran,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Revision:
        created = data.get("created")
        return cls(
            id=str(data["id"]),
            number=int(data["number"]),
            images=tuple(data.get("images") or ()),
            change_cause=data.get("change_cause"),
            created=datetime.fromisoformat(created) if created else None,
            current=bool(data.get("current", False)),
            ran=None if data.get("ran") is None else bool(data["ran"]),  # older plans: None
        )


@dataclass(frozen=True)
class RollbackResult:
    """What ``rollback_to`` did. ``message`` mirrors the platform CLI's wording."""

    changed: bool
    message: str


@dataclass(frozen=True)
class RolloutStatus:
    """A rollout's state with kubectl-like wording; ``failed`` means it will not converge."""

    done: bool
    message: str
    failed: bool = False


@dataclass(frozen=True)
class RunningCheck:
    """What actually runs once a rollout has settled, held against the pinned revision.

    ``matches`` is True only when every unit runs the pinned revision and the platform
    reports the rollout complete; ``running`` names what runs in the platform's own terms
    (ReplicaSet and images, task-definition ARN and rolloutState, machine images) so a
    mismatch can be reported exactly.
    """

    matches: bool
    running: str
    detail: str = ""


@dataclass(frozen=True)
class ResourceUsage:
    """CPU (millicores) and memory (MiB) of one running unit (pod, task, machine)."""

    unit: str
    cpu_millicores: float
    memory_mib: float


@dataclass(frozen=True)
class ConfigSnapshot:
    """Configuration objects captured before a change, restorable verbatim."""

    items: Mapping[str, Mapping[str, Any]]

    def to_dict(self) -> dict[str, Any]:
        return {"items": {k: dict(v) for k, v in self.items.items()}}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ConfigSnapshot:
        return cls(items=dict(data.get("items") or {}))


@dataclass(frozen=True)
class RevisionDetail:
    """One revision as the platform's own tool shows it (``kubectl rollout history
    --revision=N``, the ECS task definition, the Fly release): ``fields`` are ordered
    label/value pairs for a summary, ``text`` the full presentation (already masked with
    ``mask_value``: it is posted to Slack)."""

    revision: Revision
    fields: tuple[tuple[str, str], ...]
    text: str


def basic_detail(history: list[Revision], number: int) -> RevisionDetail:
    """The detail every platform can give from its history alone (number, images,
    change-cause, created); adapters enrich it with what their platform keeps."""
    found = next((rev for rev in history if rev.number == number), None)
    if found is None:
        raise RevisionNotFound(f"revision {number} not found in history",
                               known=tuple(rev.number for rev in history))
    fields = [("Revision", str(found.number)), ("Images", ", ".join(found.images) or "?"),
              ("Change-cause", found.change_cause or "<none>")]
    if found.created is not None:
        fields.append(("Created", found.created.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")))
    if found.current:
        fields.append(("Running", "yes (current)"))
    return RevisionDetail(found, tuple(fields),
                          "\n".join(f"{label}: {value}" for label, value in fields))


_SECRET_LIKE = ("SECRET", "TOKEN", "PASSWORD", "PASSWD", "PASS", "KEY", "CREDENTIAL",
                "AUTH", "PRIVATE", "DSN", "COOKIE", "SESSION")


# Values that carry a credential whatever their name: a URL with a password in its userinfo
# (``postgres://u:pass@db``), a JWT, an AWS access key id, a Slack or GitHub token, a PEM key.
_SECRET_SHAPES = re.compile(
    r"://[^/\s:@]*:[^/\s@]+@"
    r"|\beyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\."
    r"|\b(?:AKIA|ASIA)[A-Z0-9]{16}\b"
    r"|\bxox[abposr]-[A-Za-z0-9-]{10,}"
    r"|\bgh[pousr]_[A-Za-z0-9]{20,}"
    r"|\bfm[12][ar]?_[A-Za-z0-9_+/=-]{10,}"
    r"|-----BEGIN [A-Z ]*PRIVATE KEY-----")


def looks_secret(key: str, value: str) -> bool:
    """Whether a configuration entry must not be shown: its name looks like a credential
    (``API_KEY``, ``DB_PASSWORD``…) or its value has a credential's shape (see
    ``_SECRET_SHAPES``)."""
    return any(word in key.upper() for word in _SECRET_LIKE) or bool(_SECRET_SHAPES.search(value))


# A plain sha256 of a weak password can be checked against a dictionary by anyone in the
# channel; keyed with a secret of this process (HMAC-SHA256) the fingerprint still shows that
# a value changed within one plan or detail, and tells nobody what it is.
_FINGERPRINT_KEY = secrets.token_bytes(32)


def mask_value(key: str, value: str | None) -> str | None:
    """A configuration value fit for a Slack channel: a literal that ``looks_secret`` is
    replaced by a fingerprint so a change is still visible (``<hidden, sha256:1a2b3c4d>``)
    but the value never leaves the platform. References (a secret's ARN, a
    ``secretKeyRef``) are not values and are passed through by callers as they are."""
    if value is None:
        return None
    if looks_secret(key, value):
        digest = hmac.new(_FINGERPRINT_KEY, value.encode(), hashlib.sha256).hexdigest()[:8]
        return f"<hidden, sha256:{digest}>"
    return value


def mask_command(words: list[str], key: str = "") -> list[str]:
    """Command-line words fit for Slack: ``--db-password=VALUE`` and ``--db-password VALUE``
    masked by the flag's name, ``NAME=VALUE`` assignments by the name, any other word by its
    shape (and the command's ``key``): a credential is as often a flag as a setting."""
    out = [str(mask_value(key, word)) for word in words]
    for i, word in enumerate(words):
        name, eq, value = word.partition("=")
        if eq and name:
            out[i] = f"{name}={mask_value(name.lstrip('-'), value)}"
        elif word.startswith("-") and i + 1 < len(words) and not words[i + 1].startswith("-") \
                and mask_value(word.lstrip("-"), words[i + 1]) != words[i + 1]:
            out[i + 1] = str(mask_value(word.lstrip("-"), words[i + 1]))
    return out


@dataclass(frozen=True)
class ConfigDifference:
    """One configuration entry that differs between what runs and the pinned revision.

    ``kind`` is the platform's word for where it lives ("env", "secret ref", "configmap ref",
    "fly.toml", "secret"); ``running``/``pinned`` are the values (None: absent on that side),
    already passed through ``mask_value`` for literals; secrets are references or digests,
    never values."""

    kind: str
    key: str
    running: str | None
    pinned: str | None

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "key": self.key, "running": self.running,
                "pinned": self.pinned}


# -------------------------------------------------------------------------- protocol
@runtime_checkable
class Platform(Protocol):
    """What the core needs from a deployment platform. Every call may raise PlatformError."""

    name: str

    def history(self, target: Target) -> list[Revision]:
        """All revisions, newest first; exactly one has ``current=True``."""
        ...

    def current_revision(self, target: Target) -> Revision: ...

    def rollback_to(
        self, target: Target, revision: Revision, *, dry_run: bool = False,
        expected: Revision | None = None,
    ) -> RollbackResult:
        """Make ``revision`` (by its stable id) the running version. Idempotent.

        With ``expected`` (the revision the plan moves away from) the write happens only if
        the read in this call finds ``expected`` running, and the write is fenced on that
        read; anything else running raises ``TargetChanged`` and changes nothing."""
        ...

    def rollout_status(self, target: Target) -> RolloutStatus: ...

    def wait_for_rollout(
        self, target: Target, *, timeout: float, on_progress: ProgressCallback | None = None
    ) -> RolloutStatus:
        """Block until done or failed (event-driven where the platform allows), or timeout."""
        ...

    def get_replicas(self, target: Target) -> int: ...

    def scale(self, target: Target, replicas: int) -> None:
        """Set the desired count, fenced on the read it was decided on (``WriteConflict``)."""
        ...

    def wait_for_stopped(
        self, target: Target, *, timeout: float, on_progress: ProgressCallback | None = None
    ) -> RolloutStatus:
        """After ``scale(target, 0)``: block until no unit of the target runs any more
        (Kubernetes: no pod of the selector, Terminating included; ECS: runningCount 0 and
        no task still running; Fly: every machine stopped). ``done=False`` on timeout."""
        ...

    def confirm_running(self, target: Target, revision: Revision) -> RunningCheck:
        """After the rollout wait: is the pinned revision what actually runs, everywhere?"""
        ...

    def describe_revision(self, target: Target, number: int) -> RevisionDetail:
        """Revision ``number`` as the platform shows it (``RevisionNotFound`` if absent)."""
        ...

    # The optional capabilities (``Capability``): a platform without one raises
    # ``Unsupported`` (its spec's ``refuse``), never None, NotImplementedError or an empty
    # answer that would read as "nothing there".
    def logs_tail(self, target: Target, *, lines: int = 100) -> str:
        """Recent logs (``Capability.LOGS``)."""
        ...

    def resource_usage(self, target: Target) -> list[ResourceUsage]:
        """Usage per running unit (``Capability.RESOURCE_USAGE``); [] means none runs."""
        ...

    def snapshot_config(self, target: Target) -> ConfigSnapshot:
        """The target's configuration objects (``Capability.CONFIG_SNAPSHOTS``)."""
        ...

    def restore_config(self, target: Target, snapshot: ConfigSnapshot) -> bool:
        """Put the snapshot back; returns whether anything changed
        (``Capability.CONFIG_SNAPSHOTS``)."""
        ...

    def config_differences(self, target: Target, running: Revision,
                           pinned: Revision) -> list[ConfigDifference]:
        """What configuration changes when ``pinned`` replaces ``running``: environment,
        secret references, platform config (``Capability.CONFIG_VIEW``); [] = identical."""
        ...



# ------------------------------------------------------------------------------ spec
BlockT = TypeVar("BlockT", bound=BaseModel)
SecretReader = Callable[[str], str | None]
"""Resolves a ``*_env`` name from a config block at the moment of use (the core's
``secret()``, which also teaches the scrubber the value); adapters never read os.environ
for credentials named in the configuration."""


class PlatformUnavailable(Exception):
    """A spec's factory cannot build its adapter here (no credentials, a token variable
    unset); the message says what is missing. The bot starts without that platform."""


def _block_setting(key: str, default: float) -> Callable[[BaseModel], float]:
    def read(block: BaseModel) -> float:
        return float(getattr(block, key, default))
    return read


@dataclass(frozen=True, eq=False)  # identity: a spec is a module-level singleton
class PlatformSpec(Generic[BlockT]):
    """One platform as data, read by the core instead of if-chains over platform names.

    ``config_model`` validates the service's ``<name>:`` block; ``target`` turns a valid
    block into the platform-neutral ``Target``; ``build`` makes the adapter from the first
    block that uses the platform (raising ``PlatformUnavailable`` when it cannot, e.g. no
    credentials). ``unsupported`` names each ``Capability`` the platform lacks and why
    (adapters raise ``refuse(capability)`` for it); ``unit`` is what one running copy is
    called ("pod"); ``summary`` is its line in the help text; ``scale_command`` is what an
    operator runs to set the replicas by hand (None: a generic sentence);
    ``rollout_timeout``/``stop_timeout`` read the waits from a block (by default its
    ``rollout_timeout_seconds``/``stop_timeout_seconds``, else 600/300 seconds). A spec
    lives at the end of its adapter's module: a platform is one file."""

    name: str
    config_model: type[BlockT]
    target: Callable[[BlockT], Target]
    build: Callable[[BlockT, SecretReader], Platform]
    unit: str = "unit"
    summary: str = ""
    unsupported: Mapping[Capability, str] = field(default_factory=dict)
    scale_command: Callable[[Target, int], str] | None = None
    rollout_timeout: Callable[[BlockT], float] = _block_setting("rollout_timeout_seconds", 600)
    stop_timeout: Callable[[BlockT], float] = _block_setting("stop_timeout_seconds", 300)

    def supports(self, capability: Capability) -> bool:
        return capability not in self.unsupported

    def refuse(self, capability: Capability) -> Unsupported:
        """The error for a capability this platform lacks, with the spec's reason."""
        reason = self.unsupported.get(capability) or f"{self.name} does not provide {capability}"
        return Unsupported(self.name, capability, reason)

    def require(self, capability: Capability) -> None:
        """Raise ``Unsupported`` unless the platform has ``capability``: the core asks
        before a call it can skip (no round trip for an answer known in advance)."""
        if not self.supports(capability):
            raise self.refuse(capability)


@dataclass(frozen=True)
class PlatformSpecs:
    """A registry: an ordered, immutable set of platform specs, one per name (the order is
    the order of help text and of a service's platforms). Hashable, so a config schema built
    from it can be cached. Production's is ``platforms.registry.PRODUCTION``; the sandbox
    and the tests build theirs with ``PRODUCTION.plus(...)``."""

    specs: tuple[PlatformSpec[Any], ...] = ()

    def __post_init__(self) -> None:
        names = [spec.name for spec in self.specs]
        twice = sorted({name for name in names if names.count(name) > 1})
        if twice:
            raise ValueError(f"platform registered twice: {', '.join(twice)}")

    def plus(self, *specs: PlatformSpec[Any]) -> PlatformSpecs:
        """This registry with more platforms (the sandbox's fake, a test's own)."""
        return PlatformSpecs((*self.specs, *specs))

    def names(self) -> tuple[str, ...]:
        return tuple(spec.name for spec in self.specs)

    def get(self, name: str) -> PlatformSpec[Any] | None:
        return next((spec for spec in self.specs if spec.name == name), None)

    def __getitem__(self, name: str) -> PlatformSpec[Any]:
        spec = self.get(name)
        if spec is None:
            raise KeyError(name)
        return spec

    def __contains__(self, name: object) -> bool:
        return any(spec.name == name for spec in self.specs)

    def __iter__(self) -> Iterator[PlatformSpec[Any]]:
        return iter(self.specs)

    def __len__(self) -> int:
        return len(self.specs)

    def listing(self, conjunction: str = "or") -> str:
        """``kubernetes, ecs or fly``: the names for a sentence."""
        names = list(self.names())
        if len(names) < 2:
            return "".join(names)
        return f"{', '.join(names[:-1])} {conjunction} {names[-1]}"
