"""Masking a Fly release's fly.toml definition for Slack: every literal value nested in it is
passed through ``mask_value`` by its key, and command lines (``processes``, ``cmd``,
``entrypoint``, ``exec``, ``deploy.release_command``, ...) are masked word by word, since a
credential is as often a command-line flag as a named setting.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from typing import Any

from platforms.base import mask_command, mask_value

# Keys whose value is a command line (flyctl internal/appconfig: [processes], [deploy]
# release_command, [experimental] cmd/entrypoint/exec, machine ``init`` cmd/entrypoint/exec).
COMMAND_KEYS = frozenset({"cmd", "command", "entrypoint", "exec", "release_command",
                          "processes"})


def masked_section(section: str, value: Any) -> Any:
    """One top-level fly.toml section (``build``, ``processes``, ``deploy``...) masked."""
    return masked(section, value, command=section in COMMAND_KEYS)


def masked(key: str, value: Any, *, command: bool = False) -> Any:
    """``value`` with every nested literal masked: strings by their own key (or, inside a
    command, word by word), mappings and lists recursively; numbers and booleans as they
    are."""
    if isinstance(value, Mapping):
        return {str(k): masked(str(k), v, command=command or str(k) in COMMAND_KEYS)
                for k, v in value.items()}
    if isinstance(value, list):
        if command and all(isinstance(item, str) for item in value):
            return mask_command([str(item) for item in value], key)
        return [masked(key, item, command=command) for item in value]
    if isinstance(value, str):
        if command:
            return " ".join(mask_command(_split(value), key))
        return mask_value(key, value)
    return value


def _split(line: str) -> list[str]:
    try:
        return shlex.split(line)
    except ValueError:  # unbalanced quotes: words as the shell would not, but never raw
        return line.split()
