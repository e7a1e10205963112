"""The bot's answers through response_url (``status`` after the ack here) go over a
kept-alive connection, not one new connection (and, against Slack, one TLS handshake) per
answer: Bolt's own ``respond`` opened one per call (``handlers.respond``). Through the
Slack emulator, over signed HTTP."""

from __future__ import annotations

from tests.e2e.conftest import Harness

ANSWERS = 6


def test_answers_share_kept_alive_connections(harness: Harness) -> None:
    tokens = []
    for _ in range(ANSWERS):
        reply = harness.request("status")
        assert reply.status == 200 and reply.response_url, reply.body
        token = reply.response_url.rstrip("/").rsplit("/", 1)[-1]
        harness.emulator.wait_for(
            lambda t=token: [c for c in harness.emulator.calls("response_url")
                             if c.params.get("token") == t],
            timeout=10, description="the status answer")
        tokens.append(token)
    answered = {c.params.get("token") for c in harness.emulator.calls("response_url")}
    assert set(tokens) <= answered
    # One connection per answer before. Not exactly one now: the emulator records an answer
    # before it writes the HTTP response, so the next command's answer may find that
    # connection still busy and open a second one, as a pool does.
    assert harness.emulator.response_url_connections() <= ANSWERS // 2
