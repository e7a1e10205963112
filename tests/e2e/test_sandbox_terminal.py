"""The sandbox finished from a terminal: ``python -m sandbox say`` and ``click`` take a
rollback from request to approval to completion against a running ``python -m sandbox run``
(signed slash commands and ``block_actions`` through the Slack emulator to the bot), and
exit non-zero exactly when the bot refuses. The console here listens on another loopback
address (``SANDBOX_CONSOLE_HOST``), so the CLI can only be reaching it there."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.sandbox_process import (
    REPO_ROOT,
    free_port,
    sandbox_cli,
    sandbox_env,
    start_sandbox,
    stop_process,
    wait_ready,
)
from tests.support.waiting import wait_until

SERVICE = "hotel-voice-bot"
CONSOLE_HOST = "127.0.0.2"  # loopback, but not the default 127.0.0.1
COMMANDS = ("run", "say", "click", "auto", "drill")


class Sandbox:
    def __init__(self, env: dict[str, str], banner: str, console_port: int) -> None:
        self.env, self.banner, self.console_port = env, banner, console_port

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return sandbox_cli(self.env, *args)


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    tmp = tmp_path_factory.mktemp("terminal")
    port, console = free_port(), free_port()
    env = sandbox_env(tmp / "data", port, console)
    env["SANDBOX_CONSOLE_HOST"] = CONSOLE_HOST
    log = tmp / "sandbox.log"
    proc = start_sandbox(env, log)
    try:
        yield Sandbox(env, wait_ready(proc, log), console)
    finally:
        stop_process(proc)


def _shown(done: subprocess.CompletedProcess[str]) -> str:
    return f"exit {done.returncode}\n--- stdout\n{done.stdout}\n--- stderr\n{done.stderr}"


def test_help_lists_the_sandbox_commands(tmp_path: Path) -> None:
    """`rollback-bot sandbox` as the installed script runs it (`-P`: the working directory is
    not on sys.path), typed in another directory that has a `sandbox` package of its own:
    the checkout's sandbox answers, never the one in the working directory."""
    decoy = tmp_path / "sandbox"
    decoy.mkdir()
    (decoy / "__init__.py").write_text("")
    (decoy / "__main__.py").write_text("print('DECOY SANDBOX')\n")
    product = subprocess.run([sys.executable, "-P", "-m", "bot.runtime.cli", "sandbox",
                              "--help"], cwd=tmp_path, capture_output=True, text=True,
                             timeout=60)
    assert "DECOY" not in product.stdout, _shown(product)
    direct = subprocess.run([sys.executable, "-m", "sandbox", "--help"], cwd=REPO_ROOT,
                            capture_output=True, text=True, timeout=60)
    for done in (product, direct):
        assert done.returncode == 0, _shown(done)
        assert "sandbox_args" not in done.stdout, done.stdout
        for command in COMMANDS:  # each listed with its one-line help
            assert any(line.split()[:1] == [command] and len(line.split()) > 1
                       for line in done.stdout.splitlines()), (command, done.stdout)
    click = subprocess.run([sys.executable, "-P", "-m", "bot.runtime.cli", "sandbox", "click",
                            "--help"], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert click.returncode == 0 and "--rollback" in click.stdout and "--as" in click.stdout, \
        _shown(click)


def test_the_console_listens_where_it_is_told(sandbox: Sandbox) -> None:
    assert f"console:  http://{CONSOLE_HOST}:{sandbox.console_port}/" in sandbox.banner
    assert "the console has no login" in sandbox.banner, sandbox.banner
    with pytest.raises(httpx.ConnectError):  # not on the default address
        httpx.get(f"http://127.0.0.1:{sandbox.console_port}/api/directory", timeout=5)
    answer = httpx.get(f"http://{CONSOLE_HOST}:{sandbox.console_port}/api/directory",
                       timeout=5)
    assert answer.status_code == 200 and answer.json()["users"]


def test_say_exits_non_zero_only_when_the_bot_refuses(sandbox: Sandbox) -> None:
    help_ = sandbox.cli("say", "/rollback help", "--as", "dave")
    assert help_.returncode == 0 and "/rollback" in help_.stdout, _shown(help_)
    unknown = sandbox.cli("say", "/rollback no-such-service --severity P1", "--as", "dave")
    assert unknown.returncode == 1, _shown(unknown)
    assert "Unknown service" in unknown.stdout and "refused" in unknown.stderr, _shown(unknown)


def test_request_to_completion_from_a_terminal(sandbox: Sandbox) -> None:
    requested = sandbox.cli("say", f"/rollback {SERVICE} --severity P1 --reason terminal",
                            "--as", "bob")
    assert requested.returncode == 0, _shown(requested)
    assert "RB-1" in requested.stdout and "[Approve]" in requested.stdout, _shown(requested)

    # A label there is no button for: the buttons there are listed, nothing is clicked.
    unknown = sandbox.cli("click", "Launch", "--as", "carol", "--rollback", "RB-1")
    assert unknown.returncode == 2, _shown(unknown)
    assert "[Approve]" in unknown.stderr and "[Reject]" in unknown.stderr, _shown(unknown)
    # No such rollback: no message names it, so no button either.
    elsewhere = sandbox.cli("click", "Approve", "--as", "carol", "--rollback", "RB-9")
    assert elsewhere.returncode == 2, _shown(elsewhere)

    # Refusals: the requester (an approver) by the four-eyes rule, dave as no approver.
    own = sandbox.cli("click", "Approve", "--as", "bob", "--rollback", "RB-1")
    assert own.returncode == 1, _shown(own)
    assert "Four-eyes rule: you requested RB-1" in own.stdout, _shown(own)
    dave = sandbox.cli("click", "approve", "--as", "dave")  # newest message; any case
    assert dave.returncode == 1, _shown(dave)
    assert "Only approvers" in dave.stdout, _shown(dave)

    early = sandbox.cli("click", "Approve", "--as", "carol", "--rollback", "RB-1")
    assert early.returncode == 1, _shown(early)  # the checklist wants a commander first
    assert "Incident commander assigned" in early.stdout, _shown(early)
    ic = sandbox.cli("click", "I'm incident commander", "--as", "carol", "--rollback", "RB-1")
    assert ic.returncode == 0, _shown(ic)
    approved = sandbox.cli("click", "Approve", "--as", "carol", "--rollback", "RB-1")
    assert approved.returncode == 0, _shown(approved)
    assert "approved" in approved.stdout.lower(), _shown(approved)

    def completed() -> str | None:
        status = sandbox.cli("say", f"/rollback status {SERVICE}", "--as", "dave")
        assert status.returncode == 0, _shown(status)
        return status.stdout if "Completed" in status.stdout else None

    wait_until(completed, timeout=120, interval=1, message="RB-1 completed")
    # Nothing left to approve: the Approve button is gone from RB-1's message.
    again = sandbox.cli("click", "Approve", "--as", "carol", "--rollback", "RB-1")
    assert again.returncode == 2 and "Approve]" not in again.stderr, _shown(again)

    # The record, from the terminal: the answer prints, the file lands in RB-1's thread;
    # the finished message's Timeline button does the same; an unknown id is a refusal.
    timeline = sandbox.cli("say", "/rollback timeline RB-1", "--as", "dave")
    assert timeline.returncode == 0, _shown(timeline)
    assert "Timeline of RB-1" in timeline.stdout and "timeline-RB-1-" in timeline.stdout, \
        _shown(timeline)
    assert "pending approval → approved (approve)" in timeline.stdout, _shown(timeline)
    button = sandbox.cli("click", "Timeline", "--as", "dave", "--rollback", "RB-1")
    assert button.returncode == 0 and "Timeline of RB-1" in button.stdout, _shown(button)
    missing = sandbox.cli("say", "/rollback timeline RB-99", "--as", "dave")
    assert missing.returncode == 1 and "No rollback RB-99." in missing.stdout, _shown(missing)

    # The P1 opened a status page incident that followed RB-1 (the sandbox's Statuspage
    # emulator, its window named in the banner).
    incidents_url = next(word for word in sandbox.banner.split()
                         if word.endswith("/_emulator/incidents)")).rstrip(")")

    def resolved() -> list[str] | None:
        (incident,) = httpx.get(incidents_url, timeout=5).json()
        statuses = [u["status"] for u in incident["incident_updates"]]
        return statuses if statuses[-1] == "resolved" else None

    statuses = wait_until(resolved, timeout=60, interval=0.5, message="the incident resolved")
    assert statuses[0] == "investigating" and "identified" in statuses, statuses

    # Its stakeholder notice went by e-mail too (the sandbox's mail relay), and its
    # post-mortem became a pull request on the sandbox's GitHub emulator.
    mailbox_url = next(word for word in sandbox.banner.split()
                       if word.endswith("/_emulator/messages)")).rstrip(")")
    notice = wait_until(lambda: next((m for m in httpx.get(mailbox_url, timeout=5).json()
                                      if m["subject"].startswith("[Resolved]")), None),
                        timeout=60, interval=0.5, message="the notice by e-mail")
    assert "RB-1" in notice["subject"] and "Total downtime" in notice["body"], notice
    github_url = next(word for word in sandbox.banner.split() if word.startswith("http")
                      and "GitHub" in sandbox.banner.split(word)[0].splitlines()[-1])
    pulls = wait_until(lambda: httpx.get(
        f"{github_url}/repos/hotel/hotel-voice-bot/pulls", params={"state": "all"},
        headers={"Authorization": "Bearer ghp_sandboxgithubtoken000000000000000000"},
        timeout=5).json() or None, timeout=60, interval=0.5, message="the post-mortem PR")
    assert len(pulls) == 1 and "RB-1" in pulls[0]["title"], pulls
