"""The sandbox (``SandboxWorld(platforms=True)``, what ``python -m sandbox run`` starts) shows
issue 13 on ECS and Fly: ``hotel-voice-bot-fly`` rolls back to a new Fly release with its
configuration view in the plan and verification passing; ``hotel-voice-bot-ecs`` answers
``/rollback history --revision N`` with the task definition, attaches CloudWatch logs to its
assessment and points moto's target group at the restored health-check path. Through the
wire: signed Slack requests in, the real adapters against the emulators."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from bot.domain.models import Rollback
from handlers import ids
from sandbox.config import ECS_SERVICE, FLY_SERVICE
from sandbox.fly import DEFAULT_TOKEN, seed_image
from sandbox.runner import (
    BAD_HEALTH_PATH,
    FLY_TOKEN_ENV,
    RESTORED_HEALTH_PATH,
    SANDBOX_AWS_ENV,
    SandboxWorld,
)
from tests.secret_scan import register_secret
from tests.support.database import fresh_database
from tests.support.messages import CHANNEL, request_message, thread_texts
from tests.support.sandbox_process import (
    free_port,
    sandbox_cli,
    sandbox_env,
    start_sandbox,
    stop_process,
)
from tests.support.waiting import wait_until


@pytest.fixture(scope="module")
def world(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxWorld]:
    """One sandbox for the module (three emulators take seconds to start and seed); each test
    works on its own service, so their order does not matter."""
    with fresh_database(database_url, migrated=True) as url:
        w = SandboxWorld(directory=tmp_path_factory.mktemp("sandbox"), platforms=True,
                         database_url=url).start()
        # What the sandbox put in its environment must never reach Slack either.
        register_secret(os.environ[FLY_TOKEN_ENV], f"env {FLY_TOKEN_ENV}")
        register_secret(SANDBOX_AWS_ENV["AWS_SECRET_ACCESS_KEY"], "env AWS_SECRET_ACCESS_KEY")
        try:
            yield w
        finally:
            w.stop()


def request(world: SandboxWorld, service: str) -> tuple[Rollback, dict[str, Any]]:
    """bob asks for a P0 rollback of ``service``: (the rollback, its request message once the
    assessment is rendered)."""
    stack = world.stack
    assert stack.driver is not None and stack.bot is not None
    store = stack.bot.store
    stack.driver.slash_command("/rollback", f"{service} --severity P0", user="bob")
    rb = stack.emulator.wait_for(lambda: next(iter(store.history(service)), None),
                                 timeout=15, description=f"a rollback of {service}")
    assert rb is not None
    return rb, request_message(stack.emulator, rb.id, timeout=30)


def approve_and_complete(world: SandboxWorld, rb: Rollback, msg: dict[str, Any]) -> Rollback:
    stack = world.stack
    assert stack.driver is not None and stack.bot is not None
    store = stack.bot.store
    stack.driver.click(CHANNEL, msg["ts"], ids.APPROVE, "bob")

    def finished() -> Rollback | None:
        now: Rollback = store.get(rb.id)
        return now if now.state.value in ("completed", "failed") else None

    done = stack.emulator.wait_for(finished, timeout=60, description=f"{rb.ref} finished")
    assert done is not None
    assert done.state.value == "completed", done.last_error
    return done


def verification(world: SandboxWorld, rb: Rollback, msg: dict[str, Any]) -> str:
    """The text of the rollback's verification notice in its thread, once posted."""
    em = world.stack.emulator
    return str(em.wait_for(lambda: next((t for t in thread_texts(em, msg)
                                         if f"Verification of {rb.ref}" in t), None),
                           timeout=30, description="the verification notice"))


RELEASES = """query($appName: String!, $limit: Int!) { app(name: $appName) {
  releases: releasesUnprocessed(first: $limit) { nodes { version status imageRef } } } }"""


def test_fly_rollback_in_the_sandbox_is_a_new_release(world: SandboxWorld) -> None:
    rb, msg = request(world, FLY_SERVICE)
    plan = str(msg["blocks"])
    assert "*Platform*\\nfly:hotel/hotel-voice-bot" in plan
    # the configuration view: v5 added a feature flag the rollback keeps (Fly's fly.toml)
    assert "*Configuration that differs*" in plan and "env.FEATURE_NEW_ASR" in plan
    assert rb.target_revision.id == seed_image("1.3.0")
    approve_and_complete(world, rb, msg)
    verified = verification(world, rb, msg)
    assert "passed" in verified and "machines: CPU" in verified, verified
    others = world.others
    assert others is not None and others.fly is not None
    response = httpx.post(f"{others.fly.url}/graphql", json={
        "query": RELEASES, "variables": {"appName": "hotel-voice-bot", "limit": 2}},
        headers={"Authorization": f"Bearer {DEFAULT_TOKEN}"}, timeout=10)
    nodes = response.json()["data"]["app"]["releases"]["nodes"]
    assert [(n["version"], n["status"], n["imageRef"]) for n in nodes] == [
        (6, "complete", seed_image("1.3.0")), (5, "complete", seed_image("1.4.0"))]
    assert {m["config"]["image"] for m in others.fly.machines("hotel-voice-bot")} == \
        {seed_image("1.3.0")}


def test_ecs_revision_detail_in_the_sandbox(world: SandboxWorld) -> None:
    stack = world.stack
    assert stack.driver is not None
    reply = stack.driver.slash_command("/rollback", f"history {ECS_SERVICE} --revision 3",
                                       user="dave")
    assert reply.status == 200
    em = stack.emulator
    text = str(em.wait_for(lambda: next(
        (str(e.get("text", "")) + str(e.get("blocks", "")) for e in em.ephemerals(user="dave")
         if f"Revision 3 of {ECS_SERVICE}" in str(e.get("text", "")) + str(e.get("blocks", ""))),
        None), timeout=15, description="the revision detail"))
    assert "Task definition: hotel-voice-bot:3" in text
    assert "Images: hotel-voice-bot=registry.example/hotel-voice-bot:1.3.0" in text
    assert "Logs: awslogs /ecs/hotel-voice-bot" in text
    assert "pk-live-0003-do-not-leak" not in text  # a literal credential is masked


def test_ecs_rollback_in_the_sandbox_attaches_logs_and_moves_the_health_check(
        world: SandboxWorld) -> None:
    others = world.others
    assert others is not None and others.ecs is not None
    elbv2 = others.ecs.client("elbv2")

    def path() -> str:
        return str(elbv2.describe_target_groups(TargetGroupArns=[others.target_group_arn])
                   ["TargetGroups"][0]["HealthCheckPath"])

    assert path() == BAD_HEALTH_PATH
    rb, msg = request(world, ECS_SERVICE)
    plan = str(msg["blocks"])
    assert ("Point the load balancer's health check (hotel-voice-bot-ecs) at "
            f"{RESTORED_HEALTH_PATH}") in plan, plan
    # the configuration view: the task definitions' environment and secret references
    assert "env LOG_LEVEL: `debug` → `info`" in plan
    assert "env PARTNER_API_KEY: `&lt;hidden, sha256:" in plan, plan  # a literal, masked
    assert "pk-live-0004-do-not-leak" not in plan
    store = world.stack.bot.store  # type: ignore[union-attr]
    em = world.stack.emulator
    logs: dict[str, Any] = em.wait_for(lambda: store.get(rb.id).assessment.get("logs") or {},
                                       timeout=20)
    assert logs["text"].endswith("lines attached"), logs
    upload = next(f for f in em.files() if "-logs-" in f["name"] and ECS_SERVICE in f["name"])
    assert "registry.example/hotel-voice-bot:1.4.0" in em.file_content(upload["id"]).decode()
    approve_and_complete(world, rb, msg)
    assert path() == RESTORED_HEALTH_PATH  # the step wrote moto's ELBv2 target group
    step = next(s for s in store.steps(rb.id) if s.kind == "set_health_check_path")
    assert (step.status, step.result["previous_path"]) == ("done", BAD_HEALTH_PATH)
    service = others.ecs.client().describe_services(
        cluster="production", services=["hotel-voice-bot"])["services"][0]
    assert service["taskDefinition"].endswith("task-definition/hotel-voice-bot:3")
    verified = verification(world, rb, msg)
    mean_task = "resources: service/hotel-voice-bot (mean of 3 RUNNING tasks): CPU"
    assert "passed" in verified and mean_task in verified, verified


def test_make_run_serves_the_three_platforms(tmp_path: Path) -> None:
    """``python -m sandbox run`` (what `make run` starts) has the ECS and Fly services on by
    default: its banner names them, the catalog lists them, and ``say`` reaches the ECS
    emulator through the process's own adapter wiring."""
    port, console = free_port(), free_port()
    env = sandbox_env(tmp_path / "data", port, console)
    for name in (FLY_TOKEN_ENV, *SANDBOX_AWS_ENV):  # the sandbox sets its own
        env.pop(name, None)
    log = tmp_path / "sandbox.log"
    proc = start_sandbox(env, log)

    def ready() -> str | None:
        text = log.read_text()
        assert proc.poll() is None, f"the sandbox exited:\n{text[-3000:]}"
        return text if "Press Ctrl-C to stop." in text else None

    try:
        # The ready line follows /healthz; a shared CI machine may need a while to initdb.
        banner = wait_until(ready, timeout=90, message="the ready line",
                            diagnostics=lambda: log.read_text()[-3000:])
        assert f"{ECS_SERVICE}  ECS service production/hotel-voice-bot" in banner, banner
        assert f"{FLY_SERVICE}  Fly app hotel-voice-bot (running the bad release v5)" in banner
        services = sandbox_cli(env, "say", "/rollback services")
        assert f"*{ECS_SERVICE}* (ecs)" in services.stdout, services.stdout + services.stderr
        assert f"*{FLY_SERVICE}* (fly)" in services.stdout
        detail = sandbox_cli(env, "say", f"/rollback history {ECS_SERVICE} --revision 4",
                             "--as", "dave")
        assert "Images: hotel-voice-bot=registry.example/hotel-voice-bot:1.4.0" in \
            detail.stdout, detail.stdout + detail.stderr
    finally:
        stop_process(proc)
