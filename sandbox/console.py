"""The sandbox console's HTTP API: type a line, click a button, read what Slack shows.

Runs in the sandbox process next to the emulator and the driver, so the CLI
(``rollback-bot sandbox say``) and the browser console send the same signed requests
Slack would. Loopback only; it holds the sandbox's signing secret.
"""

from __future__ import annotations

import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from sandbox.slack import SlackDriver, SlackEmulator
from sandbox.slack.render import render_events

log = logging.getLogger(__name__)
STATIC = Path(__file__).resolve().parent / "static"


class Console:
    def __init__(self, *, emulator: SlackEmulator, driver: SlackDriver, host: str = "127.0.0.1",
                 port: int = 0) -> None:
        self.emulator = emulator
        self.driver = driver
        self._lock = threading.Lock()  # one person at the keyboard at a time
        console = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, fmt: str, *args: Any) -> None:
                log.debug(fmt, *args)

            def _json(self, status: int, data: Any) -> None:
                body = json.dumps(data).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:  # noqa: N802 (http.server naming)
                console.handle_get(self)

            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers.get("Content-Length") or 0)
                try:
                    data = json.loads(self.rfile.read(length) or b"{}")
                    self._json(200, console.handle_post(self.path, data))
                except Exception as exc:  # shown in the console, never a stack trace
                    self._json(400, {"ok": False, "error": f"{type(exc).__name__}: {exc}"})

        self.server = ThreadingHTTPServer((host, port), Handler)
        self.server.daemon_threads = True
        self.url = f"http://{host}:{self.server.server_address[1]}"
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ API
    def say(self, line: str, *, user: str = "alice", channel: str | None = None,
            quiet: float = 0.5, timeout: float = 20.0) -> str:
        with self._lock:
            mark = len(self.emulator.events())
            kwargs: dict[str, Any] = {"user": user}
            if channel:
                kwargs["channel"] = channel
            reply = self.driver.say(line, **kwargs)
            if reply.status != 200:
                return f"(the bot answered HTTP {reply.status})"
            self.emulator.wait_idle(quiet, timeout)
            return render_events(self.emulator, self.emulator.events(mark)) or "(no reply)"

    def click(self, *, channel: str, ts: str, action_id: str, user: str) -> str:
        with self._lock:
            mark = len(self.emulator.events())
            self.driver.click(channel, ts, action_id, user)
            self.emulator.wait_idle(0.5, 20)
            return render_events(self.emulator, self.emulator.events(mark))

    def handle_post(self, path: str, data: dict[str, Any]) -> dict[str, Any]:
        if path == "/api/say":
            text = self.say(str(data["line"]), user=str(data.get("user") or "alice"),
                            channel=data.get("channel"))
            return {"ok": True, "text": text}
        if path == "/api/click":
            text = self.click(channel=data["channel"], ts=data["ts"],
                              action_id=data["action_id"], user=data.get("user") or "alice")
            return {"ok": True, "text": text}
        if path == "/api/submit":
            reply = self.driver.submit_view(data.get("user") or "alice", data.get("values") or {})
            return {"ok": True, "result": reply.view_result, "error": reply.view_error}
        raise ValueError(f"unknown endpoint {path}")

    def handle_get(self, req: BaseHTTPRequestHandler) -> None:
        path = req.path.split("?", 1)[0]
        if path == "/api/messages":
            channel = "inc-hotel-voice-bot"
            data = {"channel": channel, "messages": self.emulator.messages(channel)}
            req._json(200, data)  # type: ignore[attr-defined]
            return
        page = STATIC / ("index.html" if path in ("/", "/index.html") else path.lstrip("/"))
        if page.is_file() and STATIC in page.resolve().parents:
            body = page.read_bytes()
            ctype = {"html": "text/html", "js": "text/javascript", "css": "text/css"}.get(
                page.suffix.lstrip("."), "application/octet-stream")
            req.send_response(200)
            req.send_header("Content-Type", f"{ctype}; charset=utf-8")
            req.send_header("Content-Length", str(len(body)))
            req.end_headers()
            req.wfile.write(body)
            return
        req._json(404, {"ok": False, "error": "not found"})  # type: ignore[attr-defined]

    def start(self) -> Console:
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
