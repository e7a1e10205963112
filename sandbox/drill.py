"""``python -m sandbox drill``: scripted incidents, from a bad deploy to a stable rollback.

Each scenario runs on the real code paths (signed Slack requests, the Kubernetes adapter
against the emulator, the demo service, embedded PostgreSQL) with a short monitoring
window, prints a timeline and exits 1 at the first stage that does not happen in time.

* ``command`` (the default): bob, an approver, types ``/rollback``; the four-eyes rule
  keeps him from approving his own request and carol approves it; the drill goes on to the
  reminders, with a clock that jumps a day ahead.
* ``watcher``: a real Prometheus scrapes the demo service, the bad release is deployed
  during the drill, and the release watcher (seconds instead of minutes) proposes the
  rollback before anyone types anything; bob requests it from the proposal.

Every drill runs in a temporary directory (its embedded PostgreSQL cluster too) and removes
it when it ends, passed or failed.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from bot.domain.ports import utcnow
from bot.integrations.prometheus import instant_query
from sandbox.kube_seed import BAD, DEPLOYMENT, GOOD, NAMESPACE, deploy_bad_release
from sandbox.prometheus import PrometheusUnavailable
from sandbox.runner import SandboxWorld, remove_embedded_database
from sandbox.slack import SlackEmulator

SERVICE = "hotel-voice-bot"
CHANNEL = "inc-hotel-voice-bot"
STAKEHOLDERS = "hotel-voice-bot-stakeholders"
MONITORING = {"duration_seconds": 8, "interval_seconds": 2, "consecutive_health_failures": 2}
# With Prometheus the monitoring reads the error rate too: its first check must come after
# the query's rate window (4 s here) has slid past the last failed request, as production's
# first check (5 min) does after a [5m] window. Else the rollback's own tail is a regression.
WATCHER_MONITORING = {**MONITORING, "duration_seconds": 12, "interval_seconds": 6}
RATE_WINDOW = "4s"
# The requester is an approver (in sre-approvers, as is carol): only the four-eyes rule keeps
# him from approving his own request (P1 has no break glass), so the drill shows that rule.
REQUESTER, INCIDENT_COMMANDER, APPROVER = "bob", "carol", "carol"
FOUR_EYES = "Four-eyes rule: you requested RB-1"  # bot.domain.policy's refusal
# The runbook's rule (5 % for 10 minutes, checked every minute) with seconds for minutes.
WATCHER = {"error_rate_threshold": 0.05, "duration_seconds": 10, "interval_seconds": 1,
           "chart_minutes": 1, "severity": "P1"}


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
    """The ``command`` scenario, and the stages and probes every scenario shares."""

    scenario = "command"
    title = "hotel-voice-bot bad release → rollback → verification → monitoring → reminders"

    def __init__(self, *, out: Callable[[str], None] = print, patience: float = 1.0) -> None:
        self.out = out
        self.patience = patience  # scales every stage's deadline
        self.started = time.monotonic()
        self.clock = AcceleratedClock()
        self.directory = Path(tempfile.mkdtemp(prefix="rollback-drill-"))
        try:
            self.world = self.make_world()
        except BaseException:  # the world undid itself; the directory is the drill's
            self.remove_directory()
            raise
        self.message_ts: str | None = None

    def make_world(self) -> SandboxWorld:
        return SandboxWorld(directory=self.directory, rollout_seconds=2.0, clock=self.clock,
                            monitoring=MONITORING)

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

    def note(self, text: str) -> None:
        self.out(f"           … {text} …")

    def _thread_text(self) -> str:
        em = self.world.stack.emulator
        assert self.message_ts is not None
        return str(em.thread(CHANNEL, self.message_ts))

    def _state(self) -> str:
        bot = self.world.stack.bot
        assert bot is not None
        return str(bot.store.history(SERVICE)[0].state.value)

    def _health(self) -> int:
        return httpx.get(f"{self.world.demo.url}/api/health", timeout=5).status_code

    def _request_message(self) -> dict[str, Any] | None:
        em = self.world.stack.emulator
        return next((m for m in em.messages(CHANNEL) if "*Assessment*" in str(m.get("blocks"))),
                    None)

    # ------------------------------------------------------------------ script
    def run(self) -> None:
        self.world.start()
        stack, kube = self.world.stack, self.world.kube
        driver = stack.driver
        assert driver is not None
        self.stage(f"bad release {BAD} is live: demo /api/health answers 503",
                   lambda: kube.current_image(NAMESPACE, DEPLOYMENT).endswith(BAD)
                   and self._health() == 503)
        driver.slash_command("/rollback", 'hotel-voice-bot --severity P1 --reason '
                             '"drill: 5xx after 1.4.0"', user=REQUESTER)
        msg = self.stage(f"{REQUESTER} (an approver): /rollback → assessment and pinned plan "
                         "posted",
                         self._request_message)
        self.approve_and_roll_back(msg)
        self.stage("post-incident review and post-mortem reminders posted",
                   lambda: "Post-incident review for RB-1" in self._thread_text()
                   and "Post-mortem for RB-1" in self._thread_text())
        em = stack.emulator
        self.stage("post-mortem skeleton attached (timeline from the audit log)",
                   lambda: any(f.get("name", "").endswith(".md") for f in em.files()))
        self.clock.jump(timedelta(hours=24, minutes=1))
        self.note("the clock jumps 24 hours")
        self.stage("a day later: the review reminder comes back until it is done",
                   lambda: "Reminder: Post-incident review for RB-1" in self._thread_text())

    def approve_and_roll_back(self, msg: dict[str, Any]) -> None:
        """From the request message to a stable rollback: the requester, an approver, is
        refused by the four-eyes rule, then another approver approves."""
        stack, kube = self.world.stack, self.world.kube
        em, driver = stack.emulator, stack.driver
        assert driver is not None
        self.message_ts = msg["ts"]
        self.stage("plan pinned to rev 3 (1.3.0), the request message is pinned",
                   lambda: "rev 3" in str(msg["blocks"]) and em.pins(CHANNEL))
        driver.click(CHANNEL, msg["ts"], "rollback_assign_ic", INCIDENT_COMMANDER)
        self.stage(f"{INCIDENT_COMMANDER}: incident commander assigned",
                   lambda: "rollback_assign_ic"
                   not in str((em.message(CHANNEL, msg["ts"]) or {}).get("blocks")))
        driver.click(CHANNEL, msg["ts"], "rollback_approve", REQUESTER)
        self.stage(f"{REQUESTER}, an approver, cannot approve his own request (four-eyes rule; "
                   "refused, ephemeral)",
                   lambda: any(FOUR_EYES in str(e) for e in em.ephemerals(user=REQUESTER))
                   and self._state() == "pending_approval")
        driver.click(CHANNEL, msg["ts"], "rollback_approve", APPROVER)
        self.stage(f"{APPROVER}, another approver: approved, execution starts",
                   lambda: self._state() not in ("pending_approval", "approved"))
        self.stage("Kubernetes rolled back: deployment runs 1.3.0",
                   lambda: kube.current_image(NAMESPACE, DEPLOYMENT).endswith("1.3.0"))
        self.stage("rollout finished (kubectl status semantics)",
                   lambda: "successfully rolled out" in self._thread_text())
        self.stage("demo service healthy again: /api/health answers 200",
                   lambda: self._health() == 200)
        self.recovered()
        self.stage("verification passed and posted", lambda: "Verification of RB-1 passed"
                   in self._thread_text())
        self.stage("stakeholders told: 'Rollback Completed' with times and downtime",
                   lambda: any("Rollback Completed" in str(m) for m in em.messages(STAKEHOLDERS)))
        every = self.world.stack.config.services[SERVICE].monitoring
        self.stage(f"monitoring the service (window {every.duration_seconds:g} s, every "
                   f"{every.interval_seconds:g} s)",
                   lambda: self._state() in ("monitoring", "completed"))
        self.stage("stable: stability report with a chart, rollback completed",
                   lambda: self._state() == "completed"
                   and "Stability report for RB-1" in self._thread_text()
                   and any(f.get("name", "").startswith("stability-RB-1")
                           and f.get("name", "").endswith(".png") for f in em.files()),
                   timeout=40)

    def recovered(self) -> None:
        """What else shows the service recovered (the watcher scenario reads Prometheus)."""

    def close(self) -> None:
        """Stop everything and remove the drill's directory and its PostgreSQL cluster."""
        try:
            self.world.stop()
        finally:
            self.remove_directory()

    def remove_directory(self) -> None:
        remove_embedded_database(self.directory)
        shutil.rmtree(self.directory, ignore_errors=True)


class WatcherDrill(Drill):
    """The ``watcher`` scenario: the release watcher proposes, then humans act."""

    scenario = "watcher"
    title = ("hotel-voice-bot bad release → the release watcher proposes → rollback → "
             "verification → monitoring")

    def __init__(self, *, out: Callable[[str], None] = print, patience: float = 1.0,
                 prometheus_binary: str | None = None) -> None:
        self.prometheus_binary = prometheus_binary
        super().__init__(out=out, patience=patience)

    def make_world(self) -> SandboxWorld:
        return SandboxWorld(directory=self.directory, rollout_seconds=2.0, clock=self.clock,
                            monitoring=WATCHER_MONITORING, bad_release=False,
                            watcher=WATCHER, error_rate_window=RATE_WINDOW,
                            prometheus_binary=self.prometheus_binary)

    def error_rate(self) -> float | None:
        """The 5xx ratio as the watcher reads it: its own query, on the sandbox's Prometheus."""
        prom = self.world.stack.config.services[SERVICE].prometheus
        assert prom is not None
        with httpx.Client(timeout=5) as client:
            return instant_query(prom.url, prom.error_rate_query, client=client)

    def proposals(self) -> list[dict[str, Any]]:
        """The watcher's proposals in the incident channel (its notices' outbox keys)."""
        return watcher_proposals(self.world.stack.emulator)

    def _typed_commands(self) -> list[str]:
        em = self.world.stack.emulator
        return [f"{e.data['command']} {e.data['text']}" for e in em.events()
                if e.kind == "command.invoked"]

    def run(self) -> None:
        self.world.start()
        stack, kube = self.world.stack, self.world.kube
        em, driver = stack.emulator, stack.driver
        assert driver is not None
        good = GOOD[-1]
        self.stage(f"{good} is live and healthy; Prometheus scrapes the demo service "
                   "(5xx ratio under 5 %)",
                   lambda: kube.current_image(NAMESPACE, DEPLOYMENT).endswith(good)
                   and self._health() == 200
                   and (rate := self.error_rate()) is not None and rate < 0.05, timeout=40)
        self.note(f"deploy {BAD} (the bad release); nobody touches Slack")
        deploy_bad_release(kube)
        self.stage(f"bad release {BAD} is live: demo /api/health answers 503",
                   lambda: kube.current_image(NAMESPACE, DEPLOYMENT).endswith(BAD)
                   and self._health() == 503)
        self.stage("Prometheus: the 5xx ratio climbs over the 5 % threshold",
                   lambda: (rate := self.error_rate()) is not None and rate > 0.05)
        proposal = self.stage(
            "release watcher: over 5 % for 10 s → rollback proposed in #inc-hotel-voice-bot",
            lambda: (found := self.proposals()) and found[0], timeout=45)
        typed, requested = self._typed_commands(), self._request_message()
        if typed or requested is not None:  # the scenario's point: the watcher spoke first
            self.out(f"✗ a human acted before the proposal: {typed or 'a request'}")
            raise DrillFailed("the proposal comes before any human command")
        self.out("           (no human has typed a command or requested a rollback yet)")
        self.stage("the proposal's thread has the error-rate chart (PNG)",
                   lambda: any(f.get("name", "").startswith("watch-")
                               for m in em.thread(CHANNEL, proposal["ts"])
                               for f in m.get("files") or []))
        driver.click(CHANNEL, proposal["ts"], "watcher_request_rollback", REQUESTER)
        self.stage(f"{REQUESTER}: Request rollback on the proposal → the request form, filled "
                   "in (P1, the watcher's evidence as the reason)",
                   lambda: any(_suggested_severity(v) == "P1" and "Release watcher" in str(v)
                               for v in em.open_views(REQUESTER)))
        driver.submit_view(REQUESTER)
        msg = self.stage(f"{REQUESTER} submits → assessment and pinned plan posted",
                         self._request_message)
        self.approve_and_roll_back(msg)
        bot = stack.bot
        assert bot is not None
        self.stage("release watcher: 10 s back under 5 %, episode closed; one proposal in all",
                   lambda: bot.watcher.store.get(SERVICE).episode_started_at is None
                   and len(self.proposals()) == 1, timeout=40)

    def recovered(self) -> None:
        self.stage("Prometheus: the 5xx ratio is back under 5 %",
                   lambda: (rate := self.error_rate()) is not None and rate <= 0.05)


def _suggested_severity(view: dict[str, Any]) -> str | None:
    """The request form's preselected severity (``handlers.views.request_modal``)."""
    for block in view.get("blocks") or []:
        if block.get("block_id") == "severity":
            return str((block["element"].get("initial_option") or {}).get("value"))
    return None


def watcher_proposals(emulator: SlackEmulator) -> list[dict[str, Any]]:
    """The release watcher's posts in the incident channel, oldest first: messages posted
    with a ``watch:<service>:`` notice key in their metadata (``bot.aftercare.watcher``)."""
    keyed = set()
    for call in emulator.calls("chat.postMessage"):
        meta = call.params.get("metadata")
        meta = json.loads(meta) if isinstance(meta, str) else meta
        key = str(((meta or {}).get("event_payload") or {}).get("key", ""))
        if key.startswith(f"watch:{SERVICE}:") and call.ok and call.response:
            keyed.add(str(call.response.get("ts")))
    return [m for m in emulator.messages(CHANNEL) if m["ts"] in keyed]


SCENARIOS: dict[str, type[Drill]] = {"command": Drill, "watcher": WatcherDrill}


def run_drill(*, out: Callable[[str], None] = print, drill: Drill | None = None,
              scenario: str = "command") -> int:
    try:
        drill = drill or SCENARIOS[scenario](out=out)
    except PrometheusUnavailable as exc:
        out(f"Drill not started: {exc}")
        return 2
    out(f"Drill ({drill.scenario}): {drill.title}")
    try:
        drill.run()
    except DrillFailed as exc:
        out(f"Drill FAILED at: {exc}")
        return 1
    finally:
        drill.close()
    out(f"Drill passed in {time.monotonic() - drill.started:.1f}s.")
    return 0
