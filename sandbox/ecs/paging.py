"""What the ECS emulator's own list operations share (ListTaskDefinitions in listing.py,
ListServiceDeployments in deployments.py): AWS JSON errors, the ``maxResults`` range, and
keyset pages behind an opaque ``nextToken``.
"""

# From botocore data/ecs/2014-11-13/service-2.json: both requests take ``maxResults``
# "between 1 and 100" and a ``nextToken`` the caller passes back unchanged (its content is
# not documented, so ours is the base64 JSON of the last key listed: a row added between
# two pages neither repeats nor shifts the listing); both operations list
# InvalidParameterException among their errors. Errors go out as the JSON protocol's
# ``__type`` plus ``message``; the message wording is ours.

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

K = TypeVar("K", bound=tuple[Any, ...])
V = TypeVar("V")


class ApiError(Exception):
    """An AWS JSON error: ``code`` goes out as ``__type``."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class InvalidParameter(ApiError):
    """InvalidParameterException."""

    def __init__(self, message: str) -> None:
        super().__init__("InvalidParameterException", message)


def page_size(limit: Any, *, default: int, maximum: int) -> int:
    """``maxResults``: absent -> ``default``; outside 1..``maximum`` -> InvalidParameter."""
    if limit is None:
        return default
    if not 1 <= int(limit) <= maximum:
        raise InvalidParameter(f"maxResults must be between 1 and {maximum}.")
    return int(limit)


def encode_token(key: Sequence[Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(list(key)).encode()).decode()


def decode_token(token: str, parse: Callable[[Any], K]) -> K:
    """The key a token carries (``parse`` turns the decoded JSON list into it); a token we
    did not make is InvalidParameter."""
    try:
        return parse(json.loads(base64.urlsafe_b64decode(token.encode())))
    except (ValueError, TypeError, binascii.Error) as exc:
        raise InvalidParameter("The specified nextToken is invalid.") from exc


def keyset_page(rows: Sequence[tuple[K, V]], size: int, token: Any, *,
                parse: Callable[[Any], K], past: Callable[[K, K], bool]
                ) -> tuple[list[V], str | None]:
    """One page of ``rows`` (already in listing order, each ``(key, value)``): the rows
    ``past(key, after)`` the key ``token`` carries (all when no token), at most ``size`` of
    them, and the token for the next page (None on the last)."""
    if token:
        after = decode_token(str(token), parse)
        rows = [row for row in rows if past(row[0], after)]
    page, rest = rows[:size], rows[size:]
    return [value for _, value in page], encode_token(page[-1][0]) if rest else None
