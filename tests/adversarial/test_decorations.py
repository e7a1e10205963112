"""A refused file upload never holds a rollback: decorations (the stability report's chart)
are retried a bounded number of times, then the rollback completes without them and the
thread says what could not be posted. The same for a refused regression alert (the
rollback is ``unstable`` before the alert is posted) and for the post-mortem skeleton (a
refused upload never stops the reminder series).

Through the wire with the injected clock: the Slack emulator accepts
``files.getUploadURLExternal`` and then refuses the upload POST itself (HTTP 500), the way
files.slack.com does, while the monitoring window's last tick decides "stable".
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from bot.aftercare.coordinator import DECORATION_ATTEMPTS
from bot.aftercare.reminders import REMINDER_JOB
from bot.persistence.aftercare_store import AftercareStore, Reminder
from sandbox.demo import DemoService
from tests.e2e.conftest import CHANNEL, Harness
from tests.e2e.conftest import make_harness as make_harness  # noqa: F401  (fixture)
from tests.e2e.test_aftercare import _wait_reminders_scheduled


def _approved(make_harness: Callable[..., Harness], demo: DemoService, postmortem_dir: Path,
              **monitoring: Any) -> tuple[Harness, int, dict[str, Any]]:
    """A P1 rollback of the demo service, approved (carol is its incident commander)."""
    def change(data: dict[str, Any]) -> None:
        svc = data["services"]["hotel-voice-bot"]
        svc["health"] = {"url": f"{demo.url}/api/health", "timeout_seconds": 2, "samples": 3}
        svc["monitoring"] = {"duration_seconds": 600, "interval_seconds": 300, **monitoring}
        data["aftercare"] = {"postmortem_dir": str(postmortem_dir)}

    h = make_harness(config_overrides=change)
    rid, msg = h.request_and_approve_p1()
    return h, rid, msg


def _monitored(make_harness: Callable[..., Harness], demo: DemoService, tmp: Path,
               **monitoring: Any) -> tuple[Harness, int, dict[str, Any], int]:
    """A P1 rollback in its monitoring window, one tick before the window decides."""
    h, rid, msg = _approved(make_harness, demo, tmp / "post-mortems", **monitoring)
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


def test_a_refused_regression_alert_never_keeps_the_rollback_monitoring(
        make_harness: Callable[..., Harness], demo: DemoService, tmp_path: Path) -> None:
    h, rid, msg, _ = _monitored(make_harness, demo, tmp_path, consecutive_health_failures=1)
    demo.break_()  # health answers 503: check 2 is a regression
    posts = len(h.emulator.calls("chat.postMessage"))
    # Slack refuses the alert on every attempt the bot makes. An API error is HTTP 200 with
    # {"ok": false, "error": ...}; internal_error is one chat.postMessage documents
    # (https://api.slack.com/methods/chat.postMessage#errors).
    h.emulator.fail_next("chat.postMessage", "internal_error", times=DECORATION_ATTEMPTS)
    h.tick()
    assert h.bot.store.get(rid).state.value == "unstable"  # the transition came first
    delay = 2
    for _attempt in range(2, DECORATION_ATTEMPTS + 1):  # the tick's retries, with backoff
        h.clock.advance(seconds=delay)
        h.tick()
        delay *= 2
    refused = [c for c in h.emulator.calls("chat.postMessage")[posts:] if not c.ok]
    assert len(refused) == DECORATION_ATTEMPTS  # bounded
    assert all("is unstable after the rollback" in str(c.params.get("text")) for c in refused)
    assert h.bot.store.get(rid).state.value == "unstable"
    note = str(h.emulator.wait_for(lambda: next(
        (t for t in h.thread_texts(msg) if "could not post the regression alert" in t), None)))
    assert f"after {DECORATION_ATTEMPTS} attempts" in note and f"RB-{rid} goes on" in note
    assert "is unstable after the rollback" not in _thread(h, msg)
    assert not h.bot.service.jobs.pending(rollback_id=rid, kinds=["monitor_tick"])
    assert h.bot.service.jobs.pending(rollback_id=rid, kinds=[REMINDER_JOB])  # it went on
    h.clock.advance(minutes=10)
    h.tick()  # nothing retries the alert, nothing moves the rollback back
    assert len([c for c in h.emulator.calls("chat.postMessage")[posts:]
                if "is unstable after the rollback" in str(c.params.get("text"))]) \
        == DECORATION_ATTEMPTS
    assert _thread(h, msg).count("could not post the regression alert") == 1
    assert h.bot.store.get(rid).state.value == "unstable"


def _completed(make_harness: Callable[..., Harness], demo: DemoService, postmortem_dir: Path
               ) -> tuple[Harness, int, dict[str, Any], int, Reminder]:
    """A completed P1 rollback (no monitoring window) whose reminders are scheduled and not
    yet posted; returns the upload count so far and its post-mortem reminder."""
    h, rid, msg = _approved(make_harness, demo, postmortem_dir, duration_seconds=0)
    h.wait_state(rid, "completed")
    _wait_reminders_scheduled(h, rid)
    h.emulator.wait_for(lambda: any("-logs-" in f["name"] for f in h.emulator.files()))
    pm = next(r for r in AftercareStore(h.bot.store.pool).reminders(rid)
              if r.kind == "postmortem")
    return h, rid, msg, len(h.emulator.calls("upload")), pm


def _scheduled(h: Harness, rid: int, reminder: Reminder) -> list[tuple[int, Any]]:
    """(seq, due) of the reminder's postings still to come."""
    return [(int(j.payload["seq"]), j.due_at)
            for j in h.bot.service.jobs.pending(rollback_id=rid, kinds=[REMINDER_JOB])
            if j.payload["reminder"] == reminder.id]


def _posted(h: Harness, msg: dict[str, Any], needle: str) -> list[str]:
    return [str(m.get("text")) + str(m.get("blocks"))
            for m in h.emulator.thread(CHANNEL, msg["ts"]) if needle in str(m.get("text"))]


def _second_reminder_posts(h: Harness, rid: int, msg: dict[str, Any], pm: Reminder) -> None:
    h.clock.advance(seconds=(pm.due_at - h.clock()).total_seconds())  # the deadline
    h.tick()
    assert _posted(h, msg, f"Reminder: Post-mortem for RB-{rid}")
    assert [seq for seq, _ in _scheduled(h, rid, pm)] == [3]  # and the series goes on


def test_a_refused_skeleton_upload_never_stops_the_post_mortem_reminders(
        make_harness: Callable[..., Harness], demo: DemoService, tmp_path: Path) -> None:
    h, rid, msg, before, pm = _completed(make_harness, demo, tmp_path / "post-mortems")
    h.emulator.fail_upload(times=1)  # files.slack.com refuses the skeleton (HTTP 500)
    h.tick()  # the review and post-mortem reminders post; the skeleton's upload is refused
    assert _uploads(h, before) == [False, True]  # the skeleton refused; the meeting's .ics
    assert _posted(h, msg, f"Post-mortem for RB-{rid}")
    [note] = _posted(h, msg, "could not upload the post-mortem skeleton")
    assert f"for RB-{rid}" in note
    assert _scheduled(h, rid, pm) == [(2, pm.due_at)]  # the first is done, the next is due
    _second_reminder_posts(h, rid, msg, pm)
    assert _uploads(h, before) == [False, True]  # only the first posting carries files
    assert len(_posted(h, msg, "could not upload the post-mortem skeleton")) == 1


def test_a_skeleton_that_cannot_be_written_never_stops_the_post_mortem_reminders(
        make_harness: Callable[..., Harness], demo: DemoService, tmp_path: Path) -> None:
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where the post-mortem folder's parent should be")
    h, rid, msg, before, pm = _completed(make_harness, demo, blocked / "post-mortems")
    h.tick()
    [first] = _posted(h, msg, f"Post-mortem for RB-{rid}")
    assert "attached as" not in first  # no skeleton, and it does not claim one
    assert _uploads(h, before) == [True]  # only the meeting's .ics
    assert any(f["name"] == f"postmortem-meeting-RB-{rid}.ics" for f in h.emulator.files())
    assert _scheduled(h, rid, pm) == [(2, pm.due_at)]
    _second_reminder_posts(h, rid, msg, pm)
