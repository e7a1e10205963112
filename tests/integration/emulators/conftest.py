"""Fixtures for the Slack stand-in: a live emulator, a real WebClient and a real Bolt app."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import pytest
from slack_bolt import App
from slack_bolt.adapter.wsgi import SlackRequestHandler
from slack_sdk import WebClient

from sandbox.slack import DEFAULT_BOT_TOKEN, DEFAULT_SIGNING_SECRET, SlackDriver, SlackEmulator


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib signature
        """Keep pytest output clean; failures show up in assertions instead."""


@pytest.fixture
def emulator() -> Iterator[SlackEmulator]:
    with SlackEmulator() as emu:
        yield emu


@pytest.fixture
def client(emulator: SlackEmulator) -> WebClient:
    return WebClient(token=DEFAULT_BOT_TOKEN, base_url=emulator.base_url)


@pytest.fixture
def serve_app() -> Iterator[Callable[[App], str]]:
    """Serve a Bolt app over real HTTP (wsgiref in a thread); returns its events URL."""
    servers: list[WSGIServer] = []

    def serve(app: App) -> str:
        server = make_server("127.0.0.1", 0, SlackRequestHandler(app), handler_class=_QuietHandler)
        # A short poll interval keeps shutdown() quick at teardown.
        thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
        thread.start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_port}/slack/events"

    yield serve
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.fixture
def app(emulator: SlackEmulator) -> App:
    """A real Bolt app whose WebClient talks to the emulator (auth.test runs at startup)."""
    web = WebClient(token=DEFAULT_BOT_TOKEN, base_url=emulator.base_url)
    return App(signing_secret=DEFAULT_SIGNING_SECRET, client=web)


@pytest.fixture
def driver(
    emulator: SlackEmulator, app: App, serve_app: Callable[[App], str]
) -> Iterator[SlackDriver]:
    """Listeners may be registered on `app` after this fixture: Bolt looks them up per request."""
    with SlackDriver(emulator, serve_app(app), DEFAULT_SIGNING_SECRET) as drv:
        yield drv
