"""The execution layer's error tree: how a plan step fails, and the executor's own stops.

A step handler (``bot.execution.steps``) says how it failed by type, like kopf's
``TemporaryError(delay=...)`` and ``PermanentError``; the executor decides retry vs. stop
by type, treating these exactly like the platform's ``TransientPlatformError`` and
``PermanentPlatformError`` (``platforms.base``), which adapters raise and steps let through::

    RollbackBotError                        (bot.domain.errors)
    └── ExecutionError
        ├── StepError                       a step's own failure (not the platform's)
        │   ├── TemporaryStepError(retry_after)
        │   │                               worth retrying with backoff: the executor's
        │   │                               retry policy (``bot.execution.retry``), the same
        │   │                               Retry-After cap and durable attempt budget
        │   └── PermanentStepError          stop: compensate and hand over
        └── the executor's control flow, raised and caught in ``bot.execution.executor``
            ├── StepFailed                  the step is over; its error goes to the journal
            │                               and the thread
            ├── CancelRequested             Cancel was pressed: stop before acting
            ├── StillWaiting                a waiting step's check found the platform still
            │                               busy: park the rollback, free the worker
            ├── LeaseLost                   another executor owns the rollback now
            └── HandedOverToHuman           compensation failed too: needs_attention

Anything else a step raises (an integration's ``DatabaseOperationError``, a bug) stops
the rollback too, named by its type, and never loops.
"""

from __future__ import annotations

from bot.domain.errors import RollbackBotError

__all__ = [
    "CancelRequested",
    "ExecutionError",
    "HandedOverToHuman",
    "LeaseLost",
    "PermanentStepError",
    "StepError",
    "StepFailed",
    "StillWaiting",
    "TemporaryStepError",
]


class ExecutionError(RollbackBotError):
    """Base of the execution layer's errors."""


class StepError(ExecutionError):
    """A plan step failed for a reason of its own (a missing DSN, a webhook's answer, a
    service that did not stop); the message is what the thread says."""


class TemporaryStepError(StepError):
    """Worth retrying; ``retry_after`` is a hint in seconds (None = use backoff), bounded
    by the retry policy exactly like a platform's Retry-After."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class PermanentStepError(StepError):
    """Retrying will not help: the rollback stops, compensates and hands over."""


class StepFailed(ExecutionError):
    """The step is over; the message is its error as journaled and said in the thread."""


class CancelRequested(ExecutionError):
    """Someone pressed Cancel while this rollback was executing: stop before acting."""


class StillWaiting(ExecutionError):
    """A waiting step (``wait_rollout``) looked once and the platform is still busy: the
    step is not over and did not fail. The executor journals it ``waiting``, releases the
    rollback until its next check and takes other work; ``elapsed`` is how long the step
    has waited (from its journaled start), which spaces the checks out."""

    def __init__(self, message: str, *, elapsed: float) -> None:
        super().__init__(message)
        self.elapsed = elapsed


class LeaseLost(ExecutionError):
    """Another executor owns this rollback now; touch nothing, it resumes from the journal."""


class HandedOverToHuman(ExecutionError):
    """Compensation failed too: the rollback is needs_attention now, nothing more to say."""
