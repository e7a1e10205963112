"""Charts people read at a glance: the stability report's PNG, drawn with matplotlib.

Its job: turn measured series (absolute times, values) into a small PNG for a Slack thread,
one panel per series stacked on a shared x axis of times of day in UTC. Each panel draws
its threshold as a labelled dashed line, and its y axis always reaches it, so "how far
below" reads at a glance; a labelled vertical line marks the moment of the rollback, and
another, optionally, the bad deploy's. An error rate is given as a fraction (0.012) and
shown as a percentage (1.2%); a latency in milliseconds (its axis in seconds from 10 s).

Headless and safe from worker threads: every render builds its own
``matplotlib.figure.Figure`` on an explicit ``FigureCanvasAgg`` (the Agg rasterizer, chosen
in code: no backend is looked up, and pyplot, with its global figure manager, is never
imported). Fonts are the DejaVu Sans matplotlib ships, named with their sizes on every text,
so nothing is downloaded and a ``matplotlibrc`` on the host cannot swap them. Matplotlib
promises no thread safety beyond separate figures, and a chart is rare (one per stable
window), so ``render_png`` serializes renders with a module lock; one takes ~0.1 s and has
no I/O. The PNG carries no software or time metadata: the same input gives the same bytes.

Matplotlib is imported by the first chart, not with this module (~0.5 s and ~50 MiB): a
follower replica or a CLI command never pays for it, and a broken install costs a chart
(the caller says so in the thread), never the bot.

A chart is a decoration: this module raises like any code, and the caller
(``bot.aftercare.coordinator``, ``_decorate``) bounds the attempts and lets the rollback move
on without it.
"""

from __future__ import annotations

import io
import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Literal

from bot.domain.figure_words import pct

if TYPE_CHECKING:  # matplotlib itself is imported by the first chart (see the docstring)
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

# Colours (hex, exact in the PNG where a line fully covers a pixel: the tests look for them).
BLUE = "#1f5fbf"       # error rate
GREEN = "#138a43"      # latency
RED = "#d62728"        # thresholds
PURPLE = "#7b2cbf"     # the rollback
ORANGE = "#e67e00"     # the bad deploy
INK = "#333333"
GRID = "#dddddd"

FONT = "DejaVu Sans"   # shipped in matplotlib's mpl-data: never looked up on the network
DPI = 100
WIDTH_IN = 8.0         # 800 px wide: a Slack preview and a laptop read it without zooming
PANEL_IN = 2.3         # per panel; plus the title and the time axis
EXTRA_IN = 0.9
MAX_PNG_BYTES = 150 * 1024  # the budget the tests hold a chart to

Unit = Literal["rate", "ms"]

_RENDER = threading.Lock()


@dataclass(frozen=True)
class Series:
    """One panel: ``points`` are (absolute time, value or None for a missing reading);
    ``unit`` "rate" is a fraction shown as %, "ms" milliseconds; ``threshold`` in the
    same unit."""

    title: str
    points: Sequence[tuple[datetime, float | None]]
    unit: Unit
    color: str = BLUE
    threshold: float | None = None


def value_text(value: float, unit: Unit) -> str:
    """A threshold's label: the report's "5.00%" for a rate, "2,000 ms" for a latency."""
    return pct(value) if unit == "rate" else f"{value:,.0f} ms"


def figure(series: Sequence[Series], *, start: datetime, end: datetime,
           rolled_back_at: datetime | None, bad_deploy_at: datetime | None = None,
           title: str = "") -> Figure:
    """The chart as a Figure (on its own Agg canvas): panels stacked over ``[start, end]``
    (the monitoring window, times of day in UTC), the rollback (and the bad deploy, when
    given) marked; the release watcher's chart has no rollback to mark (None). The x axis
    reaches back to a marked moment up to one window before ``start``; one further back is
    named at the left edge instead."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    lo, hi = _x_range(start, end, [rolled_back_at, bad_deploy_at])
    panels = max(1, len(series))
    height = PANEL_IN * panels + EXTRA_IN
    fig = Figure(figsize=(WIDTH_IN, height), dpi=DPI, facecolor="white")
    FigureCanvasAgg(fig)  # attaches itself to fig: Agg, chosen here, whatever the environment
    # Fixed margins in inches (constrained layout made a render ~1.4x slower): room for
    # "12,000 ms" on the left, the title on top, the time axis and its label below.
    top, bottom, gap = (0.6 if title else 0.35), 0.55, 0.45  # gap: the next panel's title
    panel = (height - top - bottom - gap * (panels - 1)) / panels
    fig.subplots_adjust(left=0.85 / WIDTH_IN, right=1 - 0.2 / WIDTH_IN, bottom=bottom / height,
                        top=1 - top / height, hspace=gap / panel)
    axes = fig.subplots(panels, 1, sharex=True, squeeze=False)[:, 0]
    for ax, s in zip(axes, series, strict=False):
        _panel(ax, s)
    marks: list[tuple[datetime, str, str]] = []
    if rolled_back_at is not None:
        marks.append((rolled_back_at, "rolled back", PURPLE))
    if bad_deploy_at is not None:
        marks.append((bad_deploy_at, "bad deploy", ORANGE))
    for index, ax in enumerate(axes):
        ax.set_xlim(_num(lo), _num(hi))
        for row, (at, what, color) in enumerate(marks):  # one label row each: no overlap
            _mark(ax, at, what, color, lo=lo, hi=hi, row=row if index == 0 else None)
    _time_axis(axes[-1], lo, hi)
    if title:
        fig.suptitle(title, x=0.5, y=1 - 0.08 / height, va="top", fontfamily=FONT,
                     fontsize=12, color=INK, usetex=False, parse_math=False)
    return fig


def png(fig: Figure) -> bytes:
    """The figure as PNG bytes, without metadata (no software name, no time)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    buf = io.BytesIO()
    canvas = fig.canvas
    assert isinstance(canvas, FigureCanvasAgg)
    canvas.print_png(buf, metadata={"Software": None})  # type: ignore[no-untyped-call]
    return buf.getvalue()


def render_png(series: Sequence[Series], *, start: datetime, end: datetime,
               rolled_back_at: datetime | None, bad_deploy_at: datetime | None = None,
               title: str = "") -> bytes:
    """``figure`` then ``png``: the chart as PNG bytes. Safe to call from any thread."""
    with _RENDER:
        return png(figure(series, start=start, end=end, rolled_back_at=rolled_back_at,
                          bad_deploy_at=bad_deploy_at, title=title))


def time_labels(fig: Figure) -> list[str]:
    """The x axis' tick labels as drawn (times of day in UTC); draws the figure."""
    with _RENDER:
        fig.canvas.draw()
        return [t.get_text() for t in fig.axes[-1].get_xticklabels() if t.get_text()]


# ------------------------------------------------------------------------ drawing
def _utc(at: datetime) -> datetime:
    return at.astimezone(UTC) if at.tzinfo else at.replace(tzinfo=UTC)


def _num(at: datetime) -> float:
    """Matplotlib's date number for ``at`` (its ``dates`` module has no type hints)."""
    from matplotlib import dates as mdates

    return float(mdates.date2num(_utc(at)))  # type: ignore[no-untyped-call]


def _x_range(start: datetime, end: datetime,
             moments: Sequence[datetime | None]) -> tuple[datetime, datetime]:
    start, end = _utc(start), _utc(end)
    end = max(end, start + timedelta(seconds=1))
    window = end - start
    # Reach back to a marked moment, but never squash the window for one long before it.
    lo = min([start, *(at for m in moments if m is not None
                       if start - window <= (at := _utc(m)) <= start)])
    pad = (end - lo) * 0.02
    return lo - pad, end + pad


def _panel(ax: Axes, s: Series) -> None:
    from matplotlib.ticker import FuncFormatter, MaxNLocator, PercentFormatter

    times = [_num(t) for t, _ in s.points]
    # NaN is a gap in the line: a missing reading, or one that is not a number at all.
    values = [v if v is not None and math.isfinite(v) else math.nan for _, v in s.points]
    ax.plot(times, values, color=s.color, linewidth=2.0, marker="o", markersize=3.5,
            solid_joinstyle="round", zorder=3)
    known = [v for v in values if not math.isnan(v)]
    top = max([*known, s.threshold or 0.0, 0.0])
    ax.set_ylim(0, top * 1.18 if top > 0 else (0.01 if s.unit == "rate" else 1.0))
    if s.threshold is not None:
        ax.axhline(s.threshold, color=RED, linewidth=1.6, linestyle=(0, (6, 3)), zorder=2)
        ax.annotate(f"threshold {value_text(s.threshold, s.unit)}",
                    xy=(1, s.threshold), xycoords=("axes fraction", "data"),
                    xytext=(-4, 3), textcoords="offset points", ha="right", va="bottom",
                    color=RED, fontsize=9, fontfamily=FONT, usetex=False, parse_math=False)
    if not known:
        ax.text(0.5, 0.5, "no data", transform=ax.transAxes, ha="center", va="center",
                color=INK, fontsize=11, fontfamily=FONT, usetex=False, parse_math=False)
    ax.set_title(s.title, loc="left", color=s.color, fontsize=11, fontweight="bold",
                 fontfamily=FONT, usetex=False, parse_math=False)
    ax.yaxis.set_major_locator(MaxNLocator(nbins=4, min_n_ticks=3))
    ax.yaxis.set_major_formatter(
        PercentFormatter(xmax=1.0) if s.unit == "rate"
        else FuncFormatter(lambda v, _pos: f"{v / 1000:,g} s") if top >= 10_000  # fits
        else FuncFormatter(lambda v, _pos: f"{v:,.0f} ms"))
    ax.grid(True, axis="both", color=GRID, linewidth=0.8, zorder=0)
    ax.set_facecolor("white")
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    ax.tick_params(labelsize=9, labelcolor=INK, labelfontfamily=FONT)


def _mark(ax: Axes, at: datetime, what: str, color: str, *, lo: datetime, hi: datetime,
          row: int | None) -> None:
    """A vertical line at ``at``; its label on label row ``row`` (None: no label)."""
    at = _utc(at)
    text = f"{what} {at:%H:%M} UTC" if at.date() in (lo.date(), hi.date()) \
        else f"{what} {at.day} {at:%b %H:%M} UTC"
    dy = -2 - 13 * (row or 0)
    if at < lo or at > hi:  # out of the range drawn: name it at the edge instead
        if row is not None:
            before = at < lo
            ax.annotate(("← " + text) if before else (text + " →"),
                        xy=(0 if before else 1, 1), xycoords="axes fraction",
                        xytext=(2 if before else -2, dy), textcoords="offset points",
                        ha="left" if before else "right", va="top", color=color, fontsize=9,
                        fontfamily=FONT, usetex=False, parse_math=False)
        return
    x = _num(at)
    ax.axvline(x, color=color, linewidth=1.8, zorder=2.5)
    if row is not None:
        right_half = (at - lo) > (hi - lo) / 2
        ax.annotate(text, xy=(x, 1), xycoords=("data", "axes fraction"),
                    xytext=(-4 if right_half else 4, dy), textcoords="offset points",
                    ha="right" if right_half else "left", va="top", color=color, fontsize=9,
                    fontweight="bold", fontfamily=FONT, usetex=False, parse_math=False,
                    bbox={"boxstyle": "square,pad=0.15", "facecolor": "white",
                          "edgecolor": "none", "alpha": 0.8})


def _time_axis(ax: Axes, lo: datetime, hi: datetime) -> None:
    from matplotlib import dates as mdates

    span = hi - lo
    locator = mdates.AutoDateLocator(tz=UTC, minticks=4, maxticks=8)  # type: ignore[no-untyped-call]
    locator.intervald[mdates.MINUTELY] = [1, 2, 5, 10, 15, 20, 30]  # a 10 min window: 2 min
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(mdates.DateFormatter(  # type: ignore[no-untyped-call]
        "%H:%M:%S" if span < timedelta(minutes=5) else "%H:%M", tz=UTC))
    days = sorted({lo.date(), hi.date()})
    day = " – ".join(f"{d.day} {d:%b %Y}" for d in days)
    ax.set_xlabel(f"time of day, UTC ({day})", fontsize=9, color=INK, fontfamily=FONT,
                  usetex=False, parse_math=False)
