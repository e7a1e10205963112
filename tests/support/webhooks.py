"""A real webhook receiver on localhost for the ``repoint_webhooks`` step's tests.

* ``Hooks(*statuses)`` is an HTTP server on 127.0.0.1 answering each request with the next
  status (the last one repeats) and recording ``"<METHOD> <path>"`` of every request; its
  ``url`` is what a service's ``webhooks:`` entry points at.
* ``hooks_fixture()`` is a function-scoped ``hooks`` fixture over it (answering 200 until
  the test sets ``statuses``), with the proxy variables removed so the step's HTTP client
  talks to localhost straight. Assign it to a module-level name ``hooks``.

Used by tests/unit/test_step_errors.py (the step alone) and
tests/integration/test_executor_retry.py (the step through the executor).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

__all__ = ["Hooks", "hooks_fixture"]

PROXY_VARS = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy",
              "all_proxy")


class Hooks:
    """A localhost HTTP server answering each request with the next status (the last one
    repeats), recording the paths it was asked."""

    def __init__(self, *statuses: int) -> None:
        self.statuses = list(statuses)
        self.requests: list[str] = []
        hooks = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                hooks.requests.append(f"{self.command} {self.path}")
                status = hooks.statuses.pop(0) if len(hooks.statuses) > 1 else hooks.statuses[0]
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_GET = do_POST = _answer

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/repoint"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.02,),
                                       daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def hooks_fixture() -> Callable[..., Iterator[Hooks]]:
    """A function-scoped ``hooks`` fixture: a ``Hooks`` answering 200, closed afterwards
    (a test may close it earlier, to have nothing listen on its port)."""
    @pytest.fixture
    def hooks(monkeypatch: pytest.MonkeyPatch) -> Iterator[Hooks]:
        for var in PROXY_VARS:
            monkeypatch.delenv(var, raising=False)  # localhost, straight
        server = Hooks(200)
        yield server
        server.close()

    return hooks
