"""Vendor specs (Slack's manifest schema, Fly's Machines OpenAPI) for the tests that check
against them: one lookup, one skip reason, and a failure instead of a skip under CI.

The specs are not in the repository: they sit in ``shared/specs`` beside it (CI puts
``shared/`` next to the clone) or in the directory named by ``SPECS_DIR``. A bare clone
has neither, so ``make test`` there skips these tests, all with ``SPECS_MISSING``; under
``CI`` a missing spec fails the test so that it can never pass silently.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import yaml

__all__ = ["SPECS_ENV", "SPECS_MISSING", "load_spec", "require_spec", "spec_path",
           "specs_dir"]

SPECS_ENV = "SPECS_DIR"
# The one reason every spec-dependent test skips with (tests/integration/test_specs_anywhere.py
# runs them in a copy of the repository without the specs and expects exactly this).
SPECS_MISSING = "vendor specs missing (set SPECS_DIR or put shared/specs beside the repository)"
_BESIDE_REPO = Path(__file__).resolve().parents[3] / "shared" / "specs"


def specs_dir() -> Path:
    """``SPECS_DIR`` when set, else ``../shared/specs`` beside the repository."""
    return Path(os.environ.get(SPECS_ENV) or _BESIDE_REPO)


def spec_path(name: str) -> Path:
    """Where the spec file ``name`` is looked up (whether or not it is there)."""
    return specs_dir() / name


def require_spec(name: str) -> Path:
    """The path of spec ``name``; missing, the test skips (fails under ``CI``)."""
    path = spec_path(name)
    if not path.is_file():
        message = f"{SPECS_MISSING}: {path}"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path


def load_spec(name: str) -> Any:
    """Spec ``name`` parsed (JSON is YAML), after ``require_spec``."""
    return yaml.safe_load(require_spec(name).read_text(encoding="utf-8"))
