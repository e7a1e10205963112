"""A Statuspage-compatible API on 127.0.0.1: incidents per page, OAuth key auth, history.

The subset the bot uses (create, update, get one, list unresolved), driven by
``bot.aftercare.statuspage``. Every create or update appends an entry to the incident's
``incident_updates`` (its timeline), with the component statuses it changed, and the
failures the bot must live with are the real API's: 401 without the key, 404 for an
unknown incident, 422 for a status the API does not know, 429 with ``Retry-After`` when the
page is rate limited (``rate_limit_next``), and a 5xx on demand (``fail_next``).
"""

from __future__ import annotations

import itertools
import json
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

# The statuses of a realtime incident and of a component, as Statuspage's API documents
# them (https://doers.statuspage.io/api/v1/incidents/ "Create a realtime incident":
# incident[status] is investigating|identified|monitoring|resolved; components:
# operational|degraded_performance|partial_outage|major_outage|under_maintenance).
INCIDENT_STATUSES = ("investigating", "identified", "monitoring", "resolved")
COMPONENT_STATUSES = ("operational", "degraded_performance", "partial_outage",
                      "major_outage", "under_maintenance")


class StatuspageEmulator:
    def __init__(self, *, api_key: str, page_id: str = "page1", host: str = "127.0.0.1",
                 clock: Callable[[], datetime] | None = None) -> None:
        self.api_key = api_key
        self.page_id = page_id
        self.host = host
        self.clock = clock or (lambda: datetime.now(UTC))
        self.incidents: dict[str, dict[str, Any]] = {}
        self.components: dict[str, str] = {}  # component id -> its current status
        self.requests: list[dict[str, Any]] = []  # method, path, authorized, body, status
        self.lock = threading.Lock()
        self._ids = itertools.count(1)
        self._failures: list[tuple[int, dict[str, str]]] = []  # answers for the next calls
        self._server: ThreadingHTTPServer | None = None

    @property
    def api_url(self) -> str:
        assert self._server is not None
        return f"http://{self.host}:{self._server.server_address[1]}/v1"

    # ------------------------------------------------------------------ failure injection
    def rate_limit_next(self, count: int = 1, *, retry_after: int = 60) -> None:
        """The next ``count`` calls answer 429 with ``Retry-After`` (seconds). Statuspage
        answers an exceeded rate limit with 429 and a Retry-After header (Atlassian,
        "Upcoming rate limiting changes to Statuspage REST API", community.atlassian.com
        /t5/Statuspage-articles/Upcoming-rate-limiting-changes-to-Statuspage-REST-API
        /ba-p/1455362: "Retry-After: 60" in its example)."""
        with self.lock:
            self._failures.extend([(429, {"Retry-After": str(retry_after)})] * count)

    def fail_next(self, count: int = 1, *, status: int = 503) -> None:
        """The next ``count`` calls answer ``status`` (a page having a bad minute)."""
        with self.lock:
            self._failures.extend([(status, {})] * count)

    # ------------------------------------------------------------------ server
    def start(self) -> StatuspageEmulator:
        emulator = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                authorized = self.headers.get("Authorization") == f"OAuth {emulator.api_key}"
                status, answer, headers = emulator.handle(self.command, self.path, raw,
                                                          authorized)
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PATCH = _handle

        self._server = ThreadingHTTPServer((self.host, 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                         daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def handle(self, method: str, path: str, raw: bytes, authorized: bool
               ) -> tuple[int, Any, dict[str, str]]:
        with self.lock:
            try:
                body = json.loads(raw or b"null")
            except ValueError:
                body = None
            record: dict[str, Any] = {"method": method, "path": path,
                                      "authorized": authorized, "body": body}
            self.requests.append(record)
            status, answer, headers = self._route(method, path, body, authorized)
            record["status"] = status
            return status, answer, headers

    def _route(self, method: str, path: str, body: Any, authorized: bool
               ) -> tuple[int, Any, dict[str, str]]:
        if method == "GET" and path.rstrip("/") == "/_emulator/incidents":
            # Not Statuspage's: the sandbox's window on the page (every incident with its
            # timeline, newest first), open without the key like the public status page.
            return 200, [self._copy(i) for i in reversed(self.incidents.values())], {}
        if not authorized:
            return 401, {"error": "Could not authenticate"}, {}
        if self._failures:
            status, headers = self._failures.pop(0)
            error = "Rate limit exceeded" if status == 429 else "Service unavailable"
            return status, {"error": error}, headers
        prefix = f"/v1/pages/{self.page_id}/incidents"
        if not path.startswith(prefix):
            return 404, {"error": "page not found"}, {}
        rest = path[len(prefix):].strip("/").removesuffix(".json")
        if method == "GET" and rest == "unresolved":
            return 200, [self._copy(i) for i in self.incidents.values()
                         if i["status"] != "resolved"], {}
        if rest and rest not in self.incidents:
            # Statuspage answers 404 for an incident id it does not know (a deleted one).
            return 404, {"error": "The requested resource could not be found."}, {}
        if method == "GET" and rest:
            return 200, self._copy(self.incidents[rest]), {}
        spec = body.get("incident") if isinstance(body, dict) else None
        if method in ("POST", "PATCH") and not isinstance(spec, dict):
            return 400, {"error": "incident is missing"}, {}
        assert isinstance(spec, dict) or method == "GET"
        if method in ("POST", "PATCH"):
            assert isinstance(spec, dict)
            problem = self._invalid(spec, create=method == "POST")
            if problem:  # a Rails validation failure: 422 Unprocessable Entity
                return 422, {"error": [problem]}, {}
        if method == "POST" and rest == "":
            assert isinstance(spec, dict)
            return 201, self._create(spec), {}
        if method == "PATCH" and rest:
            assert isinstance(spec, dict)
            return 200, self._update(self.incidents[rest], spec), {}
        return 405, {"error": "method not allowed"}, {}

    @staticmethod
    def _invalid(spec: dict[str, Any], *, create: bool) -> str | None:
        if create and not spec.get("name"):
            return "Name can't be blank"
        status = spec.get("status")
        if (create or status is not None) and status not in INCIDENT_STATUSES:
            return f"Status is not included in the list ({status!r})"
        for component, value in (spec.get("components") or {}).items():
            if value not in COMPONENT_STATUSES:
                return f"Component {component} status is not included in the list ({value!r})"
        return None

    def _create(self, spec: dict[str, Any]) -> dict[str, Any]:
        incident_id = f"inc{next(self._ids)}"
        now = self._now()
        incident = {"id": incident_id, "name": spec["name"], "status": spec["status"],
                    "created_at": now, "resolved_at": None, "components": {},
                    "incident_updates": []}
        self.incidents[incident_id] = incident
        return self._update(incident, spec)

    def _update(self, incident: dict[str, Any], spec: dict[str, Any]) -> dict[str, Any]:
        now = self._now()
        incident["status"] = spec.get("status", incident["status"])
        affected = []
        for component, value in (spec.get("components") or {}).items():
            old = self.components.get(component, "operational")
            self.components[component] = value
            incident["components"][component] = value
            affected.append({"code": component, "old_status": old, "new_status": value})
        if incident["status"] == "resolved" and incident["resolved_at"] is None:
            incident["resolved_at"] = now
        # One timeline entry per create or update (Statuspage's incident_updates: id, status,
        # body, created_at, display_at, and the components the update changed).
        incident["incident_updates"].append({
            "id": f"{incident['id']}-u{len(incident['incident_updates']) + 1}",
            "incident_id": incident["id"], "status": incident["status"],
            "body": spec.get("body", ""), "created_at": now, "display_at": now,
            "affected_components": affected})
        incident["updated_at"] = now
        return self._copy(incident)

    def _now(self) -> str:
        return self.clock().isoformat()

    @staticmethod
    def _copy(incident: dict[str, Any]) -> dict[str, Any]:
        return json.loads(json.dumps(incident))  # type: ignore[no-any-return]
