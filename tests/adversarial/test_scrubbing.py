"""Planted secrets: a platform error that echoes credentials (a cluster's bearer token, a
password in a URL, a secret env value) is scrubbed before it is stored or shown.

Through the wire: the real bot over HTTP, the Slack emulator, real PostgreSQL. Afterwards
no planted value may be in any row of any table, in any Slack call the emulator recorded,
or in the captured log, while the error itself stays readable ("Unauthorized …").
"""

from __future__ import annotations

import json
import logging
from datetime import timedelta
from pathlib import Path

import pytest
from kubernetes.client import ApiClient, Configuration

from bot.observability.scrub import scrub
from bot.persistence.jobs import Job
from handlers import ids
from platforms.base import TransientPlatformError
from platforms.kubernetes import KubernetesPlatform
from sandbox.config import parse_sandbox_config, sandbox_config_dict
from sandbox.fake_platform import FakePlatform
from sandbox.stack import SandboxStack
from tests.e2e.conftest import Harness
from tests.e2e.conftest import harness as harness  # noqa: F401  (fixture)
from tests.e2e.conftest import make_harness as make_harness  # noqa: F401  (fixture)
from tests.secret_scan import database_findings, forms, register_secret

JWT = ("eyJhbGciOiJSUzI1NiIsImtpZCI6InBsYW50ZWQifQ.eyJzdWIiOiJzeXN0ZW06c2VydmljZWFjY291bnQ"
       "6cHJvZDpyb2xsYmFjay1ib3QifQ.cGxhbnRlZC1zaWduYXR1cmUtOWYzYTFj")  # a service-account token
OPAQUE = "planted0paque7f3a9c1e5b"  # a bearer token with no recognisable shape
URL_PASSWORD = "Pl4nted-url-pw"
ENV_SECRET = "planted-env-value-93ab1c"  # the value of a secret-named variable
PLANTED = {JWT: "planted JWT", OPAQUE: "planted bearer token",
           URL_PASSWORD: "planted URL password", ENV_SECRET: "planted env secret"}


def _echoing_error() -> str:
    return (f"Unauthorized: the API server echoed 'Authorization: Bearer {OPAQUE}' for "
            f"https://rollback-bot:{URL_PASSWORD}@kube.example:6443/apis/apps/v1 "
            f"(service account token {JWT}, integration key {ENV_SECRET})")


def _leaks(text: str) -> list[str]:
    return [source for value, source in PLANTED.items() if any(f in text for f in forms(value))]


@pytest.fixture
def planted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOTEL_INTEGRATION_TOKEN", ENV_SECRET)
    for value, source in PLANTED.items():
        register_secret(value, source)  # the suite's Slack scan checks them too


def test_a_platform_error_echoing_credentials_is_scrubbed_everywhere(
        harness: Harness, planted: None, db: str, caplog: pytest.LogCaptureFixture) -> None:
    h = harness
    caplog.set_level(logging.INFO)
    # First a transient error (shown as "retrying", stored on the step), then an unknown
    # exception (logged with its traceback, stored as last error, shown as the failure).
    h.platform.inject("rollback_to", TransientPlatformError(_echoing_error(), retry_after=0.1))
    h.platform.inject("rollback_to", RuntimeError(_echoing_error()))
    h.request("hotel-voice-bot --severity P0 --scope app", user="bob")
    msg = h.rollback_message()
    rid = h.bot.store.history("hotel-voice-bot")[0].id
    h.click(msg, ids.APPROVE, "bob")
    rb = h.wait_state(rid, "failed")

    # The error is still useful to a person, without the credentials.
    assert rb.last_error and "Unauthorized" in rb.last_error and "[REDACTED]" in rb.last_error
    assert "https://rollback-bot:[REDACTED]@kube.example:6443" in rb.last_error
    note = h.emulator.wait_for(lambda: next(
        (t for t in h.thread_texts(msg) if "failed at step" in t), None))
    assert "Unauthorized" in note and "[REDACTED]" in note
    assert any("retrying in" in t and "[REDACTED]" in t for t in h.thread_texts(msg))
    h.emulator.wait_for(lambda: "[REDACTED]" in str(h.message_now(msg["ts"])["blocks"]))

    # A job that fails with the same text: the stored job error and the log line.
    def explode(_job: Job) -> None:
        raise RuntimeError(_echoing_error())

    h.bot.job_router.add("planted_failure", explode)
    h.bot.service.jobs.schedule(kind="planted_failure", due_at=h.clock() - timedelta(seconds=1))
    h.tick()
    job_errors = [str(r) for r in _rows(db, "SELECT last_error FROM scheduled_jobs"
                                            " WHERE kind = 'planted_failure'")]
    assert job_errors and "[REDACTED]" in job_errors[0] and "Unauthorized" in job_errors[0]

    assert database_findings(db, PLANTED) == []
    calls = json.dumps([c.params for c in h.emulator.calls()], default=str)
    assert _leaks(calls) == []
    log_text = caplog.text
    assert "step app_rollback of RB-" in log_text and "planted_failure" in log_text
    assert "Traceback" in log_text and "[REDACTED]" in log_text  # the tracebacks are there
    assert _leaks(log_text) == []
    assert _leaks("\n".join(str(r.args) + r.getMessage() for r in caplog.records)) == []


def _rows(url: str, query: str) -> list[object]:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        return [r[0] for r in conn.execute(query.encode())]


def test_a_cluster_token_is_scrubbed_even_without_a_bearer_prefix(db: str,
                                                                   tmp_path: Path) -> None:
    """The kubeconfig's token is no environment variable: the composition root hands it to
    the scrubber, so an error quoting it bare (no "Bearer" next to it) is still cleaned."""
    token = "planted4kube7c0ffee91d2"
    register_secret(token, "planted kubeconfig token")
    configuration = Configuration()
    configuration.host = "https://127.0.0.1:6443"
    configuration.api_key = {"authorization": f"Bearer {token}"}
    kube = KubernetesPlatform(api_client=ApiClient(configuration))
    assert kube.credential_values() == [token]
    assert scrub(f"forbidden: token {token} lacks rights") != "[REDACTED]"  # not yet known
    config = parse_sandbox_config(sandbox_config_dict(postmortem_dir=str(tmp_path / "pm")))
    with SandboxStack(config=config, database_url=db, scheduler=False,
                      platforms={"fake": FakePlatform(), "kubernetes": kube}):
        assert scrub(f"forbidden: token {token} lacks rights") == \
            "forbidden: token [REDACTED] lacks rights"
