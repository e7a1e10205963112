"""The rollback state machine as data: states, events, one transition table, pure ``advance()``.

Persistence (``bot.persistence.store``) applies a transition with compare-and-set on the current
state and appends the audit event in the same transaction, so two replicas (or a double
click) can never both move a rollback out of the same state.
"""

from __future__ import annotations

from enum import StrEnum

from bot.domain.errors import InvalidTransition


class State(StrEnum):
    PENDING_APPROVAL = "pending_approval"
    APPROVED = "approved"
    EXECUTING = "executing"
    VERIFYING = "verifying"
    MONITORING = "monitoring"
    COMPLETED = "completed"
    UNSTABLE = "unstable"
    VERIFICATION_FAILED = "verification_failed"
    FAILED = "failed"
    NEEDS_ATTENTION = "needs_attention"
    REJECTED = "rejected"
    CANCELLED = "cancelled"
    EXPIRED = "expired"


class Event(StrEnum):
    APPROVE = "approve"
    REJECT = "reject"
    CANCEL = "cancel"
    EXPIRE = "expire"
    START = "start"  # an executor claimed it
    STEPS_DONE = "steps_done"
    STEP_FAILED = "step_failed"
    INTERRUPTED = "interrupted"  # crash inside a destructive step
    HAND_OVER = "hand_over"  # a step failed where undoing it automatically could do harm
    VERIFIED = "verified"
    VERIFICATION_FAILED = "verification_failed"
    STABLE = "stable"
    REGRESSION = "regression"
    RESOLVE = "resolve"  # a human closes a rollback that needed attention
    RETRY_VERIFICATION = "retry_verification"  # run the verification suite again
    RESUME_MONITORING = "resume_monitoring"  # a regression was a blip: watch a new window


S, E = State, Event

TRANSITIONS: dict[tuple[State, Event], State] = {
    (S.PENDING_APPROVAL, E.APPROVE): S.APPROVED,
    (S.PENDING_APPROVAL, E.REJECT): S.REJECTED,
    (S.PENDING_APPROVAL, E.CANCEL): S.CANCELLED,
    (S.PENDING_APPROVAL, E.EXPIRE): S.EXPIRED,
    (S.APPROVED, E.CANCEL): S.CANCELLED,
    (S.APPROVED, E.START): S.EXECUTING,
    (S.EXECUTING, E.STEPS_DONE): S.VERIFYING,
    (S.EXECUTING, E.STEP_FAILED): S.FAILED,
    (S.EXECUTING, E.INTERRUPTED): S.NEEDS_ATTENTION,
    (S.EXECUTING, E.HAND_OVER): S.NEEDS_ATTENTION,
    # Only the executor applies this one, after it stopped and compensated (a person's
    # Cancel on an executing rollback sets cancel_requested_by instead).
    (S.EXECUTING, E.CANCEL): S.CANCELLED,
    (S.VERIFYING, E.VERIFIED): S.MONITORING,
    (S.VERIFYING, E.VERIFICATION_FAILED): S.VERIFICATION_FAILED,
    (S.MONITORING, E.STABLE): S.COMPLETED,
    (S.MONITORING, E.REGRESSION): S.UNSTABLE,
    (S.NEEDS_ATTENTION, E.RESOLVE): S.FAILED,
    (S.UNSTABLE, E.RESOLVE): S.COMPLETED,
    (S.VERIFICATION_FAILED, E.RESOLVE): S.FAILED,
    (S.VERIFICATION_FAILED, E.RETRY_VERIFICATION): S.VERIFYING,
    (S.UNSTABLE, E.RESUME_MONITORING): S.MONITORING,
}

TERMINAL = frozenset(
    {S.COMPLETED, S.FAILED, S.REJECTED, S.CANCELLED, S.EXPIRED}
)
# States in which the service is "taken": a second request gets a link to this one.
ACTIVE = frozenset(
    {
        S.PENDING_APPROVAL,
        S.APPROVED,
        S.EXECUTING,
        S.VERIFYING,
        S.MONITORING,
        S.NEEDS_ATTENTION,
        S.UNSTABLE,
        S.VERIFICATION_FAILED,
    }
)
# States an executor may claim (a crashed executing rollback is resumed by lease expiry).
CLAIMABLE = frozenset({S.APPROVED, S.EXECUTING, S.VERIFYING})


def advance(state: State | str, event: Event | str) -> State:
    """The next state, or ``InvalidTransition``. Pure: no I/O, no clock."""
    key = (State(state), Event(event))
    try:
        return TRANSITIONS[key]
    except KeyError:
        raise InvalidTransition(str(key[0]), str(key[1])) from None


def allowed_events(state: State | str) -> list[Event]:
    st = State(state)
    return [ev for (s, ev) in TRANSITIONS if s == st]
