"""A refused file upload never holds a rollback: decorations (the stability report's chart)
are retried a bounded number of times, then the rollback completes without them and the
thread says what could not be posted.

Through the wire with the injected clock: the Slack emulator accepts
``files.getUploadURLExternal`` and then refuses the upload POST itself (HTTP 500), the way
files.slack.com does, while the monitoring window's last tick decides "stable".
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from bot.aftercare.coordinator import DECORATION_ATTEMPTS
from handlers import ids
from sandbox.demo import DemoService
from tests.e2e.conftest import Harness, action_ids
from tests.e2e.conftest import make_harness as make_harness  # noqa: F401  (fixture)


@pytest.fixture
def demo() -> Iterator[DemoService]:
    with DemoService(version_source="1.2.0") as service:
        yield service


def _monitored(make_harness: Callable[..., Harness], demo: DemoService, tmp: Path
               ) -> tuple[Harness, int, dict[str, Any], int]:
    """A P1 rollback in its monitoring window, one tick before the window decides."""
    def change(data: dict[str, Any]) -> None:
        svc = data["services"]["hotel-voice-bot"]
        svc["health"] = {"url": f"{demo.url}/api/health", "timeout_seconds": 2, "samples": 3}
        svc["monitoring"] = {"duration_seconds": 600, "interval_seconds": 300}
        data["aftercare"] = {"postmortem_dir": str(tmp / "post-mortems")}

    h = make_harness(config_overrides=change)
    h.request('hotel-voice-bot --severity P1 --reason "5xx after v1.3.0"')
    msg = h.rollback_message()
    rid = int(msg["text"].split()[0].removeprefix("RB-"))
    h.click(msg, ids.ASSIGN_IC, "carol")
    h.emulator.wait_for(lambda: ids.ASSIGN_IC not in action_ids(h.message_now(msg["ts"])))
    h.click(msg, ids.APPROVE, "bob")
    h.wait_state(rid, "monitoring")
    h.clock.advance(minutes=5)
    h.tick()  # check 1 of 2
    h.clock.advance(minutes=5)
    # The request's log tail is uploaded too; count only what the window's end uploads.
    h.emulator.wait_for(lambda: any("-logs-" in f["name"] for f in h.emulator.files()))
    return h, rid, msg, len(h.emulator.calls("upload"))


def _uploads(h: Harness, before: int) -> list[bool]:
    return [c.ok for c in h.emulator.calls("upload")[before:]]


def _charts_announced(h: Harness) -> list[Any]:
    return [c for c in h.emulator.calls("files.getUploadURLExternal")
            if str(c.params.get("filename", "")).startswith("stability-")]


def _thread(h: Harness, msg: dict[str, Any]) -> str:
    return "\n".join(h.thread_texts(msg))


def test_a_refused_chart_upload_is_given_up_after_bounded_retries_and_the_rollback_completes(
        make_harness: Callable[..., Harness], demo: DemoService, tmp_path: Path) -> None:
    h, rid, msg, before = _monitored(make_harness, demo, tmp_path)
    h.emulator.fail_upload(times=DECORATION_ATTEMPTS)  # Slack refuses the file every time
    h.tick()  # the window's last check decides "stable"; the chart upload is refused
    assert "Stability report" in _thread(h, msg)
    assert h.bot.store.get(rid).state.value == "monitoring"
    assert _uploads(h, before) == [False]
    delay = 2
    for attempt in range(2, DECORATION_ATTEMPTS + 1):
        h.clock.advance(seconds=delay - 1)
        h.tick()
        assert len(_uploads(h, before)) == attempt - 1  # the backoff is honoured
        h.clock.advance(seconds=1)
        h.tick()
        assert len(_uploads(h, before)) == attempt
        delay *= 2
    assert h.wait_state(rid, "completed")
    assert _uploads(h, before) == [False] * DECORATION_ATTEMPTS  # bounded: then no more tries
    announced = _charts_announced(h)
    assert len(announced) == DECORATION_ATTEMPTS and all(c.ok for c in announced)
    note = h.emulator.wait_for(lambda: next(
        (t for t in h.thread_texts(msg) if "could not post the stability chart" in t), None))
    assert f"after {DECORATION_ATTEMPTS} attempts" in note and f"RB-{rid} goes on" in note
    h.emulator.wait_for(lambda: f"RB-{rid} completed" in _thread(h, msg))
    assert not any(f["name"].startswith("stability-") and f.get("channels")
                   for f in h.emulator.files())  # nothing half-shared
    h.clock.advance(minutes=10)
    h.tick()  # uploads work again now (the reminders' post-mortem skeleton)
    assert len(_charts_announced(h)) == DECORATION_ATTEMPTS  # the chart does not come back
    assert _thread(h, msg).count("could not post the stability chart") == 1
    assert "Completed" in str(h.message_now(msg["ts"])["blocks"])


def test_a_refused_upload_that_succeeds_on_retry_posts_the_chart(
        make_harness: Callable[..., Harness], demo: DemoService, tmp_path: Path) -> None:
    h, rid, msg, before = _monitored(make_harness, demo, tmp_path)
    h.emulator.fail_upload(times=1)
    h.tick()
    assert h.bot.store.get(rid).state.value == "monitoring"
    h.clock.advance(seconds=2)
    h.tick()
    assert h.wait_state(rid, "completed")
    assert _uploads(h, before) == [False, True]
    chart = next(f for f in h.emulator.files()
                 if f["name"] == f"stability-RB-{rid}-1.png" and f.get("channels"))
    assert h.emulator.file_content(chart["id"]).startswith(b"\x89PNG")
    assert "could not post" not in _thread(h, msg)
