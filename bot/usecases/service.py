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
from datetime import datetime, timedelta
from typing import Any

from bot.domain import authority, incident_times
from bot.domain.authority import Action
from bot.domain.command_parsing import Parsed
from bot.domain.compensation import left_scaled_down, plan_compensation
from bot.domain.config import CHECKLIST_ITEMS, ServiceConfig, Severity, secret
from bot.domain.contacts import contact_facts
from bot.domain.errors import (
    InvalidTransition,
    NotAllowed,
    NotFound,
    ParseError,
    UserFacingError,
)
from bot.domain.lifecycle import Event, State
from bot.domain.messages import (
    AutomationApproved,
    BreakGlass,
    CancelAsked,
    Cancelled,
    HotfixReported,
    ImmediatePolicy,
    KnownBadOverride,
    KnownBadTargetRequested,
    PolicyOverridden,
    Rejected,
    Resolved,
    RollbackRequested,
    ScaledBackUp,
    StakeholdersNotNotified,
)
from bot.domain.models import KnownBad, PlannedStep, Rollback
from bot.domain.planner import RevisionChoice, build_steps, choose_revision, target_for
from bot.domain.policy import Policy
from bot.domain.ports import Chat, Clock, utcnow
from bot.domain.words import Mention, RollbackLink
from bot.persistence.errors import ActiveRollbackExists, StaleState
from bot.persistence.jobs import JobStore
from bot.persistence.store import Store
from bot.usecases.assessment import TimedOut, assess, bounded
from bot.usecases.catalog import Catalog
from bot.usecases.timers import POLICY_JOBS, decision_key, expiry_key, schedule_deadlines
from platforms.base import (
    Capability,
    Platform,
    PlatformError,
    Revision,
    RevisionDetail,
    RevisionNotFound,
    Target,
    Unsupported,
)

log = logging.getLogger(__name__)

# ``/rollback status`` lists at most this many active rollbacks (the newest) and counts the
# rest: one message section holds about twenty lines (Slack's 3,000 characters).
STATUS_LIST_LIMIT = 20


@dataclass(frozen=True)
class ModalDefaults:
    service: str
    platform: str
    revisions: list[Revision]
    severity: Severity
    scope: list[str]
    known_bad: dict[str, KnownBad]
    # The start a request from the form gets when its field is left empty, with its source.
    incident_start: incident_times.IncidentStart | None = None


@dataclass(frozen=True)
class Plan:
    """What a request pins: the revision to return to and the steps, read from the platform."""

    service: str
    severity: Severity
    mode: str
    scope: list[str]
    platform: str
    target: Target
    adapter: Platform
    choice: RevisionChoice
    steps: list[PlannedStep]
    checklist: dict[str, Any]
    facts: dict[str, Any]
    planned_at: datetime
    incident_start: incident_times.IncidentStart | None = None


class RollbackService:
    """The use cases people start from Slack; collaborators come from the composition root."""

    def __init__(
        self, *, catalog: Catalog, store: Store, jobs: JobStore, chat: Chat, policy: Policy,
        clock: Clock = utcnow, on_approved: Callable[[int], None] | None = None,
        first_breach: Callable[[str], datetime | None] | None = None,
    ) -> None:
        self.catalog = catalog
        self.config = catalog.config
        self.store = store
        self.jobs = jobs
        self.chat = chat  # serialised per rollback (latest state wins), scrubbed
        self.policy = policy  # who may do what; its directory names channels and groups
        self.clock = clock
        self.on_approved = on_approved or (lambda _id: None)
        # The release watcher's first breach of a service's open episode (None: no finding),
        # the first default of a request's incident start.
        self.first_breach = first_breach or (lambda _service: None)
        # Told of every posted request (the release watcher marks its proposal answered);
        # the composition root subscribes them (``when_requested``).
        self._requested_listeners: list[Callable[[Rollback], None]] = []

    def when_requested(self, listener: Callable[[Rollback], None]) -> None:
        """Call ``listener`` with each request once it is posted and assessed."""
        self._requested_listeners.append(listener)

    # ------------------------------------------------------------------ lookups
    def service_config(self, name: str) -> ServiceConfig:
        return self.catalog.service_config(name)

    def platform(self, name: str) -> Platform:
        return self.catalog.platform(name)

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
        current = next((r for r in revisions if r.current), None)
        start = self._default_start(service, current, self.clock())
        return ModalDefaults(service, name, revisions, sev, list(scope),
                             self.store.known_bad(service, name), start)

    # ------------------------------------------------------------------ request
    def check_can_request(self, service: str, *, user: str, channel_id: str) -> None:
        """The request's own rules (the service exists, an incident channel, who may ask),
        checked before a request form is offered from elsewhere (a diagnosis' button);
        ``request`` checks them again when the form is submitted."""
        self.service_config(service)
        channel_name = self.policy.directory.channel_name(channel_id)
        self.policy.check_request(service, user=user, channel_name=channel_name)

    def precheck_request(self, parsed: Parsed, *, channel_name: str | None) -> None:
        """The refusals of ``request`` that need no platform, database or Slack call, in
        the order ``request`` checks them: the service exists, the channel is an incident
        channel (when the caller knows its name without asking Slack: ``None`` skips it),
        the platform is configured for the service and has an adapter here. Fast enough
        for a slash command's 3-second ack, so a refusal is the ack itself instead of
        following a "Preparing…" one; ``request`` checks everything again."""
        assert parsed.service is not None
        svc = self.service_config(parsed.service)
        if channel_name is not None and \
                authority.rule(Action.REQUEST).where == authority.Where.INCIDENT_CHANNEL:
            self.policy.check_channel(parsed.service, channel_name)
        platform_name = svc.platform_or_default(parsed.platform)
        target_for(svc, platform_name)
        self.platform(platform_name)
        if parsed.started:  # a start in the future or beyond a week: refused at once
            incident_times.resolve(parsed.started, now=self.clock())

    def preview(self, parsed: Parsed) -> Plan:
        """The plan a request would pin now (revision, steps), without creating anything:
        ``rollback-bot auto --dry-run``. The same refusals as a request's."""
        return self._plan(parsed)

    def _plan(self, parsed: Parsed) -> Plan:
        assert parsed.service is not None
        svc = self.service_config(parsed.service)
        policy = self.config.policy_for(parsed.service)
        severity = parsed.severity or policy.default_severity
        sev = policy.for_severity(severity)
        scope = parsed.scope or list(sev.scope)
        if not parsed.scope and "db" in scope and svc.database is None:
            # An older policy default (P0 used to include db): nothing to restore here.
            scope = [s for s in scope if s != "db"] or ["app"]
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
        known_bad = self.store.known_bad(parsed.service, platform_name)
        if parsed.to is None:
            self._refuse_if_already_restored(parsed.service, platform_name, history, known_bad)
        choice = choose_revision(history, parsed.to, known_bad)
        now = self.clock()
        start = self._incident_start(parsed, choice, now)
        checklist: dict[str, Any] = {"previous_version": _previous_version_item(choice)}
        facts: dict[str, Any] = {"revisions": _revision_facts(history, known_bad, choice.target),
                                 "incident_start": {"at": start.at.isoformat(),
                                                    "source": start.source}}
        if choice.target_known_bad is not None:
            facts["known_bad_target"] = _mark_facts(choice.target_known_bad)
        if choice.never_deployed:  # only an explicit --to picks one: the approvers must know
            facts["never_deployed_target"] = {"number": choice.target.number,
                                              "label": choice.target.label()}
        backup_path = None
        if "db" in scope:
            backup_path, facts["backup"], checklist["backup_verified"] = self._pin_backup(
                svc, parsed.service, now)
        known = (self.store.known_good_config(parsed.service, platform_name)
                 if "config" in scope else None)
        steps = build_steps(service=svc, platform=platform_name, scope=scope,
                            target_revision=choice.target, backup_path=backup_path,
                            backup_size=facts["backup"]["size"] if backup_path else None,
                            known_good=(known[1], known[2]) if known else None)
        facts["destructive"] = [{"kind": st.kind, "description": st.description}
                                for st in steps if st.destructive]
        # The emergency contacts as they are now, shown on the request message and kept.
        facts["contacts"] = contact_facts(self.config.contacts_for(parsed.service))
        # A decoration, read last: a plan that is refused above never waits for it.
        facts.update(self._config_view(platform_name, adapter, target, choice))
        return Plan(service=parsed.service, severity=severity, mode=sev.mode.value, scope=scope,
                    platform=platform_name, target=target, adapter=adapter, choice=choice,
                    steps=steps, checklist=checklist, facts=facts, planned_at=now,
                    incident_start=start)

    def _incident_start(self, parsed: Parsed, choice: RevisionChoice, now: datetime
                        ) -> incident_times.IncidentStart:
        """The start the requester gave (refused in the future or beyond a week, before
        anything is recorded), else the default with its source: the release watcher's
        first breach, the running revision's deploy time, the request."""
        if parsed.started:
            return incident_times.IncidentStart(
                incident_times.resolve(parsed.started, now=now), incident_times.GIVEN)
        assert parsed.service is not None
        return self._default_start(parsed.service, choice.current, now)

    def _default_start(self, service: str, current: Revision | None, now: datetime
                       ) -> incident_times.IncidentStart:
        try:
            breach = self.first_breach(service)
        except Exception:  # a default's decoration: never blocks the request
            log.warning("release watcher's breach of %s unreadable", service, exc_info=True)
            breach = None
        return incident_times.default(watcher_breach=breach,
                                      deployed_at=current.created if current else None,
                                      requested_at=now)

    def _config_view(self, platform_name: str, adapter: Platform, target: Target,
                     choice: RevisionChoice) -> dict[str, Any]:
        """What configuration changes with the pinned revision, for the approvers: a
        decoration, so a platform that cannot tell (its spec, ``Unsupported``) or fails to
        tell says why in the plan instead of blocking the request. Bounded by
        ``request.config_view_timeout_seconds`` on the assessment's pool: a platform that
        hangs (ECS: 30 s × 3 attempts a call) makes it "timed out after N s", never a
        request (or ``rollback-bot auto``) held for minutes."""
        spec = self.catalog.spec(platform_name)
        timeout = self.config.request.config_view_timeout_seconds
        try:
            if spec is not None:
                spec.require(Capability.CONFIG_VIEW)
            diffs = bounded(lambda: adapter.config_differences(target, choice.current,
                                                               choice.target), timeout)
        except TimedOut as exc:
            log.info("configuration view of %s: %s", target.describe(), exc)
            return {"config_view_unavailable": str(exc)}
        except Unsupported as exc:
            return {"config_view_unavailable": exc.reason}
        except PlatformError as exc:
            return {"config_view_unavailable": f"{type(exc).__name__}: {exc}"[:300]}
        except Exception as exc:  # a decoration never blocks a state transition
            log.warning("configuration view of %s failed: %s", target.describe(), exc,
                        exc_info=True)
            return {"config_view_unavailable": f"unexpected {type(exc).__name__}"}
        return {"config_differences": [d.to_dict() for d in diffs]}

    def request(self, parsed: Parsed, *, requester: str, channel_id: str) -> Rollback:
        assert parsed.service is not None
        svc = self.service_config(parsed.service)
        channel_name = self.policy.directory.channel_name(channel_id)
        self.policy.check_request(parsed.service, user=requester, channel_name=channel_name)
        plan = self._plan(parsed)
        policy = self.config.policy_for(parsed.service)
        severity, scope, platform_name, adapter = (plan.severity, plan.scope, plan.platform,
                                                   plan.adapter)
        sev = policy.for_severity(severity)
        current, wanted = plan.choice.current, plan.choice.target
        target, steps, checklist, facts = plan.target, plan.steps, plan.checklist, plan.facts
        now = plan.planned_at
        decision_due = policy.decision_due(severity, now)  # the runbook's response time
        try:
            rb = self.store.create_rollback(
                service=parsed.service, platform=platform_name, severity=severity.value,
                policy_mode=sev.mode.value, scope=scope, reason=parsed.reason,
                requester=requester, channel_id=channel_id, channel_name=channel_name,
                current_revision=current, target_revision=wanted, target=target, steps=steps,
                checklist=checklist, assessment={},
                expires_at=policy.expires_at(now, decision_due), decision_due_at=decision_due,
                created_at=now, plan_facts=facts,
                incident_started_at=plan.incident_start.at if plan.incident_start else None,
                incident_start_source=(plan.incident_start.source if plan.incident_start
                                       else None),
            )
        except ActiveRollbackExists as exc:
            raise _active_error(exc.existing) from None
        schedule_deadlines(self.jobs, rb)  # the decision deadline and the expiry, as jobs
        try:
            channel_id, ts, thread_ts = self.chat.post_request(rb, self.store.steps(rb.id))
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
        self.store.set_message(rb.id, message_ts=ts, thread_ts=thread_ts, channel_id=channel_id)
        rb = self.store.get(rb.id)
        self._notify_stakeholders_requested(rb)
        if severity == Severity.P0:
            self.chat.thread(rb, ImmediatePolicy(severity.value, sev.mode.value,
                                                 destructive=bool(rb.destructive_steps),
                                                 self_approval=sev.allow_self_approval))
        if rb.known_bad_target:
            self._warn_known_bad_target(rb, requested_by=requester)
        rb = self._assess(rb, svc, adapter)
        for listener in self._requested_listeners:
            listener(rb)
        return rb

    def _refuse_if_already_restored(self, service: str, platform: str,
                                    history: list[Revision],
                                    known_bad: dict[str, KnownBad]) -> None:
        """A plain ``/rollback`` on a service that already runs the version a completed
        rollback returned to would roll it further back; say so instead of doing it."""
        current = next((r for r in history if r.current), None)
        if current is None:
            return
        done = self.store.last_completed_to(service, platform, current.id)
        if done is None:
            return
        try:
            further = choose_revision(history, None, known_bad).target
            pick = f"{further.label()}; request it with `--to {further.number}` if that is " \
                   "what you want"
        except UserFacingError:
            pick = "nothing: no earlier revision that is not known-bad is left"
        when = f" at {done.finished_at:%Y-%m-%d %H:%M} UTC" if done.finished_at else ""
        raise UserFacingError(
            f"`{service}` already runs {current.label()}, the version {done.ref} rolled back "
            f"to (completed{when}). A further rollback would pick {pick}.")

    def _warn_known_bad_target(self, rb: Rollback, *, requested_by: str) -> None:
        mark = rb.known_bad_target or {}
        self.chat.post_channel(rb.channel_id, KnownBadTargetRequested(
            rb.ref, requested_by, rb.service, rb.target_revision.label(),
            marked_by_rollback=mark.get("rollback_id") or None))

    def _pin_backup(self, svc: Any, service: str, now: Any
                    ) -> tuple[str, dict[str, Any], dict[str, Any]]:
        """(path, plan facts, checklist item) of a verified backup, or a refusal saying what
        is missing and how to fix it: a restore is never planned without one."""
        from bot.integrations import target_database as database
        from bot.integrations.errors import DatabaseOperationError

        if svc.database is None:
            raise UserFacingError(
                f"`db` is in the scope but `{service}` has no `database` section in the "
                "configuration; request the rollback without `db`.")
        db = svc.database
        dsn = secret(db.dsn_env)
        if not dsn:  # the backup step would fail only after the app was scaled down
            raise UserFacingError(
                f"Refused: `db` scope for `{service}` needs the database DSN, and "
                f"`{db.dsn_env}` is not set in the bot's environment. Set it and request "
                "again, or request without `db`.")
        try:
            problem = database.client_tools_problem(dsn)
        except DatabaseOperationError as err:
            # The error names the database's user, host and name: logs only, not Slack.
            log.warning("db scope refused for %s: %s", service, err)
            raise UserFacingError(
                f"Refused: `db` scope needs the database of `{service}` reachable to check "
                "that this bot's pg_dump can back it up, and it could not be reached (the "
                "bot's log has the error). Request again when it answers, or request "
                "without `db`.") from None
        if problem:
            raise UserFacingError(
                f"Refused: `db` scope for `{service}`: {problem}. Install a PostgreSQL "
                "client of the server's version or newer (the image ships Debian's "
                "postgresql-client), or request without `db`.")
        info = database.latest_backup(db.backup_location, service=service, before=now)
        fix = (f"Take a backup (`pg_dump -Fc` into the backup location, named like "
               f"`{database.backup_filename(service, now)}`) and request again, or request "
               "without `db` in the scope (the runbook restores the database only when data "
               "corruption is confirmed).")
        if info is None:
            raise UserFacingError(
                f"Refused: a database rollback needs a verified backup pinned in the plan, "
                f"and no backup of `{service}` was found in the backup location. {fix}")
        check = database.verify_backup(info.path, max_age_hours=db.backup_max_age_hours,
                                       now=now)
        if not check.ok:
            raise UserFacingError(
                f"Refused: the newest backup `{info.path.name}` cannot be pinned: "
                f"{check.detail}. {fix}")
        facts = {"name": info.path.name, "size": info.size, "taken_at": info.created.isoformat(),
                 "entries": check.entries}
        return str(info.path), facts, {"done": True, "by": "bot", "note": check.detail}

    def _assess(self, rb: Rollback, svc: Any, adapter: Platform) -> Rollback:
        result = assess(service=svc, platform=adapter, target=rb.target,
                        client=self.catalog.http)
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

    def _notify_stakeholders_requested(self, rb: Rollback) -> None:
        svc = self.service_config(rb.service)
        if not svc.stakeholders.channels:
            return
        failed = []
        for channel in svc.stakeholders.channels:
            try:
                self.chat.post_channel(channel, RollbackRequested(
                    rb.service, rb.ref, rb.target_revision.label(), rb.severity))
            except Exception as exc:  # a notification problem must not block the rollback
                log.warning("stakeholder notice to %s failed: %s", channel, exc)
                failed.append(channel)
        if failed:
            self.chat.thread(rb, StakeholdersNotNotified(tuple(failed)))
            return
        self.store.set_checklist_item(rb.id, "stakeholders_notified",
                                      {"done": True, "by": "bot"}, actor="bot")

    # ------------------------------------------------------------------ decisions
    def check_can_approve(self, ref: str | int, *, user: str, channel_id: str,
                          override: bool = False, known_bad_override: bool = False) -> Rollback:
        """Every approval rule except the typed confirmation: lets the Slack layer refuse at
        once instead of opening a confirmation dialog that could never succeed."""
        rb = self.get(ref)
        self.policy.check_approve(rb, user=user, channel_id=channel_id,
                                  channel_name=self._click_channel_name(rb, channel_id),
                                  now=self.clock(), override=override,
                                  known_bad_override=known_bad_override,
                                  typed_confirmation=rb.service)
        return rb

    def check_can_reject(self, ref: str | int, *, user: str, channel_id: str) -> Rollback:
        """The Reject click, before its reason dialog opens: the dialog's submission carries
        no channel of its own, so the channel rule is applied here."""
        rb = self.get(ref)
        self.policy.check_reject(rb, user=user, channel_id=channel_id)
        return rb

    def approve(self, ref: str | int, *, user: str, channel_id: str,
                override: bool = False, known_bad_override: bool = False,
                typed_confirmation: str | None = None) -> Rollback:
        rb = self.get(ref)
        channel_name = self._click_channel_name(rb, channel_id)
        decision = self.policy.check_approve(
            rb, user=user, channel_id=channel_id, channel_name=channel_name, now=self.clock(),
            override=override,
            known_bad_override=known_bad_override, typed_confirmation=typed_confirmation)
        detail = {"break_glass": decision.break_glass, "override": decision.override,
                  "known_bad_override": decision.known_bad_override,
                  "destructive": [d["kind"] for d in rb.destructive_steps]}
        rb = self.transition(rb, Event.APPROVE, actor=user, detail=detail, refresh=False,
                              updates={"approver": user, "approved_at": self.clock(),
                                       "break_glass": decision.break_glass})
        self.on_approved(rb.id)  # before any Slack round trip: execution starts at once
        self.chat.refresh(rb)
        self.jobs.cancel(rollback_id=rb.id, kinds=POLICY_JOBS)
        if decision.known_bad_override:
            self.chat.post_channel(rb.channel_id, KnownBadOverride(
                user, rb.ref, rb.service, rb.target_revision.label()))
        if decision.break_glass:
            self.chat.thread(rb, BreakGlass(user, rb.severity))
        if decision.override:
            self.chat.thread(rb, PolicyOverridden(user, rb.severity, rb.policy_mode))
        return rb

    def _click_channel_name(self, rb: Rollback, channel_id: str) -> str:
        """The name the channel rule checks for a click from ``channel_id``. A click in the
        request's own channel (the ids compare equal) is checked by the name stored with
        the request, with no Slack round trip before the approval; a click anywhere else is
        refused by the channel rule, worded with the name Slack gives."""
        if channel_id == rb.channel_id and rb.channel_name:
            return rb.channel_name
        return self.policy.directory.channel_name(channel_id)

    def approve_as_automation(self, ref: str | int, *, identity: str) -> Rollback:
        """``rollback-bot auto`` approving its own request where the configuration allows it
        (``Policy.check_automation_approve``); audited as the automation's approval."""
        rb = self.get(ref)
        self.policy.check_automation_approve(rb, identity=identity, now=self.clock())
        rb = self.transition(rb, Event.APPROVE, actor=identity, refresh=False,
                             detail={"automation": True, "break_glass": False,
                                     "override": False, "destructive": []},
                             updates={"approver": identity, "approved_at": self.clock(),
                                      "break_glass": False})
        self.on_approved(rb.id)
        self.jobs.cancel(rollback_id=rb.id, kinds=POLICY_JOBS)
        try:  # decorations: the approval is committed and the executor woken already
            self.chat.refresh(rb)
            self.chat.thread(rb, AutomationApproved(identity, rb.severity))
        except Exception as exc:
            log.warning("could not announce the automation's approval of %s: %s", rb.ref, exc)
        return rb

    def reject(self, ref: str | int, *, user: str, reason: str,
               channel_id: str | None = None) -> Rollback:
        """``channel_id`` None: the reason dialog, opened only by a Reject click that passed
        ``check_can_reject`` in the request's channel."""
        rb = self.get(ref)
        self.policy.check_reject(rb, user=user, channel_id=channel_id)
        if not reason.strip():
            raise UserFacingError("A rejection needs a reason.")
        rb = self.transition(rb, Event.REJECT, actor=user, detail={"reason": reason})
        self.jobs.cancel(rollback_id=rb.id)
        self.chat.thread(rb, Rejected(user, rb.ref, reason))
        return rb

    def cancel(self, ref: str | int, *, user: str, channel_id: str | None = None) -> Rollback:
        rb = self.get(ref)
        self.policy.check_cancel(rb, user=user, channel_id=channel_id)
        if rb.state == State.EXECUTING:
            return self._request_cancel(rb, user=user)
        try:
            rb = self.store.transition(rb.id, Event.CANCEL, actor=user, expected=rb.state)
        except StaleState as exc:  # an executor claimed it meanwhile: ask it to stop
            if exc.current.state == State.EXECUTING:
                return self._request_cancel(exc.current, user=user)
            raise NotAllowed(f"{rb.ref} is already "
                             f"{exc.current.state.value.replace('_', ' ')}.") from None
        except InvalidTransition:
            raise NotAllowed(f"{rb.ref} is {rb.state.value.replace('_', ' ')}; it can no "
                             "longer be cancelled.") from None
        self.chat.refresh(rb)
        self.jobs.cancel(rollback_id=rb.id)
        self.chat.thread(rb, Cancelled(user, rb.ref))
        return rb

    def _request_cancel(self, rb: Rollback, *, user: str) -> Rollback:
        """The executor owns an executing rollback: it stops before its next step, undoes
        what has an inverse (a scaled-down service comes back) and cancels it itself."""
        if rb.cancel_requested_by:
            raise NotAllowed(Mention(rb.cancel_requested_by), " already asked to cancel "
                             f"{rb.ref}; it stops after the current step.")
        requested = self.store.request_cancel(rb.id, actor=user)
        if requested is None:  # the steps finished first: nothing left to stop
            now = self.store.get(rb.id)
            raise NotAllowed(f"Too late: {rb.ref} is already "
                             f"{now.state.value.replace('_', ' ')}; its steps have finished.")
        rb = requested
        self.on_approved(rb.id)  # wake an idle executor so a resumed one sees it at once
        self.chat.refresh(rb)
        comp = plan_compensation(self.store.steps(rb.id))
        self.chat.thread(rb, CancelAsked(user, rb.ref, comp.undo))
        return rb

    def _refuse_if_left_scaled_down(self, rb: Rollback) -> None:
        """Closing a rollback must not hide a service left at zero: the Scale back up
        button disappears with it. Someone scaling it by hand also counts."""
        owed = left_scaled_down(self.store.steps(rb.id))
        if owed is None:
            return
        try:
            live = self.platform(rb.platform).get_replicas(rb.target)
        except (PlatformError, UserFacingError):
            live = 0
        if live > 0:
            return
        raise NotAllowed(
            f"{rb.target.describe()} is still scaled to 0 (it had {owed.replicas} replicas). "
            "Scale it back up first (*Scale back up*, or by hand), then close the rollback.")

    def scale_back_up(self, ref: str | int, *, user: str, channel_id: str) -> Rollback:
        """A human's "Scale back up" on a rollback that stopped with the service at zero."""
        rb = self.get(ref)
        self.policy.check_scale_back_up(rb, user=user, channel_id=channel_id)
        owed = left_scaled_down(self.store.steps(rb.id))
        if owed is None or owed.replicas is None or owed.scale_down_seq is None:
            raise NotAllowed(f"{rb.ref} left nothing scaled down: it recorded no replica "
                             "count, or the service was already scaled back.")
        replicas = owed.replicas
        platform = self.platform(rb.platform)
        # Decide on what runs now: someone (or an autoscaler) may have brought the service
        # back already, and resetting it to the journaled count could scale it down.
        try:
            live = platform.get_replicas(rb.target)
        except PlatformError as exc:
            raise UserFacingError(f"Could not read {rb.target.describe()}'s replicas ({exc}); "
                                  "nothing was changed.") from None
        if live > 0:
            raise NotAllowed(f"{rb.target.describe()} already runs {live} replica(s) (scaled "
                             f"by hand or by an autoscaler); nothing was changed. Close {rb.ref} "
                             "with *Mark resolved* once the service is healthy.")
        try:
            platform.scale(rb.target, replicas)
        except PlatformError as exc:
            raise UserFacingError(f"Scaling {rb.target.describe()} to {replicas} failed: {exc}"
                                  ) from None
        self.store.step_progress(rb.id, owed.scale_down_seq, {"restored_to": replicas,
                                                              "restored_by": user})
        self.store.audit(rb.id, actor=user, event="scaled_back_up",
                         detail={"replicas": replicas})
        self.chat.refresh(rb)
        self.chat.thread(rb, ScaledBackUp(user, rb.target.describe(), replicas))
        return rb

    def check_can_resolve(self, rb: Rollback, *, user: str,
                          channel_id: str | None = None) -> Rollback:
        """Every rule of closing ``rb`` (the authority row, and never while the service is
        left at 0), for callers that must know before they act."""
        self.policy.authorize(Action.RESOLVE, rb, user=user, channel_id=channel_id)
        self._refuse_if_left_scaled_down(rb)
        return rb

    def resolve(self, ref: str | int, *, user: str, note: str = "",
                channel_id: str | None = None) -> Rollback:
        rb = self.check_can_resolve(self.get(ref), user=user, channel_id=channel_id)
        rb = self.transition(rb, Event.RESOLVE, actor=user, detail={"note": note})
        self.chat.thread(rb, Resolved(user, rb.ref, rb.state.value))
        return rb

    def hotfix_in_progress(self, ref: str | int, *, user: str, channel_id: str) -> Rollback:
        """"Hotfix in progress" on a P1 request: the decision deadline, running since the
        request, moves once by the severity's decision minutes (counted from the deadline,
        or from now if it has passed), and the expiry moves with it. A second click, by
        anyone, changes nothing and says so."""
        rb = self.get(ref)
        self.policy.authorize(Action.HOTFIX, rb, user=user, channel_id=channel_id)
        policy = self.config.policy_for(rb.service)
        minutes = policy.for_severity(Severity(rb.severity)).deadline_minutes
        now, was = self.clock(), rb.decision_due_at
        due = max(was or now, now) + timedelta(minutes=minutes)
        try:  # pending and not reported yet, checked in the same write
            new = self.store.report_hotfix(rb.id, user=user, decision_due_at=due,
                                           expires_at=policy.expires_at(rb.created_at, due))
        except StaleState as exc:
            current = exc.current  # another click, or a decision, got there first
            if current.state != State.PENDING_APPROVAL:
                raise NotAllowed(f"{current.ref} is already "
                                 f"{current.state.value.replace('_', ' ')}.") from None
            raise NotAllowed(*authority.hotfix_refusal(current)) from None
        schedule_deadlines(self.jobs, new)
        superseded = [decision_key(rb.id, was)] if was else []
        if rb.expires_at is not None and rb.expires_at != new.expires_at:
            superseded.append(expiry_key(rb.id, rb.expires_at))
        if superseded:  # left alone they would do nothing anyway (not the current times)
            self.jobs.cancel(rollback_id=rb.id, dedupe_keys=superseded)
        self.chat.refresh(new)
        self.chat.thread(new, HotfixReported(user, new.ref, was, due, minutes, new.expires_at))
        return new

    def tick_checklist(self, ref: str | int, *, item: str, user: str,
                       channel_id: str) -> Rollback:
        if item not in CHECKLIST_ITEMS:
            raise ParseError(f"Unknown checklist item `{item}`.")
        rb = self.get(ref)
        self.policy.check_tick(rb, item=item, user=user, channel_id=channel_id)
        was_done = bool((rb.checklist.get(item) or {}).get("done"))
        try:  # conditional on what was checked: not after approval, not a double toggle
            rb = self.store.set_checklist_item(rb.id, item, {"done": not was_done, "by": user},
                                               actor=user, expected_state=rb.state,
                                               expected_done=was_done)
        except StaleState as exc:
            raise NotAllowed(f"{exc.current.ref} changed while you clicked (it is "
                             f"{exc.current.state} now); look at the message again.") from exc
        self.chat.refresh(rb)
        return rb

    def assign_incident_commander(self, ref: str | int, *, user: str,
                                  channel_id: str) -> Rollback:
        """The clicker becomes incident commander: the requester or an approver, only while
        nobody is (a hidden button clicked anyway does not take command over)."""
        rb = self.get(ref)
        self.policy.authorize(Action.TAKE_IC, rb, user=user, channel_id=channel_id)
        try:
            rb = self.store.claim_incident_commander(rb.id, user=user, expected_state=rb.state)
        except StaleState as exc:
            who = exc.current.incident_commander
            if who:
                raise NotAllowed(Mention(who), " is already incident commander of "
                                 f"{exc.current.ref}.") from exc
            raise NotAllowed(f"{exc.current.ref} is {exc.current.state} now; there is no "
                             "incident command to take.") from exc
        self.chat.refresh(rb)
        return rb

    # ------------------------------------------------------------------ queries
    def status(self, arg: str | None) -> tuple[list[Rollback], int]:
        """The rollbacks ``/rollback status [arg]`` shows, and how many there are in all:
        without an argument the newest ``STATUS_LIST_LIMIT`` active ones (one Slack message
        holds about that many lines; the reply counts the rest)."""
        if arg is None:
            from bot.domain.lifecycle import ACTIVE

            shown = self.store.in_states(ACTIVE, newest=STATUS_LIST_LIMIT)
            total = len(shown) if len(shown) < STATUS_LIST_LIMIT \
                else self.store.count_in_states(ACTIVE)
            return shown, total
        if arg.upper().startswith("RB-") or arg.isdigit():
            return [self.get(arg)], 1
        self.service_config(arg)
        found = self.store.history(arg, limit=1)
        return found, len(found)

    def history(self, service: str) -> list[Rollback]:
        self.service_config(service)
        return self.store.history(service, limit=10)

    def describe_revision(self, service: str, number: int, *, platform: str | None = None
                          ) -> tuple[str, RevisionDetail]:
        """Revision ``number`` of ``service`` as its platform shows it (read-only): the
        platform's name and the detail. An unknown service or revision is a clear refusal."""
        svc = self.service_config(service)
        name = svc.platform_or_default(platform)
        target = target_for(svc, name)
        try:
            return name, self.platform(name).describe_revision(target, number)
        except RevisionNotFound as exc:
            known = ", ".join(str(n) for n in exc.known or ())
            raise NotFound(f"Revision {number} of `{service}` is not in the {name} history"
                           + (f" (known revisions: {known})." if known else ".")) from None
        except PlatformError as exc:
            raise UserFacingError(f"Could not read revision {number} of `{service}` from "
                                  f"{name}: {exc}") from None

    def known_bad(self, service: str, *, platform: str | None = None
                  ) -> tuple[str, list[KnownBad]]:
        svc = self.service_config(service)
        name = svc.platform_or_default(platform)
        return name, list(self.store.known_bad(service, name).values())

    def clear_known_bad(self, service: str, revision: int, *, user: str, reason: str,
                        platform: str | None = None) -> KnownBad:
        """An approver clears a mark (audited): the revision may be a default target again."""
        svc = self.service_config(service)
        name = svc.platform_or_default(platform)
        self.policy.check_who(Action.CLEAR_KNOWN_BAD, None, user=user, service=service)
        if not reason.strip():
            raise UserFacingError("Clearing a known-bad mark needs a reason (`--reason \"…\"`).")
        marks = self.store.known_bad(service, name)
        try:  # numbers move (renumbered reuse, positions): the live history decides first
            history = self.platform(name).history(target_for(svc, name))
        except PlatformError:
            history = []
        live = next((r for r in history if r.number == revision), None)
        if live is not None:
            match = marks.get(live.id)
        else:  # gone from the live history: only an unambiguous recorded number will do
            recorded = [m for m in marks.values() if int(m.revision["number"]) == revision]
            match = recorded[0] if len(recorded) == 1 else None
        if match is None:
            listed = ", ".join(f"rev {m.revision['number']}" for m in marks.values()) or "none"
            raise NotFound(f"Revision {revision} of `{service}` is not marked known-bad "
                           f"(marked: {listed}).")
        cleared = self.store.clear_known_bad(service, name, match.revision_id, actor=user,
                                             reason=reason)
        if cleared is None:
            raise NotFound(f"Revision {revision} of `{service}` is no longer marked.")
        return cleared

    # ------------------------------------------------------------------ helpers
    def transition(self, rb: Rollback, event: Event, *, actor: str,
                    detail: dict[str, Any] | None = None,
                    updates: dict[str, Any] | None = None, refresh: bool = True) -> Rollback:
        from bot.domain.errors import InvalidTransition

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


def _previous_version_item(choice: RevisionChoice) -> dict[str, Any]:
    """The bot ticks "Previous stable version identified" only for a target that is not
    known-bad and ran before the release being rolled back, not just a lower number."""
    target = choice.target
    if choice.target_known_bad is not None:
        origin = choice.target_known_bad.rollback_id
        note = f"{target.label()} is KNOWN-BAD" + (f" (rolled back from by RB-{origin})"
                                                   if origin else "")
        return {"done": False, "by": "bot", "note": note}
    if choice.never_deployed:
        return {"done": False, "by": "bot", "note": f"revision {target.number} never "
                "ran successfully on this service (never deployed, or no deployment of it "
                "completed)"}
    if not choice.ran_before_current:
        return {"done": False, "by": "bot", "note": f"{target.label()} was released after "
                f"the running {choice.current.label()}: not a previous stable version"}
    return {"done": True, "by": "bot", "note": target.label()}


def _mark_facts(mark: KnownBad) -> dict[str, Any]:
    return {"revision_id": mark.revision_id, "rollback_id": mark.rollback_id,
            "marked_at": mark.marked_at.isoformat(), "forward_fix": mark.forward_fix}


def _revision_facts(history: list[Revision], known_bad: dict[str, KnownBad],
                    target: Revision, *, limit: int = 6) -> list[dict[str, Any]]:
    """The newest revisions with their marks, as the approvers see them in the message."""
    out = []
    for rev in history[:limit]:
        mark = known_bad.get(rev.id)
        out.append({"number": rev.number, "label": rev.label(), "current": rev.current,
                    "target": rev.id == target.id,
                    "known_bad_by": (mark.rollback_id or 0) if mark else None,
                    "forward_fix": mark.forward_fix if mark else None})
    return out


def _slack_error(exc: Exception) -> str:
    """The Slack error code of a Web API failure (e.g. not_in_channel), never the payload."""
    response: Any = getattr(exc, "response", None)
    code = response.get("error") if response is not None and hasattr(response, "get") else None
    return str(code or type(exc).__name__)


def _active_error(existing: Rollback) -> UserFacingError:
    return UserFacingError(
        f"{existing.ref} is already {existing.state.value.replace('_', ' ')} for "
        f"`{existing.service}` (requested by ", Mention(existing.requester), "): ",
        RollbackLink(existing.ref, existing.channel_id, existing.message_ts),
        " . Only one active rollback per service."
    )

