"""HTTP front: Slack events, health and readiness, metrics, on a production WSGI server.

Waitress (not Bolt's development server) serves ``/slack/events`` through Bolt's WSGI
adapter plus ``/healthz`` (process up), ``/readyz`` (database answers) and ``/metrics``.
"""

from __future__ import annotations

import errno
import logging
import threading
from collections.abc import Callable, Iterable
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from slack_bolt.adapter.wsgi import SlackRequestHandler

from bot.app import BotApp

log = logging.getLogger(__name__)

StartResponse = Callable[..., Any]


def wsgi_app(bot: BotApp) -> Callable[[dict[str, Any], StartResponse], Iterable[bytes]]:
    from handlers import ids

    slack = SlackRequestHandler(bot.bolt)

    def plain(start: StartResponse, status: str, body: bytes,
              ctype: str = "text/plain; charset=utf-8") -> list[bytes]:
        start(status, [("Content-Type", ctype), ("Content-Length", str(len(body)))])
        return [body]

    def app(environ: dict[str, Any], start: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == ids.EVENTS_PATH:
            if not bot.settings.slack_signing_secret:  # Socket Mode: nothing to verify with
                return plain(start, "404 Not Found", b"not found\n")
            return slack(environ, start)
        if path == ids.HEALTHZ_PATH:
            return plain(start, "200 OK", b"ok\n")
        if path == ids.READYZ_PATH:
            try:
                ok = bot.store.ping()
            except Exception as exc:
                log.warning("readiness: database unavailable: %s", type(exc).__name__)
                ok = False
            return plain(start, "200 OK" if ok else "503 Service Unavailable",
                         b"ready\n" if ok else b"database unavailable\n")
        if path == ids.METRICS_PATH:
            return plain(start, "200 OK", generate_latest(), CONTENT_TYPE_LATEST)
        return plain(start, "404 Not Found", b"not found\n")

    return app


class PortInUse(Exception):
    """Something else listens on the port; the entry point says which variable changes it."""

    def __init__(self, host: str, port: int) -> None:
        super().__init__(f"port {port} on {host} is already in use")
        self.host = host
        self.port = port


class HttpServer:
    """Waitress in a thread, so the CLI, the sandbox and tests share one serving path."""

    def __init__(self, bot: BotApp, *, host: str, port: int, threads: int = 16) -> None:
        from waitress.server import create_server

        try:
            self.server = create_server(wsgi_app(bot), host=host, port=port, threads=threads,
                                        ident="rollback-bot")
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise PortInUse(host, port) from None
            raise
        self.port = int(self.server.effective_port)
        self.host = host
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> HttpServer:
        self._thread = threading.Thread(target=self.server.run, name="http", daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        self.server.run()

    def stop(self) -> None:
        self.server.close()
        if self._thread:
            self._thread.join(timeout=5)
