"""Benchmark: a mass rollback on one instance -- rollbacks per minute, rollouts in flight,
command acks while it runs, and the resident set after each wave.

One real bot (``SandboxStack``: ``create_app`` behind ``HttpServer``, the Slack emulator,
real PostgreSQL) with copies of the sandbox service on the fake platform, whose rollouts
take ``--rollout-seconds`` (the step's real wait path: the executor looks at
``rollout_status`` until the rollout is over). A wave requests a P0 app rollback of
``--services`` services over signed HTTP (pending approval), then clicks *Approve* on all
of them the way a crowd of approvers would (at most ``--click-window`` clicks undecided at
once; a click the bot answered "busy" is clicked again) and measures, from the first
click: rollbacks per minute that finished execution and verification, the most rollouts
in flight at once (steps waiting on their rollout), and the acks of signed ``/rollback
help`` and ``/rollback status`` sent all along (c=2), against the same acks measured idle
on that bot before the requests. ``--waves`` waves run one after the other on new
services; the process's resident set is read after each: the first wave warms it up, the
later ones must not grow it (the process holds the emulators too: their request and event
logs are dropped before each reading; the messages they keep still count).

Side by side: ``parked`` is the bot as built (a waiting step parks the rollback and frees
its worker); ``held`` is the same bot with ``executor.release_while_waiting: false`` (the
worker blocks until the rollout ends), on ``--held-services`` services for
``--held-window`` seconds: it can finish at most workers x window / rollout time.
Goals: parked rollbacks/min above the held worker bound (workers x 60 / rollout seconds)
several times over (>= 5x), every rollout in flight at once, ack p99 < 300 ms under load
for each command, resident set growth <= 5 % after the first wave.

Run: ``.venv/bin/python bench/mass_rollback.py`` (``--help`` for sizes);
``bench/thousand_in_flight.py`` runs it with a thousand services.
"""

from __future__ import annotations

import argparse
import copy
import gc
import logging
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import fresh_database, ms, quiet_logging, record, slash_fields, summary  # noqa: E402
from bench.ack_latency import LoadClient  # noqa: E402

CHANNEL = "inc-hotel-voice-bot"
TARGET_ACK_P99 = 0.300
TARGET_SPEEDUP = 5.0  # parked rollbacks/min over the held worker bound
TARGET_RSS_GROWTH = 0.05  # of the resident set after the first (warm-up) wave
FINISHED = {"monitoring", "completed", "unstable", "verification_failed"}
STOPPED = {"failed", "needs_attention", "cancelled", "rejected", "expired"}
COMMANDS = ("help", "status")


def _config(services: list[str], *, release: bool, rollout_seconds: float,
            workers: int | None) -> Any:
    from sandbox.config import parse_sandbox_config, sandbox_config_dict

    data = sandbox_config_dict()
    base = data["services"]["hotel-voice-bot"]
    for name in services:
        svc = copy.deepcopy(base)
        svc["fake"] = {"scope": "production", "name": name,
                       "rollout_timeout_seconds": max(600.0, 4 * rollout_seconds)}
        svc.pop("incident_channel_pattern", None)
        data["services"][name] = svc
    data["executor"]["release_while_waiting"] = release
    if workers is not None:
        data["executor"]["workers"] = workers
    return parse_sandbox_config(data)


class AckProbe:
    """Sends signed help/status commands in rounds from a separate process until stopped."""

    def __init__(self, stack: Any, *, n: int) -> None:
        assert stack.server is not None
        self.url = f"{stack.server.url}/slack/events"
        self.secret = stack.signing_secret
        self.fields = {c: slash_fields(stack, "alice", c) for c in COMMANDS}
        self.n = n
        self.client = LoadClient()
        self.acks: dict[str, list[float]] = {c: [] for c in COMMANDS}
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def round(self, into: dict[str, list[float]]) -> None:
        for command in COMMANDS:
            got = self.client.run(url=self.url, secret=self.secret, fields=self.fields[command],
                                  n=self.n, concurrency=2, expect_body=None)
            into[command] += got["latencies"]
            if got["errors"]:
                self.errors.append(f"{command}: {got['first_error']}")

    def start(self) -> None:
        def loop() -> None:
            while not self._stop.is_set():
                self.round(self.acks)

        self._thread = threading.Thread(target=loop, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=120)
        self.client.close()


def _in_flight(store: Any) -> int:
    with store.pool.connection() as conn:
        row = conn.execute("SELECT count(*) FROM rollback_steps WHERE kind = 'wait_rollout'"
                           " AND status IN ('started', 'waiting')").fetchone()
    return int(row[0]) if row else 0


def _states(store: Any, ids: list[int]) -> dict[int, str]:
    with store.pool.connection() as conn:
        rows = conn.execute("SELECT id, state FROM rollbacks WHERE id = ANY(%s)",
                            (ids,)).fetchall()
    return {int(r[0]): str(r[1]) for r in rows}


def _approve_all(driver: Any, store: Any, ids: list[int], *, window: int, approve: str,
                 retry_after: float = 10.0) -> int:
    """Click *Approve* on every rollback the way a crowd of approvers would: at most
    ``window`` clicks still undecided at once (a person waits for the message to change
    before the next), and a click still undecided after ``retry_after`` seconds -- the bot
    answered "busy, retry in a moment" -- is clicked again. Returns the repeat clicks."""
    def click(rid: int) -> None:
        ts = store.get(rid).message_ts
        assert ts is not None
        reply = driver.click(CHANNEL, ts, approve, "bob")
        assert reply.status == 200, reply.body

    todo, undecided, repeats = list(ids), dict[int, float](), 0
    while todo or undecided:
        now = time.perf_counter()
        for rid, state in _states(store, list(undecided)).items():
            if state != "pending_approval":
                del undecided[rid]
            elif now - undecided[rid] > retry_after:
                click(rid)
                undecided[rid], repeats = time.perf_counter(), repeats + 1
        while todo and len(undecided) < window:
            rid = todo.pop(0)
            click(rid)
            undecided[rid] = time.perf_counter()
        if undecided:
            time.sleep(0.05)  # poll the decisions (a bench loop, not a test)
    return repeats


def _rss_mb() -> float:
    """This process's resident set (bot, emulators and bench alike), from /proc."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def run(mode: str, *, services: int, rollout_seconds: float, window: float | None,
        ack_n: int, workers: int | None, click_window: int, waves: int = 1) -> dict[str, Any]:
    """One instance; ``waves`` times in turn, ``services`` P0 rollbacks (new services each
    wave) requested, then approved at once; figures for ``mode`` from the first wave, the
    resident set after each."""
    from sandbox.fake_platform import FakePlatform
    from sandbox.stack import SandboxStack

    names = [[f"svc-{w}-{i:04d}" for i in range(1, services + 1)] for w in range(waves)]
    platform = FakePlatform(rollout_seconds=rollout_seconds)
    config = _config([n for wave in names for n in wave], release=mode == "parked",
                     rollout_seconds=rollout_seconds, workers=workers)
    with fresh_database() as url, SandboxStack(
            config=config, database_url=url, platforms={"fake": platform},
            scheduler=False) as stack:
        assert stack.bot is not None and stack.driver is not None
        probe = AckProbe(stack, n=ack_n)
        for _ in range(2):  # warm-up, then the idle figures
            probe.round({c: [] for c in COMMANDS})
        idle: dict[str, list[float]] = {c: [] for c in COMMANDS}
        for _ in range(3):
            probe.round(idle)
        rss = [_rss_mb()]
        peak = [0]
        sampling = threading.Event()

        def sample() -> None:
            while not sampling.wait(0.25):
                peak[0] = max(peak[0], _in_flight(stack.bot.store))

        sampler = threading.Thread(target=sample, daemon=True)
        probe.start()
        sampler.start()
        try:
            figures = []
            for wave in names:
                figures.append(_wave(stack, wave, rollout_seconds=rollout_seconds,
                                     window=window, click_window=click_window))
                # The emulator's request and event logs (~450 KB a rollback, kept for tests
                # and the console; real Slack keeps none in our process) would otherwise be
                # counted as the bot's growth.
                stack.emulator.forget_logs()
                gc.collect()
                rss.append(_rss_mb())
        finally:
            sampling.set()
            sampler.join()
            probe.stop()
        # Held workers are still inside their rollouts when the stack stops: their
        # heartbeats then fail against the closed pool, as expected.
        logging.getLogger("bot.execution.executor").setLevel(logging.ERROR)
        return {"mode": mode, "services": services,
                "workers": stack.bot.config.executor.workers,
                "rollout_seconds": rollout_seconds, **figures[0], "waves": figures,
                "peak_in_flight": peak[0], "idle": idle, "load": probe.acks,
                "ack_errors": probe.errors, "rss_mb": rss}


def _wave(stack: Any, names: list[str], *, rollout_seconds: float, window: float | None,
          click_window: int) -> dict[str, Any]:
    """Request a P0 rollback of each of ``names``, approve them all, wait for the ends."""
    from handlers import ids as action_ids

    store, em, driver = stack.bot.store, stack.emulator, stack.driver

    def request(name: str) -> int:
        reply = driver.slash_command("/rollback", f"{name} --severity P0 --scope app "
                                     "--reason bench", user="bob", channel=CHANNEL)
        assert reply.status == 200, reply.body

        def posted() -> int | None:
            rb = store.active_for_service(name)
            return rb.id if rb is not None and rb.message_ts else None

        rid = em.wait_for(posted, timeout=60, description=f"{name}'s request message")
        assert rid is not None
        return rid

    began = time.perf_counter()
    with ThreadPoolExecutor(4) as pool:
        ids = list(pool.map(request, names))
    requested = time.perf_counter() - began
    pending = _states(store, ids)
    assert set(pending.values()) == {"pending_approval"}, pending

    t0 = time.perf_counter()
    repeats = _approve_all(driver, store, ids, window=click_window, approve=action_ids.APPROVE)
    approved = time.perf_counter() - t0
    finished_at: dict[int, float] = {}
    deadline = t0 + (window if window is not None else 4 * rollout_seconds + 240)
    while time.perf_counter() < deadline and len(finished_at) < len(ids):
        now = time.perf_counter()
        for rid, state in _states(store, ids).items():
            if rid not in finished_at and (state in FINISHED or state in STOPPED):
                finished_at[rid] = now - t0
        time.sleep(0.2)
    elapsed = time.perf_counter() - t0
    final = _states(store, ids)
    ok_done = [rid for rid in finished_at if final[rid] in FINISHED]
    stopped = {rid: final[rid] for rid in finished_at if final[rid] in STOPPED}
    if window is None:  # parked: the rate over the time the last one took (all finished)
        span = max(finished_at.values()) if finished_at else elapsed
    else:  # held: what the workers got through in the window
        span = elapsed
    return {"requested_s": requested, "approved_s": approved, "repeat_clicks": repeats,
            "finished": len(ok_done), "stopped": stopped, "span_s": span,
            "per_min": len(ok_done) / span * 60 if span else 0.0,
            "unfinished": len(ids) - len(finished_at)}


def main(argv: list[str] | None = None, *, name: str = "mass_rollback") -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--services", type=int, default=50,
                        help="services, each with one P0 rollback approved at once (parked)")
    parser.add_argument("--rollout-seconds", type=float, default=30.0,
                        help="how long every rollout takes on the platform")
    parser.add_argument("--held-services", type=int, default=12,
                        help="rollbacks approved at once for the held baseline (0: skip it "
                             "and compare with the worker bound alone)")
    parser.add_argument("--held-window", type=float, default=75.0,
                        help="seconds the held baseline runs (it cannot finish them all)")
    parser.add_argument("--ack-n", type=int, default=20, help="acks per command per round")
    parser.add_argument("--click-window", type=int, default=32,
                        help="approve clicks still undecided at once (approvers at work)")
    parser.add_argument("--workers", type=int, default=None,
                        help="executor workers (default: the configuration's default)")
    parser.add_argument("--waves", type=int, default=2,
                        help="parked waves of --services new services each, one after the "
                             "other; the resident set is read after each (1: no RSS goal)")
    parser.add_argument("--ack-target-ms", type=float, default=TARGET_ACK_P99 * 1000,
                        help="the ack p99 goal under load")
    args = parser.parse_args(argv)
    quiet_logging()
    logging.getLogger("slack_sdk").setLevel(logging.CRITICAL)

    began = time.perf_counter()
    parked = run("parked", services=args.services, rollout_seconds=args.rollout_seconds,
                 window=None, ack_n=args.ack_n, workers=args.workers,
                 click_window=args.click_window, waves=args.waves)
    held = run("held", services=args.held_services, rollout_seconds=args.rollout_seconds,
               window=args.held_window, ack_n=args.ack_n, workers=args.workers,
               click_window=args.click_window) \
        if args.held_services else None
    total = time.perf_counter() - began

    workers = parked["workers"]
    bound = workers * 60 / args.rollout_seconds  # held workers: each one rollout at a time
    print(f"mass rollback: one instance, {workers} executor workers, fake platform rollouts "
          f"of {args.rollout_seconds:g}s, P0 app rollbacks approved at once, {total:.0f}s")
    print(f"  {'mode':7} {'rollbacks':>9} {'finished':>8} {'span s':>7} {'per min':>8} "
          f"{'peak in flight':>14} {'stopped':>7}")
    for r in (parked, held) if held else (parked,):
        print(f"  {r['mode']:7} {r['services']:>9} {r['finished']:>8} {r['span_s']:>7.1f} "
              f"{r['per_min']:>8.1f} {r['peak_in_flight']:>14} {len(r['stopped']):>7}")
    print(f"  held worker bound: {workers} x 60 / {args.rollout_seconds:g}s = {bound:.1f}/min; "
          f"parked/bound {parked['per_min'] / bound:.1f}x"
          + (f", parked/held {parked['per_min'] / max(held['per_min'], 1e-9):.1f}x"
             if held else ""))
    print(f"  requests: {parked['services']} in {parked['requested_s']:.1f}s; approvals "
          f"clicked in {parked['approved_s']:.1f}s ({parked['repeat_clicks']} clicked again "
          "after a busy answer)")
    print(f"  {'acks':16} {'n':>5} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}   p99 load/idle")
    rows: list[dict[str, object]] = []
    ack_ok = True
    for command in COMMANDS:
        i, load = summary(parked["idle"][command]), summary(parked["load"][command])
        for label, vals, s in ((f"{command} idle", parked["idle"][command], i),
                               (f"{command} under load", parked["load"][command], load)):
            print(f"  {label:16} {len(vals):>5} {ms(s['p50'])} {ms(s['p99'])} {ms(s['max'])}"
                  + (f"   {load['p99'] / i['p99']:.2f}" if label.endswith("load") else ""))
        good = load["p99"] * 1000 < args.ack_target_ms and bool(parked["load"][command])
        ack_ok = ack_ok and good
        rows.append({"what": f"`/rollback {command}` ack p99 during a mass rollback "
                             f"({parked['services']} services)",
                     "result": f"{load['p99'] * 1000:.0f} ms (idle {i['p99'] * 1000:.0f} ms, "
                               f"ratio {load['p99'] / i['p99']:.2f})",
                     "target": f"< {args.ack_target_ms:.0f} ms", "ok": good})
    all_in_flight = parked["peak_in_flight"] >= parked["services"]
    fast = parked["per_min"] >= TARGET_SPEEDUP * bound and all(
        w["unfinished"] == 0 and not w["stopped"] for w in parked["waves"])
    rows.append({"what": f"rollbacks/min, {parked['services']} services, {workers} workers, "
                         f"{args.rollout_seconds:g}s rollouts",
                 "result": f"{parked['per_min']:.0f}/min (held workers: "
                           + (f"{held['per_min']:.1f}/min, " if held else "")
                           + f"bound {bound:.1f}/min)",
                 "target": f">= {TARGET_SPEEDUP:g}x the held bound", "ok": fast})
    rows.append({"what": "rollouts in flight at once (one instance)",
                 "result": f"{parked['peak_in_flight']} of {parked['services']}",
                 "target": "all of them", "ok": all_in_flight})
    for r in (parked, held) if held else (parked,):
        if r["stopped"] or r["ack_errors"]:
            print(f"  {r['mode']}: stopped {r['stopped']}; ack errors {r['ack_errors'][:2]}")
    rss = parked["rss_mb"]
    print("  resident set MB: " + ", ".join(
        f"{label} {mb:.0f}" for label, mb in zip(
            ["warm"] + [f"after wave {i}" for i in range(1, len(rss))], rss, strict=True)))
    rss_ok = True
    if len(rss) >= 3:  # wave 1 warms the caches up; later waves must not grow it
        growth = rss[-1] - rss[1]
        rss_ok = growth <= TARGET_RSS_GROWTH * rss[1]
        rows.append({"what": f"resident set over wave 2..{len(rss) - 1} "
                             f"({parked['services']} rollbacks each)",
                     "result": f"{rss[1]:.0f} -> {rss[-1]:.0f} MB ({growth:+.1f} MB; "
                               f"{rss[0]:.0f} MB before wave 1)",
                     "target": f"growth <= {TARGET_RSS_GROWTH:.0%} after warm-up",
                     "ok": rss_ok})
    ok = record(name, rows)
    print(f"  goals: rollbacks/min >= {TARGET_SPEEDUP:g}x held bound: "
          f"{'OK' if fast else 'MISSED'}; all in flight: {'OK' if all_in_flight else 'MISSED'};"
          f" ack p99 < {args.ack_target_ms:.0f} ms: {'OK' if ack_ok else 'MISSED'};"
          f" resident set flat: {'OK' if rss_ok else 'MISSED'}")
    return 0 if ok and ack_ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
