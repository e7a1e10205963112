"""The emulator's HTTP side: ``POST /v2/enqueue`` as PagerDuty answers it, failure modes
for tests (429, 5xx), and a read-only inspection API (``GET /_emulator/alerts`` and
``/_emulator/events``) the sandbox console and tests read."""

from __future__ import annotations

import json
import threading
from dataclasses import asdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from sandbox.pagerduty.models import Alert, Events, Received, validate

MAX_BODY = 512 * 1024  # 01-Overview.md "Size Limits": Events API payloads are limited to 512 KB


class PagerDutyEmulator:
    def __init__(self, *, host: str = "127.0.0.1") -> None:
        self.host = host
        self.events = Events()
        self._fail: list[int] = []  # status codes the next requests get, in order
        self._server: ThreadingHTTPServer | None = None

    # ------------------------------------------------------------------ lifecycle
    @property
    def base_url(self) -> str:
        assert self._server is not None
        return f"http://{self.host}:{self._server.server_address[1]}"

    @property
    def events_url(self) -> str:
        return f"{self.base_url}/v2/enqueue"

    def start(self) -> PagerDutyEmulator:
        emulator = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

            def _answer(self, status: int, answer: Any) -> None:
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                if self.path != "/v2/enqueue":
                    self._answer(404, {"status": "not found", "message": "Not found"})
                    return
                self._answer(*emulator.enqueue(raw))

            def do_GET(self) -> None:  # noqa: N802
                if self.path == "/_emulator/alerts":
                    self._answer(200, [asdict(a) for a in emulator.alerts()])
                elif self.path == "/_emulator/events":
                    self._answer(200, [asdict(r) for r in emulator.received()])
                else:
                    self._answer(404, {"status": "not found", "message": "Not found"})

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

    # ------------------------------------------------------------------ the endpoint
    def enqueue(self, raw: bytes) -> tuple[int, dict[str, Any]]:
        with self.events.lock:
            try:
                event: Any = json.loads(raw)
            except ValueError:
                event = None
                status, answer = _invalid(["Request body is not valid JSON"])
            else:
                status, answer = self._answer_for(event, len(raw))
            self.events.received.append(Received(event, status, answer))
            return status, answer

    def _answer_for(self, event: Any, size: int) -> tuple[int, dict[str, Any]]:
        if self._fail:
            code = self._fail.pop(0)
            if code == 429:  # 05-Rate-Limits.md: "429 - Request Limit Exceeded", not ingested
                return 429, {"status": "throttle event", "message": "Request Limit Exceeded"}
            return code, {"status": "error", "message": "Internal Server Error"}
        if size > MAX_BODY:
            return _invalid([f"Event is larger than {MAX_BODY} bytes"])
        errors = validate(event)
        if errors:
            return _invalid(errors)
        return 202, self.events.apply(event)

    # ------------------------------------------------------------------ for tests
    def fail_next(self, *status_codes: int) -> None:
        """The next requests are answered with these codes (429: rate limited), in order,
        without being ingested."""
        with self.events.lock:
            self._fail.extend(status_codes)

    def alerts(self) -> list[Alert]:
        with self.events.lock:
            return [Alert(**asdict(a)) for a in self.events.alerts]

    def received(self) -> list[Received]:
        with self.events.lock:
            return list(self.events.received)

    def accepted(self, action: str | None = None) -> list[dict[str, Any]]:
        """The events answered 202 (of ``action``), oldest first."""
        return [r.event for r in self.received() if r.status == 202
                and (action is None or r.event.get("event_action") == action)]


def _invalid(errors: list[str]) -> tuple[int, dict[str, Any]]:
    # 01-Overview.md: 400 Bad Request, not to be retried.
    return 400, {"status": "invalid event", "message": "Event object is invalid",
                 "errors": errors}
