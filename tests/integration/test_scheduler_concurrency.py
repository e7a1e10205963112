"""The leader scheduler at scale, on real PostgreSQL: batch claims, the bounded pool, lanes
per rollback, the loop's timing, a bounded stop; and stability checks whose lateness is
stored with the sample and shown in the report (the real bot, injected clock).
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

from bot.aftercare.coordinator import MONITOR_TICK_JOB
from bot.domain.models import PlannedStep
from bot.execution.scheduler import LeaderScheduler
from bot.persistence.aftercare_store import AftercareStore
from bot.persistence.db import open_pool
from bot.persistence.jobs import Job, JobStore
from bot.persistence.store import Store
from platforms.base import Revision, Target
from sandbox.demo import DemoService
from tests.e2e.conftest import Harness
from tests.e2e.conftest import make_harness as make_harness  # noqa: F401  (fixture)
from tests.support.demo import health_monitored
from tests.support.waiting import wait_until

NOW = datetime(2026, 11, 29, 3, 0, tzinfo=UTC)


@pytest.fixture
def jobs(db: str) -> Iterator[JobStore]:
    store = JobStore(open_pool(db, max_size=20))
    yield store
    store.pool.close()


def _scheduler(db: str, jobs: JobStore, run: Callable[[Job], None], **kw: Any
               ) -> LeaderScheduler:
    return LeaderScheduler(database_url=db, jobs=jobs, run_job=run, clock=lambda: NOW, **kw)


def _status(db: str) -> Counter[str]:
    with psycopg.connect(db, autocommit=True) as conn:
        return Counter(r[0] for r in conn.execute("SELECT status FROM scheduled_jobs"))


def _rollback(store: Store, service: str) -> int:
    return store.create_rollback(
        service=service, platform="fake", severity="P1", policy_mode="hotfix_window",
        scope=["app"], reason="r", requester="U1", channel_id="C1", channel_name="inc-x",
        current_revision=Revision("rs-3", 3, current=True), target_revision=Revision("rs-2", 2),
        target=Target("fake", "default", "app"), steps=[PlannedStep("app_rollback", "roll")],
        checklist={}, assessment={}, expires_at=NOW + timedelta(minutes=30), created_at=NOW,
    ).id


# ---------------------------------------------------------------------- batch claims
def test_concurrent_batch_claims_never_hand_out_a_job_twice(jobs: JobStore) -> None:
    for i in range(400):
        jobs.schedule(kind="k", due_at=NOW - timedelta(seconds=i % 7))
    jobs.schedule(kind="k", due_at=NOW + timedelta(seconds=1))  # not due: never claimed

    def claimer(n: int) -> list[int]:
        got: list[int] = []
        while batch := jobs.claim_due(NOW, owner=f"c{n}", limit=9):
            got += [j.id for j in batch]
        return got

    with ThreadPoolExecutor(6) as pool:
        claimed = [i for ids in pool.map(claimer, range(6)) for i in ids]
    assert len(claimed) == 400 and len(set(claimed)) == 400
    assert jobs.next_due() == NOW + timedelta(seconds=1)


def test_a_batch_comes_back_in_due_order(jobs: JobStore) -> None:
    for seconds in (5, 1, 9, 3):
        jobs.schedule(kind="k", due_at=NOW - timedelta(seconds=seconds))
    batch = jobs.claim_due(NOW, owner="me", limit=3)
    assert [NOW - j.due_at for j in batch] == [timedelta(seconds=s) for s in (9, 5, 3)]
    assert all(j.status == "running" and j.claimed_by == "me" for j in batch)


def test_two_schedulers_never_run_the_same_job(db: str, jobs: JobStore) -> None:
    """Two replicas tick at once: only the lock holder runs, every job exactly once."""
    ran: list[tuple[str, int]] = []
    lock = threading.Lock()

    def runner(name: str) -> Callable[[Job], None]:
        def run(job: Job) -> None:
            with lock:
                ran.append((name, job.id))
        return run

    for _ in range(150):
        jobs.schedule(kind="k", due_at=NOW)
    a = _scheduler(db, jobs, runner("a"), owner="a", workers=8)
    b = _scheduler(db, jobs, runner("b"), owner="b", workers=8)
    try:
        counts: list[int] = []
        with ThreadPoolExecutor(2) as pool:
            for _ in range(2):  # one batch of 100, then the other 50
                counts += [f.result() for f in [pool.submit(s.tick) for s in (a, b)]]
        assert sum(counts) == 150 and 0 in counts[:2]
        assert {name for name, _ in ran} in ({"a"}, {"b"})  # the leader only
        assert sorted(i for _, i in ran) == sorted({i for _, i in ran})  # none twice
        assert _status(db) == Counter(done=150)
    finally:
        a.stop()
        b.stop()


# ---------------------------------------------------------------------- the pool
def test_the_pool_runs_jobs_concurrently_and_never_more_than_its_size(
        db: str, jobs: JobStore) -> None:
    release = threading.Event()
    running, most = 0, 0
    lock = threading.Lock()

    def run(job: Job) -> None:
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
        release.wait(10)
        with lock:
            running -= 1

    for _ in range(20):
        jobs.schedule(kind="k", due_at=NOW)
    sched = _scheduler(db, jobs, run, workers=4)
    try:
        with ThreadPoolExecutor(1) as pool:
            ticking = pool.submit(sched.tick)
            wait_until(lambda: running == 4, message="four jobs running at once")
            assert sched.in_flight == 20  # one batch claimed, 16 waiting for a thread
            assert not ticking.done()  # tick waits for its whole batch
            release.set()
            assert ticking.result(timeout=10) == 20
        assert most == 4
        assert _status(db) == Counter(done=20)
    finally:
        sched.stop()


def test_a_rollbacks_jobs_run_one_at_a_time_in_due_order(db: str, jobs: JobStore) -> None:
    """Lanes: jobs of one rollback never overlap and keep their order; other rollbacks'
    jobs run beside them.

    Rollback one's first job holds its thread until all six of rollback two's jobs have
    run. With a lane per rollback, two's lane runs them meanwhile on another thread and
    one's later jobs wait behind the held one. Without lanes the pool (eight threads, the
    jobs queued in due order) hands one's later jobs to free threads before two's last
    one, so they start while the first is held: an overlap every time, not by chance."""
    store = Store(jobs.pool)
    one, two = _rollback(store, "svc-1"), _rollback(store, "svc-2")
    for i in range(6):
        for rid in (one, two):
            jobs.schedule(kind="k", rollback_id=rid, due_at=NOW - timedelta(seconds=60 - i),
                          payload={"i": i})
    order: dict[int, list[int]] = {one: [], two: []}
    busy: dict[int, int] = Counter()
    overlap: list[int] = []
    two_done = threading.Event()  # two's lane ran to its end while one's first job held
    lock = threading.Lock()

    def run(job: Job) -> None:
        assert job.rollback_id is not None
        i = int(job.payload["i"])
        with lock:
            busy[job.rollback_id] += 1
            if busy[job.rollback_id] > 1:
                overlap.append(job.rollback_id)
            order[job.rollback_id].append(i)
        if job.rollback_id == one and i == 0:
            assert two_done.wait(10), "rollback two's jobs did not run beside one's"
        with lock:
            busy[job.rollback_id] -= 1
            if job.rollback_id == two and len(order[two]) == 6:
                two_done.set()

    sched = _scheduler(db, jobs, run, workers=8)
    try:
        assert sched.tick() == 12
    finally:
        sched.stop()
    assert overlap == []
    assert order == {one: list(range(6)), two: list(range(6))}


def test_jobs_about_a_rollback_but_not_tied_to_its_row_share_its_lane(
        db: str, jobs: JobStore) -> None:
    """A PagerDuty acknowledge and resolve (``rollback_id`` None so ending the rollback
    does not cancel them, ``payload.rollback_id`` set) due at the same moment reach the
    service in order: they used to run in two lanes at once and the resolve could land
    first (tests/e2e/test_escalation.py flaked on it)."""
    at = NOW - timedelta(seconds=30)
    for action in ("acknowledge", "resolve"):
        jobs.schedule(kind="page", rollback_id=None, due_at=at,
                      payload={"action": action, "rollback_id": 7})
    started: list[str] = []
    first_running = threading.Event()
    release_first = threading.Event()
    lock = threading.Lock()

    def run(job: Job) -> None:
        with lock:
            started.append(str(job.payload["action"]))
        if job.payload["action"] == "acknowledge":
            first_running.set()
            assert release_first.wait(10)

    sched = _scheduler(db, jobs, run, workers=8)
    try:
        ticking = threading.Thread(target=sched.tick)
        ticking.start()
        assert first_running.wait(10)
        with lock:  # the acknowledge is in flight: the resolve waits behind it
            assert started == ["acknowledge"]
        release_first.set()
        ticking.join(10)
        wait_until(lambda: len(started) == 2, 10, message="the resolve to run")
    finally:
        release_first.set()
        sched.stop()
    assert started == ["acknowledge", "resolve"]


def test_a_failing_job_is_retried_with_backoff_from_its_pool_thread(
        db: str, jobs: JobStore) -> None:
    ok = jobs.schedule(kind="ok", due_at=NOW)
    bad = jobs.schedule(kind="bad", due_at=NOW)
    assert ok is not None and bad is not None

    def run(job: Job) -> None:
        if job.kind == "bad":
            raise RuntimeError("the dependency is down")

    sched = _scheduler(db, jobs, run, workers=4)
    try:
        assert sched.tick() == 1
    finally:
        sched.stop()
    [again] = jobs.pending()
    assert again.id == bad.id and again.attempts == 1
    assert again.due_at == NOW + timedelta(seconds=2)  # the first backoff step
    assert _status(db) == Counter(done=1, pending=1)


# ---------------------------------------------------------------------- the loop
def test_the_loop_runs_jobs_when_they_fall_due_not_on_a_one_second_grid(
        db: str, jobs: JobStore) -> None:
    """The serial scheduler woke every second, so a job was up to 1 s late; the loop
    sleeps until the next due time. Ten jobs a quarter second apart: on a 1 s grid, at
    whatever phase, one of them is at least 0.75 s late."""
    started: dict[int, datetime] = {}

    def run(job: Job) -> None:
        started[job.id] = datetime.now(UTC)

    base = datetime.now(UTC)
    due = {}
    for offset in (0.3 + 0.25 * i for i in range(10)):
        job = jobs.schedule(kind="k", due_at=base + timedelta(seconds=offset))
        assert job is not None
        due[job.id] = job.due_at
    sched = LeaderScheduler(database_url=db, jobs=jobs, run_job=run, workers=4)
    sched.start()
    try:
        wait_until(lambda: len(started) == len(due), timeout=10, message="every job ran")
    finally:
        sched.stop()
    late = sorted((started[i] - due[i]).total_seconds() for i in due)
    assert late[0] >= 0, f"a job ran early: {late}"
    assert late[-1] < 0.6, f"lateness {late}"


def test_stop_waits_for_the_job_in_flight_but_only_so_long(db: str, jobs: JobStore) -> None:
    release, began = threading.Event(), threading.Event()

    def run(job: Job) -> None:
        began.set()
        release.wait(10)

    jobs.schedule(kind="slow", due_at=datetime.now(UTC))
    sched = LeaderScheduler(database_url=db, jobs=jobs, run_job=run, workers=2,
                            stop_timeout_seconds=10)
    sched.start()
    assert began.wait(10)
    with ThreadPoolExecutor(1) as pool:
        stopping = pool.submit(sched.stop)
        assert not stopping.done() and sched.in_flight == 1
        release.set()
        stopping.result(timeout=10)
    assert sched.in_flight == 0 and _status(db) == Counter(done=1)

    release.clear()
    began.clear()
    jobs.schedule(kind="stuck", due_at=datetime.now(UTC))
    stuck = LeaderScheduler(database_url=db, jobs=jobs, run_job=run, workers=2,
                            stop_timeout_seconds=0.3)
    stuck.start()
    assert began.wait(10)
    stuck.stop()  # returns after its timeout; the row stays claimed for the next leader
    assert stuck.in_flight == 1 and _status(db) == Counter(done=1, running=1)
    release.set()


# ---------------------------------------------------------------------- monitor checks
def _monitored(make: Callable[..., Harness], demo: DemoService, tmp: Path, *,
               duration: int, interval: int) -> tuple[Harness, int, dict[str, Any]]:
    h = make(config_overrides=health_monitored(demo.url, tmp, duration_seconds=duration,
                                               interval_seconds=interval))
    rid, msg = h.request_and_approve_p1()
    h.wait_state(rid, "monitoring")
    return h, rid, msg


def _monitor_ticks(h: Harness) -> list[Job]:
    return [j for j in h.bot.scheduler.jobs.pending() if j.kind == MONITOR_TICK_JOB]


def _report(h: Harness, msg: dict[str, Any]) -> str:
    found = h.emulator.wait_for(
        lambda: next((m["text"] for m in h.emulator.thread("inc-hotel-voice-bot", msg["ts"])
                      if "Stability report" in m.get("text", "")), None),
        timeout=10, description="the stability report")
    return str(found)


def test_a_late_check_is_recorded_late_and_the_next_is_due_from_its_slot(
        make_harness: Callable[..., Harness], demo: DemoService, tmp_path: Path) -> None:
    h, rid, msg = _monitored(make_harness, demo, tmp_path, duration=900, interval=300)
    monitor = AftercareStore(h.bot.store.pool).monitors(rid)[0]
    slot = monitor.started_at
    h.clock.advance(minutes=5, seconds=4.2)  # check 1 runs 4.2 s after its slot
    h.tick()
    [nxt] = _monitor_ticks(h)
    assert nxt.due_at == slot + timedelta(seconds=600)  # not "ran at + 300 s": no drift
    h.clock.advance(minutes=5, seconds=-4.0)  # check 2: 0.2 s late
    h.tick()
    h.clock.advance(minutes=5)  # check 3: 0.2 s late
    h.tick()
    samples = AftercareStore(h.bot.store.pool).samples(monitor.id)
    assert [s.due_at for s in samples] == [slot + timedelta(seconds=300 * n) for n in (1, 2, 3)]
    assert [round(s.late_seconds or 0, 1) for s in samples] == [4.2, 0.2, 0.2]
    report = _report(h, msg)
    assert "Timing:* 1 of 3 checks ran more than 1 s late, worst 4.2 s" in report
    assert h.wait_state(rid, "completed")


def test_missed_checks_are_skipped_and_the_report_says_so(
        make_harness: Callable[..., Harness], demo: DemoService, tmp_path: Path) -> None:
    """After an outage the latest due check runs, not every missed one; the report counts
    the skipped checks and the late one."""
    h, rid, msg = _monitored(make_harness, demo, tmp_path, duration=1500, interval=300)
    monitor = AftercareStore(h.bot.store.pool).monitors(rid)[0]
    h.clock.advance(minutes=5)  # check 1 on time
    h.tick()
    h.clock.advance(minutes=15, seconds=30)  # the leader was away through checks 2 and 3
    h.tick()  # check 2 runs (the oldest missed) 10.5 minutes late ...
    [nxt] = _monitor_ticks(h)
    assert nxt.payload["seq"] == 4  # ... then the latest due one: 3 is skipped
    assert nxt.due_at == monitor.started_at + timedelta(seconds=1200)
    h.tick()  # check 4, 30 s late
    h.clock.advance(minutes=4, seconds=30)
    h.tick()  # check 5 on its slot
    report = _report(h, msg)
    assert "Window:* " in report and "4/5 checks every 5 min" in report
    assert ("Timing:* 2 of 4 checks ran more than 1 s late, worst 630.0 s; 1 skipped (the bot was "
            "behind: the latest due check ran instead)") in report
    assert h.wait_state(rid, "completed")


def test_a_deposed_leaders_bookkeeping_never_touches_the_new_leaders_claim(
        jobs: JobStore, db: str) -> None:
    job = jobs.schedule(kind="k", due_at=NOW - timedelta(seconds=1))
    assert job is not None
    assert [j.id for j in jobs.claim_due(NOW, owner="old", limit=5)] == [job.id]
    # The old leader lost the lock mid-run; the new one re-queues its row and runs it again.
    assert jobs.recover_running(older_than_seconds=0, except_owner="new") == 1
    assert [j.id for j in jobs.claim_due(NOW, owner="new", limit=5)] == [job.id]
    # The old run ends now, one way or another: none of it lands on the new claim.
    jobs.finish(job.id, owner="old")
    assert jobs.retry_later(job.id, now=NOW, error="boom", owner="old") is False
    jobs.release(job.id, owner="old")
    with psycopg.connect(db, autocommit=True) as conn:
        row = conn.execute("SELECT status, claimed_by, attempts FROM scheduled_jobs"
                           " WHERE id = %s", (job.id,)).fetchone()
    assert row == ("running", "new", 0)
    jobs.finish(job.id, owner="new")
    assert _status(db) == Counter({"done": 1})
