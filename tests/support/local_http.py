"""A throwaway HTTP server on 127.0.0.1 for a test's stand-in dependency (a health URL, a
hanging Prometheus): the test subclasses it with its own request handler."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class LocalServer:
    """Serves ``handler`` in a daemon thread at ``url``. ``release`` is set by ``stop``, so a
    handler that waits on it (a stuck dependency) lets go before the server shuts down."""

    def __init__(self, handler: type[BaseHTTPRequestHandler]) -> None:
        self.release = threading.Event()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def stop(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()
