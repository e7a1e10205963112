"""ECS adapter helpers: botocore error translation, no automatic resend of mutating calls, and
the ``services_stable`` waiter's own acceptors (botocore's ``waiters-2`` model) via jmespath.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

import jmespath
from botocore.exceptions import (
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    ReadTimeoutError,
)
from botocore.loaders import Loader

from platforms.base import (
    PermanentPlatformError,
    PlatformError,
    RevisionNotFound,
    TargetNotFound,
    TransientPlatformError,
    parse_retry_after,
)

TARGET_MISSING = {"ClusterNotFoundException", "ServiceNotFoundException",
                  "ServiceNotActiveException"}
TRANSIENT = {"ThrottlingException", "Throttling", "TooManyRequestsException",
             "RequestLimitExceeded", "ServerException", "ServiceUnavailable",
             "ServiceUnavailableException", "InternalFailure", "RequestTimeout",
             "RequestTimeoutException"}
_TASK_DEF_MISSING = re.compile(r"task ?definition|revision is missing", re.IGNORECASE)
_ARN_RE = re.compile(r"task-definition/(?P<family>[A-Za-z0-9_-]+):(?P<rev>\d+)$")


# Calls that change the service. botocore resends a request on its own when the answer does not
# come in time: standard mode retries every HTTPClientError, ReadTimeoutError included
# (botocore/retries/standard.py, TransientRetryableChecker), legacy mode its
# GENERAL_CONNECTION_ERROR list, again with ReadTimeoutError (botocore/retryhandler.py,
# EXCEPTION_MAP). For an UpdateService the server may already be applying, that resend is a
# second write nobody decided: the late-write source of issue 10. ``never_resend_writes``
# vetoes it per operation, on any client (ours or one passed in), while reads keep botocore's
# retries: endpoint.py ``_needs_retry`` stops at the first handler answer that is not None, and
# ``False`` means "do not retry" (the standard handler returns False the same way for long
# polls); handlers on the more specific event name run first (botocore/hooks.py
# ``PrefixTrie._get_items``). Equivalent to ``Config(retries={"total_max_attempts": 1})``
# (botocore/config.py) for these operations only.
MUTATING_OPERATIONS = ("UpdateService",)


def _do_not_resend(**_: Any) -> bool:
    return False


def never_resend_writes(client: Any) -> Any:
    """Register, first, a ``needs-retry`` handler answering False for every mutating ECS
    operation on ``client`` (idempotent: one registration per unique id)."""
    service = client.meta.service_model.service_id.hyphenize()
    for operation in MUTATING_OPERATIONS:
        client.meta.events.register_first(f"needs-retry.{service}.{operation}", _do_not_resend,
                                          unique_id=f"rollback-bot-no-resend-{operation}")
    return client


def outcome_unknown(exc: BaseException | None) -> bool:
    """Did a mutating call fail after ECS may have received it? A read timeout or a connection
    closed before the answer, or a 5xx (AWS does not say whether it applied anything), leave
    the write in doubt; throttling and other 4xx, and failures to connect, mean it was not
    applied."""
    if isinstance(exc, (ReadTimeoutError, ConnectionClosedError)):
        return True
    if isinstance(exc, ClientError):
        return int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0) >= 500
    return False


def parse_task_definition_arn(arn: str) -> tuple[str, int]:
    """``(family, revision)`` of a task-definition ARN (or ``family:rev``)."""
    match = _ARN_RE.search(arn if "task-definition/" in arn else f"task-definition/{arn}")
    if match is None:
        raise RevisionNotFound(f"not a task definition ARN: {arn!r}")
    return match["family"], int(match["rev"])


def short_name(arn: str | None) -> str:
    """``family:rev`` for display (the ARN itself stays the identity)."""
    return str(arn).rsplit("/", 1)[-1] if arn else "?"


def map_client_error(exc: ClientError, *, task_definition: bool = False) -> PlatformError:
    """Translate one botocore ``ClientError``; ``task_definition`` marks calls where a
    ClientException means the named task definition does not exist."""
    error = exc.response.get("Error", {})
    code = str(error.get("Code", ""))
    message = str(error.get("Message", "")) or str(exc)
    meta = exc.response.get("ResponseMetadata", {})
    status = int(meta.get("HTTPStatusCode") or 0)
    text = f"{code}: {message}" if code else message
    if code in TARGET_MISSING:
        return TargetNotFound(text)
    if code in TRANSIENT or status >= 500 or status == 429:
        return TransientPlatformError(text, retry_after=_retry_after(meta))
    if task_definition and code == "ClientException" and _TASK_DEF_MISSING.search(message):
        return RevisionNotFound(text)
    return PermanentPlatformError(text)


def _retry_after(meta: Mapping[str, Any]) -> float | None:
    value = (meta.get("HTTPHeaders") or {}).get("retry-after")
    return parse_retry_after(str(value) if value is not None else None)


@contextlib.contextmanager
def translate(*, task_definition: bool = False) -> Iterator[None]:
    """Re-raise botocore errors as the platform error tree."""
    try:
        yield
    except ClientError as exc:
        raise map_client_error(exc, task_definition=task_definition) from exc
    except (ReadTimeoutError, ConnectionClosedError) as exc:
        raise TransientPlatformError(f"no answer from ECS: {exc}") from exc
    except (EndpointConnectionError, ConnectTimeoutError) as exc:
        raise TransientPlatformError(f"ECS endpoint unreachable: {exc}") from exc
    except NoCredentialsError as exc:
        raise PermanentPlatformError(f"no AWS credentials: {exc}") from exc


# ------------------------------------------------------------------ waiter semantics
@dataclass(frozen=True)
class WaiterModel:
    """The parts of botocore's ``ServicesStable`` waiter we evaluate."""

    delay: float
    max_attempts: int
    acceptors: tuple[Mapping[str, Any], ...]


@cache
def waiter_model(name: str) -> WaiterModel:
    """botocore's own waiter definition (``ServicesStable``, ``TasksStopped``)."""
    waiters = Loader().load_service_model("ecs", "waiters-2")["waiters"]
    spec = waiters[name]
    return WaiterModel(delay=float(spec["delay"]), max_attempts=int(spec["maxAttempts"]),
                       acceptors=tuple(spec["acceptors"]))


def services_stable_model() -> WaiterModel:
    """botocore's own definition, so our verdict cannot drift from ``get_waiter``'s."""
    return waiter_model("ServicesStable")


def evaluate_acceptors(response: Mapping[str, Any],
                       acceptors: Sequence[Mapping[str, Any]] | None = None) -> str:
    """``"success"``, ``"failure"`` or ``"retry"``: the first matching acceptor wins,
    as in ``botocore.waiter.Waiter.wait`` (path / pathAll / pathAny matchers)."""
    for acceptor in acceptors if acceptors is not None else services_stable_model().acceptors:
        matcher, expected = acceptor["matcher"], acceptor["expected"]
        if matcher == "status":
            matched = expected == 200  # we only evaluate successful DescribeServices calls
        elif matcher == "error":
            matched = False
        else:
            found = jmespath.search(acceptor["argument"], dict(response))
            if matcher == "path":
                matched = found == expected
            elif matcher == "pathAll":
                matched = isinstance(found, list) and bool(found) and all(
                    v == expected for v in found)
            elif matcher == "pathAny":
                matched = isinstance(found, list) and any(v == expected for v in found)
            else:
                matched = False
        if matched:
            return str(acceptor["state"])
    return "retry"


# ------------------------------------------------------------ circuit-breaker evidence
# ECS writes these service events when its deployment circuit breaker gives up on a
# deployment and (rollback=true) reverts to the last completed one, e.g.
#   (service api) (deployment ecs-svc/346...) deployment failed: tasks failed to start.
#   (service api) rolling back to deployment ecs-svc/474....
# Once the failed deployment has drained, these events are the only trace of the revert.
_FAILED_EVENT = re.compile(r"\(deployment (?P<id>[^)\s]+)\) deployment failed: (?P<reason>.*?)\.?$")
_ROLLBACK_EVENT = re.compile(r"rolling back to deployment (?P<id>[^\s.]+)")


@dataclass(frozen=True)
class Revert:
    """A circuit-breaker rollback: ``failed`` deployment (of ``failed_arn`` when still
    listed) given up for ``reason``, the service back on deployment ``to``."""

    failed: str
    reason: str
    to: str
    failed_arn: str = ""

    def describe(self, running: str) -> str:
        what = f"deployment {self.failed}" + (f" of {self.failed_arn}" if self.failed_arn else "")
        return (f"the ECS deployment circuit breaker rolled back {what} ({self.reason}) "
                f"to deployment {self.to}, so {running} runs again")


def revert_from_events(events: Sequence[Mapping[str, Any]], to: str) -> Revert | None:
    """The newest revert *to* deployment ``to`` in DescribeServices ``events`` (newest first),
    with the failed deployment named by the "deployment failed" event logged just before it."""
    for index, event in enumerate(events):
        match = _ROLLBACK_EVENT.search(str(event.get("message") or ""))
        if match is None or match["id"] != to:
            continue
        for older in events[index + 1:]:
            failed = _FAILED_EVENT.search(str(older.get("message") or ""))
            if failed is not None:
                return Revert(failed["id"], failed["reason"], to)
        return Revert("?", "deployment failed", to)
    return None


def chunks(items: Sequence[str], size: int) -> Iterator[list[str]]:
    for start in range(0, len(items), size):
        yield list(items[start:start + size])
