"""``rollback-bot run`` without Slack credentials: exit 2, one paragraph naming what is missing
and how to start the sandbox, and nothing started (no PostgreSQL, no server, no sandbox).

The sandbox is development-only and has its own entry point (``python -m sandbox run``, what
``make run`` runs); the product never imports it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]

# Runs the product's CLI in a fresh interpreter, then says what got imported: proof that
# nothing heavy (embedded PostgreSQL, the HTTP server, the composition root) or sandbox-ish
# was even loaded, let alone started.
PROBE = """\
import sys
from bot.runtime.cli import main
code = main(sys.argv[1:])
heavy = ("sandbox", "pgserver", "waitress", "psycopg", "moto", "slack_bolt")
loaded = sorted(m for m in sys.modules if m.split(".")[0] in heavy
                or m in ("bot.runtime.app", "bot.runtime.server", "bot.persistence.db"))
print("loaded:", " ".join(loaded))
sys.exit(code)
"""


def _env(tmp_path: Path, **slack: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("SLACK_") and k != "DATABASE_URL"}
    env.update(ROLLBACK_DATA_DIR=str(tmp_path / "data"), PORT="0", **slack)
    return env


def _product(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    # From the repository root, where `sandbox` would be importable: it must still not be.
    return subprocess.run([sys.executable, "-c", PROBE, *args], env=env, cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=30)


@pytest.mark.parametrize(("slack", "not_set"), [
    ({}, "not set: SLACK_BOT_TOKEN; one of SLACK_SIGNING_SECRET, SLACK_APP_TOKEN."),
    ({"SLACK_BOT_TOKEN": "xoxb-test"}, "not set: one of SLACK_SIGNING_SECRET, SLACK_APP_TOKEN."),
    ({"SLACK_SIGNING_SECRET": "s"}, "not set: SLACK_BOT_TOKEN."),
    ({"SLACK_APP_TOKEN": "xapp-test"}, "not set: SLACK_BOT_TOKEN."),
], ids=["none", "bot-token-only", "signing-secret-only", "app-token-only"])
def test_run_without_slack_credentials_exits_2_and_starts_nothing(
    tmp_path: Path, slack: dict[str, str], not_set: str,
) -> None:
    started = time.monotonic()
    run = _product(_env(tmp_path, **slack), "run")
    took = time.monotonic() - started
    assert run.returncode == 2, run.stdout + run.stderr
    assert took < 10, f"`run` without credentials took {took:.1f}s: it must start nothing"
    message = run.stderr.strip()
    assert len(message.splitlines()) == 1, message  # one paragraph
    assert not_set in message, message
    assert "SLACK_BOT_TOKEN plus SLACK_SIGNING_SECRET (HTTP) or SLACK_APP_TOKEN" in message
    assert "`make run`" in message and "`python -m sandbox run`" in message, message
    assert "'.[sandbox]'" in message, message  # how to get the sandbox's dependencies
    assert "Traceback" not in run.stdout + run.stderr
    assert run.stdout.strip() == "loaded:", run.stdout  # nothing heavy, nothing of the sandbox
    assert not (tmp_path / "data").exists()  # no embedded PostgreSQL, no lock, no state


def test_the_sandbox_subcommand_runs_python_m_sandbox_in_a_checkout(tmp_path: Path) -> None:
    """In a checkout `rollback-bot sandbox ARGS` is `python -m sandbox ARGS` in a process of
    its own: the product itself still loads nothing of the sandbox."""
    said = _product(_env(tmp_path), "sandbox", "say", "/rollback help")
    assert said.returncode == 2, said.stdout + said.stderr  # nobody to ask: not a refusal
    assert "No sandbox is running" in said.stderr, said.stderr
    assert said.stdout.strip() == "loaded:", said.stdout
    helped = _product(_env(tmp_path), "sandbox", "--help")
    assert helped.returncode == 0, helped.stdout + helped.stderr
    for command in ("run", "say", "click", "auto", "drill"):
        assert f"    {command} " in helped.stdout, helped.stdout
    assert helped.stdout.rstrip().endswith("loaded:"), helped.stdout


# Where the sandbox is not installed (the wheel, the image): nothing named `sandbox` is found.
def _installed_without_the_sandbox(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """The product as a wheel installs it: bot/, handlers/ and platforms/ with no sandbox/
    beside them, run with the working directory off sys.path (`-P`, as a console script)."""
    site = tmp_path / "site"
    for package in ("bot", "handlers", "platforms"):
        shutil.copytree(REPO_ROOT / package, site / package,
                        ignore=shutil.ignore_patterns("__pycache__"))
    env = _env(tmp_path)
    env["PYTHONPATH"] = str(site)
    return site, env


def test_without_the_sandbox_the_subcommand_points_to_a_checkout(tmp_path: Path) -> None:
    site, env = _installed_without_the_sandbox(tmp_path)
    said = subprocess.run([sys.executable, "-P", "-c", PROBE, "sandbox", "say", "x"],
                          env=env, cwd=tmp_path, capture_output=True, text=True, timeout=30)
    assert said.returncode == 2, said.stdout + said.stderr
    message = said.stderr.strip()
    assert len(message.splitlines()) == 1, message
    assert "`python -m sandbox run|say|click|auto|drill`" in message and "`make run`" in message
    assert said.stdout.strip() == "loaded:", said.stdout
    helped = subprocess.run([sys.executable, "-P", "-c", PROBE, "sandbox", "--help"],
                            env=env, cwd=tmp_path, capture_output=True, text=True, timeout=30)
    assert helped.returncode == 0, helped.stdout + helped.stderr
    for command in ("run", "say", "click", "auto", "drill"):
        assert f"  {command} " in helped.stdout, helped.stdout
    assert not (tmp_path / "data").exists()


def test_sandbox_run_serves_slack_like_the_product_when_credentials_are_set(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`python -m sandbox run` (`make run`) with credentials: the product's own `serve`."""
    import bot.runtime.cli as product
    from sandbox import cli

    calls: list[list[str] | None] = []
    monkeypatch.setattr(product, "main", lambda argv=None: calls.append(argv) or 0)
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-cli-run-test-7c1f0a")
    monkeypatch.setenv("SLACK_SIGNING_SECRET", "cli-run-test-signing-7c1f0a")
    monkeypatch.delenv("SLACK_APP_TOKEN", raising=False)
    assert cli.main(["run"]) == 0
    assert calls == [["serve"]]


def test_sandbox_run_starts_the_sandbox_without_credentials(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import bot.runtime.cli as product
    import sandbox.runner
    from sandbox import cli

    ports: list[int | None] = []
    hosts: list[str | None] = []
    monkeypatch.setattr(sandbox.runner, "run_sandbox",
                        lambda *, port=None, console_host=None:
                        ports.append(port) or hosts.append(console_host) or 0)
    monkeypatch.setattr(product, "setup_logging", lambda fmt: None)
    monkeypatch.setattr(product, "main", lambda argv=None: pytest.fail("must not serve"))
    for name in ("SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET", "SLACK_APP_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    assert cli.main(["run", "--port", "4321"]) == 0
    assert cli.main(["run"]) == 0
    assert cli.main(["run", "--console-host", "0.0.0.0"]) == 0
    assert ports == [4321, None, None]
    assert hosts == [None, None, "0.0.0.0"]  # None: SANDBOX_CONSOLE_HOST, else 127.0.0.1
