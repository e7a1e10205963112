"""The status page survives a crash: real bot processes, SIGKILLed after the page answered.

Process A (``tests/support/bot_main.py`` on real PostgreSQL, driven over signed HTTP) takes
a P0 request; its scheduler opens the status page incident (the emulator, in the test
process, outlives both bots) and parks right after the page answered, before the bot
recorded it. The test SIGKILLs it there. Process B takes the scheduler over, finds the
incident A opened (by the ``[RB-N]`` in its name) instead of opening a second one, and
brings the page to *resolved*: one incident, each update once.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from sandbox.statuspage import StatuspageEmulator
from tests.e2e.crash_support import CrashRig, crash_rig
from tests.secret_scan import register_secret
from tests.support.waiting import wait_until

REQUEST = "hotel-voice-bot --severity P0 --scope app --reason page-drill"
KEY = "sp-key-5a0e-do-not-post"


@pytest.fixture
def page() -> Iterator[StatuspageEmulator]:
    emulator = StatuspageEmulator(api_key=KEY).start()
    yield emulator
    emulator.stop()


@pytest.fixture
def rig(tmp_path: Path, db: str, fresh_db: str, page: StatuspageEmulator) -> Iterator[CrashRig]:
    register_secret(KEY, "the status page API key")
    with crash_rig(tmp_path, db, fresh_db) as r:
        r.seed()
        data = yaml.safe_load(r.config_path.read_text())
        data["services"]["hotel-voice-bot"]["stakeholders"]["statuspage"] = {
            "api_url": page.api_url, "page_id": "page1", "api_key_env": "SP_KEY",
            "component_id": "cmp1"}
        r.config_path.write_text(yaml.safe_dump(data))  # every process reads it at start
        yield r


def test_a_crash_after_the_page_answered_opens_one_incident_and_sends_each_update_once(
        rig: CrashRig, page: StatuspageEmulator) -> None:
    fault_file = rig.tmp / "fault-hold"
    a = rig.start_bot("bot-A", env={"SP_KEY": KEY, "ROLLBACK_FAULT_POST": "statuspage:*",
                                    "ROLLBACK_FAULT_FILE": str(fault_file)})
    rollback_id, _msg = rig.request_and_approve(a, REQUEST)
    announced = rig.wait_fault(a, fault_file).split()
    assert announced[0] == str(a.pid) and announced[-1].startswith(f"statuspage:{rollback_id}:")
    a.kill()
    assert a.popen.returncode == -9
    (incident,) = page.incidents.values()  # A opened it; the bot never recorded that
    assert [u["status"] for u in incident["incident_updates"]] == ["investigating"]
    assert not any(e.event == "statuspage_updated"
                   for e in rig.store.audit_events(rollback_id))

    rig.start_bot("bot-B", env={"SP_KEY": KEY})
    wait_until(lambda: next(iter(page.incidents.values()))["status"] == "resolved",
               timeout=60, message="B to bring the page to resolved",
               diagnostics=rig.diagnostics)
    (incident,) = page.incidents.values()  # still one incident
    assert [u["status"] for u in incident["incident_updates"]] == [
        "investigating", "identified", "monitoring", "resolved"]
    made = [e.detail for e in rig.store.audit_events(rollback_id)
            if e.event == "statuspage_updated"]
    assert [d["status"] for d in made] == ["investigating", "identified", "monitoring",
                                           "resolved"]
    assert made[0].get("reconciled") is True  # found on the page, not sent again
    assert sum(1 for r in page.requests if r["method"] == "POST") == 1
