"""The spec-dependent tests in a bare clone: a copy of the repository with no ``shared/``
beside it and no ``SPECS_DIR`` skips every one of them with the one named reason, and the
same copy under ``CI`` fails them instead (tests/support/specs.py).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from sandbox.fly import FlyEmulator
from tests.support.emulators import FLY_SPEC
from tests.support.specs import SPECS_MISSING, load_spec, require_spec, spec_path

REPO_ROOT = Path(__file__).resolve().parents[2]

# Every test that reads a vendor spec. test_every_spec_user_is_listed keeps this complete.
SPEC_TESTS = (
    "tests/unit/test_manifest.py",  # the schema-validation tests among the file's others
    "tests/integration/test_fly_emulator_api.py"
    "::test_request_bodies_are_decoded_against_the_openapi_schemas",
    "tests/integration/test_fly_adapter.py::test_emulator_responses_match_the_openapi_schemas",
    "tests/adversarial/test_ghost_writes_fly.py"
    "::test_conflict_bodies_match_the_openapi_error_schema",
)
_SPEC_USE = re.compile(r"\b(fly_spec|load_spec|require_spec|spec_path)\(")


def _bare_clone(tmp_path: Path) -> Path:
    clone = tmp_path / "clone"  # tmp_path has no shared/ beside the clone
    shutil.copytree(REPO_ROOT, clone, ignore=shutil.ignore_patterns(
        ".git", ".venv", "__pycache__", ".*_cache", "*.egg-info", "build"))
    assert not (tmp_path / "shared").exists()
    return clone


def _run(clone: Path, report: Path, *, ci: bool) -> dict[str, tuple[str, str]]:
    """Run SPEC_TESTS in the clone; each test's outcome and message from the JUnit report."""
    env = {k: v for k, v in os.environ.items()
           if k not in {"SPECS_DIR", "FLY_MACHINES_OPENAPI", "CI", "PYTHONPATH"}}
    env["PYTHONPATH"] = str(clone)
    if ci:
        env["CI"] = "1"
    subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                    f"--junitxml={report}", *SPEC_TESTS],
                   cwd=clone, env=env, capture_output=True, text=True, timeout=240)
    outcomes: dict[str, tuple[str, str]] = {}
    for case in ET.parse(report).iter("testcase"):
        name = f"{case.get('classname')}::{case.get('name')}"
        outcome, message = "passed", ""
        for tag in ("skipped", "failure", "error"):
            node = case.find(tag)
            if node is not None:
                outcome, message = tag, node.get("message") or ""
        outcomes[name] = outcome, message
    return outcomes


@pytest.mark.slow
def test_a_bare_clone_skips_spec_tests_with_one_reason_and_ci_fails_them(
        tmp_path: Path) -> None:
    clone = _bare_clone(tmp_path)
    local = _run(clone, tmp_path / "local.xml", ci=False)
    skipped = {n: m for n, (o, m) in local.items() if o == "skipped"}
    assert len(skipped) >= len(SPEC_TESTS), local
    assert all(SPECS_MISSING in m for m in skipped.values()), skipped
    assert {o for o, _ in local.values()} <= {"passed", "skipped"}, local
    for node in SPEC_TESTS[1:]:  # each named test is among the skipped
        assert any(n.endswith(node.rsplit("::", 1)[1]) for n in skipped), (node, skipped)

    under_ci = _run(clone, tmp_path / "ci.xml", ci=True)
    failed = {n: m for n, (o, m) in under_ci.items() if o in {"failure", "error"}}
    assert set(failed) == set(skipped), under_ci  # the same tests, failing now
    assert all(SPECS_MISSING in m for m in failed.values()), failed
    assert not any(o == "skipped" for o, _ in under_ci.values()), under_ci


def test_every_spec_user_is_listed() -> None:
    """A new test reading a spec must join SPEC_TESTS, or the bare-clone run misses it."""
    listed = {node.split("::", 1)[0] for node in SPEC_TESTS}
    users = {str(p.relative_to(REPO_ROOT)) for p in (REPO_ROOT / "tests").rglob("test_*.py")
             if p.name != Path(__file__).name and _SPEC_USE.search(p.read_text())}
    assert users == listed


def test_specs_dir_is_where_tests_and_the_fly_emulator_look(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source = require_spec(FLY_SPEC)
    monkeypatch.delenv("FLY_MACHINES_OPENAPI", raising=False)
    monkeypatch.setenv("SPECS_DIR", str(tmp_path))
    assert spec_path(FLY_SPEC) == tmp_path / FLY_SPEC
    with FlyEmulator() as em:  # not there yet: the emulator says it fell back
        assert em.schemas.origin.startswith("embedded minimal schema")
    shutil.copy(source, tmp_path / FLY_SPEC)
    with FlyEmulator() as em:
        assert em.schemas.origin == str(tmp_path / FLY_SPEC)
    assert load_spec(FLY_SPEC)["paths"]
