"""The shared test helpers in tests/support do what their callers rely on: a signature
Slack's own verifier accepts, waits that return the value or fail saying what they waited
for, and a server's held connections counted as the kernel reports them."""

from __future__ import annotations

import socket
import threading
import time

import pytest
from slack_sdk.signature import SignatureVerifier

from tests.support.hostile import held_by_server, server_kept_open, wait_released
from tests.support.signing import sign, signed_headers
from tests.support.waiting import WaitTimeout, reached, wait_until

SECRET = "8f742231b10e8888abcd99yyyzzz85a5"


def test_signed_headers_pass_slacks_verifier() -> None:
    body = "command=%2Frollback&text=help"
    headers = signed_headers(SECRET, body)
    verifier = SignatureVerifier(SECRET)
    assert verifier.is_valid(body, headers["X-Slack-Request-Timestamp"],
                             headers["X-Slack-Signature"])
    assert not SignatureVerifier("another-secret").is_valid(
        body, headers["X-Slack-Request-Timestamp"], headers["X-Slack-Signature"])
    assert headers["Content-Type"] == "application/x-www-form-urlencoded"


def test_a_body_signed_in_pieces_has_the_whole_bodys_signature() -> None:
    whole = b"payload=" + b"A" * 100_000
    pieces = [whole[i:i + 4096] for i in range(0, len(whole), 4096)]
    assert sign(SECRET, 1700000000, iter(pieces)) == sign(SECRET, "1700000000", whole)
    assert sign(SECRET, 1700000000, whole) == sign(SECRET, 1700000000, whole.decode())
    assert sign(SECRET, 1700000000, whole) != sign(SECRET, 1700000001, whole)


def test_wait_until_returns_the_first_truthy_value() -> None:
    values = iter([None, 0, "", "found", "later"])
    assert wait_until(lambda: next(values), 5, 0.001) == "found"


def test_wait_until_fails_naming_what_it_waited_for() -> None:
    calls: list[float] = []
    with pytest.raises(WaitTimeout) as err:
        wait_until(lambda: calls.append(time.monotonic()), 0.05, 0.01, "the moon",
                   diagnostics=lambda: "it is cloudy")
    assert str(err.value) == "timed out after 0.05s waiting for the moon\nit is cloudy"
    assert isinstance(err.value, AssertionError)
    assert len(calls) >= 2  # polled, and once more at the deadline


def test_reached_answers_instead_of_failing() -> None:
    flag = threading.Event()
    threading.Timer(0.02, flag.set).start()
    assert reached(flag.is_set, 5, 0.005) is True
    assert reached(lambda: False, 0.02, 0.005) is False


def test_held_connections_are_counted_until_the_server_closes_them() -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        client = socket.create_connection(("127.0.0.1", port))
        peer = client.getsockname()[1]
        accepted, _ = server.accept()
        try:
            assert held_by_server(port) == 1
            assert held_by_server(port, {peer}) == 1 and held_by_server(port, {1}) == 0
            assert server_kept_open(client)
            client.close()  # the server's end is in CLOSE_WAIT: still held by the server
            assert held_by_server(port, {peer}) == 1
            assert wait_released(port, {peer}, timeout=0.05) is False
        finally:
            accepted.close()
        assert wait_released(port, {peer}, timeout=5)
