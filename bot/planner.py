"""Builds the pinned plan: which revision to return to and the ordered steps to get there.

Everything is resolved here, once, when the request is made. Execution reads the stored
plan and never asks the platform for "previous" again (that would flip a resumed
rollback back onto the bad version).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from bot.config import ServiceConfig
from bot.errors import UserFacingError
from bot.models import PlannedStep
from platforms.base import Revision, Target


def target_for(service: ServiceConfig, platform: str) -> Target:
    """The platform-neutral ``Target`` for a service's configured section."""
    if platform == "kubernetes" and service.kubernetes:
        k = service.kubernetes
        opts = {k2: v for k2, v in (("context", k.context), ("kubeconfig", k.kubeconfig)) if v}
        return Target("kubernetes", k.namespace, k.deployment, opts,
                      tuple(k.config_maps), tuple(k.secrets))
    if platform == "ecs" and service.ecs:
        e = service.ecs
        opts = {"family": e.family, "region": e.region}
        if e.endpoint_url:
            opts["endpoint_url"] = e.endpoint_url
        return Target("ecs", e.cluster, e.service, opts)
    if platform == "fly" and service.fly:
        return Target("fly", service.fly.org, service.fly.app, {"api_url": service.fly.api_url})
    if platform == "fake" and service.fake is not None:
        return Target("fake", str(service.fake.get("scope", "default")),
                      str(service.fake.get("name", "app")))
    raise UserFacingError(
        f"Platform `{platform}` is not configured for this service "
        f"(configured: {', '.join(service.platforms())})."
    )


def choose_revision(history: Sequence[Revision], to: int | None) -> tuple[Revision, Revision]:
    """(current, target). ``to`` is a revision number; None means the previous one."""
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
        return current, match
    older = [r for r in history if not r.current and r.number < current.number]
    if not older:
        raise UserFacingError("No previous revision in the history to roll back to.")
    return current, max(older, key=lambda r: r.number)


def build_steps(
    *, service: ServiceConfig, scope: Sequence[str], target_revision: Revision,
    backup_path: str | None, known_good: tuple[datetime, int | None] | None = None,
) -> list[PlannedStep]:
    """The runbook's order: stop writers, back up, restore, verify, roll app, restart."""
    steps: list[PlannedStep] = []
    with_db = "db" in scope and service.database is not None
    with_config = "config" in scope
    with_app = "app" in scope or with_db
    if with_config:
        steps.append(PlannedStep("snapshot_config", "Snapshot current ConfigMaps/Secrets"))
    if with_db:
        steps.append(PlannedStep("scale_down", "Scale the application to 0 (record replicas)"))
        steps.append(PlannedStep("backup_db", "Back up the current database state"))
        steps.append(PlannedStep(
            "restore_db", f"Restore the database from {backup_path or 'the latest backup'}",
            destructive=True, params={"backup_path": backup_path},
        ))
        steps.append(PlannedStep("verify_db", "Verify database connectivity and integrity"))
    if with_app:
        steps.append(PlannedStep(
            "app_rollback", f"Roll the application back to {target_revision.label()}",
            params={"revision": target_revision.to_dict()},
        ))
    if with_config:
        if known_good is None:
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
    if "external" in scope and service.webhooks:
        names = ", ".join(w.name for w in service.webhooks)
        steps.append(PlannedStep("repoint_webhooks", f"Re-point webhooks ({names})"))
    if not steps:
        raise UserFacingError("The requested scope produces no steps for this service.")
    return steps
