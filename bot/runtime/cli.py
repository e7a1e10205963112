"""``rollback-bot`` command line: serve, run (the main job), check-config.

The development sandbox is not part of the product: it has its own ``python -m sandbox``.

Exit codes: 0 ok, 1 runtime failure, 2 bad configuration or usage (with the key path).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from bot.domain.config import default_config_path, load_config
from bot.domain.errors import ConfigError
from bot.domain.ports import NO_CRASH_POINTS, CrashPoints
from bot.runtime.settings import Settings
from platforms.base import PlatformSpecs
from platforms.registry import PRODUCTION

if TYPE_CHECKING:
    from slack_bolt.adapter.socket_mode import SocketModeHandler


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        data = {"ts": self.formatTime(record), "level": record.levelname,
                "logger": record.name, "msg": record.getMessage()}
        if record.exc_info:
            # exc_text is the scrubbed traceback (bot.observability.scrub's record factory sets it)
            data["exc"] = record.exc_text or self.formatException(record.exc_info)
        return json.dumps(data)


def setup_logging(fmt: str) -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if fmt == "json" else
                         logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=logging.INFO, handlers=[handler], force=True)
    for noisy in ("waitress.queue", "httpx", "kubernetes", "pgserver"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def cmd_check_config(args: argparse.Namespace) -> int:
    path = Path(args.file) if args.file else default_config_path()
    try:
        cfg = load_config(path, platforms=PRODUCTION)
    except ConfigError as err:
        print(f"{err.source}: invalid configuration", file=sys.stderr)
        for problem in err.problems:
            print(f"  {problem}", file=sys.stderr)
        return 2
    print(f"{path}: ok ({len(cfg.services)} service(s): {', '.join(sorted(cfg.services))})")
    return 0


def cmd_serve(args: argparse.Namespace, *, specs: PlatformSpecs = PRODUCTION,
              crash_points: CrashPoints = NO_CRASH_POINTS) -> int:
    """Serve Slack. ``specs`` is the registry the configuration is read with: production's;
    a test entry point (``tests/support/bot_main.py``) passes one with the fake platform, and
    the crash tests' ``crash_points``."""
    from bot.runtime.app import create_app

    settings = Settings.from_env()
    setup_logging(settings.log_format)
    if not settings.has_slack_credentials:
        print("`serve` needs SLACK_BOT_TOKEN plus SLACK_SIGNING_SECRET (HTTP) or "
              "SLACK_APP_TOKEN (Socket Mode); `make run` (or `python -m sandbox run`) "
              "starts the sandbox.",
              file=sys.stderr)
        return 2
    try:
        bot = create_app(settings, config=load_config(settings.config_path, platforms=specs),
                         crash_points=crash_points)
    except ConfigError as err:
        for problem in err.problems:
            print(f"{err.source}: {problem}", file=sys.stderr)
        return 2
    from bot.runtime.server import HttpServer, PortInUse

    try:
        server = HttpServer(bot, host=settings.host, port=settings.port)
    except PortInUse as exc:
        bot.stop()
        print(port_in_use(exc.port, "PORT"), file=sys.stderr)
        return 1
    bot.start_background()
    if settings.slack_app_token:
        logging.getLogger(__name__).info("Socket Mode (SLACK_APP_TOKEN set)")
        server.start()  # health + metrics
        # Bolt's handler on a client that drops oversized envelopes unparsed.
        handler: SocketModeHandler = bot.socket_mode_handler(settings.slack_app_token)
        handler.start()  # type: ignore[no-untyped-call]
        return 0
    logging.getLogger(__name__).info("serving Slack on %s/slack/events", server.url)
    server.serve_forever()
    return 0


def cmd_auto(args: argparse.Namespace, *, specs: PlatformSpecs = PRODUCTION) -> int:
    """The runbook's automated-rollback script (``bot.runtime.auto``; exit codes there)."""
    from bot.observability import scrub
    from bot.runtime.app import build_auto
    from bot.runtime.auto import Exit

    settings = Settings.from_env()
    if args.config:
        settings = dataclasses.replace(settings, config_path=Path(args.config))
    setup_logging(settings.log_format)
    logging.getLogger().setLevel(logging.INFO if args.verbose else logging.WARNING)
    try:
        config = load_config(settings.config_path, platforms=specs)
    except ConfigError as err:
        for problem in err.problems:
            print(f"{err.source}: {problem}", file=sys.stderr)
        return Exit.USAGE
    if args.service not in config.services:
        print(f"Unknown service `{args.service}`; configured: "
              f"{', '.join(sorted(config.services))}.", file=sys.stderr)
        return Exit.USAGE
    core = None
    try:
        auto, core = build_auto(settings, config=config, stream=sys.stderr)
        result = auto.run(args.service, dry_run=args.dry_run, timeout=args.timeout,
                          settle=args.settle, severity=args.severity, reason=args.reason)
    except Exception as exc:  # the job's caller needs a line and a code, not a traceback
        logging.getLogger(__name__).exception("rollback-bot auto failed")
        print(scrub.scrub(f"rollback-bot auto {args.service}: unexpected failure: "
                          f"{type(exc).__name__}: {exc}"), file=sys.stderr)
        return Exit.FAILURE
    finally:
        if core is not None:
            core.store.close()
    # What reaches stdout passed the scrubber, like every log line and Slack message.
    if args.json:
        print(json.dumps(scrub.scrub_data(result.as_json()), default=str))
    else:
        print(scrub.scrub(result.reason))
        if result.plan:
            for n, step in enumerate(result.plan["steps"], 1):
                print(scrub.scrub(f"  {n}. {step}"))
    return result.exit_code


def port_in_use(port: int, variable: str) -> str:
    return f"Port {port} is already in use; set {variable} to a free port and run again."


SANDBOX_POINTER = (
    "The local sandbox (Slack and platform emulators, no credentials needed) is not part of "
    "rollback-bot: from a checkout of the repository run `make run`, or "
    "`pip install -e '.[sandbox]'` (the rollback-bot[sandbox] extra) then "
    "`python -m sandbox run`.")


def missing_slack_credentials(settings: Settings) -> str:
    """One paragraph: which Slack variables are missing and where the sandbox went."""
    missing = [] if settings.slack_bot_token else ["SLACK_BOT_TOKEN"]
    if not (settings.slack_signing_secret or settings.slack_app_token):
        missing.append("one of SLACK_SIGNING_SECRET, SLACK_APP_TOKEN")
    return ("`rollback-bot run` serves Slack and needs SLACK_BOT_TOKEN plus SLACK_SIGNING_SECRET "
            f"(HTTP) or SLACK_APP_TOKEN (Socket Mode); not set: {'; '.join(missing)}. "
            f"{SANDBOX_POINTER}")


def cmd_run(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    if settings.has_slack_credentials:
        return cmd_serve(args)
    print(missing_slack_credentials(settings), file=sys.stderr)  # starts nothing
    return 2


SANDBOX_COMMANDS = """commands of the sandbox (`python -m sandbox COMMAND --help` for each):
  run    `make run`: serve Slack with credentials set, else start the local sandbox
  say    type a line (a /rollback command or a message) and print what the bot answered
  click  click a button by its label, like the console; exit 1 if the bot refuses
  auto   run `rollback-bot auto <service>` inside the running sandbox
  drill  script a full incident and print its timeline"""


def cmd_sandbox(args: argparse.Namespace) -> int:
    """``python -m sandbox ARGS`` when this is a checkout with the sandbox beside it, in its
    own process: the product never imports the sandbox (it is not in the wheel)."""
    import os
    import subprocess

    argv = list(args.sandbox_args)
    # The checkout this product runs from (an editable install): the sandbox sits beside
    # bot/, handlers/, platforms/ and is not packaged. Found by path, never by the import
    # system: `-P` keeps the caller's working directory off sys.path, so a `sandbox`
    # directory wherever the command is typed is never the one that runs.
    checkout = Path(__file__).resolve().parents[2]
    if (checkout / "sandbox" / "__main__.py").is_file():
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(checkout), env.get("PYTHONPATH", "")) if p)
        return subprocess.call([sys.executable, "-P", "-m", "sandbox", *argv], env=env)
    if argv[:1] in (["-h"], ["--help"]):
        print(f"usage: rollback-bot sandbox COMMAND ...\n\n{SANDBOX_COMMANDS}\n\n"
              f"{SANDBOX_POINTER}")
        return 0
    print("The sandbox is not installed here: its commands are `python -m sandbox "
          f"run|say|click|auto|drill`. {SANDBOX_POINTER}", file=sys.stderr)
    return 2


def _positive(text: str) -> float:
    value = _not_negative(text)
    if value == 0:
        raise argparse.ArgumentTypeError(f"must be more than 0 seconds, not {text}")
    return value


def _not_negative(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be 0 seconds or more, not {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rollback-bot", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("check-config", help="validate a rollback.yml; exit 2 on errors")
    p.add_argument("file", nargs="?")
    p.set_defaults(fn=cmd_check_config)
    p = sub.add_parser("serve", help="serve Slack (HTTP, or Socket Mode with SLACK_APP_TOKEN)")
    p.set_defaults(fn=cmd_serve)
    p = sub.add_parser("run", help="the main job: serve Slack; without Slack credentials, say "
                                   "which are missing and how to start the sandbox (exit 2)")
    p.add_argument("--port", type=int, default=None, help=argparse.SUPPRESS)  # as before: unused
    p.set_defaults(fn=cmd_run)
    p = sub.add_parser(
        "auto", help="check a service and roll it back if it is unhealthy (the runbook's "
                     "automated-rollback script); exit 0 healthy or recovered, 3 refused, "
                     "4 awaiting approval, 5 rollback failed, 6 not recovered, 7 dry run "
                     "found it unhealthy")
    p.add_argument("service")
    p.add_argument("--dry-run", action="store_true",
                   help="check and print the plan; change nothing")
    p.add_argument("--json", action="store_true", help="one JSON object on stdout")
    p.add_argument("--config", help="rollback.yml (default: $ROLLBACK_CONFIG)")
    p.add_argument("--timeout", type=_positive, default=None,
                   help="seconds to wait for the rollback (default automation.timeout_seconds)")
    p.add_argument("--settle", type=_not_negative, default=None,
                   help="seconds between the rollback and the health re-check "
                        "(default automation.settle_seconds)")
    p.add_argument("--severity", choices=["P0", "P1", "P2", "P3"], default=None,
                   help="the request's severity (default automation.severity)")
    p.add_argument("--reason", default=None, help="the request's reason (default: the "
                                                  "failed checks)")
    p.add_argument("--verbose", action="store_true", help="log at INFO on stderr")
    p.set_defaults(fn=cmd_auto)
    # No help of its own: `rollback-bot sandbox --help` is the sandbox's (run, say, click...).
    p = sub.add_parser("sandbox", add_help=False,
                       help="the development sandbox's commands (run, say, click, auto, drill): "
                            "`python -m sandbox` in a checkout")
    p.add_argument("sandbox_args", nargs=argparse.REMAINDER)
    p.set_defaults(fn=cmd_sandbox)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["sandbox"]:  # everything after it, --help too, is the sandbox's
        return cmd_sandbox(argparse.Namespace(sandbox_args=argv[1:]))
    args = build_parser().parse_args(argv)
    code: int = args.fn(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
