"""A rollback's timeline for people: ephemeral blocks (within Slack's limits) and a Markdown file.

Pure: a ``bot.usecases.timeline.Timeline`` in, blocks or text out. Both show the same
entries in the same words; the blocks stop where Slack's limits (50 blocks a message,
3,000 characters a section) or :data:`MAX_SHOWN` would be passed and say how many more
the attached file holds. Times are UTC, ``YYYY-MM-DD HH:MM:SS``.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from bot.domain.time_words import in_utc
from bot.usecases.timeline import Entry, Kind, Timeline
from handlers.mrkdwn import escape, mention

Block = dict[str, Any]

MAX_BLOCKS = 50  # Slack: a message holds at most 50 blocks
SECTION_LIMIT = 3000  # Slack: a section's text, as sent (escaped)
MAX_SHOWN = 60  # entries in the message; a longer timeline is read in the file
LINE_DETAIL = 200  # characters of an entry's detail in the message (the file has all)

_STATE_WORDS = {"pending_approval": "pending approval", "needs_attention": "needs attention",
                "verification_failed": "verification failed"}


def when(at: datetime) -> str:
    """``2026-11-29 03:00:05``: UTC, to the second, sortable and readable."""
    return f"{in_utc(at):%Y-%m-%d %H:%M:%S}"


def filename(tl: Timeline) -> str:
    """``timeline-RB-7-20261129T031500Z.md``: the rollback and the moment it was read."""
    return f"timeline-{tl.rollback.ref}-{in_utc(tl.generated_at):%Y%m%dT%H%M%SZ}.md"


def _state(state: str | None) -> str:
    return _STATE_WORDS.get(state or "", (state or "").replace("_", " "))


def what(e: Entry) -> str:
    """What happened, in plain words (no markup)."""
    if e.kind == Kind.TRANSITION:
        moved = (f"{_state(e.from_state)} → {_state(e.to_state)}" if e.from_state
                 else _state(e.to_state))
        return f"{moved} ({e.name.replace('_', ' ')})"
    if e.kind == Kind.EVENT:
        return e.name.replace("_", " ")
    if e.kind == Kind.STEP:
        return f"{e.source} {e.name}: {e.facts.get('status', '')}"
    if e.kind == Kind.CHECK:
        status = e.facts.get("status")
        if status is None and "health_ok" in e.facts:
            status = "health ok" if e.facts["health_ok"] else "health failing"
        return f"check {e.name}" + (f": {status}" if status else "")
    if e.kind == Kind.NOTICE:
        return f"posted {e.name}" if e.facts.get("status") == "sent" else \
            f"post {e.name} claimed, not confirmed sent"
    if e.kind == Kind.JOB:
        return f"job {e.name} {e.facts.get('status', '')}".strip()
    if e.kind == Kind.MONITOR:
        return f"monitoring {e.name}"
    return e.name


_SHOWN_IN_WHAT = {Kind.STEP: ("status",), Kind.CHECK: ("status",), Kind.JOB: ("status",)}


def detail(e: Entry) -> str:
    """The entry's facts as ``key: value; …`` (plain text, one line)."""
    skip = _SHOWN_IN_WHAT.get(e.kind, ())
    if e.kind == Kind.NOTICE:
        skip = ("status",) if e.facts.get("status") == "sent" else ()
    parts = [f"{k}: {_value(v)}" for k, v in e.facts.items() if k not in skip]
    return "; ".join(parts).replace("\n", " ")


def _value(v: Any) -> str:
    if isinstance(v, datetime):
        return f"{when(v)} UTC"
    if isinstance(v, float):  # a measurement: two decimals say enough
        return f"{v:.2f}".rstrip("0").rstrip(".")
    if isinstance(v, dict | list):
        return json.dumps(v, default=str, ensure_ascii=False, separators=(",", ":"))
    return str(v)


def actor_words(actor: str) -> str:
    """Plain text for the file: who, as recorded (a Slack id stays an id)."""
    return "the bot" if actor == "bot" else actor


def _actor_mrkdwn(actor: str) -> str:
    return "the bot" if actor == "bot" else mention(actor)


# ---------------------------------------------------------------------- the message
def entry_line(e: Entry) -> str:
    """One entry as a mrkdwn line: every piece escaped, people mentioned."""
    more = detail(e)
    if len(more) > LINE_DETAIL:
        more = more[:LINE_DETAIL - 1] + "…"
    line = (f"`{when(e.at)}` *{escape(what(e))}* · {_actor_mrkdwn(e.actor)}"
            + (f" · {escape(more)}" if more else "") + f" _({escape(e.source)})_")
    return line.replace("\n", " ")


def _cut_note(rest: int, name: str) -> str:
    return f"… and {rest} more, see the attached file `{escape(name)}`."


def timeline_blocks(tl: Timeline, *, file_note: str, name: str) -> list[Block]:
    """The ephemeral answer: a title, the entries packed into sections (oldest first), a
    cut note when they do not all fit, and ``file_note`` (where the whole file went)."""
    rb = tl.rollback
    total = len(tl.entries)
    head: Block = {"type": "section", "text": {"type": "mrkdwn", "text": (
        f"*Timeline of {rb.ref}* (`{escape(rb.service)}`, {escape(_state(rb.state.value))}): "
        f"{total} entr{'y' if total == 1 else 'ies'}, times in UTC")}}
    tail: list[Block] = [_context(escape(file_note))]
    # Room for the title, the cut note and the file note.
    room = MAX_BLOCKS - 1 - 1 - len(tail)
    sections: list[str] = []
    shown = 0
    for e in tl.entries[:MAX_SHOWN]:
        line = entry_line(e)[:SECTION_LIMIT]
        if sections and len(sections[-1]) + 1 + len(line) <= SECTION_LIMIT:
            sections[-1] += "\n" + line
        elif len(sections) < room:
            sections.append(line)
        else:
            break
        shown += 1
    blocks = [head, *({"type": "section", "text": {"type": "mrkdwn", "text": s}}
                      for s in sections)]
    if not tl.entries:
        blocks.append(_context("Nothing is recorded for it."))
    elif shown < total:
        blocks.append(_context(_cut_note(total - shown, name)))
    return blocks + tail


def shown_count(blocks: list[Block]) -> int:
    """How many entry lines ``blocks`` show (for tests and the fallback text)."""
    return sum(len(b["text"]["text"].split("\n")) for b in blocks[1:]
               if b.get("type") == "section")


def _context(text: str) -> Block:
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": text[:SECTION_LIMIT]}]}


# ---------------------------------------------------------------------- the file
def _cell(text: str) -> str:
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def timeline_markdown(tl: Timeline) -> str:
    """The whole timeline as a Markdown document (a table, one row per entry)."""
    rb = tl.rollback
    lines = [
        f"# Timeline of {rb.ref}: {rb.service}",
        "",
        f"- **State:** {_state(rb.state.value)}",
        f"- **Requested:** {when(rb.created_at)} UTC by `{rb.requester}`",
        f"- **Platform:** {rb.target.describe()}",
        f"- **Entries:** {len(tl.entries)}",
        f"- **Read at:** {when(tl.generated_at)} UTC",
        "",
        "Sources: the audit trail (transitions, decisions, checks), the step journal, "
        "monitoring windows and checks, posts (outbox), scheduled jobs and reminders, as "
        "recorded by rollback-bot. Posts and jobs of rollbacks finished long ago may have "
        "been purged by retention; the audit trail never is.",
        "",
        "| Time (UTC) | Kind | What | By | Detail | Source |",
        "|---|---|---|---|---|---|",
    ]
    for e in tl.entries:
        lines.append("| " + " | ".join(_cell(c) for c in (
            when(e.at), e.kind.value, what(e), actor_words(e.actor), detail(e), e.source))
            + " |")
    return "\n".join(lines) + "\n"
