"""Benchmark: the stability report's chart, matplotlib (``bot.aftercare.charts``, Agg) vs
the hand-written 5x7-pixel PNG renderer it replaced, interleaved in one process.

Run: ``.venv/bin/python bench/charts.py`` (default: 200 renders each, the product's default
window of 2 h every 5 min = 24 checks, plus 40 each of a dense day: 8,640 checks).
``--n 400 --dense-n 0`` for more of the default case only.

Prints p50/p95 ms per render and PNG bytes for each renderer, the ratios new/old, and the
first (cold) render's time and added RSS: the first chart imports matplotlib.
"""

from __future__ import annotations

import argparse
import random
import struct
import sys
import time
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import percentile, record  # noqa: E402
from tests.support.rss import status_kb  # noqa: E402

T0 = datetime(2026, 11, 29, 3, 0, tzinfo=UTC)


# =============================================================================================
# BASELINE ONLY: the old renderer (bot/aftercare/charts.py before issue 12: a hand-written
# 5x7-pixel font and Bresenham lines over zlib + struct), copied unchanged but for its names
# (prefixed "Old"/"old_"). Not product code: kept here only as the bench's baseline.
# =============================================================================================
RGB = tuple[int, int, int]
WHITE: RGB = (255, 255, 255)
GRID: RGB = (225, 225, 225)
INK: RGB = (60, 60, 60)
RED: RGB = (200, 40, 40)
BLUE: RGB = (30, 100, 200)
GREEN: RGB = (20, 140, 70)

# 5x7 glyphs: character, then seven rows as two hex digits (the low five bits are pixels).
_FONT_SPEC = (
    "00E11131519110E 1040C040404040E 20E11010204081F 31F02040201110E 402060A121F0202 "
    "51F101E0101110E 60608101E11110E 71F010204080808 80E11110E11110E 90E11110F01020C "
    "A0E11111F111111 B1E11111E11111E C0E11101010110E D1C12111111121C E1F10101E10101F "
    "F1F10101E101010 G0E11101711110F H1111111F111111 I0E04040404040E J0702020202120C "
    "K11121418141211 L1010101010101F M111B1515111111 N11111915131111 O0E11111111110E "
    "P1E11111E101010 Q0E11111115120D R1E11111E141211 S0F10100E01011E T1F040404040404 "
    "U1111111111110E V11111111110A04 W1111111515150A X11110A040A1111 Y1111110A040404 "
    "Z1F01020408101F .00000000000C0C %18190204081303 :000C0C000C0C00 -0000001F000000 "
    "/00010204081000 (02040808080402 )08040202020408 +0004041F040400"
)
FONT: dict[str, tuple[int, ...]] = {
    g[0]: tuple(int(g[i:i + 2], 16) for i in range(1, 15, 2)) for g in _FONT_SPEC.split()
}


@dataclass(frozen=True)
class OldSeries:
    title: str
    points: Sequence[tuple[float, float | None]]  # (seconds since window start, value)
    color: RGB = BLUE
    threshold: float | None = None


class OldCanvas:
    def __init__(self, width: int, height: int) -> None:
        self.width, self.height = width, height
        self.pixels = bytearray(WHITE * (width * height))

    def set(self, x: int, y: int, color: RGB) -> None:
        if 0 <= x < self.width and 0 <= y < self.height:
            i = (y * self.width + x) * 3
            self.pixels[i:i + 3] = bytes(color)

    def line(self, x0: int, y0: int, x1: int, y1: int, color: RGB, *, dash: int = 0) -> None:
        dx, dy = abs(x1 - x0), -abs(y1 - y0)
        sx, sy = (1 if x0 < x1 else -1), (1 if y0 < y1 else -1)
        err, step = dx + dy, 0
        while True:  # Bresenham
            if not dash or (step // dash) % 2 == 0:
                self.set(x0, y0, color)
            if x0 == x1 and y0 == y1:
                return
            step += 1
            e2 = 2 * err
            if e2 >= dy:
                err, x0 = err + dy, x0 + sx
            if e2 <= dx:
                err, y0 = err + dx, y0 + sy

    def text(self, x: int, y: int, text: str, color: RGB = INK) -> None:
        for ch in text.upper():
            for row, bits in enumerate(FONT.get(ch, (0,) * 7)):
                for col in range(5):
                    if bits & (0x10 >> col):
                        self.set(x + col, y + row, color)
            x += 6

    def png(self) -> bytes:
        rows = b"".join(b"\x00" + bytes(self.pixels[y * self.width * 3:(y + 1) * self.width * 3])
                        for y in range(self.height))

        def chunk(kind: bytes, data: bytes) -> bytes:
            return (struct.pack(">I", len(data)) + kind + data
                    + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

        header = struct.pack(">IIBBBBB", self.width, self.height, 8, 2, 0, 0, 0)
        return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
                + chunk(b"IDAT", zlib.compress(rows, 9)) + chunk(b"IEND", b""))


def label(value: float) -> str:
    if value >= 100:
        return f"{value:.0f}"
    return f"{value:.1f}" if value >= 1 or value == 0 else f"{value:.2f}"


def span_label(seconds: float) -> str:
    if seconds >= 3600:
        return f"{seconds / 3600:.1f}H"
    return f"{seconds / 60:.0f}M" if seconds >= 120 else f"{seconds:.0f}S"


def old_render_png(series: Sequence[OldSeries], *, width: int = 720, panel_height: int = 170,
               span_seconds: float | None = None) -> bytes:
    """Stacked line charts, one per series, sharing the x axis ``[0, span_seconds]``."""
    canvas = OldCanvas(width, panel_height * max(1, len(series)))
    span = span_seconds or max((t for s in series for t, _ in s.points), default=1.0) or 1.0
    for index, s in enumerate(series):
        _old_panel(canvas, s, top=index * panel_height, height=panel_height, span=span)
    return canvas.png()


def _old_panel(c: OldCanvas, s: OldSeries, *, top: int, height: int, span: float) -> None:
    left, right = 52, c.width - 12
    plot_top, plot_bottom = top + 20, top + height - 18
    c.text(left, top + 6, s.title, s.color)
    values = [v for _, v in s.points if v is not None]
    top_value = max(values, default=0.0)
    # A threshold far above the data would flatten the line; leave it off the scale then.
    shown = s.threshold if s.threshold is not None and (
        not values or s.threshold <= 2 * top_value) else None
    peak = max(top_value, shown or 0.0) * 1.15 or 1.0

    def y_of(v: float) -> int:
        return plot_bottom - round((plot_bottom - plot_top) * min(v, peak) / peak)

    def x_of(t: float) -> int:
        return left + round((right - left) * max(0.0, min(t, span)) / span)

    for frac in (0.0, 0.5, 1.0):
        y = y_of(peak * frac)
        c.line(left, y, right, y, GRID)
        c.text(4, y - 3, label(peak * frac))
    c.line(left, plot_top, left, plot_bottom, INK)
    c.line(left, plot_bottom, right, plot_bottom, INK)
    c.text(left, plot_bottom + 5, "0")
    end = span_label(span)
    c.text(right - 6 * len(end), plot_bottom + 5, end)
    if shown is not None:
        y = y_of(shown)
        c.line(left, y, right, y, RED, dash=4)
    previous: tuple[int, int] | None = None
    for t, v in s.points:
        if v is None:
            previous = None  # a gap: no data for this check
            continue
        point = (x_of(t), y_of(v))
        if previous is not None:
            c.line(*previous, *point, s.color)
        for dx in (-1, 0, 1):
            for dy in (-1, 0, 1):
                c.set(point[0] + dx, point[1] + dy, s.color)
        previous = point

def old_chart(samples: Sequence[tuple[datetime, float | None, float | None]],
              start: datetime, end: datetime, threshold: float, latency_ms: float) -> bytes:
    """BASELINE: the old ``bot.aftercare.monitoring.chart`` (seconds from the window start)."""
    def t(at: datetime) -> float:
        return (at - start).total_seconds()

    series = [OldSeries("Error rate (%)", [(t(at), None if r is None else r * 100)
                                           for at, r, _ in samples], BLUE,
                        threshold=threshold * 100),
              OldSeries("Latency (ms)", [(t(at), lat) for at, _, lat in samples], GREEN,
                        threshold=latency_ms)]
    return old_render_png(series, span_seconds=max((end - start).total_seconds(), 1.0))
# ===================================================================== end of the baseline


def new_chart(samples: Sequence[tuple[datetime, float | None, float | None]],
              start: datetime, end: datetime, threshold: float, latency_ms: float) -> bytes:
    """What ``bot.aftercare.monitoring.chart`` hands ``bot.aftercare.charts``."""
    from bot.aftercare import charts

    return charts.render_png(
        [charts.Series("Error rate", [(at, r) for at, r, _ in samples], "rate", charts.BLUE,
                       threshold=threshold),
         charts.Series("Latency", [(at, lat) for at, _, lat in samples], "ms", charts.GREEN,
                       threshold=latency_ms)],
        start=start, end=end, rolled_back_at=start - timedelta(minutes=2),
        title="hotel-voice-bot after RB-12")


def window(checks: int, every: timedelta, seed: int
           ) -> list[tuple[datetime, float | None, float | None]]:
    """A monitoring window's samples: noisy error rate and latency, one gap, one spike."""
    rng = random.Random(seed)
    out: list[tuple[datetime, float | None, float | None]] = []
    for i in range(1, checks + 1):
        rate = None if i == 3 else max(0.0, rng.gauss(0.004, 0.002))
        if i == checks // 3:
            rate = 0.031
        out.append((T0 + every * i, rate, max(5.0, rng.gauss(140, 40))))
    return out


def measure(name: str, samples: list[tuple[datetime, float | None, float | None]],
            every: timedelta, n: int, rounds: int) -> dict[str, object]:
    end = T0 + every * len(samples)
    args = (samples, T0, end, 0.05, 2000.0)
    times: dict[str, list[float]] = {"old": [], "new": []}
    size: dict[str, int] = {}
    per_round = max(1, n // rounds)
    for r in range(rounds):  # interleaved: old, new / new, old / ...
        order = (("old", old_chart), ("new", new_chart))
        for label, render in order if r % 2 == 0 else order[::-1]:
            for _ in range(per_round):
                started = time.perf_counter()
                data = render(*args)
                times[label].append((time.perf_counter() - started) * 1000)
                size[label] = len(data)
    print(f"\n{name}: {len(samples)} checks, {per_round * rounds} renders each, "
          f"{rounds} interleaved rounds")
    print(f"{'renderer':<34} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8} {'bytes':>8}")
    for label, title in (("old", "old: hand-written 5x7 (baseline)"),
                         ("new", "new: matplotlib Agg")):
        v = times[label]
        print(f"{title:<34} {percentile(v, 50):8.2f} {percentile(v, 95):8.2f} "
              f"{max(v):8.2f} {size[label]:8d}")
    print(f"ratio new/old: p50 {percentile(times['new'], 50) / percentile(times['old'], 50):.2f}"
          f", p95 {percentile(times['new'], 95) / percentile(times['old'], 95):.2f}, "
          f"bytes {size['new'] / size['old']:.2f}; new under 150 KB: "
          f"{size['new'] < 150 * 1024}")
    new = times["new"]
    p50, p95 = percentile(new, 50), percentile(new, 95)
    return {"what": f"stability chart, {name}: matplotlib vs the old hand-written renderer",
            "result": f"p50 {p50:.0f} ms, p95 {p95:.0f} ms (p50 ratio "
                      f"{p50 / percentile(times['old'], 50):.1f}), {size['new']:,} bytes",
            "target": "PNG < 150 KB, p95 < 1 s",
            "ok": size["new"] < 150 * 1024 and p95 < 1000}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200, help="renders each, default window")
    parser.add_argument("--dense-n", type=int, default=40, help="renders each, dense day")
    parser.add_argument("--rounds", type=int, default=10)
    opts = parser.parse_args()

    rss_before = status_kb("VmRSS")
    started = time.perf_counter()  # cold: the first chart imports matplotlib, numpy, fonts
    new_chart(window(24, timedelta(minutes=5), 1), T0, T0 + timedelta(hours=2), 0.05, 2000.0)
    first = time.perf_counter() - started
    print(f"first render, cold (imports matplotlib): {first * 1000:.0f} ms; "
          f"RSS +{(status_kb('VmRSS') - rss_before) / 1024:.1f} MiB")
    rows = [measure("default window (2 h, every 5 min)", window(24, timedelta(minutes=5), 2),
                    timedelta(minutes=5), opts.n, opts.rounds)]
    if opts.dense_n:
        rows.append(measure("dense day (24 h, every 10 s)",
                            window(8640, timedelta(seconds=10), 3), timedelta(seconds=10),
                            opts.dense_n, min(opts.rounds, opts.dense_n)))
    return 0 if record("charts", rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
