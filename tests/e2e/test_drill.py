"""`python -m sandbox drill` scripts the whole incident and fails loudly when a stage
does not happen."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from sandbox.drill import Drill, run_drill
from sandbox.kube_seed import DEPLOYMENT, NAMESPACE

REPO_ROOT = Path(__file__).resolve().parents[2]  # the sandbox runs from a checkout


def test_drill_runs_the_whole_incident(tmp_path: Path) -> None:
    env = {**os.environ, "ROLLBACK_DATA_DIR": str(tmp_path)}
    env.pop("DATABASE_URL", None)
    done = subprocess.run([sys.executable, "-m", "sandbox", "drill"], env=env, cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=240)
    out = done.stdout
    assert done.returncode == 0, out + done.stderr[-3000:]
    for stage in ("demo /api/health answers 503", "assessment and pinned plan posted",
                  "alice cannot approve her own request", "deployment runs 1.3.0",
                  "/api/health answers 200", "verification passed",
                  "'Rollback Completed'", "stability report with a chart",
                  "post-mortem skeleton attached", "the review reminder comes back"):
        assert f"✓ {stage}" in out or stage in out, (stage, out)
    assert "Drill passed" in out and "✗" not in out


def test_drill_exits_non_zero_when_a_stage_does_not_happen() -> None:
    lines: list[str] = []
    drill = Drill(out=lines.append, patience=0.2)
    drill.world.kube.pause(NAMESPACE, DEPLOYMENT)  # kubectl parity: undo refuses when paused
    assert run_drill(out=lines.append, drill=drill) == 1
    failed = [line for line in lines if "✗" in line]
    assert len(failed) == 1 and "deployment runs 1.3.0" in failed[0]
    assert lines[-1].startswith("Drill FAILED at: Kubernetes rolled back")
