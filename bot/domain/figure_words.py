"""Figures and names as people read them: percentages and the reminders' names.

Shared by aftercare (a regression's cause, the stability report's figures, a reminder's
refusals) and the Slack layer's wording, like ``bot.domain.time_words``: every surface shows
the same "2.50%" and calls a reminder by the same name.
"""

from __future__ import annotations

# What each reminder kind (``bot.aftercare.reminders``) is called.
REMINDER_LABELS = {"review": "Post-incident review", "postmortem": "Post-mortem"}


def pct(value: float) -> str:
    """A rate (0.025) as a percentage: two decimals below 10 % (``2.50%``), one above."""
    return f"{value * 100:.2f}%" if value < 0.1 else f"{value * 100:.1f}%"
