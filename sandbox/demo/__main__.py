"""Run the demo service standalone: ``python -m sandbox.demo --port 8081 --traffic-rps 5``.

Prints the listening URL on stdout (useful with ``--port 0``) and serves until SIGINT/SIGTERM.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from collections.abc import Sequence

from sandbox.demo.service import DemoService


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sandbox.demo", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1", help="bind address (default loopback)")
    parser.add_argument("--port", type=int, default=8081, help="0 picks a free port")
    parser.add_argument("--version", default="1.0.0", help="version or image it reports")
    parser.add_argument(
        "--bad-version", action="append", default=[], help="a version that fails (repeatable)"
    )
    parser.add_argument(
        "--health-delay", type=float, default=2.0, help="seconds a bad release's health hangs"
    )
    parser.add_argument("--traffic-rps", type=float, default=0.0, help="synthetic load, 0=off")
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)

    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    # httpx logs every synthetic request at INFO; at several per second that buries the rest.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())

    service = DemoService(
        version_source=args.version,
        bad_versions=args.bad_version,
        bad_health_delay=args.health_delay,
        host=args.host,
        port=args.port,
        traffic_rps=args.traffic_rps,
    )
    with service:
        print(f"demo {service.app.service_name} listening on {service.url}", flush=True)
        stop.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
