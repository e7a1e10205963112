"""HTTP plumbing of the emulator: parse Slack-style requests, route them, write JSON back.

Routes /api/<method>, /upload/v1/<token>, /response/<token>, /files/<id>/<name> and the
Socket Mode websocket at /link/?ticket=… (``sandbox/slack/socket_mode.py``).
"""

from __future__ import annotations

import json
import logging
from http.server import BaseHTTPRequestHandler
from typing import Any, Protocol
from urllib.parse import parse_qsl, urlsplit


class Workspace(Protocol):
    """What the wire needs of the emulator behind it (``sandbox.slack.server.SlackEmulator``)."""

    bot_token: str

    def handle_api(self, method: str, params: dict[str, Any], token: str | None
                   ) -> tuple[int, dict[str, str], dict[str, Any]]: ...

    def handle_upload(self, token: str, data: bytes) -> tuple[int, str]: ...

    def handle_response_url(self, token: str, body: Any) -> tuple[int, dict[str, Any]]: ...

    def file_content(self, file_id: str) -> bytes: ...

    def accept_websocket(self, request: Any, ticket: str | None) -> None: ...

log = logging.getLogger(__name__)


class RequestHandler(BaseHTTPRequestHandler):
    """Routes /api/<method>, /upload/v1/<token>, /response/<token> and /files/<id>/<name>."""

    protocol_version = "HTTP/1.1"
    server_version = "SlackEmulator/1.0"

    @property
    def emulator(self) -> Workspace:
        return self.server.emulator  # type: ignore[attr-defined,no-any-return]

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        # Route http.server's access log to logging instead of stderr.
        log.debug("slack emulator: %s", format % args)

    def do_GET(self) -> None:
        self._route()

    def do_POST(self) -> None:
        self._route()

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _send(self, status: int, body: bytes, content_type: str, extra: dict[str, str]) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in extra.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def _send_json(
        self, status: int, body: dict[str, Any], extra: dict[str, str] | None = None
    ) -> None:
        data = json.dumps(body).encode()
        self._send(status, data, "application/json; charset=utf-8", extra or {})

    def _token(self, params: dict[str, Any], is_json: bool) -> str | None:
        auth = self.headers.get("Authorization", "")
        if auth.lower().startswith("bearer "):
            return auth[7:].strip()
        # Slack reads a `token` form/query field, but never one inside a JSON body.
        token = params.pop("token", None)
        return None if is_json else token

    def _route(self) -> None:
        url = urlsplit(self.path)
        body = self._read_body()
        path = url.path
        if path == "/link/" and self.command == "GET":
            # Socket Mode: this thread now owns the socket until the websocket closes.
            self.close_connection = True
            self.emulator.accept_websocket(self, dict(parse_qsl(url.query)).get("ticket"))
        elif path == "/health":
            self._send_json(200, {"ok": True})
        elif path.startswith("/api/"):
            self._api(path[len("/api/") :], url.query, body)
        elif path.startswith("/upload/v1/") and self.command == "POST":
            status, text = self.emulator.handle_upload(path.rsplit("/", 1)[-1], body)
            self._send(status, text.encode(), "text/plain; charset=utf-8", {})
        elif path.startswith("/response/") and self.command == "POST":
            self._response_url(path.rsplit("/", 1)[-1], body)
        elif path.startswith("/files/") and self.command == "GET":
            self._file(path)
        else:
            self._send_json(404, {"ok": False, "error": "not_found"})

    def _api(self, method: str, query: str, body: bytes) -> None:
        params: dict[str, Any] = dict(parse_qsl(query, keep_blank_values=True))
        content_type = self.headers.get("Content-Type", "").split(";")[0].strip().lower()
        is_json = content_type == "application/json"
        if is_json:
            try:
                parsed = json.loads(body or b"{}")
            except json.JSONDecodeError:
                parsed = None
            if not isinstance(parsed, dict):
                self._send_json(200, {"ok": False, "error": "invalid_json"})
                return
            params.update(parsed)
        elif body:
            params.update(parse_qsl(body.decode("utf-8"), keep_blank_values=True))
        token = self._token(params, is_json)
        status, headers, answer = self.emulator.handle_api(method, params, token)
        self._send_json(status, answer, headers)

    def _response_url(self, token: str, body: bytes) -> None:
        content_type = self.headers.get("Content-Type", "").split(";")[0].strip().lower()
        try:
            if content_type == "application/x-www-form-urlencoded":
                # Incoming-webhook style: a `payload` form field holding the JSON.
                payload: Any = json.loads(dict(parse_qsl(body.decode())).get("payload", ""))
            else:
                payload = json.loads(body or b"null")
        except (json.JSONDecodeError, UnicodeDecodeError):
            payload = None
        status, answer = self.emulator.handle_response_url(token, payload)
        self._send_json(status, answer)

    def _file(self, path: str) -> None:
        parts = path.split("/")
        token = self._token({}, True)
        if token != self.emulator.bot_token:
            self._send(403, b"forbidden", "text/plain", {})
            return
        try:
            data = self.emulator.file_content(parts[2])
        except (KeyError, IndexError):
            self._send(404, b"not found", "text/plain", {})
            return
        self._send(200, data, "application/octet-stream", {})
