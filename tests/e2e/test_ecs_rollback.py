"""`/rollback hotel-voice-bot --platform ecs`: Slack emulator + moto-based ECS emulator +
the real adapter, from the request to `completed`, checked against the ECS service."""

from __future__ import annotations

from pathlib import Path

from handlers import ids
from platforms.ecs import EcsPlatform
from sandbox.config import parse_sandbox_config, sandbox_config_dict
from sandbox.ecs import EcsEmulator
from sandbox.stack import SandboxStack
from tests.e2e.conftest import CHANNEL, action_ids
from tests.support.emulators import ecs_service_config
from tests.support.messages import request_message


def test_ecs_rollback_end_to_end(db: str, tmp_path: Path) -> None:
    emulator = EcsEmulator().start()
    try:
        emulator.seed_hotel_voice_bot()
        client = emulator.client()
        data = sandbox_config_dict(postmortem_dir=str(tmp_path / "pm"))
        data["services"]["hotel-voice-bot"]["ecs"] = ecs_service_config(emulator)
        platform = EcsPlatform(client=client, poll_interval=0.1)
        with SandboxStack(config=parse_sandbox_config(data), database_url=db,
                          platforms={"ecs": platform}) as stack:
            em, driver = stack.emulator, stack.driver
            assert driver is not None and stack.bot is not None
            driver.slash_command("/rollback", "hotel-voice-bot --platform ecs --severity P0",
                                 user="bob")
            msg = request_message(em, timeout=20)
            rb = stack.bot.store.history("hotel-voice-bot")[0]
            assert rb.target_revision.id.endswith("task-definition/hotel-voice-bot:3")
            # the assessment attached the tasks' CloudWatch logs (three tasks, three lines)
            em.wait_for(lambda: stack.bot.store.get(rb.id).assessment.get("logs"), timeout=20)
            assert stack.bot.store.get(rb.id).assessment["logs"]["text"] == "9 lines attached"
            upload = next(f for f in em.files() if "-logs-" in f["name"])
            logs = em.file_content(upload["id"]).decode()
            assert "/hotel-voice-bot] Starting registry.example/hotel-voice-bot:1.4.0" in logs
            driver.click(CHANNEL, msg["ts"], ids.APPROVE, "bob")
            em.wait_for(lambda: stack.bot.store.get(rb.id).state.value == "completed",
                        timeout=40)
            em.wait_for(  # decisions gone; only the read-only Timeline stays
                lambda: action_ids(em.message(CHANNEL, msg["ts"])) == [ids.TIMELINE],
                timeout=10)
            thread = str(em.thread(CHANNEL, msg["ts"]))
            assert "Wait for the rollout to complete" in thread
        service = client.describe_services(cluster="production",
                                           services=["hotel-voice-bot"])["services"][0]
        assert service["taskDefinition"].endswith("task-definition/hotel-voice-bot:3")
        assert len(service["deployments"]) == 1
        assert service["runningCount"] == service["desiredCount"] == 3
    finally:
        emulator.stop()
