"""`/rollback hotel-voice-bot --platform fly`: Slack emulator + Fly Machines API emulator +
the real adapter, from the request to `completed`, checked against the machines."""

from __future__ import annotations

from pathlib import Path

from handlers import ids
from platforms.fly import FlyPlatform
from sandbox.config import parse_sandbox_config, sandbox_config_dict
from sandbox.fly import DEFAULT_TOKEN, FlyEmulator, seed_hotel_voice_bot, seed_image
from sandbox.stack import SandboxStack
from tests.e2e.conftest import CHANNEL, action_ids
from tests.support.messages import request_message


def test_fly_rollback_end_to_end(db: str, tmp_path: Path) -> None:
    with FlyEmulator() as fly:
        seed_hotel_voice_bot(fly)
        data = sandbox_config_dict(postmortem_dir=str(tmp_path / "pm"))
        svc = data["services"]["hotel-voice-bot"]
        svc["fly"] = {"app": "hotel-voice-bot", "org": "hotel", "api_url": fly.url,
                      "token_env": "FLY_API_TOKEN", "rollout_timeout_seconds": 30}
        platform = FlyPlatform(token=DEFAULT_TOKEN, api_url=fly.url, check_interval=0.05)
        with SandboxStack(config=parse_sandbox_config(data), database_url=db,
                          platforms={"fly": platform}) as stack:
            em, driver = stack.emulator, stack.driver
            assert driver is not None and stack.bot is not None
            driver.slash_command("/rollback", "hotel-voice-bot --platform fly --severity P0",
                                 user="bob")
            msg = request_message(em, timeout=20)
            assert "fly:hotel/hotel-voice-bot" in str(msg["blocks"])
            rb = stack.bot.store.history("hotel-voice-bot")[0]
            assert rb.target_revision.id == seed_image("1.3.0")  # pinned by image reference
            driver.click(CHANNEL, msg["ts"], ids.APPROVE, "bob")
            em.wait_for(lambda: stack.bot.store.get(rb.id).state.value == "completed",
                        timeout=30)
            em.wait_for(lambda: not action_ids(em.message(CHANNEL, msg["ts"])), timeout=10)
        images = {m["config"]["image"] for m in fly.machines("hotel-voice-bot")}
        assert images == {seed_image("1.3.0")}
        assert all(fly.lease("hotel-voice-bot", m["id"]) is None
                   for m in fly.machines("hotel-voice-bot"))  # every lease released
