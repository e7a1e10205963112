"""The domain's error tree, the root of the core's; ``UserFacingError`` is rendered once as an
ephemeral Slack message.

    RollbackBotError
    ├── ConfigError             broken rollback.yml: every problem with its key path (exit 2)
    ├── MissingSecret           a ``*_env`` variable a probe or webhook needs is unset or empty
    ├── UserFacingError         a refusal or bad input, shown to the user verbatim
    │   ├── UnknownService
    │   ├── ParseError          names the bad token of a slash command
    │   ├── NotAllowed          policy refusal (four-eyes, channel, role, state)
    │   └── NotFound
    └── InvalidTransition       the state machine refused (see bot.domain.lifecycle)

The other layers root their trees here too, one module each: ``bot.persistence.errors``,
``bot.integrations.errors``, ``bot.execution.errors`` and ``bot.aftercare.statuspage``
(the platforms have theirs in ``platforms.base``).
"""

from __future__ import annotations

from bot.domain.words import Part, Words, plain


class RollbackBotError(Exception):
    pass


class ConfigError(RollbackBotError):
    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        super().__init__(f"{source}: " + "; ".join(problems))


class MissingSecret(RollbackBotError):
    """A ``*_env`` variable a probe needs is unset or empty (its value is never shown)."""

    def __init__(self, env: str, header: str, state: str) -> None:
        super().__init__(f"env var {env} is {state} (needed for header {header})")
        self.env, self.header, self.state = env, header, state


class UserFacingError(RollbackBotError):
    """A message safe to show the user as-is (never contains secrets or tracebacks).

    Plain words; a person it names is a ``Mention`` and a rollback it links a
    ``RollbackLink`` among ``parts``, rendered by the Slack layer (``handlers.errors``).
    ``str()`` is the plain text."""

    def __init__(self, *parts: Part) -> None:
        self.parts: Words = tuple(parts)
        super().__init__(plain(self.parts))


class UnknownService(UserFacingError):
    def __init__(self, name: str, known: list[str]) -> None:
        self.name = name
        self.known = known
        listing = ", ".join(f"`{k}`" for k in known) or "none configured"
        super().__init__(f"Unknown service `{name}`. Known services: {listing}.")


class ParseError(UserFacingError):
    pass


class NotAllowed(UserFacingError):
    pass


class NotFound(UserFacingError):
    pass


class InvalidTransition(RollbackBotError):
    def __init__(self, state: str, event: str) -> None:
        self.state = state
        self.event = event
        super().__init__(f"cannot {event} a rollback that is {state}")
