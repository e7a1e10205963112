"""Modal submissions: the rollback request form, the destructive-approval dialog and the
rejection reason. Checked in the listener, acked, then run in the after-ack pool."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import Any

from slack_bolt import Ack, App

from bot.domain import incident_times
from bot.domain.command_parsing import Parsed, clean, revision_number
from bot.domain.config import SCOPES, Severity
from bot.domain.errors import ParseError
from bot.domain.ports import Chat
from bot.persistence.store import Store
from bot.usecases.service import RollbackService
from handlers import ids, views
from handlers.deliveries import MalformedPayload, field, hand_off, user_id
from handlers.errors import tell_user
from handlers.work_pool import BUSY_TEXT, WorkPool
from platforms.base import PlatformSpecs

log = logging.getLogger(__name__)
_ROLLBACK_ID = re.compile(r"[0-9]{1,9}")


def _values(body: dict[str, Any]) -> dict[str, Any]:
    """``view.state.values`` flattened to block_id -> value; entries of the wrong shape are
    skipped (a view without state is malformed)."""
    out: dict[str, Any] = {}
    for block_id, actions in field(body, "view", "state", "values", kind=dict).items():
        for v in (actions.values() if isinstance(actions, dict) else ()):
            if not isinstance(v, dict):
                continue
            if v.get("type") in ("static_select",):
                option = v.get("selected_option")
                out[block_id] = _text(option.get("value") if isinstance(option, dict) else None)
            elif v.get("type") == "checkboxes":
                chosen = v.get("selected_options")
                out[block_id] = [_text(o.get("value")) for o in chosen or []
                                 if isinstance(o, dict)] if isinstance(chosen, list) else []
            else:
                out[block_id] = _text(v.get("value"))
    return out


def _text(value: Any) -> str | None:
    return clean(value) if isinstance(value, str) else None


def _metadata(body: dict[str, Any]) -> str:
    return field(body, "view", "private_metadata", kind=str)


def _request(values: dict[str, Any], service_name: str, platforms: PlatformSpecs) -> Parsed:
    """The form's answers as a request, checked like the command's flags: a forged or
    stale form gets a clear refusal, never a ValueError."""
    to = values.get("target_revision")
    severity = values.get("severity")
    try:
        sev = Severity(severity) if severity else None
    except ValueError:
        raise ParseError(f"`{severity}`: use P0, P1, P2 or P3.") from None
    scope = [s for s in values.get("scope") or [] if s]
    if not scope or any(s not in SCOPES for s in scope):
        raise ParseError(f"Choose the scope from {', '.join(SCOPES)}.")
    platform = values.get("platform")
    if platform is not None and platform not in platforms:
        raise ParseError(f"`{platform}`: choose {platforms.listing()}.")
    started = (values.get("incident_started") or "").strip()
    return Parsed("request", service=service_name, to=revision_number(to) if to else None,
                  severity=sev, scope=scope, platform=platform,
                  reason=values.get("reason") or "",
                  started=incident_times.check(started) if started else None)


def register(app: App, service: RollbackService, pool: WorkPool, *, store: Store, chat: Chat,
             platforms: PlatformSpecs) -> None:
    """``store`` dedupes deliveries, ``chat`` tells a refusal, ``platforms`` are the ones a
    request form may name."""
    def refuse(body: dict[str, Any], exc: Exception) -> None:
        tell_user(chat, body, exc)

    def submit(ack: Ack, body: dict[str, Any], busy_block: str,
               use_case: Callable[[], object]) -> None:
        """Ack a valid submission and run its use case once, in the after-ack pool. With
        the pool full the form stays open with "busy, retry in a moment" under
        ``busy_block`` (an input of this modal), so submitting again is all it takes."""
        slot = pool.reserve()
        if slot is None:
            ack(response_action="errors", errors={busy_block: BUSY_TEXT})
            return
        ack()
        hand_off(slot, body, use_case, store=store, chat=chat)

    @app.view(ids.REQUEST_MODAL)
    def request_submitted(ack: Ack, body: dict[str, Any]) -> None:
        try:
            values = _values(body)
            service_name, _, channel = _metadata(body).partition("|")
            user = user_id(body)
        except MalformedPayload as exc:
            ack()
            refuse(body, exc)
            return
        if not values.get("scope"):
            ack(response_action="errors", errors={"scope": "Choose at least one scope."})
            return
        try:
            parsed = _request(values, service_name, platforms)
        except ParseError as exc:  # a refusal found while reading the form: no pool
            ack()
            refuse(body, exc)
            return
        submit(ack, body, "scope", lambda: service.request(
            parsed, requester=user, channel_id=channel))

    @app.view(ids.APPROVE_DESTRUCTIVE_MODAL)
    def destructive_approval_submitted(ack: Ack, body: dict[str, Any]) -> None:
        try:
            typed = (_values(body).get("confirm_service") or "").strip()
            rollback_id, channel, flags = views.parse_approval_metadata(_metadata(body))
            expected = views.approval_service(field(body, "view", kind=dict))
            user = user_id(body)
            if not _ROLLBACK_ID.fullmatch(rollback_id):
                raise MalformedPayload()
        except MalformedPayload as exc:
            ack()
            refuse(body, exc)
            return
        if typed != expected:
            ack(response_action="errors", errors={
                "confirm_service": f"Type {expected} exactly to approve the destructive steps."})
            return
        submit(ack, body, "confirm_service", lambda: service.approve(
            rollback_id, user=user, channel_id=channel, typed_confirmation=typed,
            override=flags.get("override", False),
            known_bad_override=flags.get("known_bad_override", False)))

    @app.view(ids.REJECT_MODAL)
    def reject_submitted(ack: Ack, body: dict[str, Any]) -> None:
        try:
            reason = (_values(body).get("reason") or "").strip()
            rollback_id, _, channel = _metadata(body).partition("|")
            user = user_id(body)
            if not _ROLLBACK_ID.fullmatch(rollback_id):
                raise MalformedPayload()
        except MalformedPayload as exc:
            ack()
            refuse(body, exc)
            return
        if not reason:
            ack(response_action="errors", errors={"reason": "A rejection needs a reason."})
            return
        submit(ack, body, "reason",
                lambda: service.reject(rollback_id, user=user, reason=reason,
                                       channel_id=channel or None))
