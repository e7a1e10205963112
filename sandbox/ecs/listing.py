"""ListTaskDefinitions as ECS answers it (order, ``sort``, ``maxResults``/``nextToken``
pages, exact family filter), served in front of moto, which returns every ARN in one page in
registration order and ignores ``sort``, ``maxResults`` and ``nextToken``.
"""

# What ECS does, from botocore data/ecs/2014-11-13/service-2.json, ListTaskDefinitionsRequest:
#   * sort ASC (default): "listed lexicographically by family name and in ascending numerical
#     order by revision so that the newest task definitions in a family are listed last";
#     DESC "reverses the sort order on family name and revision".
#   * familyPrefix: "The full family name ... limits the listed task definitions to task
#     definition revisions that belong to that family" (an exact family, not a prefix).
#   * status: ACTIVE by default; INACTIVE and DELETE_IN_PROGRESS on request (shape
#     TaskDefinitionStatus).
#   * maxResults: "between 1 and 100. If this parameter isn't used, then ListTaskDefinitions
#     returns up to 100 results and a nextToken value if applicable." The token is opaque; ours
#     encodes the last (family, revision) listed, so a revision registered between two pages
#     neither repeats nor shifts the listing (keyset paging).
# botocore's paginator for ListTaskDefinitions (paginators-1.json: input_token nextToken,
# output_token nextToken, limit_key maxResults) drives these pages unchanged.
# Errors are AWS JSON errors (``__type``): ECS answers a bad parameter with
# InvalidParameterException (service-2.json lists it among ListTaskDefinitions' errors); the
# message wording is ours.

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterable
from typing import Any

from .faults import TARGET_PREFIX, Environ, StartResponse, WsgiApp
from .paging import ApiError, InvalidParameter, keyset_page, page_size

DEFAULT_PAGE = 100
OPERATION = "ListTaskDefinitions"


def list_task_definitions(definitions: Iterable[Any], body: dict[str, Any]) -> dict[str, Any]:
    """One ListTaskDefinitions page over moto's ``TaskDefinition`` objects (``family``,
    ``revision``, ``status``, ``arn``)."""
    family = body.get("familyPrefix")
    status = str(body.get("status") or "ACTIVE")
    order = str(body.get("sort") or "ASC")
    if order not in ("ASC", "DESC"):
        raise InvalidParameter(f"sort must be ASC or DESC, not {order}")
    size = page_size(body.get("maxResults"), default=DEFAULT_PAGE, maximum=DEFAULT_PAGE)
    keys = sorted(((d.family, int(d.revision)), d.arn) for d in definitions
                  if (family is None or d.family == family) and d.status == status)
    if order == "DESC":
        keys.reverse()
    arns, token = keyset_page(
        keys, size, body.get("nextToken"), parse=_key,
        past=(lambda key, after: key > after) if order == "ASC"
        else (lambda key, after: key < after))
    answer: dict[str, Any] = {"taskDefinitionArns": arns}
    if token is not None:
        answer["nextToken"] = token
    return answer


def _key(decoded: Any) -> tuple[str, int]:
    family, revision = decoded
    return str(family), int(revision)


def serve_listing(app: WsgiApp, definitions: Callable[[], Iterable[Any]]) -> WsgiApp:
    """WSGI middleware: answer ListTaskDefinitions from ``definitions()`` (moto's backend),
    pass every other request to ``app``."""

    def middleware(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        if str(environ.get("HTTP_X_AMZ_TARGET") or "") != TARGET_PREFIX + OPERATION:
            return app(environ, start_response)
        length = int(environ.get("CONTENT_LENGTH") or 0)
        raw = environ["wsgi.input"].read(length) if length else b""
        environ["wsgi.input"] = io.BytesIO(raw)
        try:
            body = json.loads(raw) if raw else {}
            payload = list_task_definitions(definitions(), body if isinstance(body, dict)
                                            else {})
            status = "200 OK"
        except ApiError as exc:
            payload, status = {"__type": exc.code, "message": str(exc)}, "400 Bad Request"
        except (ValueError, TypeError) as exc:
            payload = {"__type": "InvalidParameterException", "message": str(exc)}
            status = "400 Bad Request"
        data = json.dumps(payload).encode()
        start_response(status, [("Content-Type", "application/x-amz-json-1.1"),
                                ("Content-Length", str(len(data))),
                                ("x-amzn-RequestId", "00000000-0000-0000-0000-000000000001")])
        return [data]

    return middleware
