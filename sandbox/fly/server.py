"""HTTP side of the Fly emulator: the Machines API (``/v1``, api.machines.dev) and what
api.fly.io serves (``/graphql``, ``/api/v1/apps/{app}/logs``, ``/prometheus/{org}/...``) on
one ThreadingHTTPServer bound to 127.0.0.1 (port 0 by default), with the token check, request
log and fault injection (canned errors, requests held past the client's timeout).
"""

# Tokens (superfly/fly-go tokens/tokens.go): a Fly token string may carry a scheme ("Bearer"
# or "FlyV1") and several comma-separated tokens; macaroons (prefix fm1r_, fm1a_, fm2_ - org
# and deploy tokens) go out as ``Authorization: FlyV1 <macaroons joined by ",">``, anything
# else (a personal access token from `fly auth token`) as ``Bearer <token>``. The API answers
# 401 "You must be authenticated to view this." to a missing or unknown token and to any
# other scheme. The log records the scheme, never the token.

# A held request is processed when released, as received: its lease nonce and
# ``current_version`` are checked then, against the machine as it is then (state.py), which is
# what fences a late write on Fly. The answer goes to a client that has usually given up.

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from .graphql_api import GraphQLApi
from .state import FlyError, FlyState, Machine
from .telemetry import Metrics, logs_page
from .validation import BodyValidator

LEASE_HEADER = "fly-machine-lease-nonce"


@dataclass(frozen=True)
class RequestRecord:
    """One request as received (the lease nonce header, never the bearer token)."""

    method: str
    path: str
    query: dict[str, str] = field(default_factory=dict)
    nonce: str | None = None
    body: Any = None
    auth_scheme: str | None = None  # "Bearer", "FlyV1" or whatever was sent (no token)


MACAROON_PREFIXES = ("fm1r", "fm1a", "fm2")


def authorized(header: str | None, bearer: str, macaroon: str) -> bool:
    """``Bearer <token>`` with a known token, or ``FlyV1 <tokens>`` whose comma-separated
    parts are macaroons and include the known one (discharge tokens may ride along)."""
    scheme, _, rest = (header or "").strip().partition(" ")
    parts = [p.strip() for p in rest.split(",") if p.strip()]
    if scheme == "Bearer":
        return rest.strip() in (bearer, macaroon)
    if scheme == "FlyV1":
        return (macaroon in parts and
                all(p.split("_", 1)[0] in MACAROON_PREFIXES for p in parts))
    return False


@dataclass
class Fault:
    method: str
    path_suffix: str
    status: int
    times: int = 1
    retry_after: str | None = None


MAX_HOLD_SECONDS = 30.0


@dataclass
class Held:
    """A request the server holds: ``arrived`` once it is in, ``release()`` lets the server
    process it, ``done`` once processed; ``status``/``error`` are what it answered."""

    method: str
    path_suffix: str
    times: int = 1
    max_hold: float = MAX_HOLD_SECONDS
    arrived: threading.Event = field(default_factory=threading.Event)
    done: threading.Event = field(default_factory=threading.Event)
    status: int | None = None
    error: str | None = None
    nonce: str | None = None
    body: Any = None
    _release: threading.Event = field(default_factory=threading.Event)

    def release(self) -> None:
        """Let every request held so far proceed; the hold catches no further request."""
        self._release.set()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self, emulator: Any) -> None:
        super().__init__(("127.0.0.1", emulator.requested_port), _Handler)
        self.emulator = emulator


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        return

    def do_GET(self) -> None:  # noqa: N802 - stdlib naming
        self._dispatch("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._dispatch("POST")

    def do_DELETE(self) -> None:  # noqa: N802
        self._dispatch("DELETE")

    def _send(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(payload).encode() if payload is not None else b""
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up waiting
            self.close_connection = True

    def _dispatch(self, method: str) -> None:
        em = self.server.emulator
        url = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            self._send(400, {"error": "malformed JSON body"})
            return
        nonce = self.headers.get(LEASE_HEADER)
        header = self.headers.get("Authorization")
        scheme = header.strip().partition(" ")[0] if header else None
        em.record(RequestRecord(method, url.path, query, nonce, body, scheme))
        if not authorized(header, em.token, em.macaroon):
            self._send(401, {"error": "You must be authenticated to view this."})
            return
        fault = em.take_fault(method, url.path)
        if fault is not None:
            extra = {"Retry-After": fault.retry_after} if fault.retry_after else None
            self._send(fault.status, {"error": f"injected {fault.status}"}, extra)
            return
        held = em.take_hold(method, url.path)
        if held is not None:
            held.nonce, held.body = nonce, body
            held.arrived.set()
            held._release.wait(held.max_hold)
        try:
            status, payload = em.handle(method, url.path, query, body, nonce,
                                        em.user_for(header))
        except FlyError as exc:
            if url.path.startswith("/prometheus/"):
                status, payload = exc.status, {"status": "error", "errorType": "bad_data",
                                               "error": exc.error}
            else:
                status, payload = exc.status, {"error": exc.error, "status": "unknown"}
        if held is not None:
            held.status = status
            held.error = payload.get("error") if isinstance(payload, dict) else None
            held.done.set()
        self._send(status, payload)


class Router:
    """Maps the paths the adapter uses onto ``FlyState`` (Machines API) and onto the
    GraphQL, logs and metrics fronts (api.fly.io)."""

    def __init__(self, state: FlyState, validator: BodyValidator) -> None:
        self.state = state
        self.validator = validator
        self.graphql = GraphQLApi(state)
        self.metrics = Metrics(state)

    def handle(self, method: str, path: str, query: dict[str, str], body: Any,
               nonce: str | None, user: str = "") -> tuple[int, Any]:
        if path == "/graphql" and method == "POST":
            return 200, self.graphql.execute(body, user)
        parts = path.strip("/").split("/")
        if (method == "GET" and len(parts) == 5 and parts[:3] == ["api", "v1", "apps"]
                and parts[4] == "logs"):
            return 200, logs_page(self.state, parts[3], query)
        if method in ("GET", "POST") and len(parts) == 5 and parts[0] == "prometheus" \
                and parts[2:] == ["api", "v1", "query"]:
            expr = query.get("query") or (body.get("query") if isinstance(body, dict) else "")
            return 200, self.metrics.query(parts[1], str(expr or ""))
        if len(parts) < 3 or parts[0] != "v1" or parts[1] != "apps":
            raise FlyError(404, f"no route for {method} {path}")
        st = self.state
        app = parts[2]
        rest = parts[3:]
        if not rest and method == "GET":
            with st.cond:
                a = st.app(app)
                return 200, {"id": a.id, "name": a.name, "status": "deployed",
                             "organization": {"name": a.org, "slug": a.org}}
        if rest == ["machines"] and method == "GET":
            with st.cond:
                a = st.app(app)
                return 200, [st.machine_json(app, m) for m in a.machines.values()]
        if len(rest) < 2 or rest[0] != "machines":
            raise FlyError(404, f"no route for {method} {path}")
        machine_id, action = rest[1], "/".join(rest[2:])
        if action == "wait" and method == "GET":
            return self._wait(app, machine_id, query)
        with st.cond:
            m = st.machine(app, machine_id)
            return self._machine_op(app, m, method, action, body, nonce)

    def _machine_op(self, app: str, m: Machine, method: str, action: str, body: Any,
                    nonce: str | None) -> tuple[int, Any]:
        st = self.state
        if action == "" and method == "GET":
            return 200, st.machine_json(app, m)
        if action == "" and method == "POST":
            self.validator.check("UpdateMachineRequest", body)
            st.update(m, body if isinstance(body, dict) else {}, nonce)
            return 200, st.machine_json(app, m)
        if action == "versions" and method == "GET":
            return 200, [{"version": v, "user_config": c} for v, c in m.versions]
        if action == "lease" and method == "POST":
            self.validator.check("CreateLeaseRequest", body)
            ttl = int((body or {}).get("ttl") or 30)
            lease = st.create_lease(m, nonce, ttl, str((body or {}).get("description") or ""),
                                    owner="rollback-bot@example.com")
            return 200, lease.to_json()
        if action == "lease" and method == "GET":
            st.check_lease(m, m.lease.nonce if m.lease else None)
            if m.lease is None:
                raise FlyError(404, f"machine {m.id} has no lease")
            return 200, m.lease.to_json()
        if action == "lease" and method == "DELETE":
            st.check_lease(m, nonce)
            m.lease = None
            return 200, {}
        if action.startswith("metadata/") and method in ("POST", "DELETE"):
            # Machines_update_metadata / Machines_delete_metadata (Machines OpenAPI spec;
            # superfly/docs machines/api/machines-resource.html.markerb "Add or update Machine
            # metadata": body {"value": ...}, 204 No Content). It edits the key in the
            # machine's config without an update: no new version, no restart.
            key = action.partition("/")[2]
            value = (body or {}).get("value") if isinstance(body, dict) else None
            if method == "POST" and not isinstance(value, str):
                raise FlyError(400, "value is required")
            st.set_metadata(m, key, value if method == "POST" else None)
            return 204, None
        if action in ("start", "stop") and method == "POST":
            if action == "stop":
                self.validator.check("StopRequest", body)
            st.power(m, action, nonce, body if isinstance(body, dict) else None)
            return 200, {"ok": True}
        raise FlyError(404, f"no route for {method} .../{action}")

    def _wait(self, app: str, machine_id: str, query: dict[str, str]) -> tuple[int, Any]:
        state = query.get("state", "started")
        if state not in ("started", "stopped", "destroyed"):
            raise FlyError(400, f"invalid state {state!r}")
        try:
            timeout = float(query.get("timeout", "60"))
        except ValueError:
            raise FlyError(400, "timeout must be an integer") from None
        with self.state.cond:
            m = self.state.machine(app, machine_id)
            if self.state.wait(m, state, query.get("instance_id"), min(timeout, 60.0)):
                return 200, {"ok": True}
        raise FlyError(408, f"deadline_exceeded: machine {machine_id} did not reach {state}")


class HttpFront:
    """Owns the server thread, the request log and injected faults."""

    def __init__(self, router: Router, token: str, port: int = 0, *,
                 macaroon: str = "") -> None:
        self.router, self.token, self.requested_port = router, token, port
        self.macaroon = macaroon
        self.requests: list[RequestRecord] = []
        self.faults: list[Fault] = []
        self.holds: list[Held] = []
        self._lock = threading.Lock()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def handle(self, method: str, path: str, query: dict[str, str], body: Any,
               nonce: str | None, user: str = "") -> tuple[int, Any]:
        return self.router.handle(method, path, query, body, nonce, user)

    def user_for(self, header: str | None) -> str:
        """Who a release is attributed to: the org's deploy token or the personal one."""
        return ("deploy-token@hotel.example" if header and header.startswith("FlyV1")
                else "ops@hotel.example")

    def record(self, rec: RequestRecord) -> None:
        with self._lock:
            self.requests.append(rec)

    def take_fault(self, method: str, path: str) -> Fault | None:
        with self._lock:
            for fault in self.faults:
                if fault.times > 0 and fault.method == method and path.endswith(fault.path_suffix):
                    fault.times -= 1
                    return fault
        return None

    def take_hold(self, method: str, path: str) -> Held | None:
        with self._lock:
            for held in self.holds:
                if (held.times > 0 and not held._release.is_set() and held.method == method
                        and path.endswith(held.path_suffix)):
                    held.times -= 1
                    return held
        return None

    def start(self) -> str:
        self._server = _Server(self)
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.02,),
                                        daemon=True, name="fly-emulator")
        self._thread.start()
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def stop(self) -> None:
        with self._lock:
            holds, self.holds = self.holds, []
        for held in holds:  # no handler thread is left waiting
            held.release()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
