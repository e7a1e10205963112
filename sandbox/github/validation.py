"""The GitHub emulator's bodies and answers, checked against GitHub's published OpenAPI description.

githubkit generates pydantic models from github/rest-api-description
(``githubkit_schemas/versions.lock`` names the commit of
``descriptions-next/api.github.com/api.github.com.2022-11-28.json``); the request bodies the
emulator accepts must validate as the operation's ``requestBody`` model, and every answer
as the operation's response model, so the emulator cannot drift into a shape the real API
never uses. A pull request's ``head``/``base`` (full repository objects in the description)
are the one part the emulator abbreviates; the rest of a pull request is checked field by
field against the description's types.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from pydantic import BaseModel, TypeAdapter, ValidationError

BODIES = {  # emulator route -> the operation's requestBody model in the description
    "create_ref": "ReposOwnerRepoGitRefsPostBody",  # git/create-ref
    "put_contents": "ReposOwnerRepoContentsPathPutBody",  # repos/create-or-update-file-contents
    "create_pull": "ReposOwnerRepoPullsPostBody",  # pulls/create
}


class ShapeError(AssertionError):
    """The emulator produced an answer GitHub's description does not allow (a bug here)."""


@cache
def _model(name: str) -> type[BaseModel]:
    from githubkit_schemas.v2022_11_28 import models  # dev extra; imported when used

    model: type[BaseModel] = getattr(models, name)
    return model


def check_request(route: str, body: Any) -> str | None:
    """Why ``body`` is not a valid request body for ``route`` (GitHub's 422 message), or None."""
    name = BODIES.get(route)
    if name is None:
        return None
    if not isinstance(body, dict):
        return "Invalid request.\n\nFor 'links/0/schema', is not an object."
    model = _model(name)
    known = {f.alias or n for n, f in model.model_fields.items()}
    unknown = sorted(set(body) - known)
    if unknown:  # the description's bodies have additionalProperties: false
        return f"Invalid request.\n\n{unknown[0]!r} is not a permitted key."
    try:
        model.model_validate(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        return f"Invalid request.\n\nFor '{where}': {first['msg']}"
    return None


def check_response(method: str, path: str, status: int, answer: Any) -> None:
    """Raise ``ShapeError`` when ``answer`` is not what the description promises."""
    try:
        _check(method, path, status, answer)
    except ValidationError as exc:
        raise ShapeError(f"{method} {path} {status}: {exc}") from exc


def _check(method: str, path: str, status: int, answer: Any) -> None:
    if status == 422 and "errors" in answer:
        _model("ValidationError").model_validate(answer)
    elif status >= 400:
        _model("BasicError").model_validate(answer)
    elif "/git/ref" in path:
        _model("GitRef").model_validate(answer)
    elif "/contents/" in path and method == "PUT":
        _model("FileCommit").model_validate(answer)
    elif "/contents/" in path:
        _model("ContentFile").model_validate(answer)
    elif path.endswith("/pulls"):
        for pull in answer if isinstance(answer, list) else [answer]:
            _check_pull(pull)


def _check_pull(pull: dict[str, Any]) -> None:
    fields = _model("PullRequest").model_fields
    by_alias = {(f.alias or n): f for n, f in fields.items()}
    for key, value in pull.items():
        if key in ("head", "base"):
            for part in ("ref", "label", "sha"):
                TypeAdapter(str).validate_python(value[part])
            continue
        if key not in by_alias:
            raise ShapeError(f"a pull request has no field {key!r}")
        TypeAdapter(by_alias[key].annotation).validate_python(value)
