"""Do no harm: every way a rollback could make an incident worse, refused, compensated or
stopped loudly, through the Slack emulator, the real bot over HTTP and real PostgreSQL.

Each scenario asserts the platform state afterwards, not only what the bot said. The
Kubernetes scenarios use real kubectl as the oracle, the ECS one boto3 against the ECS
emulator's circuit breaker; the sandbox scenarios run `python -m sandbox run` (`make run`)
as a process.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from slack_sdk import WebClient

from bot.integrations import target_database as database
from bot.persistence.aftercare_store import AftercareStore
from handlers import ids
from platforms.base import PermanentPlatformError, Target
from platforms.ecs import EcsPlatform
from platforms.kubernetes import KubernetesPlatform
from sandbox.config import parse_sandbox_config, sandbox_config_dict
from sandbox.ecs import EcsEmulator
from sandbox.kube import KubeEmulator
from sandbox.kube_seed import DEPLOYMENT, IMAGE, NAMESPACE, kubernetes_target, seed_incident
from sandbox.slack import DEFAULT_BOT_TOKEN
from sandbox.stack import SandboxStack
from tests.e2e.conftest import CHANNEL, Harness, action_ids
from tests.integration.kube_fixtures import Kubectl
from tests.support.database import fresh_database
from tests.support.emulators import ecs_service_config
from tests.support.messages import request_message
from tests.support.sandbox_process import (
    free_port,
    sandbox_cli,
    sandbox_env,
    start_sandbox,
    stop_process,
    wait_healthy,
)

SERVICE = "hotel-voice-bot"
APP_DSN_ENV = "HVB_APP_DATABASE_URL"
TARGET = Target("fake", "production", SERVICE)


# ---------------------------------------------------------------------------- fixtures
@pytest.fixture
def app_db(database_url: str) -> Iterator[str]:
    """The *service's* database (what a db-scope rollback backs up and restores)."""
    with fresh_database(database_url, prefix="app") as url:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("CREATE TABLE bot_messages (id int PRIMARY KEY, body text NOT NULL)")
            conn.execute("INSERT INTO bot_messages VALUES (1, 'hello'), (2, 'world')")
        yield url


@pytest.fixture
def db_harness(make_harness: Callable[..., Harness], app_db: str, tmp_path: Path,
               monkeypatch: pytest.MonkeyPatch) -> Callable[..., Harness]:
    """A harness whose service has a database section (backups under ``tmp_path``)."""
    monkeypatch.setenv(APP_DSN_ENV, app_db)
    backups = tmp_path / "backups"

    def make(*, stop_seconds: float = 0.0, stop_timeout: float | None = None,
             with_backup: bool = True) -> Harness:
        def configure(data: dict[str, Any]) -> None:
            svc = data["services"][SERVICE]
            svc["database"] = {"dsn_env": APP_DSN_ENV, "backup_location": str(backups),
                               "verify_queries": ["SELECT COUNT(*) FROM public.bot_messages"]}
            if stop_timeout is not None:
                svc["fake"]["stop_timeout_seconds"] = stop_timeout

        h = make_harness(config_overrides=configure)
        h.platform.stop_seconds = stop_seconds
        if with_backup:  # taken before the incident (the bot's clock), so it gets pinned
            database.backup(app_db, location=backups, service=SERVICE,
                            now=h.clock() - timedelta(minutes=10))
        return h

    return make


def _request(h: Harness, text: str, *, user: str) -> tuple[int, dict[str, Any]]:
    before = len(h.bot.store.history(SERVICE))
    h.request(f"{SERVICE} {text}", user=user)
    h.emulator.wait_for(lambda: len(h.bot.store.history(SERVICE)) > before, timeout=15)
    rid = h.bot.store.history(SERVICE)[0].id
    return rid, h.rollback_message(rid)


def _completed_p0(h: Harness, *, user: str = "bob") -> int:
    rid, msg = _request(h, "--severity P0 --scope app", user=user)
    h.click(msg, ids.APPROVE, user)
    h.wait_state(rid, "completed")
    return rid


def _approve_typed(h: Harness, msg: dict[str, Any], user: str) -> None:
    """Approve a plan with destructive steps: click, then type the name in the dialog."""
    h.click(msg, ids.APPROVE, user)
    h.emulator.wait_for(lambda: h.emulator.open_views(user))
    h.driver.submit_view(user, {"confirm_service": SERVICE})


def _step(h: Harness, rid: int, kind: str) -> Any:
    return next(s for s in h.bot.store.steps(rid) if s.kind == kind)


# ------------------------------------------------------------------ 1. known-bad revisions
def test_a_second_rollback_never_rolls_forward_onto_the_bad_release(harness: Harness) -> None:
    h = harness
    # rs-3 (v1.3.0) is the bad release; RB-1 returns to rs-2, which becomes revision 4.
    first = _completed_p0(h)
    assert h.platform.current_revision(TARGET).id == "rs-2"
    marks = h.bot.store.known_bad(SERVICE, "fake")
    assert set(marks) == {"rs-3"} and marks["rs-3"].rollback_id == first

    h.request(f"{SERVICE} --severity P0", user="bob")
    refusal = h.wait_ephemeral("bob", "already runs")
    assert f"RB-{first} rolled back" in refusal
    assert "rev 1 (registry.example/app:v1.1.0)" in refusal  # what a further one would pick
    assert "--to 1" in refusal
    assert [rb.id for rb in h.bot.store.history(SERVICE)] == [first]  # nothing planned
    assert h.platform.mutations()["rollback_to"] == 1
    assert h.platform.current_revision(TARGET).id == "rs-2"


def test_known_bad_target_needs_an_approvers_loud_override(harness: Harness) -> None:
    h = harness
    first = _completed_p0(h)
    rid, msg = _request(h, "--to 3 --severity P1 --reason 'try v1.3 again'", user="alice")
    rb = h.bot.store.get(rid)
    assert rb.known_bad_target and rb.known_bad_target["rollback_id"] == first
    assert not rb.checklist["previous_version"]["done"]  # not a previous *stable* version
    blocks = str(msg["blocks"])
    assert "KNOWN-BAD" in blocks and ":no_entry: known-bad (RB-1)" in blocks
    assert ids.APPROVE not in action_ids(msg) and ids.APPROVE_KNOWN_BAD in action_ids(msg)
    h.emulator.wait_for(lambda: any("targets a KNOWN-BAD revision" in str(m.get("text"))
                                    for m in h.emulator.messages(CHANNEL)))
    h.click(msg, ids.ASSIGN_IC, "carol")
    h.click(msg, ids.APPROVE_KNOWN_BAD, "dave")  # not an approver
    h.wait_ephemeral("dave", "Only approvers")
    assert h.bot.store.get(rid).state.value == "pending_approval"

    h.click(msg, ids.APPROVE_KNOWN_BAD, "carol")
    h.wait_state(rid, "completed")
    assert h.platform.current_revision(TARGET).id == "rs-3"
    h.emulator.wait_for(lambda: any("KNOWN-BAD OVERRIDE" in str(m.get("text"))
                                    for m in h.emulator.messages(CHANNEL)))
    events = [e.event for e in h.bot.store.audit_events(rid)]
    approve = next(e for e in h.bot.store.audit_events(rid) if e.event == "approve")
    assert approve.detail["known_bad_override"] is True and "marked_known_bad" in events


def test_known_bad_marks_are_listed_hidden_from_the_modal_and_cleared_by_approvers(
        harness: Harness) -> None:
    h = harness
    _completed_p0(h)
    h.request(f"known-bad {SERVICE}", user="alice")
    listing = h.wait_ephemeral("alice", "Known-bad revisions")
    assert "registry.example/app:v1.3.0" in listing and "RB-1" in listing

    h.request(SERVICE, user="alice")  # the request form
    view = h.emulator.wait_for(lambda: next(
        (v for v in h.emulator.open_views("alice") if "Target revision" in str(v)), None))
    options = [o["value"] for b in view["blocks"] if b.get("block_id") == "target_revision"
               for o in b["element"]["options"]]
    assert "3" not in options and "1" in options  # rs-3 (rev 3) is known-bad
    assert "Known-bad, not offered" in str(view["blocks"])
    h.driver.close_view("alice")

    h.request(f"known-bad {SERVICE} clear 3 --reason 'fixed config'", user="alice")
    h.wait_ephemeral("alice", "Only approvers")
    h.request(f"known-bad {SERVICE} clear 3 --reason 'fixed config'", user="carol")
    h.emulator.wait_for(lambda: not h.bot.store.known_bad(SERVICE, "fake"))
    cleared = [e for e in h.bot.store.audit_events(1) if e.event == "cleared_known_bad"]
    assert [e.actor for e in cleared] == [h.emulator.user_id("carol")]
    assert cleared[0].detail["reason"] == "fixed config"
    h.emulator.wait_for(lambda: any("cleared the known-bad mark" in str(r)
                                    for r in h.emulator.responses()))


# ----------------------------------------------------------- 2. destructive steps gating
def test_p0_defaults_to_an_application_only_plan(harness: Harness) -> None:
    h = harness
    rid, _ = _request(h, "--severity P0", user="bob")
    assert [s.kind for s in h.bot.store.steps(rid)] == ["app_rollback", "wait_rollout"]
    assert h.bot.store.get(rid).scope == ["app"]


def test_db_scope_without_a_backup_is_refused_and_nothing_is_planned(
        db_harness: Callable[..., Harness]) -> None:
    h = db_harness(with_backup=False)
    h.request(f"{SERVICE} --severity P0 --scope app,db", user="bob")
    refusal = h.wait_ephemeral("bob", "Refused")
    assert "verified backup" in refusal and "pg_dump -Fc" in refusal
    assert "without `db`" in refusal
    assert h.bot.store.history(SERVICE) == []
    assert sum(h.platform.mutations().values()) == 0


def test_db_restore_needs_two_people_and_the_typed_service_name(
        db_harness: Callable[..., Harness]) -> None:
    h = db_harness()
    rid, msg = _request(h, "--severity P0 --scope app,db", user="bob")
    blocks = str(msg["blocks"])
    assert "Destructive steps" in blocks and "Pinned backup" in blocks
    approve = next(e for b in msg["blocks"] if b.get("type") == "actions"
                   for e in b["elements"] if e["action_id"] == ids.APPROVE)
    assert "Restore the database from" in approve["confirm"]["text"]["text"]

    h.click(msg, ids.APPROVE, "bob")  # break glass never covers a restore
    assert "two people" in h.wait_ephemeral("bob", "two people")
    assert h.emulator.open_views("bob") == []

    h.click(msg, ids.APPROVE, "carol")
    view = h.emulator.wait_for(lambda: next(iter(h.emulator.open_views("carol")), None))
    assert "Restore the database from" in str(view["blocks"])
    assert "Pinned backup" in str(view["blocks"]) and "min old" in str(view["blocks"])
    wrong = h.driver.submit_view("carol", {"confirm_service": "hotel-voice"})
    assert wrong.view_result == "errors"
    assert h.bot.store.get(rid).state.value == "pending_approval"
    h.driver.submit_view("carol", {"confirm_service": SERVICE})
    rb = h.wait_state(rid, "completed", timeout=40)
    assert rb.approver == h.emulator.user_id("carol") and not rb.break_glass
    kinds = [(s.kind, s.status) for s in h.bot.store.steps(rid)]
    assert ("restore_db", "done") in kinds and ("scale_up", "done") in kinds
    assert h.platform.get_replicas(TARGET) == 3


# -------------------------------------------------------------- 3. compensation
def test_failure_after_scale_down_scales_the_service_back(
        db_harness: Callable[..., Harness], monkeypatch: pytest.MonkeyPatch) -> None:
    h = db_harness()
    rid, msg = _request(h, "--severity P0 --scope app,db", user="bob")
    # The pinned backup is fine; the live database refuses the pre-restore dump.
    monkeypatch.setenv(APP_DSN_ENV, "postgresql://nobody@127.0.0.1:1/none")
    _approve_typed(h, msg, "carol")
    rb = h.wait_state(rid, "failed", timeout=40)
    assert rb.last_error and rb.last_error.startswith("backup_db:")
    assert h.platform.get_replicas(TARGET) == 3
    assert h.platform.mutation_log() == ["scale:0", "scale:3"]  # no app rollback, no restore
    assert _step(h, rid, "scale_down").result["restored_to"] == 3
    assert _step(h, rid, "restore_db").status == "pending"
    # The line follows the transition through the outbox's deliverer.
    h.emulator.wait_for(lambda: any("Compensation" in t and "back to 3 replicas" in t
                                    for t in h.thread_texts(msg)),
                        10, description="the compensation line in the thread")
    assert any(e.event == "compensated" for e in h.bot.store.audit_events(rid))


def test_failure_inside_the_restore_stops_for_a_human_with_a_scale_back_up_button(
        db_harness: Callable[..., Harness]) -> None:
    h = db_harness()
    rid, msg = _request(h, "--severity P0 --scope app,db", user="bob")
    pinned = Path(_step(h, rid, "restore_db").params["backup_path"])
    size = pinned.stat().st_size  # same size, garbage: only pg_restore itself notices
    pinned.write_bytes(b"\0" * size)
    _approve_typed(h, msg, "carol")
    rb = h.wait_state(rid, "needs_attention", timeout=40)
    assert _step(h, rid, "restore_db").result.get("begun") is True
    assert "left scaled down for a human decision" in (rb.last_error or "")
    assert h.platform.get_replicas(TARGET) == 0  # not brought back onto an unchecked DB
    note = h.emulator.wait_for(lambda: next(
        (t for t in h.thread_texts(msg) if "needs attention" in t), None))
    assert "kubectl" not in note and "Scale back up" in note and "3 replicas" in note
    current = h.emulator.wait_for(lambda: (m := h.message_now(msg["ts"])) and
                                  ids.SCALE_BACK_UP in action_ids(m) and m)
    h.driver.click(CHANNEL, current["ts"], ids.SCALE_BACK_UP, "alice")  # not an approver
    h.wait_ephemeral("alice", "Only approvers")
    assert h.platform.get_replicas(TARGET) == 0
    h.driver.click(CHANNEL, current["ts"], ids.RESOLVE, "carol")  # would hide the service at 0
    assert "still scaled to 0" in h.wait_ephemeral("carol", "still scaled to 0")
    assert h.bot.store.get(rid).state.value == "needs_attention"
    h.platform.scale(TARGET, 5)  # an autoscaler brought it back meanwhile
    h.driver.click(CHANNEL, current["ts"], ids.SCALE_BACK_UP, "carol")
    h.wait_ephemeral("carol", "already runs 5 replica(s)")
    assert h.platform.get_replicas(TARGET) == 5  # never reset to the journaled 3
    h.platform.scale(TARGET, 0)  # and scaled away again: now the button does its job
    h.driver.click(CHANNEL, current["ts"], ids.SCALE_BACK_UP, "carol")
    h.emulator.wait_for(lambda: h.platform.get_replicas(TARGET) == 3)
    h.emulator.wait_for(lambda: ids.SCALE_BACK_UP not in action_ids(h.message_now(msg["ts"])))
    assert any(e.event == "scaled_back_up" for e in h.bot.store.audit_events(rid))
    h.click(msg, ids.RESOLVE, "carol")
    h.wait_state(rid, "failed")

    # The dump of the bad data taken before the restore is never offered as a backup.
    pre_restore = list((pinned.parent / "pre-restore").glob("*.dump"))
    assert len(pre_restore) == 1
    h.request(f"{SERVICE} --severity P0 --scope app,db", user="bob")
    refusal = h.wait_ephemeral("bob", "cannot be pinned")
    assert f"newest backup `{pinned.name}`" in refusal and "pre-restore" not in refusal
    assert str(pinned.parent) not in refusal  # no local path in Slack


def test_a_pinned_backup_that_changed_stops_before_the_database_is_touched(
        db_harness: Callable[..., Harness]) -> None:
    h = db_harness(stop_seconds=1.0)  # the file changes while the service is stopping
    rid, msg = _request(h, "--severity P0 --scope app,db", user="bob")
    pinned = Path(_step(h, rid, "restore_db").params["backup_path"])
    _approve_typed(h, msg, "carol")
    h.emulator.wait_for(lambda: h.platform.mutations()["scale"] == 1)  # checked, then scaled
    pinned.write_bytes(b"truncated")  # rotated or rewritten since the plan was made
    rb = h.wait_state(rid, "failed", timeout=40)
    assert "changed since the plan was made" in (rb.last_error or "")
    assert _step(h, rid, "backup_db").status == "done"  # caught by the restore's own check
    assert not _step(h, rid, "restore_db").result.get("begun")
    assert h.platform.get_replicas(TARGET) == 3  # nothing touched: scaled straight back


def test_cancel_during_execution_stops_and_scales_back(
        db_harness: Callable[..., Harness]) -> None:
    h = db_harness(stop_seconds=1.5)
    rid, msg = _request(h, "--severity P0 --scope app,db", user="bob")
    _approve_typed(h, msg, "carol")
    h.emulator.wait_for(lambda: _step(h, rid, "scale_down").status == "started", timeout=20)
    h.click(msg, ids.CANCEL, "bob")
    rb = h.wait_state(rid, "cancelled", timeout=30)
    assert rb.cancel_requested_by == h.emulator.user_id("bob")
    assert h.platform.get_replicas(TARGET) == 3
    assert _step(h, rid, "backup_db").status == "pending"  # stopped before the next step
    assert h.platform.mutations()["rollback_to"] == 0
    assert "rs-3" in h.bot.store.known_bad(SERVICE, "fake")  # execution had started


# ----------------------------------------------------------- 4. stop means stopped
def test_backup_starts_only_after_the_last_unit_has_stopped(
        db_harness: Callable[..., Harness]) -> None:
    h = db_harness(stop_seconds=1.0)
    rid, msg = _request(h, "--severity P0 --scope app,db", user="bob")
    _approve_typed(h, msg, "carol")
    h.wait_state(rid, "completed", timeout=40)
    stopped_at = h.platform.stopped_at(TARGET)
    backup = _step(h, rid, "backup_db")
    scale = _step(h, rid, "scale_down")
    assert stopped_at is not None and backup.started_at is not None
    assert backup.started_at.timestamp() >= stopped_at
    assert stopped_at - scale.started_at.timestamp() >= 1.0  # it waited out the stop


def test_units_that_do_not_stop_in_time_fail_the_step_and_are_scaled_back(
        db_harness: Callable[..., Harness]) -> None:
    h = db_harness(stop_seconds=30, stop_timeout=0.5)
    rid, msg = _request(h, "--severity P0 --scope app,db", user="bob")
    _approve_typed(h, msg, "carol")
    rb = h.wait_state(rid, "failed", timeout=30)
    assert "still running" in (rb.last_error or "")
    assert h.platform.get_replicas(TARGET) == 3
    assert _step(h, rid, "backup_db").status == "pending"


# ------------------------------------------------------------- 5. verify the outcome
def test_success_is_never_reported_on_the_wrong_version(harness: Harness) -> None:
    h = harness
    h.platform.set_running_override(TARGET, "rs-3")  # the platform settles on the bad one
    rid, msg = _request(h, "--severity P0", user="bob")
    h.click(msg, ids.APPROVE, "bob")
    rb = h.wait_state(rid, "failed")
    assert "is not what runs: rs-3 (registry.example/app:v1.3.0)" in (rb.last_error or "")
    assert _step(h, rid, "wait_rollout").status == "failed"
    assert h.platform.calls()["confirm_running"] == 1


def test_a_hotfix_deployed_while_waiting_is_never_rolled_back_unseen(harness: Harness) -> None:
    h = harness
    rid, msg = _request(h, "--severity P0", user="bob")
    h.platform.deploy(TARGET, "registry.example/app:v1.3.1", change_cause="hotfix")
    h.click(msg, ids.APPROVE, "bob")
    rb = h.wait_state(rid, "failed")
    assert "running revision changed since the plan was made" in (rb.last_error or "")
    assert "rev 4 (registry.example/app:v1.3.1) runs now" in (rb.last_error or "")
    assert h.platform.mutations()["rollback_to"] == 0
    assert h.platform.current_revision(TARGET).id == "rs-4"
    assert h.bot.store.known_bad(SERVICE, "fake") == {}  # neither release was judged


def test_a_configuration_only_rollback_marks_no_revision_known_bad(harness: Harness) -> None:
    h = harness
    h.bot.store.record_known_good_config(
        SERVICE, "fake", {"items": {"configmap/app-config": {"data": {"MODE": "good"}}}},
        rollback_id=None)
    rid, msg = _request(h, "--severity P0 --scope config", user="bob")
    h.click(msg, ids.APPROVE, "bob")
    h.wait_state(rid, "completed")
    assert h.platform.mutations()["restore_config"] == 1
    assert h.bot.store.known_bad(SERVICE, "fake") == {}


# ------------------------------------------------------------ 6. checklist authority
def test_only_a_technical_lead_other_than_the_requester_ticks_the_decision(
        harness: Harness) -> None:
    h = harness
    rid, msg = _request(h, "--severity P2", user="bob")  # bob is an approver
    item = f"{ids.CHECKLIST}:decision_approved"
    h.click(msg, item, "bob")
    assert "You requested" in h.wait_ephemeral("bob", "You requested")
    h.click(msg, item, "alice")
    assert "sre-approvers" in h.wait_ephemeral("alice", "Only a technical lead")
    assert not (h.bot.store.get(rid).checklist.get("decision_approved") or {}).get("done")
    h.click(msg, item, "carol")
    h.emulator.wait_for(lambda: (h.bot.store.get(rid).checklist.get("decision_approved")
                                 or {}).get("done"))


def test_when_scaling_back_fails_too_a_human_gets_the_exact_command(
        db_harness: Callable[..., Harness], monkeypatch: pytest.MonkeyPatch) -> None:
    h = db_harness(stop_seconds=1.0)
    rid, msg = _request(h, "--severity P0 --scope app,db", user="bob")
    monkeypatch.setenv(APP_DSN_ENV, "postgresql://nobody@127.0.0.1:1/none")  # backup fails
    _approve_typed(h, msg, "carol")
    h.emulator.wait_for(lambda: _step(h, rid, "scale_down").status == "started", timeout=20)
    h.emulator.wait_for(lambda: h.platform.mutations()["scale"] == 1)  # scaled to 0
    h.platform.inject("scale", PermanentPlatformError("403 forbidden"), times=10)
    rb = h.wait_state(rid, "needs_attention", timeout=30)
    assert "could not scale the service back up (403 forbidden)" in (rb.last_error or "")
    assert h.platform.get_replicas(TARGET) == 0
    note = h.emulator.wait_for(lambda: next(
        (t for t in h.thread_texts(msg) if "needs attention" in t), None))
    assert "scale fake:production/hotel-voice-bot to 3 replicas" in note
    h.platform.faults.clear()
    current = h.emulator.wait_for(lambda: (m := h.message_now(msg["ts"])) and
                                  ids.SCALE_BACK_UP in action_ids(m) and m)
    h.driver.click(CHANNEL, current["ts"], ids.SCALE_BACK_UP, "carol")
    h.emulator.wait_for(lambda: h.platform.get_replicas(TARGET) == 3)


# ------------------------------------- the same on Kubernetes, with kubectl as the oracle
@pytest.fixture
def kube() -> Iterator[KubeEmulator]:
    with KubeEmulator(seed="do-no-harm", rollout_duration=0.3) as emulator:
        seed_incident(emulator)  # 1.4.0 (rev 4) is the bad release; pods stop in 1 s
        yield emulator


def _kube_stack(kube: KubeEmulator, db: str, tmp_path: Path,
                configure: Callable[[dict[str, Any]], None] | None = None) -> SandboxStack:
    data = sandbox_config_dict(platform="kubernetes", kubernetes=kubernetes_target(),
                               postmortem_dir=str(tmp_path / "pm"))
    if configure:
        configure(data)
    platform = KubernetesPlatform(api_client=kube.api_client(), request_timeout=10.0)
    return SandboxStack(config=parse_sandbox_config(data), database_url=db,
                        platforms={"kubernetes": platform})


def _kube_request(stack: SandboxStack, text: str, *, user: str) -> tuple[int, dict[str, Any]]:
    em, driver, bot = stack.emulator, stack.driver, stack.bot
    assert driver is not None and bot is not None
    before = len(bot.store.history(SERVICE))
    driver.slash_command("/rollback", f"{SERVICE} {text}", user=user)
    em.wait_for(lambda: len(bot.store.history(SERVICE)) > before, timeout=20)
    rid = bot.store.history(SERVICE)[0].id
    return rid, request_message(em, rid, timeout=20)


def test_kubernetes_no_second_rollout_onto_the_bad_release(
        kube: KubeEmulator, kubectl: Kubectl, db: str, tmp_path: Path) -> None:
    def history() -> str:
        proc = kubectl.run(kube, "rollout", "history", f"deployment/{DEPLOYMENT}", "-n",
                           NAMESPACE)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout

    with _kube_stack(kube, db, tmp_path) as stack:
        em, driver, bot = stack.emulator, stack.driver, stack.bot
        assert driver is not None and bot is not None
        rid, msg = _kube_request(stack, "--severity P0", user="bob")
        driver.click(CHANNEL, msg["ts"], ids.APPROVE, "bob")  # break glass, app only
        em.wait_for(lambda: bot.store.get(rid).state.value == "completed", timeout=40)
        assert kube.current_image(NAMESPACE, DEPLOYMENT) == f"{IMAGE}:1.3.0"
        after_first = history()

        driver.slash_command("/rollback", f"{SERVICE} --severity P0", user="bob")
        refusal = em.wait_for(lambda: next(
            (str(e) for e in em.ephemerals(user="bob") if "already runs" in str(e)), None))
        assert "rev 5 (registry.example/hotel-voice-bot:1.3.0)" in refusal
        assert "RB-1 rolled back" in refusal and "1.4.0" not in refusal

        # Named explicitly, the bad release needs an approver's override, even in a P0.
        rid2, msg2 = _kube_request(stack, "--to 4 --severity P0", user="bob")
        assert bot.store.get(rid2).known_bad_target is not None
        driver.click(CHANNEL, msg2["ts"], ids.APPROVE_KNOWN_BAD, "alice")  # not an approver
        em.wait_for(lambda: any("Only approvers" in str(e) for e in em.ephemerals(user="alice")))
        driver.click(CHANNEL, msg2["ts"], ids.CANCEL, "bob")
        em.wait_for(lambda: bot.store.get(rid2).state.value == "cancelled")

        assert kube.current_image(NAMESPACE, DEPLOYMENT) == f"{IMAGE}:1.3.0"
        assert history() == after_first  # kubectl sees no further rollout
        proc = kubectl.run(kube, "get", f"deployment/{DEPLOYMENT}", "-n", NAMESPACE, "-o",
                           "jsonpath={.spec.template.spec.containers[0].image}")
        assert proc.stdout == f"{IMAGE}:1.3.0"


def test_kubernetes_backup_starts_only_after_the_last_pod_is_gone(
        kube: KubeEmulator, kubectl: Kubectl, db: str, app_db: str, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(APP_DSN_ENV, app_db)
    backups = tmp_path / "backups"
    database.backup(app_db, location=backups, service=SERVICE,
                    now=datetime.now(UTC) - timedelta(minutes=10))
    deleted: list[float] = []
    terminating: list[float] = []

    def on_event(event: Any, _actor: str) -> None:  # runs inside the API server's commit
        if event.key == "pods":
            if event.type == "DELETED":
                deleted.append(time.time())
            elif event.obj["metadata"].get("deletionTimestamp"):
                terminating.append(time.time())

    kube.store.add_listener(on_event)

    def configure(data: dict[str, Any]) -> None:
        data["services"][SERVICE]["database"] = {
            "dsn_env": APP_DSN_ENV, "backup_location": str(backups),
            "verify_queries": ["SELECT COUNT(*) FROM public.bot_messages"]}

    with _kube_stack(kube, db, tmp_path, configure) as stack:
        em, driver, bot = stack.emulator, stack.driver, stack.bot
        assert driver is not None and bot is not None
        rid, msg = _kube_request(stack, "--severity P0 --scope app,db", user="bob")
        driver.click(CHANNEL, msg["ts"], ids.APPROVE, "carol")
        em.wait_for(lambda: em.open_views("carol"))
        driver.submit_view("carol", {"confirm_service": SERVICE})
        em.wait_for(lambda: bot.store.get(rid).state.value == "completed", timeout=60)
        steps = {s.kind: s for s in bot.store.steps(rid)}

    scale_down, backup, scale_up = (steps[k] for k in ("scale_down", "backup_db", "scale_up"))
    assert scale_down.started_at and backup.started_at and scale_up.started_at
    old_pods = [t for t in deleted
                if scale_down.started_at.timestamp() <= t < scale_up.started_at.timestamp()]
    assert len(old_pods) == 3 and len(terminating) >= 3  # each went through Terminating
    assert max(old_pods) <= backup.started_at.timestamp()  # the backup began after the last
    assert max(old_pods) - min(terminating) >= 0.9  # they kept running for the grace period
    proc = kubectl.run(kube, "get", "pods", "-n", NAMESPACE, "--no-headers")
    assert proc.returncode == 0 and proc.stdout.count("Running") == 3
    assert kube.current_image(NAMESPACE, DEPLOYMENT) == f"{IMAGE}:1.3.0"


# ------------------------------------------------------------------ ECS circuit breaker
def test_ecs_circuit_breaker_revert_fails_the_rollback(db: str, tmp_path: Path) -> None:
    emulator = EcsEmulator().start()
    try:
        seeded = emulator.seed_hotel_voice_bot(circuit_breaker=(True, True))
        good, bad = seeded.arns[2], seeded.arns[3]  # the plan pins v3; v4 is the bad release
        emulator.fail_task_definition(good)  # e.g. its image was deleted from the registry
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
            assert rb.target_revision.id == good
            driver.click(CHANNEL, msg["ts"], ids.APPROVE, "bob")
            final = em.wait_for(lambda: (r := stack.bot.store.get(rb.id)).state.value in (
                "failed", "needs_attention", "completed", "verifying", "monitoring") and r,
                timeout=60)
            assert final.state.value == "failed", (final.state.value, final.last_error)
            error = str(final.last_error)
            assert error.startswith("wait_rollout: ")
            assert bad in error  # the task definition actually running
            assert "circuit breaker" in error
            thread = str(em.thread(CHANNEL, msg["ts"]))
            assert "Wait for the rollout to complete" in thread
        service = client.describe_services(cluster="production",
                                           services=["hotel-voice-bot"])["services"][0]
        # ECS put the bad v4 back: stable by ServicesStable's rule, but not what we pinned
        assert service["taskDefinition"] == bad
        assert [(d["status"], d["taskDefinition"], d["rolloutState"])
                for d in service["deployments"]] == [("PRIMARY", bad, "COMPLETED")]
        assert service["runningCount"] == service["desiredCount"] == 3
        failed_events = [e["message"] for e in service["events"]
                         if "deployment failed: tasks failed to start" in e["message"]]
        assert failed_events
        stopped = client.list_tasks(cluster="production", serviceName="hotel-voice-bot",
                                    desiredStatus="STOPPED")["taskArns"]
        tasks = client.describe_tasks(cluster="production", tasks=stopped)["tasks"]
        assert any(t["taskDefinitionArn"] == good and t["stopCode"] == "TaskFailedToStart"
                   for t in tasks)
    finally:
        emulator.stop()


# ---------------------------------------- optional Slack fields, post-mortems, one sandbox
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
    with fresh_database(database_url, migrated=True) as url:
        yield url


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
        make_harness: Callable[..., Harness], second_db: str, tmp_path: Path) -> None:
    shared = tmp_path / "shared-post-mortems"  # one directory, as sandbox runs and benches share
    first = make_harness(postmortem_dir=shared)
    second = make_harness(database_url=second_db, postmortem_dir=shared)
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


def test_second_sandbox_is_refused_and_the_first_keeps_running(tmp_path: Path) -> None:
    port, console = free_port(), free_port()
    env = sandbox_env(tmp_path / "data", port, console)
    log = tmp_path / "first.log"
    first = start_sandbox(env, log)
    try:
        bot_url = f"http://127.0.0.1:{port}"
        wait_healthy(bot_url, first, log)
        said = sandbox_cli(env, "say", "/rollback hotel-voice-bot --severity P1 --reason drill")
        assert said.returncode == 0, said.stderr
        status = sandbox_cli(env, "say", "/rollback status 1")
        assert "RB-1" in status.stdout, status.stdout + status.stderr

        started = time.monotonic()
        second = sandbox_cli(env, "run", timeout=30)  # the same `make run`, same data dir and ports
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
        again = sandbox_cli(env, "say", "/rollback status 1")
        assert again.returncode == 0 and "RB-1" in again.stdout, again.stdout + again.stderr
    finally:
        stop_process(first)
    output = log.read_text()
    for broken in ("AdminShutdown", "Traceback", "terminating connection"):
        assert broken not in output, output[-3000:]


def test_sandbox_after_a_killed_one_starts(tmp_path: Path) -> None:
    """The lock dies with its process: a SIGKILLed sandbox never blocks the next run."""
    port, console = free_port(), free_port()
    env = sandbox_env(tmp_path / "data", port, console)
    log = tmp_path / "killed.log"
    first = start_sandbox(env, log)
    wait_healthy(f"http://127.0.0.1:{port}", first, log)
    first.kill()
    first.wait(timeout=10)
    assert (tmp_path / "data" / "sandbox.lock").exists()  # the file stays; the lock does not
    said = sandbox_cli(env, "say", "/rollback help")
    assert said.returncode == 2 and "No sandbox is running" in said.stderr  # not a refusal
    log2 = tmp_path / "next.log"
    nxt = start_sandbox(env, log2)
    try:
        wait_healthy(f"http://127.0.0.1:{port}", nxt, log2)
    finally:
        stop_process(nxt)
        # The killed sandbox's embedded PostgreSQL outlives it (the next run reuses it);
        # stop it so the test leaves no server behind (SIGINT: PostgreSQL's fast shutdown).
        pidfile = tmp_path / "data" / "pgdata" / "postmaster.pid"
        if pidfile.exists():
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pidfile.read_text().split()[0]), signal.SIGINT)


@pytest.mark.parametrize("taken", ["PORT", "SANDBOX_CONSOLE_PORT"])
def test_a_taken_port_is_one_line_naming_the_port_and_variable(tmp_path: Path,
                                                               taken: str) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        busy = int(squatter.getsockname()[1])
        ports = {"PORT": free_port(), "SANDBOX_CONSOLE_PORT": free_port(), taken: busy}
        data = tmp_path / "data"
        env = sandbox_env(data, ports["PORT"], ports["SANDBOX_CONSOLE_PORT"])
        started = time.monotonic()
        run = sandbox_cli(env, "run", timeout=30)
    assert run.returncode == 1, run.stdout + run.stderr
    assert time.monotonic() - started < 15
    message = run.stderr.strip()
    assert len(message.splitlines()) == 1, message
    assert re.search(rf"\bPort {busy}\b", message) and taken in message, message
    assert "Traceback" not in run.stdout + run.stderr
    assert not (data / "pgdata").exists()  # nothing was started or touched
