"""Headless Chromium for the console tests: Playwright's Python driver on the system browser.

Nothing is downloaded: `pip install playwright` brings only the driver, and the browser
is Debian's `chromium` (/usr/bin/chromium, or $CHROMIUM_PATH). Without them the tests
skip locally and fail under CI (env `CI` set), where the browser must be installed.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
VIEWPORT: Any = {"width": 1440, "height": 900}  # playwright's ViewportSize


def _unavailable(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"browser test cannot run in CI: {reason}", pytrace=False)
    pytest.skip(reason)


def require_browser() -> None:
    """Skip (fail under CI) unless Playwright's driver and a Chromium binary are present."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        _unavailable("playwright is not installed (pip install playwright; no browser download)")
    if not (Path(CHROMIUM).is_file() and os.access(CHROMIUM, os.X_OK)):
        _unavailable(f"no Chromium at {CHROMIUM} (apt-get install chromium)")


@contextmanager
def chromium_page(tmp_path: Path) -> Iterator[Any]:
    """A page in a fresh headless Chromium with an empty profile; JS errors fail the test."""
    require_browser()
    from playwright.sync_api import sync_playwright

    profile = tmp_path / "chromium-profile"
    profile.mkdir()
    errors: list[str] = []
    with sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(profile), executable_path=CHROMIUM, headless=True, args=FLAGS,
            viewport=VIEWPORT, timezone_id="UTC", locale="en-US",
        )  # fmt: skip
        try:
            page = context.pages[0] if context.pages else context.new_page()
            page.set_default_timeout(15_000)
            page.on("pageerror", lambda exc: errors.append(f"page error: {exc}"))
            page.on("console", lambda msg: errors.append(f"console.{msg.type}: {msg.text}")
                    if msg.type == "error" else None)  # fmt: skip
            yield page
        finally:
            context.close()
    assert not errors, "the console page logged errors:\n" + "\n".join(errors)


def screenshot(page: Any, tmp_path: Path, name: str = "console.png",
               copy_to: str | None = "/tmp/console-screenshot.png") -> Path:
    """Save a full-page screenshot under the test's tmp dir (and a copy for humans)."""
    path = tmp_path / name
    page.screenshot(path=str(path), full_page=True)
    if copy_to:
        try:
            shutil.copyfile(path, copy_to)
        except OSError:
            pass  # the copy is a convenience only
    return path
