"""A stakeholder e-mail job that finds its message claimed by another live runner (another
replica in the middle of its SMTP session) gives its scheduler worker back at once and
looks again five seconds later, with no failed attempt counted; once that runner is gone,
the message goes out exactly once. It used to wait in the worker for up to the claim's
five minutes and a half. The real bot on real PostgreSQL, a real SMTP server (aiosmtpd),
jobs run through ``h.tick()`` on the harness's clock; the other runner is a second claims
owner with its own liveness connection, as another process has."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from bot.execution.scheduler import CLAIM_HELD_RETRY
from bot.persistence import claims
from tests.e2e.conftest import Harness
from tests.support.smtp_server import SmtpServer, stakeholder_emails
from tests.support.waiting import wait_until

EMAILS = ["ops@example.com"]


def _queued_mail(h: Harness, rid: int) -> str | None:
    with h.bot.store.pool.connection() as conn:
        row = conn.execute("SELECT key FROM outbox WHERE rollback_id = %s AND mail IS NOT"
                           " NULL AND status = 'sending' ORDER BY key LIMIT 1",
                           (rid,)).fetchone()
    return str(row[0]) if row else None


def _resolved(smtp: SmtpServer) -> list[Any]:
    return [m for m in smtp.messages() if str(m.message["Subject"]).startswith("[Resolved]")]


def test_a_mail_claimed_by_a_live_runner_frees_the_worker_and_goes_out_once(
        make_harness: Callable[..., Harness], smtp: SmtpServer) -> None:
    h = make_harness(config_overrides=stakeholder_emails(smtp, EMAILS))
    rid, _ = h.request_and_approve_p0()
    h.wait_state(rid, "completed")
    # The notice job queues the e-mail and schedules its job for the next tick.
    key = wait_until(lambda: h.tick() >= 0 and _queued_mail(h, rid), timeout=20,
                     message="the e-mail queued")
    conninfo = h.bot.store.pool.conninfo
    other = claims.Owner(conninfo if isinstance(conninfo, str) else conninfo())
    with h.bot.store.pool.connection() as conn:
        conn.execute("UPDATE outbox SET claimed_by = %s, claim_expires_at = now() + interval"
                     " '300 seconds' WHERE key = %s", (other.claim_token(), key))
    try:
        ticked = threading.Thread(target=h.tick, daemon=True)
        ticked.start()
        ticked.join(timeout=15)
        assert not ticked.is_alive(), "the tick waited on another runner's claim"
        [job] = [j for j in h.bot.service.jobs.pending(rollback_id=rid,
                                                       kinds=["stakeholder_email"])
                 if j.payload["key"] == key]
        assert job.attempts == 0  # not a failure
        assert job.due_at == h.clock() + CLAIM_HELD_RETRY
        assert _resolved(smtp) == []
    finally:
        other.close()  # the other runner dies mid-session: its claim stops counting

    h.clock.advance(seconds=CLAIM_HELD_RETRY.total_seconds())
    wait_until(lambda: h.tick() >= 0 and _resolved(smtp), timeout=20,
               message="the e-mail sent after the other runner died")
    for _ in range(3):
        h.tick()
    assert len(_resolved(smtp)) == 1
    failed = [e for e in h.bot.store.audit_events(rid) if e.event == "stakeholder_email_failed"]
    assert failed == []
