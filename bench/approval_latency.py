"""Benchmark: Approve click -> first platform mutation, through the real bot over HTTP.

Each sample: alice requests ``/rollback hotel-voice-bot --severity P0`` in the incident
channel, the bench waits until the request message is fully rendered (its blocks show
*Assessment* and the log file is attached), then bob clicks *Approve*; the clock runs from
the signed HTTP request leaving the driver to the FakePlatform's ``after_mutation`` hook
firing for the first time. The rollback is then left to complete (one active rollback per
service) before the next sample.

Side by side (interleaved, W,P,W,P...): ``wake`` is the bot as built (approval wakes the
executor); ``poll`` is the same bot with the wake-up call swallowed, so the executor only
finds the work on its poll interval -- the baseline the wake-up has to beat.
Target: p99 < 250 ms for ``wake``.

Run: ``.venv/bin/python bench/approval_latency.py`` (``--help`` for sizes).
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import fresh_database, ms, quiet_logging, summary  # noqa: E402

TARGET_P99 = 0.250
CHANNEL = "inc-hotel-voice-bot"
SERVICE = "hotel-voice-bot"
PHASES = (
    ("http_ack", "click sent -> HTTP ack received"),
    ("to_listener", "click sent -> approve() starts (Bolt dispatch)"),
    ("approve", "approve() start -> on_approved() wakes the executor (CAS, chat.update, jobs)"),
    ("wake_to_claim", "wake() -> claim_next() returned the rollback"),
    ("claim_to_mutation", "claim -> first mutation (START, Slack posts, steps)"),
    ("slack_api", "time inside Slack Web API calls (refresh/thread) in the window"),
)


class Probe:
    """Timestamps from instrumentation wrappers around the live objects (they call through)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.armed = False
        self.marks: dict[str, float] = {}
        self.slack: list[tuple[float, float, str]] = []
        self.mutated = threading.Event()

    def arm(self) -> None:
        with self.lock:
            self.marks, self.slack, self.armed = {}, [], True
            self.mutated.clear()

    def mark(self, name: str) -> None:
        now = time.perf_counter()
        with self.lock:
            if self.armed and name not in self.marks:
                self.marks[name] = now

    def slack_call(self, start: float, end: float, name: str) -> None:
        with self.lock:
            # calls that started after the click left and ended before the first mutation
            if (self.armed and "mutation" not in self.marks
                    and start >= self.marks.get("sent", float("inf"))):
                self.slack.append((start, end, name))

    def mutation(self, _method: str) -> None:
        self.mark("mutation")
        self.mutated.set()


def instrument(stack: Any, platform: Any, probe: Probe, *, wake_enabled: Callable[[], bool]
               ) -> None:
    bot = stack.bot
    store, service, chat = bot.store, bot.service, bot.service.chat
    real_wake, real_claim, real_approve = service.on_approved, store.claim_next, service.approve

    def wake(rollback_id: int) -> None:
        probe.mark("wake")
        if wake_enabled():
            real_wake(rollback_id)

    def claim_next(**kw: Any) -> Any:
        rb = real_claim(**kw)
        if rb is not None:
            probe.mark("claim")
        return rb

    def approve(*a: Any, **kw: Any) -> Any:
        probe.mark("approve")
        return real_approve(*a, **kw)

    service.on_approved, store.claim_next, service.approve = wake, claim_next, approve
    for name in ("refresh", "thread"):
        real = getattr(chat, name)

        def timed(*a: Any, _real: Callable[..., Any] = real, _name: str = name, **kw: Any) -> Any:
            start = time.perf_counter()
            try:
                return _real(*a, **kw)
            finally:
                probe.slack_call(start, time.perf_counter(), _name)

        setattr(chat, name, timed)
    platform.after_mutation = probe.mutation


def pending_request(store: Any) -> Any:
    """The service's active rollback once its request message exists, else None."""
    rb = store.active_for_service(SERVICE)
    return rb if rb is not None and rb.message_ts else None


def finished(store: Any, rollback_id: int) -> Any:
    rb = store.get(rollback_id)
    terminal = ("completed", "failed", "needs_attention", "verification_failed", "unstable")
    return rb if rb.state.value in terminal else None


def add_rtt(client: Any, seconds: float) -> None:
    """Delay every Web API call made through the bot's shared WebClient (what-if runs)."""
    real = client.api_call

    def api_call(*a: Any, **kw: Any) -> Any:
        time.sleep(seconds)
        return real(*a, **kw)

    client.api_call = api_call


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=60, help="measured approvals (wake)")
    parser.add_argument("--poll-samples", type=int, default=15,
                        help="interleaved baseline approvals with the wake-up swallowed (0: off)")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--slack-rtt-ms", type=float, default=0.0,
                        help="add this round trip to every Web API call the bot's core makes "
                             "(the local emulator answers in ~2 ms; api.slack.com does not)")
    args = parser.parse_args()
    quiet_logging()

    from handlers import ids
    from platforms.base import Target
    from sandbox.config import sandbox_config
    from sandbox.fake_platform import FakePlatform
    from sandbox.slack import SlackDriver
    from sandbox.stack import SandboxStack

    class TimedDriver(SlackDriver):
        """The sandbox driver, noting when the signed request leaves and the ack is back."""

        def send(self, body: str, **kw: Any) -> Any:
            probe.mark("sent")
            try:
                return super().send(body, **kw)
            finally:
                probe.mark("acked")

    probe = Probe()
    platform = FakePlatform()
    wake_on = [True]
    rows: dict[str, list[dict[str, Any]]] = {"wake": [], "poll": []}
    began = time.perf_counter()
    with fresh_database() as url, SandboxStack(
            config=sandbox_config(), database_url=url, platforms={"fake": platform}) as stack:
        assert stack.server is not None and stack.bot is not None
        em, store = stack.emulator, stack.bot.store
        poll_seconds = stack.bot.config.executor.poll_seconds
        instrument(stack, platform, probe, wake_enabled=lambda: wake_on[0])
        if args.slack_rtt_ms > 0:
            add_rtt(stack.bot.bolt.client, args.slack_rtt_ms / 1000)  # shared WebClient
        driver = TimedDriver(em, f"{stack.server.url}/slack/events", stack.signing_secret)

        target = Target("fake", "production", SERVICE)
        releases = [0]

        def one(mode: str) -> dict[str, Any]:
            # Each sample is a fresh incident: a new bad release goes out first (the bot
            # refuses to roll a service back further from a completed rollback's target).
            if releases[0]:
                platform.deploy(target, f"registry.example/app:bad-{releases[0]}",
                                change_cause="bench release")
            releases[0] += 1
            files_before = len(em.files())
            reply = driver.slash_command(
                "/rollback", f"{SERVICE} --severity P0 --reason bench", user="alice",
                channel=CHANNEL)
            assert reply.status == 200, reply.body
            rb = em.wait_for(lambda: pending_request(store), timeout=15,
                             description="request stored")
            assert rb is not None and rb.message_ts is not None
            ts: str = rb.message_ts
            em.wait_for(lambda: "*Assessment*" in str((em.message(CHANNEL, ts) or {})
                                                     .get("blocks")), timeout=15,
                        description="assessment rendered")
            em.wait_for(lambda: len(em.files()) > files_before, timeout=15,
                        description="log file attached")
            wake_on[0] = mode == "wake"
            probe.arm()
            click = driver.click(CHANNEL, ts, ids.APPROVE, "bob")
            assert click.status == 200, click.body
            if not probe.mutated.wait(10):
                raise RuntimeError(f"no platform mutation within 10 s for {rb.ref}")
            rid = rb.id
            done = em.wait_for(lambda: finished(store, rid), timeout=30,
                               description="rollback finished")
            assert done is not None
            if done.state.value != "completed":
                raise RuntimeError(f"{done.ref} ended {done.state.value}: {done.last_error}")
            with probe.lock:
                m, calls = dict(probe.marks), list(probe.slack)
                probe.armed = False
            return {
                "total": m["mutation"] - m["sent"],
                "http_ack": m["acked"] - m["sent"],
                "to_listener": m["approve"] - m["sent"],
                "approve": m["wake"] - m["approve"],
                "wake_to_claim": m["claim"] - m["wake"],
                "claim_to_mutation": m["mutation"] - m["claim"],
                "slack_api": sum(e - s for s, e, _ in calls),
                "slack_calls": float(len(calls)),
                "sequence": " ".join(name for _, _, name in calls),
            }

        try:
            for _ in range(args.warmup):
                one("wake")
            plan = ["wake"] * args.samples
            if args.poll_samples:  # spread the baseline evenly through the wake samples
                step = max(1, args.samples // args.poll_samples)
                for i in range(args.poll_samples):
                    plan.insert(min(len(plan), i * (step + 1) + 1), "poll")
            for mode in plan:
                rows[mode].append(one(mode))
        finally:
            driver.close()
    elapsed = time.perf_counter() - began

    print(f"approval latency: Approve click -> first platform mutation (P0, fake platform), "
          f"executor poll {poll_seconds:g}s, added Slack RTT {args.slack_rtt_ms:g} ms, "
          f"{elapsed:.1f}s")
    print(f"  {'mode':5} {'n':>4} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} {'mean ms':>8} "
          f"{'max ms':>8}")
    for mode in ("wake", "poll"):
        if rows[mode]:
            s = summary([r["total"] for r in rows[mode]])
            print(f"  {mode:5} {len(rows[mode]):>4} {ms(s['p50']):>8} {ms(s['p90']):>8} "
                  f"{ms(s['p99']):>8} {ms(s['mean']):>8} {ms(s['max']):>8}")
    wake = summary([r["total"] for r in rows["wake"]])
    if rows["poll"]:
        poll = summary([r["total"] for r in rows["poll"]])
        print(f"  ratio wake/poll: p50 {wake['p50'] / poll['p50']:.2f}  "
              f"p99 {wake['p99'] / poll['p99']:.2f}")
    ok = wake["p99"] < TARGET_P99
    print(f"  target p99 < {TARGET_P99 * 1000:.0f} ms: {'OK' if ok else 'MISSED'} "
          f"(p99 {wake['p99'] * 1000:.1f} ms)")
    print("  breakdown (wake), ms:")
    print(f"    {'phase':18} {'p50':>7} {'p90':>7} {'p99':>7}  what")
    for key, what in PHASES:
        s = summary([r[key] for r in rows["wake"]])
        print(f"    {key:18} {ms(s['p50'])} {ms(s['p90'])} {ms(s['p99'])}  {what}")
    calls = summary([r["slack_calls"] for r in rows["wake"]])
    common = Counter(str(r["sequence"]) for r in rows["wake"]).most_common(1)[0][0]
    print(f"    Slack Web API calls before the first mutation: {calls['p50']:.0f} (median), "
          f"serially: {common or '-'}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
