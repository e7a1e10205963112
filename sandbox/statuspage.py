"""A Statuspage-compatible API on 127.0.0.1: incidents per page, OAuth key auth, history.

The subset the bot uses (create, update, list unresolved), driven by ``bot.aftercare.statuspage``.
"""

from __future__ import annotations

import itertools
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class StatuspageEmulator:
    def __init__(self, *, api_key: str, page_id: str = "page1", host: str = "127.0.0.1") -> None:
        self.api_key = api_key
        self.page_id = page_id
        self.host = host
        self.incidents: dict[str, dict[str, Any]] = {}
        self.requests: list[dict[str, Any]] = []  # method, path, authorized, body
        self.lock = threading.Lock()
        self._ids = itertools.count(1)
        self._server: ThreadingHTTPServer | None = None

    @property
    def api_url(self) -> str:
        assert self._server is not None
        return f"http://{self.host}:{self._server.server_address[1]}/v1"

    def start(self) -> StatuspageEmulator:
        emulator = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                authorized = self.headers.get("Authorization") == f"OAuth {emulator.api_key}"
                status, answer = emulator.handle(self.command, self.path, raw, authorized)
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
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
               ) -> tuple[int, Any]:
        with self.lock:
            body = json.loads(raw or b"null")
            self.requests.append({"method": method, "path": path, "authorized": authorized,
                                  "body": body})
            if not authorized:
                return 401, {"error": "Could not authenticate"}
            prefix = f"/v1/pages/{self.page_id}/incidents"
            if not path.startswith(prefix):
                return 404, {"error": "page not found"}
            rest = path[len(prefix):].strip("/")
            if method == "POST" and rest == "":
                return 201, self._create(body["incident"])
            if method == "GET" and rest == "unresolved":
                return 200, [i for i in self.incidents.values() if i["status"] != "resolved"]
            if method == "PATCH" and rest in self.incidents:
                return 200, self._update(self.incidents[rest], body["incident"])
            return 404, {"error": "not found"}

    def _create(self, spec: dict[str, Any]) -> dict[str, Any]:
        incident_id = f"inc{next(self._ids)}"
        incident = {"id": incident_id, "name": spec["name"], "status": spec["status"],
                    "components": dict(spec.get("components") or {}), "incident_updates": []}
        self.incidents[incident_id] = incident
        return self._update(incident, spec)

    @staticmethod
    def _update(incident: dict[str, Any], spec: dict[str, Any]) -> dict[str, Any]:
        incident["status"] = spec.get("status", incident["status"])
        incident["components"].update(spec.get("components") or {})
        incident["incident_updates"].append({"status": incident["status"],
                                             "body": spec.get("body", "")})
        return json.loads(json.dumps(incident))
