"""The stability chart (``bot.aftercare.charts``, matplotlib on Agg): a PNG decoded with
Pillow (matplotlib's own dependency) and held to its pixel size, its byte budget, the colours
of what it marks inside each panel's plot area, times of day in UTC on the x axis, a rate in
% and a latency in ms, no metadata, the same bytes from any thread or environment."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest
from matplotlib.figure import Figure
from matplotlib.text import Annotation
from PIL import Image

from bot.aftercare import charts, monitoring
from bot.persistence.aftercare_store import Monitor, Sample
from sandbox.config import parse_sandbox_config, sandbox_config_dict

REPO_ROOT = Path(__file__).resolve().parents[2]
T0 = datetime(2026, 11, 29, 3, 0, tzinfo=UTC)
PLUS2 = timezone(timedelta(hours=2))  # how a database in another time zone hands times back
END = T0 + timedelta(hours=2)
ROLLED_BACK = T0 - timedelta(minutes=3)
BAD_DEPLOY = T0 - timedelta(minutes=40)


def _series(n: int = 24, *, step: timedelta = timedelta(minutes=5)) -> list[charts.Series]:
    times = [T0 + step * i for i in range(1, n + 1)]
    rates = [None if i == 4 else (0.031 if i == 7 else 0.004) for i in range(1, n + 1)]
    return [charts.Series("Error rate", list(zip(times, rates, strict=True)), "rate",
                          charts.BLUE, threshold=0.05),
            charts.Series("Latency", [(t, 120.0 + 30 * (i % 5)) for i, t in enumerate(times)],
                          "ms", charts.GREEN, threshold=2000)]


def _figure(*, rolled_back_at: datetime = ROLLED_BACK,
            bad_deploy_at: datetime | None = None) -> Figure:
    return charts.figure(_series(), start=T0, end=END, rolled_back_at=rolled_back_at,
                         bad_deploy_at=bad_deploy_at)


def _decode(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as img:
        assert img.format == "PNG"
        return np.asarray(img.convert("RGB"))


def _rgb(color: str) -> np.ndarray:
    return np.array([int(color[i:i + 2], 16) for i in (1, 3, 5)])


def _pixels(pixels: np.ndarray, fig: Figure, panel: int, color: str, tol: int = 6) -> int:
    """Pixels of ``color`` (within ``tol`` per channel) inside panel ``panel``'s plot area."""
    box = fig.axes[panel].get_window_extent()  # display pixels, origin bottom left
    height = pixels.shape[0]
    area = pixels[height - int(box.y1):height - int(box.y0), int(box.x0):int(box.x1)]
    near = np.all(np.abs(area.astype(int) - _rgb(color)) <= tol, axis=-1)
    return int(near.sum())


def _texts(fig: Figure) -> list[str]:
    return [a.get_text() for ax in fig.axes for a in ax.texts if isinstance(a, Annotation)]


def test_png_decodes_to_its_size_within_the_byte_budget_without_metadata() -> None:
    data = charts.png(_figure(bad_deploy_at=BAD_DEPLOY))
    pixels = _decode(data)
    # 8 x (2 panels x 2.3 + 0.9) inches at 100 dpi
    assert pixels.shape == (550, 800, 3)
    assert len(data) < charts.MAX_PNG_BYTES == 150 * 1024
    assert b"tEXt" not in data and b"atplotlib" not in data and b"tIME" not in data
    assert charts.png(_figure(bad_deploy_at=BAD_DEPLOY)) == data  # deterministic


def test_a_long_noisy_window_stays_within_the_byte_budget() -> None:
    """A day of checks every 10 s, every value different: the worst case for PNG size."""
    rng = np.random.default_rng(7)
    times = [T0 + timedelta(seconds=10 * i) for i in range(1, 8641)]
    series = [charts.Series("Error rate", [(t, float(v)) for t, v in
                                           zip(times, rng.uniform(0, 0.06, 8640), strict=True)],
                            "rate", charts.BLUE, threshold=0.05),
              charts.Series("Latency", [(t, float(v)) for t, v in
                                        zip(times, rng.uniform(20, 2500, 8640), strict=True)],
                            "ms", charts.GREEN, threshold=2000)]
    data = charts.render_png(series, start=T0, end=T0 + timedelta(days=1),
                             rolled_back_at=ROLLED_BACK, bad_deploy_at=BAD_DEPLOY)
    assert _decode(data).shape == (550, 800, 3)
    assert len(data) < charts.MAX_PNG_BYTES


def test_series_thresholds_and_the_rollback_are_drawn_in_each_plot_area() -> None:
    fig = _figure()
    pixels = _decode(charts.png(fig))
    rate, latency = 0, 1
    assert _pixels(pixels, fig, rate, charts.BLUE) > 200      # the error rate's line
    assert _pixels(pixels, fig, latency, charts.GREEN) > 200  # the latency's line
    assert _pixels(pixels, fig, latency, charts.BLUE) == 0    # each series in its own panel
    assert _pixels(pixels, fig, rate, charts.GREEN) == 0
    for panel in (rate, latency):
        assert _pixels(pixels, fig, panel, charts.RED) > 300     # the dashed threshold
        assert _pixels(pixels, fig, panel, charts.PURPLE) > 150  # the rollback's line
        assert _pixels(pixels, fig, panel, charts.ORANGE) == 0   # no bad deploy given
    texts = _texts(fig)
    assert "threshold 5.00%" in texts and "threshold 2,000 ms" in texts
    assert "rolled back 02:57 UTC" in texts


def test_the_bad_deploy_is_marked_when_given() -> None:
    fig = _figure(bad_deploy_at=BAD_DEPLOY.astimezone(PLUS2))
    pixels = _decode(charts.png(fig))
    for panel in (0, 1):
        assert _pixels(pixels, fig, panel, charts.ORANGE) > 150
        assert _pixels(pixels, fig, panel, charts.PURPLE) > 150
    assert "bad deploy 02:20 UTC" in _texts(fig)


def test_the_x_axis_shows_times_of_day_in_utc() -> None:
    # The same window handed over in UTC+2 (05:00-07:00 local) is drawn 03:00-05:00 UTC.
    fig = charts.figure(_series(), start=T0.astimezone(PLUS2), end=END.astimezone(PLUS2),
                        rolled_back_at=ROLLED_BACK.astimezone(PLUS2))
    labels = charts.time_labels(fig)
    assert labels == ["03:00", "03:20", "03:40", "04:00", "04:20", "04:40", "05:00"]
    assert fig.axes[-1].get_xlabel() == "time of day, UTC (29 Nov 2026)"
    short = charts.figure(_series(4, step=timedelta(seconds=15)), start=T0,
                          end=T0 + timedelta(minutes=1), rolled_back_at=T0)
    assert all(re.fullmatch(r"03:0[01]:\d\d", t) for t in charts.time_labels(short))


def test_error_rate_in_percent_and_latency_in_ms() -> None:
    fig = _figure()
    fig.canvas.draw()
    rate = [t.get_text() for t in fig.axes[0].get_yticklabels() if t.get_text()]
    latency = [t.get_text() for t in fig.axes[1].get_yticklabels() if t.get_text()]
    assert len(rate) >= 3 and all(re.fullmatch(r"\d+(\.\d+)?%", t) for t in rate), rate
    assert fig.axes[0].get_ylim()[1] > 0.05  # the threshold is on the scale, data as fractions
    assert len(latency) >= 3 and all(re.fullmatch(r"[\d,]+ ms", t) for t in latency), latency
    assert [ax.get_title(loc="left") for ax in fig.axes] == ["Error rate", "Latency"]


def test_long_latencies_switch_to_seconds_and_every_label_fits() -> None:
    slow = charts.Series("Latency", [(T0 + timedelta(minutes=i), 15_000.0 * i)
                                     for i in range(1, 11)], "ms", charts.GREEN, threshold=2000)
    fig = charts.figure([slow], start=T0, end=T0 + timedelta(minutes=10), rolled_back_at=T0)
    fig.canvas.draw()
    labels = [t for t in fig.axes[0].get_yticklabels() if t.get_text()]
    assert [t.get_text() for t in labels] == ["0 s", "50 s", "100 s", "150 s", "200 s"]
    width = fig.bbox.width
    texts = [*labels, *fig.axes[0].get_xticklabels(), *fig.axes[0].texts]
    assert all(0 <= t.get_window_extent().x0 and t.get_window_extent().x1 <= width
               for t in texts if t.get_text())


def test_a_missing_reading_is_a_gap_and_an_empty_panel_says_no_data() -> None:
    fig = _figure()
    line = fig.axes[0].get_lines()[0]
    assert np.isnan(np.asarray(line.get_ydata(), dtype=float)[3])  # the 4th check had no data
    odd = charts.Series("Latency", [(T0 + timedelta(minutes=1), float("inf")),
                                    (T0 + timedelta(minutes=2), 80.0)], "ms", charts.GREEN)
    assert len(charts.render_png([odd], start=T0, end=END, rolled_back_at=T0)) > 0
    empty = charts.figure([charts.Series("Latency", [], "ms", charts.GREEN, threshold=2000)],
                          start=T0, end=END, rolled_back_at=ROLLED_BACK)
    assert "no data" in [t.get_text() for t in empty.axes[0].texts]
    assert _decode(charts.png(empty)).shape == (320, 800, 3)


def test_a_rollback_long_before_the_window_is_named_at_the_edge_not_drawn() -> None:
    fig = _figure(rolled_back_at=T0 - timedelta(days=2))
    pixels = _decode(charts.png(fig))
    assert "← rolled back 27 Nov 03:00 UTC" in _texts(fig)
    assert _pixels(pixels, fig, 1, charts.PURPLE) == 0  # no line; the label is in panel 0
    assert charts.time_labels(fig)[0] == "03:00"  # the window is not squashed


def test_renders_from_worker_threads_give_the_same_bytes() -> None:
    expected = charts.render_png(_series(), start=T0, end=END, rolled_back_at=ROLLED_BACK)
    results: list[bytes] = []
    errors: list[BaseException] = []

    def render() -> None:
        try:
            results.append(charts.render_png(_series(), start=T0, end=END,
                                             rolled_back_at=ROLLED_BACK))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=render) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors and len(results) == 6
    assert all(r == expected for r in results)


def test_the_environment_does_not_choose_the_backend_or_the_fonts(tmp_path: Path) -> None:
    """A GUI backend and other fonts in the environment change nothing, and pyplot (global
    state) is never imported; matplotlib is loaded by the first chart, not at startup."""
    rc = tmp_path / "matplotlibrc"
    rc.write_text("backend: GTK4Agg\nfont.family: serif\nfont.size: 20\n")
    script = (
        "import sys\n"
        "import bot.runtime.app\n"
        "assert 'matplotlib' not in sys.modules, 'imported at startup'\n"
        "from tests.unit.test_charts import ROLLED_BACK, T0, END, _series\n"
        "from bot.aftercare import charts\n"
        "sys.stdout.buffer.write(charts.render_png(_series(), start=T0, end=END,"
        " rolled_back_at=ROLLED_BACK))\n"
        "assert 'matplotlib.pyplot' not in sys.modules\n")
    env = {**os.environ, "MPLBACKEND": "GTK4Agg", "MATPLOTLIBRC": str(rc),
           "MPLCONFIGDIR": str(tmp_path / "config")}
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO_ROOT, env=env,
                          capture_output=True, timeout=120)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    assert done.stdout == charts.render_png(_series(), start=T0, end=END,
                                            rolled_back_at=ROLLED_BACK)


@pytest.mark.parametrize("with_prometheus", [True, False])
def test_the_stability_chart_of_a_monitoring_window(with_prometheus: bool) -> None:
    config = parse_sandbox_config(sandbox_config_dict(
        demo_url="http://demo", prometheus_url="http://prom",
        monitoring={"duration_seconds": 600, "interval_seconds": 300}))
    svc = config.services["hotel-voice-bot"]
    if not with_prometheus:
        svc = svc.model_copy(update={"prometheus": None})
    m = Monitor(1, 12, "k", T0.astimezone(PLUS2), (T0 + timedelta(minutes=10)).astimezone(PLUS2),
                300, "stable", None, {})
    samples = [Sample(seq, T0 + timedelta(minutes=5 * seq), 0.002, True, "HTTP 200", 40.0 + seq)
               for seq in (1, 2)]
    data = monitoring.chart(svc, m, samples, rolled_back_at=T0 - timedelta(seconds=30),
                            title="hotel-voice-bot after RB-12")
    assert _decode(data).shape == ((550 if with_prometheus else 320), 800, 3)
    assert len(data) < charts.MAX_PNG_BYTES
