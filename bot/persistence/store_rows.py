"""Row mapping for the store: database rows to ``Rollback`` values and back (the errors a
compare-and-set or a uniqueness check raises are in ``bot.persistence.errors``)."""

from __future__ import annotations

from typing import Any

from bot.domain.lifecycle import State
from bot.domain.models import Rollback
from bot.observability.scrub import scrub_optional
from platforms.base import Revision, Target


def target_to_json(t: Target) -> dict[str, Any]:
    return {
        "platform": t.platform,
        "scope": t.scope,
        "name": t.name,
        "options": dict(t.options),
        "config_maps": list(t.config_maps),
        "secrets": list(t.secrets),
    }


def target_from_json(d: dict[str, Any]) -> Target:
    return Target(
        platform=d["platform"],
        scope=d["scope"],
        name=d["name"],
        options=dict(d.get("options") or {}),
        config_maps=tuple(d.get("config_maps") or ()),
        secrets=tuple(d.get("secrets") or ()),
    )


def rollback_from_row(row: dict[str, Any]) -> Rollback:
    cur = row["current_revision"]
    return Rollback(
        id=row["id"],
        service=row["service"],
        platform=row["platform"],
        severity=row["severity"],
        policy_mode=row["policy_mode"],
        scope=list(row["scope"]),
        reason=row["reason"],
        state=State(row["state"]),
        requester=row["requester"],
        channel_id=row["channel_id"],
        channel_name=row["channel_name"],
        message_ts=row["message_ts"],
        thread_ts=row["thread_ts"],
        current_revision=Revision.from_dict(cur) if cur else None,
        target_revision=Revision.from_dict(row["target_revision"]),
        target=target_from_json(row["target"]),
        checklist=dict(row["checklist"] or {}),
        assessment=dict(row["assessment"] or {}),
        approver=row["approver"],
        break_glass=row["break_glass"],
        incident_commander=row["incident_commander"],
        incident_started_at=row["incident_started_at"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        expires_at=row["expires_at"],
        approved_at=row["approved_at"],
        finished_at=row["finished_at"],
        last_error=scrub_optional(row["last_error"]),  # rows written before scrubbing too
        plan_facts=dict(row.get("plan_facts") or {}),
        cancel_requested_by=row.get("cancel_requested_by"),
        decision_due_at=row.get("decision_due_at"),
        hotfix_reported_by=row.get("hotfix_reported_by"),
        watch_reading=dict(row["watch_reading"]) if row.get("watch_reading") else None,
        incident_start_source=row.get("incident_start_source"),
        data_loss_from=row.get("data_loss_from"),
        data_loss_to=row.get("data_loss_to"),
    )
