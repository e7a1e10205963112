"""Composition root: the only module that wires Slack handlers, the core and the adapters.

``create_app(settings, *, store=None, platforms=None, slack_client=None, config=None,
clock=utcnow, crash_points=NO_CRASH_POINTS)`` returns a ``BotApp`` holding the Bolt app, the
service, the executor and the leader scheduler; nothing is built at import time (no
module-level ``App``). ``platforms`` is the adapters by name (built from the configuration's
specs when not given); ``config`` is read from ``settings.config_path`` with production's
registry (``platforms.registry.PRODUCTION``) when not given.
"""

from __future__ import annotations

import logging
import ssl
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TextIO

import httpx
from slack_bolt import App
from slack_sdk import WebClient
from slack_sdk.http_retry.builtin_handlers import RateLimitErrorRetryHandler

from bot.aftercare.coordinator import Aftercare
from bot.aftercare.escalation import Escalation
from bot.aftercare.forward_fix import ForwardFixTracker
from bot.aftercare.notifications import Notifier
from bot.aftercare.postmortem_pr import PostmortemPullRequests
from bot.aftercare.reminders import Reminders
from bot.aftercare.stakeholder_mail import StakeholderMail
from bot.aftercare.status_lifecycle import SYNC_JOB, StatusPageLifecycle
from bot.aftercare.statuspage import StatuspageClient
from bot.aftercare.watcher import ReleaseWatcher
from bot.domain.config import RollbackConfig, load_config, secret
from bot.domain.policy import Policy
from bot.domain.ports import (
    NO_CRASH_POINTS,
    Chat,
    Clock,
    CrashPoints,
    Directory,
    ScrubbedChat,
    utcnow,
)
from bot.execution.executor import Executor
from bot.execution.job_router import JobRouter
from bot.execution.scheduler import LeaderScheduler
from bot.integrations.http_client import shared_client
from bot.observability import scrub
from bot.persistence.aftercare_store import AftercareStore
from bot.persistence.db import migrate, open_lease_pool, open_pool, resolve_database_url
from bot.persistence.forward_fix_store import ForwardFixStore
from bot.persistence.housekeeping import Housekeeping
from bot.persistence.jobs import JobStore
from bot.persistence.mail_outbox import MailOutbox
from bot.persistence.outbox import Outbox
from bot.persistence.statuspage_store import StatuspageStore
from bot.persistence.store import Store
from bot.persistence.timeline_reads import TimelineReads
from bot.persistence.watch_store import WatchStore
from bot.runtime.auto import AutoRollback
from bot.runtime.settings import Settings
from bot.usecases.catalog import Catalog
from bot.usecases.diagnosis import Diagnoser, DiagnosisLog
from bot.usecases.latest_state_chat import LatestStateChat
from bot.usecases.service import ModalDefaults, RollbackService
from bot.usecases.thread_delivery import ThreadDelivery
from bot.usecases.timeline import TimelineReader
from bot.usecases.timers import PolicyTimers
from platforms.base import Platform, PlatformUnavailable
from platforms.registry import PRODUCTION

if TYPE_CHECKING:
    from handlers.socket_mode import GuardedSocketModeHandler
    from handlers.work_pool import WorkPool

log = logging.getLogger(__name__)


@dataclass
class BotApp:
    settings: Settings
    config: RollbackConfig
    bolt: App
    service: RollbackService
    store: Store
    executor: Executor
    scheduler: LeaderScheduler
    job_router: JobRouter
    watcher: ReleaseWatcher
    work_pool: WorkPool
    decision_pool: WorkPool
    http: httpx.Client  # the process's one HTTP client (bot.integrations.http_client)
    database_url: str = field(repr=False)
    # Platforms a service is configured for whose adapter could not be built (no
    # credentials, a token variable unset): /readyz names them until the config is fixed.
    platforms_unavailable: tuple[str, ...] = ()
    delivery: ThreadDelivery | None = None  # the executor's thread lines, posted after it
    _started: bool = False

    def start_background(self) -> None:
        """Executor workers and the scheduler tick; idempotent."""
        if self._started:
            return
        self._started = True
        if self.settings.run_executor:
            if self.delivery is not None:  # lines a crashed process left queued
                self.delivery.start()
            self.executor.start()
        if self.settings.run_scheduler:
            self.watcher.start()  # the next check of each watched service (deduplicated)
            self.scheduler.start()

    def stop(self) -> None:
        self.work_pool.shutdown()
        self.decision_pool.shutdown()
        self.executor.stop()
        if self.delivery is not None:
            self.delivery.stop()
        self.scheduler.stop()
        # Both pools and the claim owner (its liveness connection), after the workers
        # that use them have stopped: claims this process still marks are free at once.
        self.store.close()
        self.http.close()  # after the workers that use it have stopped

    def socket_mode_handler(self, app_token: str) -> GuardedSocketModeHandler:
        """Socket Mode with the front door's size limit (``handlers/socket_mode.py``)."""
        from handlers.socket_mode import GuardedSocketModeHandler

        return GuardedSocketModeHandler(self.bolt, app_token)


def build_auto(settings: Settings, *, config: RollbackConfig, stream: TextIO,
               platforms: dict[str, Platform] | None = None) -> tuple[AutoRollback, Core]:
    """``rollback-bot auto``: the core on Slack's Web API when ``SLACK_BOT_TOKEN`` is set
    (announced, approvable there), else on the console ports writing to ``stream``; the
    caller closes ``core.store``."""
    announced = bool(settings.slack_bot_token)
    chat_port, directory = slack_ports(settings) if announced else console_ports(stream)
    core = build_core(settings, chat_port=chat_port, directory=directory, config=config,
                      platforms=platforms)

    def say(line: str) -> None:
        stream.write(f"{scrub.scrub(line)}\n")
        stream.flush()

    return AutoRollback(config=config, service=core.service, store=core.store,
                        executor=core.executor, clock=utcnow, announced=announced,
                        say=say, http=core.catalog.http), core


def slack_ports(settings: Settings) -> tuple[Chat, Directory]:
    """Chat and directory on Slack's Web API, for a command that posts but serves nothing."""
    from handlers.gateway import SlackChat, SlackDirectory

    client = WebClient(token=settings.slack_bot_token, base_url=settings.slack_api_url,
                       ssl=ssl.create_default_context())
    client.retry_handlers.append(RateLimitErrorRetryHandler(max_retry_count=1))
    return SlackChat(client), SlackDirectory(client)


def console_ports(stream: TextIO) -> tuple[Chat, Directory]:
    """Chat and directory without Slack (``rollback-bot auto`` in a cron job): each message
    as a line on ``stream``, people and channels as the configuration names them."""
    from handlers.console_chat import ConfiguredDirectory, ConsoleChat

    return ConsoleChat(stream), ConfiguredDirectory()


def configured_platforms(config: RollbackConfig) -> list[str]:
    """The platforms some service has a block for, in the registry's order."""
    return [name for name in config.platform_specs.names()
            if any(svc.platform_config(name) is not None for svc in config.services.values())]


def build_platforms(config: RollbackConfig) -> dict[str, Platform]:
    """One adapter per platform the catalog uses, made by that platform's spec (from the
    registry the config was parsed with) out of the first service's block; a platform no
    service uses gets none. (The adapter modules, with their client libraries, are already
    imported with the registry: a platform is one module, its adapter and its spec.) A
    platform that cannot be built here (no credentials, a token variable unset) is left out
    with a warning that says why."""
    adapters: dict[str, Platform] = {}
    for spec in config.platform_specs:
        block = next((b for svc in config.services.values()
                      if (b := svc.platform_config(spec.name)) is not None), None)
        if block is None:
            continue
        try:
            adapters[spec.name] = spec.build(block, secret)
        except PlatformUnavailable as exc:
            log.warning("%s adapter unavailable: %s", spec.name, exc)
    return adapters


@dataclass
class Core:
    """Everything but Slack's surfaces: what ``rollback-bot auto`` runs on its own, and what
    ``create_app`` puts the Slack listeners in front of."""

    config: RollbackConfig
    store: Store
    jobs: JobStore
    chat: Chat
    catalog: Catalog
    policy: Policy
    service: RollbackService
    timers: PolicyTimers
    aftercare: Aftercare
    reminders: Reminders
    outbox: Outbox
    executor: Executor
    watcher: ReleaseWatcher
    job_router: JobRouter
    scheduler: LeaderScheduler
    database_url: str = field(repr=False)
    forward_fixes: ForwardFixTracker | None = None
    delivery: ThreadDelivery | None = None


def build_core(
    settings: Settings, *, chat_port: Chat, directory: Directory, store: Store | None = None,
    platforms: dict[str, Platform] | None = None, config: RollbackConfig | None = None,
    clock: Clock = utcnow, crash_points: CrashPoints = NO_CRASH_POINTS,
) -> Core:
    """The core, wired to a chat and a directory (Slack's, or ``console_ports``)."""
    scrub.install_log_scrubber()  # before anything can log a platform's error text
    config = config or load_config(settings.config_path, platforms=PRODUCTION)
    database_url = settings.database_url or resolve_database_url()
    if store is None:
        migrate(database_url)
        # The scheduler's pool threads borrow a connection per statement too: without room
        # for them they queue for connections (measured 2.5 ms a borrow at 16 threads).
        store = Store(open_pool(database_url, max_size=10 + config.scheduler.workers),
                      # Lease writes have their own few connections: a fence never queues
                      # behind jobs or after-ack work that hold the main pool's.
                      lease_pool=open_lease_pool(
                          database_url, lease_seconds=config.executor.lease_seconds))
    jobs = JobStore(store.pool)
    adapters = platforms if platforms is not None else build_platforms(config)
    for adapter in adapters.values():  # credentials that are not environment variables
        for value in getattr(adapter, "credential_values", list)():
            scrub.remember(value)
    # Nothing the core says reaches Slack unscrubbed, and each rollback's message shows its
    # latest state however many threads re-render it.
    chat = LatestStateChat(ScrubbedChat(chat_port), store)
    # One HTTP client (pool, TLS context) for the process: probes, checks, Prometheus,
    # webhooks, PagerDuty, the status page, GitHub (bot.integrations.http_client).
    http = shared_client()
    catalog = Catalog(config, adapters, http=http)
    policy = Policy(config, directory)
    approved = threading.Event()  # an approval wakes the executor at once

    def on_approved(rollback_id: int) -> None:
        # Slack hears of the approved rollback after its first platform write (the hold;
        # ``delivery`` is built below, the call comes only with an approval).
        delivery.hold(rollback_id)
        approved.set()

    service = RollbackService(
        catalog=catalog, store=store, jobs=jobs, chat=chat, policy=policy, clock=clock,
        on_approved=on_approved,
        # A request's default incident start; the watcher is built below (it files requests
        # through this service), and the call comes only once a request is made.
        first_breach=lambda name: watcher.first_breach(name),
    )
    outbox = Outbox(store.pool, chat, crash_points=crash_points)
    # The executor's thread lines through the outbox, posted after the platform call.
    delivery = ThreadDelivery(outbox=outbox, store=store, chat=chat)
    chat.defer, chat.defer_line = delivery.defer_refresh, delivery.defer_line
    # The emergency contacts called (and paged) when a rule fires; see its module.
    escalation = Escalation(config=config, store=store, jobs=jobs, outbox=outbox,
                            directory=directory, clock=clock, http=http)
    store.when_transitioned(escalation.transitioned)  # acknowledge / resolve the page
    service.when_requested(escalation.requested)  # a reason that mentions security
    timers = PolicyTimers(store=store, jobs=jobs, chat=chat, outbox=outbox,
                          transition=service.transition, policy=policy,
                          escalate=escalation.decision_due)
    aftercare_store = AftercareStore(store.pool)
    from handlers.email_text import stakeholder_email  # the Slack notice's words, as e-mail

    mail = StakeholderMail(config=config, outbox=outbox, mail_outbox=MailOutbox(store.pool),
                           jobs=jobs, store=store, render=stakeholder_email, clock=clock,
                           crash_points=crash_points)
    pull_requests = PostmortemPullRequests(config=config, store=store,
                                           aftercare_store=aftercare_store, jobs=jobs,
                                           outbox=outbox, clock=clock, crash_points=crash_points,
                                           http=http)
    statuspage = StatusPageLifecycle(config=config, store=store, jobs=jobs, outbox=outbox,
                                     page_store=StatuspageStore(store.pool), clock=clock,
                                     crash_points=crash_points,
                                     client=lambda cfg: StatuspageClient(cfg, client=http))
    service.when_requested(statuspage.requested)  # P0/P1: the incident opens at the request
    store.when_transitioned(statuspage.transitioned)  # and follows every step after it
    jobs.outlive_cancel(SYNC_JOB)  # a rejected request's end still reaches the page
    reminders_ = Reminders(config=config, rollback_store=store, jobs=jobs, policy=policy,
                           clock=clock, aftercare_store=aftercare_store, outbox=outbox,
                           pull_requests=pull_requests, mail=mail)
    forward_fixes = ForwardFixTracker(
        rollback_store=store, jobs=jobs, policy=policy, clock=clock,
        store=ForwardFixStore(store.pool), outbox=outbox,
        repeat_hours=config.aftercare.forward_fix_repeat_hours,
        stop_after_days=config.aftercare.forward_fix_stop_after_days)
    aftercare = Aftercare(service, catalog=catalog, rollback_store=store, jobs=jobs, chat=chat,
                          policy=policy, clock=clock, on_approved=service.on_approved,
                          store=aftercare_store, outbox=outbox, reminders=reminders_,
                          progress=delivery,
                          on_completed=(forward_fixes.create,), crash_points=crash_points,
                          notifier=Notifier(config=config, aftercare_store=aftercare_store,
                                            outbox=outbox, mail=mail,
                                            statuspage=statuspage.nudge))
    executor = Executor(catalog=catalog, store=store, chat=chat, clock=clock,
                        settings=config.executor, aftercare=aftercare,
                        on_ended=(reminders_.create, escalation.execution_ended),
                        wake_event=approved, progress=delivery,
                        crash_points=crash_points)
    watcher = ReleaseWatcher(config=config, platforms=adapters, rollback_store=store,
                             jobs=jobs, store=WatchStore(store.pool), outbox=outbox, chat=chat,
                             clock=clock, request=service.request, http=http)
    service.when_requested(watcher.request_made)  # a request answers the open proposal
    job_router = JobRouter()  # every durable job kind and who runs it, in one place
    for owner in (timers, aftercare, watcher, mail, escalation, pull_requests, statuspage,
                  forward_fixes):
        for kind, handler in owner.job_handlers().items():
            job_router.add(kind, handler)
    scheduler = LeaderScheduler(database_url=database_url, jobs=jobs, run_job=job_router.run,
                                clock=clock, workers=config.scheduler.workers,
                                maintenance=Housekeeping(
                                    store=store, jobs=jobs, settings=config.retention))
    return Core(config=config, store=store, jobs=jobs, chat=chat, catalog=catalog,
                policy=policy, service=service, timers=timers, aftercare=aftercare,
                reminders=reminders_, outbox=outbox, executor=executor, watcher=watcher,
                forward_fixes=forward_fixes, delivery=delivery,
                job_router=job_router, scheduler=scheduler, database_url=database_url)


def create_app(
    settings: Settings, *, store: Store | None = None,
    platforms: dict[str, Platform] | None = None, slack_client: WebClient | None = None,
    config: RollbackConfig | None = None, clock: Clock = utcnow,
    crash_points: CrashPoints = NO_CRASH_POINTS,
) -> BotApp:
    """The bot: the core (``build_core``) behind Slack's listeners."""
    from handlers import (
        actions,
        aftercare_buttons,
        commands,
        modals,
        watcher_buttons,
        work_pool,
    )
    from handlers import errors as error_handlers
    from handlers import forward_fix as forward_fix_buttons
    from handlers import timeline as timeline_button
    from handlers.gateway import SlackChat, SlackDirectory

    # One TLS context for every Web API call and every answer through a response_url (Bolt
    # gives its Respond the client's ``ssl``: slack_bolt/context/context.py): slack_sdk
    # posts with urllib, which builds a context (loading the CA bundle) per call when given
    # none (http.client.HTTPSConnection).
    client = slack_client or WebClient(token=settings.slack_bot_token,
                                       base_url=settings.slack_api_url,
                                       ssl=ssl.create_default_context())
    # Group membership is read at every approval (no cache): one wait on Slack's
    # Retry-After instead of refusing a valid approver on a busy incident's first 429.
    if not any(isinstance(h, RateLimitErrorRetryHandler) for h in client.retry_handlers):
        client.retry_handlers.append(RateLimitErrorRetryHandler(max_retry_count=1))
    directory = SlackDirectory(client)
    core = build_core(settings, chat_port=SlackChat(client), directory=directory,
                      store=store, platforms=platforms, config=config, clock=clock,
                      crash_points=crash_points)
    # A request looks its approvers' group id up (in the background, unless known), so the
    # approval's one Slack call is the membership read.
    core.service.when_requested(lambda rb: directory.warm(
        {group} if (group := core.config.approvers_for(rb.service).usergroup) else set()))
    config, store, chat, service = core.config, core.store, core.chat, core.service
    bolt = App(
        client=client,
        signing_secret=settings.slack_signing_secret,
        token_verification_enabled=False,  # start even when Slack is briefly unreachable
        # Socket Mode without a signing secret: Slack's requests arrive over our own
        # websocket; bot.runtime.server then refuses /slack/events over HTTP altogether.
        request_verification_enabled=bool(settings.slack_signing_secret),
        process_before_response=False,
        raise_error_for_unhandled_request=False,
        # Listeners ack and hand slow work to the work pool below (see its module); the
        # Slack calls some make after the ack need more threads than Bolt's default 5.
        listener_executor=ThreadPoolExecutor(
            max_workers=settings.listener_threads or work_pool.LISTENER_THREADS,
            thread_name_prefix="bolt-listener"),
    )
    pool = work_pool.WorkPool(workers=settings.work_pool_workers or work_pool.DEFAULT_WORKERS,
                              queue=settings.work_pool_queue)
    work_pool.attach(bolt, pool)  # before any listener that hands work over is registered
    # A lane of its own for decisions (approve, cancel, reject, IC, checklist): database and
    # Slack only, so they are never "busy" because platform reads hang.
    decisions = work_pool.WorkPool(workers=work_pool.DECISION_WORKERS,
                                   queue=work_pool.DECISION_QUEUE)
    error_handlers.register(bolt, chat)
    modal_reads: work_pool.SharedReads[ModalDefaults | str] = work_pool.SharedReads(pool)
    timeline_reader = TimelineReader(store=store, aftercare_store=AftercareStore(store.pool),
                                     reads=TimelineReads(store.pool), clock=clock)
    commands.register(bolt, service, pool, modal_reads, config=config, store=store, chat=chat,
                      diagnoser=Diagnoser(core.catalog, clock=clock),
                      diagnoses=DiagnosisLog(store), timeline=timeline_reader,
                      forward_fixes=core.forward_fixes)
    timeline_button.register(bolt, timeline_reader, pool, store=store, chat=chat)
    actions.register(bolt, service, decisions, store=store, chat=chat)
    modals.register(bolt, service, pool, store=store, chat=chat,
                    platforms=config.platform_specs)
    aftercare_buttons.register(bolt, core.aftercare, reminders=core.reminders, store=store,
                               chat=chat)
    watcher_buttons.register(bolt, core.watcher, service, pool, modal_reads, store=store,
                             chat=chat)
    if core.forward_fixes is not None:
        forward_fix_buttons.register(bolt, core.forward_fixes, store=store, chat=chat)
    return BotApp(settings=settings, config=config, bolt=bolt, service=service, store=store,
                  executor=core.executor, scheduler=core.scheduler,
                  job_router=core.job_router, watcher=core.watcher,
                  work_pool=pool, decision_pool=decisions, http=core.catalog.http,
                  delivery=core.delivery,
                  database_url=core.database_url,
                  platforms_unavailable=tuple(
                      name for name in configured_platforms(config)
                      if name not in core.catalog.platforms))
