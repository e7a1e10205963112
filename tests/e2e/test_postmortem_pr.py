"""The post-mortem as a pull request, end to end: a P0 rollback completed through Slack (the
emulator, signed requests, the real bot on real PostgreSQL) opens one pull request in the
service's repository on the GitHub emulator, with the skeleton at the runbook's path, and
posts its link in the thread; a bad token opens nothing and the thread says why; a bot
process SIGKILLed between creating the branch and opening the pull request is followed by
one that opens exactly one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import icalendar
import pytest
import yaml

from bot.persistence.aftercare_store import AftercareStore
from sandbox.github.server import GithubEmulator
from tests.e2e.conftest import Harness
from tests.e2e.crash_support import CrashRig, crash_rig
from tests.secret_scan import register_secret
from tests.support.waiting import wait_until

REPO = "acme/hotel-voice-bot"
TOKEN_ENV = "TEST_GITHUB_POSTMORTEM_TOKEN"
TOKEN = "ghp_e2e-postmortem-token-not-for-slack"


@pytest.fixture
def github() -> Iterator[GithubEmulator]:
    register_secret(TOKEN, "the GitHub token of the post-mortem tests")
    register_secret("ghp_revoked-token", "a revoked GitHub token")
    emulator = GithubEmulator(tokens={TOKEN}).start()
    emulator.add_repo(REPO)
    yield emulator
    emulator.stop()
    assert emulator.shape_errors == []  # every answer matched GitHub's description


def _github_config(github: GithubEmulator) -> Callable[[dict[str, Any]], None]:
    def change(data: dict[str, Any]) -> None:
        data["services"]["hotel-voice-bot"]["postmortem"] = {"github": {
            "repository": REPO, "base_branch": "main", "token_env": TOKEN_ENV,
            "api_url": github.api_url}}
    return change


def _tick_until(h: Harness, what: Callable[[], Any], message: str) -> Any:
    return wait_until(lambda: h.tick() >= 0 and what(), timeout=20, message=message)


def test_a_p0_opens_one_pull_request_with_the_skeleton_and_links_it_in_the_thread(
        make_harness: Callable[..., Harness], github: GithubEmulator,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    h = make_harness(config_overrides=_github_config(github))
    rid, msg = h.request_and_approve_p0()
    h.wait_state(rid, "completed")
    [pr] = _tick_until(h, lambda: github.pulls(REPO), "the pull request")
    path = f"docs/post-mortems/2026-11-29-hotel-voice-bot-rb-{rid}.md"
    installation = AftercareStore(h.bot.store.pool).installation_id()
    assert pr["head_ref"] == f"rollback-bot/postmortem-{installation}-hotel-voice-bot-rb-{rid}"
    assert pr["base_ref"] == "main"
    skeleton = (github.file(REPO, pr["head_ref"], path) or b"").decode()
    assert f"# Post-mortem: hotel-voice-bot rollback RB-{rid} (P0)" in skeleton
    assert "## Timeline (UTC, from the rollback-bot audit log)" in skeleton
    assert "| Rollback requested |" in skeleton and "## Impact" in skeleton
    link = h.emulator.wait_for(lambda: next((t for t in h.thread_texts(msg)
                                             if "up for review" in t), None), timeout=10)
    assert f"https://github.com/{REPO}/pull/1" in link and path in link
    [opened] = [e for e in h.bot.store.audit_events(rid) if e.event == "postmortem_pr_opened"]
    assert opened.detail["number"] == 1 and opened.detail["path"] == path
    # The job is keyed: more ticks, hours later, open nothing more and say nothing more.
    h.clock.advance(hours=3)
    for _ in range(3):
        h.tick()
    assert len(github.pulls(REPO)) == 1
    assert sum("up for review" in t for t in h.thread_texts(msg)) == 1
    assert all(TOKEN not in t for t in h.thread_texts(msg))


def test_the_post_mortem_reminder_attaches_a_30_minute_meeting_with_the_link(
        make_harness: Callable[..., Harness], github: GithubEmulator,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    h = make_harness(config_overrides=_github_config(github))
    rid, msg = h.request_and_approve_p0()
    h.wait_state(rid, "completed")
    name = f"postmortem-meeting-RB-{rid}.ics"
    attached = _tick_until(h, lambda: next((f for f in h.emulator.files()
                                            if f["name"] == name), None), "the invitation")
    raw = h.emulator.file_content(attached["id"])
    assert raw.endswith(b"\r\n") and b"\n" not in raw.replace(b"\r\n", b"")
    assert all(len(line) <= 75 for line in raw.split(b"\r\n"))  # RFC 5545 3.1
    calendar = icalendar.Calendar.from_ical(raw)
    [event] = calendar.walk("VEVENT")
    # Completed on Sunday 2026-11-29 03:00 UTC, due Tuesday 03:00: the first working-hours
    # slot is Monday 09:00 UTC, 30 minutes, inside the 48 hours.
    assert event.decoded("DTSTART") == datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
    assert event.decoded("DTEND") - event.decoded("DTSTART") == timedelta(minutes=30)
    assert event.decoded("DTEND") <= datetime(2026, 12, 1, 3, 0, tzinfo=UTC)
    assert str(event["SUMMARY"]) == f"Post-mortem: hotel-voice-bot rollback RB-{rid} (P0)"
    assert f"https://github.com/{REPO}/pull/1" in str(event["DESCRIPTION"])
    assert str(event["UID"]).startswith(f"postmortem-RB-{rid}-")
    assert "ORGANIZER" not in event and "ATTENDEE" not in event  # no contacts configured
    # Attached once, in the rollback's thread, with the reminder.
    h.clock.advance(hours=49)
    for _ in range(3):
        h.tick()
    assert [f["name"] for f in h.emulator.files()].count(name) == 1
    assert any("Post-mortem for" in t for t in h.thread_texts(msg))


def test_a_bad_token_opens_nothing_and_the_thread_says_why(
        make_harness: Callable[..., Harness], github: GithubEmulator,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(TOKEN_ENV, "ghp_revoked-token")
    h = make_harness(config_overrides=_github_config(github))
    rid, msg = h.request_and_approve_p0()
    h.wait_state(rid, "completed")
    warning = _tick_until(h, lambda: next((t for t in h.thread_texts(msg)
                                           if "could not open the post-mortem" in t), None),
                          "the warning")
    assert "HTTP 401 Bad credentials" in warning and "expired or revoked" in warning
    assert f"`{REPO}`" in warning and "ghp_revoked-token" not in warning
    assert github.pulls(REPO) == [] and list(github.repos[REPO].branches) == ["main"]
    [failed] = [e for e in h.bot.store.audit_events(rid) if e.event == "postmortem_pr_failed"]
    assert failed.detail["status"] == 401
    assert h.bot.store.get(rid).state.value == "completed"  # a decoration: nothing moved
    h.clock.advance(hours=1)
    h.tick()
    assert sum("could not open the post-mortem" in t for t in h.thread_texts(msg)) == 1


def test_a_missing_token_variable_is_said_once(
        make_harness: Callable[..., Harness], github: GithubEmulator,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    h = make_harness(config_overrides=_github_config(github))
    rid, msg = h.request_and_approve_p0()
    h.wait_state(rid, "completed")
    warning = _tick_until(h, lambda: next((t for t in h.thread_texts(msg)
                                           if "could not open the post-mortem" in t), None),
                          "the warning")
    assert f"{TOKEN_ENV}" in warning and "not set" in warning
    assert github.requests == []


# ---------------------------------------------------------------------- a real crash
@pytest.fixture
def rig(tmp_path: Path, db: str, fresh_db: str, github: GithubEmulator) -> Iterator[CrashRig]:
    with crash_rig(tmp_path, db, fresh_db) as r:
        r.seed()
        data = yaml.safe_load(r.config_path.read_text())
        _github_config(github)(data)
        r.config_path.write_text(yaml.safe_dump(data))  # every process reads it at start
        yield r


def test_a_bot_killed_between_branch_and_pull_request_is_followed_by_exactly_one(
        rig: CrashRig, github: GithubEmulator) -> None:
    fault_file = rig.tmp / "fault-hold"
    a = rig.start_bot("bot-A", env={TOKEN_ENV: TOKEN, "ROLLBACK_FAULT_FILE": str(fault_file),
                                    "ROLLBACK_FAULT_PUBLISH": "postmortem_pr:*:branch"})
    rollback_id, msg = rig.request_and_approve(a, "hotel-voice-bot --severity P0 --scope app "
                                               "--reason pr-drill")
    announced = rig.wait_fault(a, fault_file).split()
    assert announced[0] == str(a.pid) and announced[-1] == "branch"
    a.kill()
    head = next(b for b in github.repos[REPO].branches if b != "main")
    assert github.pulls(REPO) == []  # A made the branch and died

    rig.start_bot("bot-B", env={TOKEN_ENV: TOKEN})
    rig.wait_thread(msg, "up for review", timeout=45)
    [pr] = github.pulls(REPO)
    assert pr["head_ref"] == head
    assert [r["status"] for r in github.requests if r["path"].endswith("/git/refs")] == [201, 422]
    opened = [e for e in rig.store.audit_events(rollback_id) if e.event == "postmortem_pr_opened"]
    assert len(opened) == 1
