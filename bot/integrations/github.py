"""GitHub's REST API: file a document on its own branch and open a pull request, exactly once.

``publish`` runs the four calls of GitHub's documented flow (docs.github.com/en/rest):
read the base branch's commit (``GET /repos/{o}/{r}/git/ref/heads/{base}``), create the
branch (``POST .../git/refs``), create the file on it (``PUT .../contents/{path}``) and open
the pull request (``POST .../pulls``). The branch name is the caller's, fixed per document,
so every call may be repeated after a crash: an existing branch (422 "Reference already
exists"), file (read first; a 422 "sha wasn't supplied" means it appeared meanwhile) or
pull request (listed by ``head=owner:branch`` before opening; 422 "A pull request already
exists") is reused, never duplicated. The token travels only in the Authorization header:
it is never logged, and error messages carry GitHub's message, never the request.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx

from bot.integrations.errors import GithubError

log = logging.getLogger(__name__)

API_VERSION = "2022-11-28"  # X-GitHub-Api-Version: the REST API version the calls follow
TIMEOUT_SECONDS = 15


@dataclass(frozen=True)
class PullRequest:
    number: int
    url: str  # html_url: what people open
    reused: bool  # found, not opened by this call


@dataclass(frozen=True)
class Document:
    path: str  # in the repository, e.g. docs/post-mortems/2026-11-30-app-rb-12.md
    content: bytes
    branch: str  # the document's own branch, one per document
    title: str  # the pull request's title; the commit message too
    body: str  # the pull request's description


def _no_crash(_where: str) -> None:
    return None


class GithubClient:
    def __init__(self, *, api_url: str, repository: str, token: str,
                 http: httpx.Client | None = None,
                 transport: httpx.BaseTransport | None = None) -> None:
        """``http``: the process's client (bot.integrations.http_client), not closed here;
        without one (or with a test's ``transport``) a client of its own. The base URL,
        headers and timeout go with each request, so a shared client carries no token."""
        self.repository = repository
        self.owner = repository.split("/", 1)[0]
        self._base = api_url.rstrip("/")
        self._headers = {"Accept": "application/vnd.github+json",
                         "X-GitHub-Api-Version": API_VERSION,
                         "Authorization": f"Bearer {token}",
                         "User-Agent": "rollback-bot"}  # GitHub refuses requests without one
        self._owns_http = http is None or transport is not None
        if http is None or transport is not None:
            http = httpx.Client(transport=transport)
        self._http = http

    def close(self) -> None:
        if self._owns_http:
            self._http.close()

    def __enter__(self) -> GithubClient:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ the flow
    def publish(self, doc: Document, *, base: str,
                crash_point: Callable[[str], None] = _no_crash) -> PullRequest:
        """``doc`` on its branch and a pull request of it into ``base``; repeatable."""
        existing = self._find_pull(doc.branch)
        if existing is not None:
            return existing
        base_sha = self._base_sha(base)
        self._create_branch(doc.branch, base_sha)
        crash_point("branch")  # a crash test may die here: branch made, no file, no PR
        self._create_file(doc)
        crash_point("file")
        return self._open_pull(doc, base=base)

    def _base_sha(self, base: str) -> str:
        answer = self._call("GET", f"/git/ref/heads/{quote(base, safe='/')}", what="read "
                            f"branch {base!r}")
        return str(answer["object"]["sha"])

    def _create_branch(self, branch: str, sha: str) -> None:
        try:
            self._call("POST", "/git/refs", json={"ref": f"refs/heads/{branch}", "sha": sha},
                       what=f"create branch {branch!r}")
        except GithubError as exc:
            if exc.status == 422 and "already exists" in str(exc):
                log.info("github: branch %s exists already; reusing it", branch)
                return
            raise

    def _create_file(self, doc: Document) -> None:
        path = quote(doc.path, safe="/")
        try:
            self._call("GET", f"/contents/{path}", params={"ref": doc.branch},
                       what=f"read {doc.path}")
            log.info("github: %s exists on %s already; keeping it", doc.path, doc.branch)
            return  # written by an earlier attempt (or edited since): never replaced
        except GithubError as exc:
            if exc.status != 404:
                raise
        try:
            self._call("PUT", f"/contents/{path}", what=f"create {doc.path}", json={
                "message": doc.title, "branch": doc.branch,
                "content": base64.b64encode(doc.content).decode("ascii")})
        except GithubError as exc:
            # 422 "sha wasn't supplied": the file appeared between the read and the write
            # (another replica's attempt); it is this document's, keep it.
            if exc.status == 422 and "sha" in str(exc):
                return
            raise

    def _open_pull(self, doc: Document, *, base: str) -> PullRequest:
        try:
            answer = self._call("POST", "/pulls", what="open the pull request", json={
                "title": doc.title, "head": doc.branch, "base": base, "body": doc.body})
        except GithubError as exc:
            if exc.status == 422 and "already exists" in str(exc):
                found = self._find_pull(doc.branch)
                if found is not None:
                    return found
            raise
        return PullRequest(int(answer["number"]), str(answer["html_url"]), reused=False)

    def _find_pull(self, branch: str) -> PullRequest | None:
        """The pull request of ``branch`` in any state (a closed one is not reopened twice)."""
        answer = self._call("GET", "/pulls", what="list pull requests",
                            params={"head": f"{self.owner}:{branch}", "state": "all"})
        for pull in answer if isinstance(answer, list) else []:
            return PullRequest(int(pull["number"]), str(pull["html_url"]), reused=True)
        return None

    # ------------------------------------------------------------------ the wire
    def _call(self, method: str, path: str, *, what: str, json: Any = None,
              params: dict[str, str] | None = None) -> Any:
        url = f"{self._base}/repos/{self.repository}{path}"
        try:
            response = self._http.request(method, url, json=json, params=params,
                                          headers=self._headers, timeout=TIMEOUT_SECONDS)
        except httpx.HTTPError as exc:  # connection refused, timeout: try again later
            raise GithubError(f"could not {what}: {type(exc).__name__}",
                              transient=True) from None
        if response.is_success:
            return response.json()
        raise _error(response, what=what, repository=self.repository)


def _error(response: httpx.Response, *, what: str, repository: str) -> GithubError:
    """GitHub's answer as an error people can act on ("Troubleshooting the REST API")."""
    status = response.status_code
    try:
        body = response.json()
    except ValueError:
        body = {}
    message = str(body.get("message") or response.reason_phrase) if isinstance(body, dict) \
        else response.reason_phrase
    details = [str(e.get("message") or e.get("code")) for e in body.get("errors", [])
               if isinstance(e, dict)] if isinstance(body, dict) else []
    if details:
        message = f"{message}: {'; '.join(details)}"
    hint = {401: "the token is missing, expired or revoked",
            403: "the token may not write to this repository (needs contents and pull requests"
                 " write), or a rate limit",
            404: f"no repository {repository}, or the token cannot see it"}.get(status)
    text = f"could not {what}: HTTP {status} {message}" + (f" ({hint})" if hint else "")
    # 403 with a rate limit and 429 are worth waiting for ("Rate limits for the REST API");
    # any other 4xx will fail the same way again.
    limited = status == 429 or (status == 403 and (
        response.headers.get("x-ratelimit-remaining") == "0"
        or "rate limit" in message.lower()))
    return GithubError(text, transient=status >= 500 or limited, status=status)
