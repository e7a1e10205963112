"""The integrations layer's error tree: a system the runbook reads could not answer.

    RollbackBotError                      (bot.domain.errors)
    └── IntegrationError                  every message is safe to show: no password, no key
        ├── MailError(transient, code)    the SMTP relay refused or was unreachable (``mail``)
        ├── GithubError(transient, status) GitHub's REST API refused or was unreachable
        │                                 (``github``)
        ├── LoadBalancerError(transient, code)
        │                                 ELBv2 refused or was unreachable (``load_balancer``)
        ├── PrometheusError(query, status_code, error_type)
        │                                 unreachable, HTTP error, ``status: error`` or an
        │                                 answer of an unexpected shape (``prometheus``)
        └── DatabaseOperationError        the target service's database: connect, verify,
            │                             a pg_dump/pg_restore run (``pg_tools``)
            ├── PgToolNotFound            no pg_dump/pg_restore new enough for the server
            ├── BackupError               a dump could not be written (``target_database``)
            └── RestoreError              a restore could not run or did not finish

Raised by ``bot.integrations.prometheus``, ``bot.integrations.pg_tools``,
``bot.integrations.target_database`` and ``bot.integrations.load_balancer``; checks show them
as a failed check, and a plan step that meets one stops the rollback with the error's type
and message (a transient ``LoadBalancerError`` is retried first). ``bot.integrations.mail``
raises ``MailError`` to the stakeholder e-mail job, which retries a transient one later.
"""

from __future__ import annotations

from bot.domain.errors import RollbackBotError

__all__ = [
    "BackupError",
    "DatabaseOperationError",
    "GithubError",
    "IntegrationError",
    "LoadBalancerError",
    "MailError",
    "PgToolNotFound",
    "PrometheusError",
    "RestoreError",
]


class IntegrationError(RollbackBotError):
    """Base of the errors the clients of other systems raise; messages carry no secrets."""


class PrometheusError(IntegrationError):
    """A query could not be answered; ``error_type`` is Prometheus' own ``errorType``."""

    def __init__(
        self,
        message: str,
        *,
        query: str,
        status_code: int | None = None,
        error_type: str | None = None,
    ) -> None:
        self.query = query
        self.status_code = status_code
        self.error_type = error_type
        super().__init__(message)


class DatabaseOperationError(IntegrationError):
    """A backup/restore/verify step failed; the message is already free of passwords."""


class PgToolNotFound(DatabaseOperationError):
    pass


class BackupError(DatabaseOperationError):
    pass


class RestoreError(DatabaseOperationError):
    pass


class LoadBalancerError(IntegrationError):
    """The load balancer (ELBv2) refused or could not be reached; ``transient`` says whether
    another attempt may succeed (throttling, 5xx, a timeout) or a human must look (no such
    target group, access denied, a health check without a path)."""

    def __init__(self, message: str, *, transient: bool, code: str | None = None) -> None:
        self.transient = transient
        self.code = code
        super().__init__(message)


class MailError(IntegrationError):
    """The SMTP relay did not take a message. ``transient``: a 4xx reply (RFC 5321 4.2.1
    "Transient Negative Completion"), a dropped connection or a timeout, worth another
    attempt; otherwise a 5xx reply or a setup the relay will never accept (no STARTTLS, a
    certificate that does not verify, credentials unset). ``code`` is the reply code."""

    def __init__(self, message: str, *, transient: bool, code: int | None = None) -> None:
        self.transient = transient
        self.code = code
        super().__init__(message)


class GithubError(IntegrationError):
    """GitHub's REST API did not do what was asked. ``transient``: a 5xx, a 429 or a
    secondary rate limit, a dropped connection or a timeout, worth another attempt;
    otherwise 401 (bad token), 403 (no permission), 404 (no such repository, or one the
    token cannot see) or a 422 the bot cannot resolve. ``status`` is the HTTP status."""

    def __init__(self, message: str, *, transient: bool, status: int | None = None) -> None:
        self.transient = transient
        self.status = status
        super().__init__(message)
