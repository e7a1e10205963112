"""Leader failover mid-monitoring: two ``serve`` processes, the leader SIGKILLed right after
Slack accepted a post; the survivor takes over and every scheduled post exists once.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from bot.persistence.aftercare_store import AftercareStore
from bot.persistence.db import open_pool
from bot.persistence.store import Store
from sandbox.config import sandbox_config_dict
from sandbox.demo import DemoService
from sandbox.fake_platform import FakePlatform
from sandbox.slack import DEFAULT_SIGNING_SECRET, SlackDriver, SlackEmulator
from tests.support.bot_process import BotProcess, launch
from tests.support.messages import find_request_message, request_ref
from tests.support.waiting import wait_until

CHANNEL = "inc-hotel-voice-bot"
STAKEHOLDERS = "hotel-voice-bot-stakeholders"
INTERVAL = 2.0
HELD_KEY = "monitor:1:tick:3"  # a fresh database: the first monitor has id 1


@pytest.fixture
def world(db: str, tmp_path: Path) -> Iterator[dict[str, Any]]:
    demo = DemoService(version_source="1.2.0").start()
    emulator = SlackEmulator().start()
    state = tmp_path / "platform.json"
    FakePlatform(state_file=state)  # creates the shared platform state both processes use
    data = sandbox_config_dict(
        fake={"scope": "production", "name": "hotel-voice-bot", "state_file": str(state)},
        demo_url=demo.url,
        monitoring={"duration_seconds": 7 * INTERVAL, "interval_seconds": INTERVAL})
    data["aftercare"] = {"postmortem_dir": str(tmp_path / "post-mortems")}
    data["executor"] = {"lease_seconds": 2, "heartbeat_seconds": 0.5, "poll_seconds": 0.2}
    config = tmp_path / "rollback.yml"
    config.write_text(yaml.safe_dump(data))
    bots: list[BotProcess] = []
    yield {"db": db, "tmp": tmp_path, "config": config, "emulator": emulator, "bots": bots}
    for bot in bots:
        bot.kill()
    emulator.stop()
    demo.stop()


def _start(world: dict[str, Any], name: str) -> BotProcess:
    bot = launch(name, log_dir=world["tmp"], slack_api_url=world["emulator"].base_url,
                 database_url=world["db"], config=world["config"],
                 env={"ROLLBACK_FAULT_POST": HELD_KEY,
                      "ROLLBACK_FAULT_FILE": str(world["tmp"] / "held")})
    world["bots"].append(bot)  # killed by the fixture even if it never gets healthy
    bot.wait_healthy()
    return bot


def _keyed_posts(emulator: SlackEmulator) -> Counter[str]:
    keys: Counter[str] = Counter()
    for call in emulator.calls("chat.postMessage"):
        meta = call.params.get("metadata")
        meta = json.loads(meta) if isinstance(meta, str) else meta
        if meta:
            keys[meta["event_payload"]["key"]] += 1
    return keys


def test_leader_killed_mid_post_every_scheduled_post_happens_once(
        world: dict[str, Any]) -> None:
    emulator: SlackEmulator = world["emulator"]
    first, second = _start(world, "bot-a"), _start(world, "bot-b")
    bots = {b.pid: b for b in (first, second)}
    store = Store(open_pool(world["db"], max_size=2))
    aftercare = AftercareStore(store.pool)

    def diagnostics() -> str:
        return "\n".join(b.tail(40) for b in bots.values()) + f"\nposts: {_keyed_posts(emulator)}"

    try:
        driver = SlackDriver(emulator, f"{first.url}/slack/events", DEFAULT_SIGNING_SECRET)
        driver.slash_command("/rollback", 'hotel-voice-bot --severity P0 --reason "outage"',
                             user="alice", channel=CHANNEL)
        msg = wait_until(lambda: find_request_message(emulator), timeout=30,
                         message="the request message", diagnostics=diagnostics)
        rid = request_ref(msg)
        driver.click(CHANNEL, msg["ts"], "rollback_approve", user="bob")

        held = world["tmp"] / "held"
        line = wait_until(lambda: held.exists() and held.read_text().endswith("\n")
                          and held.read_text(), timeout=60, message="the leader to hold at tick 3",
                          diagnostics=diagnostics)
        leader = bots[int(line.split()[0])]
        survivor = next(b for b in bots.values() if b is not leader)
        assert _keyed_posts(emulator)[HELD_KEY] == 1  # Slack has it; the outbox does not
        assert store.get(rid).state.value == "monitoring"
        killed_at = time.monotonic()
        leader.kill()  # SIGKILL: no cleanup, no unlock; PostgreSQL drops its sessions

        wait_until(lambda: store.get(rid).state.value == "completed", timeout=60,
                   message="the survivor to finish the window", diagnostics=diagnostics)
        took_over = time.monotonic() - killed_at
        reminders = wait_until(lambda: len(r := aftercare.reminders(rid)) == 2 and r,
                               timeout=15, message="P0 reminders: review and post-mortem")
        reminder_keys = [f"reminder:{r.id}:1" for r in reminders]
        wait_until(lambda: all(_keyed_posts(emulator)[k] for k in reminder_keys), timeout=15,
                   message="both reminders", diagnostics=diagnostics)
        wait_until(lambda: _keyed_posts(emulator)[f"stakeholders:{rid}:stable:1:{STAKEHOLDERS}"],
                   timeout=15, message="the stable stakeholder notice", diagnostics=diagnostics)
        skeleton = f"-hotel-voice-bot-rb-{rid}.md"  # uploaded right after its reminder post
        wait_until(lambda: any(f["name"].endswith(skeleton) for f in emulator.files()),
                   timeout=15, message="the post-mortem skeleton upload", diagnostics=diagnostics)
        (monitor,) = aftercare.monitors(rid)
        samples = [s.seq for s in aftercare.samples(monitor.id)]
    finally:
        store.pool.close()

    posts = _keyed_posts(emulator)
    print(f"survivor completed the window {took_over:.1f}s after the SIGKILL; "
          f"{len(posts)} keyed posts")
    doubled = {k: n for k, n in posts.items() if n != 1}
    assert doubled == {}, f"posts not exactly once: {doubled}"
    for seq in samples:
        assert posts[f"monitor:{monitor.id}:tick:{seq}"] == 1
    assert samples[-1] == monitor.total_ticks == 7
    assert posts[f"monitor:{monitor.id}:report"] == 1
    assert posts[f"stakeholders:{rid}:restored:1:{STAKEHOLDERS}"] == 1
    charts = [f for f in emulator.files() if f["name"].startswith("stability-")]
    assert len(charts) == 1
    assert len([f for f in emulator.files() if f["name"].endswith(skeleton)]) == 1
    survivor_log = survivor.log_path.read_text()
    assert "became scheduler leader" in survivor_log
    assert f"outbox {HELD_KEY}: found the post of an interrupted attempt" in survivor_log
    late = _claimers(world["db"], monitor.id, after_seq=3)
    assert late and all(f":{survivor.pid}:" in c for c in late), late


def _claimers(db: str, monitor_id: int, *, after_seq: int) -> list[str]:
    import psycopg

    with psycopg.connect(db) as conn:
        rows = conn.execute(
            "SELECT claimed_by FROM scheduled_jobs WHERE kind = 'monitor_tick'"
            " AND (payload->>'monitor')::int = %s AND (payload->>'seq')::int >= %s"
            " AND status = 'done'", (monitor_id, after_seq)).fetchall()
    return [str(r[0]) for r in rows]
