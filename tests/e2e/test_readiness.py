"""/readyz over HTTP from a real bot process: not ready while a configured platform has no
adapter or the database refuses connections, and the JSON body names which part, never a
secret. (tests/e2e/test_foundation.py covers the ready answer of an in-process stack.)
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
import yaml
from psycopg import sql

from sandbox.config import sandbox_config_dict
from sandbox.fake_platform import FakePlatform
from sandbox.slack import DEFAULT_BOT_TOKEN, DEFAULT_SIGNING_SECRET, SlackEmulator
from tests.support.bot_process import BotProcess, launch
from tests.support.waiting import wait_until

pytestmark = pytest.mark.slow

FLY_TOKEN_ENV = "ROLLBACK_TEST_READYZ_FLY_TOKEN"  # set or not, per test
FLY_TOKEN = "fo1_readyz-test-token-value"  # noqa: S105 - a made-up token to look for


@pytest.fixture
def slack() -> Iterator[SlackEmulator]:
    emulator = SlackEmulator().start()
    yield emulator
    emulator.stop()


def _config(tmp_path: Path, *, fly: bool) -> Path:
    state = tmp_path / "platform.json"
    FakePlatform(state_file=state)  # the state file the bot process's fake adapter reads
    data = sandbox_config_dict(
        fake={"scope": "production", "name": "hotel-voice-bot", "state_file": str(state)},
        postmortem_dir=str(tmp_path / "pm"),
        # a Fly service whose adapter needs a token from FLY_TOKEN_ENV; nothing is called
        # at startup, so the address need not answer
        fly={"app": "hotel-voice-bot", "org": "hotel", "api_url": "http://127.0.0.1:9",
             "platform_url": "http://127.0.0.1:9", "token_env": FLY_TOKEN_ENV} if fly else None)
    path = tmp_path / "rollback.yml"
    path.write_text(yaml.safe_dump(data))
    return path


@contextlib.contextmanager
def _started(tmp_path: Path, slack: SlackEmulator, db: str, *, fly: bool,
           env: dict[str, str]) -> Iterator[BotProcess]:
    bot = launch("readyz-bot", log_dir=tmp_path, slack_api_url=slack.base_url,
                 database_url=db, config=_config(tmp_path, fly=fly), env=env)
    try:
        bot.wait_healthy(timeout=60, diagnostics=bot.tail)
        yield bot
    finally:
        bot.kill()


def _readyz(bot: BotProcess) -> tuple[int, dict[str, Any]]:
    reply = httpx.get(f"{bot.url}/readyz", timeout=10)
    assert reply.headers["content-type"] == "application/json"
    secrets = (FLY_TOKEN, DEFAULT_BOT_TOKEN, DEFAULT_SIGNING_SECRET, "postgresql://")
    assert not any(s in reply.text for s in secrets), reply.text
    return reply.status_code, reply.json()


@pytest.mark.parametrize("token_set", [False, True], ids=["fly-token-unset", "fly-token-set"])
def test_readiness_names_a_configured_platform_without_its_adapter(
        tmp_path: Path, slack: SlackEmulator, db: str, token_set: bool,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(FLY_TOKEN_ENV, raising=False)  # launch copies our environment
    env = {FLY_TOKEN_ENV: FLY_TOKEN} if token_set else {}
    with _started(tmp_path, slack, db, fly=True, env=env) as bot:
        status, body = _readyz(bot)
        if token_set:
            assert (status, body["ready"], body["failing"]) == (200, True, [])
            assert body["checks"] == {"database": "ok", "platform:fake": "ok",
                                      "platform:fly": "ok"}
        else:
            assert (status, body["ready"], body["failing"]) == (503, False, ["platform:fly"])
            assert body["checks"]["database"] == "ok"
            assert body["checks"]["platform:fake"] == "ok"
            assert f"fly adapter unavailable: env {FLY_TOKEN_ENV} is not set" in bot.tail()
        assert httpx.get(f"{bot.url}/healthz").status_code == 200  # alive either way


def test_readiness_fails_while_the_database_refuses_and_recovers(
        tmp_path: Path, slack: SlackEmulator, db: str, database_url: str) -> None:
    name = psycopg.conninfo.conninfo_to_dict(db)["dbname"]
    assert isinstance(name, str)

    def allow(on: bool) -> None:
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute(sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS {}").format(
                sql.Identifier(name), sql.SQL("true" if on else "false")))
            if not on:  # and drop the bot's open connections, as a restart of the server would
                conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                             " WHERE datname = %s AND pid <> pg_backend_pid()", (name,))

    with _started(tmp_path, slack, db, fly=False, env={}) as bot:
        assert _readyz(bot) == (200, {"ready": True, "failing": [],
                                      "checks": {"database": "ok", "platform:fake": "ok"}})
        allow(False)
        try:
            wait_until(lambda: _readyz(bot)[0] == 503, 20, message="/readyz to answer 503")
            status, body = _readyz(bot)
            assert (status, body["failing"], body["checks"]["platform:fake"]) == (
                503, ["database"], "ok")
            assert httpx.get(f"{bot.url}/healthz").status_code == 200
        finally:
            allow(True)
        wait_until(lambda: _readyz(bot)[0] == 200, 30, message="/readyz to recover")
