"""The persistence layer's error tree: what our own PostgreSQL refused on purpose.

    RollbackBotError                 (bot.domain.errors)
    └── PersistenceError
        ├── StaleState(current)              a compare-and-set lost: someone moved the
        │                                    rollback first; ``current`` is the row as it is
        ├── ActiveRollbackExists(existing)   the service already has an active rollback
        └── DatabaseUnavailable              a lease write could not reach PostgreSQL in
                                             time: whether the lease still holds is unknown

Raised by ``bot.persistence.store``; the use cases and the executor turn them into an
"already …" refusal or a quiet stop.
"""

from __future__ import annotations

from bot.domain.errors import RollbackBotError
from bot.domain.models import Rollback

__all__ = ["ActiveRollbackExists", "DatabaseUnavailable", "PersistenceError", "StaleState"]


class PersistenceError(RollbackBotError):
    """Base of the errors the stores raise on purpose (not the driver's ``psycopg.Error``)."""


class ActiveRollbackExists(PersistenceError):
    def __init__(self, existing: Rollback) -> None:
        super().__init__(f"{existing.ref} is already active for {existing.service}")
        self.existing = existing


class StaleState(PersistenceError):
    """The rollback was no longer in the expected state: someone else moved it first."""

    def __init__(self, current: Rollback) -> None:
        super().__init__(f"{current.ref} is {current.state}")
        self.current = current


class DatabaseUnavailable(PersistenceError):
    """A lease write (``Store.heartbeat``, ``park``, ``release``) could not reach
    PostgreSQL within its pool's timeout; the executor refuses to write on such a lease."""
