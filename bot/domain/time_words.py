"""Times as people read them: UTC for every message and document, and short durations.

Shared by aftercare (reports, post-mortems, stakeholder updates) and the Slack layer's
wording, so every surface shows the same clock and the same "1 h 05 min".
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta


def in_utc(at: datetime) -> datetime:
    """Database timestamps come back in the server's time zone; messages speak UTC."""
    return at.astimezone(UTC)


def duration(delta: timedelta) -> str:
    seconds = max(0, int(delta.total_seconds()))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes:02d} min"
    return f"{minutes} min {secs:02d} s" if minutes else f"{secs} s"
