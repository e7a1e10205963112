"""`python -m sandbox drill` scripts the whole incident and fails loudly when a stage
does not happen; `--scenario watcher` has the release watcher propose the rollback first."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import httpx
import pytest

from sandbox.drill import CHANNEL, Drill, DrillFailed, WatcherDrill, run_drill
from sandbox.kube_seed import DEPLOYMENT, NAMESPACE
from sandbox.slack import Call, Event, SlackEmulator

REPO_ROOT = Path(__file__).resolve().parents[2]  # the sandbox runs from a checkout


def test_drill_runs_the_whole_incident(tmp_path: Path) -> None:
    # The drill's temporary directory goes here, and must go away. A short path: PostgreSQL's
    # socket lives under it, and a Unix socket path has ~107 bytes at most.
    temp = Path(tempfile.mkdtemp(prefix="drl-"))
    env = {**os.environ, "ROLLBACK_DATA_DIR": str(tmp_path / "data"), "TMPDIR": str(temp)}
    env.pop("DATABASE_URL", None)  # the drill starts its own embedded PostgreSQL
    try:
        done = subprocess.run([sys.executable, "-m", "sandbox", "drill"], env=env,
                              cwd=REPO_ROOT, capture_output=True, text=True, timeout=240)
        # All but pgserver's lock file (platformdirs' runtime dir: $TMPDIR/runtime-<uid>
        # without XDG_RUNTIME_DIR), which every embedded server on the machine shares.
        left = sorted(str(p.relative_to(temp)) for p in temp.rglob("*")
                      if not p.relative_to(temp).parts[0].startswith("runtime-"))
    finally:
        shutil.rmtree(temp, ignore_errors=True)
    out = done.stdout
    assert done.returncode == 0, out + done.stderr[-3000:]
    for stage in ("demo /api/health answers 503", "assessment and pinned plan posted",
                  "bob, an approver, cannot approve his own request (four-eyes rule",
                  "carol, another approver: approved", "deployment runs 1.3.0",
                  "/api/health answers 200", "verification passed",
                  "'Rollback Completed'", "stability report with a chart",
                  "post-mortem skeleton attached", "the review reminder comes back"):
        assert f"✓ {stage}" in out or stage in out, (stage, out)
    assert "Drill passed" in out and "✗" not in out
    # Nothing left behind: no drill directory, no PostgreSQL cluster, no postgres running.
    assert left == [], left[:20]
    assert not (tmp_path / "data" / "pgdata").exists()


def test_drill_shows_the_four_eyes_refusal_not_the_non_approver_one(
        db: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The requester is an approver, so only the four-eyes rule can refuse his approval;
    the stage passes on that refusal and on the rollback still waiting for approval."""
    monkeypatch.setenv("DATABASE_URL", db)
    lines: list[str] = []
    drill = Drill(out=lines.append)
    em = drill.world.stack.emulator
    try:
        drill.world.kube.pause(NAMESPACE, DEPLOYMENT)  # stop after the approvals
        with pytest.raises(DrillFailed):
            drill.run()
        bob = " ".join(str(e.get("text")) for e in em.ephemerals(user="bob"))
        assert "Four-eyes rule: you requested RB-1, so someone else must approve it" in bob
        assert "Only approvers" not in bob
        bot = drill.world.stack.bot
        assert bot is not None
        rb = bot.store.get(1)
        assert (rb.requester, rb.approver) == (em.user_id("bob"), em.user_id("carol")), rb
    finally:
        drill.close()
    assert not drill.directory.exists()
    stages = [line for line in lines if "✓" in line]
    assert any("bob, an approver, cannot approve his own request" in s for s in stages), lines


def test_drill_exits_non_zero_when_a_stage_does_not_happen() -> None:
    lines: list[str] = []
    drill = Drill(out=lines.append, patience=0.2)
    drill.world.kube.pause(NAMESPACE, DEPLOYMENT)  # kubectl parity: undo refuses when paused
    assert run_drill(out=lines.append, drill=drill) == 1
    failed = [line for line in lines if "✗" in line]
    assert len(failed) == 1 and "deployment runs 1.3.0" in failed[0]
    assert lines[-1].startswith("Drill FAILED at: Kubernetes rolled back")
    # A failed drill cleans up too: its directory and embedded PostgreSQL cluster are gone.
    assert not drill.directory.exists()


# ---------------------------------------------------------------- the watcher scenario
def _proposal_posts(em: SlackEmulator) -> list[Call]:
    """chat.postMessage calls carrying the release watcher's notice key (its metadata)."""
    found = []
    for call in em.calls("chat.postMessage"):
        meta = call.params.get("metadata")
        meta = json.loads(meta) if isinstance(meta, str) else meta
        if meta and str(meta["event_payload"]["key"]).startswith("watch:hotel-voice-bot:"):
            found.append(call)
    return found


def _first_seq(events: list[Event], kind: str, **data: Any) -> int:
    seqs = [e.seq for e in events
            if e.kind == kind and all(e.data.get(k) == v for k, v in data.items())]
    assert seqs, (kind, data)
    return seqs[0]


@pytest.mark.slow
def test_watcher_drill_proposes_before_any_human_acts(
        prometheus_binary: str, db: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", db)
    lines: list[str] = []
    drill = WatcherDrill(out=lines.append, prometheus_binary=prometheus_binary)
    em, kube = drill.world.stack.emulator, drill.world.kube
    try:
        try:
            drill.run()
        except DrillFailed:
            pytest.fail("\n".join(lines), pytrace=False)
        # The drill ends with the rollback done and the service healthy, Prometheus agreeing.
        bot = drill.world.stack.bot
        assert bot is not None
        assert bot.store.history("hotel-voice-bot")[0].state.value in ("monitoring", "completed")
        assert kube.current_image(NAMESPACE, DEPLOYMENT).endswith(":1.3.0")
        assert httpx.get(f"{drill.world.demo.url}/api/health", timeout=5).status_code == 200
        rate = drill.error_rate()
        assert rate is not None and rate <= 0.05
    finally:
        drill.close()

    # Exactly one proposal, in the incident channel, with the watcher's two buttons.
    (post,) = _proposal_posts(em)
    assert post.ok and post.response is not None
    proposal_ts = str(post.response["ts"])
    assert "watcher_request_rollback" in json.dumps(post.params.get("blocks"))
    chart = next(f for f in em.files() if f["name"].startswith("watch-hotel-voice-bot-"))
    assert em.file_content(chart["id"]).startswith(b"\x89PNG")
    cid = em.channel_id(CHANNEL)
    assert [s["thread_ts"] for s in chart["shares"]["public"][cid]] == [proposal_ts]

    # The order Slack saw: the proposal is the channel's first message, its chart follows,
    # and only then did a human act (the form opened by the button, the request message).
    # No slash command comes before the request: the drill types none at all.
    events = em.events()
    roots = [m for m in em.messages(CHANNEL) if m.get("thread_ts") in (None, m["ts"])]
    assert roots[0]["ts"] == proposal_ts, roots[0]
    request = next(m for m in roots if "*Assessment*" in json.dumps(m.get("blocks")))
    proposed = _first_seq(events, "message.posted", channel=cid, ts=proposal_ts)
    charted = _first_seq(events, "file.shared", file_id=chart["id"])
    form = _first_seq(events, "view.opened")
    requested = _first_seq(events, "message.posted", channel=cid, ts=request["ts"])
    commands = [e.seq for e in events if e.kind == "command.invoked"]
    assert proposed < charted < form < requested, (proposed, charted, form, requested)
    assert all(seq > requested for seq in commands), commands

    # The narration shows the same order, and where the watcher's episode ended.
    stages = [line for line in lines if "✓" in line]
    order = [next(i for i, line in enumerate(stages) if text in line) for text in (
        "bad release 1.4.0 is live", "rollback proposed in #inc-hotel-voice-bot",
        "Request rollback on the proposal", "assessment and pinned plan posted",
        "deployment runs 1.3.0", "5xx ratio is back under 5 %", "rollback completed",
        "episode closed; one proposal in all")]
    assert order == sorted(order), stages
    assert any("no human has typed" in line for line in lines)
    assert not any("✗" in line for line in lines)


def test_watcher_drill_without_prometheus_says_what_to_install(tmp_path: Path) -> None:
    env = {**os.environ, "ROLLBACK_DATA_DIR": str(tmp_path),
           "PROMETHEUS_BIN": str(tmp_path / "no-prometheus")}
    env.pop("DATABASE_URL", None)
    done = subprocess.run([sys.executable, "-m", "sandbox", "drill", "--scenario", "watcher"],
                          env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stdout + done.stderr[-3000:]
    assert "Drill not started" in done.stdout and "apt-get install prometheus" in done.stdout
