"""The bot's status page client against the Statuspage emulator: a timeline per incident,
and the real API's refusals (401, 404, 422, 429 with Retry-After) as ``StatuspageError``
carrying the status, with the key never in a message."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from bot.aftercare.statuspage import StatuspageClient, StatuspageError
from bot.domain.config import StatuspageConfig
from sandbox.statuspage import StatuspageEmulator

KEY = "sp-key-0b2d-do-not-post"


@pytest.fixture
def page(monkeypatch: pytest.MonkeyPatch) -> Iterator[StatuspageEmulator]:
    monkeypatch.setenv("SP_KEY", KEY)
    emulator = StatuspageEmulator(api_key=KEY).start()
    yield emulator
    emulator.stop()


def _client(page: StatuspageEmulator, key_env: str = "SP_KEY") -> StatuspageClient:
    return StatuspageClient(StatuspageConfig(api_url=page.api_url, page_id="page1",
                                             api_key_env=key_env, component_id="cmp1"))


def test_updates_make_a_timeline_on_one_incident(page: StatuspageEmulator) -> None:
    with _client(page) as client:
        incident = client.create_incident(name="x [RB-1]", status="investigating",
                                          body="looking", component_status="major_outage")
        client.update_incident(incident, status="identified", body="found it")
        client.update_incident(incident, status="resolved", body="fixed",
                               component_status="operational")
        assert client.incident_bodies(incident) == ["looking", "found it", "fixed"]
        assert client.find_unresolved("[RB-1]") is None  # resolved: not open any more
    updates = page.incidents[incident]["incident_updates"]
    assert [u["status"] for u in updates] == ["investigating", "identified", "resolved"]
    assert [u["affected_components"] for u in updates] == [
        [{"code": "cmp1", "old_status": "operational", "new_status": "major_outage"}], [],
        [{"code": "cmp1", "old_status": "major_outage", "new_status": "operational"}]]


def test_refusals_carry_their_status(page: StatuspageEmulator,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    with _client(page) as client:
        with pytest.raises(StatuspageError) as unknown:
            client.update_incident("nope", status="identified", body="x")
        assert unknown.value.status == 404 and unknown.value.permanent
        with pytest.raises(StatuspageError) as bad:
            client.create_incident(name="x", status="fixed", body="x")
        assert bad.value.status == 422 and "not included in the list" in str(bad.value)
        with pytest.raises(StatuspageError) as component:
            client.create_incident(name="x", status="investigating", body="x",
                                   component_status="down")
        assert component.value.status == 422
        page.rate_limit_next(1, retry_after=42)
        with pytest.raises(StatuspageError) as limited:
            client.find_unresolved("x")
        assert (limited.value.status, limited.value.retry_after) == (429, 42.0)
        assert not limited.value.permanent
        page.fail_next(1, status=503)
        with pytest.raises(StatuspageError) as down:
            client.find_unresolved("x")
        assert down.value.status == 503 and not down.value.permanent
    assert page.incidents == {}  # nothing refused was recorded
    monkeypatch.setenv("WRONG_KEY", "not-the-key")
    with _client(page, "WRONG_KEY") as client, pytest.raises(StatuspageError) as denied:
        client.find_unresolved("x")
    assert denied.value.status == 401 and "not-the-key" not in str(denied.value)
