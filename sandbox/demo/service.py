"""Run the demo app on a loopback HTTP server in a background thread, optionally with traffic.

``DemoService(...).start()`` returns once the socket listens; ``stop()`` ends the server,
the traffic generator and any slow in-flight response.
"""

from __future__ import annotations

import logging
import socketserver
import threading
from collections.abc import Callable, Iterable
from types import TracebackType
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer

from sandbox.demo.app import SERVICE_NAME, DemoApp, Drill
from sandbox.demo.traffic import TrafficGenerator

log = logging.getLogger(__name__)


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        # The default writes every request to stderr; at 20 rps that drowns test output.
        if log.isEnabledFor(logging.DEBUG):
            log.debug("%s %s", self.address_string(), format % args)


class _ThreadingWSGIServer(socketserver.ThreadingMixIn, WSGIServer):
    # One thread per request so a hanging health check never blocks scrapes or traffic.
    daemon_threads = True
    allow_reuse_address = True

    def server_bind(self) -> None:
        # HTTPServer.server_bind calls socket.getfqdn(), a reverse DNS lookup that can
        # stall for seconds in containers; the bind address is name enough.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)
        self.setup_environ()


class DemoService:
    """The demo hotel-voice-bot on ``http://127.0.0.1:<port>``; see ``DemoApp`` for behaviour."""

    def __init__(
        self,
        *,
        version_source: Callable[[], str] | str = "1.0.0",
        bad_versions: Iterable[str] = (),
        bad_health_delay: float = 2.0,
        host: str = "127.0.0.1",
        port: int = 0,
        traffic_rps: float = 0.0,
        service_name: str = SERVICE_NAME,
        seed: int | None = None,
    ) -> None:
        self.app = DemoApp(
            version_source=version_source,
            bad_versions=bad_versions,
            bad_health_delay=bad_health_delay,
            service_name=service_name,
            seed=seed,
        )
        self.host = host
        self._requested_port = port
        self._traffic_rps = traffic_rps
        self._server: _ThreadingWSGIServer | None = None
        self._thread: threading.Thread | None = None
        self.traffic: TrafficGenerator | None = None

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> DemoService:
        if self._server is not None:
            raise RuntimeError("demo service already started")
        self.app.stopping.clear()
        server = _ThreadingWSGIServer((self.host, self._requested_port), _QuietHandler)
        server.set_app(self.app)
        self._server = server
        # A short poll interval keeps stop() prompt; the cost is a few idle wakeups.
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.1},
            name=f"demo-{self.app.service_name}",
            daemon=True,
        )
        self._thread.start()
        log.info("demo %s listening on %s", self.app.service_name, self.url)
        if self._traffic_rps > 0:
            self.start_traffic(self._traffic_rps)
        return self

    def stop(self) -> None:
        self.stop_traffic()
        server, self._server = self._server, None
        if server is None:
            return
        self.app.stopping.set()  # release handlers sleeping in slow paths
        server.shutdown()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> DemoService:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("demo service is not running")
        return self._server.server_port

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def target(self) -> str:
        """``host:port`` as a Prometheus static scrape target."""
        return f"{self.host}:{self.port}"

    # -- traffic -----------------------------------------------------------------------

    def start_traffic(self, rps: float = 10.0, *, workers: int = 4) -> TrafficGenerator:
        """Replace any running generator with one issuing ``rps`` requests per second."""
        self.stop_traffic()
        self.traffic = TrafficGenerator(self.url, rps=rps, workers=workers).start()
        return self.traffic

    def stop_traffic(self) -> None:
        traffic, self.traffic = self.traffic, None
        if traffic is not None:
            traffic.stop()

    # -- drills (delegated so callers need only the service) ---------------------------

    def break_(
        self, error_rate: float = 1.0, slow_ms: int = 0, *, version: str | None = None,
        even: bool = False,
    ) -> Drill:
        return self.app.break_(error_rate, slow_ms, version=version, even=even)

    def heal(self) -> None:
        self.app.heal()

    def current_version(self) -> str:
        return self.app.current_version()

    def status(self) -> dict[str, Any]:
        status = self.app.status()
        status["url"] = self.url if self._server is not None else None
        traffic = self.traffic
        status["traffic_rps"] = traffic.rps if traffic is not None and traffic.running else 0
        return status
