"""The pinned plan (``bot.domain.planner``): which revision a rollback returns to, known-bad
revisions skipped or flagged, explicit targets checked, the steps each scope produces in
the runbook's order, and the ``Target`` each platform block becomes."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from bot.domain.compensation import INVERSES
from bot.domain.config import ServiceConfig, parse_config
from bot.domain.errors import UserFacingError
from bot.domain.models import KnownBad
from bot.domain.planner import build_steps, choose_revision, target_for
from platforms.base import Revision, Target
from platforms.registry import PRODUCTION

T0 = datetime(2026, 11, 29, 3, 0, tzinfo=UTC)


def _rev(number: int, *, current: bool = False, rid: str | None = None) -> Revision:
    return Revision(rid or f"rs-{number}", number, (f"app:1.{number}.0",), current=current)


def _bad(*revisions: Revision) -> dict[str, KnownBad]:
    return {r.id: KnownBad("svc", "kubernetes", r.id, r.to_dict(), 9, T0) for r in revisions}


HISTORY = [_rev(4, current=True), _rev(3), _rev(2), _rev(1)]


# ------------------------------------------------------------------ choose_revision
def test_the_default_is_the_newest_revision_that_ran_before_the_current_one() -> None:
    choice = choose_revision(list(reversed(HISTORY)), None)  # any order
    assert (choice.current.id, choice.target.id) == ("rs-4", "rs-3")
    assert choice.target_known_bad is None and choice.ran_before_current is True


def test_a_reused_revision_is_numbered_after_what_it_replaced() -> None:
    """Kubernetes renumbers a reused ReplicaSet max+1: rs-2, running again as number 5,
    replaced rs-4, so rs-4 is what ran before it; a history where every other revision has
    a higher number has nothing that ran before the current one."""
    history = [_rev(5, current=True, rid="rs-2"), _rev(4), _rev(3), _rev(1)]
    assert choose_revision(history, None).target.id == "rs-4"
    newest = [_rev(1, current=True), _rev(2), _rev(3)]  # everything else came later
    with pytest.raises(UserFacingError, match="No earlier revision"):
        choose_revision(newest, None)


def test_known_bad_revisions_are_skipped_by_default() -> None:
    choice = choose_revision(HISTORY, None, _bad(HISTORY[1]))
    assert choice.target.id == "rs-2" and choice.target_known_bad is None
    assert choose_revision(HISTORY, None, _bad(HISTORY[1], HISTORY[2])).target.id == "rs-1"


def test_with_every_earlier_revision_known_bad_nothing_is_picked_and_it_says_why() -> None:
    with pytest.raises(UserFacingError) as refused:
        choose_revision(HISTORY, None, _bad(*HISTORY[1:]))
    text = str(refused.value)
    assert "No earlier revision that is not known-bad is left in the history" in text
    for r in HISTORY[1:]:
        assert f"{r.label()} is known-bad" in text
    assert "--to REV" in text


def _ran(number: int, ran: bool | None, *, current: bool = False) -> Revision:
    return Revision(f"td-{number}", number, (f"app:1.{number}.0",), current=current, ran=ran)


def test_the_default_never_picks_a_revision_known_never_to_have_run() -> None:
    """ECS rev 3 was registered by a pipeline that failed before its deploy step: the
    previous stable version is rev 2, the one that ran; ``ran=None`` (cannot tell) is no
    reason to skip."""
    history = [_ran(4, True, current=True), _ran(3, False), _ran(2, True), _ran(1, None)]
    choice = choose_revision(history, None)
    assert choice.target.id == "td-2" and not choice.never_deployed
    unknown = [_ran(4, None, current=True), _ran(3, None), _ran(2, None)]
    assert choose_revision(unknown, None).target.id == "td-3"
    assert choose_revision([_ran(4, True, current=True), _ran(3, False), _ran(2, None)],
                           None).target.id == "td-2"


def test_an_explicit_target_that_never_ran_is_allowed_and_flagged() -> None:
    history = [_ran(4, True, current=True), _ran(3, False), _ran(2, True)]
    choice = choose_revision(history, 3)
    assert choice.target.id == "td-3" and choice.never_deployed
    assert choice.target_known_bad is None
    assert not choose_revision(history, 2).never_deployed


def test_with_only_never_run_or_known_bad_revisions_left_the_refusal_names_them() -> None:
    history = [_ran(4, True, current=True), _ran(3, False), _ran(2, True), _ran(1, False)]
    with pytest.raises(UserFacingError) as refused:
        choose_revision(history, None, _bad(history[2]))
    text = str(refused.value)
    assert "No earlier revision that is not known-bad is left in the history" in text
    assert f"{history[1].label()} never ran successfully here" in text
    assert f"{history[3].label()} never ran successfully here" in text
    assert f"{history[2].label()} is known-bad" in text and "--to REV" in text


def test_ran_round_trips_through_the_pinned_plan_and_defaults_to_unknown() -> None:
    for ran in (True, False, None):
        assert Revision.from_dict(_ran(3, ran).to_dict()).ran is ran
    old = _ran(3, False).to_dict()
    del old["ran"]  # a plan pinned before the field existed
    assert Revision.from_dict(old).ran is None


def test_no_earlier_revision_at_all_is_refused_without_a_known_bad_list() -> None:
    with pytest.raises(UserFacingError) as refused:
        choose_revision([_rev(1, current=True)], None)
    assert "known-bad)" not in str(refused.value)


def test_a_history_without_a_current_revision_is_refused() -> None:
    with pytest.raises(UserFacingError, match="no current revision"):
        choose_revision([_rev(2), _rev(1)], None)


def test_an_explicit_revision_is_pinned_by_number() -> None:
    choice = choose_revision(HISTORY, 2)
    assert (choice.target.id, choice.ran_before_current) == ("rs-2", True)
    newer = choose_revision([_rev(3, current=True), _rev(4), _rev(2)], 4)  # a later release
    assert (newer.target.id, newer.ran_before_current) == ("rs-4", False)


def test_an_explicit_known_bad_revision_is_planned_but_flagged() -> None:
    marks = _bad(HISTORY[2])
    choice = choose_revision(HISTORY, 2, marks)
    assert choice.target.id == "rs-2"
    assert choice.target_known_bad == marks["rs-2"]  # the approver must override


@pytest.mark.parametrize(("to", "message"), [
    (4, "Revision 4 is already the running revision."),
    (9, "Revision 9 is not in the history (known revisions: 4, 3, 2, 1)."),
])
def test_an_explicit_revision_that_cannot_be_a_target_is_refused(to: int, message: str) -> None:
    with pytest.raises(UserFacingError) as refused:
        choose_revision(HISTORY, to)
    assert str(refused.value) == message


# ------------------------------------------------------------------ build_steps
def _service(**extra: Any) -> ServiceConfig:
    svc = {"kubernetes": {"namespace": "prod", "deployment": "svc"}, **extra}
    return parse_config({"services": {"svc": svc}}, platforms=PRODUCTION).services["svc"]


DATABASE = {"dsn_env": "APP_DSN", "backup_location": "/backups"}
WEBHOOKS = [{"name": "twilio", "url": "http://hooks/1"}, {"name": "meta", "url": "http://h/2"}]
TARGET = _rev(3)


def test_an_app_rollback_rolls_back_and_waits() -> None:
    steps = build_steps(service=_service(), platform="kubernetes", scope=["app"],
                        target_revision=TARGET, backup_path=None)
    assert [s.kind for s in steps] == ["app_rollback", "wait_rollout"]
    assert steps[0].params == {"revision": TARGET.to_dict()}
    assert TARGET.label() in steps[0].description
    assert not any(s.destructive for s in steps)


def test_the_full_scope_follows_the_runbooks_order() -> None:
    steps = build_steps(service=_service(database=DATABASE, webhooks=WEBHOOKS),
                        platform="kubernetes", scope=["app", "db", "config", "external"],
                        target_revision=TARGET, backup_path="/backups/svc-2026.dump",
                        backup_size=1234,
                        known_good=(T0, 41))
    assert [s.kind for s in steps] == [
        "snapshot_config", "scale_down", "backup_db", "restore_db", "verify_db",
        "app_rollback", "restore_config", "scale_up", "wait_rollout", "repoint_webhooks"]
    by_kind = {s.kind: s for s in steps}
    assert [s.kind for s in steps if s.destructive] == ["restore_db"]
    assert by_kind["restore_db"].params == {"backup_path": "/backups/svc-2026.dump",
                                            "backup_size": 1234}
    assert "svc-2026.dump" in by_kind["restore_db"].description
    assert by_kind["scale_down"].params == {"inverse": INVERSES["scale_down"]}
    assert by_kind["restore_config"].params == {"known_good_recorded_at": T0.isoformat()}
    assert "2026-11-29 03:00 UTC by RB-41" in by_kind["restore_config"].description
    assert "twilio, meta" in by_kind["repoint_webhooks"].description


def test_db_brings_the_app_with_it() -> None:
    steps = build_steps(service=_service(database=DATABASE), platform="kubernetes",
                        scope=["db"], target_revision=TARGET, backup_path="/backups/x.dump")
    assert [s.kind for s in steps] == ["scale_down", "backup_db", "restore_db", "verify_db",
                                       "app_rollback", "scale_up", "wait_rollout"]


def test_a_database_rollback_without_a_pinned_backup_is_never_planned() -> None:
    with pytest.raises(UserFacingError, match="needs a verified backup pinned"):
        build_steps(service=_service(database=DATABASE), platform="kubernetes",
                    scope=["app", "db"], target_revision=TARGET, backup_path=None)


def test_config_alone_snapshots_and_restores_without_touching_the_app() -> None:
    steps = build_steps(service=_service(), platform="kubernetes", scope=["config"],
                        target_revision=TARGET, backup_path=None)
    assert [s.kind for s in steps] == ["snapshot_config", "restore_config"]
    assert "none recorded yet: will be skipped" in steps[1].description
    assert steps[1].params == {}
    manual = build_steps(service=_service(), platform="kubernetes", scope=["config"],
                         target_revision=TARGET, backup_path=None, known_good=(T0, None))
    assert manual[1].description.endswith("recorded 2026-11-29 03:00 UTC")


ECS = {"cluster": "c", "service": "s", "family": "f"}
FLY = {"app": "a", "org": "hotel"}


@pytest.mark.parametrize(("platform", "reason"), [
    ("ecs", "an ECS service's configuration lives in its task definition, which the rollback "
            "restores with the revision"),
    ("fly", "Fly secrets are write-only and each machine keeps its config through the "
            "rollback"),
])
def test_config_steps_say_plainly_what_a_platform_without_snapshots_does(
        platform: str, reason: str) -> None:
    steps = build_steps(service=_service(ecs=ECS, fly=FLY), platform=platform,
                        scope=["app", "config"], target_revision=TARGET, backup_path=None,
                        known_good=(T0, 41))
    assert [s.kind for s in steps] == [
        "snapshot_config", "app_rollback", "restore_config", "wait_rollout"]
    assert steps[0].description == f"Config snapshot: not provided by {platform} ({reason})"
    assert steps[2].description == f"Config restore: not provided by {platform} ({reason})"
    assert steps[2].params == {}  # nothing pinned: the step runs as skipped
    kubernetes = build_steps(service=_service(ecs=ECS, fly=FLY), platform="kubernetes",
                             scope=["config"], target_revision=TARGET, backup_path=None)
    assert kubernetes[0].description == "Snapshot current ConfigMaps/Secrets"


@pytest.mark.parametrize(("service", "scope"), [
    ({}, ["db"]),  # no database configured: db means nothing here
    ({}, ["external"]),  # no webhooks configured
    ({"webhooks": WEBHOOKS}, []),
])
def test_a_scope_with_nothing_to_do_is_refused(service: dict[str, Any],
                                               scope: list[str]) -> None:
    with pytest.raises(UserFacingError, match="produces no steps"):
        build_steps(service=_service(**service), platform="kubernetes", scope=scope,
                    target_revision=TARGET, backup_path="/backups/x.dump")


# ------------------------------------------------------------------ target_for
def test_each_platform_block_becomes_its_target() -> None:
    svc = _service(
        kubernetes={"namespace": "prod", "deployment": "svc", "context": "eu",
                    "config_maps": ["cm"], "secrets": ["s1", "s2"]},
        ecs={"cluster": "c", "service": "s", "family": "f", "region": "eu-west-1"},
        fly={"app": "a", "org": "hotel"})
    assert target_for(svc, "kubernetes") == Target("kubernetes", "prod", "svc",
                                                   {"context": "eu"}, ("cm",), ("s1", "s2"))
    assert target_for(svc, "ecs") == Target("ecs", "c", "s",
                                            {"family": "f", "region": "eu-west-1"})
    assert target_for(svc, "fly") == Target("fly", "hotel", "a",
                                            {"api_url": "https://api.machines.dev"})


def test_optional_target_options_appear_only_when_set() -> None:
    svc = _service(ecs={"cluster": "c", "service": "s", "family": "f",
                        "endpoint_url": "http://127.0.0.1:5000"})
    assert target_for(svc, "ecs").options == {"family": "f", "region": "us-east-1",
                                              "endpoint_url": "http://127.0.0.1:5000"}
    assert target_for(svc, "kubernetes").options == {}


def test_a_platform_the_service_does_not_run_on_is_refused() -> None:
    with pytest.raises(UserFacingError) as refused:
        target_for(_service(), "ecs")
    assert str(refused.value) == ("Platform `ecs` is not configured for this service "
                                  "(configured: kubernetes).")
