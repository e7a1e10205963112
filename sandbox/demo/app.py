"""The demo hotel-voice-bot as a plain WSGI app: routes, Prometheus metrics, failure injection.

Whether it misbehaves depends on the version ``version_source`` reports right now (a bad
release fails) and on drills (``break_``/``heal``), so a rollback visibly cures it.
"""

from __future__ import annotations

import itertools
import json
import logging
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, make_wsgi_app

log = logging.getLogger(__name__)

Environ = dict[str, Any]
StartResponse = Callable[..., Any]
Reply = tuple[int, Any]  # (HTTP status, JSON-able body)

SERVICE_NAME = "hotel-voice-bot"
MAX_BODY_BYTES = 64 * 1024

FAQS: list[dict[str, Any]] = [
    {"id": 1, "question": "What time is check-in?", "answer": "From 15:00."},
    {"id": 2, "question": "What time is check-out?", "answer": "Until 11:00."},
    {"id": 3, "question": "Is breakfast included?", "answer": "Yes, 06:30-10:30."},
    {"id": 4, "question": "Do you have parking?", "answer": "Underground, 18 EUR per night."},
    {"id": 5, "question": "Are pets allowed?", "answer": "Dogs under 10 kg, on request."},
]


class ServiceUnavailable(Exception):
    """Raise from ``version_source`` when no replica runs (e.g. scaled to zero)."""


def image_tag(version: str) -> str:
    """``ghcr.io/acme/bot:1.4.2`` -> ``1.4.2``; a bare version string is returned as is."""
    if "@" in version:  # digest reference: the digest is the only identity there is
        return version.rsplit("@", 1)[1]
    colon = version.rfind(":")
    # A colon before the last slash belongs to a registry port, not to a tag.
    if colon > version.rfind("/"):
        return version[colon + 1 :]
    return version


@dataclass(frozen=True)
class Drill:
    """An injected failure; ``version`` set means it belongs to that release only."""

    error_rate: float = 0.0
    slow_ms: int = 0
    version: str | None = None
    even: bool = False  # fail exactly every 1/error_rate-th request instead of at random

    def applies_to(self, version: str) -> bool:
        if self.error_rate <= 0 and self.slow_ms <= 0:
            return False
        return self.version is None or self.version == version


class DemoApp:
    """WSGI callable; mount it on any server (``sandbox.demo.service`` runs it locally)."""

    def __init__(
        self,
        *,
        version_source: Callable[[], str] | str = "1.0.0",
        bad_versions: Iterable[str] = (),
        bad_health_delay: float = 2.0,
        service_name: str = SERVICE_NAME,
        seed: int | None = None,
        registry: CollectorRegistry | None = None,
    ) -> None:
        if isinstance(version_source, str):
            fixed = version_source
            self._version_source: Callable[[], str] = lambda: fixed
        else:
            self._version_source = version_source
        self.bad_versions = frozenset(bad_versions)
        self.bad_health_delay = bad_health_delay
        self.service_name = service_name
        self._random = random.Random(seed)
        self._lock = threading.Lock()
        self._owed = 0.0  # an even drill's failures due (see ``break_``)
        self._drill = Drill()
        # Set by the server on stop so slow responses end promptly instead of pinning threads.
        self.stopping = threading.Event()
        self._conversations: deque[dict[str, Any]] = deque(maxlen=500)
        self._conversation_ids = itertools.count(1)

        # A registry per instance: several demo services can live in one test process.
        self.registry = registry if registry is not None else CollectorRegistry()
        self._requests = Counter(
            "http_requests",
            "HTTP requests handled, by route template and status code.",
            ["service", "route", "status"],
            registry=self.registry,
        )
        self._latency = Histogram(
            "http_request_duration_seconds",
            "Time to answer an HTTP request, by route template.",
            ["service", "route"],
            registry=self.registry,
        )
        self._metrics_app = make_wsgi_app(self.registry)
        self._routes: dict[str, tuple[str, Callable[[Environ, str], Reply]]] = {
            "/api/health": ("GET", self._health),
            "/api/faqs": ("GET", self._faqs),
            "/api/conversations": ("POST", self._create_conversation),
            "/webhook/whatsapp": ("POST", self._whatsapp_webhook),
        }
        # Export the 5xx series at 0 from the start (Prometheus' "avoid missing metrics"
        # advice): otherwise the error-ratio numerator is an empty vector, and the ratio
        # "no data" instead of 0, until the first failure ever happens.
        for route in self._routes:
            for status in ("500", "503"):
                self._requests.labels(self.service_name, route, status)

    # -- behaviour controls ------------------------------------------------------------

    def current_version(self) -> str:
        """What the version source says runs now; raises ``ServiceUnavailable`` if none."""
        return self._version_source()

    def is_bad(self, version: str) -> bool:
        tag = image_tag(version)
        return version in self.bad_versions or tag in self.bad_versions or "bad" in tag.lower()

    def break_(
        self, error_rate: float = 1.0, slow_ms: int = 0, *, version: str | None = None,
        even: bool = False,
    ) -> Drill:
        """Fail ``error_rate`` of requests and delay all by ``slow_ms`` until ``heal()``.

        With ``version`` the failure belongs to that release, so rolling back cures it.
        ``even`` spreads the failures evenly (a steady 6 % over any window of some size,
        for tests of a threshold) instead of drawing each at random.
        """
        if not 0.0 <= error_rate <= 1.0:
            raise ValueError(f"error_rate must be within [0, 1], got {error_rate}")
        if slow_ms < 0:
            raise ValueError(f"slow_ms must not be negative, got {slow_ms}")
        drill = Drill(error_rate=error_rate, slow_ms=int(slow_ms), version=version, even=even)
        with self._lock:
            self._drill = drill
            self._owed = 0.0
        log.info("drill: %s breaks (%s)", self.service_name, drill)
        return drill

    def heal(self) -> None:
        with self._lock:
            self._drill = Drill()
        log.info("drill: %s healed", self.service_name)

    @property
    def drill(self) -> Drill:
        with self._lock:
            return self._drill

    def status(self) -> dict[str, Any]:
        """Snapshot for a web console: version, whether it is bad, the active drill."""
        try:
            version: str | None = self.current_version()
        except Exception:  # a console snapshot must never fail
            version = None
        return {
            "service": self.service_name,
            "version": image_tag(version) if version is not None else None,
            "image": version,
            "bad": version is not None and self.is_bad(version),
            "drill": asdict(self.drill),
        }

    # -- WSGI --------------------------------------------------------------------------

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO") or "/"
        # Scrapes and drill control are plumbing, not traffic: counting them would
        # dilute the error ratio the bot watches.
        if path == "/metrics":
            return self._metrics_app(environ, start_response)  # type: ignore[no-any-return]
        if path.startswith("/_drill/"):
            status, body = self._drill_endpoint(environ, path)
            return _respond(start_response, status, body)

        started = time.perf_counter()
        route = path if path in self._routes else "unmatched"
        headers: list[tuple[str, str]] = []
        try:
            status, body = self._dispatch(environ, path, headers)
        except Exception:
            log.exception("demo %s crashed on %s", self.service_name, path)
            status, body = 500, {"error": "internal error"}
        self._requests.labels(self.service_name, route, str(status)).inc()
        self._latency.labels(self.service_name, route).observe(time.perf_counter() - started)
        return _respond(start_response, status, body, headers)

    def _dispatch(self, environ: Environ, path: str, headers: list[tuple[str, str]]) -> Reply:
        entry = self._routes.get(path)
        if entry is None:
            return 404, {"error": f"no route {path}"}
        method, handler = entry
        if environ.get("REQUEST_METHOD", "GET") != method:
            headers.append(("Allow", method))
            return 405, {"error": f"use {method} for {path}"}
        try:
            version = self.current_version()
        except Exception as exc:  # any source failure means "no replica"
            # What an ingress answers when the Service has no ready endpoints.
            log.debug("version source failed: %s", exc)
            return 503, {"error": "no healthy upstream"}
        return handler(environ, version)

    # -- routes ------------------------------------------------------------------------

    def _health(self, environ: Environ, version: str) -> Reply:
        tag = image_tag(version)
        if self.is_bad(version):
            # A broken release: the health check hangs, then fails, like a pod whose
            # dependencies time out.
            self.stopping.wait(self.bad_health_delay)
            return 503, {"status": "unhealthy", "version": tag, "reason": "release is broken"}
        if self._injected_failure(version):
            return 503, {"status": "unhealthy", "version": tag, "reason": "drill"}
        return 200, {"status": "ok", "version": tag}

    def _faqs(self, environ: Environ, version: str) -> Reply:
        failed = self._api_failure(version)
        return failed if failed is not None else (200, FAQS)

    def _create_conversation(self, environ: Environ, version: str) -> Reply:
        payload = _read_json(environ)
        if isinstance(payload, tuple):
            return payload
        failed = self._api_failure(version)
        if failed is not None:
            return failed
        conversation = {
            "id": f"conv_{next(self._conversation_ids)}",
            "guest": payload.get("guest", "anonymous"),
            "channel": payload.get("channel", "voice"),
            "status": "open",
            "created_at": datetime.now(UTC).isoformat(),
            "version": image_tag(version),
        }
        self._conversations.append(conversation)
        return 201, conversation

    def _whatsapp_webhook(self, environ: Environ, version: str) -> Reply:
        payload = _read_json(environ)
        if isinstance(payload, tuple):
            return payload
        failed = self._api_failure(version)
        return failed if failed is not None else (200, {"ok": True})

    def _api_failure(self, version: str) -> Reply | None:
        if self.is_bad(version):
            return 500, {"error": f"unhandled exception in release {image_tag(version)}"}
        if self._injected_failure(version):
            return 503, {"error": "injected failure (drill)"}
        return None

    def _injected_failure(self, version: str) -> bool:
        """Apply the drill's delay; True if this request should fail."""
        drill = self.drill
        if not drill.applies_to(version):
            return False
        if drill.slow_ms:
            self.stopping.wait(drill.slow_ms / 1000)
        if drill.error_rate >= 1.0:
            return True
        if drill.even:
            with self._lock:
                self._owed += drill.error_rate
                if self._owed >= 1.0:
                    self._owed -= 1.0
                    return True
                return False
        return self._random.random() < drill.error_rate

    # -- drill endpoints (for the web console) -----------------------------------------

    def _drill_endpoint(self, environ: Environ, path: str) -> Reply:
        method = environ.get("REQUEST_METHOD", "GET")
        if path == "/_drill/status" and method == "GET":
            return 200, self.status()
        if path == "/_drill/heal" and method == "POST":
            self.heal()
            return 200, self.status()
        if path == "/_drill/break" and method == "POST":
            payload = _read_json(environ)
            if isinstance(payload, tuple):
                return payload
            try:
                version = payload.get("version")
                if version == "current":
                    version = self.current_version()
                self.break_(
                    error_rate=float(payload.get("error_rate", 1.0)),
                    slow_ms=int(payload.get("slow_ms", 0)),
                    version=None if version is None else str(version),
                )
            except (TypeError, ValueError, ServiceUnavailable) as exc:
                return 400, {"error": f"bad drill: {exc}"}
            return 200, self.status()
        return 404, {"error": "drill endpoints: GET /_drill/status, POST /_drill/break|heal"}


def _read_json(environ: Environ) -> dict[str, Any] | Reply:
    """The request's JSON object (empty body = ``{}``), or a 4xx reply saying what is wrong."""
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return 400, {"error": "bad Content-Length"}
    if length > MAX_BODY_BYTES:
        return 413, {"error": f"body larger than {MAX_BODY_BYTES} bytes"}
    raw = environ["wsgi.input"].read(length) if length else b""
    if not raw.strip():
        return {}
    try:
        payload = json.loads(raw)
    except ValueError as exc:
        return 400, {"error": f"body is not JSON: {exc}"}
    if not isinstance(payload, dict):
        return 400, {"error": "body must be a JSON object"}
    return payload


def _respond(
    start_response: StartResponse,
    status: int,
    body: Any,
    headers: list[tuple[str, str]] | None = None,
) -> Iterator[bytes]:
    data = json.dumps(body).encode()
    phrase = HTTPStatus(status).phrase
    start_response(
        f"{status} {phrase}",
        [
            ("Content-Type", "application/json"),
            ("Content-Length", str(len(data))),
            ("Cache-Control", "no-store"),
            *(headers or []),
        ],
    )
    return iter([data])
