"""The state machine table: legal paths, refusals, and the active/terminal sets."""

from __future__ import annotations

import pytest

from bot.domain.errors import InvalidTransition
from bot.domain.lifecycle import (
    ACTIVE,
    TERMINAL,
    TRANSITIONS,
    Event,
    State,
    advance,
    allowed_events,
)


def test_happy_path() -> None:
    path = [Event.APPROVE, Event.START, Event.STEPS_DONE, Event.VERIFIED, Event.STABLE]
    state = State.PENDING_APPROVAL
    seen = [state]
    for ev in path:
        state = advance(state, ev)
        seen.append(state)
    assert seen == [State.PENDING_APPROVAL, State.APPROVED, State.EXECUTING, State.VERIFYING,
                    State.MONITORING, State.COMPLETED]


@pytest.mark.parametrize("state", sorted(TERMINAL))
def test_terminal_states_have_no_exit(state: State) -> None:
    assert allowed_events(state) == []
    with pytest.raises(InvalidTransition):
        advance(state, Event.APPROVE)


def test_cannot_approve_twice_or_execute_unapproved() -> None:
    with pytest.raises(InvalidTransition, match="cannot approve a rollback that is approved"):
        advance(State.APPROVED, Event.APPROVE)
    with pytest.raises(InvalidTransition):
        advance(State.PENDING_APPROVAL, Event.START)


def test_crash_in_destructive_step_needs_attention() -> None:
    assert advance(State.EXECUTING, Event.INTERRUPTED) == State.NEEDS_ATTENTION
    assert advance(State.NEEDS_ATTENTION, Event.RESOLVE) == State.FAILED


def test_every_target_is_a_state_and_sets_are_disjoint() -> None:
    assert all(isinstance(v, State) for v in TRANSITIONS.values())
    assert not (ACTIVE & TERMINAL)
    assert ACTIVE | TERMINAL == set(State)
