"""Pure Block Kit builders: data in, blocks out. No I/O, so every surface is unit-testable.

The request message is re-rendered from the rollback's state at every transition: only
the buttons valid in that state are shown, so nobody can click a stale Approve.
"""

from __future__ import annotations

from typing import Any

from bot.config import AUTOMATIC_CHECKLIST_ITEMS, CHECKLIST_ITEMS, RollbackConfig, Severity
from bot.lifecycle import State
from bot.models import Rollback, Step
from handlers import ids

Block = dict[str, Any]

STATE_BADGE = {
    State.PENDING_APPROVAL: ":hourglass_flowing_sand: Pending approval",
    State.APPROVED: ":white_check_mark: Approved, queued",
    State.EXECUTING: ":gear: Executing",
    State.VERIFYING: ":mag: Verifying",
    State.MONITORING: ":eyes: Monitoring stability",
    State.COMPLETED: ":large_green_circle: Completed",
    State.UNSTABLE: ":red_circle: Unstable after rollback",
    State.VERIFICATION_FAILED: ":x: Verification failed",
    State.FAILED: ":x: Failed",
    State.NEEDS_ATTENTION: ":warning: Needs attention",
    State.REJECTED: ":no_entry: Rejected",
    State.CANCELLED: ":heavy_multiplication_x: Cancelled",
    State.EXPIRED: ":alarm_clock: Expired",
}
STEP_ICON = {"pending": ":white_circle:", "started": ":arrows_counterclockwise:",
             "done": ":white_check_mark:", "failed": ":x:", "skipped": ":fast_forward:"}


def _text(text: str, *, kind: str = "mrkdwn") -> dict[str, Any]:
    return {"type": kind, "text": text[:3000]}


def section(text: str) -> Block:
    return {"type": "section", "text": _text(text)}


def context(text: str) -> Block:
    return {"type": "context", "elements": [_text(text)]}


def button(text: str, action_id: str, value: str, *, style: str | None = None,
           confirm: dict[str, Any] | None = None) -> dict[str, Any]:
    b: dict[str, Any] = {"type": "button", "text": _text(text, kind="plain_text"),
                         "action_id": action_id, "value": value}
    if style:
        b["style"] = style
    if confirm:
        b["confirm"] = confirm
    return b


def _confirm(title: str, text: str, yes: str) -> dict[str, Any]:
    return {"title": _text(title, kind="plain_text"), "text": _text(text),
            "confirm": _text(yes, kind="plain_text"), "deny": _text("Back", kind="plain_text")}


# ---------------------------------------------------------------------- request message
def rollback_message(rb: Rollback, steps: list[Step]) -> tuple[str, list[Block]]:
    """(fallback text, blocks) for the pinned request message in the incident channel."""
    badge = STATE_BADGE[rb.state]
    cur = rb.current_revision.label() if rb.current_revision else "unknown"
    fallback = f"{rb.ref} {rb.service}: {badge} (to {rb.target_revision.label()})"
    blocks: list[Block] = [
        {"type": "header", "text": _text(f"Rollback {rb.ref}: {rb.service}", kind="plain_text")},
        section(f"*{badge}*"),
        {"type": "section", "fields": [
            _text(f"*Severity*\n{rb.severity} ({rb.policy_mode.replace('_', ' ')})"),
            _text(f"*Platform*\n{rb.target.describe()}"),
            _text(f"*Current*\n{cur}"),
            _text(f"*Roll back to (pinned)*\n{rb.target_revision.label()}"),
            _text(f"*Scope*\n{', '.join(rb.scope)}"),
            _text(f"*Requested by*\n<@{rb.requester}>"),
        ]},
    ]
    if rb.reason:
        blocks.append(section(f"*Reason:* {rb.reason}"))
    blocks.extend(_assessment(rb))
    blocks.append(section("*Plan*\n" + "\n".join(
        f"{STEP_ICON.get(s.status, '')} {s.seq}. {s.description}"
        + (" _(destructive)_" if s.destructive else "")
        + (f" — {s.error[:200]}" if s.error and s.status == "failed" else "")
        for s in steps)))
    blocks.append(section(_checklist_text(rb)))
    who = []
    if rb.incident_commander:
        who.append(f"Incident commander: <@{rb.incident_commander}>")
    if rb.approver:
        who.append(f"Approved by <@{rb.approver}>" + (" *(BREAK GLASS)*" if rb.break_glass
                                                     else ""))
    if rb.last_error:
        who.append(f"Last error: {rb.last_error[:300]}")
    if who:
        blocks.append(context(" · ".join(who)))
    actions = _actions(rb)
    if actions:
        blocks.append({"type": "actions", "block_id": f"rb:{rb.id}", "elements": actions})
    if rb.state == State.PENDING_APPROVAL and rb.expires_at:
        blocks.append(context(f"Approval request expires at {rb.expires_at:%Y-%m-%d %H:%M} UTC."))
    return fallback, blocks


def _assessment(rb: Rollback) -> list[Block]:
    if not rb.assessment:
        return [context(":mag: Assessing service state…")]
    labels = {"rollout": "Rollout", "health": "Health", "error_rate": "Error rate",
              "logs": "Recent logs"}
    lines = []
    for key, label in labels.items():
        probe = rb.assessment.get(key)
        if probe:
            icon = ":white_check_mark:" if probe.get("ok") else ":warning:"
            lines.append(f"{icon} *{label}:* {probe.get('text', '')}")
    return [section("*Assessment*\n" + "\n".join(lines))] if lines else []


def _checklist_text(rb: Rollback) -> str:
    lines = ["*Pre-rollback checklist*"]
    for key, label in CHECKLIST_ITEMS.items():
        item = rb.checklist.get(key) or {}
        mark = ":ballot_box_with_check:" if item.get("done") else ":white_large_square:"
        by = item.get("by")
        note = f" ({item['note']})" if item.get("note") else ""
        who = " — bot" if by == "bot" else (f" — <@{by}>" if by and item.get("done") else "")
        lines.append(f"{mark} {label}{note}{who}")
    return "\n".join(lines)


def _actions(rb: Rollback) -> list[dict[str, Any]]:
    v = str(rb.id)
    if rb.state == State.PENDING_APPROVAL:
        els = []
        if rb.policy_mode == "next_deployment":
            els.append(button("Override and approve", ids.APPROVE_OVERRIDE, v, style="danger",
                              confirm=_confirm("Override policy?", f"{rb.severity} says plan for "
                                               "the next deployment. Execute now?", "Execute")))
        else:
            els.append(button("Approve", ids.APPROVE, v, style="primary",
                              confirm=_confirm("Approve rollback?", f"Roll {rb.service} back "
                                               f"to {rb.target_revision.label()}?", "Approve")))
        els.append(button("Reject", ids.REJECT, v, style="danger"))
        if rb.policy_mode == "hotfix_window":
            els.append(button("Hotfix in progress", ids.HOTFIX, v))
        if not rb.incident_commander:
            els.append(button("I'm incident commander", ids.ASSIGN_IC, v))
        for key in CHECKLIST_ITEMS:
            if key in AUTOMATIC_CHECKLIST_ITEMS or key == "incident_commander":
                continue
            done = (rb.checklist.get(key) or {}).get("done")
            label = {"decision_approved": "Decision approved", "team_assembled":
                     "Team assembled"}.get(key, key)
            els.append(button(("Undo: " if done else "✓ ") + label, f"{ids.CHECKLIST}:{key}",
                              f"{rb.id}:{key}"))
        els.append(button("Cancel", ids.CANCEL, v))
        return els
    if rb.state == State.APPROVED:
        return [button("Cancel", ids.CANCEL, v)]
    if rb.state in (State.NEEDS_ATTENTION, State.UNSTABLE, State.VERIFICATION_FAILED):
        return [button("Mark resolved", ids.RESOLVE, v, style="primary")]
    return []


# ---------------------------------------------------------------------- other surfaces
def help_blocks(command: str) -> list[Block]:
    return [
        {"type": "header", "text": _text("rollback-bot", kind="plain_text")},
        section(
            f"`{command} <service>`: open the request form\n"
            f"`{command} <service> [--to REV] [--severity P0|P1|P2|P3] "
            "[--scope app,db,config,external] [--platform kubernetes|ecs|fly] "
            "[--reason \"…\"]`: request a rollback now\n"
            f"`{command} status [ID|service]` · `{command} history <service>` · "
            f"`{command} cancel <ID>` · `{command} services` · `{command} help`"
        ),
        context("Severity policy: P0 immediate full rollback · P1 roll back unless a hotfix "
                "lands in 15 min · P2 evaluate within 1 h · P3 plan for next deployment."),
    ]


def services_blocks(config: RollbackConfig) -> list[Block]:
    lines = []
    for name, svc in sorted(config.services.items()):
        plats = ", ".join(svc.platforms())
        lines.append(f"• *{name}* ({plats}){': ' + svc.description if svc.description else ''}")
    return [section("*Services*\n" + "\n".join(lines))]


def rollback_list_blocks(title: str, rollbacks: list[Rollback]) -> list[Block]:
    if not rollbacks:
        return [section(f"*{title}*\nNothing to show.")]
    lines = [
        f"• *{rb.ref}* {rb.service} {STATE_BADGE[rb.state]} — to {rb.target_revision.label()}, "
        f"{rb.severity}, by <@{rb.requester}> at {rb.created_at:%Y-%m-%d %H:%M} UTC"
        for rb in rollbacks
    ]
    return [section(f"*{title}*\n" + "\n".join(lines))]


def error_blocks(message: str) -> list[Block]:
    return [section(f":no_entry_sign: {message}")]


def request_modal(*, service: str, platform: str, revisions: list[Any], severity: Severity,
                  scope: list[str], channel_id: str, platforms: list[str]) -> dict[str, Any]:
    opts = [
        {"text": _text(f"{r.label()}{' (current)' if r.current else ''}"[:75],
                       kind="plain_text"), "value": str(r.number)}
        for r in revisions[:100] if not r.current
    ]
    def option(v: str, label: str | None = None) -> dict[str, Any]:
        return {"text": _text(label or v, kind="plain_text"), "value": v}
    blocks: list[Block] = [section(f"Roll back *{service}* on *{platform}*.")]
    if opts:
        blocks.append({"type": "input", "block_id": "target_revision", "label": _text(
            "Target revision", kind="plain_text"), "element": {
            "type": "static_select", "action_id": "target_revision", "options": opts,
            "initial_option": opts[0]}})
    blocks += [
        {"type": "input", "block_id": "severity", "label": _text("Severity", kind="plain_text"),
         "element": {"type": "static_select", "action_id": "severity",
                     "options": [option(s.value) for s in Severity],
                     "initial_option": option(severity.value)}},
        {"type": "input", "block_id": "scope", "label": _text("Scope", kind="plain_text"),
         "element": {"type": "checkboxes", "action_id": "scope",
                     "options": [option(s) for s in ("app", "db", "config", "external")],
                     "initial_options": [option(s) for s in scope]}},
        {"type": "input", "block_id": "reason", "optional": True,
         "label": _text("Reason", kind="plain_text"),
         "element": {"type": "plain_text_input", "action_id": "reason", "multiline": True}},
    ]
    if len(platforms) > 1:
        blocks.insert(1, {"type": "input", "block_id": "platform", "label": _text(
            "Platform", kind="plain_text"), "element": {
            "type": "static_select", "action_id": "platform",
            "options": [option(p) for p in platforms], "initial_option": option(platform)}})
    return {
        "type": "modal", "callback_id": ids.REQUEST_MODAL,
        "title": _text("Request rollback", kind="plain_text"),
        "submit": _text("Request", kind="plain_text"),
        "close": _text("Cancel", kind="plain_text"),
        "private_metadata": f"{service}|{channel_id}",
        "blocks": blocks,
    }


def reject_modal(rb: Rollback, *, channel_id: str) -> dict[str, Any]:
    return {
        "type": "modal", "callback_id": ids.REJECT_MODAL,
        "title": _text(f"Reject {rb.ref}"[:24], kind="plain_text"),
        "submit": _text("Reject", kind="plain_text"),
        "close": _text("Back", kind="plain_text"),
        "private_metadata": f"{rb.id}|{channel_id}",
        "blocks": [
            section(f"Reject the rollback of *{rb.service}* to {rb.target_revision.label()}?"),
            {"type": "input", "block_id": "reason", "label": _text("Reason", kind="plain_text"),
             "element": {"type": "plain_text_input", "action_id": "reason", "multiline": True}},
        ],
    }
