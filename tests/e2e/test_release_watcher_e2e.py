"""The release watcher end to end: the bot over HTTP, the Slack emulator, a real PostgreSQL
and a REAL Prometheus whose error-rate series is written in advance (``promtool tsdb
create-blocks-from openmetrics``), so the injected clock can walk through an outage minute
by minute with no sleeping: each step moves the clock and runs the due checks (``tick``).

The series is a gauge ``watch_error_ratio`` sampled every 15 s from ``T0`` (a whole minute
about 50 minutes ago: inside Prometheus' one-hour retention, never in the future).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from bot.domain.command_parsing import Parsed
from bot.domain.lifecycle import Event
from handlers import ids
from sandbox.config import parse_sandbox_config, sandbox_config_dict
from sandbox.fake_platform import FakePlatform
from sandbox.stack import SandboxStack
from tests.e2e.conftest import CHANNEL, Harness, MutableClock, action_ids
from tests.integration.prom_fixtures import PrometheusServer, start_prometheus
from tests.secret_scan import register_secret
from tests.support import messages
from tests.support.waiting import wait_until

SERVICE = "hotel-voice-bot"
METRIC = f'watch_error_ratio{{service="{SERVICE}"}}'
T0 = datetime.fromtimestamp((int(time.time()) - 50 * 60) // 60 * 60, tz=UTC)
BAD, GOOD = 0.08, 0.01

Segments = list[tuple[float, float, float]]  # (from minute, to minute, error ratio)

pytestmark = pytest.mark.slow


def _openmetrics(segments: Segments, *, noise: float = 0.0) -> str:
    lines = ["# HELP watch_error_ratio 5xx ratio", "# TYPE watch_error_ratio gauge"]
    for start, end, value in segments:
        for i, second in enumerate(range(int(start * 60), int(end * 60), 15)):
            wobble = noise if i % 2 else -noise  # same figure once rounded to 0.1 point
            lines.append(f"{METRIC} {value + wobble} {T0.timestamp() + second:.0f}")
    return "\n".join([*lines, "# EOF"]) + "\n"


@pytest.fixture
def prometheus_with(prometheus_binary: str, tmp_path: Path
                    ) -> Iterator[Callable[..., PrometheusServer]]:
    started: list[PrometheusServer] = []

    def start(segments: Segments, *, noise: float = 0.0) -> PrometheusServer:
        workdir = tmp_path / f"prometheus-{len(started)}"
        workdir.mkdir()
        source = workdir / "series.txt"
        source.write_text(_openmetrics(segments, noise=noise))
        promtool = shutil.which("promtool") or str(Path(prometheus_binary).with_name("promtool"))
        subprocess.run([promtool, "tsdb", "create-blocks-from", "openmetrics", str(source),
                        str(workdir / "data")], check=True, capture_output=True)
        server = start_prometheus(prometheus_binary, workdir, {})
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def make_stack(db: str, tmp_path: Path) -> Iterator[Callable[..., Harness]]:
    stacks: list[SandboxStack] = []

    def make(prom: PrometheusServer, *, start_minute: float = 4, interval: float = 60,
             **watcher: Any) -> Harness:
        data = sandbox_config_dict(postmortem_dir=str(tmp_path / "post-mortems"))
        svc = data["services"][SERVICE]
        svc["prometheus"] = {"url": prom.url, "error_rate_query": METRIC,
                             "error_rate_threshold": 0.05}
        svc["watcher"] = {"enabled": True, "channel": CHANNEL, "duration_seconds": 180,
                          "interval_seconds": interval, "chart_minutes": 5, "severity": "P1",
                          "snooze_seconds": 1200, **watcher}
        clock = MutableClock(T0 + timedelta(minutes=start_minute))
        platform = FakePlatform()
        stack = SandboxStack(config=parse_sandbox_config(data), database_url=db,
                             platforms={"fake": platform}, clock=clock, scheduler=False)
        stack.start()
        register_secret(stack.signing_secret, "a sandbox stack's signing secret")
        stacks.append(stack)
        h = Harness(stack, platform, clock)
        h.bot.watcher.start()  # what start_background does on a replica running the scheduler
        return h

    yield make
    for stack in stacks:
        stack.stop()


def run_to(h: Harness, minute: float, *, step: float = 60) -> None:
    """Walk the clock to ``T0 + minute``, running the checks due at every ``step``."""
    target = T0 + timedelta(minutes=minute)
    while h.clock() < target:
        h.clock.advance(seconds=min(step, (target - h.clock()).total_seconds()))
        h.tick()


def proposals(h: Harness) -> list[dict[str, Any]]:
    """The proposals in the channel as they are now (edits included), oldest first."""
    found = []
    for call in h.emulator.calls("chat.postMessage"):
        meta = call.params.get("metadata")
        meta = json.loads(meta) if isinstance(meta, str) else meta
        if meta and str(meta["event_payload"]["key"]).startswith(f"watch:{SERVICE}:"):
            current = h.emulator.message(CHANNEL, str(call.response["ts"]))
            assert current is not None
            found.append(current)
    return found


def _text(message: dict[str, Any]) -> str:
    return json.dumps(message.get("blocks")) + str(message.get("text"))


def _rollbacks(h: Harness) -> list[Any]:
    return list(h.bot.store.history(SERVICE))


# ---------------------------------------------------------------------- snooze
def test_snooze_holds_back_a_new_episode_until_it_ends(
        prometheus_with: Callable[..., PrometheusServer],
        make_stack: Callable[..., Harness]) -> None:
    """Episode 1 (minutes 5-12) is proposed; alice snoozes it for 20 min at minute 9.
    Episode 2 (from minute 18) holds from minute 21, inside the snooze: nothing is posted.
    At minute 29, when the snooze ends, episode 2 is proposed."""
    prom = prometheus_with([(0, 5, GOOD), (5, 12, BAD), (12, 18, GOOD), (18, 45, BAD)])
    h = make_stack(prom)
    run_to(h, 9)
    (first,) = proposals(h)
    assert ids.WATCH_SNOOZE in action_ids(first)

    h.driver.click(CHANNEL, first["ts"], ids.WATCH_SNOOZE, "alice")
    until = T0 + timedelta(minutes=29)
    said = h.emulator.wait_for(lambda: next(
        (m["text"] for m in h.emulator.messages(CHANNEL)
         if "snoozed the release watcher" in m.get("text", "")), None), timeout=15)
    assert said == (f":zzz: <@{h.emulator.user_id('alice')}> snoozed the release watcher for "
                    f"{SERVICE} until {until:%Y-%m-%d %H:%M:%S} UTC.")

    run_to(h, 16)  # episode 1 has recovered for a full duration: closed
    assert h.bot.watcher.store.get(SERVICE).episode_started_at is None
    run_to(h, 28)  # episode 2 holds from minute 21 but the snooze lasts until minute 29
    second_episode = h.bot.watcher.store.get(SERVICE).episode_started_at
    assert second_episode is not None and second_episode > T0 + timedelta(minutes=18)
    assert len(proposals(h)) == 1

    run_to(h, 29)  # the snooze has ended: episode 2 is proposed, once
    run_to(h, 31)
    first_now, second = proposals(h)
    assert second["ts"] != first["ts"]
    assert f"since {second_episode:%Y-%m-%d %H:%M:%S} UTC" in _text(second)
    assert ids.WATCH_REQUEST in action_ids(second)


# ---------------------------------------------------------------------- auto_request
def test_auto_request_files_one_request_that_still_needs_an_approver(
        prometheus_with: Callable[..., PrometheusServer],
        make_stack: Callable[..., Harness]) -> None:
    prom = prometheus_with([(0, 5, GOOD), (5, 45, BAD)])
    h = make_stack(prom, auto_request=True)
    run_to(h, 7)
    assert _rollbacks(h) == [] and proposals(h) == []
    run_to(h, 8)  # minutes 5-8 over: the rule holds
    (rb,) = _rollbacks(h)
    assert rb.requester == "rollback-bot" and rb.severity == "P1"
    assert rb.state.value == "pending_approval"
    # Its incident start is the watcher's first breach: over 5 % from minute 5, which the rule
    # (3 minutes sustained) confirmed at minute 8.
    assert (rb.incident_started_at, rb.incident_start_source) == (T0 + timedelta(minutes=5),
                                                                   "watcher")
    assert rb.channel_id == h.emulator.channel_id(CHANNEL)  # an id, not the configured name
    assert rb.reason.startswith("Release watcher: error rate over 5.00%")
    (proposal,) = proposals(h)
    assert action_ids(proposal) == []
    assert "I requested the rollback myself (`auto_request`)" in _text(proposal)
    assert f"|RB-{rb.id}>" in _text(proposal)

    run_to(h, 12)  # still the same episode, the request pending: nothing more
    assert [r.id for r in _rollbacks(h)] == [rb.id] and len(proposals(h)) == 1

    # The bot is no approver of its own request: an approver approves, as for anyone.
    msg = messages.request_message(h.emulator, rb.id)
    h.click(msg, ids.ASSIGN_IC, "carol")
    h.emulator.wait_for(lambda: ids.ASSIGN_IC not in action_ids(h.message_now(msg["ts"])))
    h.click(msg, ids.APPROVE, "bob")
    approved = h.wait_state(rb.id, "approved", "executing", "verifying", "monitoring",
                            "completed")
    assert approved.approver == h.emulator.user_id("bob")


def test_auto_request_after_a_crash_does_not_file_again(
        prometheus_with: Callable[..., PrometheusServer],
        make_stack: Callable[..., Harness]) -> None:
    """A leader filed the episode's request and died before posting the proposal; the
    request was since rejected. The next check finds it and posts the proposal naming it."""
    prom = prometheus_with([(0, 5, GOOD), (5, 45, BAD)])
    h = make_stack(prom, auto_request=True)
    run_to(h, 7)
    episode = h.bot.watcher.store.open_episode(SERVICE, h.clock())  # the dead leader's check
    filed = h.bot.service.request(
        Parsed("request", service=SERVICE, reason="filed before the crash"),
        requester="rollback-bot", channel_id=CHANNEL)
    h.bot.service.transition(filed, Event.REJECT, actor=h.emulator.user_id("bob"),
                             detail={"reason": "not now"})
    run_to(h, 9)
    assert [r.id for r in _rollbacks(h)] == [filed.id]
    (proposal,) = proposals(h)
    assert f"|RB-{filed.id}>" in _text(proposal) and action_ids(proposal) == []
    assert h.bot.watcher.store.get(SERVICE).answered_by == filed.id
    assert h.bot.watcher.store.get(SERVICE).episode_started_at == episode


def test_a_refused_auto_request_is_posted_once_as_the_proposal(
        prometheus_with: Callable[..., PrometheusServer],
        make_stack: Callable[..., Harness]) -> None:
    """Rollbacks are requested in incident channels only: a watcher posting elsewhere gets
    its request refused, and says so once, with the buttons for a person to act."""
    prom = prometheus_with([(0, 5, GOOD), (5, 45, BAD)])
    h = make_stack(prom, auto_request=True, channel="ops-watch")
    h.emulator.add_channel("ops-watch", members=["alice", h.emulator.bot.id])
    run_to(h, 12)
    assert _rollbacks(h) == []
    posted = [c for c in h.emulator.calls("chat.postMessage")
              if "Release watcher" in str(c.params.get("text"))]
    assert len(posted) == 1
    text = json.dumps(posted[0].params.get("blocks"))
    assert "I did not request the rollback myself (`auto_request`): Rollbacks can only be "\
           "requested and approved in incident channels" in text
    assert ids.WATCH_REQUEST in text and ids.WATCH_SNOOZE in text


# ---------------------------------------------------------------------- answered, and followed
def test_the_request_button_answers_the_proposal_and_the_request_shows_the_figures(
        prometheus_with: Callable[..., PrometheusServer],
        make_stack: Callable[..., Harness]) -> None:
    """alice requests from the proposal: the proposal then names RB-n and alice, without
    buttons. While RB-n waits for a decision the watcher keeps reading (checks every 30 s)
    and re-renders the request message only when the rounded figures change: the rate
    wobbles within 8.0 %, the minutes over the threshold change every other check."""
    prom = prometheus_with([(0, 5, GOOD), (5, 45, BAD)], noise=0.0002)
    h = make_stack(prom, interval=30)
    run_to(h, 8, step=30)
    (proposal,) = proposals(h)
    h.driver.click(CHANNEL, proposal["ts"], ids.WATCH_REQUEST, "alice")
    h.emulator.wait_for(lambda: any("Target revision" in json.dumps(v)
                                    for v in h.emulator.open_views("alice")), timeout=15)
    h.driver.submit_view("alice")
    msg = messages.request_message(h.emulator)
    (rb,) = _rollbacks(h)
    answered = h.emulator.wait_for(
        lambda: next((p for p in proposals(h) if not action_ids(p)), None), timeout=15)
    assert (f"Rollback requested: <https://slack.com/archives/{rb.channel_id}/"
            f"p{str(rb.message_ts).replace('.', '')}|RB-{rb.id}> by "
            f"<@{h.emulator.user_id('alice')}>") in _text(answered)
    # Recorded right after the edit: the next check does not edit it again.
    wait_until(lambda: h.bot.watcher.store.get(SERVICE).answered_by == rb.id, timeout=10,
               message="the proposal recorded as answered")

    def updates() -> int:
        return sum(1 for c in h.emulator.calls("chat.update") if c.params.get("ts") == msg["ts"])

    run_to(h, 8.5, step=30)  # over since minute 5 (its first point 5:00): 3.5 min
    shown = _text(h.message_now(msg["ts"]))
    assert "Release watcher: error rate 8.0 % (over 5 % for 3 min), updated " in shown
    before = updates()
    run_to(h, 9, step=30)  # 4 min: a new figure
    assert updates() == before + 1
    assert "(over 5 % for 4 min), updated " in _text(h.message_now(msg["ts"]))
    run_to(h, 9.5, step=30)  # 4.5 min: still "4 min", rate still 8.0 %: no re-render
    assert updates() == before + 1
    run_to(h, 10, step=30)
    assert updates() == before + 2
    assert "(over 5 % for 5 min)" in _text(h.message_now(msg["ts"]))
    assert len(proposals(h)) == 1  # silenced while the request is active
