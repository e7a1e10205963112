"""Peak resident memory of a process (this one by default), for tests that bound how much a
request may cost and for bench/hostile.py, which measures its server subprocesses."""

from __future__ import annotations

from pathlib import Path

import pytest


def status_kb(key: str, pid: int | str = "self") -> int:
    """A ``kB`` field of ``/proc/<pid>/status`` (``VmHWM``: peak RSS, ``VmRSS``: RSS now)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {key} in /proc/{pid}/status")


def peak_rss_kb(pid: int | str = "self") -> int:
    return status_kb("VmHWM", pid)


def clear_peak_rss(pid: int | str = "self") -> None:
    """Linux >= 4.0: writing "5" resets the peak RSS to the current RSS (OSError if not)."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")


def reset_peak_rss() -> None:
    """Reset this process's peak. Without it the growth would be measured against an
    older, higher peak and could never fail."""
    try:
        clear_peak_rss()
    except OSError as exc:
        pytest.fail(f"cannot reset the peak RSS through /proc/self/clear_refs: {exc}")
