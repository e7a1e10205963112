"""``python -m sandbox ...``: start the sandbox (``run``, what ``make run`` runs) and talk to a
running one from another terminal (``say``, ``drill``).

The sandbox is development-only: it is not in the wheel, and the product (``rollback-bot``)
never imports it. ``run`` keeps ``make run``'s promise: with Slack credentials set it serves
Slack exactly like ``rollback-bot serve``; without them it starts the local sandbox.
"""

from __future__ import annotations

import argparse
import json
import sys

import httpx


def _console_url() -> str:
    from sandbox.runner import sandbox_running, state_path

    path = state_path()
    # The lock, not the state file, says whether one runs: a killed sandbox leaves its file.
    if not sandbox_running() or not path.exists():
        raise SystemExit("No sandbox is running (start one with `make run`).")
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
    return int(run_sandbox(port=args.port))


def cmd_say(args: argparse.Namespace) -> int:
    resp = httpx.post(f"{_console_url()}/api/say", json={"line": args.line, "user": args.user,
                                                          "channel": args.channel}, timeout=60)
    data = resp.json()
    if not data.get("ok"):
        print(data.get("error"), file=sys.stderr)
        return 1
    print(data["text"])
    return 0


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


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m sandbox")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("run", help="`make run`: serve Slack with credentials set, else start "
                                   "the local sandbox")
    p.add_argument("--port", type=int, default=None, help="the bot's HTTP port (default: PORT)")
    p.set_defaults(fn=cmd_run)
    p = sub.add_parser("say", help="type a line in the sandbox channel and print the replies")
    p.add_argument("line")
    p.add_argument("--as", dest="user", default="alice",
                   help="sandbox user: alice (requester), bob/carol (approvers), dave")
    p.add_argument("--channel", default=None)
    p.set_defaults(fn=cmd_say)
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
    args = parser.parse_args(argv)
    code: int = args.fn(args)
    return code
