"""GitHub's REST API (2022-11-28) on 127.0.0.1: refs, contents and pull requests of repositories.

The subset ``bot.integrations.github`` drives to file a post-mortem: read a branch's ref,
create a branch, read and create a file on a branch, list and open pull requests. Each
behaviour follows GitHub's REST documentation (docs.github.com/en/rest, cited per endpoint)
and its published OpenAPI description (github/rest-api-description); the request bodies it
accepts and the answers it gives are checked against the models githubkit generates from
that description (``sandbox.github.validation``), so a shape the real API would refuse is
refused here too. It is an oracle: it imports nothing of the product.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from sandbox.github import validation

DOCS = "https://docs.github.com/rest"


@dataclass
class Repo:
    owner: str
    name: str
    branches: dict[str, str] = field(default_factory=dict)  # branch -> commit sha
    files: dict[str, dict[str, bytes]] = field(default_factory=dict)  # branch -> path -> bytes
    pulls: list[dict[str, Any]] = field(default_factory=list)


class GithubEmulator:
    """Repositories in memory; ``tokens`` are the personal access tokens it accepts."""

    def __init__(self, *, tokens: set[str], host: str = "127.0.0.1") -> None:
        self.tokens = set(tokens)
        self.host = host
        self.repos: dict[str, Repo] = {}
        self.requests: list[dict[str, Any]] = []  # method, path, status, body
        self.shape_errors: list[str] = []  # answers GitHub's description does not allow
        self.lock = threading.Lock()
        self._ids = itertools.count(1)
        self._server: ThreadingHTTPServer | None = None

    # ------------------------------------------------------------------ set-up
    def add_repo(self, full_name: str, *, default_branch: str = "main") -> Repo:
        owner, _, name = full_name.partition("/")
        repo = Repo(owner, name)
        repo.branches[default_branch] = self._sha(f"{full_name}:{default_branch}")
        repo.files[default_branch] = {}
        self.repos[full_name.lower()] = repo
        return repo

    @property
    def api_url(self) -> str:
        assert self._server is not None
        return f"http://{self.host}:{self._server.server_address[1]}"

    def start(self) -> GithubEmulator:
        emulator = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                status, answer = emulator.handle(self.command, self.path, raw,
                                                 self.headers.get("Authorization", ""))
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = _handle

        self._server = ThreadingHTTPServer((self.host, 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                         daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    # ------------------------------------------------------------------ dispatch
    _ROUTES = [
        ("GET", re.compile(r"/repos/([^/]+)/([^/]+)/git/ref/(.+)"), "get_ref"),
        ("POST", re.compile(r"/repos/([^/]+)/([^/]+)/git/refs"), "create_ref"),
        ("GET", re.compile(r"/repos/([^/]+)/([^/]+)/contents/(.+)"), "get_contents"),
        ("PUT", re.compile(r"/repos/([^/]+)/([^/]+)/contents/(.+)"), "put_contents"),
        ("GET", re.compile(r"/repos/([^/]+)/([^/]+)/pulls"), "list_pulls"),
        ("POST", re.compile(r"/repos/([^/]+)/([^/]+)/pulls"), "create_pull"),
    ]

    def handle(self, method: str, target: str, raw: bytes,
               authorization: str) -> tuple[int, Any]:
        parts = urlsplit(target)
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        with self.lock:
            status, answer = self._dispatch(method, parts.path, query, raw, authorization)
            self.requests.append({"method": method, "path": parts.path, "status": status,
                                  "body": raw.decode(errors="replace")})
        try:
            validation.check_response(method, parts.path, status, answer)
        except validation.ShapeError as exc:  # the emulator's bug: loud, never a silent pass
            self.shape_errors.append(str(exc))
            return 500, {"message": f"emulator answer off GitHub's description: {exc}"}
        return status, answer

    def _dispatch(self, method: str, path: str, query: dict[str, str], raw: bytes,
                  authorization: str) -> tuple[int, Any]:
        # "Authenticating to the REST API": a token goes as "Authorization: Bearer <token>"
        # (or "token <token>"); a wrong one is 401 {"message": "Bad credentials"}.
        scheme, _, token = authorization.partition(" ")
        if authorization and (scheme.lower() not in ("bearer", "token")
                              or token not in self.tokens):
            return 401, {"message": "Bad credentials", "documentation_url": DOCS,
                         "status": "401"}
        for verb, pattern, name in self._ROUTES:
            match = pattern.fullmatch(path)
            if verb == method and match:
                owner, repo_name, *rest = (unquote(g) for g in match.groups())
                repo = self.repos.get(f"{owner}/{repo_name}".lower())
                # An unknown repository, or a private one without credentials, is 404 "Not
                # Found": GitHub never says a private repository exists ("Troubleshooting
                # the REST API", 404 for private resources).
                if repo is None or not authorization:
                    return _not_found()
                try:
                    body = json.loads(raw) if raw else {}
                except ValueError:
                    return 400, {"message": "Problems parsing JSON",
                                 "documentation_url": DOCS, "status": "400"}
                problem = validation.check_request(name, body) if method != "GET" else None
                if problem:
                    return _unprocessable(problem)
                handler = getattr(self, f"_{name}")
                result: tuple[int, Any] = handler(repo, *rest, body=body, query=query)
                return result
        return _not_found()

    # ------------------------------------------------------------------ refs
    def _get_ref(self, repo: Repo, ref: str, **_: Any) -> tuple[int, Any]:
        # "Get a reference" (GET /repos/{owner}/{repo}/git/ref/{ref}): 404 for a ref that
        # does not exist.
        branch = ref.removeprefix("heads/")
        if not ref.startswith("heads/") or branch not in repo.branches:
            return _not_found()
        return 200, self._ref_json(repo, branch)

    def _create_ref(self, repo: Repo, *, body: dict[str, Any], **_: Any) -> tuple[int, Any]:
        # "Create a reference": ``ref`` must be fully qualified (refs/heads/...); an existing
        # one is 422 "Reference already exists"; an unknown sha is 422 "Object does not exist".
        ref, sha = str(body["ref"]), str(body["sha"])
        if not ref.startswith("refs/") or ref.count("/") < 2:
            return _unprocessable("ref must start with 'refs/' and have at least two slashes.")
        branch = ref.removeprefix("refs/heads/")
        if branch in repo.branches:
            return _unprocessable("Reference already exists")
        source = next((b for b, s in repo.branches.items() if s == sha), None)
        if source is None:
            return _unprocessable("Object does not exist")
        repo.branches[branch] = sha
        repo.files[branch] = dict(repo.files[source])
        return 201, self._ref_json(repo, branch)

    def _ref_json(self, repo: Repo, branch: str) -> dict[str, Any]:
        url = f"{self.api_url}/repos/{repo.owner}/{repo.name}/git/refs/heads/{branch}"
        sha = repo.branches[branch]
        return {"ref": f"refs/heads/{branch}", "node_id": f"REF_{sha[:12]}", "url": url,
                "object": {"type": "commit", "sha": sha,
                           "url": f"{self.api_url}/repos/{repo.owner}/{repo.name}/git/commits/"
                                  f"{sha}"}}

    # ------------------------------------------------------------------ contents
    def _get_contents(self, repo: Repo, path: str, *, query: dict[str, str],
                      **_: Any) -> tuple[int, Any]:
        branch = query.get("ref") or next(iter(repo.branches))
        if branch not in repo.branches:
            return 404, {"message": f"No commit found for the ref {branch}",
                         "documentation_url": DOCS, "status": "404"}
        content = repo.files[branch].get(path)
        if content is None:
            return _not_found()
        return 200, self._content_json(repo, path, content) | {
            "content": base64.encodebytes(content).decode(), "encoding": "base64"}

    def _put_contents(self, repo: Repo, path: str, *, body: dict[str, Any],
                      **_: Any) -> tuple[int, Any]:
        # "Create or update file contents": ``content`` is base64; updating a file needs the
        # blob ``sha`` of the file replaced: without it GitHub answers 422 "Invalid request.
        # \n\n\"sha\" wasn't supplied.", with a stale one 409 "<path> does not match <sha>".
        branch = str(body.get("branch") or next(iter(repo.branches)))
        if branch not in repo.branches:
            return 404, {"message": f"Branch {branch} not found", "documentation_url": DOCS,
                         "status": "404"}
        try:
            content = base64.b64decode(str(body["content"]), validate=True)
        except ValueError:
            return _unprocessable("content is not valid Base64")
        existing = repo.files[branch].get(path)
        if existing is not None:
            if "sha" not in body:
                return _unprocessable('Invalid request.\n\n"sha" wasn\'t supplied.')
            if body["sha"] != _blob_sha(existing):
                return 409, {"message": f"{path} does not match {body['sha']}",
                             "documentation_url": DOCS, "status": "409"}
        repo.files[branch][path] = content
        commit = self._sha(f"{repo.branches[branch]}:{path}:{_blob_sha(content)}")
        repo.branches[branch] = commit
        return (200 if existing is not None else 201), {
            "content": self._content_json(repo, path, content),
            "commit": {"sha": commit, "message": str(body["message"]),
                       "html_url": f"https://github.com/{repo.owner}/{repo.name}/commit/{commit}"}}

    def _content_json(self, repo: Repo, path: str, content: bytes) -> dict[str, Any]:
        sha = _blob_sha(content)
        api = f"{self.api_url}/repos/{repo.owner}/{repo.name}"
        html = f"https://github.com/{repo.owner}/{repo.name}/blob/main/{path}"
        return {"type": "file", "name": path.rsplit("/", 1)[-1], "path": path, "sha": sha,
                "size": len(content), "url": f"{api}/contents/{path}", "html_url": html,
                "git_url": f"{api}/git/blobs/{sha}", "download_url": None,
                "_links": {"self": f"{api}/contents/{path}", "git": f"{api}/git/blobs/{sha}",
                           "html": html}}

    # ------------------------------------------------------------------ pull requests
    def _list_pulls(self, repo: Repo, *, query: dict[str, str], **_: Any) -> tuple[int, Any]:
        # "List pull requests": ``head`` filters by "user:ref-name"; ``state`` defaults to open.
        state = query.get("state", "open")
        head = query.get("head")
        found = [p for p in repo.pulls
                 if (state == "all" or p["state"] == state)
                 and (head is None or f"{repo.owner}:{p['head_ref']}".lower() == head.lower())]
        return 200, [self._pull_json(repo, p) for p in found]

    def _create_pull(self, repo: Repo, *, body: dict[str, Any], **_: Any) -> tuple[int, Any]:
        # "Create a pull request": 422 with an error per field; one already open for the
        # same head and base is 422 "A pull request already exists for owner:branch.".
        head = str(body["head"]).split(":", 1)[-1]
        base = str(body["base"])
        if head not in repo.branches:
            return _unprocessable_field("PullRequest", "head", "invalid")
        if base not in repo.branches:
            return _unprocessable_field("PullRequest", "base", "invalid")
        if any(p["head_ref"] == head and p["base_ref"] == base and p["state"] == "open"
               for p in repo.pulls):
            return 422, {"message": "Validation Failed", "documentation_url": DOCS,
                         "status": "422", "errors": [{
                             "resource": "PullRequest", "code": "custom",
                             "message": f"A pull request already exists for "
                                        f"{repo.owner}:{head}."}]}
        if repo.branches[head] == repo.branches[base]:
            return 422, {"message": "Validation Failed", "documentation_url": DOCS,
                         "status": "422", "errors": [{
                             "resource": "PullRequest", "code": "custom",
                             "message": f"No commits between {base} and {head}"}]}
        pull = {"number": len(repo.pulls) + 1, "id": next(self._ids), "state": "open",
                "title": str(body.get("title", "")), "body": body.get("body"),
                "head_ref": head, "base_ref": base}
        repo.pulls.append(pull)
        return 201, self._pull_json(repo, pull)

    def _pull_json(self, repo: Repo, p: dict[str, Any]) -> dict[str, Any]:
        api = f"{self.api_url}/repos/{repo.owner}/{repo.name}"
        html = f"https://github.com/{repo.owner}/{repo.name}/pull/{p['number']}"
        return {"url": f"{api}/pulls/{p['number']}", "id": p["id"], "number": p["number"],
                "html_url": html, "state": p["state"], "title": p["title"], "body": p["body"],
                "head": {"ref": p["head_ref"], "label": f"{repo.owner}:{p['head_ref']}",
                         "sha": repo.branches[p["head_ref"]]},
                "base": {"ref": p["base_ref"], "label": f"{repo.owner}:{p['base_ref']}",
                         "sha": repo.branches[p["base_ref"]]}}

    # ------------------------------------------------------------------ queries for tests
    def pulls(self, full_name: str) -> list[dict[str, Any]]:
        return list(self.repos[full_name.lower()].pulls)

    def file(self, full_name: str, branch: str, path: str) -> bytes | None:
        return self.repos[full_name.lower()].files.get(branch, {}).get(path)

    def _sha(self, seed: str) -> str:
        return hashlib.sha1(f"{seed}:{next(self._ids)}".encode()).hexdigest()


def _blob_sha(content: bytes) -> str:
    # Git's blob id: sha1("blob <size>\0" + content), what the contents API calls ``sha``.
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


def _not_found() -> tuple[int, Any]:
    return 404, {"message": "Not Found", "documentation_url": DOCS, "status": "404"}


def _unprocessable(message: str) -> tuple[int, Any]:
    return 422, {"message": message, "documentation_url": DOCS, "status": "422"}


def _unprocessable_field(resource: str, field_name: str, code: str) -> tuple[int, Any]:
    return 422, {"message": "Validation Failed", "documentation_url": DOCS, "status": "422",
                 "errors": [{"resource": resource, "field": field_name, "code": code}]}
