"""HTTP transport of the Kubernetes emulator: URL routing, request log, fault injection
(errors, Retry-After, held requests), JSON responses and chunked watch streams (one JSON
event per line, as the real server)."""

from __future__ import annotations

import json
import logging
import select
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from . import discovery, openapi, tables
from .api import ApiRequest, ApiResponse, ApiServer
from .store import ApiError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RequestRecord:
    """One request as RBAC sees it; ``resource`` is empty for non-resource URLs."""

    method: str
    path: str
    verb: str
    group: str = ""
    version: str = ""
    resource: str = ""
    subresource: str = ""
    namespace: str = ""
    name: str = ""
    dry_run: bool = False
    content_type: str = ""


@dataclass
class Fault:
    """The next ``remaining`` matching requests: held ``delay`` seconds first, then answered
    with ``code`` (and ``retry_after``), or, with ``code`` None, served as usual."""

    code: int | None
    remaining: int
    retry_after: float | str | None = None
    verb: str | None = None
    resource: str | None = None
    subresource: str | None = None
    group: str | None = None
    delay: float = 0.0

    def matches(self, rec: RequestRecord) -> bool:
        return (self.remaining > 0 and rec.resource != ""
                and self.verb in (None, rec.verb) and self.resource in (None, rec.resource)
                and self.subresource in (None, rec.subresource)
                and self.group in (None, rec.group))


@dataclass(eq=False)
class HeldRequest:
    """A request the server held before serving it: a slow API server, or a load balancer
    that kept the bytes while the client gave up. Once ``delay`` passes (or ``release()``)
    it is served like any other, so a write the client abandoned still lands, or is
    refused; ``code``/``reason``/``message`` say which. ``dropped``: the emulator stopped
    first and the request was never served."""

    record: RequestRecord
    delay: float
    received: float = field(default_factory=time.monotonic)
    code: int | None = None
    reason: str = ""
    message: str = ""
    dropped: bool = False
    _release: threading.Event = field(default_factory=threading.Event, repr=False)
    _answered: threading.Event = field(default_factory=threading.Event, repr=False)

    def release(self) -> None:
        """Serve it now instead of when ``delay`` ends."""
        self._release.set()

    @property
    def answered(self) -> bool:
        return self._answered.is_set()

    def wait_answered(self, timeout: float) -> bool:
        return self._answered.wait(timeout)

    def _hold(self, stopping: threading.Event) -> bool:
        """Block until released, the delay passed or the server stops; False if stopping."""
        deadline = self.received + self.delay
        while not self._release.is_set() and not stopping.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            self._release.wait(min(remaining, 0.1))  # 0.1 s: notice a stopping server
        return not stopping.is_set()

    def _finish(self, code: int | None, reason: str = "", message: str = "", *,
                dropped: bool = False) -> None:
        self.code, self.reason, self.message, self.dropped = code, reason, message, dropped
        self._answered.set()


class EmulatorHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self, address: tuple[str, int], api: ApiServer) -> None:
        super().__init__(address, _Handler)
        self.api = api
        self.records: list[RequestRecord] = []
        self.faults: list[Fault] = []
        self.held: list[HeldRequest] = []
        self.lock = threading.Lock()
        self.held_changed = threading.Condition(self.lock)
        self.stopping = threading.Event()
        self.observers: list[Callable[[RequestRecord], None]] = []
        self.connections: set[socket.socket] = set()

    def drop_connections(self) -> None:
        """Stopping must look like a dead API server, keep-alive connections included."""
        with self.lock:
            conns, self.connections = list(self.connections), set()
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def hold(self, rec: RequestRecord, delay: float) -> HeldRequest:
        held = HeldRequest(rec, delay)
        with self.held_changed:
            self.held.append(held)
            self.held_changed.notify_all()
        return held

    def take_fault(self, rec: RequestRecord) -> Fault | None:
        with self.lock:
            self.records.append(rec)
            for fault in self.faults:
                if fault.matches(rec):
                    fault.remaining -= 1
                    return fault
        return None


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in separate writes; with Nagle on, delayed ACKs add ~40 ms.
    disable_nagle_algorithm = True
    server: EmulatorHTTPServer

    def setup(self) -> None:
        super().setup()
        with self.server.lock:
            self.server.connections.add(self.connection)

    def finish(self) -> None:
        with self.server.lock:
            self.server.connections.discard(self.connection)
        try:
            super().finish()
        except OSError:
            pass

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        log.debug("kube-emulator %s", format % args)

    def do_GET(self) -> None:
        self._dispatch()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_GET

    # ---------------------------------------------------------------- dispatching
    def _dispatch(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        if "protobuf" in self.headers.get("Content-Type", "") or \
                "cbor" in self.headers.get("Content-Type", ""):
            # Only JSON is spoken here; client-go retries a 415 with JSON.
            self._send_json(415, ApiError(415, "UnsupportedMediaType",
                                          "the body of the request was in an unknown format - "
                                          "accepted media types include: application/json"
                                          ).status())
            return
        url = urlsplit(self.path)
        query = dict(parse_qsl(url.query, keep_blank_values=True))
        parts = [p for p in url.path.split("/") if p]
        try:
            doc = self._non_resource(url.path, parts)
            if doc is not None:
                self.server.take_fault(RequestRecord(self.command, url.path, "get"))
                self._send_json(200, doc)
                return
            req = self._resource_request(parts, query, body)
            rec = RequestRecord(
                self.command, url.path, req.verb, req.resource.group, req.resource.version,
                req.resource.plural, req.subresource, req.namespace, req.name,
                req.query.get("dryRun") == "All", req.content_type)
            for observer in list(self.server.observers):
                observer(rec)
            fault = self.server.take_fault(rec)
            held = None
            if fault is not None and fault.delay > 0:
                held = self.server.hold(rec, fault.delay)
                if not held._hold(self.server.stopping):
                    held._finish(None, dropped=True)
                    self.close_connection = True
                    return
            if fault is not None and fault.code is not None:
                reason = {403: "Forbidden", 404: "NotFound", 409: "Conflict",
                          429: "TooManyRequests", 503: "ServiceUnavailable"}.get(
                              fault.code, "InternalError")
                error = ApiError(fault.code, reason, f"injected fault ({fault.code})",
                                 retry_after=fault.retry_after)
                if held is not None:
                    held._finish(error.code, error.reason, error.message)
                raise error
            try:
                resp = self.server.api.handle(req)
            except Exception as exc:
                if held is not None:
                    error = exc if isinstance(exc, ApiError) else \
                        ApiError(500, "InternalError", repr(exc))
                    held._finish(error.code, error.reason, error.message)
                raise
            if held is not None:
                held._finish(resp.code)
            if req.verb in ("get", "list") and tables.wants_table(self.headers.get("Accept", "")) \
                    and isinstance(resp.body, dict) and req.resource.group != "metrics.k8s.io" \
                    and not req.subresource:
                items = resp.body["items"] if req.verb == "list" else [resp.body]
                rv = str(resp.body.get("metadata", {}).get("resourceVersion", ""))
                resp.body = tables.to_table(req.resource.key, items, rv)
            self._send(resp)
        except ApiError as exc:
            headers = {}
            if isinstance(exc.retry_after, str):
                headers["Retry-After"] = exc.retry_after  # verbatim: HTTP-dates, nonsense
            elif exc.retry_after is not None:
                headers["Retry-After"] = str(int(exc.retry_after))
            self._send_json(exc.code, exc.status(), headers)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        except Exception as exc:  # a bug in the emulator must surface as a 500, not a hang
            log.exception("kube emulator failed on %s %s", self.command, self.path)
            self._send_json(500, ApiError(500, "InternalError", repr(exc)).status())

    def _non_resource(self, path: str, parts: list[str]) -> Any:
        if path in ("/healthz", "/livez", "/readyz"):
            return "ok"
        if path == "/version":
            return discovery.SERVER_VERSION
        if parts[:2] == ["openapi", "v3"]:
            if len(parts) == 2:
                return openapi.v3_index()
            return openapi.v3_document("/".join(parts[2:])) or self._not_found()
        if parts == ["openapi", "v2"]:
            accept = self.headers.get("Accept", "")
            if "protobuf" in accept and "json" not in accept:
                raise ApiError(406, "NotAcceptable", "only application/json is served")
            return openapi.v2_document()
        if parts == ["api"]:
            host, port = self.server.server_address[:2]
            return discovery.api_versions(f"{host!s}:{port}")
        if parts == ["apis"]:
            return discovery.api_group_list()
        if len(parts) == 2 and parts[0] == "apis":
            return discovery.api_group(parts[1]) or self._not_found()
        if len(parts) == 2 and parts[0] == "api":
            return discovery.resource_list("", parts[1]) or self._not_found()
        if len(parts) == 3 and parts[0] == "apis":
            return discovery.resource_list(parts[1], parts[2]) or self._not_found()
        if not parts or parts[0] not in ("api", "apis"):
            return self._not_found()
        return None

    @staticmethod
    def _not_found() -> Any:
        raise ApiError(404, "NotFound", "the server could not find the requested resource")

    def _resource_request(self, parts: list[str], query: dict[str, str],
                          body: bytes) -> ApiRequest:
        if parts[0] == "api":
            group, version, rest = "", parts[1], parts[2:]
        else:
            group, version, rest = parts[1], parts[2], parts[3:]
        if rest and rest[0] == "watch":  # legacy /watch/ paths
            rest, query = rest[1:], {**query, "watch": "true"}
        namespace = ""
        if len(rest) >= 3 and rest[0] == "namespaces":
            namespace, rest = rest[1], rest[2:]
        if not rest or len(rest) > 3:
            self._not_found()
        res = discovery.find(group, version, rest[0])
        if res is None:
            self._not_found()
        assert res is not None
        return ApiRequest(
            method=self.command, resource=res, namespace=namespace,
            name=rest[1] if len(rest) > 1 else "", subresource=rest[2] if len(rest) > 2 else "",
            query=query, body=body,
            content_type=self.headers.get("Content-Type", "application/json"))

    # ------------------------------------------------------------------ responses
    def _send_json(self, code: int, doc: Any, headers: dict[str, str] | None = None) -> None:
        if isinstance(doc, str):
            data, ctype = doc.encode(), "text/plain; charset=utf-8"
        else:
            data, ctype = json.dumps(doc).encode(), "application/json"
        try:
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(data)))
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            # The client gave up first (a request held past its timeout): the request was
            # processed, only the answer has nowhere to go. No traceback, like a real server.
            self.close_connection = True

    def _send(self, resp: ApiResponse) -> None:
        if resp.stream is None:
            self._send_json(resp.code, resp.text if resp.text is not None else resp.body)
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        self.wfile.flush()
        try:
            for chunk in resp.stream:
                if not chunk:
                    if self._client_gone():
                        break
                    continue
                self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        finally:
            resp.stream.close()  # type: ignore[attr-defined]
            self.close_connection = True

    def _client_gone(self) -> bool:
        try:
            readable, _, _ = select.select([self.connection], [], [], 0)
            return bool(readable) and self.connection.recv(1, socket.MSG_PEEK) == b""
        except OSError:
            return True
