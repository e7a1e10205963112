"""Kubernetes Secret values in the known-good configuration are sealed at rest.

Through the wire on the fake platform: a first config rollback completes and records the
known-good configuration (ConfigMap and Secret) from the platform; the configuration is
then changed and a second rollback restores it. With ``ROLLBACK_BOT_SNAPSHOT_KEY`` the
Secret is encrypted in the table and restored exactly; without a key only its digest is
kept and the restore skips it with the reason in the thread (the ConfigMap is restored);
with a wrong key the Secret is refused, never restored as garbage. No Secret value is in
any table, Slack call or log line.
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Callable
from typing import Any

import pytest
from cryptography.fernet import Fernet

from bot.persistence import sealing
from handlers import ids
from platforms.base import Target
from tests.e2e.conftest import Harness
from tests.e2e.conftest import make_harness as make_harness  # noqa: F401  (fixture)
from tests.secret_scan import database_findings, forms, register_secret, table_texts

SERVICE = "hotel-voice-bot"
TARGET = Target("fake", "production", SERVICE)
PLAIN = "planted-db-password-4e7a1c"  # what the Secret holds, decoded
ENCODED = base64.b64encode(PLAIN.encode()).decode()
GOOD = {"configmap/app-config": {"data": {"MODE": "good"}},
        "secret/app-creds": {"type": "Opaque", "data": {"DB_PASSWORD": ENCODED}}}
CHANGED_SECRET = {"type": "Opaque", "data": {"DB_PASSWORD": base64.b64encode(b"rotated-by-"
                                                                             b"hand").decode()}}
BAD = {"configmap/app-config": {"data": {"MODE": "bad"}}, "secret/app-creds": CHANGED_SECRET}
SECRETS = {PLAIN: "the Secret's value", ENCODED: "the Secret's value (base64)"}


@pytest.fixture
def h(make_harness: Callable[..., Harness], caplog: pytest.LogCaptureFixture) -> Harness:
    caplog.set_level(logging.INFO)
    for value, source in SECRETS.items():
        register_secret(value, source)
    harness = make_harness()
    harness.platform.set_config(TARGET, json.loads(json.dumps(GOOD)))
    return harness


def _config_rollback(h: Harness) -> tuple[int, dict[str, Any]]:
    before = len(h.bot.store.history(SERVICE))
    h.request(f"{SERVICE} --severity P0 --scope config --reason config", user="bob")
    h.emulator.wait_for(lambda: len(h.bot.store.history(SERVICE)) > before, timeout=15)
    rid = h.bot.store.history(SERVICE)[0].id
    msg = h.rollback_message(rid)
    h.click(msg, ids.APPROVE, "bob")
    h.wait_state(rid, "completed")
    return rid, msg


def _record_then_break(h: Harness) -> None:
    """Rollback 1 completes and records the known-good configuration; then the running
    configuration goes bad (ConfigMap and Secret both changed)."""
    _config_rollback(h)
    # Recorded in the same transaction as the move to completed.
    known = h.emulator.wait_for(lambda: h.bot.store.known_good_config(SERVICE, "fake"))
    assert set(known[0]["items"]) == set(GOOD)
    h.platform.set_config(TARGET, json.loads(json.dumps(BAD)))


def _envelope(h: Harness) -> dict[str, Any]:
    known = h.bot.store.known_good_config(SERVICE, "fake")
    assert known is not None
    items = known[0]["items"]
    assert items["configmap/app-config"] == GOOD["configmap/app-config"]  # stays readable
    return dict(items["secret/app-creds"][sealing.ENVELOPE])


def _restore_step(h: Harness, rid: int) -> Any:
    return next(s for s in h.bot.store.steps(rid) if s.kind == "restore_config")


def _assert_nothing_leaked(h: Harness, db: str, caplog: pytest.LogCaptureFixture) -> None:
    assert database_findings(db, SECRETS) == []
    calls = json.dumps([c.params for c in h.emulator.calls()], default=str)
    assert not any(f in calls for v in SECRETS for f in forms(v))
    assert not any(f in caplog.text for v in SECRETS for f in forms(v))


def test_with_a_key_the_secret_is_encrypted_at_rest_and_restored_exactly(
        h: Harness, db: str, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    key = Fernet.generate_key().decode()
    monkeypatch.setenv(sealing.KEY_ENV, key)
    _record_then_break(h)
    envelope = _envelope(h)
    assert envelope["format"] == "fernet" and envelope["key_id"] == sealing.key_id(key.encode())
    assert key not in table_texts(db)["known_good_config"]

    rid, msg = _config_rollback(h)
    assert h.platform.snapshot_config(TARGET).to_dict()["items"] == GOOD
    step = _restore_step(h, rid)
    assert step.status == "done" and step.result["objects"] == sorted(GOOD)
    assert "secrets_not_restored" not in step.result
    _assert_nothing_leaked(h, db, caplog)


def test_without_a_key_only_digests_are_kept_and_the_secret_is_skipped_with_the_reason(
        h: Harness, db: str, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.delenv(sealing.KEY_ENV, raising=False)
    _record_then_break(h)
    envelope = _envelope(h)
    assert envelope["format"] == "digest-only" and "token" not in envelope
    assert envelope["digest"] == sealing.digest(GOOD["secret/app-creds"])

    rid, msg = _config_rollback(h)
    items = h.platform.snapshot_config(TARGET).to_dict()["items"]
    assert items["configmap/app-config"] == GOOD["configmap/app-config"]  # restored
    assert items["secret/app-creds"] == CHANGED_SECRET  # left exactly as it runs now
    step = _restore_step(h, rid)
    assert step.result["objects"] == ["configmap/app-config"]
    assert "no snapshot key" in step.result["secrets_not_restored"]["secret/app-creds"]
    line = h.emulator.wait_for(lambda: next(
        (t for t in h.thread_texts(msg) if "Secret app-creds was NOT restored" in t), None))
    assert f"{sealing.KEY_ENV} is not set" in line and "by hand" in line
    _assert_nothing_leaked(h, db, caplog)


def test_an_unchanged_secret_needs_no_key(h: Harness, db: str,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(sealing.KEY_ENV, raising=False)
    _config_rollback(h)
    h.emulator.wait_for(lambda: h.bot.store.known_good_config(SERVICE, "fake"))
    h.platform.set_config(TARGET, {**json.loads(json.dumps(GOOD)),
                                   "configmap/app-config": {"data": {"MODE": "bad"}}})
    rid, msg = _config_rollback(h)
    assert h.platform.snapshot_config(TARGET).to_dict()["items"] == GOOD
    assert "secrets_not_restored" not in _restore_step(h, rid).result  # digest matched


def test_a_wrong_key_is_refused_never_garbage(
        h: Harness, db: str, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    monkeypatch.setenv(sealing.KEY_ENV, old)
    _record_then_break(h)
    monkeypatch.setenv(sealing.KEY_ENV, new)  # the old key was dropped: refuse, never guess
    rid, msg = _config_rollback(h)
    items = h.platform.snapshot_config(TARGET).to_dict()["items"]
    assert items["secret/app-creds"] == CHANGED_SECRET  # not garbage, not deleted
    assert items["configmap/app-config"] == GOOD["configmap/app-config"]
    why = _restore_step(h, rid).result["secrets_not_restored"]["secret/app-creds"]
    assert sealing.key_id(old.encode()) in why and "not among the keys" in why
    h.emulator.wait_for(lambda: any("Secret app-creds was NOT restored" in t
                                    for t in h.thread_texts(msg)))
    _assert_nothing_leaked(h, db, caplog)


def test_key_rotation_reseals_and_keeps_snapshots_restorable(
        h: Harness, db: str, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    monkeypatch.setenv(sealing.KEY_ENV, old)
    _record_then_break(h)
    recorded_at = h.bot.store.known_good_config(SERVICE, "fake")[1]  # type: ignore[index]
    # The new key first, the old one still listed: housekeeping re-seals under the new key
    # without touching recorded_at (plans pin it); then the old key can go.
    monkeypatch.setenv(sealing.KEY_ENV, f"{new},{old}")
    assert h.bot.store.reseal_known_good_configs() == 1
    assert h.bot.store.reseal_known_good_configs() == 0
    assert h.bot.store.known_good_config(SERVICE, "fake")[1] == recorded_at  # type: ignore[index]
    assert _envelope(h)["key_id"] == sealing.key_id(new.encode())
    monkeypatch.setenv(sealing.KEY_ENV, new)
    _config_rollback(h)
    assert h.platform.snapshot_config(TARGET).to_dict()["items"] == GOOD
    _assert_nothing_leaked(h, db, caplog)


def test_a_tampered_ciphertext_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    key = Fernet.generate_key().decode()
    monkeypatch.setenv(sealing.KEY_ENV, key)
    keys = sealing.load_keys()
    sealed = sealing.seal({"items": GOOD}, keys)["items"]["secret/app-creds"]
    assert sealing.open_item(sealed, keys) == (GOOD["secret/app-creds"], None)
    token = sealed[sealing.ENVELOPE]["token"]
    forged = {sealing.ENVELOPE: {**sealed[sealing.ENVELOPE],
                                 "token": token[:-6] + ("A" if token[-6] != "A" else "B")
                                 + token[-5:]}}
    opened, why = sealing.open_item(forged, keys)
    assert opened is None and why and "does not authenticate" in why
    monkeypatch.setenv(sealing.KEY_ENV, "not-a-key")
    assert "is not a Fernet key" in (sealing.load_keys().problem or "")
    assert "not-a-key" not in (sealing.load_keys().problem or "")


def test_rows_recorded_in_plain_form_are_sealed_by_housekeeping(
        h: Harness, db: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import psycopg
    from psycopg.types.json import Jsonb

    with psycopg.connect(db, autocommit=True) as conn:  # written before sealing existed
        conn.execute("INSERT INTO known_good_config (service, platform, snapshot)"
                     " VALUES (%s, 'fake', %s)", (SERVICE, Jsonb({"items": GOOD})))
    assert database_findings(db, SECRETS) != []  # the condition the issue measured
    monkeypatch.delenv(sealing.KEY_ENV, raising=False)
    assert h.bot.store.reseal_known_good_configs() == 1
    assert database_findings(db, SECRETS) == []
