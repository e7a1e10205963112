"""The post-mortem skeleton: facts and a timeline from the audit log, placeholders for the rest.

Written as ``<postmortem_dir>/YYYY-MM-DD-<slug>.md`` and attached to the post-mortem reminder.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bot.aftercare_store import Facts, Monitor
from bot.models import AuditEvent, Rollback, Step

_EVENT_TEXT = {
    "requested": "Rollback requested",
    "approve": "Approved",
    "reject": "Rejected",
    "start": "Execution started",
    "steps_done": "All steps done",
    "step_failed": "Step failed",
    "interrupted": "Interrupted inside a destructive step",
    "verified": "Verification passed",
    "verification_failed": "Verification failed",
    "retry_verification": "Verification retried",
    "stable": "Monitoring ended: stable",
    "regression": "Monitoring: regression detected",
    "resume_monitoring": "Monitoring resumed",
    "resolve": "Closed by a human",
    "hotfix_in_progress": "Hotfix in progress reported",
    "hotfix_window_elapsed": "Hotfix window elapsed",
    "checklist": "Checklist item",
    "updated": "Updated",
}


def in_utc(at: datetime) -> datetime:
    """Database timestamps come back in the server's time zone; messages speak UTC."""
    return at.astimezone(UTC)


def slug(rb: Rollback) -> str:
    return re.sub(r"[^a-z0-9]+", "-", f"{rb.service} {rb.ref}".lower()).strip("-")


def filename(rb: Rollback) -> str:
    day = in_utc(rb.incident_started_at or rb.created_at)
    return f"{day:%Y-%m-%d}-{slug(rb)}.md"


def duration(delta: timedelta) -> str:
    seconds = max(0, int(delta.total_seconds()))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes:02d} min"
    return f"{minutes} min {secs:02d} s" if minutes else f"{secs} s"


def render(rb: Rollback, *, events: Sequence[AuditEvent], steps: Sequence[Step],
           facts: Facts | None, monitors: Sequence[Monitor]) -> str:
    start = in_utc(rb.incident_started_at or rb.created_at)
    restored = facts.restored_at if facts else None
    downtime = duration(restored - start) if restored else "_not restored by the rollback_"
    current = rb.current_revision.label() if rb.current_revision else "unknown"
    origin = "incident start" if rb.incident_started_at else "the request"
    lines = [
        f"# Post-mortem: {rb.service} rollback {rb.ref} ({rb.severity})",
        "",
        f"- **Date:** {start:%Y-%m-%d}",
        f"- **Service:** {rb.service} on {rb.target.describe()}",
        f"- **Severity:** {rb.severity}",
        f"- **Rolled back:** {current} → {rb.target_revision.label()}",
        f"- **Requested by:** `{rb.requester}` · **Approved by:** `{rb.approver or '-'}`"
        f" · **Incident commander:** `{rb.incident_commander or '-'}`",
        f"- **Reason given:** {rb.reason or '-'}",
        f"- **Outcome:** {rb.state.value.replace('_', ' ')}",
        f"- **Downtime:** {downtime} (from {origin} {start:%H:%M:%S} UTC to verification"
        " passing)",
        "",
        "## Summary",
        "",
        "_TODO: two or three sentences for someone who was not there._",
        "",
        "## Timeline (UTC, from the rollback-bot audit log)",
        "",
        "| Time | Event | By | Detail |",
        "|---|---|---|---|",
        *(_row(at, what, by, detail) for at, what, by, detail in _timeline(events, steps,
                                                                           monitors)),
        "",
        "## Impact",
        "",
        "_TODO: who was affected, for how long, how badly (calls, messages, bookings)._",
        "",
        "## Root cause",
        "",
        "_TODO: what in the release broke, and why it reached production._",
        "",
        "## What went well / what went badly",
        "",
        "- _TODO_",
        "",
        "## Lessons learned",
        "",
        "- _TODO_",
        "",
        "## Action items",
        "",
        "| Action | Owner | Due |",
        "|---|---|---|",
        "| _TODO_ | | |",
        "",
    ]
    return "\n".join(lines)


def write(directory: str | Path, rb: Rollback, text: str) -> Path:
    """Write the skeleton unless a file of that name exists (people may have edited it)."""
    path = Path(directory) / filename(rb)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        tmp = path.with_suffix(".md.tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)
    return path


def _timeline(events: Sequence[AuditEvent], steps: Sequence[Step],
              monitors: Sequence[Monitor]) -> list[tuple[datetime, str, str, str]]:
    rows: list[tuple[datetime, str, str, str]] = []
    for e in events:
        if e.event == "checklist" and not e.detail.get("done"):
            continue
        what = _EVENT_TEXT.get(e.event, e.event.replace("_", " ").capitalize())
        rows.append((e.at, what, e.actor, _detail(e)))
    for s in steps:
        if s.finished_at is not None and s.status in ("done", "skipped", "failed"):
            rows.append((s.finished_at, f"Step {s.seq} {s.status}: {s.description}", "bot",
                         (s.error or str(s.result.get("message") or ""))[:120]))
    for m in monitors:
        if m.finished_at is not None and m.status in ("stable", "unstable"):
            rows.append((m.finished_at, f"Stability monitoring: {m.status}", "bot",
                         str(m.result.get("summary", ""))[:160]))
    return sorted(rows, key=lambda r: r[0])


def _detail(e: AuditEvent) -> str:
    d = e.detail
    if e.event == "requested":
        return f"{d.get('severity', '')}, reason: {d.get('reason') or '-'}"
    if e.event in ("verified", "verification_failed"):
        return str(d.get("summary", ""))
    if e.event == "regression":
        return str(d.get("reason", ""))
    if e.event == "checklist":
        return str(d.get("item", ""))
    if e.event == "updated":
        return ", ".join(f"{k.replace('_', ' ')}: {v}" for k, v in d.items())
    if e.event == "approve" and d.get("break_glass"):
        return "break glass (self-approved)"
    return str(d.get("error") or d.get("note") or d.get("step") or "")[:120]


def _row(at: datetime, what: str, by: str, detail: str) -> str:
    def cell(text: str) -> str:
        return text.replace("|", "\\|").replace("\n", " ")

    return f"| {in_utc(at):%Y-%m-%d %H:%M:%S} | {cell(what)} | `{cell(by)}` | {cell(detail)} |"
