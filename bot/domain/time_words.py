"""Times as people read them: UTC for every message and document, and short durations.

Shared by aftercare (reports, post-mortems, stakeholder updates, the stability report) and
the Slack layer's wording, so every surface shows the same clock, the same "1 h 05 min" and
the same configured "1 h 30 min".
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


def span(seconds: float) -> str:
    """A configured length for people: ``2 h``, ``1 h 30 min``, ``5 min``, ``90 s``."""
    if seconds >= 60 and seconds % 60 == 0:
        hours, minutes = divmod(int(seconds) // 60, 60)
        if hours:
            return f"{hours} h" + (f" {minutes} min" if minutes else "")
        return f"{minutes} min"
    return f"{seconds:g} s"
