"""Pure Block Kit builders: data in, blocks out. No I/O, so every surface is unit-testable.

The request message is re-rendered from the rollback's state at every transition: only
the buttons valid in that state are shown, so nobody can click a stale Approve.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from bot.domain import incident_times
from bot.domain.compensation import left_scaled_down
from bot.domain.config import (
    AUTOMATIC_CHECKLIST_ITEMS,
    CHECKLIST_ITEMS,
    Policy,
    PolicyMode,
    RollbackConfig,
    Severity,
)
from bot.domain.lifecycle import TERMINAL, State
from bot.domain.messages import Diagnosis, WatchReading
from bot.domain.models import Rollback, Step
from bot.domain.time_words import duration, in_utc
from bot.domain.words import GroupMention
from handlers import ids, wording
from handlers.mrkdwn import escape, mention, usergroup, web_link
from handlers.wording import severity_policy
from platforms.base import PlatformSpecs, Revision, RevisionDetail

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
# Finished, or stopped for a person: the request message offers its timeline.
TIMELINE_STATES = TERMINAL | {State.NEEDS_ATTENTION, State.UNSTABLE, State.VERIFICATION_FAILED}
STEP_ICON = {"pending": ":white_circle:", "started": ":arrows_counterclockwise:",
             "waiting": ":hourglass_flowing_sand:",
             "done": ":white_check_mark:", "failed": ":x:", "skipped": ":fast_forward:"}


# Slack refuses a text object over 3,000 characters (counted as sent: escaped); views that
# can grow fit themselves to it (``fit_lines``, ``config_difference_lines``) and ``_text``
# only backstops.
SECTION_LIMIT = 3000


def _text(text: str, *, kind: str = "mrkdwn") -> dict[str, Any]:
    return {"type": kind, "text": text[:SECTION_LIMIT]}


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
    cur = escape(rb.current_revision.label()) if rb.current_revision else "unknown"
    target = escape(rb.target_revision.label())
    fallback = f"{rb.ref} {rb.service}: {badge} (to {rb.target_revision.label()})"
    blocks: list[Block] = [
        {"type": "header", "text": _text(f"Rollback {rb.ref}: {rb.service}", kind="plain_text")},
        section(f"*{badge}*"),
        {"type": "section", "fields": [
            _text(f"*Severity*\n{rb.severity} ({rb.policy_mode.replace('_', ' ')})"),
            _text(f"*Platform*\n{escape(rb.target.describe())}"),
            _text(f"*Current*\n{cur}"),
            _text(f"*Roll back to (pinned)*\n{target}"),
            _text(f"*Scope*\n{escape(', '.join(rb.scope))}"),
            _text(f"*Requested by*\n{mention(rb.requester)}"),
        ]},
    ]
    if rb.reason:
        blocks.append(section(f"*Reason:* {escape(rb.reason)}"))
    blocks.extend(_plan_warnings(rb))
    blocks.extend(_times(rb))
    blocks.extend(_assessment(rb))
    if rb.watch_reading is not None and rb.state == State.PENDING_APPROVAL:
        blocks.append(context(wording.line(WatchReading.from_json(rb.watch_reading))))
    blocks.append(section("*Plan*\n" + "\n".join(
        f"{STEP_ICON.get(s.status, '')} {s.seq}. {escape(s.description)}"
        + (" _(destructive)_" if s.destructive else "")
        + (f" — {escape(s.error[:200])}" if s.error and s.status == "failed" else "")
        for s in steps)))
    blocks.append(section(_checklist_text(rb)))
    if rb.plan_facts.get("contacts"):
        blocks.append(context(contacts_text(rb.plan_facts["contacts"])))
    who = []
    if rb.incident_commander:
        who.append(f"Incident commander: {mention(rb.incident_commander)}")
    if rb.approver:
        who.append(f"Approved by {mention(rb.approver)}" + (" *(BREAK GLASS)*" if rb.break_glass
                                                     else ""))
    if rb.cancel_requested_by and rb.state == State.EXECUTING:
        who.append(f"Cancel requested by {mention(rb.cancel_requested_by)}: stopping after the "
                   "current step")
    if rb.last_error:
        who.append(f"Last error: {escape(rb.last_error[:300])}")
    if who:
        blocks.append(context(" · ".join(who)))
    actions = _actions(rb, steps)
    if rb.state in TIMELINE_STATES:  # the record so far, for whoever asks (read-only)
        actions.append(button("Timeline", ids.TIMELINE, str(rb.id)))
    if actions:
        blocks.append({"type": "actions", "block_id": f"rb:{rb.id}", "elements": actions})
    if rb.state == State.PENDING_APPROVAL and (rb.decision_due_at or rb.expires_at):
        blocks.append(context(_deadlines(rb)))
    return fallback, blocks


def _deadlines(rb: Rollback) -> str:
    """The decision deadline the core stored (the severity's response time, moved once by a
    hotfix report) and the expiry, for a pending request."""
    parts = []
    if rb.decision_due_at:
        at = in_utc(rb.decision_due_at)
        due = f":alarm_clock: {escape(rb.severity)} decision due {at:%H:%M} UTC"
        if rb.hotfix_reported_by:
            due += f" (extended: {mention(rb.hotfix_reported_by)} reported a hotfix in progress)"
        parts.append(due + ".")
    if rb.expires_at:
        parts.append(f"Approval request expires at {in_utc(rb.expires_at):%Y-%m-%d %H:%M} UTC.")
    return " ".join(parts)


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
            lines.append(f"{icon} *{label}:* {escape(probe.get('text', ''))}")
    return [section("*Assessment*\n" + "\n".join(lines))] if lines else []


def _checklist_text(rb: Rollback) -> str:
    lines = ["*Pre-rollback checklist*"]
    for key, label in CHECKLIST_ITEMS.items():
        item = rb.checklist.get(key) or {}
        mark = ":ballot_box_with_check:" if item.get("done") else ":white_large_square:"
        by = item.get("by")
        note = f" ({escape(item['note'])})" if item.get("note") else ""
        who = " — bot" if by == "bot" else (f" — {mention(by)}" if by and item.get("done") else "")
        lines.append(f"{mark} {label}{note}{who}")
    return "\n".join(lines)


def _plan_warnings(rb: Rollback) -> list[Block]:
    """What approvers must see before they click: revisions with their known-bad marks, a
    known-bad target, a target that never ran here, destructive steps with the pinned backup."""
    out: list[Block] = []
    revisions = rb.plan_facts.get("revisions") or []
    if revisions:
        out.append(context("*Revisions:* " + " · ".join(_revision_text(r) for r in revisions)))
    mark = rb.known_bad_target
    if mark:
        origin = f" by RB-{mark['rollback_id']}" if mark.get("rollback_id") else ""
        out.append(section(
            f":rotating_light: *The pinned target {escape(rb.target_revision.label())} is "
            "KNOWN-BAD* "
            f"(rolled back from{origin}{_forward_fix_note(mark.get('forward_fix'))}). "
            "Executing it needs an approver's explicit override."))
    never = rb.plan_facts.get("never_deployed_target")
    if never:
        out.append(section(
            f":warning: *Revision {escape(str(never['number']))} never ran successfully on "
            "this service*: it was never deployed here, or no deployment of it completed, so "
            "it is an untested or failed version, not a previous stable one."))
    config_view = _config_view(rb.plan_facts)
    if config_view:
        out.append(config_view)
    if rb.destructive_steps:
        lines = [f"• {escape(d['description'])}" for d in rb.destructive_steps]
        backup = rb.plan_facts.get("backup")
        if backup:
            lines.append(f"Pinned backup: `{escape(backup['name'])}`, {_size(backup['size'])}, "
                         f"taken {backup['taken_at'][:16].replace('T', ' ')} UTC")
            lines.append(_data_loss_text(rb, backup))
        out.append(section(":warning: *Destructive steps* — two people and a typed "
                           "confirmation are needed to approve:\n" + "\n".join(lines)))
    return out


def _times(rb: Rollback) -> list[Block]:
    """When the incident started and where that came from (``bot.domain.incident_times``);
    nothing for a row of a version before true times."""
    if rb.incident_started_at is None or rb.incident_start_source is None:
        return []
    start = incident_times.recorded(rb.incident_started_at, rb.incident_start_source,
                                    requested_at=rb.created_at)
    before = rb.created_at - start.at
    ago = f", {duration(before)} before the request" if before.total_seconds() >= 60 else ""
    return [context(f":clock3: Incident started {start.at:%Y-%m-%d %H:%M} UTC "
                    f"({escape(start.source_text)}{ago}); downtime is counted from it.")]


def _data_loss_text(rb: Rollback, backup: dict[str, Any]) -> str:
    """The restore's data-loss window: recorded once the restore ran, else expected (from
    the pinned backup's timestamp, as of the plan; it grows until the restore)."""
    window = incident_times.data_loss(rb.data_loss_from, rb.data_loss_to)
    if window is not None:
        return (f":floppy_disk: *Data loss:* writes between {window.since:%Y-%m-%d %H:%M} and "
                f"{window.until:%H:%M} UTC are not in the restored database "
                f"({duration(window.length)}).")
    taken = in_utc(datetime.fromisoformat(str(backup["taken_at"])))
    return (f":floppy_disk: *Data written after {taken:%Y-%m-%d %H:%M} UTC will be lost* "
            f"(about {duration(rb.created_at - taken)} as of this plan, more until the restore "
            "runs; the pre-restore dump keeps a copy).")


CONFIG_VIEW_LINES = 15


def _config_view(facts: dict[str, Any]) -> Block | None:
    """"Configuration that differs" with the pinned revision (values masked by the adapter,
    secrets as references), at most ``CONFIG_VIEW_LINES`` lines; or why the platform could
    not tell. None for a plan made before the view existed."""
    unavailable = facts.get("config_view_unavailable")
    if unavailable:
        return context(f":grey_question: Configuration view unavailable: "
                       f"{escape(str(unavailable))}")
    diffs = facts.get("config_differences")
    if diffs is None:
        return None
    if not diffs:
        return context("*Configuration that differs:* none (environment and references "
                       "are the same in both revisions)")
    title = "*Configuration that differs* (running → pinned)"
    return section(title + "\n" + "\n".join(config_difference_lines(
        diffs, limit=CONFIG_VIEW_LINES, budget=SECTION_LIMIT - len(title) - 1)))


def config_difference_lines(diffs: list[dict[str, Any]], *, limit: int,
                            budget: int = SECTION_LIMIT) -> list[str]:
    """One line per difference (``env X: a → b``), at most ``limit`` lines and, escaped and
    joined, at most ``budget`` characters with the "… and N more" that counts the rest
    (Slack refuses a longer section and ``section`` would cut it blindly, the count too)."""
    def value(v: Any) -> str:
        return "(unset)" if v is None else f"`{escape(str(v)[:120])}`"

    lines: list[str] = []
    used = 0
    for i, d in enumerate(diffs[:limit]):
        line = (f"• {escape(str(d.get('kind', '')))} {escape(str(d.get('key', ''))[:200])}: "
                f"{value(d.get('running'))} → {value(d.get('pinned'))}")
        more = len(diffs) - i - 1
        # Room for this line and, if any difference is left after it, for the count line.
        reserve = len(f"\n… and {len(diffs)} more") if more else 0
        if used + len(line) + 1 + reserve > budget:
            break
        lines.append(line)
        used += len(line) + 1
    if len(diffs) > len(lines):
        lines.append(f"… and {len(diffs) - len(lines)} more")
    return lines


def _revision_text(rev: dict[str, Any]) -> str:
    text = escape(rev["label"])
    if rev.get("current"):
        text += " (running)"
    if rev.get("target"):
        text += " ← *target*"
    if rev.get("known_bad_by") is not None:
        text += " :no_entry: known-bad" + (f" (RB-{rev['known_bad_by']})"
                                          if rev["known_bad_by"] else "")
        text += _forward_fix_note(rev.get("forward_fix"))
    return text


def _forward_fix_note(link: object) -> str:
    """A known-bad mark's forward fix (``bot.aftercare.forward_fix``), once recorded."""
    return f", fix: {web_link(link)}" if isinstance(link, str) and link else ""


def _size(size: int) -> str:
    units = ["B", "KB", "MB", "GB", "TB"]
    value = float(size)
    for unit in units:
        if value < 1024 or unit == units[-1]:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"


def _approve_confirm(rb: Rollback) -> dict[str, Any]:
    text = f"Roll {escape(rb.service)} back to {escape(rb.target_revision.label())}?"
    if rb.destructive_steps:
        text += (" This plan has destructive steps: "
                 + "; ".join(escape(d["description"]) for d in rb.destructive_steps)
                 + ". You will type the service name to confirm.")
    return _confirm("Approve rollback?", text, "Approve")


def _actions(rb: Rollback, steps: list[Step]) -> list[dict[str, Any]]:
    v = str(rb.id)
    if rb.state == State.PENDING_APPROVAL:
        els = []
        if rb.known_bad_target:
            els.append(button("Roll back to known-bad anyway", ids.APPROVE_KNOWN_BAD, v,
                              style="danger", confirm=_confirm(
                                  "Target is KNOWN-BAD",
                                  f"{escape(rb.target_revision.label())} was "
                                  f"rolled back from before. Roll {escape(rb.service)} to it "
                                  "anyway? "
                                  "The channel is told.", "Override")))
        elif rb.policy_mode == PolicyMode.NEXT_DEPLOYMENT:
            els.append(button("Override and approve", ids.APPROVE_OVERRIDE, v, style="danger",
                              confirm=_confirm("Override policy?", f"{rb.severity} says plan for "
                                               "the next deployment. Execute now?", "Execute")))
        else:
            els.append(button("Approve", ids.APPROVE, v, style="primary",
                              confirm=_approve_confirm(rb)))
        els.append(button("Reject", ids.REJECT, v, style="danger"))
        if rb.policy_mode == PolicyMode.HOTFIX_WINDOW and not rb.hotfix_reported_by:
            els.append(button("Hotfix in progress", ids.HOTFIX, v))  # once: it moves the deadline
        if not rb.incident_commander:
            els.append(button("I'm incident commander", ids.ASSIGN_IC, v))
        for key in CHECKLIST_ITEMS:
            mine = key in AUTOMATIC_CHECKLIST_ITEMS or key == "incident_commander"
            # When the bot could not confirm the previous stable version (and the target is
            # not known-bad), an approver may confirm it by hand, audited.
            if key == "previous_version" and not rb.known_bad_target and not (
                    rb.checklist.get(key) or {}).get("done"):
                els.append(button("✓ Previous version checked", f"{ids.CHECKLIST}:{key}",
                                  f"{rb.id}:{key}"))
                continue
            if mine:
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
    if rb.state == State.EXECUTING and not rb.cancel_requested_by:
        return [button("Cancel", ids.CANCEL, v, confirm=_confirm(
            "Cancel the rollback?", "It stops after the current step; a scaled-down service "
            "is scaled back up. Steps already done are not undone.", "Stop it"))]
    if rb.state in (State.NEEDS_ATTENTION, State.UNSTABLE, State.VERIFICATION_FAILED):
        els = []
        owed = left_scaled_down(steps) if rb.state == State.NEEDS_ATTENTION else None
        replicas = owed.replicas if owed else None
        if replicas is not None:
            els.append(button(f"Scale back up ({replicas})", ids.SCALE_BACK_UP, v,
                              style="danger", confirm=_confirm(
                                  "Scale back up?", f"Start {replicas} replicas of "
                                  f"{escape(rb.service)} again? Only when the database has been "
                                  "checked.", "Scale up")))
        els.append(button("Mark resolved", ids.RESOLVE, v, style="primary"))
        return els
    return []


def approve_destructive_modal(rb: Rollback, *, channel_id: str,
                              flags: dict[str, bool]) -> dict[str, Any]:
    """The approval dialog for a plan with destructive steps: it lists them with the pinned
    backup and asks the approver to type the service name."""
    backup = rb.plan_facts.get("backup") or {}
    lines = [f"• *{escape(d['description'])}*" for d in rb.destructive_steps]
    if backup:
        lines.append(f"Pinned backup: `{escape(backup['name'])}` · "
                     f"{_size(int(backup['size']))} · taken "
                     f"{backup['taken_at'][:16].replace('T', ' ')} UTC ({_age(rb, backup)})")
        lines.append(_data_loss_text(rb, backup))
    set_flags = ",".join(k for k, on in sorted(flags.items()) if on)
    return {
        "type": "modal", "callback_id": ids.APPROVE_DESTRUCTIVE_MODAL,
        "title": _text(f"Approve {rb.ref}"[:24], kind="plain_text"),
        "submit": _text("Approve", kind="plain_text"),
        "close": _text("Back", kind="plain_text"),
        "private_metadata": f"{rb.id}|{channel_id}|{rb.service}|{set_flags}",
        "blocks": [
            section(f":warning: Rolling *{escape(rb.service)}* back to "
                    f"{escape(rb.target_revision.label())} "
                    "includes destructive steps:\n" + "\n".join(lines)),
            {"type": "input", "block_id": "confirm_service",
             "label": _text(f"Type {rb.service} to approve", kind="plain_text"),
             "element": {"type": "plain_text_input", "action_id": "confirm_service",
                         "placeholder": _text(rb.service, kind="plain_text")}},
        ],
    }


def _age(rb: Rollback, backup: dict[str, Any]) -> str:
    taken = datetime.fromisoformat(str(backup["taken_at"]))
    minutes = max(0, int((rb.created_at - taken).total_seconds() // 60))
    return f"{minutes // 60} h {minutes % 60} min old when planned"


def parse_approval_metadata(meta: str) -> tuple[str, str, dict[str, bool]]:
    """(rollback id, channel id, approval flags) from the destructive-approval modal."""
    parts = (meta.split("|") + ["", "", "", ""])[:4]
    flags = {name: True for name in parts[3].split(",")
             if name in ("override", "known_bad_override")}
    return parts[0], parts[1], flags


def approval_service(view: dict[str, Any]) -> str:
    return (str(view.get("private_metadata") or "").split("|") + ["", "", ""])[2]


# ---------------------------------------------------------------------- other surfaces
def help_blocks(command: str, platforms: PlatformSpecs, *,
                policy: Policy | None = None) -> list[Block]:
    """The command's help; ``platforms`` is the registry the configuration was parsed with
    (each platform contributes its name and what a target is there), ``policy`` the
    configured decision matrix (the configuration's defaults when not given)."""
    known = " · ".join(f"`{spec.name}`" + (f": {spec.summary}" if spec.summary else "")
                       for spec in platforms)
    return [
        {"type": "header", "text": _text("rollback-bot", kind="plain_text")},
        section(
            f"`{command} <service>`: open the request form\n"
            f"`{command} <service> [--to REV] [--severity P0|P1|P2|P3] "
            f"[--scope app,db,config,external] [--platform {'|'.join(platforms.names())}] "
            "[--reason \"…\"] [--started 40m|14:05|ISO]`: request a rollback now (`--started`: "
            "when the incident began, UTC unless an offset is given)\n"
            f"`{command} status [ID|service]` · `{command} history <service>` · "
            f"`{command} cancel <ID>` · `{command} services` · `{command} help`\n"
            f"`{command} timeline <ID>`: every transition, step, check and notice of a "
            "rollback with who and when (UTC), and the whole of it as a Markdown file in its "
            "thread\n"
            f"`{command} history <service> --revision N [--platform P]`: revision N as the "
            "platform shows it (images, change-cause, pod template / task definition / "
            "release)\n"
            f"`{command} known-bad <service>`: revisions rolled back from · "
            f"`{command} known-bad <service> clear REV --reason \"…\"`: an approver clears "
            "a mark\n"
            f"`{command} contacts <service>`: the service's emergency contacts (incident "
            "commander, technical lead, DevOps, DBA, security)\n"
            f"`{command} forward-fix <ID> <url> [root cause…]`: record the issue or pull "
            "request fixing what was rolled back (shown on its known-bad mark) · "
            f"`{command} forward-fix <ID> --waive <reason>`: no forward fix needed\n"
            f"`{command} diagnose <service>`: which runbook scenario applies now (error rate, "
            "database checks, external services), read-only, with a button that opens the "
            "request form with its scope"
        ),
        context(severity_policy(policy or Policy())),
        context(f"Platforms: {known}"),
    ]


def diagnosis_blocks(d: Diagnosis) -> list[Block]:
    """The answer to ``diagnose``: one section per finding with a button that opens the
    request form with its scope (a finding someone took says who, instead of the button,
    like a decided request), then every check and its outcome."""
    blocks: list[Block] = [section(wording.diagnosis_title(d))]
    for finding in d.findings:
        block = section(wording.finding_text(finding, at=d.at))
        if not finding.taken_by:
            b = wording.finding_button(d.service, finding, record=d.record)
            block["accessory"] = button(b.label, b.action_id, b.value, style=b.style)
        blocks.append(block)
    if d.checked:
        blocks.append(context("*Checked* (read-only)\n" + wording.diagnosis_checked(d)))
    return blocks


def contacts_text(contacts: list[dict[str, Any]]) -> str:
    """The emergency contacts (``bot.domain.contacts.contact_facts``), one line each: a user
    id or group id is mentioned, a group handle is shown as text (no id to mention)."""
    lines = ["*Emergency contacts*"]
    for c in contacts:
        slack = str(c.get("slack") or "")
        shown = (mention(slack) if slack[:1] in ("U", "W") else
                 usergroup(GroupMention(slack, slack)) or escape(slack))
        lines.append(wording.contact_line(
            str(c.get("title", "")), name=str(c.get("name") or ""), slack=shown,
            phone=c.get("phone"), email=c.get("email")))
    return "\n".join(lines)


def contacts_blocks(service: str, contacts: list[dict[str, Any]], *,
                    paging: bool) -> list[Block]:
    """The answer to ``contacts <service>``."""
    if not contacts:
        return [section(f"*Emergency contacts of {escape(service)}*\nNone configured "
                        "(`contacts:` in the service's configuration).")]
    blocks = [section(contacts_text(contacts).replace(
        "*Emergency contacts*", f"*Emergency contacts of {escape(service)}*", 1))]
    blocks.append(context(":pager: Escalations also page through PagerDuty." if paging else
                          "Escalations mention these contacts in the incident thread "
                          "(no PagerDuty configured)."))
    return blocks


def services_blocks(config: RollbackConfig) -> list[Block]:
    lines = []
    for name, svc in sorted(config.services.items()):
        plats = ", ".join(svc.platforms())
        desc = f": {escape(svc.description)}" if svc.description else ""
        lines.append(f"• *{escape(name)}* ({escape(plats)}){desc}")
    return [section("*Services*\n" + "\n".join(lines))]


def rollback_list_blocks(title: str, rollbacks: list[Rollback], *,
                         forward_fixes: dict[int, Any] | None = None,
                         total: int | None = None) -> list[Block]:
    """``forward_fixes`` (by rollback id): each completed rollback's forward fix, shown on
    the revision it marked known-bad. ``total``: how many there are in all when
    ``rollbacks`` is the newest of them; lines that do not fit one section (Slack's 3,000
    characters) are counted with the rest instead of being cut."""
    if not rollbacks:
        return [section(f"*{escape(title)}*\nNothing to show.")]
    fixes = forward_fixes or {}
    lines = [
        f"• *{rb.ref}* {escape(rb.service)} {STATE_BADGE[rb.state]} — to "
        f"{escape(rb.target_revision.label())}, "
        f"{rb.severity}, by {mention(rb.requester)} at {rb.created_at:%Y-%m-%d %H:%M} UTC"
        + _recorded_times(rb) + _forward_fix_status(rb, fixes.get(rb.id))
        for rb in rollbacks
    ]
    total = max(total or 0, len(lines))
    head = f"*{escape(title)}*"
    more = "\n… and {} more (`/rollback status RB-N` or `/rollback status <service>` " \
           "shows one)"
    kept: list[str] = []
    used = len(head)
    for line in reversed(lines):  # the list runs oldest first: keep the newest that fit
        rest = total - len(kept) - 1
        if used + 1 + len(line) + (len(more.format(rest)) if rest else 0) > SECTION_LIMIT:
            break
        kept.insert(0, line)
        used += 1 + len(line)
    text = head + "\n" + "\n".join(kept)
    if total > len(kept):
        text += more.format(total - len(kept))
    return [section(text)]


def _forward_fix_status(rb: Rollback, rec: Any) -> str:
    """History's word on the runbook's "Plan forward fix" for one rollback."""
    if rec is None:
        return ""
    cur = rb.current_revision
    bad = (f"known-bad {escape(cur.label())} "
           if cur is not None and cur.id != rb.target_revision.id else "")
    if rec.status == "given":
        return f"; {bad}forward fix: {web_link(rec.link or '')}"
    if rec.status == "waived":
        return f"; {bad}forward fix waived: {escape(rec.reason)}"
    return f"; {bad}forward fix: not recorded yet"


def _recorded_times(rb: Rollback) -> str:
    """A status line's incident start and, after a database restore, its data loss."""
    parts = []
    if rb.incident_started_at is not None and rb.incident_start_source is not None:
        parts.append(f"incident started {in_utc(rb.incident_started_at):%H:%M} UTC")
    window = incident_times.data_loss(rb.data_loss_from, rb.data_loss_to)
    if window is not None:
        parts.append(f"data loss {window.since:%Y-%m-%d %H:%M}–{window.until:%H:%M} UTC "
                     f"({duration(window.length)})")
    return "; " + "; ".join(parts) if parts else ""


_FENCE = "`" * 3
_CUT_NOTE = "\n… (cut; the platform's own tool shows the rest)"


def revision_detail_blocks(service: str, platform: str, detail: RevisionDetail
                           ) -> list[Block]:
    """``history <service> --revision N``: the platform's own presentation of one revision
    (already masked by the adapter) in a code block, cut to what one section holds."""
    text = detail.text.replace(_FENCE, "'" * 3)  # a fence inside would end the code block
    title = (f"*Revision {detail.revision.number} of {escape(service)}* ({escape(platform)})"
             + (" — running now" if detail.revision.current else ""))
    body = fit_lines(escape(text), SECTION_LIMIT - 2 * len(_FENCE), note=_CUT_NOTE)
    return [section(title), section(f"{_FENCE}{body}{_FENCE}")]


def fit_lines(escaped: str, budget: int, *, note: str) -> str:
    """``escaped`` (already escaped: Slack counts the ``&amp;``, not the ``&``) whole when
    it fits ``budget``, else cut at the last line break that leaves room for ``note`` (or,
    a single long line, inside it but never inside an entity) with ``note`` after it."""
    if len(escaped) <= budget:
        return escaped
    room = max(0, budget - len(note))
    cut = escaped.rfind("\n", 0, room + 1)
    if cut <= 0:
        cut = room
        entity = escaped.rfind("&", max(0, cut - 4), cut)  # "&amp;" is the longest: 5
        if entity >= 0 and ";" not in escaped[entity:cut]:
            cut = entity
    return escaped[:cut] + note


def known_bad_blocks(service: str, platform: str, marks: list[Any]) -> list[Block]:
    service, platform = escape(service), escape(platform)
    if not marks:
        return [section(f"*Known-bad revisions of {service}* ({platform})\nNone marked.")]
    lines = [
        f"• {escape(Revision.from_dict(m.revision).label())} — marked "
        f"{m.marked_at:%Y-%m-%d %H:%M} UTC" + (f" by RB-{m.rollback_id}" if m.rollback_id else "")
        + _forward_fix_note(getattr(m, "forward_fix", None))
        for m in marks
    ]
    return [section(f"*Known-bad revisions of {service}* ({platform})\n" + "\n".join(lines)),
            context(f"An approver clears one with `{ids.COMMAND} known-bad {service} clear "
                    "REV --reason \"…\"`.")]


def known_bad_cleared_text(mark: Any, *, user: str, reason: str) -> str:
    rev = Revision.from_dict(mark.revision)
    return (f":warning: {mention(user)} cleared the known-bad mark on {escape(mark.service)} "
            f"{escape(rev.label())} ({escape(mark.platform)}): {escape(reason)}. It can be a "
            "default rollback target again.")


def error_blocks(message: str) -> list[Block]:
    """``message`` is mrkdwn already made safe (``handlers.errors.render`` escapes it)."""
    return [section(f":no_entry_sign: {message}")]


def request_modal(*, service: str, platform: str, revisions: list[Any], severity: Severity,
                  scope: list[str], channel_id: str, platforms: list[str],
                  known_bad: dict[str, Any] | None = None, reason: str = "",
                  incident_start: incident_times.IncidentStart | None = None
                  ) -> dict[str, Any]:
    """``reason`` pre-fills the reason (the release watcher's evidence); ``incident_start``
    is the default an empty "Incident started" field gets, named in its hint."""
    bad = known_bad or {}
    opts = [
        {"text": _text(f"{r.label()}{' (current)' if r.current else ''}"[:75],
                       kind="plain_text"), "value": str(r.number)}
        for r in revisions[:100] if not r.current and r.id not in bad
    ]
    hidden = [r for r in revisions if not r.current and r.id in bad]
    def option(v: str, label: str | None = None) -> dict[str, Any]:
        return {"text": _text(label or v, kind="plain_text"), "value": v}
    blocks: list[Block] = [section(f"Roll back *{escape(service)}* on *{escape(platform)}*.")]
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
         "element": {"type": "plain_text_input", "action_id": "reason", "multiline": True,
                     **({"initial_value": reason[:2900]} if reason else {})}},
        _incident_start_input(incident_start),
    ]
    if hidden:
        blocks.insert(1, context(
            ":no_entry: Known-bad, not offered: "
            + ", ".join(escape(r.label()) + _forward_fix_note(
                getattr(bad[r.id], "forward_fix", None)) for r in hidden)
            + f". To roll to one anyway: `/rollback {escape(service)} --to REV` (an approver must "
            "override)."))
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


def _incident_start_input(default: incident_times.IncidentStart | None) -> Block:
    """The form's "Incident started" field: the forms ``--started`` takes; empty gets the
    default (not pre-filled, so the records never call a default "given by the requester")."""
    hint = ("40m (minutes ago), 1h30m, 14:05 (today, UTC), 14:05+02:00 or 2026-11-29T14:05Z. "
            "Empty: ")
    hint += (f"{default.at:%Y-%m-%d %H:%M} UTC ({default.source_text})." if default
             else "the release watcher's first breach, else the bad revision's deploy time, "
                  "else now.")
    return {"type": "input", "block_id": "incident_started", "optional": True,
            "label": _text("Incident started", kind="plain_text"),
            "hint": _text(hint[:2000], kind="plain_text"),
            "element": {"type": "plain_text_input", "action_id": "incident_started",
                        "placeholder": _text("e.g. 40m or 14:05", kind="plain_text")}}


def reject_modal(rb: Rollback, *, channel_id: str) -> dict[str, Any]:
    return {
        "type": "modal", "callback_id": ids.REJECT_MODAL,
        "title": _text(f"Reject {rb.ref}"[:24], kind="plain_text"),
        "submit": _text("Reject", kind="plain_text"),
        "close": _text("Back", kind="plain_text"),
        "private_metadata": f"{rb.id}|{channel_id}",
        "blocks": [
            section(f"Reject the rollback of *{escape(rb.service)}* to "
                    f"{escape(rb.target_revision.label())}?"),
            {"type": "input", "block_id": "reason", "label": _text("Reason", kind="plain_text"),
             "element": {"type": "plain_text_input", "action_id": "reason", "multiline": True}},
        ],
    }
