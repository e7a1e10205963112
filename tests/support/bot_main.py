"""A test-only entry point: serves the bot like ``rollback-bot serve``, with the sandbox's fake
platform registered.

Subprocess bots in the crash and leader-failover tests read a config with a ``fake:`` block
(a file-backed fake platform shared by every process), which production's schema refuses:
``fake`` is not in ``platforms.registry.PRODUCTION``. This runs the product's own
``cmd_serve`` with the sandbox's registry (``sandbox.config.PLATFORMS``) instead, and with
the crash points the crash tests ask for in the environment (``tests/support/crash_points.py``):
the product itself never reads them.

From the repository root: ``python -m tests.support.bot_main serve``.
"""

from __future__ import annotations

import argparse
import sys

from bot.runtime import cli
from sandbox.config import PLATFORMS
from tests.support import crash_points


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.support.bot_main",
                                     description=__doc__)
    parser.add_argument("command", choices=["serve"])
    args = parser.parse_args(argv)
    return cli.cmd_serve(args, specs=PLATFORMS,
                         crash_points=crash_points.from_environment())


if __name__ == "__main__":
    sys.exit(main())
