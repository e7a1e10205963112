"""``python -m sandbox drill``: a scripted incident from bad deploy to reminders.

Runs the whole flow on the real code paths (signed Slack requests, the Kubernetes
adapter against the emulator, the demo service, embedded PostgreSQL) with a short
monitoring window and a clock that jumps a day ahead for the reminders. Prints a
timeline; exits 1 at the first stage that does not happen in time.
"""

from __future__ import annotations

import tempfile
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from bot.domain.ports import utcnow
from sandbox.kube_seed import BAD, DEPLOYMENT, NAMESPACE
from sandbox.runner import SandboxWorld

CHANNEL = "inc-hotel-voice-bot"
STAKEHOLDERS = "hotel-voice-bot-stakeholders"


class AcceleratedClock:
    """Wall-clock time plus an offset the drill moves forward (days pass in a second)."""

    def __init__(self) -> None:
        self._offset = timedelta()
        self._lock = threading.Lock()

    def __call__(self) -> datetime:
        with self._lock:
            return utcnow() + self._offset

    def jump(self, delta: timedelta) -> None:
        with self._lock:
            self._offset += delta


class DrillFailed(Exception):
    pass


class Drill:
    def __init__(self, *, out: Callable[[str], None] = print, patience: float = 1.0) -> None:
        self.out = out
        self.patience = patience  # scales every stage's deadline
        self.started = time.monotonic()
        self.clock = AcceleratedClock()
        self.directory = Path(tempfile.mkdtemp(prefix="rollback-drill-"))
        self.world = SandboxWorld(
            directory=self.directory, rollout_seconds=2.0, clock=self.clock,
            monitoring={"duration_seconds": 8, "interval_seconds": 2,
                        "consecutive_health_failures": 2})
        self.message_ts: str | None = None

    # ------------------------------------------------------------------ helpers
    def stage(self, what: str, check: Callable[[], Any], *, timeout: float = 30) -> Any:
        timeout *= self.patience
        deadline = time.monotonic() + timeout
        while True:
            error: Exception | None = None
            try:
                result = check()
            except Exception as exc:  # a probe that errors is "not yet"
                result, error = None, exc
            if result:
                self.out(f"[+{time.monotonic() - self.started:6.1f}s] ✓ {what}")
                return result
            if time.monotonic() > deadline:
                self.out(f"[+{time.monotonic() - self.started:6.1f}s] ✗ {what} "
                         f"(not seen within {timeout:.0f}s{f'; {error}' if error else ''})")
                raise DrillFailed(what)
            time.sleep(0.1)  # polling a condition with a deadline

    def _thread_text(self) -> str:
        em = self.world.stack.emulator
        assert self.message_ts is not None
        return str(em.thread(CHANNEL, self.message_ts))

    def _state(self) -> str:
        bot = self.world.stack.bot
        assert bot is not None
        return str(bot.store.history("hotel-voice-bot")[0].state.value)

    def _health(self) -> int:
        return httpx.get(f"{self.world.demo.url}/api/health", timeout=5).status_code

    # ------------------------------------------------------------------ script
    def run(self) -> None:
        self.world.start()
        stack, kube = self.world.stack, self.world.kube
        em, driver = stack.emulator, stack.driver
        assert driver is not None
        self.stage(f"bad release {BAD} is live: demo /api/health answers 503",
                   lambda: kube.current_image(NAMESPACE, DEPLOYMENT).endswith(BAD)
                   and self._health() == 503)
        driver.slash_command("/rollback", 'hotel-voice-bot --severity P1 --reason '
                             '"drill: 5xx after 1.4.0"', user="alice")
        msg = self.stage("alice: /rollback → assessment and pinned plan posted", lambda: next(
            (m for m in em.messages(CHANNEL) if "*Assessment*" in str(m.get("blocks"))), None))
        self.message_ts = msg["ts"]
        self.stage("plan pinned to rev 3 (1.3.0), the request message is pinned",
                   lambda: "rev 3" in str(msg["blocks"]) and em.pins(CHANNEL))
        driver.click(CHANNEL, msg["ts"], "rollback_assign_ic", "carol")
        self.stage("carol: incident commander assigned", lambda: "rollback_assign_ic"
                   not in str((em.message(CHANNEL, msg["ts"]) or {}).get("blocks")))
        driver.click(CHANNEL, msg["ts"], "rollback_approve", "alice")
        self.stage("alice cannot approve her own request (refused, ephemeral)",
                   lambda: any("Only approvers" in str(e) for e in em.ephemerals(user="alice")))
        driver.click(CHANNEL, msg["ts"], "rollback_approve", "bob")
        self.stage("bob: approved, execution starts",
                   lambda: self._state() not in ("pending_approval", "approved"))
        self.stage("Kubernetes rolled back: deployment runs 1.3.0",
                   lambda: kube.current_image(NAMESPACE, DEPLOYMENT).endswith("1.3.0"))
        self.stage("rollout finished (kubectl status semantics)",
                   lambda: "successfully rolled out" in self._thread_text())
        self.stage("demo service healthy again: /api/health answers 200",
                   lambda: self._health() == 200)
        self.stage("verification passed and posted", lambda: "Verification of RB-1 passed"
                   in self._thread_text())
        self.stage("stakeholders told: 'Rollback Completed' with times and downtime",
                   lambda: any("Rollback Completed" in str(m) for m in em.messages(STAKEHOLDERS)))
        self.stage("monitoring the service (window 8 s, every 2 s)",
                   lambda: self._state() in ("monitoring", "completed"))
        self.stage("stable: stability report with a chart, rollback completed",
                   lambda: self._state() == "completed"
                   and "Stability report for RB-1" in self._thread_text()
                   and any(f.get("name", "").endswith(".png") for f in em.files()),
                   timeout=40)
        self.stage("post-incident review and post-mortem reminders posted",
                   lambda: "Post-incident review for RB-1" in self._thread_text()
                   and "Post-mortem for RB-1" in self._thread_text())
        self.stage("post-mortem skeleton attached (timeline from the audit log)",
                   lambda: any(f.get("name", "").endswith(".md") for f in em.files()))
        self.clock.jump(timedelta(hours=24, minutes=1))
        self.out("           … the clock jumps 24 hours …")
        self.stage("a day later: the review reminder comes back until it is done",
                   lambda: "Reminder: Post-incident review for RB-1" in self._thread_text())

    def close(self) -> None:
        self.world.stop()


def run_drill(*, out: Callable[[str], None] = print, drill: Drill | None = None) -> int:
    drill = drill or Drill(out=out)
    out("Drill: hotel-voice-bot bad release → rollback → verification → monitoring → "
        "reminders")
    try:
        drill.run()
    except DrillFailed as exc:
        out(f"Drill FAILED at: {exc}")
        return 1
    finally:
        drill.close()
    out(f"Drill passed in {time.monotonic() - drill.started:.1f}s.")
    return 0
