"""The release watcher: proposes a rollback when a service's error rate stays over its threshold.

Read-only: it queries Prometheus, the service's health URL and the platform's revision
history, and posts; it never changes a platform and never requests a rollback itself.

**The rule** (the runbook's: 5xx ratio > 5 % sustained for 10 minutes). One
``range_query`` of the service's ``prometheus.error_rate_query`` over the last
``chart_minutes`` (default 30) at a step of ``interval_seconds``; the rule holds when the
points of the last ``duration_seconds`` are all there (no gap: a window with missing data
is no evidence) and every one is above the threshold. A range query rather than a
``min_over_time(ratio[10m:step])`` subquery because the subquery's minimum is taken over
the points that exist, so two minutes of data would "hold" for ten; the points also make
the chart and the figures of the proposal, from the same read. The service has *recovered*
when every point of the duration is at or below the threshold.

**Episodes** (``release_watch`` rows, ``bot.persistence.watch_store``). The first holding
check opens one; its start is the proposal's outbox key, so the proposal is posted once per
episode whichever leader runs the check (and the outbox finds a post whose poster died).
The episode ends when the service has recovered for a full duration; only then can a later
breach propose again. Nothing is evaluated while a rollback of the service is active, and
nothing is posted while the service is snoozed (the Snooze button).

**Scheduling**: one ``release_watch`` job per service and check, due on slots aligned to
``interval_seconds`` since the epoch and keyed by them, so the startup scheduling of every
replica and each run's next check converge on one chain (``scheduled_jobs`` dedupe).

Decorations (revisions, the chart, health) that fail are noted or logged: they never hold
back the proposal's text.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import httpx

from bot.aftercare import charts
from bot.aftercare.monitoring import _health
from bot.domain.config import RollbackConfig, ServiceConfig
from bot.domain.figure_words import pct
from bot.domain.messages import ProposalSnoozed, ReleaseProposal
from bot.domain.planner import target_for
from bot.domain.ports import Chat, Clock, Notice
from bot.domain.time_words import in_utc, span
from bot.integrations.errors import PrometheusError
from bot.integrations.prometheus import Sample, range_query
from bot.persistence.jobs import Job, JobStore
from bot.persistence.outbox import Outbox
from bot.persistence.store import Store
from bot.persistence.watch_store import WatchStore
from platforms.base import Platform, Revision

log = logging.getLogger(__name__)

WATCH_JOB = "release_watch"


@dataclass(frozen=True)
class Reading:
    """One evaluation: the chart's points and what they say about the rule's window."""

    points: list[Sample]
    window: list[Sample]
    holds: bool
    recovered: bool


def evaluate(points: Sequence[Sample], *, now: datetime, duration: float, step: float,
             threshold: float) -> Reading:
    """The rule over ``points`` (time order): the last ``duration`` must be fully covered
    (one point per ``step``, at most one missing at an edge) to hold or to have recovered."""
    since = now.timestamp() - duration - 1e-6
    window = [p for p in points if p[0] >= since]
    expected = int(math.floor(duration / step + 1e-9)) + 1
    covered = len(window) >= max(2, expected - 1)
    return Reading(list(points), window,
                   holds=covered and all(v > threshold for _, v in window),
                   recovered=covered and all(v <= threshold for _, v in window))


def slot_after(at: datetime, interval: float) -> datetime:
    """The next check's time: the first multiple of ``interval`` seconds after ``at``."""
    n = math.floor(at.timestamp() / interval) + 1
    return datetime.fromtimestamp(n * interval, tz=UTC)


def slot_key(service: str, due: datetime) -> str:
    return f"{WATCH_JOB}:{service}:{in_utc(due).isoformat()}"


def proposal_key(service: str, episode: datetime) -> str:
    return f"watch:{service}:{in_utc(episode).isoformat()}"


class ReleaseWatcher:
    def __init__(self, *, config: RollbackConfig, platforms: dict[str, Platform],
                 rollback_store: Store, jobs: JobStore, store: WatchStore, outbox: Outbox,
                 chat: Chat, clock: Clock,
                 client_factory: Callable[[], httpx.Client] = lambda: httpx.Client(
                     timeout=10.0)) -> None:
        self.config = config
        self.platforms = platforms
        self.rollback_store = rollback_store
        self.jobs = jobs
        self.store = store
        self.outbox = outbox
        self.chat = chat
        self.clock = clock
        self.client_factory = client_factory

    def job_handlers(self) -> dict[str, Callable[[Job], None]]:
        return {WATCH_JOB: self.run_job}

    def watched(self) -> list[str]:
        return [name for name, svc in self.config.services.items() if svc.watcher.enabled]

    def start(self) -> None:
        """Schedule the next check of every watched service (idempotent; every replica may)."""
        now = self.clock()
        for name in self.watched():
            self._schedule(name, self.config.services[name], now)

    def _schedule(self, name: str, svc: ServiceConfig, after: datetime) -> None:
        due = slot_after(after, svc.watcher.interval_seconds)
        self.jobs.schedule(kind=WATCH_JOB, due_at=due, payload={"service": name},
                           dedupe_key=slot_key(name, due))

    def run_job(self, job: Job) -> None:
        name = str(job.payload.get("service", ""))
        svc = self.config.services.get(name)
        if svc is None or not svc.watcher.enabled:  # unwatched since: the chain ends
            return
        now = self.clock()
        try:
            self.check(name, svc, now)
        except Exception:  # one failed check must not stop the watching
            log.exception("release watcher: the check of %s failed", name)
        finally:
            self._schedule(name, svc, max(now, job.due_at))

    # ------------------------------------------------------------------ one check
    def check(self, name: str, svc: ServiceConfig, now: datetime) -> str:
        """Evaluate once; returns what happened (for logs and tests)."""
        if self.rollback_store.active_for_service(name) is not None:
            return "silenced: a rollback is active"
        reading = self.read(svc, now)
        if reading is None:
            return "no reading"
        if reading.recovered:
            if self.store.get(name).episode_started_at is not None:
                self.store.close_episode(name)
                return "episode closed"
            return "healthy"
        if not reading.holds:
            return "not sustained"
        episode = self.store.open_episode(name, now)
        key = proposal_key(name, episode)
        if self.outbox.sent_ts(key) is not None:
            return "already proposed"
        state = self.store.get(name)
        if state.snoozed_until is not None and state.snoozed_until > now:
            return "snoozed"
        self.propose(name, svc, key, episode, reading, now)
        return "proposed"

    def read(self, svc: ServiceConfig, now: datetime) -> Reading | None:
        prom, watch = svc.prometheus, svc.watcher
        if prom is None:
            return None
        step = watch.interval_seconds
        span_s = max(watch.chart_minutes * 60, watch.duration_seconds)
        start = now - timedelta(seconds=math.ceil(span_s / step) * step)
        try:
            with self.client_factory() as client:
                points = range_query(prom.url, prom.error_rate_query, start=start, end=now,
                                     step=step, client=client)
        except PrometheusError as exc:
            log.warning("release watcher: %s", exc)
            return None
        return evaluate(points, now=now, duration=watch.duration_seconds, step=step,
                        threshold=svc.watch_threshold())

    def propose(self, name: str, svc: ServiceConfig, key: str, episode: datetime,
                reading: Reading, now: datetime) -> None:
        watch = svc.watcher
        assert watch.channel is not None
        current, previous, note = self._revisions(name, svc)
        health = self._health(svc)
        values = [v for _, v in reading.window]
        threshold = svc.watch_threshold()
        evidence = (f"Release watcher: error rate over {pct(threshold)} at every check for "
                    f"{span(watch.duration_seconds)} (lowest {pct(min(values))}, latest "
                    f"{pct(values[-1])}) at {in_utc(now):%Y-%m-%d %H:%M} UTC; running "
                    f"{current.label() if current else 'unknown'}, previous "
                    f"{previous.label() if previous else 'unknown'}. Proposal {key}.")
        value = json.dumps({"service": name, "severity": watch.severity.value,
                            "proposal": key, "evidence": evidence}, separators=(",", ":"))
        message = ReleaseProposal(
            name, since=episode, duration_seconds=watch.duration_seconds, threshold=threshold,
            lowest=min(values), latest=values[-1],
            current=current.label() if current else None,
            previous=previous.label() if previous else None,
            deployed_at=current.created if current else None, revisions_note=note,
            health=health, severity=watch.severity.value,
            snooze_seconds=watch.snooze_seconds, request_value=value[:2000])
        ts = self.outbox.channel_notice(watch.channel, Notice(key, message))
        try:  # a decoration: the proposal is out already
            png = self.chart(svc, reading, now, deployed_at=current.created if current else None)
            self.outbox.channel_upload(watch.channel, ts, key=f"{key}:chart",
                                       filename=f"watch-{name}-{in_utc(now):%H%M}.png",
                                       content=png, title=f"{name}: error rate, last "
                                       f"{span(watch.chart_minutes * 60)}")
        except Exception:
            log.exception("release watcher: the chart of %s was not attached", name)

    def chart(self, svc: ServiceConfig, reading: Reading, now: datetime, *,
              deployed_at: datetime | None) -> bytes:
        start = now - timedelta(minutes=svc.watcher.chart_minutes)
        points = [(datetime.fromtimestamp(t, tz=UTC), v) for t, v in reading.points]
        series = [charts.Series("Error rate", points, "rate", charts.BLUE,
                                threshold=svc.watch_threshold())]
        return charts.render_png(series, start=start, end=now, rolled_back_at=None,
                                 bad_deploy_at=deployed_at)

    def _revisions(self, name: str, svc: ServiceConfig
                   ) -> tuple[Revision | None, Revision | None, str]:
        platform = svc.platform_or_default(None)
        adapter = self.platforms.get(platform)
        if adapter is None:
            return None, None, f"no {platform} adapter"
        try:
            history = adapter.history(target_for(svc, platform))
        except Exception as exc:  # a decoration: say why, post anyway
            return None, None, f"{type(exc).__name__}: {exc}"[:200]
        current = next((r for r in history if r.current), None)
        older = [r for r in history if not r.current
                 and (current is None or r.number < current.number)]
        return current, (older[0] if older else None), ""

    def _health(self, svc: ServiceConfig) -> str | None:
        if svc.health is None:
            return None
        try:
            with self.client_factory() as client:
                ok, detail, _took = _health(svc, client)
        except Exception as exc:
            return f"not read ({type(exc).__name__})"
        return f"{'passing' if ok else 'failing'}: {detail}"

    # ------------------------------------------------------------------ buttons
    def snooze(self, service: str, *, user: str) -> None:
        svc = self.config.services.get(service)
        if svc is None or not svc.watcher.enabled or svc.watcher.channel is None:
            return
        until = self.clock() + timedelta(seconds=svc.watcher.snooze_seconds)
        self.store.snooze(service, until=until, by=user)
        self.chat.post_channel(svc.watcher.channel, ProposalSnoozed(service, user, until))
