"""`/rollback hotel-voice-bot --platform fly`: Slack emulator + Fly emulator (Machines API and
GraphQL releases) + the real adapter, from the request to `completed`, checked against the
machines and against the releases `fly releases` lists."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from handlers import ids
from platforms.fly import FlyPlatform
from sandbox.config import parse_sandbox_config, sandbox_config_dict
from sandbox.fly import (
    DEFAULT_DEPLOY_TOKEN,
    DEFAULT_TOKEN,
    FlyEmulator,
    seed_hotel_voice_bot,
    seed_image,
)
from sandbox.stack import SandboxStack
from tests.e2e.conftest import CHANNEL, action_ids
from tests.support.messages import request_message


@contextlib.contextmanager
def fly_world(db: str, tmp_path: Path, token: str) -> Iterator[tuple[FlyEmulator, SandboxStack]]:
    """The seeded Fly emulator and a bot whose hotel-voice-bot runs on it (``token``)."""
    with FlyEmulator() as fly:
        seed_hotel_voice_bot(fly)
        data = sandbox_config_dict(postmortem_dir=str(tmp_path / "pm"))
        data["services"]["hotel-voice-bot"]["fly"] = {
            "app": "hotel-voice-bot", "org": "hotel", "api_url": fly.url,
            "platform_url": fly.url, "token_env": "FLY_API_TOKEN",
            "rollout_timeout_seconds": 30}
        platform = FlyPlatform(token=token, api_url=fly.url, platform_url=fly.url,
                               check_interval=0.05)
        with SandboxStack(config=parse_sandbox_config(data), database_url=db,
                          platforms={"fly": platform}) as stack:
            yield fly, stack


def test_fly_rollback_end_to_end(db: str, tmp_path: Path) -> None:
    with fly_world(db, tmp_path, DEFAULT_TOKEN) as (fly, stack):
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
        em.wait_for(lambda: action_ids(em.message(CHANNEL, msg["ts"])) == [ids.TIMELINE],
                    timeout=10)  # decisions gone; only the read-only Timeline stays
        images = {m["config"]["image"] for m in fly.machines("hotel-voice-bot")}
        assert images == {seed_image("1.3.0")}
        assert all(fly.lease("hotel-voice-bot", m["id"]) is None
                   for m in fly.machines("hotel-voice-bot"))  # every lease released


RELEASES = """query($appName: String!, $limit: Int!) { app(name: $appName) {
  releases: releasesUnprocessed(first: $limit) { nodes { version status imageRef } } } }"""


@pytest.mark.parametrize("token", [DEFAULT_DEPLOY_TOKEN, DEFAULT_TOKEN],
                         ids=["deploy-token", "personal-token"])
def test_rollback_to_a_fly_release_number(db: str, tmp_path: Path, token: str) -> None:
    """``--to 3`` is Fly's release v3 although v4 (config only, same image) lies between;
    afterwards `fly releases` lists the rollback as v6, complete."""
    with fly_world(db, tmp_path, token) as (fly, stack):
        em, driver = stack.emulator, stack.driver
        assert driver is not None and stack.bot is not None
        driver.slash_command("/rollback",
                             "hotel-voice-bot --platform fly --to 3 --severity P0",
                             user="bob")
        msg = request_message(em, timeout=20)
        rb = stack.bot.store.history("hotel-voice-bot")[0]
        assert (rb.target_revision.number, rb.target_revision.id) == \
            (3, seed_image("1.3.0"))
        driver.click(CHANNEL, msg["ts"], ids.APPROVE, "bob")
        em.wait_for(lambda: stack.bot.store.get(rb.id).state.value == "completed",
                    timeout=30)
        schemes = {r.auth_scheme for r in fly.requests}  # the bot's requests
        assert schemes == {"FlyV1" if token == DEFAULT_DEPLOY_TOKEN else "Bearer"}
        response = httpx.post(f"{fly.url}/graphql", json={
            "query": RELEASES, "variables": {"appName": "hotel-voice-bot", "limit": 3}},
            headers={"Authorization": f"Bearer {DEFAULT_TOKEN}"})
        nodes = response.json()["data"]["app"]["releases"]["nodes"]
        assert [(n["version"], n["status"], n["imageRef"]) for n in nodes] == [
            (6, "complete", seed_image("1.3.0")), (5, "complete", seed_image("1.4.0")),
            (4, "complete", seed_image("1.3.0"))]
