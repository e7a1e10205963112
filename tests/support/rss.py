"""Peak resident memory of this process, for tests that bound how much a request may cost."""

from __future__ import annotations

from pathlib import Path

import pytest


def peak_rss_kb() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM in /proc/self/status")


def reset_peak_rss() -> None:
    """Linux >= 4.0: writing "5" resets the peak RSS to the current RSS. Without it the
    growth would be measured against an older, higher peak and could never fail."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError as exc:
        pytest.fail(f"cannot reset the peak RSS through /proc/self/clear_refs: {exc}")
