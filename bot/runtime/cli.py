"""``rollback-bot`` command line: serve, run (the main job), check-config, sandbox tools.

Exit codes: 0 ok, 1 runtime failure, 2 bad configuration or usage (with the key path).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from bot.domain.config import default_config_path, load_config
from bot.domain.errors import ConfigError
from bot.runtime.settings import Settings

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
    for noisy in ("waitress.queue", "apscheduler", "httpx", "kubernetes", "pgserver"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def cmd_check_config(args: argparse.Namespace) -> int:
    path = Path(args.file) if args.file else default_config_path()
    try:
        cfg = load_config(path)
    except ConfigError as err:
        print(f"{err.source}: invalid configuration", file=sys.stderr)
        for problem in err.problems:
            print(f"  {problem}", file=sys.stderr)
        return 2
    print(f"{path}: ok ({len(cfg.services)} service(s): {', '.join(sorted(cfg.services))})")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from bot.runtime.app import create_app

    settings = Settings.from_env()
    setup_logging(settings.log_format)
    if not settings.has_slack_credentials:
        print("`serve` needs SLACK_BOT_TOKEN plus SLACK_SIGNING_SECRET (HTTP) or "
              "SLACK_APP_TOKEN (Socket Mode); use `rollback-bot run` for the sandbox.",
              file=sys.stderr)
        return 2
    try:
        bot = create_app(settings)
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


def port_in_use(port: int, variable: str) -> str:
    return f"Port {port} is already in use; set {variable} to a free port and run again."


def cmd_run(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    if settings.has_slack_credentials:
        return cmd_serve(args)
    from sandbox.runner import run_sandbox

    setup_logging(settings.log_format)
    return int(run_sandbox(port=args.port))


def cmd_sandbox(args: argparse.Namespace) -> int:
    from sandbox import cli as sandbox_cli

    return int(sandbox_cli.main(args.sandbox_args))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rollback-bot", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("check-config", help="validate a rollback.yml; exit 2 on errors")
    p.add_argument("file", nargs="?")
    p.set_defaults(fn=cmd_check_config)
    p = sub.add_parser("serve", help="serve Slack (HTTP, or Socket Mode with SLACK_APP_TOKEN)")
    p.set_defaults(fn=cmd_serve)
    p = sub.add_parser("run", help="the main job: serve Slack, or the sandbox without creds")
    p.add_argument("--port", type=int, default=None)
    p.set_defaults(fn=cmd_run)
    p = sub.add_parser("sandbox", help="talk to the local sandbox (say, drill)")
    p.add_argument("sandbox_args", nargs=argparse.REMAINDER)
    p.set_defaults(fn=cmd_sandbox)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    code: int = args.fn(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
