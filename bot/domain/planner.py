"""Builds the pinned plan: which revision to return to and the ordered steps to get there.

Everything is resolved here, once, when the request is made. Execution reads the stored
plan and never asks the platform for "previous" again (that would flip a resumed
rollback back onto the bad version).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from bot.domain.compensation import INVERSES
from bot.domain.config import ServiceConfig
from bot.domain.errors import UserFacingError
from bot.domain.models import KnownBad, PlannedStep
from platforms.base import Capability, Revision, Target


def target_for(service: ServiceConfig, platform: str) -> Target:
    """The platform-neutral ``Target`` for a service's configured section (its platform
    spec turns the block into one)."""
    block = service.platform_config(platform)
    if block is None:
        raise UserFacingError(
            f"Platform `{platform}` is not configured for this service "
            f"(configured: {', '.join(service.platforms())})."
        )
    return service.platform_spec(platform).target(block)


@dataclass(frozen=True)
class RevisionChoice:
    """The pinned pair and why: what runs now, what to return to, and the marks seen."""

    current: Revision
    target: Revision
    target_known_bad: KnownBad | None  # only with an explicit ``--to`` (needs an override)
    ran_before_current: bool  # the target predates the running release (not just a number)

    @property
    def never_deployed(self) -> bool:
        """The target was registered but, as the platform knows, never ran on this target
        (only an explicit ``--to`` picks one)."""
        return self.target.ran is False


def _ran_before(candidate: Revision, current: Revision) -> bool:
    """Did ``candidate`` run before ``current`` became current? Platforms number revisions
    in the order they were *rolled out* (Kubernetes gives a reused revision max+1), so a
    lower number is the evidence there is; creation times are not (a reused ReplicaSet keeps
    its old one). What a lower number cannot tell, the known-bad marks do."""
    return candidate.number < current.number


def choose_revision(history: Sequence[Revision], to: int | None,
                    known_bad: Mapping[str, KnownBad] | None = None) -> RevisionChoice:
    """The current revision and the rollback target. ``to`` is a revision number; None
    means the newest revision that ran before the current one, is not known-bad and is not
    known never to have run (``Revision.ran is False``)."""
    bad = known_bad or {}
    current = next((r for r in history if r.current), None)
    if current is None:
        raise UserFacingError("The platform reports no current revision; nothing to roll back.")
    if to is not None:
        match = next((r for r in history if r.number == to), None)
        if match is None:
            known = ", ".join(str(r.number) for r in history) or "none"
            raise UserFacingError(
                f"Revision {to} is not in the history (known revisions: {known})."
            )
        if match.current:
            raise UserFacingError(f"Revision {to} is already the running revision.")
        return RevisionChoice(current, match, bad.get(match.id), _ran_before(match, current))
    # A revision the platform knows never ran here (``ran is False``: registered, never
    # deployed) is no "previous stable version": returning to it ships an untested build.
    # An explicit ``--to`` may still name one; the plan warns (``never_deployed``).
    candidates = [r for r in history if not r.current and r.id not in bad
                  and r.ran is not False and _ran_before(r, current)]
    if not candidates:
        skipped = [f"{r.label()} is known-bad" for r in history
                   if not r.current and r.id in bad]
        skipped += [f"{r.label()} never ran successfully here" for r in history
                    if not r.current and r.id not in bad and r.ran is False
                    and _ran_before(r, current)]
        why = " (" + ", ".join(skipped) + ")" if skipped else ""
        raise UserFacingError(
            f"No earlier revision that is not known-bad is left in the history{why}. "
            "Name one with `--to REV` (a known-bad one needs an approver's override) or fix "
            "forward.")
    return RevisionChoice(current, max(candidates, key=lambda r: r.number), None, True)


def build_steps(
    *, service: ServiceConfig, platform: str, scope: Sequence[str], target_revision: Revision,
    backup_path: str | None, known_good: tuple[datetime, int | None] | None = None,
    backup_size: int | None = None,
) -> list[PlannedStep]:
    """The runbook's order: stop writers, back up, restore, verify, roll app, restart,
    wait for the rollout (confirming what runs), then the load balancer's health check.

    On a ``platform`` without config snapshots the two config steps say so, with its spec's
    reason (they run as skipped, see ``bot/execution/steps.py``)."""
    steps: list[PlannedStep] = []
    with_db = "db" in scope and service.database is not None
    with_config = "config" in scope
    with_app = "app" in scope or with_db
    spec = service.platform_specs.get(platform)
    no_snapshots = (None if spec is None or spec.supports(Capability.CONFIG_SNAPSHOTS)
                    else spec.refuse(Capability.CONFIG_SNAPSHOTS).reason)
    if with_config:
        steps.append(PlannedStep("snapshot_config", (
            "Snapshot current ConfigMaps/Secrets" if no_snapshots is None
            else f"Config snapshot: not provided by {platform} ({no_snapshots})")))
    if with_db:
        if not backup_path:  # never plan a restore without a verified backup pinned
            raise UserFacingError("A database rollback needs a verified backup pinned in "
                                  "the plan; none was found.")
        steps.append(PlannedStep(
            "scale_down", "Scale the application to 0 and wait until nothing runs "
            "(record replicas)", params={"inverse": INVERSES["scale_down"]}))
        steps.append(PlannedStep("backup_db", "Back up the current database state"))
        steps.append(PlannedStep(
            "restore_db", f"Restore the database from {Path(backup_path).name}",
            destructive=True, params={"backup_path": backup_path, "backup_size": backup_size},
        ))
        steps.append(PlannedStep("verify_db", "Verify database connectivity and integrity"))
    if with_app:
        steps.append(PlannedStep(
            "app_rollback", f"Roll the application back to {target_revision.label()}",
            params={"revision": target_revision.to_dict()},
        ))
    if with_config:
        if no_snapshots is not None:
            steps.append(PlannedStep(
                "restore_config", f"Config restore: not provided by {platform} ({no_snapshots})"))
        elif known_good is None:
            steps.append(PlannedStep("restore_config", "Restore the known-good configuration "
                                     "(none recorded yet: will be skipped)"))
        else:
            recorded_at, source = known_good
            origin = f" by RB-{source}" if source else ""
            steps.append(PlannedStep(
                "restore_config", f"Restore the known-good configuration recorded "
                f"{recorded_at:%Y-%m-%d %H:%M} UTC{origin}",
                params={"known_good_recorded_at": recorded_at.isoformat()}))
    if with_db:
        steps.append(PlannedStep("scale_up", "Scale the application back to its recorded size"))
    if with_app:
        steps.append(PlannedStep("wait_rollout", "Wait for the rollout to complete"))
    lb = service.load_balancer
    if with_app and lb is not None:
        # Only after ``wait_rollout`` confirmed that the pinned revision runs: if the
        # rollout does not take (ECS's circuit breaker reverting to the bad version, another
        # actor's edit), the rollback stops there and the target group keeps checking the
        # path the running version serves. Set before, it would check a path the running
        # version may not serve, the load balancer would mark its units unhealthy and the
        # platform would replace them: a worse outage than the one being rolled back.
        name = lb.target_group_arn.split(":")[5].split("/")[1]
        steps.append(PlannedStep(
            "set_health_check_path", f"Point the load balancer's health check "
            f"({name}) at {lb.health_check_path}",
            params={"target_group_arn": lb.target_group_arn,
                    "health_check_path": lb.health_check_path, "region": lb.region_name(),
                    "inverse": INVERSES["set_health_check_path"]}))
    if "external" in scope and service.webhooks:
        names = ", ".join(w.name for w in service.webhooks)
        steps.append(PlannedStep("repoint_webhooks", f"Re-point webhooks ({names})"))
    if not steps:
        raise UserFacingError("The requested scope produces no steps for this service.")
    return steps
