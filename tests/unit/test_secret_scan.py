"""The suite's Slack secret scan catches a planted secret, in any encoding, posted or uploaded."""

from __future__ import annotations

import pytest
from slack_sdk import WebClient

from sandbox.slack import DEFAULT_BOT_TOKEN, SlackEmulator
from tests.secret_scan import SCANNER, dsn_password, scan

PLANTED = "sk-planted/4f2a+secret value"  # '/', '+' and ' ' change under URL encoding


@pytest.fixture
def emulator() -> SlackEmulator:
    emu = SlackEmulator().start()
    yield emu
    emu.stop()
    SCANNER.forget(emu)  # the planted secret is this test's point, not a leak


def test_scan_finds_a_planted_secret_in_posts_forms_and_files(emulator: SlackEmulator) -> None:
    client = WebClient(token=DEFAULT_BOT_TOKEN, base_url=emulator.base_url)
    client.chat_postMessage(channel="inc-hotel-voice-bot", text="all good")
    assert scan(emulator, {PLANTED: "planted"}) == []
    client.chat_postMessage(channel="inc-hotel-voice-bot", text=f"oops {PLANTED}")
    client.api_call("chat.postMessage", data={"channel": "inc-hotel-voice-bot",
                                              "text": f"form {PLANTED}"})  # form-encoded
    client.files_upload_v2(channel="C0INCHVB01", content=f"key={PLANTED}".encode(),
                           filename="leak.txt")
    found = scan(emulator, {PLANTED: "planted"})
    assert sorted(f.where for f in found) == ["chat.postMessage", "chat.postMessage",
                                              "file leak.txt"]
    assert all(PLANTED not in str(f) for f in found)  # the report never repeats the value


def test_the_suite_wide_scanner_catches_an_env_secret(emulator: SlackEmulator,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PLANTED_API_KEY", PLANTED)
    monkeypatch.setenv("PLANTED_DATABASE_URL", "postgresql://app:pw-planted-77@db/app")
    SCANNER.remember_env()
    client = WebClient(token=DEFAULT_BOT_TOKEN, base_url=emulator.base_url)
    client.chat_postMessage(channel="inc-hotel-voice-bot", text="dsn password pw-planted-77")
    client.chat_postMessage(channel="inc-hotel-voice-bot", text=PLANTED)
    found = [f for f in SCANNER.scan_new() if f.emulator == emulator.base_url]
    assert {f.source for f in found} == {"env PLANTED_API_KEY",
                                         "password in env PLANTED_DATABASE_URL"}


def test_dsn_password_forms() -> None:
    assert dsn_password("postgresql://u:s3cr3t@h/db") == "s3cr3t"
    assert dsn_password("host=/tmp port=5432 user=postgres password=p4ss") == "p4ss"
    assert dsn_password("postgresql://u@h/db") is None
    assert dsn_password("not a dsn") is None
