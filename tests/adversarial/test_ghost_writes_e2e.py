"""The late-write scenario through the whole bot: `/rollback` in Slack, the executor's own
retry, the real adapters over boto3 / httpx, the ECS and Fly emulators holding the bot's write
past its timeout, then a hotfix, then the abandoned write landing (or not).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
from botocore.config import Config

from handlers import ids
from platforms.base import Target
from platforms.ecs import EcsPlatform
from platforms.fly import FlyPlatform
from sandbox.config import parse_sandbox_config, sandbox_config_dict
from sandbox.ecs import EcsEmulator
from sandbox.fly import DEFAULT_TOKEN, FlyEmulator, seed_hotel_voice_bot, seed_image
from sandbox.stack import SandboxStack
from tests.e2e.conftest import CHANNEL
from tests.support.emulators import ecs_service_config
from tests.support.messages import request_message, thread_texts

APP = "hotel-voice-bot"


def _run(stack: SandboxStack, platform: str) -> tuple[Any, dict[str, Any]]:
    """Request and approve a P0 app rollback; return (rollback, request message)."""
    em, driver, bot = stack.emulator, stack.driver, stack.bot
    assert driver is not None and bot is not None
    driver.slash_command("/rollback", f"{APP} --platform {platform} --severity P0 --scope app",
                         user="bob")
    msg = request_message(em, timeout=20)
    rb = bot.store.history(APP)[0]
    driver.click(CHANNEL, msg["ts"], ids.APPROVE, "bob")
    return rb, msg


def _state(stack: SandboxStack, rollback_id: int) -> str:
    assert stack.bot is not None
    return str(stack.bot.store.get(rollback_id).state.value)


def _thread(stack: SandboxStack, msg: dict[str, Any]) -> str:
    return "\n".join(thread_texts(stack.emulator, msg))


def test_ecs_the_executor_retry_absorbs_the_late_update_and_the_hotfix_survives(
        db: str, tmp_path: Path) -> None:
    emulator = EcsEmulator().start()
    try:
        seeded = emulator.seed_hotel_voice_bot()
        pinned = seeded.arns[2]
        held = emulator.hold("UpdateService", where=lambda b: b.get("taskDefinition") == pinned)
        data = sandbox_config_dict(postmortem_dir=str(tmp_path / "pm"))
        data["services"][APP]["ecs"] = ecs_service_config(
            emulator, cluster=seeded.cluster, service=seeded.service, family=seeded.family)
        client = emulator.client(config=Config(read_timeout=1, retries={"mode": "standard",
                                                                          "max_attempts": 3}))
        platform = EcsPlatform(client=client, poll_interval=0.1, in_doubt_grace=30)
        with SandboxStack(config=parse_sandbox_config(data), database_url=db,
                          platforms={"ecs": platform}) as stack:
            rb, msg = _run(stack, "ecs")
            stack.emulator.wait_for(lambda: "got no answer" in _thread(stack, msg), timeout=30)
            assert "retrying in" in _thread(stack, msg)
            assert held.arrived.is_set()
            held.release()  # ECS gets to the abandoned request while the retry waits for it
            stack.emulator.wait_for(
                lambda: _state(stack, rb.id) == "completed", timeout=60)
            assert "had landed, so nothing was sent again" in _thread(stack, msg)
        updates = [c for c in emulator.calls("UpdateService")
                   if c.body.get("taskDefinition") == pinned]
        assert len(updates) == 2 and all(c.status == 200 for c in updates)  # seed's + ours
        ecs = emulator.client()
        fix = ecs.register_task_definition(family=seeded.family, containerDefinitions=[{
            "name": seeded.family, "image": f"registry.example/{APP}:1.5.0", "memory": 512,
            "essential": True}])["taskDefinition"]["taskDefinitionArn"]
        ecs.update_service(cluster=seeded.cluster, service=seeded.service, taskDefinition=fix)
        target = Target("ecs", seeded.cluster, seeded.service,
                        {"family": seeded.family, "region": emulator.region})
        assert platform.wait_for_rollout(target, timeout=30).done
        svc = ecs.describe_services(cluster=seeded.cluster,
                                    services=[seeded.service])["services"][0]
        assert [d["taskDefinition"] for d in svc["deployments"]] == [fix]
    finally:
        emulator.stop()


def test_fly_the_late_update_is_refused_after_the_hotfix(db: str, tmp_path: Path) -> None:
    with FlyEmulator(start_delay=0.02) as fly:
        machines = sorted(seed_hotel_voice_bot(fly))
        held = fly.hold("POST", f"/machines/{machines[0]}")
        data = sandbox_config_dict(postmortem_dir=str(tmp_path / "pm"))
        data["services"][APP]["fly"] = {"app": APP, "org": "hotel", "api_url": fly.url,
                                        "platform_url": fly.url, "token_env": "FLY_API_TOKEN",
                                        "rollout_timeout_seconds": 30}
        platform = FlyPlatform(token=DEFAULT_TOKEN, api_url=fly.url, platform_url=fly.url,
                               request_timeout=1.0,
                               check_interval=0.05)
        with SandboxStack(config=parse_sandbox_config(data), database_url=db,
                          platforms={"fly": platform}) as stack:
            rb, msg = _run(stack, "fly")
            stack.emulator.wait_for(
                lambda: _state(stack, rb.id) == "completed", timeout=60)
            thread = _thread(stack, msg)
            assert "may still apply it" in thread and "retrying in" in thread
        assert held.arrived.is_set() and not held.done.is_set()
        # the team deploys 1.5.0 the way flyctl does: lease, read, update, release
        hotfix = seed_image("1.5.0")
        auth = {"Authorization": f"Bearer {DEFAULT_TOKEN}"}
        with httpx.Client(base_url=f"{fly.url}/v1/apps/{APP}/machines", headers=auth) as http:
            for machine_id in machines:
                nonce = http.post(f"/{machine_id}/lease", json={"ttl": 60}).json()["nonce"]
                current = http.get(f"/{machine_id}").json()
                http.post(f"/{machine_id}", headers={"fly-machine-lease-nonce": nonce},
                          json={"config": {**current["config"], "image": hotfix},
                                "current_version": current["instance_id"]})
                http.delete(f"/{machine_id}/lease", headers={"fly-machine-lease-nonce": nonce})
        held.release()
        assert held.done.wait(10) and held.status == 409
        assert {m["config"]["image"] for m in fly.machines(APP)} == {hotfix}
