"""Fly API plumbing: token parsing into the ``Authorization`` header Fly expects, the
Machines API httpx client, vendor-error translation into the ``platforms.base`` tree, and
pure helpers over Machine/MachineVersion JSON.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from platforms.base import (
    PermanentPlatformError,
    PlatformError,
    TargetNotFound,
    TransientPlatformError,
    WriteConflict,
    parse_retry_after,
)

LEASE_HEADER = "fly-machine-lease-nonce"
GONE_STATES = frozenset({"destroyed", "destroying"})
# Not running, and started by ``POST .../start`` (fly.io/docs/machines/machine-states/):
# stopped, suspended, and ``created`` - which is also what a stopped machine is after an
# update with ``skip_launch``, so a scaled-to-zero app updated by a rollback is ``created``.
IDLE_STATES = frozenset({"stopped", "suspended", "created"})
# Could not run: ``failed`` (its process kept exiting past the restart policy) and
# ``launch_failed`` (flyd could not launch it, e.g. the image cannot be pulled).
FAILED_STATES = frozenset({"failed", "launch_failed"})
# Not running at all; ``destroying`` is still shutting down.
DOWN_STATES = IDLE_STATES | FAILED_STATES | {"destroyed"}
RELEASE_KEY = "fly_release_version"  # flyctl's metadata keys on every deployed machine
RELEASE_ID_KEY = "fly_release_id"  # (internal/command/deploy/machines_launchinput.go)
# Macaroon token prefixes (superfly/fly-go tokens/tokens.go Parse): org, deploy and
# read-only tokens; anything else is a user (OAuth / personal access) token.
MACAROON_PREFIXES = ("fm1r", "fm1a", "fm2")
# A 409 from a mutating call is the API refusing a fenced write: a lease held by someone else
# (or our nonce no longer the lease's) or a ``current_version`` that is not the machine's
# latest; Fly staff list these, plus a host out of capacity, as the 409s of Machines_update
# (community.fly.io/t/409-conflict-error-from-machines-api/15555). The capacity case is told
# apart by flyd's wording, as fly-go does (flaps/flaps_error.go, flydResourcePhrases).
_CAPACITY_PHRASES = ("insufficient cpus", "insufficient memory", "insufficient ips",
                     "insufficient resources", "no capacity")

Json = dict[str, Any]


def strip_scheme(token: str) -> str:
    """``Bearer x``/``FlyV1 x`` -> ``x`` (case-insensitive, repeatedly), as tokens.go's
    StripAuthorizationScheme does for a token pasted with its header scheme."""
    token = token.strip()
    scheme, _, rest = token.partition(" ")
    if rest and scheme.strip().lower() in ("bearer", "flyv1"):
        return strip_scheme(rest)
    return token


@dataclass(frozen=True)
class FlyTokens:
    """A Fly token string split the way superfly/fly-go tokens/tokens.go ``Parse`` splits it:
    comma-separated tokens, macaroons (fm1r_/fm1a_/fm2_) apart from user tokens."""

    macaroons: tuple[str, ...]
    users: tuple[str, ...]

    @classmethod
    def parse(cls, token: str) -> FlyTokens:
        macaroons: list[str] = []
        users: list[str] = []
        for part in strip_scheme(token).split(","):
            part = part.strip()
            if not part:
                continue
            (macaroons if part.split("_", 1)[0] in MACAROON_PREFIXES else users).append(part)
        return cls(tuple(macaroons), tuple(users))

    def header(self, *, with_user_tokens: bool = False) -> str | None:
        """The Authorization value (tokens.go ``normalized``): ``FlyV1`` and the macaroons
        when there are any, else ``Bearer`` and the user tokens. The Machines API, logs and
        metrics take macaroons only (FlapsHeader/BubblegumHeader); GraphQL takes both
        (GraphQLHeader, ``with_user_tokens``)."""
        if self.macaroons:
            parts = self.macaroons + (self.users if with_user_tokens else ())
            return "FlyV1 " + ",".join(parts)
        if self.users:
            return "Bearer " + ",".join(self.users)
        return None


def retry_after(response: httpx.Response) -> float | None:
    return parse_retry_after(response.headers.get("Retry-After"))


def error_text(response: httpx.Response) -> str:
    """The ErrorResponse ``error`` field (the spec), else ``message`` (the lease errors as
    Fly's docs show them), else the status line (never request headers)."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        for key in ("error", "message"):
            if body.get(key):
                return str(body[key])
    return f"{response.status_code} {response.reason_phrase}".strip()


def map_response_error(response: httpx.Response, what: str) -> PlatformError:
    """404 gone; 409 a refused fenced write (WriteConflict) unless a host is out of
    capacity; 408/409/412/429/5xx retry (with Retry-After); other 4xx permanent."""
    status = response.status_code
    text = error_text(response)
    message = f"{what}: {text} (HTTP {status})"
    if status == 404:
        return TargetNotFound(message)
    if status == 401:
        return PermanentPlatformError(f"{what}: unauthorized, the Fly API token is missing or "
                                      f"invalid (HTTP 401)")
    if status == 409 and not any(p in text.lower() for p in _CAPACITY_PHRASES):
        return WriteConflict(message, retry_after=retry_after(response))
    if status in (408, 409, 412, 429) or status >= 500:
        return TransientPlatformError(message, retry_after=retry_after(response))
    return PermanentPlatformError(message)


def lease_nonce(payload: Any) -> str:
    """The nonce of a created lease: flat as the OpenAPI spec's Lease schema has it, or under
    ``data`` as the live API answers (fly-go machine_types.go MachineLease{Status, Data});
    "" when absent."""
    if not isinstance(payload, dict):
        return ""
    data = payload.get("data")
    if isinstance(data, dict) and data.get("nonce"):
        return str(data["nonce"])
    return str(payload.get("nonce") or "")


class NoAnswer(TransientPlatformError):
    """The request was sent but no answer came in time: the API may still apply it."""


def send(client: httpx.Client, method: str, url: str, *, what: str, service: str,
         ok: Iterable[int] = (), **kwargs: Any) -> httpx.Response:
    """One request to a Fly API (``service`` names it in errors), httpx's failures translated
    once for the Machines, GraphQL, logs and metrics clients: sent but unanswered in time is
    NoAnswer (it may still apply), other timeouts and transport errors transient, an HTTP
    error status mapped by ``map_response_error`` unless in ``ok``. Never resent here."""
    try:
        response = client.request(method, url, **kwargs)
    except (httpx.ReadTimeout, httpx.WriteTimeout) as exc:
        raise NoAnswer(f"{what}: no answer from the {service} in time "
                       f"({type(exc).__name__})") from exc
    except httpx.TimeoutException as exc:
        raise TransientPlatformError(f"{what}: {service} timed out ({exc})") from exc
    except httpx.TransportError as exc:
        raise TransientPlatformError(f"{what}: {service} unreachable ({exc})") from exc
    if response.is_success or response.status_code in ok:
        return response
    raise map_response_error(response, what)


class FlyApi:
    """Thin JSON client for one Machines API base URL; every failure is a PlatformError.

    Nothing is ever resent here: httpx does not retry a request on its own (its transport
    retries only failed connection attempts, and none by default), and a mutating call that
    timed out surfaces as a TransientPlatformError for the caller to re-read and decide, the
    way fly-go only retries GETs (flaps/flaps.go, ``safeToRetry := method == GET``)."""

    def __init__(self, client: httpx.Client) -> None:
        self.client = client

    def call(self, method: str, path: str, *, what: str, json: Any = None,
             params: Mapping[str, str | int] | None = None, nonce: str | None = None,
             timeout: float | None = None, ok: Iterable[int] = ()) -> httpx.Response:
        """Send one request; statuses in ``ok`` (besides 2xx) are returned, not raised."""
        headers = {LEASE_HEADER: nonce} if nonce else {}
        extra: dict[str, Any] = {}
        if timeout is not None:
            extra["timeout"] = timeout
        return send(self.client, method, "/v1" + path, what=what, service="Fly Machines API",
                    ok=ok, json=json, params=params, headers=headers, **extra)

    def json(self, method: str, path: str, *, what: str, **kwargs: Any) -> Any:
        response = self.call(method, path, what=what, **kwargs)
        try:
            return response.json() if response.content else None
        except ValueError as exc:
            raise TransientPlatformError(f"{what}: malformed JSON from the Fly API") from exc


# ------------------------------------------------------------------------- helpers
def image_of(config: Mapping[str, Any] | None) -> str:
    return str((config or {}).get("image") or "")


def digest_of(image: str) -> str | None:
    return image.split("@", 1)[1] if "@" in image else None


def same_image(a: str, b: str) -> bool:
    """Equal references, or the same content digest when both are digest-pinned."""
    if a == b:
        return True
    da, db = digest_of(a), digest_of(b)
    return da is not None and da == db


def runs_image(machine: Mapping[str, Any], pinned: str) -> bool:
    """Does ``machine`` run ``pinned``? When both the pinned reference and the machine's
    resolved ``image_ref`` carry a digest, the digests decide (content, whatever the tag);
    otherwise the configured reference must equal it (or share its digest)."""
    wanted = digest_of(pinned)
    resolved = (machine.get("image_ref") or {}).get("digest")
    if wanted and resolved:
        return bool(resolved == wanted)
    return same_image(image_of(machine.get("config")), pinned)


def checks_state(machine: Mapping[str, Any]) -> tuple[bool, str]:
    """(all passing, summary). A machine whose config defines no checks passes."""
    defined = set((machine.get("config") or {}).get("checks") or {})
    reported = {str(c.get("name")): c for c in machine.get("checks") or []}
    failing = [f"{name}={(reported.get(name) or {}).get('status') or 'unknown'}"
               for name in sorted(defined | set(reported))
               if (reported.get(name) or {}).get("status") != "passing"]
    if not failing:
        return True, "checks passing"
    outputs = [str(c.get("output")) for c in reported.values()
               if c.get("status") != "passing" and c.get("output")]
    detail = f" ({'; '.join(outputs)})" if outputs else ""
    return False, "checks " + ", ".join(failing) + detail


def describe(machine: Mapping[str, Any]) -> str:
    name = machine.get("name")
    return f"machine {machine.get('id')}" + (f" ({name})" if name else "")
