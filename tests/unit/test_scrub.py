"""bot.observability.scrub: credential shapes, known values in their encodings, the log record
scrubber."""

from __future__ import annotations

import base64
import json
import logging
from urllib.parse import quote

import pytest

from bot.domain.config import secret_env_names
from bot.observability import scrub as scrub_module
from bot.observability.scrub import REDACTED, install_log_scrubber, scrub, scrub_data
from sandbox.config import parse_sandbox_config, sandbox_config_dict


@pytest.mark.parametrize(("text", "secret", "kept"), [
    ("Authorization: Bearer abc.def-ghi_123", "abc.def-ghi_123", "Authorization: "),
    ("{'authorization': 'Basic dXNlcjpwYXNzd29yZA=='}", "dXNlcjpwYXNzd29yZA", "authorization"),
    ('{"Authorization": "token ghx-opaque-123456"}', "ghx-opaque-123456", "Authorization"),
    ("got 401 for Bearer opaque-Token-998877", "opaque-Token-998877", "got 401 for Bearer "),
    ("cannot connect to postgresql://app:hunter22@db:5432/app", "hunter22",
     "postgresql://app:[REDACTED]@db:5432/app"),
    ("GET https://ci-bot:p%40ss-w0rd@git.example/x: 403", "p%40ss-w0rd", "git.example/x: 403"),
    ("host=db password=topsecret99 user=app", "topsecret99", "host=db password="),
    ('{"client_secret": "cs-998877aa", "ok": false}', "cs-998877aa", '"ok": false'),
    ("https://s3.example/b?X-Amz-Signature=deadbeef00&X-Amz-Expires=60", "deadbeef00",
     "X-Amz-Expires=60"),
    ("token eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTYifQ.SflKxwRJSMeKKF2QT4", "eyJhbGci",
     "token "),
    ("slack said xoxb-1234567890-abcdefghij", "xoxb-1234567890", "slack said "),
    ("fly: FlyV1 fm2_lJPECAAAAAAAAAAAAAAAAAAAAAAAA", "fm2_lJPEC", "fly: FlyV1 "),
    ("key AKIAABCDEFGHIJKLMNOP used", "AKIAABCDEFGHIJKLMNOP", " used"),
    ("-----BEGIN RSA PRIVATE KEY-----\nMIIEow\n-----END RSA PRIVATE KEY-----", "MIIEow", ""),
])
def test_credential_shapes_are_redacted(text: str, secret: str, kept: str) -> None:
    out = scrub(text)
    assert secret not in out and REDACTED in out and kept in out
    assert scrub(out) == out  # idempotent


@pytest.mark.parametrize("text", [
    "rollout of registry.example/app:v1.3.1 done",
    "deployment.apps/hotel-voice-bot rolled back",
    "kubectl -n production scale deployment/hotel-voice-bot --replicas=3",
    "http://127.0.0.1:8080/path@x is unreachable (ConnectError)",
    "<@U0BOB> :x: RB-7 failed at step 2 (Wait for the rollout): HTTP 503",
    "Secret app-creds was NOT restored and is left as it is now",
])
def test_ordinary_messages_are_left_alone(text: str) -> None:
    assert scrub(text) == text


def test_known_values_in_every_encoding(monkeypatch: pytest.MonkeyPatch) -> None:
    value = "s3cr3t/value+with=chars"
    monkeypatch.setenv("HOTEL_WEBHOOK_CREDENTIAL", value)
    for form in (value, quote(value, safe=""), json.dumps(value)[1:-1],
                 base64.b64encode(value.encode()).decode()):
        assert value not in scrub(f"echo: {form} end") and "end" in scrub(f"echo: {form} end")
    monkeypatch.setenv("APP_DATABASE_URL", "postgresql://app:dsnPassw0rd@db/app")
    assert "dsnPassw0rd" not in scrub("auth failed for dsnPassw0rd")


def test_an_env_var_the_config_names_is_secret_whatever_its_name(
        monkeypatch: pytest.MonkeyPatch) -> None:
    data = sandbox_config_dict()
    svc = data["services"]["hotel-voice-bot"]
    svc["external_checks"] = [{"name": "llm", "url": "https://llm.example/health",
                               "headers_env": {"X-Key": {"env": "HOTEL_LLM", "prefix": "K "}}}]
    svc["database"] = {"dsn_env": "HOTEL_DB", "backup_location": "/tmp/backups"}
    assert {"HOTEL_LLM", "HOTEL_DB"} <= secret_env_names(data)
    monkeypatch.setenv("HOTEL_LLM", "llm-plain-value-1234")
    assert "llm-plain-value-1234" in scrub("x llm-plain-value-1234")  # not yet known
    parse_sandbox_config(data)
    assert "llm-plain-value-1234" not in scrub("x llm-plain-value-1234")
    with scrub_module._lock:
        scrub_module._env_names.discard("HOTEL_LLM")
        scrub_module._env_names.discard("HOTEL_DB")


def test_scrub_data_keeps_structure() -> None:
    data = {"error": "Bearer opaque-123456789", "n": 3, "list": ["password=abcdefgh", None]}
    assert scrub_data(data) == {"error": f"Bearer {REDACTED}", "n": 3,
                                "list": [f"password={REDACTED}", None]}


def test_log_records_are_scrubbed_message_and_traceback(
        caplog: pytest.LogCaptureFixture) -> None:
    install_log_scrubber()
    install_log_scrubber()  # idempotent
    log = logging.getLogger("tests.scrub")
    try:
        raise RuntimeError("Authorization: Bearer in-a-traceback-7788")
    except RuntimeError:
        with caplog.at_level(logging.INFO):
            log.exception("call with %s failed", "https://u:pw-in-args-66@h.example/")
    assert "in-a-traceback-7788" not in caplog.text and "pw-in-args-66" not in caplog.text
    assert "Traceback" in caplog.text and "RuntimeError" in caplog.text
    assert "https://u:[REDACTED]@h.example/" in caplog.text
