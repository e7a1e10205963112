"""``handlers.respond.PooledRespond`` against a real HTTP server on 127.0.0.1: the body and
headers Bolt's ``Respond`` sends, kept-alive connections, error statuses returned not
raised, one retry when nothing reached the server, and no URL in a transport error."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from typing import Any

import pytest

from bot.integrations.http_client import shared_client
from handlers.respond import PooledRespond, ResponseUrlUnreachable
from tests.support.local_http import LocalServer


class _Recorder(BaseHTTPRequestHandler):
    """Records each POST with the client port it came from; answers ``status``."""

    protocol_version = "HTTP/1.1"  # keep-alive, as Slack's front end speaks
    status = 200
    posts: list[tuple[int, dict[str, str], Any]] = []

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        type(self).posts.append((int(self.client_address[1]), dict(self.headers.items()),
                                 json.loads(body)))
        answer = b"ok" if self.status == 200 else b"expired_url"
        self.send_response(self.status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def recorder() -> Iterator[tuple[LocalServer, type[_Recorder]]]:
    handler = type("Recorder", (_Recorder,), {"posts": [], "status": 200})
    server = LocalServer(handler)
    yield server, handler
    server.stop()


def test_answers_share_one_kept_alive_connection_and_send_bolts_body(recorder: Any) -> None:
    server, handler = recorder
    with shared_client() as http:
        for n in range(3):
            respond = PooledRespond(response_url=f"{server.url}/response/T{n}", http=http)
            got = respond(text=f"answer {n}", blocks=[{"type": "divider"}],
                          response_type="ephemeral")
            assert got.status_code == 200 and got.body == "ok"
    assert len({port for port, _, _ in handler.posts}) == 1  # one connection for three
    _, headers, body = handler.posts[0]
    assert headers["Content-Type"] == "application/json;charset=utf-8"
    # None fields are left out, as Bolt's _build_message and slack_sdk's _build_body do.
    assert body == {"text": "answer 0", "blocks": [{"type": "divider"}],
                    "response_type": "ephemeral"}


def test_a_whole_message_dict_is_sent_as_given(recorder: Any) -> None:
    server, handler = recorder
    with shared_client() as http:
        PooledRespond(response_url=f"{server.url}/response/T", http=http)(
            {"text": "replaced", "replace_original": True, "thread_ts": None})
    assert handler.posts[0][2] == {"text": "replaced", "replace_original": True}


def test_an_error_status_is_returned_not_raised(recorder: Any) -> None:
    server, handler = recorder
    handler.status = 404  # Slack's answer to an expired response_url
    with shared_client() as http:
        got = PooledRespond(response_url=f"{server.url}/response/T", http=http)(text="late")
    assert got.status_code == 404 and got.body == "expired_url"


def _hang_ups() -> tuple[str, list[int], threading.Event]:
    """A server that accepts each connection and closes it without answering."""
    listener = socket.create_server(("127.0.0.1", 0))
    accepted: list[int] = []
    stop = threading.Event()

    def serve() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            accepted.append(1)
            conn.recv(65536)
            conn.close()
        listener.close()

    threading.Thread(target=serve, daemon=True).start()
    return f"http://127.0.0.1:{listener.getsockname()[1]}", accepted, stop


def test_a_hang_up_after_the_post_is_not_posted_again_and_is_said_without_the_url(
        ) -> None:
    url, accepted, stop = _hang_ups()
    secret_path = "/response/T0SECRETPATH/B0/xyz"
    try:
        with shared_client() as http, pytest.raises(ResponseUrlUnreachable) as raised:
            PooledRespond(response_url=url + secret_path, http=http)(text="hello")
    finally:
        stop.set()
    # The post reached the server before it hung up: Slack may have shown it already, so a
    # second post could show it twice.
    assert len(accepted) == 1
    assert "SECRETPATH" not in str(raised.value) and "127.0.0.1" not in str(raised.value)
    assert raised.value.__cause__ is None and raised.value.__suppress_context__


def test_a_refused_connection_is_said_without_the_url() -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
    # Nothing listens on ``port`` now: both attempts are refused.
    with shared_client() as http, pytest.raises(ResponseUrlUnreachable) as raised:
        PooledRespond(response_url=f"http://127.0.0.1:{port}/response/T0SECRET",
                      http=http)(text="hello")
    assert "ConnectError" in str(raised.value) and "T0SECRET" not in str(raised.value)


def test_an_answer_after_shutdown_is_said_without_the_url() -> None:
    http = shared_client()
    http.close()
    with pytest.raises(ResponseUrlUnreachable) as raised:
        PooledRespond(response_url="http://127.0.0.1:9/response/T0SECRET", http=http)(
            text="late")
    assert "T0SECRET" not in str(raised.value)
