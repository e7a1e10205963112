"""``platforms.base.mask_value``: what a configuration view may show in Slack."""

from __future__ import annotations

import pytest

from platforms.base import mask_value


@pytest.mark.parametrize(("key", "value"), [
    ("DB_PASSWORD", "hunter2"),
    ("PARTNER_API_KEY", "k-123"),
    ("DATABASE_URL", "postgres://app:s3cret@db:5432/hotel"),  # userinfo with a password
    ("UPSTREAM", "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.sig"),  # a JWT
    ("AWS_ID", "AKIAIOSFODNN7EXAMPLE"),
    ("SLACK", "xoxb-1234567890-abcdefghij"),
    ("FLY", "FlyV1 fm2_lJPECAAAAAAAAMkqxBBHlGhfQ"),
    ("CERT", "-----BEGIN RSA PRIVATE KEY-----\nMIIE..."),
])
def test_a_credential_by_name_or_by_shape_is_a_fingerprint(key: str, value: str) -> None:
    masked = mask_value(key, value)
    assert masked is not None and masked.startswith("<hidden, sha256:")
    assert value not in masked
    assert mask_value(key, value) == masked  # stable: a change stays visible
    assert mask_value(key, value + "x") != masked


@pytest.mark.parametrize(("key", "value"), [
    ("LOG_LEVEL", "debug"),
    ("REDIS_URL", "redis://cache:6379/0"),  # no password in it
    ("CALLBACK", "https://example.com/a:b@c"),  # '@' in the path is not userinfo
    ("VOICE_TIMEOUT_MS", "8000"),
])
def test_an_ordinary_value_is_shown(key: str, value: str) -> None:
    assert mask_value(key, value) == value


def test_absent_stays_absent() -> None:
    assert mask_value("DB_PASSWORD", None) is None


def test_a_command_line_is_masked_word_by_word() -> None:
    from platforms.base import mask_command

    words = ["serve", "--db-password=hunter2", "--api-token", "t0k3n", "--port", "8080",
             "API_KEY=k-1", "postgres://u:pw@db/x", "--verbose"]
    out = mask_command(words)
    joined = " ".join(out)
    for secret in ("hunter2", "t0k3n", "k-1", "pw@db"):
        assert secret not in joined
    assert out[0] == "serve" and out[4:6] == ["--port", "8080"] and out[-1] == "--verbose"
    assert out[1].startswith("--db-password=<hidden") and out[6].startswith("API_KEY=<hidden")
