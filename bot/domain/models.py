"""Plain value types the core passes around: a rollback request, its steps, audit events."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from bot.domain.lifecycle import State
from platforms.base import Revision, Target


@dataclass(frozen=True)
class Rollback:
    id: int
    service: str
    platform: str
    severity: str
    policy_mode: str
    scope: list[str]
    reason: str
    state: State
    requester: str
    channel_id: str
    channel_name: str
    message_ts: str | None
    thread_ts: str | None
    current_revision: Revision | None
    target_revision: Revision
    target: Target
    checklist: dict[str, Any]
    assessment: dict[str, Any]
    approver: str | None
    break_glass: bool
    incident_commander: str | None
    incident_started_at: datetime | None
    created_at: datetime
    updated_at: datetime
    expires_at: datetime | None
    approved_at: datetime | None
    finished_at: datetime | None
    last_error: str | None
    plan_facts: dict[str, Any] = field(default_factory=dict)
    cancel_requested_by: str | None = None
    # The decision-matrix deadline: the severity's response time from the request, moved
    # once by "Hotfix in progress" (P1), who is ``hotfix_reported_by``. None: a row of a
    # version before deadlines.
    decision_due_at: datetime | None = None
    hotfix_reported_by: str | None = None
    # The release watcher's latest figures while the request is pending (watched services),
    # as stored: ``bot.domain.messages.WatchReading.from_json`` reads them (the model stays
    # below the messages it is the subject of).
    watch_reading: dict[str, Any] | None = None
    # Where ``incident_started_at`` came from (a key of ``bot.domain.incident_times.SOURCES``);
    # None: a row of a version before true times (the start, if any, was set by hand).
    incident_start_source: str | None = None
    # What a database restore lost: writes from the backup's timestamp to the restore,
    # recorded by the restore step. None: no restore ran.
    data_loss_from: datetime | None = None
    data_loss_to: datetime | None = None

    @property
    def ref(self) -> str:
        return f"RB-{self.id}"

    @property
    def destructive_steps(self) -> list[dict[str, Any]]:
        """The plan's destructive steps as pinned at request time (kind, description)."""
        return list(self.plan_facts.get("destructive") or [])

    @property
    def known_bad_target(self) -> dict[str, Any] | None:
        """Set when the pinned target is a known-bad revision (who marked it, when)."""
        mark = self.plan_facts.get("known_bad_target")
        return dict(mark) if mark else None


@dataclass(frozen=True)
class Step:
    rollback_id: int
    seq: int
    kind: str
    description: str
    destructive: bool
    status: str
    attempts: int
    params: dict[str, Any]
    result: dict[str, Any]
    error: str | None
    started_at: datetime | None
    finished_at: datetime | None


@dataclass(frozen=True)
class AuditEvent:
    id: int
    rollback_id: int | None
    at: datetime
    actor: str
    event: str
    from_state: str | None
    to_state: str | None
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class PlannedStep:
    """A step as the planner emits it, before it becomes a row."""

    kind: str
    description: str
    destructive: bool = False
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class KnownBad:
    """A revision some rollback moved away from: never the default target again."""

    service: str
    platform: str
    revision_id: str
    revision: dict[str, Any]
    rollback_id: int | None
    marked_at: datetime
    forward_fix: str | None = None  # the issue or pull request fixing it, once recorded
