"""The sandbox's mail relay: a real SMTP server (aiosmtpd) on 127.0.0.1 that keeps every
message it is given, and a small HTTP window on them (``GET /_emulator/messages``), so the
stakeholder e-mails and the post-mortem meeting invitation show up when you try the bot.

No TLS and no login: the bot's ``smtp`` block for it is ``security: none`` (a relay on a
trusted host), the only mode the configuration allows without credentials.
"""

from __future__ import annotations

import email
import email.policy
import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from aiosmtpd.controller import Controller

HOST = "127.0.0.1"


class _Keep:
    """aiosmtpd handler (``handle_DATA``): keep the message, answer 250."""

    def __init__(self, box: SandboxMailbox) -> None:
        self.box = box

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        message = email.message_from_bytes(envelope.original_content or envelope.content,
                                           policy=email.policy.default)
        attachments = [part.get_filename() or part.get_content_type()
                       for part in message.iter_attachments()]  # type: ignore[attr-defined]
        body = message.get_body(preferencelist=("plain",))  # type: ignore[attr-defined]
        with self.box.lock:
            self.box.messages.append({
                "from": envelope.mail_from, "to": list(envelope.rcpt_tos),
                "subject": str(message["Subject"]), "message_id": str(message["Message-ID"]),
                "body": body.get_content() if body is not None else "",
                "attachments": attachments})
        return "250 OK"


class SandboxMailbox:
    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        # aiosmtpd's Controller checks its server by connecting to the port it was given, so
        # it needs a real one (not 0): a free one, asked of the kernel.
        with socket.socket() as probe:
            probe.bind((HOST, 0))
            self._port = int(probe.getsockname()[1])
        self._smtp = Controller(_Keep(self), hostname=HOST, port=self._port)
        self._http: ThreadingHTTPServer | None = None

    @property
    def port(self) -> int:
        return self._port

    @property
    def url(self) -> str:
        assert self._http is not None
        return f"http://{HOST}:{self._http.server_address[1]}/_emulator/messages"

    def smtp_config(self) -> dict[str, Any]:
        """The bot's ``smtp:`` block for this relay."""
        return {"host": HOST, "port": self.port, "security": "none",
                "from_address": "Rollback Bot <rollback-bot@sandbox.example>",
                "timeout_seconds": 5}

    def start(self) -> SandboxMailbox:
        self._smtp.start()
        box = self

        class Window(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

            def do_GET(self) -> None:  # noqa: N802
                if self.path.rstrip("/") != "/_emulator/messages":
                    self.send_error(404)
                    return
                with box.lock:
                    data = json.dumps(list(reversed(box.messages)), indent=1).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self._http = ThreadingHTTPServer((HOST, 0), Window)
        self._http.daemon_threads = True
        threading.Thread(target=self._http.serve_forever, kwargs={"poll_interval": 0.05},
                         daemon=True).start()
        return self

    def stop(self) -> None:
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None
        self._smtp.stop()
