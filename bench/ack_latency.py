"""Benchmark: ack latency of every command and button, rollback-bot vs a bare Bolt app.

Measures the time from sending a signed request to receiving the HTTP response (the ack),
for each case below at concurrency 1 and 20 and for each Slack round trip given
(``--slack-rtt-ms``, default 0 and 100), against
  (a) the real bot (``bot.runtime.app.create_app`` behind ``bot.runtime.server.HttpServer``,
      ``sandbox.stack.SandboxStack``), and
  (b) a bare ``slack_bolt.App`` whose listeners only ``ack()`` every command and every
      action, behind waitress with the same thread count and the same signing secret;
both get byte-for-byte the same payload shape (Slack's form fields or ``payload`` JSON,
each request with its own trigger_id and response_url issued by the Slack emulator).

Cases: ``help``, ``services``, ``status``, ``history hotel-voice-bot``, the one-line request
``hotel-voice-bot --severity P1 --reason …``, the modal open ``hotel-voice-bot``, and the
request message's buttons: a checklist tick, Reject (opens its dialog) and Approve.

The Slack round trip: every Web API call and response_url POST the bot makes waits half
the RTT before the emulator handles it and half after (network time, outside the
emulator's lock), so post-ack Slack calls cost what they cost in production.

Pacing: at c=20 each of the 20 senders is a person who waits for the answer before sending
the next command: after the ack, a sender waits (up to 3 s) until the answer lands in the
emulator (the response_url POST, or views.open for the modal and Reject). That *landing*
is also the Slack-side latency printed for the cases answered after the ack (send ->
landed). Without pacing a closed loop on the ack alone offers the bot hundreds of commands
a second whose answers it then owes: it says "busy" (counted as errors here) or falls
behind, which no workspace of people does.

Side effects: the request, Approve and the checklist tick change state, so samples after
the first are refusals told after the ack (an active rollback exists, already approved,
…). Their measured path is the real one: the ack path is the same code for a refusal and a
success (the checks that decide run after the ack), and the refusal's respond lands like
any answer. The first request of a level (in its warm-up) creates a real rollback through
the service; the buttons are the real buttons of its message.

Rounds are interleaved (bot, bare then bare, bot …) so machine noise hits both; the load
generator is a separate process (bench/_load.py). Target: p99 ratio bot/bare <= 1.3 for
every case, level and RTT (the median over rounds of each round's p99 ratio: robust to a
burst of the shared machine's other work landing in one round; the pooled ratio is
printed beside it), no errors, no "busy".

Run: ``.venv/bin/python bench/ack_latency.py`` (``--help`` for sizes and cases).
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import re
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import (  # noqa: E402
    fresh_database,
    ms,
    percentile,
    quiet_logging,
    record,
    summary,
)

TARGET_P99_RATIO = 1.3
CHANNEL = "inc-hotel-voice-bot"
SERVICE = "hotel-voice-bot"
BUSY = "retry in a moment"
AWAIT_TIMEOUT = 3.0
PEOPLE = 64  # distinct people for the modal case: sample i is person i % 64


@dataclass(frozen=True)
class Case:
    name: str
    command: str | None = None  # the slash command's text, or
    button: str | None = None  # the action_id of a button on the request message
    user: str = "alice"
    expect: str | None = None  # the ack body must contain it
    answer: str | None = None  # what lands after the ack (see Workload.subs)
    people: bool = False  # each sample from its own person (one open modal per person)


CASES = (
    Case("help", command="help", expect='"blocks"'),
    Case("services", command="services", expect='"blocks"'),
    Case("status", command="status", answer="respond"),
    Case("history", command=f"history {SERVICE}", answer="respond"),
    Case("request", command=f'{SERVICE} --severity P1 --reason "bench"',
         expect="Preparing", answer="respond"),
    Case("modal", command=SERVICE, answer="views.update", people=True),  # the form filled
    # A tick toggles the item and refreshes the message (chat.update), a refusal responds:
    # the answers are counted per message (sample i waits for the i-th answer).
    Case("checklist", button="checklist", user="bob", answer="count"),
    Case("reject", button="reject", user="bob", answer="views.open"),
    Case("approve", button="approve", user="bob", answer="respond"),
)


def slow_slack(rtt_ms: float = 0.0) -> Any:
    """The Slack emulator with a network round trip, reporting what lands."""
    from sandbox.slack import SlackEmulator

    class SlowSlack(SlackEmulator):
        """Each Web API call and response_url POST waits rtt/2, is handled, waits rtt/2.
        Landings (a response_url's token, a views.open's trigger_id, and that trigger_id
        again when its view is updated: the request form filled in) go to ``on_land``.
        Triggers live an hour: samples are issued ahead of a run (latency, not expiry, is
        measured here; the 3 s expiry has its own tests)."""

        def __init__(self) -> None:
            super().__init__(trigger_ttl=3600.0)
            self.rtt = rtt_ms / 1000
            self.landed: dict[str, float] = {}
            self.opened: dict[str, str] = {}  # view id -> the trigger_id that opened it
            self.answers: dict[str, int] = {}  # message ts -> updates and responses to it
            self.bad: dict[str, str] = {}  # token -> a "busy" or error answer's text
            self.on_land: Callable[[str], None] = lambda value: None

        def _land(self, value: str) -> None:
            if value and value != "filled:":
                self.landed[value] = time.time()
                self.on_land(value)

        def _count(self, ts: str) -> None:
            with self.ws.lock:
                self.answers[ts] = n = self.answers.get(ts, 0) + 1
            self._land(f"{ts}#{n}")

        def handle_api(self, method: str, params: dict[str, Any], token: str | None
                       ) -> tuple[int, dict[str, str], dict[str, Any]]:
            time.sleep(self.rtt / 2)
            out = super().handle_api(method, params, token)
            trigger = str(params.get("trigger_id") or "")
            if method == "views.open" and out[2].get("ok"):
                self.opened[str(out[2]["view"]["id"])] = trigger
                self._land(trigger)
            elif method == "views.update" and out[2].get("ok"):
                self._land("filled:" + self.opened.get(str(params.get("view_id")), ""))
            elif method == "chat.update" and out[2].get("ok"):
                self._count(str(params.get("ts") or ""))
            time.sleep(self.rtt / 2)
            return out

        def handle_response_url(self, token: str, body: Any) -> tuple[int, dict[str, Any]]:
            time.sleep(self.rtt / 2)
            out = super().handle_response_url(token, body)
            text = json.dumps(body)
            if BUSY in text or "correlation id" in text:
                self.bad[token] = text[:200]
            self._land(token)
            issued = self.ws.response_urls.get(token)
            if issued is not None and issued.message_ts:
                self._count(issued.message_ts)
            time.sleep(self.rtt / 2)
            return out

    return SlowSlack()


class BareBolt:
    """A bare Bolt app that only acks (every command, every action), served like
    bot/runtime/server.py."""

    def __init__(self, *, signing_secret: str, token: str, api_url: str) -> None:
        from slack_bolt import Ack, App
        from slack_bolt.adapter.wsgi import SlackRequestHandler
        from slack_sdk import WebClient
        from waitress.server import create_server

        from bot.runtime.server import HttpServer

        # Bolt's own defaults otherwise (its 5 listener threads: a bare app only acks).
        app = App(client=WebClient(token=token, base_url=api_url),
                  signing_secret=signing_secret, token_verification_enabled=False,
                  request_verification_enabled=True, process_before_response=False,
                  raise_error_for_unhandled_request=False)

        @app.command("/rollback")
        def command(ack: Ack) -> None:
            ack()

        @app.action(re.compile(".*"))
        def action(ack: Ack) -> None:
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


class LoadClient:
    """Talks to the bench/_load.py child process; ``landing_fd`` is the read end of a pipe
    on which the emulator's landings reach it (for paced runs)."""

    def __init__(self, *, landing_fd: int | None = None) -> None:
        env = dict(os.environ)
        if landing_fd is not None:
            env["LOAD_LANDING_FD"] = str(landing_fd)
        self.proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).with_name("_load.py"))],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1, env=env,
            pass_fds=(landing_fd,) if landing_fd is not None else ())

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


class Workload:
    """Payload templates and per-sample trigger_ids / response_urls for one stack."""

    def __init__(self, stack: Any) -> None:
        from sandbox.slack import payloads

        self.stack, self.em = stack, stack.emulator
        self.payloads = payloads
        self.people = [self._person(i) for i in range(PEOPLE)]

    def _person(self, i: int) -> str:
        name = f"bench-person-{i:02d}"
        try:
            self.em.user_id(name)
        except Exception:
            self.em.add_user(name, real_name=f"Bench Person {i}")
        return name

    def template(self, case: Case) -> tuple[dict[str, str], str | None]:
        """(form fields with {trigger} and {response_url} placeholders, message ts)."""
        ws, em = self.em.ws, self.em
        who, where = ws.resolve_user(case.user), ws.resolve_channel(CHANNEL)
        if case.command is not None:
            fields = self.payloads.slash_command(
                ws, app_id=em.app_id, verification_token="sandbox-verification-token",
                user=who, channel=where, command="/rollback", text=case.command,
                response_url="{response_url}", trigger_id="{trigger}")
            if case.people:
                fields.update(user_id="{user_id}", user_name="{user_name}")
            return fields, None
        msg = self._request_message()
        block, element = self._button(msg, case.button or "")
        action = self.payloads.action_for(ws, block, element, None, f"{time.time():.6f}")
        message = {k: v for k, v in msg.items() if k not in ("recipient", "source", "channel")}
        payload = {
            "type": "block_actions", "user": self.payloads.user_ref(ws, who),
            "api_app_id": em.app_id, "token": "sandbox-verification-token",
            "container": {"type": "message", "message_ts": msg["ts"], "channel_id": where.id,
                          "is_ephemeral": False},
            "trigger_id": "{trigger}", "team": self.payloads.team_ref(ws), "enterprise": None,
            "is_enterprise_install": False,
            "channel": {"id": where.id, "name": self.payloads.channel_name(where)},
            "state": {"values": {}}, "response_url": "{response_url}", "actions": [action],
            "message": message,
        }
        return {"payload": json.dumps(payload)}, str(msg["ts"])

    def subs(self, case: Case, n: int, message_ts: str | None) -> list[dict[str, str]]:
        out = []
        base = self.em.answers.get(message_ts or "", 0)
        for i in range(n):
            user = self.people[i % PEOPLE] if case.people else case.user
            url = self.em.issue_response_url(channel=CHANNEL, user=user,
                                             message_ts=message_ts)
            trigger = self.em.issue_trigger_id(user)
            token = url.rstrip("/").rsplit("/", 1)[-1]
            land = {"views.open": trigger, "views.update": "filled:" + trigger,
                    "count": f"{message_ts}#{base + i + 1}"}.get(case.answer or "", token)
            out.append({"trigger": trigger, "response_url": url, "token": token,
                        "land": land, "user_id": self.em.user_id(user), "user_name": user})
        return out

    def _request_message(self) -> dict[str, Any]:
        from tests.support import messages

        latest = self.stack.bot.store.history(SERVICE, limit=1)
        if not latest:
            raise RuntimeError("no rollback to click on: run the request case first")
        return dict(messages.request_message(self.em, latest[0].id))

    @staticmethod
    def _button(msg: dict[str, Any], kind: str) -> tuple[dict[str, Any], dict[str, Any]]:
        from handlers import ids
        from sandbox.slack.blockkit import iter_elements

        wanted = {"approve": ids.APPROVE, "reject": ids.REJECT}.get(kind)
        for block, element in iter_elements(msg.get("blocks", [])):
            action_id = str(element.get("action_id", ""))
            if element.get("type") == "button" and (
                    action_id == wanted or kind == "checklist"
                    and action_id.startswith(f"{ids.CHECKLIST}:")):
                return block, element
        raise RuntimeError(f"no {kind} button on the request message")


def _settle(bot: Any, timeout: float = 30.0) -> None:
    """After-ack work of the last run finished, so it does not load the next one."""
    from tests.support.waiting import wait_until

    wait_until(lambda: bot.work_pool.pending == 0 and bot.decision_pool.pending == 0,
               timeout, message="the after-ack pools to drain")


def measure(stack: Any, bare: BareBolt, load: LoadClient, case: Case, *, concurrency: int,
            total: int, rounds: int, warmup: int) -> dict[str, Any]:
    """Interleaved rounds of one case at one level: latencies, landings, errors."""
    work = Workload(stack)
    em = stack.emulator
    targets = {"bot": f"{stack.server.url}/slack/events", "bare": bare.url}

    def run(name: str, n: int) -> dict[str, Any]:
        fields, ts = work.template(case)
        subs = work.subs(case, n, ts)
        paced = name == "bot" and case.answer is not None
        res = load.run(url=targets[name], secret=stack.signing_secret, fields=fields, n=n,
                       concurrency=concurrency, subs=subs,
                       expect_body=case.expect if name == "bot" else None,
                       forbid_body=BUSY if name == "bot" else None,
                       **({"await": "land", "await_timeout": AWAIT_TIMEOUT} if paced else {}))
        if name == "bot":
            _settle(stack.bot)
            res["landings"] = [em.landed[s["land"]] - res["sent"][str(i)]
                               for i, s in enumerate(subs) if s["land"] in em.landed]
            bad = [em.bad[s["token"]] for s in subs if s["token"] in em.bad]
            res["errors"] += len(bad)
            if bad and not res["first_error"]:
                res["first_error"] = f"answered after the ack: {bad[0]}"
        return res

    for name in targets:  # warm up: connections, caches; the request creates its rollback
        run(name, warmup)
    size = max(1, total // rounds)
    out: dict[str, Any] = {"bot": [], "bare": [], "rounds": [], "landings": [],
                           "errors": {"bot": 0, "bare": 0}, "first_errors": [],
                           "unanswered": 0}
    for r in range(rounds):
        order = list(targets) if r % 2 == 0 else list(reversed(targets))
        got: dict[str, list[float]] = {}
        for name in order:
            res = run(name, size)
            out[name].extend(res["latencies"])
            got[name] = res["latencies"]
            out["errors"][name] += res["errors"]
            if res["first_error"]:
                out["first_errors"].append(f"{name}: {res['first_error']}")
            if name == "bot":
                out["landings"].extend(res["landings"])
                out["unanswered"] += res["unanswered"]
        out["rounds"].append((got["bot"], got["bare"]))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n1", type=int, default=50, help="measured requests per app at c=1")
    # 1,000 at c=20 is 200 a round: a round's p99 is then between its 2nd and 3rd slowest
    # request. With 300 (60 a round) it was the round's slowest one, so one stall of the
    # shared machine decided the round (help, the same code in both apps, measured
    # 0.93-1.46 across runs at 300 and 0.80-1.04 at 1,000).
    parser.add_argument("--n20", type=int, default=1000,
                        help="measured requests per app at c=20")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds per case")
    parser.add_argument("--warmup", type=int, default=20, help="warm-up requests per app")
    parser.add_argument("--slack-rtt-ms", type=float, nargs="+", default=[0.0, 100.0],
                        help="Slack round trips to run (each a fresh stack)")
    parser.add_argument("--cases", nargs="+", default=[c.name for c in CASES],
                        choices=[c.name for c in CASES])
    args = parser.parse_args()
    quiet_logging()

    from sandbox.config import sandbox_config
    from sandbox.fake_platform import FakePlatform
    from sandbox.slack import DEFAULT_BOT_TOKEN
    from sandbox.stack import SandboxStack

    cases = [c for c in CASES if c.name in args.cases]
    rows: list[dict[str, object]] = []
    ok_all = True
    began = time.perf_counter()
    for rtt in args.slack_rtt_ms:
        read_end, write_end = os.pipe()
        em = slow_slack(rtt)
        em.on_land = lambda value, w=write_end: os.write(w, (value + "\n").encode())
        load = LoadClient(landing_fd=read_end)
        os.close(read_end)
        with fresh_database() as url, SandboxStack(
                config=sandbox_config(), database_url=url, emulator=em.start(),
                platforms={"fake": FakePlatform()}) as stack:
            assert stack.server is not None and stack.bot is not None
            bare = BareBolt(signing_secret=stack.signing_secret, token=DEFAULT_BOT_TOKEN,
                            api_url=em.base_url).start()
            try:
                results = {(c.name, level): measure(
                    stack, bare, load, c, concurrency=level, total=total,
                    rounds=args.rounds, warmup=args.warmup)
                    for level, total in ((1, args.n1), (20, args.n20)) for c in cases}
            finally:
                load.close()
                bare.stop()
                em.stop()
                os.close(write_end)
        ok_all &= report(results, cases, rtt=rtt, rows=rows, threads=bare.threads)
    print(f"total {time.perf_counter() - began:.0f}s")
    return 0 if record("ack_latency", rows) and ok_all else 1


def report(results: dict[tuple[str, int], dict[str, Any]], cases: list[Case], *,
           rtt: float, rows: list[dict[str, object]], threads: int) -> bool:
    print(f"\nack latency, bot vs bare Bolt, Slack RTT {rtt:g} ms, waitress threads={threads}")
    print(f"  {'case':10} {'c':>3} {'n':>4} {'bot p50':>8} {'bot p99':>8} {'bare p50':>8} "
          f"{'bare p99':>8} {'r p50':>6} {'r p99':>6} {'rnd p99':>7} "
          f"{'answer p50':>10} {'answer p99':>10}  verdict")
    ok_all = True
    for level in (1, 20):
        for case in cases:
            got = results[(case.name, level)]
            b, a = summary(got["bot"]), summary(got["bare"])
            r50, r99 = b["p50"] / a["p50"], b["p99"] / a["p99"]
            # The verdict: the median over rounds of each round's p99 ratio. On a shared
            # 2-core machine a burst of someone else's work lands in one round of one app
            # and moves a pooled p99 (help, the same code path in both, measured 0.60-1.42
            # pooled); the median of rounds is robust to a burst in a minority of rounds.
            by_round = statistics.median(percentile(x, 99) / percentile(y, 99)
                                         for x, y in got["rounds"])
            errors = got["errors"]["bot"] + got["errors"]["bare"]
            ok = by_round <= TARGET_P99_RATIO and errors == 0
            ok_all &= ok
            land = summary(got["landings"]) if got["landings"] else None
            answer = (f"{ms(land['p50'])} ms", f"{ms(land['p99'])} ms") if land else ("-", "-")
            verdict = "OK" if ok else "MISS"
            notes = []
            if errors:
                notes.append(f"errors {got['errors']}: {got['first_errors'][:1]}")
            if got["unanswered"]:
                notes.append(f"{got['unanswered']} answers not seen within {AWAIT_TIMEOUT:g}s")
            print(f"  {case.name:10} {level:>3} {len(got['bot']):>4} {ms(b['p50'])} "
                  f"{ms(b['p99'])} {ms(a['p50'])} {ms(a['p99'])} {r50:6.2f} {r99:6.2f} "
                  f"{by_round:7.2f} {answer[0]:>10} {answer[1]:>10}  {verdict}"
                  + (f"  ({'; '.join(notes)})" if notes else ""))
            result = (f"p99 ratio {by_round:.2f} (median of rounds; pooled {r99:.2f}: bot "
                      f"{ms(b['p99']).strip()} ms, bare {ms(a['p99']).strip()} ms)")
            if land:
                result += (f"; answer landed p50 {ms(land['p50']).strip()} ms, "
                           f"p99 {ms(land['p99']).strip()} ms")
            if errors:
                result += f"; {errors} errors"
            rows.append({"what": f"ack {case.name}, c={level}, Slack RTT {rtt:g} ms",
                         "result": result, "target": f"p99 ratio <= {TARGET_P99_RATIO} "
                         "(median of rounds), no errors", "ok": ok})
    return ok_all


if __name__ == "__main__":
    raise SystemExit(main())
