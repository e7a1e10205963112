"""Stability monitors at scale: lateness of each check against its slot, share of checks
done, checks/s and the bot's CPU, for 100 / 300 / 1,000 monitors at 5 s and 300 s
intervals, the pooled scheduler beside the serial one (a pool of one thread) in one run.

Each case is the real bot (``SandboxStack``: ``create_app``, the leader scheduler's loop,
the real ``monitor_tick`` job) on a fresh database with N rollbacks in ``monitoring``, one
open monitor each, their slots spread evenly over one interval. Every check queries a REAL
Prometheus (the Debian binary, scraping itself; the error-rate query is a ratio of its own
HTTP requests, so it has data) and probes a health URL served by a separate process, so
neither competes with the bot for its GIL. Lateness is ``sample.at - sample.due_at`` (both
stored by the bot). The bot's CPU is this process's CPU time over the observation window's
wall time (100 % = one core); the bench itself only sleeps meanwhile. Prometheus' CPU is
read from /proc and printed beside it.

At 300 s the window sees only the checks that fall due in it (N x window / 300): the real
rate, not a compressed clock. Exit status 1 unless every pooled case has p99 lateness
< 1 s with >= 99 % of its checks done (the goal: 1,000 monitors every 5 s).
"""

from __future__ import annotations

import argparse
import copy
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import percentile, quiet_logging, record  # noqa: E402

GOAL_P99 = 1.0
GOAL_DONE = 0.99
# Prometheus' own HTTP requests, 5xx over all: real series, real PromQL, always some data
# (our checks are requests too).
ERROR_RATE = ('sum(rate(prometheus_http_requests_total{code=~"5.."}[30s]) or vector(0))'
              ' / sum(rate(prometheus_http_requests_total[30s]))')


@dataclass
class Case:
    monitors: int
    interval: float
    workers: int


@dataclass
class Outcome:
    case: Case
    # Seconds after the slot for every slot in the window: done ones exactly, the others
    # as a lower bound (until the measurement).
    late: list[float]
    expected: int  # slots that fell due in the window (less the 1 s the goal allows)
    done: int  # of those, checks that ran
    rate: float  # checks started per second in the window
    cpu: float  # bot process CPU / wall, 1.0 = one core
    prom_cpu: float
    observed: float
    pool_wait_ms: float  # mean wait for a database connection (psycopg_pool's stats)

    @property
    def cpu_per_check_ms(self) -> float:
        return self.cpu / self.rate * 1000 if self.rate else 0.0

    @property
    def share(self) -> float:
        return self.done / self.expected if self.expected else 1.0


# ---------------------------------------------------------------------- dependencies
@contextmanager
def health_server() -> Iterator[str]:
    """``python -m http.server`` in its own process serving ``/healthz`` (a file)."""
    import socket

    with tempfile.TemporaryDirectory(prefix="rbbench-health-") as tmp:
        Path(tmp, "healthz").write_text("ok\n")
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        proc = subprocess.Popen([sys.executable, "-m", "http.server", str(port), "--bind",
                                 "127.0.0.1", "--directory", tmp],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        url = f"http://127.0.0.1:{port}/healthz"
        try:
            import httpx

            from tests.support.waiting import wait_until

            def up() -> bool:
                try:
                    return httpx.get(url, timeout=1).status_code == 200
                except httpx.HTTPError:
                    return False
            wait_until(up, timeout=15, message="the health server")
            yield url
        finally:
            proc.terminate()
            proc.wait(10)


@contextmanager
def prometheus() -> Iterator[tuple[str, int]]:
    """A real Prometheus scraping itself every second; (url, pid)."""
    from sandbox.prometheus import SandboxPrometheus, find_prometheus

    if find_prometheus() is None:
        raise SystemExit("bench/monitors.py needs a real Prometheus: apt-get install "
                         "prometheus, or set PROMETHEUS_BIN")
    with tempfile.TemporaryDirectory(prefix="rbbench-prom-") as tmp:
        runner = SandboxPrometheus(targets={"prometheus": ["127.0.0.1:1"]}, workdir=Path(tmp))
        runner.start()
        port = runner.url.rsplit(":", 1)[1]
        # Scrape itself: rewrite the target once the port is known, and reload.
        config = Path(tmp, "prometheus.yml")
        config.write_text(config.read_text().replace("127.0.0.1:1", f"127.0.0.1:{port}"))
        assert runner._process is not None
        runner._process.send_signal(1)  # SIGHUP: Prometheus reloads its configuration
        try:
            yield runner.url, runner._process.pid
        finally:
            runner.stop()


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# ---------------------------------------------------------------------- one case
def _config(n: int, interval: float, workers: int, prom_url: str, health_url: str
            ) -> dict[str, Any]:
    from sandbox.config import sandbox_config_dict

    data = sandbox_config_dict()
    template = data["services"].pop("hotel-voice-bot")
    template.pop("watcher", None)
    template["stakeholders"] = {"channels": []}
    template["prometheus"] = {"url": prom_url, "error_rate_query": ERROR_RATE,
                              "error_rate_threshold": 0.5}
    template["health"] = {"url": health_url, "timeout_seconds": 5, "samples": 1}
    # No thread line per check: 200 Slack posts a second is not a thing Slack allows, and
    # the Slack path is not what this measures (alerts and the report still post).
    template["monitoring"] = {"duration_seconds": 3600, "interval_seconds": interval,
                              "consecutive_health_failures": 3, "post_each_check": False}
    for i in range(n):
        svc = copy.deepcopy(template)
        name = f"svc-{i:04d}"
        svc["fake"] = {"scope": "production", "name": name}
        svc["incident_channel_pattern"] = f"inc-{name}*"
        data["services"][name] = svc
    data["scheduler"] = {"workers": workers}
    return data


def _seed_rollbacks(db: str, n: int) -> list[int]:
    """N rollbacks walked to ``monitoring`` on a store of our own (no listeners: nothing
    else is scheduled), before the bot starts."""
    from bot.domain.lifecycle import Event
    from bot.domain.models import PlannedStep
    from bot.persistence.db import open_pool
    from bot.persistence.store import Store
    from platforms.base import Revision, Target

    store = Store(open_pool(db, max_size=8))
    now = datetime.now(UTC)

    def one(i: int) -> int:
        name = f"svc-{i:04d}"
        rb = store.create_rollback(
            service=name, platform="fake", severity="P2", policy_mode="evaluate",
            scope=["app"], reason="bench", requester="U0ALICE", channel_id="CBENCH",
            channel_name=f"inc-{name}", current_revision=Revision("rs-3", 3, current=True),
            target_revision=Revision("rs-2", 2), target=Target("fake", "production", name),
            steps=[PlannedStep("app_rollback", "roll")], checklist={}, assessment={},
            expires_at=now + timedelta(hours=2), created_at=now)
        for event in (Event.APPROVE, Event.START, Event.STEPS_DONE, Event.VERIFIED):
            store.transition(rb.id, event, actor="bench")
        return rb.id

    try:
        with ThreadPoolExecutor(8) as pool:
            return list(pool.map(one, range(n)))
    finally:
        store.pool.close()


def _open_monitors(db: str, ids: Sequence[int], interval: float, first_due: datetime) -> None:
    """One monitor per rollback, slots spread evenly over one interval from ``first_due``;
    the first check scheduled like the coordinator schedules it (start + 1 interval)."""
    from bot.aftercare.coordinator import MONITOR_TICK_JOB
    from bot.persistence.aftercare_store import AftercareStore
    from bot.persistence.db import open_pool
    from bot.persistence.jobs import JobStore

    pool = open_pool(db, max_size=8)
    store, jobs = AftercareStore(pool), JobStore(pool)

    def one(k: int) -> None:
        start = first_due + timedelta(seconds=interval * k / len(ids) - interval)
        m = store.open_monitor(rollback_id=ids[k], key=f"{ids[k]}:verify:1", started_at=start,
                               ends_at=start + timedelta(hours=1), interval_seconds=interval)
        jobs.schedule(kind=MONITOR_TICK_JOB, rollback_id=m.rollback_id,
                      due_at=start + timedelta(seconds=interval),
                      payload={"monitor": m.id, "seq": 1},
                      dedupe_key=f"{MONITOR_TICK_JOB}:{m.id}:1")

    try:
        with ThreadPoolExecutor(8) as ex:
            list(ex.map(one, range(len(ids))))
    finally:
        pool.close()


def _shift(db: str, planned: datetime, wanted: datetime) -> datetime:
    """Move every window and first check so the first falls due at ``wanted``: opening
    1,000 monitors on a loaded machine can take longer than planned, and slots already
    past when the scheduler starts would be a backlog of the bench's making."""
    import psycopg

    delta = wanted - planned
    with psycopg.connect(db) as conn:  # one transaction
        conn.execute("UPDATE monitors SET started_at = started_at + %s,"
                     " ends_at = ends_at + %s", (delta, delta))
        conn.execute("UPDATE scheduled_jobs SET due_at = due_at + %s", (delta,))
    return wanted


def _measure(db: str, begin: datetime, end: datetime, stopped: datetime
             ) -> tuple[list[float], int, int, int]:
    """(lateness of every slot due in the window, slots due in it, of those done, checks
    started in it). A slot not done by ``stopped`` counts as ``stopped - due`` late: a
    lower bound, so a saturated scheduler cannot look punctual by doing nothing."""
    import psycopg

    cutoff = end - timedelta(seconds=GOAL_P99)
    with psycopg.connect(db, autocommit=True) as conn:
        late = [float(r[0]) for r in conn.execute(
            "SELECT extract(epoch FROM at - due_at) FROM monitor_samples"
            " WHERE due_at >= %s AND due_at < %s", (begin, cutoff))]
        # The slots not done: every slot of the window minus the sampled ones.
        missing = [float(r[0]) for r in conn.execute(
            "SELECT extract(epoch FROM %s - slot) FROM ("
            "  SELECT m.id, m.started_at + make_interval(secs => m.interval_seconds * k) AS slot,"
            "  k FROM monitors m, generate_series(1, ceil(extract(epoch FROM (%s - m.started_at))"
            "  / m.interval_seconds)::int) AS k) s"
            " WHERE slot >= %s AND slot < %s AND NOT EXISTS (SELECT 1 FROM monitor_samples x"
            "  WHERE x.monitor_id = s.id AND x.seq = s.k)", (stopped, cutoff, begin, cutoff))]
        row = conn.execute("SELECT count(*) FROM monitor_samples WHERE at >= %s AND at < %s",
                           (begin, end)).fetchone()
        started = int(row[0]) if row else 0
    # Every slot of the window is either sampled or missing.
    return late + missing, len(late) + len(missing), len(late), started


def run_case(admin: str, case: Case, *, prom: tuple[str, int], health_url: str,
             warmup: float, observe: float) -> Outcome:
    from sandbox.config import parse_sandbox_config
    from sandbox.fake_platform import FakePlatform
    from sandbox.stack import SandboxStack
    from tests.support import database

    prom_url, prom_pid = prom
    with database.fresh_database(admin, prefix="bench", migrated=True, quiet_drop=True) as db:
        config = parse_sandbox_config(_config(case.monitors, case.interval, case.workers, prom_url,
                                      health_url))
        ids = _seed_rollbacks(db, case.monitors)
        stack = SandboxStack(config=config, database_url=db, platforms={"fake": FakePlatform()},
                             scheduler=False).start()
        try:
            assert stack.bot is not None
            first_due = datetime.now(UTC) + timedelta(seconds=2 + case.monitors / 500)
            _open_monitors(db, ids, case.interval, first_due)
            first_due = _shift(db, first_due, datetime.now(UTC) + timedelta(seconds=2))
            stack.bot.scheduler.start()
            begin = first_due + timedelta(seconds=warmup)
            time.sleep(max(0.0, (begin - datetime.now(UTC)).total_seconds()))
            cpu0, prom0, wall0 = time.process_time(), _cpu_seconds(prom_pid), time.monotonic()
            time.sleep(observe)  # the observation window: the bench only waits
            cpu1, prom1, wall1 = time.process_time(), _cpu_seconds(prom_pid), time.monotonic()
            end = begin + timedelta(seconds=wall1 - wall0)
            stack.bot.scheduler.stop()
            stats = stack.bot.store.pool.get_stats()
            late, expected, done, started = _measure(db, begin, end, datetime.now(UTC))
        finally:
            stack.stop()
    wall = wall1 - wall0
    return Outcome(case, late, expected, done, started / wall, (cpu1 - cpu0) / wall,
                   (prom1 - prom0) / wall, wall,
                   stats.get("requests_wait_ms", 0) / max(1, stats.get("requests_num", 1)))


# ---------------------------------------------------------------------- report
def _row(o: Outcome, baseline: bool) -> dict[str, object]:
    c = o.case
    p50, p99 = (percentile(o.late, 50), percentile(o.late, 99)) if o.late else (0.0, 0.0)
    kind = "serial (1 thread)" if baseline else f"pool of {c.workers}"
    result = (f"lateness p50 {p50:.2f} s / p99 {p99:.2f} s, {o.share:.0%} of {o.expected} "
              f"checks done, {o.rate:.0f} checks/s, bot CPU {o.cpu:.0%} "
              f"({o.cpu_per_check_ms:.1f} ms a check)")
    ok = baseline or (p99 < GOAL_P99 and o.share >= GOAL_DONE)
    return {"what": f"{c.monitors} monitors every {c.interval:g} s, {kind}", "result": result,
            "target": "baseline" if baseline else
            f"p99 < {GOAL_P99:g} s, >= {GOAL_DONE:.0%} done", "ok": ok}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100,300,1000")
    parser.add_argument("--intervals", default="5,300")
    parser.add_argument("--workers", type=int, default=16, help="the pooled scheduler's size")
    parser.add_argument("--warmup", type=float, default=4.0, help="seconds before measuring")
    parser.add_argument("--observe", type=float, default=10.0, help="seconds measured")
    parser.add_argument("--serial-at", default="5",
                        help="intervals that also run the serial baseline (default: 5)")
    args = parser.parse_args(argv)
    quiet_logging()
    from tests.support import database

    sizes = [int(s) for s in args.sizes.split(",")]
    intervals = [float(s) for s in args.intervals.split(",")]
    serial_at = {float(s) for s in args.serial_at.split(",") if s}
    rows: list[dict[str, object]] = []
    print(f"{'case':44} {'p50':>6} {'p99':>7} {'max':>7} {'done':>6} {'chk/s':>6} "
          f"{'CPU':>5} {'ms/chk':>6} {'prom':>5} {'dbwait':>7}")
    with database.postgres_server(prefix="rbbench-", cleanup_mode="delete",
                                  quiet_cleanup=True) as admin, \
            prometheus() as prom, health_server() as health:
        for interval in intervals:
            for n in sizes:
                variants = ([1] if interval in serial_at else []) + [args.workers]
                for workers in variants:
                    o = run_case(admin, Case(n, interval, workers), prom=prom,
                                 health_url=health, warmup=args.warmup, observe=args.observe)
                    row = _row(o, baseline=workers == 1 and workers != args.workers)
                    rows.append(row)
                    late = o.late or [0.0]
                    print(f"{row['what']:44} {percentile(late, 50):6.2f} "
                          f"{percentile(late, 99):7.2f} {max(late):7.2f} {o.share:6.0%} "
                          f"{o.rate:6.0f} {o.cpu:5.0%} {o.cpu_per_check_ms:6.1f} "
                          f"{o.prom_cpu:5.0%} {o.pool_wait_ms:5.1f}ms"
                          f"{'' if row['ok'] else '  MISSED'}", flush=True)
    ok = record("monitors", rows)
    print("goal met" if ok else "goal MISSED")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
