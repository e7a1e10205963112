"""The diagnosis is bounded: a Prometheus and a database that accept connections and never
answer are "could not check … within N s", not findings, and the answer comes in time."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from bot.domain import messages as m
from bot.domain.errors import ConfigError
from bot.usecases.catalog import Catalog
from bot.usecases.diagnosis import Diagnoser
from handlers import views
from sandbox.config import parse_sandbox_config, sandbox_config_dict


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A listener that accepts connections and never says a word."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except OSError:
                continue

    threading.Thread(target=accept, daemon=True).start()
    yield server.getsockname()[1]
    stop.set()
    for conn in held:
        conn.close()
    server.close()


def test_hanging_prometheus_and_database_are_unchecked_within_the_bound(
        silent_port: int, monkeypatch: pytest.MonkeyPatch) -> None:
    data = sandbox_config_dict(prometheus_url=f"http://127.0.0.1:{silent_port}")
    data["services"]["hotel-voice-bot"]["database"] = {
        "dsn_env": "HUNG_DSN", "backup_location": "/nonexistent",
        "verify_queries": ["SELECT 1 FROM public.bot_messages"]}
    data["diagnose"] = {"check_timeout_seconds": 0.5}  # the configured bound, not 10 s
    monkeypatch.setenv("HUNG_DSN", f"postgresql://u:pw-hung@127.0.0.1:{silent_port}/app")
    diagnoser = Diagnoser(Catalog(parse_sandbox_config(data), {}))

    started = time.monotonic()
    d = diagnoser.diagnose("hotel-voice-bot")
    assert time.monotonic() - started < 3.0
    assert d.findings == ()
    assert {(c.what, c.outcome, c.detail) for c in d.checked} == {
        ("error rate", "unchecked", "could not check within 0.5 s"),
        ("database", "unchecked", "could not check within 0.5 s")}
    blocks = str(views.diagnosis_blocks(d))
    assert "2 of 2 checks could not be done" in blocks
    assert "pw-hung" not in blocks and "HUNG_DSN" not in blocks


def test_nothing_configured_says_so() -> None:
    d = Diagnoser(Catalog(parse_sandbox_config(sandbox_config_dict()), {})).diagnose(
        "hotel-voice-bot")
    assert (d.findings, d.checked) == ((), ())
    assert "Nothing to check for hotel-voice-bot" in str(views.diagnosis_blocks(d))


def test_the_check_timeout_defaults_to_ten_seconds_and_must_be_positive() -> None:
    config = parse_sandbox_config(sandbox_config_dict())
    assert Diagnoser(Catalog(config, {})).timeout == 10.0
    data = sandbox_config_dict()
    data["diagnose"] = {"check_timeout_seconds": 0}
    with pytest.raises(ConfigError, match=r"diagnose\.check_timeout_seconds"):
        parse_sandbox_config(data)


def test_a_taken_finding_shows_who_instead_of_its_button() -> None:
    at = datetime(2026, 11, 29, 3, 0, tzinfo=UTC)
    d = m.Diagnosis("hvb", at, (
        m.Finding("app", ("app",), ("12.0% is above the threshold of 5.00%",),
                  taken_by=("U2",)),
        m.Finding("external", ("config", "external"), ("WAHA: HTTP 502, expected 200",)),
    ), (), record=7)
    app, external = [b for b in views.diagnosis_blocks(d) if b["type"] == "section"][1:]
    assert "accessory" not in app
    assert ":arrow_right: Taken by <@U2>: request form opened with scope `app`" in \
        app["text"]["text"]
    assert external["accessory"]["value"] == "hvb:config,external:7"  # names its record
    assert "Taken by" not in external["text"]["text"]
