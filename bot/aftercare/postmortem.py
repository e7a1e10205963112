"""The post-mortem skeleton: facts and a timeline from the audit log, placeholders for the rest.

Written once per rollback as ``<postmortem_dir>/YYYY-MM-DD-<installation>-<slug>.md``
(default directory: ``<data dir>/post-mortems``) and uploaded with the post-mortem
reminder. The installation id is the database's: rollback numbers restart in every
database, and one directory may serve several (sandbox runs, benches, deployments).
"""

from __future__ import annotations

import logging
import os
import re
import secrets
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

from bot.domain import incident_times
from bot.domain.models import AuditEvent, Rollback, Step
from bot.domain.time_words import duration, in_utc
from bot.persistence.aftercare_store import Facts, Monitor
from bot.persistence.db import data_dir

log = logging.getLogger(__name__)

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
    "hotfix_in_progress": "Hotfix in progress reported (decision deadline extended)",
    "hotfix_window_elapsed": "Hotfix window elapsed",
    "decision_due": "Decision deadline reached: approvers asked",
    "checklist": "Checklist item",
    "updated": "Updated",
    "data_loss": "Data-loss window recorded (database restore)",
}


def slug(rb: Rollback) -> str:
    return re.sub(r"[^a-z0-9]+", "-", f"{rb.service} {rb.ref}".lower()).strip("-")


def filename(rb: Rollback, *, installation: str | None = None) -> str:
    """``YYYY-MM-DD-<installation>-<service>-rb-<n>.md``: the date sorts, the database's
    installation id and the rollback number make it this rollback's alone."""
    day = in_utc(rb.incident_started_at or rb.created_at)
    return "-".join(p for p in (f"{day:%Y-%m-%d}", installation, slug(rb)) if p) + ".md"


def directory(configured: str | None) -> Path:
    """Where skeletons go: ``aftercare.postmortem_dir``, relative paths under the data dir
    (in the container the only writable path; the working directory is read-only), and
    ``<data dir>/post-mortems`` when unset."""
    if not configured:
        return data_dir() / "post-mortems"
    path = Path(configured).expanduser()
    return path if path.is_absolute() else data_dir() / path


def identity(rb: Rollback, *, installation: str) -> str:
    """The first line of a skeleton: which rollback of which database the file belongs to
    (an HTML comment, invisible once rendered)."""
    return (f"<!-- rollback-bot post-mortem: installation {installation}, {rb.ref}, "
            f"requested {in_utc(rb.created_at).isoformat()} -->")


def render(rb: Rollback, *, events: Sequence[AuditEvent], steps: Sequence[Step],
           facts: Facts | None, monitors: Sequence[Monitor]) -> str:
    begun = incident_times.recorded(rb.incident_started_at, rb.incident_start_source,
                                    requested_at=rb.created_at)
    start = begun.at
    restored = facts.restored_at if facts else None
    downtime = duration(restored - start) if restored else "_not restored by the rollback_"
    current = rb.current_revision.label() if rb.current_revision else "unknown"
    origin = ("incident start" if begun.source != incident_times.REQUEST else "the request")
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
        *_impact(begun, restored),
        "",
        "_TODO: who was affected and how badly (calls, messages, bookings)._",
        "",
        "## Data loss",
        "",
        *_data_loss(rb, steps),
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


def _impact(start: incident_times.IncidentStart, restored: datetime | None) -> list[str]:
    """Started, restored and downtime, with where the start came from."""
    source = f" ({start.source_text})" if start.source_text else ""
    lines = [f"- **Incident started:** {start.at:%Y-%m-%d %H:%M:%S} UTC{source}"]
    if restored is None:
        lines.append("- **Service restored:** not by the rollback (verification never passed)")
        return lines
    lines += [f"- **Service restored:** {in_utc(restored):%Y-%m-%d %H:%M:%S} UTC (first passing "
              "verification)",
              f"- **Downtime:** {duration(restored - start.at)}"]
    return lines


def _data_loss(rb: Rollback, steps: Sequence[Step]) -> list[str]:
    """The restore's window as recorded, the pre-restore dump that still holds those writes;
    or why there is none."""
    window = incident_times.data_loss(rb.data_loss_from, rb.data_loss_to)
    if window is None:
        if "db" not in rb.scope:
            return ["None: the database was not part of this rollback."]
        return ["None recorded: the database restore did not run."]
    lines = [f"- **Window:** writes from {window.since:%Y-%m-%d %H:%M:%S} UTC (the restored "
             f"backup's timestamp) to {window.until:%Y-%m-%d %H:%M:%S} UTC (the restore) are "
             f"not in the restored database ({duration(window.length)})."]
    dump = next((s.result.get("file") for s in steps
                 if s.kind == "backup_db" and s.status == "done"), None)
    if dump:
        lines.append(f"- **Recoverable from:** the pre-restore dump `{dump}` (taken just before "
                     "the restore, in the backup location's `pre-restore` folder).")
    lines.append("- _TODO: which of those writes matter, and whether they were replayed._")
    return lines


def write(folder: str | Path, rb: Rollback, text: str, *, installation: str) -> Path:
    """This rollback's skeleton file, created whole or not at all; returns its path.

    A file that already carries this rollback's identity line is kept as it is (people may
    have edited it). A file of that name that belongs to anything else is never touched:
    the skeleton goes to ``…-2.md`` (and so on) instead.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    content = f"{identity(rb, installation=installation)}\n{text}".encode()
    name = filename(rb, installation=installation)
    for n in range(1, 100):
        path = folder / (name if n == 1 else f"{name.removesuffix('.md')}-{n}.md")
        if _create(path, content) or belongs(path, rb, installation=installation):
            return path
        log.warning("post-mortem file %s belongs to something else; not touching it", path.name)
    raise FileExistsError(f"no free post-mortem file name for {rb.ref} in {folder}")


def belongs(path: Path, rb: Rollback, *, installation: str) -> bool:
    """Whether ``path`` is this rollback's skeleton (by its identity line)."""
    return _first_line(path) == identity(rb, installation=installation)


def _create(path: Path, content: bytes) -> bool:
    """Create ``path`` with ``content`` unless it exists; never a partial or replaced file.

    The content goes to a private temporary file first and is then hard-linked into place:
    ``link`` fails when the name exists, so another file is never overwritten.
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    tmp.write_bytes(content)
    try:
        os.link(tmp, path)
        return True
    except FileExistsError:
        return False
    except OSError:  # a filesystem without hard links: exclusive create instead
        try:
            with path.open("xb") as out:
                out.write(content)
            return True
        except FileExistsError:
            return False
    finally:
        tmp.unlink(missing_ok=True)


def _first_line(path: Path) -> str:
    try:
        with path.open(encoding="utf-8", errors="replace") as f:
            return f.readline().rstrip("\n")
    except OSError:
        return ""


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
    if e.event == "data_loss":
        return f"writes from {d.get('since', '?')} to {d.get('until', '?')}"
    if e.event == "updated":
        return ", ".join(f"{k.replace('_', ' ')}: {v}" for k, v in d.items())
    if e.event == "approve" and d.get("break_glass"):
        return "break glass (self-approved)"
    return str(d.get("error") or d.get("note") or d.get("step") or "")[:120]


def _row(at: datetime, what: str, by: str, detail: str) -> str:
    def cell(text: str) -> str:
        return text.replace("|", "\\|").replace("\n", " ")

    return f"| {in_utc(at):%Y-%m-%d %H:%M:%S} | {cell(what)} | `{cell(by)}` | {cell(detail)} |"
