"""``python -m sandbox ...``: start the sandbox (``run``, what ``make run`` runs) and talk to a
running one from another terminal (``say``, ``click``, ``auto``, ``drill``).

The sandbox is development-only: it is not in the wheel, and the product (``rollback-bot``)
never imports it. ``run`` keeps ``make run``'s promise: with Slack credentials set it serves
Slack exactly like ``rollback-bot serve``; without them it starts the local sandbox.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import httpx


def _console_url() -> str:
    from sandbox.runner import sandbox_running, state_path

    path = state_path()
    # The lock, not the state file, says whether one runs: a killed sandbox leaves its file.
    if not sandbox_running() or not path.exists():
        print("No sandbox is running (start one with `make run`).", file=sys.stderr)
        raise SystemExit(2)  # not a refusal: nobody was asked
    return str(json.loads(path.read_text())["console_url"])


def cmd_run(args: argparse.Namespace) -> int:
    from bot.runtime.settings import Settings

    settings = Settings.from_env()
    if settings.has_slack_credentials:
        from bot.runtime.cli import main as product_main

        return product_main(["serve"])  # as `rollback-bot run` did (PORT applies; --port not)
    from bot.runtime.cli import setup_logging
    from sandbox.runner import run_sandbox

    setup_logging(settings.log_format)
    return int(run_sandbox(port=args.port, console_host=args.console_host))


def _answered(data: dict[str, Any]) -> int:
    """Print what the bot answered; exit 1 when it refused (``Console.refusals``)."""
    print(data["text"])
    if data.get("refused"):
        print("The bot refused (see its answer above).", file=sys.stderr)
        return 1
    return 0


def cmd_say(args: argparse.Namespace) -> int:
    resp = httpx.post(f"{_console_url()}/api/say", json={"line": args.line, "user": args.user,
                                                          "channel": args.channel}, timeout=60)
    data = resp.json()
    if not data.get("ok"):
        print(data.get("error"), file=sys.stderr)
        return 1
    return _answered(data)


def cmd_click(args: argparse.Namespace) -> int:
    """Click a button by its label as the console does: a signed ``block_actions``
    interaction from the Slack emulator to the bot."""
    body = {"label": args.label, "user": args.user, "channel": args.channel,
            "rollback": args.rollback}
    resp = httpx.post(f"{_console_url()}/api/click", json=body, timeout=60)
    data = resp.json()
    if not data.get("ok"):
        print(data.get("error"), file=sys.stderr)
        return 2 if data.get("unknown_label") else 1
    return _answered(data)


def cmd_auto(args: argparse.Namespace) -> int:
    """``rollback-bot auto`` inside the running sandbox: its request and thread show in the
    console; the exit code is the product's (docs/operations.md)."""
    body = {"service": args.service, "dry_run": args.dry_run, "severity": args.severity,
            "timeout": args.timeout, "settle": args.settle}
    # No client timeout: the run ends by its own (`--timeout`, the steps' bounds).
    resp = httpx.post(f"{_console_url()}/api/auto", json=body, timeout=None)
    data = resp.json()
    if not data.get("ok"):
        print(data.get("error"), file=sys.stderr)
        return 1
    sys.stderr.write(data.get("log") or "")
    result = data["result"]
    if args.json:
        print(json.dumps(result))
    else:
        print(result["reason"])
        for n, step in enumerate((result.get("plan") or {}).get("steps") or [], 1):
            print(f"  {n}. {step}")
    return int(data["exit_code"])


def cmd_drill(args: argparse.Namespace) -> int:
    from sandbox.drill import run_drill

    return run_drill(out=lambda line: print(line, flush=True), scenario=args.scenario)


USERS_HELP = "sandbox user: alice (requester), bob/carol (approvers), dave"
COMMANDS_EPILOG = ("`say` and `click` talk to a running sandbox (start one with `make run` in "
                   "another terminal); they print what the bot answered and exit 1 when it "
                   "refuses, 2 when it could not be asked (no sandbox running, the console "
                   "unreachable, no such button), 0 otherwise. Each command has --help.")


def build_parser(prog: str = "python -m sandbox") -> argparse.ArgumentParser:
    """The sandbox's command line; ``rollback-bot sandbox`` prints the same help."""
    parser = argparse.ArgumentParser(
        prog=prog, description="The development sandbox: Slack and platform emulators, the "
        "bot and a web console, all local.", epilog=COMMANDS_EPILOG)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    p = sub.add_parser("run", help="`make run`: serve Slack with credentials set, else start "
                                   "the local sandbox")
    p.add_argument("--port", type=int, default=None, help="the bot's HTTP port (default: PORT)")
    p.add_argument("--console-host", default=None,
                   help="address the console listens on (default: SANDBOX_CONSOLE_HOST, else "
                        "127.0.0.1). The console is unauthenticated and acts as any sandbox "
                        "user: bind elsewhere only on a network you trust")
    p.set_defaults(fn=cmd_run)
    p = sub.add_parser("say", help="type a line in the sandbox channel and print the replies; "
                                   "exit 1 if the bot refuses")
    p.add_argument("line")
    p.add_argument("--as", dest="user", default="alice", help=USERS_HELP)
    p.add_argument("--channel", default=None)
    p.set_defaults(fn=cmd_say)
    p = sub.add_parser("click", help="click a button by its label (newest message first); "
                                     "exit 1 if the bot refuses, 2 if no such button")
    p.add_argument("label", help='the button\'s label, e.g. "Approve"')
    p.add_argument("--as", dest="user", default="alice", help=USERS_HELP)
    p.add_argument("--rollback", default=None, metavar="RB-N",
                   help="only a message naming this rollback (default: the newest message "
                        "with that button)")
    p.add_argument("--channel", default=None)
    p.set_defaults(fn=cmd_click)
    p = sub.add_parser("auto", help="run `rollback-bot auto <service>` inside the running "
                                    "sandbox (its request shows in the console)")
    p.add_argument("service")
    p.add_argument("--dry-run", action="store_true")
    p.add_argument("--json", action="store_true")
    p.add_argument("--severity", choices=["P0", "P1", "P2", "P3"], default=None)
    p.add_argument("--timeout", type=float, default=None)
    p.add_argument("--settle", type=float, default=None)
    p.set_defaults(fn=cmd_auto)
    p = sub.add_parser("drill", help="script a full incident and print its timeline; exit 1 "
                                     "if any stage does not happen")
    p.add_argument("--scenario", choices=("command", "watcher"), default="command",
                   help="command: alice types /rollback (the default); watcher: a real "
                        "Prometheus watches the demo and the release watcher proposes the "
                        "rollback before anyone types (needs the `prometheus` binary)")
    p.set_defaults(fn=cmd_drill)
    return parser


def main(argv: list[str], *, prog: str = "python -m sandbox") -> int:
    args = build_parser(prog).parse_args(argv)
    try:
        code: int = args.fn(args)
    except httpx.HTTPError as exc:  # the console went away: exit 2, never a refusal's 1
        print(f"The sandbox console did not answer: {exc}", file=sys.stderr)
        return 2
    return code
