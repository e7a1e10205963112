"""HTTP side of the Fly Machines emulator: ``/v1`` routing, bearer-token check, request log
and fault injection (canned errors, requests held past the client's timeout) on a
ThreadingHTTPServer bound to 127.0.0.1 (port 0 by default).
"""

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

from .state import FlyError, FlyState, Machine

LEASE_HEADER = "fly-machine-lease-nonce"


@dataclass(frozen=True)
class RequestRecord:
    """One request as received (the lease nonce header, never the bearer token)."""

    method: str
    path: str
    query: dict[str, str] = field(default_factory=dict)
    nonce: str | None = None
    body: Any = None


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
        em.record(RequestRecord(method, url.path, query, nonce, body))
        if self.headers.get("Authorization") != f"Bearer {em.token}":
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
            status, payload = em.handle(method, url.path, query, body, nonce)
        except FlyError as exc:
            status, payload = exc.status, {"error": exc.error, "status": "unknown"}
        if held is not None:
            held.status = status
            held.error = payload.get("error") if isinstance(payload, dict) else None
            held.done.set()
        self._send(status, payload)


class Router:
    """Maps the Machines API paths the adapter uses onto ``FlyState``."""

    def __init__(self, state: FlyState) -> None:
        self.state = state

    def handle(self, method: str, path: str, query: dict[str, str], body: Any,
               nonce: str | None) -> tuple[int, Any]:
        parts = path.strip("/").split("/")
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
            st.update(m, body if isinstance(body, dict) else {}, nonce)
            return 200, st.machine_json(app, m)
        if action == "versions" and method == "GET":
            return 200, [{"version": v, "user_config": c} for v, c in m.versions]
        if action == "lease" and method == "POST":
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
        if action in ("start", "stop") and method == "POST":
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

    def __init__(self, router: Router, token: str, port: int = 0) -> None:
        self.router, self.token, self.requested_port = router, token, port
        self.requests: list[RequestRecord] = []
        self.faults: list[Fault] = []
        self.holds: list[Held] = []
        self._lock = threading.Lock()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def handle(self, method: str, path: str, query: dict[str, str], body: Any,
               nonce: str | None) -> tuple[int, Any]:
        return self.router.handle(method, path, query, body, nonce)

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
