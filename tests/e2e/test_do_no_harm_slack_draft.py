"""Do no harm, the Slack and sandbox cases: approvals from DMs and group DMs get the channel
rule, post-mortem skeletons belong to one rollback of one database, and a second sandbox
is refused without touching the first.

Everything goes through the wire: signed requests to the real bot, Slack's Web API on the
emulator, real PostgreSQL databases, and `rollback-bot run` as a separate process.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from psycopg import conninfo
from slack_sdk import WebClient

from bot.aftercare_store import AftercareStore
from bot.config import parse_config
from bot.db import migrate
from handlers import ids
from platforms.fake import FakePlatform
from sandbox.config import sandbox_config_dict
from sandbox.slack import DEFAULT_BOT_TOKEN
from sandbox.stack import SandboxStack
from tests.e2e.conftest import CHANNEL, Harness, MutableClock, action_ids
from tests.secret_scan import register_secret

CHANNEL_RULE = "Rollbacks can only be requested and approved in incident channels"


def _request_p1(h: Harness, reason: str, *, requester: str = "alice") -> tuple[int, dict[str, Any]]:
    """A P1 request with its incident commander assigned: approvable but for the channel."""
    h.request(f'hotel-voice-bot --severity P1 --reason "{reason}"', user=requester)
    msg = h.rollback_message()
    rid = int(msg["text"].split()[0].removeprefix("RB-"))
    h.click(msg, ids.ASSIGN_IC, "carol")
    h.emulator.wait_for(lambda: ids.ASSIGN_IC not in action_ids(h.message_now(msg["ts"])))
    return rid, msg


def _web(h: Harness) -> WebClient:
    return WebClient(token=DEFAULT_BOT_TOKEN, base_url=h.emulator.base_url)


# --------------------------------------------------------------------------- (a) DMs


@pytest.mark.parametrize("where", ["direct message", "group DM"])
def test_approve_clicked_outside_a_channel_gets_the_channel_rule(harness: Harness,
                                                                 where: str) -> None:
    h = harness
    rid, msg = _request_p1(h, "5xx after v1.3.0")
    web = _web(h)
    users = ["bob"] if where == "direct message" else ["bob", "carol"]
    conversation = web.conversations_open(
        users=",".join(h.emulator.user_id(u) for u in users))["channel"]["id"]
    # The request as it reaches bob outside the incident channel: Slack sends the same
    # block_actions payload, now with channel {id: D…/G…, name: directmessage/mpdm-…}.
    pending = h.message_now(msg["ts"])
    ts = web.chat_postMessage(channel=conversation, text=pending["text"],
                              blocks=pending["blocks"])["ts"]
    reply = h.driver.click(conversation, ts, ids.APPROVE, "bob")
    assert reply.status == 200

    refusal = h.wait_ephemeral("bob", CHANNEL_RULE)
    assert f"{where} is not one of them" in refusal
    assert "inc-*" in refusal
    texts = h.ephemeral_texts("bob")
    assert not any("correlation id" in t or "went wrong" in t for t in texts), texts
    assert h.bot.store.get(rid).state.value == "pending_approval"
    assert "approve" not in [e.event for e in h.bot.store.audit_events(rid)]
    assert h.platform.mutations() == {}  # nothing touched the platform
    assert ids.APPROVE in action_ids(h.message_now(msg["ts"]))  # still approvable in channel


def test_rollback_typed_in_a_direct_message_gets_the_channel_rule(harness: Harness) -> None:
    h = harness
    dm = h.emulator.open_dm("alice")
    reply = h.driver.slash_command("/rollback", 'hotel-voice-bot --severity P1 --reason "x"',
                                   user="alice", channel=dm)
    assert reply.status == 200
    refusal = h.wait_ephemeral("alice", CHANNEL_RULE)
    assert "direct message is not one of them" in refusal
    assert not any("correlation id" in t for t in h.ephemeral_texts("alice"))
    assert h.bot.store.history("hotel-voice-bot") == []
    assert h.platform.mutations() == {}


# ------------------------------------------------------- (b) post-mortems, two databases


@pytest.fixture
def second_db(database_url: str) -> Iterator[str]:
    """Another fresh, migrated database on the same server (as the ``db`` fixture makes)."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    params = conninfo.conninfo_to_dict(database_url)
    params["dbname"] = name
    url = conninfo.make_conninfo(**params)
    migrate(url)
    yield url
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def harness_on() -> Iterator[Callable[[str, Path], Harness]]:
    """Like ``make_harness``, on a given database and post-mortem directory."""
    started: list[SandboxStack] = []

    def make(database_url: str, postmortem_dir: Path) -> Harness:
        data = sandbox_config_dict(postmortem_dir=str(postmortem_dir))
        clock = MutableClock(datetime(2026, 11, 29, 3, 0, tzinfo=UTC))  # as make_harness
        platform = FakePlatform()
        stack = SandboxStack(config=parse_config(data), database_url=database_url,
                             platforms={"fake": platform}, clock=clock, scheduler=False)
        stack.start()
        register_secret(stack.signing_secret, "a sandbox stack's signing secret")
        started.append(stack)
        return Harness(stack, platform, clock)

    yield make
    for stack in started:
        stack.stop()


def _complete_with_postmortem(h: Harness, reason: str) -> tuple[int, dict[str, Any]]:
    """RB-n approved, completed, and its reminders posted (P1: review and post-mortem)."""
    rid, msg = _request_p1(h, reason)
    h.click(msg, ids.APPROVE, "bob")
    h.wait_state(rid, "completed")
    h.emulator.wait_for(
        lambda: h.bot.service.jobs.pending(rollback_id=rid, kinds=["reminder"]), timeout=10)
    h.tick()
    pm = h.emulator.wait_for(lambda: next(
        (m for m in h.emulator.thread(CHANNEL, msg["ts"])
         if "Post-mortem for" in m.get("text", "")), None), timeout=10)
    assert pm
    return rid, dict(pm)


def test_postmortem_skeletons_are_unique_per_rollback_across_databases(
        make_harness: Callable[..., Harness], harness_on: Callable[[str, Path], Harness],
        second_db: str, tmp_path: Path) -> None:
    shared = tmp_path / "shared-post-mortems"  # one directory, as sandbox runs and benches share

    def to_shared(data: dict[str, Any]) -> None:
        data["aftercare"] = {"postmortem_dir": str(shared)}

    first = make_harness(config_overrides=to_shared)
    second = harness_on(second_db, shared)
    runs = {"first": (first, "first database: 5xx after v1.3.0"),
            "second": (second, "second database: latency after v1.3.0")}
    seen: dict[str, tuple[str, str]] = {}
    for key, (h, reason) in runs.items():
        rid, pm = _complete_with_postmortem(h, reason)
        assert rid == 1  # both databases number their first rollback RB-1
        installation = AftercareStore(h.bot.store.pool).installation_id()
        name = f"2026-11-29-{installation}-hotel-voice-bot-rb-1.md"
        text = (shared / name).read_text()
        assert text.startswith(f"<!-- rollback-bot post-mortem: installation {installation}, "
                               "RB-1, ")
        assert reason in text
        # Slack shows the file (uploaded, same bytes) and its name, never a local path.
        assert f"`{name}`" in pm["text"] + str(pm.get("blocks"))
        uploaded = h.emulator.wait_for(
            lambda h=h, name=name: next((f for f in h.emulator.files()
                                         if f["name"] == name), None), timeout=10)
        assert h.emulator.file_content(uploaded["id"]).decode() == text
        everything = str([m for m in h.emulator.thread(CHANNEL, h.rollback_message()["ts"])])
        everything += str(h.emulator.files())
        assert str(tmp_path) not in everything and str(shared) not in everything
        seen[key] = (name, text)

    (first_name, first_text), (second_name, second_text) = seen["first"], seen["second"]
    assert first_name != second_name
    assert sorted(p.name for p in shared.glob("*.md")) == sorted([first_name, second_name])
    assert runs["second"][1] not in first_text and runs["first"][1] not in second_text


def test_a_file_of_that_name_that_is_not_this_rollbacks_is_never_overwritten(
        make_harness: Callable[..., Harness], tmp_path: Path) -> None:
    h = make_harness()
    installation = AftercareStore(h.bot.store.pool).installation_id()
    folder = tmp_path / "post-mortems"  # make_harness's post-mortem directory
    folder.mkdir(parents=True, exist_ok=True)
    name = f"2026-11-29-{installation}-hotel-voice-bot-rb-1.md"
    foreign = "# Somebody's own notes, saved under the name the bot would pick\n"
    (folder / name).write_text(foreign)

    rid, pm = _complete_with_postmortem(h, "5xx after v1.3.0")
    assert rid == 1
    assert (folder / name).read_text() == foreign  # untouched
    own = name.removesuffix(".md") + "-2.md"
    assert "5xx after v1.3.0" in (folder / own).read_text()
    assert f"`{own}`" in pm["text"] + str(pm.get("blocks"))
    h.emulator.wait_for(lambda: any(f["name"] == own for f in h.emulator.files()), timeout=10)
    assert not any(f["name"] == name for f in h.emulator.files())


# ------------------------------------------------------------ (c) one sandbox at a time


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _sandbox_env(data: Path, port: int, console: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("SLACK_") and k != "DATABASE_URL"}
    env.update(ROLLBACK_DATA_DIR=str(data), PORT=str(port), SANDBOX_CONSOLE_PORT=str(console))
    return env


def _wait_healthy(url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if httpx.get(f"{url}/healthz", timeout=1).is_success:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)  # polling a condition with a deadline
    pytest.fail(f"the sandbox never answered /healthz:\n{log.read_text()[-3000:]}")


def _cli(env: dict[str, str], *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "bot.cli", *args], env=env,
                          capture_output=True, text=True, timeout=timeout)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def test_second_sandbox_is_refused_and_the_first_keeps_running(tmp_path: Path) -> None:
    port, console = _free_port(), _free_port()
    env = _sandbox_env(tmp_path / "data", port, console)
    log = tmp_path / "first.log"
    with log.open("w") as out:
        first = subprocess.Popen([sys.executable, "-m", "bot.cli", "run"], env=env,
                                 stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        bot_url = f"http://127.0.0.1:{port}"
        _wait_healthy(bot_url, first, log)
        said = _cli(env, "sandbox", "say", "/rollback hotel-voice-bot --severity P1 --reason drill")
        assert said.returncode == 0, said.stderr
        status = _cli(env, "sandbox", "say", "/rollback status 1")
        assert "RB-1" in status.stdout, status.stdout + status.stderr

        started = time.monotonic()
        second = _cli(env, "run", timeout=30)  # the same `make run`, same data dir and ports
        took = time.monotonic() - started
        assert second.returncode == 1, second.stdout + second.stderr
        assert took < 15, f"the refusal took {took:.1f}s"
        said_where = second.stderr.strip()
        assert len(said_where.splitlines()) == 1, said_where
        assert "already running" in said_where
        assert f"pid {first.pid}" in said_where
        assert f"http://127.0.0.1:{console}/" in said_where
        assert "Traceback" not in second.stdout + second.stderr

        # The first one is untouched: alive, its database and history still there.
        assert first.poll() is None
        assert httpx.get(f"{bot_url}/healthz", timeout=5).status_code == 200
        assert httpx.get(f"{bot_url}/readyz", timeout=5).status_code == 200
        again = _cli(env, "sandbox", "say", "/rollback status 1")
        assert again.returncode == 0 and "RB-1" in again.stdout, again.stdout + again.stderr
    finally:
        _stop(first)
    output = log.read_text()
    for broken in ("AdminShutdown", "Traceback", "terminating connection"):
        assert broken not in output, output[-3000:]


def test_sandbox_after_a_killed_one_starts(tmp_path: Path) -> None:
    """The lock dies with its process: a SIGKILLed sandbox never blocks the next run."""
    port, console = _free_port(), _free_port()
    env = _sandbox_env(tmp_path / "data", port, console)
    log = tmp_path / "killed.log"
    with log.open("w") as out:
        first = subprocess.Popen([sys.executable, "-m", "bot.cli", "run"], env=env,
                                 stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    _wait_healthy(f"http://127.0.0.1:{port}", first, log)
    first.kill()
    first.wait(timeout=10)
    assert (tmp_path / "data" / "sandbox.lock").exists()  # the file stays; the lock does not
    said = _cli(env, "sandbox", "say", "/rollback help")
    assert said.returncode == 1 and "No sandbox is running" in said.stderr
    log2 = tmp_path / "next.log"
    with log2.open("w") as out:
        nxt = subprocess.Popen([sys.executable, "-m", "bot.cli", "run"], env=env,
                               stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        _wait_healthy(f"http://127.0.0.1:{port}", nxt, log2)
    finally:
        _stop(nxt)


@pytest.mark.parametrize("taken", ["PORT", "SANDBOX_CONSOLE_PORT"])
def test_a_taken_port_is_one_line_naming_the_port_and_variable(tmp_path: Path,
                                                               taken: str) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        busy = int(squatter.getsockname()[1])
        ports = {"PORT": _free_port(), "SANDBOX_CONSOLE_PORT": _free_port(), taken: busy}
        data = tmp_path / "data"
        env = _sandbox_env(data, ports["PORT"], ports["SANDBOX_CONSOLE_PORT"])
        started = time.monotonic()
        run = _cli(env, "run", timeout=30)
    assert run.returncode == 1, run.stdout + run.stderr
    assert time.monotonic() - started < 15
    message = run.stderr.strip()
    assert len(message.splitlines()) == 1, message
    assert re.search(rf"\bPort {busy}\b", message) and taken in message, message
    assert "Traceback" not in run.stdout + run.stderr
    assert not (data / "pgdata").exists()  # nothing was started or touched
