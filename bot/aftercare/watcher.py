"""The release watcher: proposes a rollback when a service's error rate stays over its threshold.

It queries Prometheus, the service's health URL and the platform's revision history, and
posts; it never changes a platform. With ``watcher.auto_request`` it files the request
itself, through the same use case a person's request goes through (``request``, wired by the
composition root): requester ``rollback-bot``, still waiting for an approver per policy.

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
breach propose again. Nothing is proposed while a rollback of the service is active, and
nothing is posted (or requested) while the service is snoozed (the Snooze button).

**auto_request** files at most one request per episode: under an advisory lock on the
proposal's key, a request ``rollback-bot`` made since the episode began (found again after
a crash between filing and posting) is that episode's; the proposal is then posted already
answered. A refusal (another rollback active, nothing to roll back to …) is posted once, as
the proposal with its buttons and the reason.

**A request answers the proposal**: whatever made it (the proposal's button, auto_request
or a typed ``/rollback`` while the episode is open), the proposal is re-rendered with the
request's ref and who asked, without buttons, once (``release_watch.answered_by``). The
request use case tells the watcher at once (``request_made``); every check of a service
with an active rollback catches up after a crash.

**During the decision window** (a pending request of the service) the watcher keeps reading
and stores the figures on the rollback (``rollbacks.watch_reading``); the request message is
re-rendered only when the rounded figures change (``WatchReading.figures``).

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
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import httpx

from bot.aftercare import charts
from bot.aftercare.monitoring import probe_health
from bot.domain.authority import BOT_REQUESTER
from bot.domain.command_parsing import Parsed
from bot.domain.config import RollbackConfig, ServiceConfig
from bot.domain.errors import UserFacingError
from bot.domain.figure_words import pct
from bot.domain.lifecycle import State
from bot.domain.messages import ProposalSnoozed, ReleaseProposal, WatchReading
from bot.domain.models import Rollback
from bot.domain.planner import choose_revision, target_for
from bot.domain.ports import Chat, Clock, Notice, scrubbed_facts
from bot.domain.time_words import in_utc, span
from bot.domain.words import RollbackLink
from bot.integrations.errors import PrometheusError
from bot.integrations.http_client import shared_client
from bot.integrations.prometheus import Sample, range_query
from bot.persistence.jobs import Job, JobStore
from bot.persistence.outbox import Outbox
from bot.persistence.store import Store
from bot.persistence.watch_store import WatchStore
from platforms.base import Platform, Revision

log = logging.getLogger(__name__)

WATCH_JOB = "release_watch"
PROMETHEUS_TIMEOUT = 10.0  # seconds for the range query of one check
# The Request button's value (Slack's limit: 2,000 characters) carries the evidence as the
# request's reason; the rest of the value (service, severity, key) stays well under 300.
EVIDENCE_IN_BUTTON = 1500
SILENCED = "silenced: a rollback is active"


class RequestRollback(Protocol):
    """The request use case (``RollbackService.request``), as the composition root hands it
    over: the watcher's own request is an ordinary one."""

    def __call__(self, parsed: Parsed, *, requester: str, channel_id: str) -> Rollback: ...


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
    unbroken = all(b[0] - a[0] <= step * 1.5 for a, b in zip(window, window[1:], strict=False))
    covered = len(window) >= max(2, expected - 1) and unbroken
    return Reading(list(points), window,
                   holds=covered and all(v > threshold for _, v in window),
                   recovered=covered and all(v <= threshold for _, v in window))


def over_since(points: Sequence[Sample], *, threshold: float, step: float) -> float | None:
    """When the newest unbroken run of points over ``threshold`` began (epoch seconds; a
    missing point breaks the run); None when the newest point is not over it."""
    if not points or points[-1][1] <= threshold:
        return None
    start = points[-1][0]
    for at, value in reversed(points[:-1]):
        if value <= threshold or start - at > step * 1.5:
            break
        start = at
    return start


def slot_after(at: datetime, interval: float) -> datetime:
    """The next check's time: the first multiple of ``interval`` seconds after ``at``."""
    n = math.floor(at.timestamp() / interval) + 1
    return datetime.fromtimestamp(n * interval, tz=UTC)


def slot_key(service: str, due: datetime) -> str:
    return f"{WATCH_JOB}:{service}:{in_utc(due).isoformat()}"


def proposal_key(service: str, episode: datetime) -> str:
    return f"watch:{service}:{in_utc(episode).isoformat()}"


def proposal_facts(message: ReleaseProposal) -> dict[str, Any]:
    """The proposal as stored (``release_watch.proposal``), to re-render it once answered."""
    data = asdict(scrubbed_facts(message))
    for name in ("since", "deployed_at"):
        if data[name] is not None:
            data[name] = data[name].isoformat()
    return data


def proposal_from_facts(data: dict[str, Any]) -> ReleaseProposal:
    facts = dict(data)
    for name in ("since", "deployed_at"):
        if facts.get(name):
            facts[name] = datetime.fromisoformat(facts[name])
    if facts.get("request"):
        facts["request"] = RollbackLink(**facts["request"])
    return ReleaseProposal(**facts)


class ReleaseWatcher:
    def __init__(self, *, config: RollbackConfig, platforms: dict[str, Platform],
                 rollback_store: Store, jobs: JobStore, store: WatchStore, outbox: Outbox,
                 chat: Chat, clock: Clock, request: RequestRollback,
                 http: httpx.Client | None = None) -> None:
        self.config = config
        self.platforms = platforms
        self.rollback_store = rollback_store
        self.jobs = jobs
        self.store = store
        self.outbox = outbox
        self.chat = chat
        self.clock = clock
        self.request = request
        # The process's client (bot.integrations.http_client); each request passes its own
        # timeout. Without one (tests), a client of its own.
        self.http = http if http is not None else shared_client()

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

    def first_breach(self, name: str) -> datetime | None:
        """When the open episode's breach began, the default start of an incident: the
        episode opens at the first check where every point of the last ``duration_seconds``
        is over the threshold (the previous check's window was not), so the error rate has
        been over it since one duration before (to within one interval). None: no episode
        is open (no finding), or the service is not watched."""
        svc = self.config.services.get(name)
        if svc is None or not svc.watcher.enabled:
            return None
        episode = self.store.get(name).episode_started_at
        if episode is None:
            return None
        return in_utc(episode) - timedelta(seconds=svc.watcher.duration_seconds)

    # ------------------------------------------------------------------ one check
    def check(self, name: str, svc: ServiceConfig, now: datetime) -> str:
        """Evaluate once; returns what happened (for logs and tests)."""
        active = self.rollback_store.active_for_service(name)
        if active is not None:
            self.answer_proposal(active)  # catches up if the request's own call was lost
            if active.state == State.PENDING_APPROVAL:
                return f"{SILENCED} ({self.follow(active, svc, now)})"
            return SILENCED
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
        if self.store.get(name).snoozed(now):
            return "snoozed"
        if svc.watcher.auto_request:
            return self.auto_request(name, svc, key, episode, reading, now)
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
            points = range_query(prom.url, prom.error_rate_query, start=start, end=now,
                                 step=step, client=self.http, timeout=PROMETHEUS_TIMEOUT)
        except PrometheusError as exc:
            log.warning("release watcher: %s", exc)
            return None
        return evaluate(points, now=now, duration=watch.duration_seconds, step=step,
                        threshold=svc.watch_threshold())

    # ------------------------------------------------------------------ the decision window
    def follow(self, rb: Rollback, svc: ServiceConfig, now: datetime) -> str:
        """Store the figures on the pending request and re-render its message, only when
        the rounded figures changed."""
        reading = self.read(svc, now)
        if reading is None or not reading.points:
            return "no reading"
        threshold = svc.watch_threshold()
        start = over_since(reading.points, threshold=threshold,
                           step=svc.watcher.interval_seconds)
        latest = WatchReading(reading.points[-1][1], threshold,
                              None if start is None else max(0.0, now.timestamp() - start),
                              now)
        if rb.watch_reading is not None \
                and WatchReading.from_json(rb.watch_reading).figures() == latest.figures():
            return "figures unchanged"
        self.rollback_store.set_watch_reading(rb.id, latest.to_json())
        self.chat.refresh(rb)
        return "figures updated"

    # ------------------------------------------------------------------ proposing
    def proposal(self, name: str, svc: ServiceConfig, key: str, episode: datetime,
                 reading: Reading, now: datetime) -> tuple[ReleaseProposal, str]:
        """The proposal's facts and the evidence (a request's reason)."""
        watch = svc.watcher
        current, previous, note = self._revisions(name, svc)
        health = self._health(svc)
        values = [v for _, v in reading.window]
        threshold = svc.watch_threshold()
        evidence = (f"Release watcher: error rate over {pct(threshold)} at every check for "
                    f"{span(watch.duration_seconds)} (lowest {pct(min(values))}, latest "
                    f"{pct(values[-1])}) at {in_utc(now):%Y-%m-%d %H:%M} UTC; running "
                    f"{current.label() if current else 'unknown'}, previous "
                    f"{previous.label() if previous else 'unknown'}. Proposal {key}.")
        # Capped before encoding: a button value is at most 2,000 characters, and a value cut
        # after encoding would no longer be JSON (every click refused as malformed).
        value = json.dumps({"service": name, "severity": watch.severity.value,
                            "proposal": key, "evidence": evidence[:EVIDENCE_IN_BUTTON]},
                           separators=(",", ":"))
        message = ReleaseProposal(
            name, since=episode, duration_seconds=watch.duration_seconds, threshold=threshold,
            lowest=min(values), latest=values[-1],
            current=current.label() if current else None,
            previous=previous.label() if previous else None,
            deployed_at=current.created if current else None, revisions_note=note,
            health=health, severity=watch.severity.value,
            snooze_seconds=watch.snooze_seconds, request_value=value)
        return message, evidence

    def propose(self, name: str, svc: ServiceConfig, key: str, episode: datetime,
                reading: Reading, now: datetime) -> None:
        message, _evidence = self.proposal(name, svc, key, episode, reading, now)
        self._post(name, svc, key, episode, message, reading, now)

    def auto_request(self, name: str, svc: ServiceConfig, key: str, episode: datetime,
                     reading: Reading, now: datetime) -> str:
        """File the episode's request (once), then post the proposal saying so, or saying
        why the request was refused."""
        watch = svc.watcher
        assert watch.channel is not None
        message, evidence = self.proposal(name, svc, key, episode, reading, now)
        with self.store.exclusive(key) as held:
            if not held:  # another replica is filing this episode's request right now
                return "skipped: another replica holds the episode"
            if self.outbox.sent_ts(key) is not None:  # another leader got here first
                return "already proposed"
            filed = self.store.requested_by_since(name, requester=BOT_REQUESTER,
                                                  since=episode)
            rb: Rollback | None = None
            if filed is not None:  # filed before a crash; never file twice
                rb = self.rollback_store.get(filed)
            else:
                try:
                    # Never a database restore: a bot's request leaves one person to
                    # approve it, and a restore needs two.
                    scope = [s for s in self.config.policy_for(name).for_severity(
                        watch.severity).scope if s != "db"] or ["app"]
                    rb = self.request(Parsed("request", service=name, severity=watch.severity,
                                             scope=scope, reason=evidence[:3000]),
                                      requester=BOT_REQUESTER,
                                      channel_id=watch.channel.lstrip("#"))
                except UserFacingError as exc:
                    log.info("release watcher: the request of %s was refused: %s", name, exc)
                    message = replace(message, auto_refused=str(exc))
            if rb is not None:
                message = replace(message, request=_link(rb), requested_by=rb.requester)
            self._post(name, svc, key, episode, message, reading, now)
            if rb is None:
                return "proposed: the automatic request was refused"
            self.store.answer(name, episode=episode, rollback_id=rb.id)
            return f"requested {rb.ref}"

    def _post(self, name: str, svc: ServiceConfig, key: str, episode: datetime,
              message: ReleaseProposal, reading: Reading, now: datetime) -> None:
        watch = svc.watcher
        assert watch.channel is not None
        self.store.save_proposal(name, episode=episode, facts=proposal_facts(message))
        ts = self.outbox.channel_notice(watch.channel, Notice(key, message))
        try:  # a decoration: the proposal is out already
            png = self.chart(svc, reading, now, deployed_at=message.deployed_at)
            self.outbox.channel_upload(watch.channel, ts, key=f"{key}:chart",
                                       filename=f"watch-{name}-{in_utc(now):%H%M}.png",
                                       content=png, title=f"{name}: error rate, last "
                                       f"{span(watch.chart_minutes * 60)}")
        except Exception:
            log.exception("release watcher: the chart of %s was not attached", name)

    # ------------------------------------------------------------------ answered
    def request_made(self, rb: Rollback) -> None:
        """The request use case's hook: a new request may answer the service's proposal."""
        try:
            self.answer_proposal(rb)
        except Exception:  # the next check catches up; the request stands either way
            log.exception("release watcher: the proposal for %s was not updated", rb.ref)

    def answer_proposal(self, rb: Rollback) -> bool:
        """Re-render the open episode's proposal as answered by ``rb`` (its ref and who
        asked, no buttons) if ``rb`` was requested during the episode; once per episode."""
        svc = self.config.services.get(rb.service)
        if svc is None or not svc.watcher.enabled:
            return False
        state = self.store.get(rb.service)
        episode = state.episode_started_at
        if (episode is None or state.proposal is None or state.answered_by is not None
                or rb.created_at < episode):
            return False
        key = proposal_key(rb.service, episode)
        where = self.outbox.sent_where(key)
        if where is None:
            return False
        channel, ts = where
        message = replace(proposal_from_facts(state.proposal), request=_link(rb),
                          requested_by=rb.requester)
        self.chat.edit_notice(rb, ts, Notice(key, message), channel=channel)
        return self.store.answer(rb.service, episode=episode, rollback_id=rb.id)

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
        # "Previous" is what a request would pin: the planner's choice, known-bad skipped.
        try:
            choice = choose_revision(history, None, self.rollback_store.known_bad(name, platform))
        except UserFacingError as exc:
            return current, None, str(exc)[:200]
        return choice.current, choice.target, ""

    def _health(self, svc: ServiceConfig) -> str | None:
        if svc.health is None:
            return None
        try:
            ok, detail, _took = probe_health(svc, self.http)
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


def _link(rb: Rollback) -> RollbackLink:
    return RollbackLink(rb.ref, rb.channel_id, rb.message_ts)
