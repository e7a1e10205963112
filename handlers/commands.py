"""The ``/rollback`` slash command: ack at once, then answer or hand off to the service.

Help, services and parse refusals are answered in the ack, and so are a request's refusals
that need no platform, database or Slack call (``RollbackService.precheck_request``: the
service, the channel rule by the payload's channel name, the platform). Everything else that
reads the database or a platform runs in the after-ack pool (``handlers.work_pool``); a full pool
is said in the ack ("busy, retry in a moment"). ``status`` and ``history`` read only the
database: the ack is empty and they answer through ``respond`` from the listener thread.
The request modal opens right after the ack and is filled in when the (shared) read of
the service's revisions lands.

``diagnose <service>`` acks, then runs its checks in the pool, audits the run and answers
ephemerally; each finding's button (``ids.DIAGNOSIS_REQUEST``, value
``<service>:<scope,…>:<record>``) opens the same request modal the same way, with that scope
pre-selected, once the request's channel rule allows it (checked while the form loads; the
submission is checked again). Then the taking is audited and the answer re-rendered from its
record with who took the finding in place of its button.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from slack_bolt import Ack, App, Respond
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot.aftercare.forward_fix import ForwardFixTracker
from bot.domain.command_parsing import Parsed, parse
from bot.domain.config import SCOPES, RollbackConfig, Severity
from bot.domain.contacts import contact_facts
from bot.domain.errors import UserFacingError
from bot.domain.ports import Chat
from bot.persistence.store import Store
from bot.usecases.diagnosis import Diagnoser, DiagnosisLog
from bot.usecases.service import ModalDefaults, RollbackService
from bot.usecases.timeline import TimelineReader
from handlers import forward_fix as forward_fix_answer
from handlers import ids, views
from handlers import timeline as timeline_answer
from handlers.deliveries import MalformedPayload, field, first_delivery, hand_off, open_view
from handlers.deliveries import user_id as clicker
from handlers.errors import render, tell_user
from handlers.gateway import DIRECT_MESSAGE, GROUP_DM
from handlers.mrkdwn import escape
from handlers.work_pool import Busy, SharedReads, WorkPool

log = logging.getLogger(__name__)


def _loading_modal() -> dict[str, Any]:
    return {"type": "modal", "callback_id": ids.REQUEST_MODAL,
            "title": {"type": "plain_text", "text": "Request rollback"},
            "blocks": [views.section(":hourglass: Reading the revision history…")]}


def register(app: App, service: RollbackService, pool: WorkPool,
             modal_reads: SharedReads[ModalDefaults | str], *, config: RollbackConfig,
             store: Store, chat: Chat, diagnoser: Diagnoser, diagnoses: DiagnosisLog,
             timeline: TimelineReader, forward_fixes: ForwardFixTracker | None = None) -> None:
    """``config`` answers help and services in the ack; ``store`` dedupes deliveries and
    ``chat`` tells a refusal; ``diagnoser`` runs ``diagnose`` and ``diagnoses`` audits it;
    ``timeline`` reads ``timeline RB-n`` (answered by ``handlers.timeline``);
    ``forward_fixes`` records ``forward-fix RB-n`` and shows the links in ``history``."""

    @app.command(ids.COMMAND)
    def rollback_command(ack: Ack, body: dict[str, Any], respond: Respond,
                         client: WebClient) -> None:
        raw = body.get("text")
        text = raw.strip() if isinstance(raw, str) else ""
        user, channel = body.get("user_id"), body.get("channel_id")
        if not (isinstance(user, str) and user and isinstance(channel, str) and channel):
            ack(response_type="ephemeral", text=render(MalformedPayload()))
            return
        try:
            parsed = parse(text, platforms=config.platform_specs)
        except UserFacingError as exc:
            message = render(exc)
            ack(response_type="ephemeral", text=message,
                blocks=views.error_blocks(message)
                + views.help_blocks(ids.COMMAND, config.platform_specs, policy=config.policy))
            return
        quick: dict[str, Callable[[], list[dict[str, Any]]]] = {
            "help": lambda: views.help_blocks(ids.COMMAND, config.platform_specs,
                                              policy=config.policy),
            "services": lambda: views.services_blocks(config),
        }
        if parsed.verb in quick:
            ack(response_type="ephemeral", text="rollback-bot", blocks=quick[parsed.verb]())
            return
        if parsed.verb == "contacts":  # configuration only: answered in the ack
            name = parsed.service or ""
            if name not in config.services:
                ack(response_type="ephemeral", text=render(_unknown(service, name)))
                return
            svc = config.services[name]
            ack(response_type="ephemeral", text=f"Emergency contacts of {name}",
                blocks=views.contacts_blocks(name, contact_facts(config.contacts_for(name)),
                                             paging=svc.pagerduty is not None))
            return
        if parsed.verb in ("modal", "diagnose", "revision") and parsed.service not in \
                config.services:
            ack(response_type="ephemeral", text=render(_unknown(service, parsed.service or "")))
            return
        if parsed.verb == "modal":
            name = parsed.service or ""
            defaults = modal_reads.join(name, lambda: read_defaults(service, name))
            if defaults is None:
                ack(response_type="ephemeral", text=render(Busy()))
                return
            ack()
            try:
                if first_delivery(store, body):
                    open_request_modal(client, service, body, name, defaults)
            except Exception as exc:
                tell_user(chat, body, exc, respond)
            return
        if parsed.verb == "request":
            # The refusals that need no platform, database or Slack call are the ack itself,
            # never a "Preparing…" followed by a refusal.
            try:
                service.precheck_request(parsed, channel_name=payload_channel_name(body))
            except UserFacingError as exc:
                ack(response_type="ephemeral", text=render(exc))
                return
        if parsed.verb in _LISTENER_READS:
            # Read only our database (indexed, one short borrow) and answer through
            # response_url: after the ack, in this listener thread (Bolt has sent the ack
            # already), not in the platform lane, whose eight workers each held for a
            # Slack round trip made twenty people asking at once hear "busy".
            ack()
            try:
                _run(service, parsed, user, channel, respond, diagnoser=diagnoser,
                     diagnoses=diagnoses, forward_fixes=forward_fixes)
            except Exception as exc:
                tell_user(chat, body, exc, respond)
            return
        slot = pool.reserve()
        if slot is None:
            ack(response_type="ephemeral", text=render(Busy()))
            return
        if parsed.verb == "request":
            ack(response_type="ephemeral",
                text=":hourglass: Preparing the rollback plan for "
                     f"`{escape(parsed.service)}`…")
        elif parsed.verb == "diagnose":
            ack(response_type="ephemeral",
                text=f":mag: Diagnosing `{escape(parsed.service)}` (read-only checks)…")
        else:
            ack()
        if parsed.verb == "timeline":  # uploads a file: a Slack retry must not upload twice
            hand_off(slot, body, lambda: timeline_answer.show(
                timeline, chat, parsed.argument or "", respond), store=store, chat=chat,
                respond=respond)
            return
        if parsed.verb == "forward-fix" and forward_fixes is not None:
            tracker = forward_fixes
            hand_off(slot, body, lambda: forward_fix_answer.run_command(
                tracker, parsed, user=user, respond=respond), store=store, chat=chat,
                respond=respond)
            return
        hand_off(slot, body, lambda: _run(service, parsed, user, channel, respond,
                                          diagnoser=diagnoser, diagnoses=diagnoses,
                                          forward_fixes=forward_fixes),
                 store=store, chat=chat, respond=respond,
                 dedupe=parsed.verb in ("request", "cancel", "clear-known-bad"))

    @app.action(ids.DIAGNOSIS_REQUEST)
    def request_from_diagnosis(ack: Ack, body: dict[str, Any], respond: Respond,
                               client: WebClient) -> None:
        """A diagnosis' button: the request modal with the finding's scope, opened like
        ``/rollback <service>`` opens it (within the trigger's 3 s, filled in later)."""
        ack()
        try:
            user = clicker(body)
            name, scope, record = _diagnosis_value(
                field(body, "actions", 0, "value", kind=str), config)
            channel = _click_channel(body)
        except MalformedPayload as exc:
            tell_user(chat, body, exc, respond)
            return
        defaults = modal_reads.join(name, lambda: read_defaults(service, name))
        if defaults is None:
            tell_user(chat, body, Busy(), respond)
            return

        def check() -> None:
            service.check_can_request(name, user=user, channel_id=channel)
            if record is not None:  # allowed: the answer shows who took the finding
                _mark_taken(diagnoses, respond, record, name=name, scope=scope, user=user)

        try:
            if first_delivery(store, body):
                open_request_modal(client, service, body, name, defaults, channel=channel,
                                   scope=scope, check=check)
        except Exception as exc:
            tell_user(chat, body, exc, respond)


# What a slash command's ``channel_name`` says for conversations that are not named public
# channels: the payload carries channel_id and channel_name
# (https://docs.slack.dev/interactivity/implementing-slash-commands), and clients of it
# handle two placeholders, "directmessage" for a DM and "privategroup" for a private
# channel (e.g. hubot scripts mapping them through getChannelGroupOrDMByID). A DM is said
# the way the directory says it (never a pattern match); a private channel's real name is
# not known here, so its rule waits for the request's conversations.info.
_DM_PLACEHOLDER = "directmessage"
_UNKNOWN_NAMES = frozenset({"privategroup", ""})


# Verbs that read only our database: answered after the ack from the listener thread
# (bench/ack_latency.py measures the answer's landing at the response_url).
_LISTENER_READS = frozenset({"status", "history"})


def payload_channel_name(body: dict[str, Any]) -> str | None:
    """The channel's name as the payload carries it, for the channel rule before the ack;
    None when only Slack's conversations.info could tell (the request checks it after)."""
    name = body.get("channel_name")
    if not isinstance(name, str) or name in _UNKNOWN_NAMES:
        return None
    if name == _DM_PLACEHOLDER:
        return DIRECT_MESSAGE
    if name.startswith("mpdm-"):
        return GROUP_DM
    return name


def _mark_taken(diagnoses: DiagnosisLog, respond: Respond, record: int, *, name: str,
                scope: list[str], user: str) -> None:
    """Audit the taking and replace the (ephemeral) answer: the finding's button gives way
    to who took it. Never fails the form it runs beside: a failure is logged."""
    try:
        d = diagnoses.take(record, service=name, scope=tuple(scope), user=user)
        if d is None:  # no such finding in that run: a stale or forged button
            log.info("diagnosis %s has no %s finding for %s", record, scope, name)
            return
        respond(replace_original=True, text=f"Diagnosis of {name}",
                blocks=views.diagnosis_blocks(d))
    except Exception:
        log.warning("diagnosis %s: could not mark the %s finding taken", record, scope,
                    exc_info=True)


def _run(service: RollbackService, parsed: Parsed, user: str, channel: str,
         respond: Respond, *, diagnoser: Diagnoser, diagnoses: DiagnosisLog,
         forward_fixes: ForwardFixTracker | None = None) -> None:
    """The verbs that read the database or a platform: in the after-ack pool."""
    if parsed.verb == "request":
        service.request(parsed, requester=user, channel_id=channel)
    elif parsed.verb == "diagnose":
        diagnosis = diagnoses.record(diagnoser.diagnose(parsed.service or ""), user=user,
                                     channel=channel)
        respond(response_type="ephemeral", text=f"Diagnosis of {parsed.service}",
                blocks=views.diagnosis_blocks(diagnosis))
    elif parsed.verb == "status":
        found, total = service.status(parsed.argument)
        respond(response_type="ephemeral", text="status",
                blocks=views.rollback_list_blocks("Rollbacks", found, total=total))
    elif parsed.verb == "history":
        found = service.history(parsed.argument or "")
        fixes = forward_fixes.for_rollbacks(found) if forward_fixes is not None else {}
        respond(response_type="ephemeral", text="history", blocks=views.
                rollback_list_blocks(f"History of {parsed.argument}", found,
                                     forward_fixes=fixes))
    elif parsed.verb == "revision":
        platform, detail = service.describe_revision(parsed.service or "", parsed.to or 0,
                                                     platform=parsed.platform)
        respond(response_type="ephemeral", text=f"Revision {detail.revision.number} of "
                f"{parsed.service}", blocks=views.revision_detail_blocks(
                    parsed.service or "", platform, detail))
    elif parsed.verb == "cancel":
        service.cancel(parsed.argument or "", user=user)
    elif parsed.verb == "known-bad":
        platform, marks = service.known_bad(parsed.service or "", platform=parsed.platform)
        respond(response_type="ephemeral", text="known-bad revisions",
                blocks=views.known_bad_blocks(parsed.service or "", platform, marks))
    elif parsed.verb == "clear-known-bad":
        cleared = service.clear_known_bad(parsed.service or "", parsed.to or 0, user=user,
                                          reason=parsed.reason, platform=parsed.platform)
        respond(response_type="in_channel", text=views.known_bad_cleared_text(
            cleared, user=user, reason=parsed.reason))


def _diagnosis_value(value: str, config: RollbackConfig
                     ) -> tuple[str, list[str], int | None]:
    """``<service>:<scope,…>[:<record>]``: a configured service, known scopes and the
    diagnosis' audit record (absent on a button posted before runs were audited), else
    malformed."""
    record: int | None = None
    head, sep, last = value.rpartition(":")
    if sep and ":" in head and last.isdigit():
        value, record = head, int(last)
    name, sep, raw = value.rpartition(":")
    scope = [s for s in raw.split(",") if s]
    if not sep or name not in config.services or not scope or any(
            s not in SCOPES for s in scope):
        raise MalformedPayload()
    return name, scope, record


def _click_channel(body: dict[str, Any]) -> str:
    """The conversation the click came from; none (a modal, App Home) is malformed."""
    for outer, inner in (("channel", "id"), ("container", "channel_id")):
        got = body.get(outer)
        value = got.get(inner) if isinstance(got, dict) else None
        if isinstance(value, str) and value:
            return value
    raise MalformedPayload()


def _unknown(service: RollbackService, name: str) -> Exception:
    try:
        service.service_config(name)
    except UserFacingError as exc:
        return exc
    return UserFacingError(f"Unknown service `{name}`.")


def _error_modal(message: str) -> dict[str, Any]:
    return {"type": "modal", "title": {"type": "plain_text", "text": "Request rollback"},
            "blocks": views.error_blocks(message)}


def read_defaults(service: RollbackService, name: str) -> ModalDefaults | str:
    """What the request modal offers, or why it cannot: a failure is rendered once (one
    log line, one correlation id) for every modal that shares the read."""
    try:
        return service.modal_defaults(name)
    except Exception as exc:
        return render(exc)


def open_request_modal(client: WebClient, service: RollbackService, body: dict[str, Any],
                       name: str, defaults: Future[ModalDefaults | str], *,
                       channel: str | None = None, scope: list[str] | None = None,
                       severity: Severity | None = None, reason: str = "",
                       check: Callable[[], None] | None = None) -> None:
    """Open the modal at once (a trigger_id lives 3 s, so never behind a platform read),
    then fill it in when the shared read of the service's revisions lands. ``scope``
    replaces the severity's default scope (a diagnosis finding), ``severity`` and
    ``reason`` pre-fill it (the release watcher's proposal); ``check`` (a refusal it
    raises is shown in the modal instead of the form) runs before the form is filled in."""
    opened = open_view(client, body, _loading_modal())
    view_id = opened["view"]["id"]
    channel = channel or body["channel_id"]

    def fill(done: Future[ModalDefaults | str]) -> None:
        # Runs in the worker that read (or here, if the read already landed): never raise.
        try:
            d = done.result()
            if check is not None:
                check()
            if isinstance(d, str):  # the read failed; already rendered
                view = _error_modal(d)
            else:
                svc = service.service_config(name)
                view = views.request_modal(
                    service=name, platform=d.platform, revisions=d.revisions,
                    severity=severity or d.severity, scope=scope or d.scope,
                    channel_id=channel, platforms=svc.platforms(),
                    known_bad=dict(d.known_bad), reason=reason,
                    incident_start=d.incident_start)
        except Exception as exc:
            view = _error_modal(render(exc))
        try:
            client.views_update(view_id=view_id, view=view)
        except SlackApiError as exc:  # closed meanwhile, or Slack refused: nothing to show
            log.info("request modal %s not filled in: %s", view_id,
                     str(exc.response.get("error") or "slack error"))
        except Exception as exc:
            log.warning("request modal %s not filled in: %s", view_id, type(exc).__name__)

    defaults.add_done_callback(fill)
