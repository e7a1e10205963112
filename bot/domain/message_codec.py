"""A ``Message`` as JSON and back, so a thread line can wait in the outbox across a crash.

Messages (``bot.domain.messages``) are frozen dataclasses of plain facts: strings, numbers,
datetimes, tuples, ``Words`` parts (``bot.domain.words``) and a few nested dataclasses.
Each dataclass is written as ``{"$": "<class name>", field: value...}``; a datetime as
``{"$dt": iso}``; every JSON list reads back as a tuple (messages hold tuples, never lists).
Only classes from those two modules are read back, so a stored row can never name an
arbitrary class.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime
from enum import Enum
from typing import Any

from bot.domain import messages, words
from bot.domain.messages import Message

_CLASSES: dict[str, type] = {
    name: cls for module in (messages, words) for name, cls in vars(module).items()
    if isinstance(cls, type) and dataclasses.is_dataclass(cls)
}


def encode(value: Any) -> Any:
    """JSON-ready form of a message (or any fact inside one)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        name = type(value).__name__
        if _CLASSES.get(name) is not type(value):
            raise TypeError(f"{name} is not a message or words class")
        return {"$": name, **{f.name: encode(getattr(value, f.name))
                              for f in dataclasses.fields(value)}}
    if isinstance(value, datetime):
        return {"$dt": value.isoformat()}
    if isinstance(value, Enum):  # a StrEnum fact (e.g. Undo) keeps its value
        return value.value
    if isinstance(value, (tuple, list)):
        return [encode(v) for v in value]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    raise TypeError(f"cannot store a {type(value).__name__} in a message")


def decode(data: Any) -> Any:
    if isinstance(data, list):
        return tuple(decode(v) for v in data)
    if isinstance(data, dict):
        if "$dt" in data:
            return datetime.fromisoformat(data["$dt"])
        cls = _CLASSES.get(str(data.get("$")))
        if cls is None:
            raise ValueError(f"unknown message class {data.get('$')!r}")
        return cls(**{k: decode(v) for k, v in data.items() if k != "$"})
    return data


def decode_message(data: Any) -> Message:
    message = decode(data)
    if not isinstance(message, Message):
        raise ValueError(f"not a message: {type(message).__name__}")
    return message
