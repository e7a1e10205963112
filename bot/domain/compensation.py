"""Compensation: what undoes a half-finished rollback, and when a human must decide instead.

A rollback that fails or is cancelled must not leave the service worse than it found it.
The one step with a safe inverse is ``scale_down`` (restore the recorded replica count).
Once the destructive database restore has started, bringing writers back automatically
could run the application against a database nobody has checked: the executor stops for
a human, with exact instructions and a "Scale back up" button for an approver. No other
step is undone: rolling the application "back" again would put the bad version back, and
the load balancer's health-check path follows the application (its step journals the old
path and the command that restores it, for a human).
The table in docs/architecture.md ("Compensation") is this module in words.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from bot.domain.models import Step
from platforms.base import PlatformSpec, Target


class Undo(StrEnum):
    NOTHING = "nothing"  # nothing to undo (never scaled down, or already back up)
    RESTORE_REPLICAS = "restore_replicas"  # the executor scales back to the recorded count
    HUMAN = "human"  # the database may have changed: a person decides


# What the plan records as each step's inverse (shown with the plan, read by people; the
# executor decides from the journal below). Steps without an entry have no safe inverse.
# ``set_health_check_path`` journals the path it found and the command that puts it back;
# like the application rollback it follows, it is never undone automatically.
INVERSES = {"scale_down": Undo.RESTORE_REPLICAS.value,
            "set_health_check_path": "restore_health_check_path (by hand, from the journal)"}


@dataclass(frozen=True)
class Compensation:
    undo: Undo
    replicas: int | None = None
    scale_down_seq: int | None = None
    reason: str = ""


def plan_compensation(steps: list[Step]) -> Compensation:
    """What must happen, given the journal, when execution stops before the end."""
    down = next((s for s in steps if s.kind == "scale_down"), None)
    if down is None or down.result.get("before") is None:
        return Compensation(Undo.NOTHING)  # the replica count is journaled before scaling
    if down.result.get("restored_to") is not None:
        return Compensation(Undo.NOTHING)
    up = next((s for s in steps if s.kind == "scale_up"), None)
    if up is not None and up.status == "done":
        return Compensation(Undo.NOTHING)
    replicas = int(down.result["before"])
    restore = next((s for s in steps if s.kind == "restore_db"), None)
    # "started" without a result is a crash somewhere inside the step: assume the worst.
    # "failed" counts only once pg_restore was launched (the pre-checks touch nothing).
    if restore is not None and (restore.status in ("started", "done")
                                or restore.result.get("begun")):
        return Compensation(Undo.HUMAN, replicas, down.seq,
                            "the database restore has started, so the database may no longer "
                            "match what the application expects")
    return Compensation(Undo.RESTORE_REPLICAS, replicas, down.seq)


def left_scaled_down(steps: list[Step]) -> Compensation | None:
    """The compensation still owed when this rollback left the service scaled down (the
    Scale back up button, the resolve guard), else None."""
    comp = plan_compensation(steps)
    return comp if comp.undo != Undo.NOTHING else None


def manual_scale_command(target: Target, replicas: int,
                         spec: PlatformSpec[Any] | None) -> str:
    """The command an operator runs to put the replicas back by hand: the platform's own
    (``spec``'s ``scale_command``, the target platform's spec from the configuration's
    registry), else a plain sentence (no spec: the platform left the configuration)."""
    if spec is not None and spec.scale_command is not None:
        return spec.scale_command(target, replicas)
    return f"scale {target.describe()} to {replicas} replicas"
