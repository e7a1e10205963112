"""Faults on the ECS emulator's wire: hold a request past the client's timeout and apply it
afterwards (a late write), or refuse one the way AWS throttles; every ECS call is recorded.
"""

# Why the hold applies the request it held: a server that has received a request processes
# it whether or not the client is still waiting, and ECS's UpdateService carries nothing that
# would let the server refuse it later (botocore data/ecs/2014-11-13/service-2.json, shape
# UpdateServiceRequest: no version, no precondition, no client token). So a held UpdateService
# is handed to moto unchanged once released, and whatever it says lands, exactly as ECS would
# apply a request it had been slow to process. Only the response is lost: the client gave up,
# and werkzeug drops the write to the closed connection (werkzeug/serving.py,
# ``connection_dropped``).
#
# Throttling is answered like the AWS JSON protocol does: HTTP 400 with
# ``{"__type": "ThrottlingException", "message": "Rate exceeded"}`` (botocore parses the code
# from ``__type``; botocore/retries/standard.py lists ThrottlingException among the throttling
# codes), optionally with a Retry-After header for clients that honour one.

from __future__ import annotations

import io
import json
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

TARGET_PREFIX = "AmazonEC2ContainerServiceV20141113."  # X-Amz-Target of every ECS call
MAX_HOLD_SECONDS = 30.0  # a held request is processed at the latest after this long

Environ = dict[str, Any]
StartResponse = Callable[..., Any]
WsgiApp = Callable[[Environ, StartResponse], Iterable[bytes]]


@dataclass
class EcsCall:
    """One ECS API call as the server received it; ``status`` once it has been answered."""

    operation: str
    body: Mapping[str, Any]
    received: float  # time.monotonic()
    status: int | None = None


@dataclass
class Held:
    """A request the server holds: ``arrived`` is set when it is in, ``release()`` lets the
    server process it, ``done`` is set once processed (``status`` is what the server answered,
    to nobody if the client had given up)."""

    operation: str
    where: Callable[[Mapping[str, Any]], bool] | None = None
    times: int = 1
    max_hold: float = MAX_HOLD_SECONDS
    skip: int = 0  # let this many matching requests through first
    arrived: threading.Event = field(default_factory=threading.Event)
    done: threading.Event = field(default_factory=threading.Event)
    status: int | None = None
    body: Mapping[str, Any] | None = None
    _release: threading.Event = field(default_factory=threading.Event)

    def release(self) -> None:
        """Let every request held so far proceed; the hold catches no further request."""
        self._release.set()

    def matches(self, operation: str, body: Mapping[str, Any]) -> bool:
        return (self.times > 0 and not self._release.is_set() and operation == self.operation
                and (self.where is None or self.where(body)))


@dataclass
class Refusal:
    operation: str
    code: str = "ThrottlingException"
    message: str = "Rate exceeded"
    status: int = 400
    retry_after: str | None = None
    times: int = 1


class FaultyWire:
    """WSGI middleware in front of moto's app: records ECS calls and applies faults."""

    def __init__(self) -> None:
        self.calls: list[EcsCall] = []
        self._holds: list[Held] = []
        self._refusals: list[Refusal] = []
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ control
    def hold(self, held: Held) -> Held:
        with self._lock:
            self._holds.append(held)
        return held

    def refuse(self, refusal: Refusal) -> None:
        with self._lock:
            self._refusals.append(refusal)

    def clear(self) -> None:
        """Forget the call log and pending faults; release every request still held."""
        with self._lock:
            holds, self._holds, self._refusals, self.calls = self._holds, [], [], []
        for held in holds:
            held.release()

    def forget_calls(self) -> None:
        with self._lock:
            self.calls = []

    def recorded(self, operation: str | None = None) -> list[EcsCall]:
        with self._lock:
            return [c for c in self.calls if operation is None or c.operation == operation]

    # --------------------------------------------------------------------- WSGI
    def wrap(self, app: WsgiApp) -> WsgiApp:
        def middleware(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
            return self._serve(app, environ, start_response)
        return middleware

    def _serve(self, app: WsgiApp, environ: Environ,
               start_response: StartResponse) -> Iterable[bytes]:
        target = str(environ.get("HTTP_X_AMZ_TARGET") or "")
        if not target.startswith(TARGET_PREFIX):
            return app(environ, start_response)
        operation = target[len(TARGET_PREFIX):]
        length = int(environ.get("CONTENT_LENGTH") or 0)
        raw = environ["wsgi.input"].read(length) if length else b""
        environ["wsgi.input"] = io.BytesIO(raw)  # moto reads the body again
        try:
            body = json.loads(raw) if raw else {}
        except ValueError:
            body = {}
        call = EcsCall(operation, body if isinstance(body, dict) else {}, time.monotonic())
        with self._lock:
            self.calls.append(call)
            refusal = next((r for r in self._refusals
                            if r.times > 0 and r.operation == operation), None)
            held = None if refusal else next(
                (h for h in self._holds if h.matches(operation, call.body)), None)
            if refusal is not None:
                refusal.times -= 1
            if held is not None and held.skip > 0:
                held.skip, held = held.skip - 1, None
            elif held is not None:
                held.times -= 1
        if refusal is not None:
            call.status = refusal.status
            return _aws_error(start_response, refusal)
        if held is not None:
            held.body = call.body
            held.arrived.set()
            held._release.wait(held.max_hold)
        statuses: list[int] = []

        def capture(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            statuses.append(int(status.split()[0]))
            return start_response(status, headers, exc_info)

        # Materialise the response: the write happens now, whoever is still listening.
        result = b"".join(app(environ, capture))
        call.status = statuses[0] if statuses else None
        if held is not None:
            held.status = call.status
            held.done.set()
        return [result]


def _aws_error(start_response: StartResponse, refusal: Refusal) -> Iterable[bytes]:
    payload = json.dumps({"__type": refusal.code, "message": refusal.message}).encode()
    headers = [("Content-Type", "application/x-amz-json-1.1"),
               ("Content-Length", str(len(payload))),
               ("x-amzn-RequestId", "00000000-0000-0000-0000-000000000000")]
    if refusal.retry_after is not None:
        headers.append(("Retry-After", refusal.retry_after))
    reason = {400: "Bad Request", 429: "Too Many Requests", 503: "Service Unavailable"}.get(
        refusal.status, "Error")
    start_response(f"{refusal.status} {reason}", headers)
    return [payload]
