"""Use cases behind every Slack surface: request, approve, reject, cancel, checklist, timers.

Handlers call these after ``ack()``; refusals raise ``UserFacingError`` subclasses that
the single error handler turns into one ephemeral message. Every state change goes
through ``Store.transition`` (compare-and-set + audit) and then re-renders the message.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from bot.assessment import assess
from bot.commands import Parsed
from bot.config import CHECKLIST_ITEMS, PolicyMode, RollbackConfig, Severity
from bot.errors import NotAllowed, NotFound, ParseError, UnknownService, UserFacingError
from bot.jobs import Job, JobStore
from bot.lifecycle import Event, State
from bot.models import Rollback
from bot.planner import build_steps, choose_revision, target_for
from bot.policy import Policy
from bot.ports import Chat, Clock, Directory, utcnow
from bot.rendering import LatestStateChat
from bot.store import ActiveRollbackExists, StaleState, Store
from bot.timers import EVALUATE_JOB, EXPIRE_JOB, HOTFIX_JOB, PolicyTimers
from platforms.base import Platform, PlatformError, Revision

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModalDefaults:
    service: str
    platform: str
    revisions: list[Revision]
    severity: Severity
    scope: list[str]


class RollbackService:
    def __init__(
        self, *, config: RollbackConfig, store: Store, jobs: JobStore,
        platforms: dict[str, Platform], chat: Chat, directory: Directory,
        clock: Clock = utcnow, on_approved: Callable[[int], None] | None = None,
    ) -> None:
        self.config = config
        self.store = store
        self.jobs = jobs
        self.platforms = platforms
        self.chat: Chat = LatestStateChat(chat, store)
        self.directory = directory
        self.policy = Policy(config, directory)
        self.clock = clock
        self.on_approved = on_approved or (lambda _id: None)
        # Called when execution ends badly (failed, needs_attention): every rollback still
        # gets its post-incident review reminder.
        self.on_execution_ended: list[Callable[[Rollback], None]] = []
        self.job_handlers: dict[str, Callable[[Job], None]] = {}  # kind -> handler
        PolicyTimers(self)

    # ------------------------------------------------------------------ lookups
    def service_config(self, name: str) -> Any:
        svc = self.config.service(name)
        if svc is None:
            raise UnknownService(name, sorted(self.config.services))
        return svc

    def platform(self, name: str) -> Platform:
        adapter = self.platforms.get(name)
        if adapter is None:
            raise UserFacingError(f"The `{name}` platform adapter is not available here.")
        return adapter

    def get(self, ref: str | int) -> Rollback:
        text = str(ref).upper().removeprefix("RB-")
        if not text.isdigit():
            raise ParseError(f"`{ref}` is not a rollback ID (like RB-12).")
        rb = self.store.get(int(text))
        if rb.message_ts is None and rb.state == State.PENDING_APPROVAL:
            rb = self._await_message(rb)
        return rb

    def _await_message(self, rb: Rollback, timeout: float = 3.0) -> Rollback:
        """A click can arrive between Slack returning the request message's ts and our
        storing it; wait (bounded) for the ts so thread replies land in the thread."""
        deadline = time.monotonic() + timeout
        while rb.message_ts is None and time.monotonic() < deadline:
            time.sleep(0.02)
            rb = self.store.get(rb.id)
        return rb

    def modal_defaults(self, service: str, *, platform: str | None = None) -> ModalDefaults:
        svc = self.service_config(service)
        name = svc.platform_or_default(platform)
        revisions = self.platform(name).history(target_for(svc, name))
        sev = self.config.policy_for(service).default_severity
        scope = self.config.policy_for(service).for_severity(sev).scope
        return ModalDefaults(service, name, revisions, sev, list(scope))

    # ------------------------------------------------------------------ request
    def request(self, parsed: Parsed, *, requester: str, channel_id: str) -> Rollback:
        assert parsed.service is not None
        svc = self.service_config(parsed.service)
        channel_name = self.directory.channel_name(channel_id)
        self.policy.check_channel(parsed.service, channel_name)
        policy = self.config.policy_for(parsed.service)
        severity = parsed.severity or policy.default_severity
        sev = policy.for_severity(severity)
        scope = parsed.scope or list(sev.scope)
        platform_name = svc.platform_or_default(parsed.platform)
        target = target_for(svc, platform_name)
        adapter = self.platform(platform_name)
        existing = self.store.active_for_service(parsed.service)
        if existing is not None:
            raise _active_error(existing)
        try:
            history = adapter.history(target)
        except PlatformError as exc:
            raise UserFacingError(f"Could not read the revision history: {exc}") from None
        current, wanted = choose_revision(history, parsed.to)
        now = self.clock()
        checklist: dict[str, Any] = {
            "previous_version": {"done": True, "by": "bot", "note": wanted.label()},
        }
        backup_path = None
        if "db" in scope and svc.database is not None:
            backup_path, checklist["backup_verified"] = self._pin_backup(svc, parsed.service, now)
        known = (self.store.known_good_config(parsed.service, platform_name)
                 if "config" in scope else None)
        steps = build_steps(service=svc, scope=scope, target_revision=wanted,
                            backup_path=backup_path,
                            known_good=(known[1], known[2]) if known else None)
        try:
            rb = self.store.create_rollback(
                service=parsed.service, platform=platform_name, severity=severity.value,
                policy_mode=sev.mode.value, scope=scope, reason=parsed.reason,
                requester=requester, channel_id=channel_id, channel_name=channel_name,
                current_revision=current, target_revision=wanted, target=target, steps=steps,
                checklist=checklist, assessment={},
                expires_at=now + timedelta(minutes=policy.approval_expiry_minutes),
                created_at=now,
            )
        except ActiveRollbackExists as exc:
            raise _active_error(exc.existing) from None
        self._schedule_policy_timers(rb, sev.mode, sev.window_minutes)
        try:
            ts, thread_ts = self.chat.post_request(rb, self.store.steps(rb.id))
        except Exception as exc:
            # Nobody can see or approve a request whose message was refused: release the
            # service instead of holding it "pending" for the whole expiry window.
            self.store.transition(rb.id, Event.CANCEL, actor="bot",
                                  detail={"reason": "request message could not be posted"})
            self.jobs.cancel(rollback_id=rb.id)
            log.warning("could not post %s: %s", rb.ref, exc)
            raise UserFacingError(
                f"I could not post the rollback request in this channel ({_slack_error(exc)})."
                " Invite the bot to the channel (`/invite @rollback-bot`) and try again."
            ) from None
        self.store.set_message(rb.id, message_ts=ts, thread_ts=thread_ts)
        rb = self.store.get(rb.id)
        self._notify_stakeholders_requested(rb)
        if severity == Severity.P0:
            self.chat.thread(rb, ":rotating_light: *P0*: immediate full rollback. An approver "
                                 "may approve their own request (break glass, audited).")
        return self._assess(rb, svc, adapter)

    def _pin_backup(self, svc: Any, service: str, now: Any) -> tuple[str | None, dict[str, Any]]:
        from bot import database

        info = database.latest_backup(svc.database.backup_location, service=service, before=now)
        if info is None:
            return None, {"done": False, "by": "bot", "note": "no backup found"}
        check = database.verify_backup(info.path, max_age_hours=svc.database.backup_max_age_hours,
                                       now=now)
        return str(info.path), {"done": bool(check.ok), "by": "bot", "note": check.detail}

    def _assess(self, rb: Rollback, svc: Any, adapter: Platform) -> Rollback:
        result = assess(service=svc, platform=adapter, target=rb.target)
        logs = result.get("logs", {}).pop("logs", None)
        if logs:  # attached before the message says "attached"
            try:
                self.chat.upload(rb, filename=f"{rb.service}-logs-{rb.ref}.txt",
                                 content=logs.encode(), title=f"Last 100 log lines ({rb.ref})")
            except Exception as exc:
                log.warning("could not attach logs for %s: %s", rb.ref, exc)
                result["logs"] = {"ok": False, "text": "could not attach the logs"}
        self.store.set_assessment(rb.id, result)
        rb = self.store.get(rb.id)
        self.chat.refresh(rb)
        return rb

    def _schedule_policy_timers(self, rb: Rollback, mode: PolicyMode,
                                window: float | None) -> None:
        if rb.expires_at:
            self.jobs.schedule(kind=EXPIRE_JOB, due_at=rb.expires_at, rollback_id=rb.id,
                               dedupe_key=f"{EXPIRE_JOB}:{rb.id}")
        if mode == PolicyMode.EVALUATE and window:
            self.jobs.schedule(kind=EVALUATE_JOB, rollback_id=rb.id,
                               due_at=rb.created_at + timedelta(minutes=window),
                               dedupe_key=f"{EVALUATE_JOB}:{rb.id}")

    def _notify_stakeholders_requested(self, rb: Rollback) -> None:
        svc = self.service_config(rb.service)
        if not svc.stakeholders.channels:
            return
        failed = []
        for channel in svc.stakeholders.channels:
            try:
                self.chat.post_channel(channel, f":warning: {rb.service}: rollback {rb.ref} to "
                                       f"{rb.target_revision.label()} requested ({rb.severity}).")
            except Exception as exc:  # a notification problem must not block the rollback
                log.warning("stakeholder notice to %s failed: %s", channel, exc)
                failed.append(channel)
        if failed:
            self.chat.thread(rb, f":warning: Could not notify {', '.join(failed)}; "
                                 "tell stakeholders by hand.")
            return
        self.store.set_checklist_item(rb.id, "stakeholders_notified",
                                      {"done": True, "by": "bot"}, actor="bot")

    # ------------------------------------------------------------------ decisions
    def approve(self, ref: str | int, *, user: str, channel_id: str,
                override: bool = False) -> Rollback:
        rb = self.get(ref)
        channel_name = self.directory.channel_name(channel_id)
        decision = self.policy.check_approve(rb, user=user, channel_name=channel_name,
                                             now=self.clock(), override=override)
        detail = {"break_glass": decision.break_glass, "override": decision.override}
        rb = self.transition(rb, Event.APPROVE, actor=user, detail=detail, refresh=False,
                              updates={"approver": user, "approved_at": self.clock(),
                                       "break_glass": decision.break_glass})
        self.on_approved(rb.id)  # before any Slack round trip: execution starts at once
        self.chat.refresh(rb)
        self.jobs.cancel(rollback_id=rb.id, kinds=[EXPIRE_JOB, HOTFIX_JOB, EVALUATE_JOB])
        if decision.break_glass:
            self.chat.thread(rb, f":rotating_light: BREAK GLASS: <@{user}> approved their own "
                                 f"{rb.severity} rollback. This is recorded in the audit log.")
        if decision.override:
            self.chat.thread(rb, f":warning: <@{user}> overrode the {rb.severity} policy "
                                 "(plan for next deployment) and approved execution now.")
        return rb

    def reject(self, ref: str | int, *, user: str, reason: str) -> Rollback:
        rb = self.get(ref)
        self.policy.check_reject(rb, user=user)
        if not reason.strip():
            raise UserFacingError("A rejection needs a reason.")
        rb = self.transition(rb, Event.REJECT, actor=user, detail={"reason": reason})
        self.jobs.cancel(rollback_id=rb.id)
        self.chat.thread(rb, f"<@{user}> rejected {rb.ref}: {reason}")
        return rb

    def cancel(self, ref: str | int, *, user: str) -> Rollback:
        rb = self.get(ref)
        self.policy.check_cancel(rb, user=user)
        rb = self.transition(rb, Event.CANCEL, actor=user)
        self.jobs.cancel(rollback_id=rb.id)
        self.chat.thread(rb, f"<@{user}> cancelled {rb.ref}.")
        return rb

    def resolve(self, ref: str | int, *, user: str, note: str = "") -> Rollback:
        rb = self.get(ref)
        self.policy.check_resolve(rb, user=user)
        rb = self.transition(rb, Event.RESOLVE, actor=user, detail={"note": note})
        self.chat.thread(rb, f"<@{user}> closed {rb.ref} as {rb.state.value}.")
        return rb

    def hotfix_in_progress(self, ref: str | int, *, user: str) -> Rollback:
        rb = self.get(ref)
        if rb.state != State.PENDING_APPROVAL or rb.policy_mode != PolicyMode.HOTFIX_WINDOW:
            raise NotAllowed(f"{rb.ref} is not waiting on a hotfix decision.")
        window = self.config.policy_for(rb.service).for_severity(Severity(rb.severity))
        minutes = window.window_minutes or 15
        due = self.clock() + timedelta(minutes=minutes)
        job = self.jobs.schedule(kind=HOTFIX_JOB, rollback_id=rb.id, due_at=due,
                                 payload={"by": user}, dedupe_key=f"{HOTFIX_JOB}:{rb.id}")
        if job is None:
            raise NotAllowed(f"A hotfix window is already running for {rb.ref}.")
        self.store.audit(rb.id, actor=user, event="hotfix_in_progress",
                         detail={"escalates_at": due.isoformat()})
        self.chat.thread(rb, f"<@{user}> reports a hotfix in progress. If it has not landed by "
                             f"{due:%H:%M} UTC ({minutes:.0f} min), I will ask for the rollback.")
        return rb

    def tick_checklist(self, ref: str | int, *, item: str, user: str) -> Rollback:
        if item not in CHECKLIST_ITEMS:
            raise ParseError(f"Unknown checklist item `{item}`.")
        rb = self.get(ref)
        if rb.state != State.PENDING_APPROVAL:
            raise NotAllowed(f"The checklist of {rb.ref} is closed ({rb.state.value}).")
        done = not (rb.checklist.get(item) or {}).get("done")
        rb = self.store.set_checklist_item(rb.id, item, {"done": done, "by": user}, actor=user)
        self.chat.refresh(rb)
        return rb

    def assign_incident_commander(self, ref: str | int, *, user: str) -> Rollback:
        rb = self.get(ref)
        rb = self.store.update_fields(rb.id, actor=user, incident_commander=user)
        rb = self.store.set_checklist_item(rb.id, "incident_commander",
                                           {"done": True, "by": user}, actor=user)
        self.chat.refresh(rb)
        return rb

    # ------------------------------------------------------------------ queries
    def status(self, arg: str | None) -> list[Rollback]:
        if arg is None:
            from bot.lifecycle import ACTIVE

            return self.store.in_states(ACTIVE)
        if arg.upper().startswith("RB-") or arg.isdigit():
            return [self.get(arg)]
        self.service_config(arg)
        return self.store.history(arg, limit=1)

    def history(self, service: str) -> list[Rollback]:
        self.service_config(service)
        return self.store.history(service, limit=10)

    # ------------------------------------------------------------------ timers
    def run_job(self, job: Job) -> None:
        handler = self.job_handlers.get(job.kind)
        if handler is None:
            log.warning("no handler for job kind %s", job.kind)
            return
        handler(job)

    # ------------------------------------------------------------------ helpers
    def transition(self, rb: Rollback, event: Event, *, actor: str,
                    detail: dict[str, Any] | None = None,
                    updates: dict[str, Any] | None = None, refresh: bool = True) -> Rollback:
        from bot.errors import InvalidTransition

        try:
            new = self.store.transition(rb.id, event, actor=actor, expected=rb.state,
                                        detail=detail, updates=updates)
        except StaleState as exc:
            cur = exc.current
            raise NotAllowed(f"{cur.ref} is already {cur.state.value.replace('_', ' ')}.") from None
        except InvalidTransition:
            raise NotAllowed(
                f"{rb.ref} is {rb.state.value.replace('_', ' ')}; cannot {event.value} it."
            ) from None
        if refresh:
            self.chat.refresh(new)
        return new


def _slack_error(exc: Exception) -> str:
    """The Slack error code of a Web API failure (e.g. not_in_channel), never the payload."""
    response: Any = getattr(exc, "response", None)
    code = response.get("error") if response is not None and hasattr(response, "get") else None
    return str(code or type(exc).__name__)


def permalink(rb: Rollback) -> str:
    ts = (rb.message_ts or "").replace(".", "")
    return f"<https://slack.com/archives/{rb.channel_id}/p{ts}|{rb.ref}>"


def _active_error(existing: Rollback) -> UserFacingError:
    return UserFacingError(
        f"{existing.ref} is already {existing.state.value.replace('_', ' ')} for "
        f"`{existing.service}` (requested by <@{existing.requester}>): "
        f"{permalink(existing)} . "
        "Only one active rollback per service."
    )


__all__ = ["RollbackService", "NotFound"]
