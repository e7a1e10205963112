"""`/rollback hotel-voice-bot --platform ecs` when a task definition was registered but never
deployed (a pipeline failed before its deploy step): "previous" returns to the one that ran,
and an explicit `--to` of the never-deployed one is planned with a warning. Slack emulator +
ECS emulator (service deployments) + the real adapter."""

from __future__ import annotations

from pathlib import Path

from platforms.ecs import EcsPlatform
from sandbox.config import parse_sandbox_config, sandbox_config_dict
from sandbox.ecs import EcsEmulator
from sandbox.stack import SandboxStack
from tests.support.emulators import ecs_service_config
from tests.support.messages import request_message

WARNING = "Revision 3 never ran successfully on this service"


def _request(db: str, tmp_path: Path, args: str) -> tuple[str, str]:
    """Seed v1..v4 with v3 never deployed, request a rollback with ``args``; the pinned
    target's id and the request message as posted."""
    emulator = EcsEmulator().start()
    try:
        emulator.seed_hotel_voice_bot(never_deployed={3})
        data = sandbox_config_dict(postmortem_dir=str(tmp_path / "pm"))
        data["services"]["hotel-voice-bot"]["ecs"] = ecs_service_config(emulator)
        platform = EcsPlatform(client=emulator.client(), poll_interval=0.1)
        with SandboxStack(config=parse_sandbox_config(data), database_url=db,
                          platforms={"ecs": platform}) as stack:
            assert stack.driver is not None and stack.bot is not None
            stack.driver.slash_command("/rollback", f"hotel-voice-bot --platform ecs {args}",
                                       user="bob")
            msg = request_message(stack.emulator, timeout=20)
            rb = stack.bot.store.history("hotel-voice-bot")[0]
            return rb.target_revision.id, str(msg.get("blocks"))
    finally:
        emulator.stop()


def test_previous_skips_the_never_deployed_revision(db: str, tmp_path: Path) -> None:
    target, blocks = _request(db, tmp_path, "--severity P0")
    assert target.endswith("task-definition/hotel-voice-bot:2")
    assert WARNING not in blocks


def test_an_explicit_never_deployed_target_is_planned_with_a_warning(
        db: str, tmp_path: Path) -> None:
    target, blocks = _request(db, tmp_path, "--to 3 --severity P0")
    assert target.endswith("task-definition/hotel-voice-bot:3")
    assert WARNING in blocks
    assert "revision 3 never ran successfully on this service" in blocks  # checklist
