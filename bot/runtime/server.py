"""HTTP front: Slack events, health and readiness, metrics, on a production WSGI server.

Waitress (not Bolt's development server) serves ``/slack/events`` through Bolt's WSGI
adapter plus ``/healthz`` (process up), ``/readyz`` (the database answers and every
configured platform has its adapter) and ``/metrics``.
"""

from __future__ import annotations

import errno
import json
import logging
import resource
import threading
from collections.abc import Callable, Iterable
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from slack_bolt.adapter.wsgi import SlackRequestHandler

from bot.runtime.app import BotApp, configured_platforms
from bot.runtime.front_door import MAX_BODY_BYTES, SlackFrontDoor

log = logging.getLogger(__name__)

StartResponse = Callable[..., Any]


def wsgi_app(bot: BotApp) -> Callable[[dict[str, Any], StartResponse], Iterable[bytes]]:
    from handlers import ids

    secret = bot.settings.slack_signing_secret
    # Only requests whose signature holds on the raw bytes reach Bolt (which checks again).
    slack = SlackFrontDoor(SlackRequestHandler(bot.bolt), signing_secret=secret or "")

    def plain(start: StartResponse, status: str, body: bytes,
              ctype: str = "text/plain; charset=utf-8") -> list[bytes]:
        start(status, [("Content-Type", ctype), ("Content-Length", str(len(body)))])
        return [body]

    def app(environ: dict[str, Any], start: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == ids.EVENTS_PATH:
            if not secret:  # Socket Mode: nothing to verify with
                return plain(start, "404 Not Found", b"not found\n")
            return slack(environ, start)
        if path == ids.HEALTHZ_PATH:
            return plain(start, "200 OK", b"ok\n")
        if path == ids.READYZ_PATH:
            report = readiness(bot)
            body = json.dumps(report).encode() + b"\n"
            return plain(start, "200 OK" if report["ready"] else "503 Service Unavailable",
                         body, "application/json")
        if path == ids.METRICS_PATH:
            return plain(start, "200 OK", generate_latest(), CONTENT_TYPE_LATEST)
        return plain(start, "404 Not Found", b"not found\n")

    return app


def readiness(bot: BotApp) -> dict[str, Any]:
    """What /readyz answers: ready, or which parts are not. Only part names and the words
    "ok"/"unavailable" (the reasons are in the log, where a platform's error text is
    scrubbed): the endpoint is unauthenticated and must never show a secret or a host."""
    try:
        database_ok = bot.store.ping()
    except Exception as exc:
        log.warning("readiness: database unavailable: %s", type(exc).__name__)
        database_ok = False
    checks: dict[str, str] = {"database": "ok" if database_ok else "unavailable"}
    # An adapter that could not be built stays missing for the process's life (the reason
    # was logged as "<name> adapter unavailable: ..."); requests for its services would
    # all be refused, so this replica is not ready until it restarts with a fixed config.
    for name in configured_platforms(bot.config):
        checks[f"platform:{name}"] = ("unavailable" if name in bot.platforms_unavailable
                                      else "ok")
    failing = [part for part, state in checks.items() if state != "ok"]
    return {"ready": not failing, "failing": failing, "checks": checks}


class PortInUse(Exception):
    """Something else listens on the port; the entry point says which variable changes it."""

    def __init__(self, host: str, port: int) -> None:
        super().__init__(f"port {port} on {host} is already in use")
        self.host = host
        self.port = port


# Waitress settings. Idle or half-sent connections cost no worker thread (waitress
# dispatches a request only once it is complete), so surviving a connection flood is about
# slots, idle time and memory per connection:
# * CONNECTION_LIMIT 1000: at the limit waitress stops accepting and /healthz waits in the
#   kernel backlog with everyone else; 1000 keeps headroom over a 500-connection flood.
# * CHANNEL_TIMEOUT 20 s, CLEANUP_INTERVAL 5 s: an idle connection is closed 20-25 s after
#   its last byte (waitress's default is 120 s, checked every 30 s), so slots held by a
#   flood come back within half a minute. Slack sends a whole request at once and reuses
#   a connection within seconds, if at all; a request being served is never cut.
# * BACKLOG 1024: connections the kernel queues while we are at the limit (capped by
#   net.core.somaxconn).
# * Poll instead of select: select() cannot watch descriptors numbered above 1023.
# * Memory per connection is bounded: headers up to 32 KiB (Slack sends ~1 KiB); bodies
#   are held in memory up to 64 KiB and spill to a temporary file above that (/tmp is an
#   emptyDir in deploy/); a body over MAX_BODY_BYTES is refused with 413 from its
#   Content-Length before it is read. 1000 connections x (32 + 64) KiB < 100 MiB.
# * THREADS 16: workers for complete requests; health checks share them with Slack.
CONNECTION_LIMIT = 1000
CHANNEL_TIMEOUT = 20
CLEANUP_INTERVAL = 5
BACKLOG = 1024
THREADS = 16
MAX_HEADER_BYTES = 32 * 1024
INBUF_OVERFLOW = 64 * 1024
FD_HEADROOM = 256  # database pool, log files, outbound HTTP clients


def _raise_fd_limit(wanted: int) -> None:
    """Each connection is a descriptor; a soft limit of 1024 would cap us below the limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    if target < wanted:
        log.warning("open-file limit %d is below the %d the connection limit needs",
                    target, wanted)


class HttpServer:
    """Waitress in a thread, so the CLI, the sandbox and tests share one serving path."""

    def __init__(self, bot: BotApp, *, host: str, port: int, threads: int = THREADS) -> None:
        from waitress.server import create_server

        _raise_fd_limit(CONNECTION_LIMIT + FD_HEADROOM)
        try:
            self.server = create_server(
                wsgi_app(bot), host=host, port=port, threads=threads, ident="rollback-bot",
                connection_limit=CONNECTION_LIMIT, channel_timeout=CHANNEL_TIMEOUT,
                cleanup_interval=CLEANUP_INTERVAL, backlog=BACKLOG, asyncore_use_poll=True,
                max_request_header_size=MAX_HEADER_BYTES, inbuf_overflow=INBUF_OVERFLOW,
                # waitress refuses a body when Content-Length >= this: MAX_BODY_BYTES passes
                max_request_body_size=MAX_BODY_BYTES + 1)
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
