"""The GitHub client against the GitHub emulator (sandbox/github): one branch, one file, one
pull request per document, however often ``publish`` runs or wherever it died; a bad token,
an unknown repository and an emulator answer GitHub's description would not allow.

The whole path (a P0 rollback, the scheduled job, the link in the thread, a bot process
SIGKILLed between branch and pull request) is in ``tests/e2e/test_postmortem_pr.py``.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Iterator

import httpx
import pytest

from bot.integrations.errors import GithubError
from bot.integrations.github import Document, GithubClient
from sandbox.github import validation
from sandbox.github.server import GithubEmulator

TOKEN = "ghp_postmortem-token-not-for-logs"
REPO = "acme/hotel-voice-bot"
DOC = Document(path="docs/post-mortems/2026-11-29-hotel-voice-bot-rb-7.md",
               content=b"# Post-mortem: hotel-voice-bot rollback RB-7 (P0)\n",
               branch="rollback-bot/postmortem-hotel-voice-bot-rb-7",
               title="Post-mortem: hotel-voice-bot rollback RB-7 (P0)", body="Fill in the TODOs.")


class Died(BaseException):
    """What a SIGKILL looks like from inside: nothing after it runs (not an Exception, so
    no handler of ours can swallow it)."""


@pytest.fixture
def github() -> Iterator[GithubEmulator]:
    emulator = GithubEmulator(tokens={TOKEN}).start()
    emulator.add_repo(REPO)
    yield emulator
    emulator.stop()
    assert emulator.shape_errors == []  # every answer matched GitHub's description


def _client(github: GithubEmulator, token: str = TOKEN, repo: str = REPO) -> GithubClient:
    return GithubClient(api_url=github.api_url, repository=repo, token=token)


def _die_at(stage: str):  # type: ignore[no-untyped-def]
    def point(where: str) -> None:
        if where == stage:
            raise Died(where)
    return point


def test_one_pull_request_with_the_document_at_its_path(github: GithubEmulator) -> None:
    with _client(github) as client:
        pull = client.publish(DOC, base="main")
    assert pull.number == 1 and not pull.reused
    assert pull.url == f"https://github.com/{REPO}/pull/1"
    [pr] = github.pulls(REPO)
    assert (pr["head_ref"], pr["base_ref"], pr["title"]) == (DOC.branch, "main", DOC.title)
    assert github.file(REPO, DOC.branch, DOC.path) == DOC.content
    assert github.file(REPO, "main", DOC.path) is None  # only through the pull request
    calls = [(r["method"], r["path"].removeprefix(f"/repos/{REPO}"), r["status"])
             for r in github.requests]
    assert calls == [("GET", "/pulls", 200), ("GET", "/git/ref/heads/main", 200),
                     ("POST", "/git/refs", 201), ("GET", f"/contents/{DOC.path}", 404),
                     ("PUT", f"/contents/{DOC.path}", 201), ("POST", "/pulls", 201)]


@pytest.mark.parametrize("stage", ["branch", "file"])
def test_a_retry_after_dying_part_way_opens_no_second_pull_request(
        github: GithubEmulator, stage: str) -> None:
    with _client(github) as client, pytest.raises(Died):
        client.publish(DOC, base="main", crash_point=_die_at(stage))
    assert github.pulls(REPO) == []  # died before the pull request
    with _client(github) as again:  # a new process: nothing remembered but the branch name
        pull = again.publish(DOC, base="main")
    assert not pull.reused and len(github.pulls(REPO)) == 1
    assert github.file(REPO, DOC.branch, DOC.path) == DOC.content
    statuses = [(r["method"], r["status"]) for r in github.requests
                if r["path"].endswith("/git/refs")]
    assert statuses == [("POST", 201), ("POST", 422)]  # "Reference already exists": reused
    with _client(github) as third:  # and once it exists, it is found, not opened again
        assert third.publish(DOC, base="main").reused
    assert len(github.pulls(REPO)) == 1


def test_an_edited_file_on_the_branch_is_kept(github: GithubEmulator) -> None:
    with _client(github) as client, pytest.raises(Died):
        client.publish(DOC, base="main", crash_point=_die_at("file"))
    github.repos[REPO].files[DOC.branch][DOC.path] = b"# edited by a person\n"
    with _client(github) as client:
        client.publish(DOC, base="main")
    assert github.file(REPO, DOC.branch, DOC.path) == b"# edited by a person\n"


def test_a_bad_token_is_permanent_opens_nothing_and_is_never_logged(
        github: GithubEmulator, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    bad = "ghp_wrong-token-also-secret"
    with _client(github, token=bad) as client, pytest.raises(GithubError) as err:
        client.publish(DOC, base="main")
    assert err.value.status == 401 and not err.value.transient
    assert "Bad credentials" in str(err.value) and "token is missing, expired or revoked" in \
        str(err.value)
    assert bad not in str(err.value) and bad not in caplog.text
    assert github.pulls(REPO) == [] and github.repos[REPO].branches.keys() == {"main"}


def test_an_unknown_repository_is_a_permanent_404(github: GithubEmulator) -> None:
    with _client(github, repo="acme/nope") as client, pytest.raises(GithubError) as err:
        client.publish(DOC, base="main")
    assert err.value.status == 404 and not err.value.transient
    assert "no repository acme/nope, or the token cannot see it" in str(err.value)


def test_an_unreachable_api_is_transient() -> None:
    with GithubClient(api_url="http://127.0.0.1:9", repository=REPO, token=TOKEN) as client, \
            pytest.raises(GithubError) as err:
        client.publish(DOC, base="main")
    assert err.value.transient and err.value.status is None


def test_the_requests_carry_githubs_headers(github: GithubEmulator) -> None:
    seen: list[httpx.Request] = []

    def record(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        status, answer = github.handle(request.method, str(request.url.raw_path.decode()),
                                       request.content, request.headers.get("Authorization", ""))
        return httpx.Response(status, json=answer)

    with GithubClient(api_url="https://api.github.test", repository=REPO, token=TOKEN,
                      transport=httpx.MockTransport(record)) as client:
        client.publish(DOC, base="main")
    for request in seen:
        assert request.headers["Accept"] == "application/vnd.github+json"
        assert request.headers["X-GitHub-Api-Version"] == "2022-11-28"
        assert request.headers["Authorization"] == f"Bearer {TOKEN}"
    put = next(r for r in seen if r.method == "PUT")
    assert base64.b64decode(httpx.Response(200, content=put.content).json()["content"]) == \
        DOC.content


# ---------------------------------------------------------------------- the emulator itself
def test_the_emulator_refuses_bodies_githubs_description_refuses(github: GithubEmulator) -> None:
    http = httpx.Client(base_url=github.api_url, headers={"Authorization": f"Bearer {TOKEN}"})
    # pulls/create's requestBody has additionalProperties: false and requires head and base.
    extra = http.post(f"/repos/{REPO}/pulls", json={"head": "x", "base": "main", "draft2": 1})
    missing = http.post(f"/repos/{REPO}/pulls", json={"title": "t", "base": "main"})
    not_base64 = http.put(f"/repos/{REPO}/contents/a.md", json={"message": "m",
                                                                "content": "***"})
    assert (extra.status_code, missing.status_code, not_base64.status_code) == (422, 422, 422)
    assert "not a permitted key" in extra.json()["message"]
    # updating a file without its blob sha: 422; with a stale one: 409 (a conflict)
    content = base64.b64encode(b"one").decode()
    assert http.put(f"/repos/{REPO}/contents/a.md", json={"message": "m", "content": content}
                    ).status_code == 201
    no_sha = http.put(f"/repos/{REPO}/contents/a.md", json={"message": "m", "content": content})
    stale = http.put(f"/repos/{REPO}/contents/a.md", json={"message": "m", "content": content,
                                                           "sha": "0" * 40})
    assert (no_sha.status_code, stale.status_code) == (422, 409)
    assert "\"sha\" wasn't supplied" in no_sha.json()["message"]
    anonymous = httpx.get(f"{github.api_url}/repos/{REPO}/pulls")
    assert anonymous.status_code == 404  # a private repository is not admitted to exist


def test_the_emulators_answers_validate_against_the_description() -> None:
    """The check is real: an answer missing a required field of GitRef is refused."""
    with pytest.raises(validation.ShapeError):
        validation.check_response("GET", "/repos/a/b/git/ref/heads/main", 200,
                                  {"ref": "refs/heads/main", "url": "u"})
    with pytest.raises(validation.ShapeError):
        validation.check_response("POST", "/repos/a/b/pulls", 201,
                                  {"number": "one", "html_url": "h"})
    assert validation.check_request("create_ref", {"ref": "refs/heads/x"}) is not None
