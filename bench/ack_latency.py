"""Benchmark: slash-command ack latency, rollback-bot vs a bare Bolt app, served the same way.

Measures the time from sending a signed ``/rollback help`` request to receiving the HTTP
response, at concurrency 1 and 20, for
  (a) the real bot (``bot.runtime.app.create_app`` behind
      ``bot.runtime.server.HttpServer``): the front door's signature check, parsing, Block
      Kit in the ack body (the delivery dedupe INSERT runs after ``ack()`` and only for
      requests with side effects, so ``help`` makes none: the bench counts them);
  (b) a bare ``slack_bolt.App`` whose only listener is ``@app.command("/rollback")`` ->
      ``ack()``, behind waitress with the same thread count, the same Bolt options and the
      same signing secret.
Rounds are interleaved (A,B then B,A ...) so machine noise hits both; the load generator
is a separate process (bench/_load.py). Target: p99 ratio bot/bare <= 1.3.

Run: ``.venv/bin/python bench/ack_latency.py`` (``--help`` for sizes).
"""

from __future__ import annotations

import argparse
import inspect
import json
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import fresh_database, ms, percentile, quiet_logging, summary  # noqa: E402

TARGET_P99_RATIO = 1.3
CHANNEL = "inc-hotel-voice-bot"


class BareBolt:
    """A bare Bolt app with one ack-only /rollback listener, served like bot/runtime/server.py."""

    def __init__(self, *, signing_secret: str, token: str, api_url: str) -> None:
        from slack_bolt import Ack, App
        from slack_bolt.adapter.wsgi import SlackRequestHandler
        from slack_sdk import WebClient
        from waitress.server import create_server

        from bot.runtime.server import HttpServer

        # Same constructor options as bot.runtime.app.create_app, so only the listeners differ.
        app = App(client=WebClient(token=token, base_url=api_url),
                  signing_secret=signing_secret, token_verification_enabled=False,
                  request_verification_enabled=True, process_before_response=False,
                  raise_error_for_unhandled_request=False)

        @app.command("/rollback")
        def h(ack: Ack) -> None:
            ack()

        slack = SlackRequestHandler(app)

        def wsgi(environ: dict[str, Any], start: Callable[..., Any]) -> Iterable[bytes]:
            if environ.get("PATH_INFO", "") == "/slack/events":
                return slack(environ, start)
            start("404 Not Found", [("Content-Type", "text/plain"), ("Content-Length", "0")])
            return [b""]

        threads = inspect.signature(HttpServer.__init__).parameters["threads"].default
        self.threads = threads
        self.server = create_server(wsgi, host="127.0.0.1", port=0, threads=threads,
                                    ident="bare-bolt")
        self.url = f"http://127.0.0.1:{int(self.server.effective_port)}/slack/events"
        self._thread = threading.Thread(target=self.server.run, name="bare-http", daemon=True)

    def start(self) -> BareBolt:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.close()
        self._thread.join(timeout=5)


class DedupeTimer:
    """Times the bot's dedupe write (``Store.first_delivery``, after ``ack()``, only for
    requests with side effects; ``help`` should make none): a wrapper on the live Store
    instance that calls straight through."""

    def __init__(self, store: Any) -> None:
        self.times: dict[int, list[float]] = {}
        self._level: int | None = None
        self._lock = threading.Lock()
        real = store.first_delivery

        def first_delivery(key: str) -> bool:
            start = time.perf_counter()
            try:
                return bool(real(key))
            finally:
                with self._lock:
                    if self._level is not None:
                        self.times.setdefault(self._level, []).append(
                            time.perf_counter() - start)

        store.first_delivery = first_delivery

    def start(self, level: int) -> None:
        self._level = level

    def stop(self) -> None:
        self._level = None


class LoadClient:
    """Talks to the bench/_load.py child process."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).with_name("_load.py"))],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)

    def run(self, **cmd: Any) -> dict[str, Any]:
        assert self.proc.stdin and self.proc.stdout
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("load generator exited")
        return dict(json.loads(line))

    def close(self) -> None:
        if self.proc.stdin:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n1", type=int, default=400, help="measured requests per app at c=1")
    parser.add_argument("--n20", type=int, default=2000, help="measured requests per app at c=20")
    parser.add_argument("--rounds", type=int, default=10, help="interleaved rounds per level")
    parser.add_argument("--warmup", type=int, default=100, help="warm-up requests per app/level")
    args = parser.parse_args()
    quiet_logging()

    from sandbox.config import sandbox_config
    from sandbox.fake_platform import FakePlatform
    from sandbox.slack import DEFAULT_BOT_TOKEN, payloads
    from sandbox.stack import SandboxStack

    with fresh_database() as url, SandboxStack(
            config=sandbox_config(), database_url=url,
            platforms={"fake": FakePlatform()}) as stack:
        assert stack.server is not None and stack.bot is not None
        em = stack.emulator
        bare = BareBolt(signing_secret=stack.signing_secret, token=DEFAULT_BOT_TOKEN,
                        api_url=em.base_url).start()
        ws = em.ws
        who, where = ws.resolve_user("alice"), ws.resolve_channel(CHANNEL)
        fields = payloads.slash_command(
            ws, app_id=em.app_id, verification_token="sandbox-verification-token", user=who,
            channel=where, command="/rollback", text="help",
            response_url=em.issue_response_url(channel=where.id, user=who.id),
            trigger_id="(unique per request)")
        targets: dict[str, dict[str, Any]] = {
            "bot": {"url": f"{stack.server.url}/slack/events", "expect_body": '"blocks"'},
            "bare": {"url": bare.url, "expect_body": None},
        }
        dedupe = DedupeTimer(stack.bot.store)
        load = LoadClient()
        results: dict[tuple[str, int], list[float]] = {}
        per_round: dict[int, list[tuple[list[float], list[float]]]] = {}
        walls: dict[tuple[str, int], float] = {}
        errors: dict[str, int] = {"bot": 0, "bare": 0}
        first_errors: list[str] = []
        began = time.perf_counter()
        try:
            for concurrency, total in ((1, args.n1), (20, args.n20)):
                size = max(1, total // args.rounds)
                for t in targets.values():  # warm up: connections, caches, auth.test
                    load.run(secret=stack.signing_secret, fields=fields, n=args.warmup,
                             concurrency=concurrency, **t)
                dedupe.start(concurrency)
                for r in range(args.rounds):
                    order = list(targets) if r % 2 == 0 else list(reversed(targets))
                    got: dict[str, list[float]] = {}
                    for name in order:
                        res = load.run(secret=stack.signing_secret, fields=fields, n=size,
                                       concurrency=concurrency, **targets[name])
                        results.setdefault((name, concurrency), []).extend(res["latencies"])
                        walls[(name, concurrency)] = walls.get((name, concurrency), 0) + res["wall"]
                        got[name] = res["latencies"]
                        errors[name] += res["errors"]
                        if res["first_error"]:
                            first_errors.append(f"{name}: {res['first_error']}")
                    per_round.setdefault(concurrency, []).append((got["bot"], got["bare"]))
                dedupe.stop()
        finally:
            load.close()
            bare.stop()
        elapsed = time.perf_counter() - began

    print(f"ack latency: /rollback help, bot vs bare Bolt, waitress threads={bare.threads}, "
          f"{args.rounds} interleaved rounds per level, {elapsed:.1f}s")
    print(f"  {'app':5} {'c':>3} {'n':>5} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} "
          f"{'mean ms':>8} {'max ms':>8} {'req/s':>7}")
    verdicts = []
    for concurrency in (1, 20):
        for name in ("bot", "bare"):
            vals = results[(name, concurrency)]
            s = summary(vals)
            print(f"  {name:5} {concurrency:>3} {len(vals):>5} {ms(s['p50']):>8} {ms(s['p90']):>8} "
                  f"{ms(s['p99']):>8} {ms(s['mean']):>8} {ms(s['max']):>8} "
                  f"{len(vals) / walls[(name, concurrency)]:7.0f}")
        b, a = summary(results[("bot", concurrency)]), summary(results[("bare", concurrency)])
        r50, r99 = b["p50"] / a["p50"], b["p99"] / a["p99"]
        ok = r99 <= TARGET_P99_RATIO
        verdicts.append(ok)
        d = dedupe.times.get(concurrency) or [0.0]
        sd = summary(d)
        calls = len(dedupe.times.get(concurrency) or [])
        print(f"  bot's dedupe INSERTs at c={concurrency} (Store.first_delivery, after "
              f"ack(); {calls} calls): p50 {ms(sd['p50']).strip()}  "
              f"p90 {ms(sd['p90']).strip()}  p99 {ms(sd['p99']).strip()} ms")
        rounds = per_round[concurrency]
        by_round = {q: statistics.median(percentile(x, q) / percentile(y, q) for x, y in rounds)
                    for q in (50, 90)}
        print(f"  ratio bot/bare at c={concurrency}: p50 {r50:.2f}  p99 {r99:.2f}  "
              f"(median of per-round ratios: p50 {by_round[50]:.2f}  p90 {by_round[90]:.2f})")
        print(f"  c={concurrency} p99 ratio {r99:.2f}: "
              f"{'OK' if ok else 'ABOVE TARGET'} (target p99 ratio <= {TARGET_P99_RATIO})")
    if any(errors.values()):
        print(f"  errors: {errors}; first: {first_errors[:2]}")
    return 0 if all(verdicts) and not any(errors.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
