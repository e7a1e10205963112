"""The outboxes post once without holding a database connection during the call.

Real PostgreSQL, the real Slack chat adapter (``handlers.gateway.SlackChat``, a real
WebClient) against the Slack emulator. ``Gate`` is the Chat port with a door in front of
the emulator: a post waits until the test opens it, so the call is observably in flight.
Two replicas are two pools whose connections differ (``application_name``), so each is its
own claim owner, as two processes are. The e-mail outbox goes to a real SMTP server; the
status page's and the release watcher's claims are try-claims (False when held).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import psycopg
import pytest
from psycopg_pool import ConnectionPool
from slack_sdk import WebClient

from bot.domain.mail_config import SmtpSettings
from bot.domain.messages import StatuspageNotUpdated
from bot.domain.ports import CrashPoints, Notice
from bot.integrations.mail import SmtpSender, new_mail
from bot.persistence import claims
from bot.persistence.db import migrate, open_pool
from bot.persistence.mail_outbox import MailOutbox
from bot.persistence.outbox import Outbox
from bot.persistence.statuspage_store import ClaimLost, StatuspageStore
from bot.persistence.watch_store import WatchStore
from handlers.gateway import SlackChat
from sandbox.slack import DEFAULT_BOT_TOKEN, SlackEmulator
from tests.integration.pg_fixtures import fresh_db, pg_url  # noqa: F401
from tests.support.history_seed import seed_active
from tests.support.smtp_server import SmtpServer
from tests.support.waiting import wait_until

KEY = "warn:claims-test:1"
CHANNEL = "C0INCHVB01"  # the emulator's seeded channel: history is read by id, as in Slack


class Gate(SlackChat):
    """The real adapter, whose channel posts wait for ``door`` once they have begun."""

    def __init__(self, client: WebClient) -> None:
        super().__init__(client)
        self.door = threading.Event()
        self.entered = threading.Event()

    def post_notice(self, channel: str, notice: Notice) -> tuple[str, str]:
        self.entered.set()
        assert self.door.wait(30), "the test never opened the door"
        return super().post_notice(channel, notice)


@pytest.fixture
def emulator() -> Iterator[SlackEmulator]:
    with SlackEmulator() as emu:
        yield emu


@pytest.fixture
def migrated(fresh_db: str) -> str:  # noqa: F811
    migrate(fresh_db)
    return fresh_db


def _pool(url: str, replica: str, *, size: int = 2) -> ConnectionPool:
    return open_pool(f"{url} application_name={replica}", min_size=1, max_size=size)


def _posts(emulator: SlackEmulator) -> list[str]:
    """The channel's messages that carry the key (what Slack shows, refused calls not)."""
    return [str(m["ts"]) for m in emulator.messages(CHANNEL)
            if (m.get("metadata") or {}).get("event_payload", {}).get("key") == KEY]


def _notice() -> Notice:
    return Notice(KEY, StatuspageNotUpdated("investigating", "the page said no"))


def _chat(emulator: SlackEmulator) -> Gate:
    return Gate(WebClient(token=DEFAULT_BOT_TOKEN, base_url=emulator.base_url))


@dataclass
class Posters:
    """Two replicas posting the same key: A's post can park right after Slack answered
    (``park``, its ``posted`` crash point) until the test resumes it; both doors open."""

    pool_a: ConnectionPool
    pool_b: ConnectionPool
    chat_a: Gate
    chat_b: Gate
    parked: threading.Event = field(default_factory=threading.Event)
    resume: threading.Event = field(default_factory=threading.Event)

    def park(self, key: str) -> None:
        self.parked.set()
        self.resume.wait(30)


@pytest.fixture
def posters(migrated: str, emulator: SlackEmulator) -> Iterator[Posters]:
    p = Posters(_pool(migrated, "replica-a"), _pool(migrated, "replica-b"),
                _chat(emulator), _chat(emulator))
    p.chat_a.door.set()
    p.chat_b.door.set()
    yield p
    p.resume.set()  # a failed test must not leave A parked for 30 s
    p.pool_a.close()
    p.pool_b.close()


def _row(url: str) -> tuple[Any, ...]:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT status, attempts, ts, claimed_by FROM outbox"
                           " WHERE key = %s", (KEY,)).fetchone()
    assert row is not None
    return tuple(row)


def test_no_pooled_connection_is_checked_out_during_the_slack_call(
        migrated: str, emulator: SlackEmulator) -> None:
    pool = _pool(migrated, "one-connection", size=1)
    chat = _chat(emulator)
    try:
        with ThreadPoolExecutor(1) as ex:
            posting = ex.submit(Outbox(pool, chat).channel_notice, CHANNEL, _notice())
            assert chat.entered.wait(10), "the post never began"
            # The pool's only connection serves another statement while the call is out.
            # (A returned connection is reset by the pool's worker: available shortly.)
            wait_until(lambda: pool.get_stats()["pool_available"] == 1, timeout=2,
                       message="the pool's one connection back in the pool")
            with pool.connection(timeout=2) as conn:
                status, attempts, _, claimed_by = conn.execute(
                    "SELECT status, attempts, ts, claimed_by FROM outbox WHERE key = %s",
                    (KEY,)).fetchone() or ()
            # The attempt and the claim were committed before the call.
            assert (status, attempts) == ("sending", 1) and claimed_by
            chat.door.set()
            ts = posting.result(10)
        assert _row(migrated) == ("sent", 1, ts, None)
        assert len(_posts(emulator)) == 1
    finally:
        pool.close()


def test_two_replicas_racing_one_key_post_it_once_and_both_get_its_ts(
        migrated: str, emulator: SlackEmulator, caplog: pytest.LogCaptureFixture,
        monkeypatch: pytest.MonkeyPatch) -> None:
    # A long claim wait is logged with its key (a waiter otherwise looks stuck with nothing
    # in the log); the threshold is brought down so the test need not wait five seconds.
    monkeypatch.setattr(claims, "SLOW_WAIT_SECONDS", 0.2)
    pool_a, pool_b = _pool(migrated, "replica-a"), _pool(migrated, "replica-b")
    chat_a, chat_b = _chat(emulator), _chat(emulator)
    chat_b.door.set()  # B would post at once, if it ever got to
    try:
        with ThreadPoolExecutor(4) as ex:
            a = ex.submit(Outbox(pool_a, chat_a).channel_notice, CHANNEL, _notice())
            assert chat_a.entered.wait(10)
            waiters: list[Future[str]] = [
                ex.submit(Outbox(pool, chat_b).channel_notice, CHANNEL, _notice())
                for pool in (pool_b, pool_a)]  # another replica, and another thread of A's
            # They wait on A's live claim (today's lock waiters): nothing returned yet.
            wait_until(lambda: _row(migrated)[1] == 1, timeout=2)
            assert not any(w.done() for w in waiters)
            wait_until(lambda: sum(f"still waiting for outbox {KEY}" in r.getMessage()
                                   for r in caplog.records) == 2, timeout=5,
                       message="both waiters to say what they wait on")
            chat_a.door.set()
            ts = a.result(10)
            assert [w.result(10) for w in waiters] == [ts, ts]
        assert not chat_b.entered.is_set()
        assert len(_posts(emulator)) == 1
        assert _row(migrated) == ("sent", 1, ts, None)
    finally:
        pool_a.close()
        pool_b.close()


def test_the_claim_of_a_dead_poster_is_taken_over_and_its_post_found_not_doubled(
        migrated: str, emulator: SlackEmulator, posters: Posters) -> None:
    """A posts, then dies before marking the row: its liveness lock goes with it, and B
    looks the post up by its key instead of posting again, long before the claim expires."""
    p = posters
    with ThreadPoolExecutor(1) as ex:
        a = ex.submit(Outbox(p.pool_a, p.chat_a, crash_points=CrashPoints(posted=p.park))
                      .channel_notice, CHANNEL, _notice())
        assert p.parked.wait(10)
        assert len(_posts(emulator)) == 1
        claims.owner_for(p.pool_a).close()  # what the server sees when A's process dies
        ts = Outbox(p.pool_b, p.chat_b).channel_notice(CHANNEL, _notice())
        assert not p.chat_b.entered.is_set()  # found by look-up, not posted
        p.resume.set()
        assert a.result(10) == ts  # A's late mark is fenced off; it changes nothing
    assert len(_posts(emulator)) == 1
    assert _row(migrated) == ("sent", 2, ts, None)


def test_a_claim_that_expires_mid_call_is_taken_over_through_the_look_up(
        migrated: str, emulator: SlackEmulator, posters: Posters) -> None:
    """A live poster whose call outlasts its claim: the next poster waits for the expiry,
    then looks the key up in Slack first (here A's post landed: found, not doubled)."""
    p = posters
    with ThreadPoolExecutor(1) as ex:
        a = ex.submit(Outbox(p.pool_a, p.chat_a, crash_points=CrashPoints(posted=p.park),
                             claim_seconds=1.0).channel_notice, CHANNEL, _notice())
        assert p.parked.wait(10)
        ts = Outbox(p.pool_b, p.chat_b, claim_seconds=1.0).channel_notice(CHANNEL, _notice())
        assert not p.chat_b.entered.is_set()
        p.resume.set()
        assert a.result(10) == ts
    assert len(_posts(emulator)) == 1
    assert _row(migrated) == ("sent", 2, ts, None)


def test_a_failed_call_releases_its_claim_and_the_next_poster_looks_up_then_posts(
        migrated: str, emulator: SlackEmulator) -> None:
    pool = _pool(migrated, "retrying")
    chat = _chat(emulator)
    chat.door.set()
    try:
        emulator.fail_next("chat.postMessage", "channel_not_found")
        with pytest.raises(Exception, match="channel_not_found"):
            Outbox(pool, chat).channel_notice(CHANNEL, _notice())
        assert _row(migrated) == ("sending", 1, None, None)  # counted, not held
        ts = Outbox(pool, chat).channel_notice(CHANNEL, _notice())
        assert _row(migrated) == ("sent", 2, ts, None)
        assert len(_posts(emulator)) == 1
        assert len(emulator.calls("conversations.history")) == 1  # looked up first
    finally:
        pool.close()


# ------------------------------------------------------------------ e-mail (SMTP)
MAIL_KEY = "mail:claims-test:1"


def _queued(pool: ConnectionPool, smtp: SmtpServer) -> tuple[MailOutbox, SmtpSender]:
    settings = SmtpSettings(**smtp.smtp_config())
    outbox = MailOutbox(pool)
    outbox.add(MAIL_KEY, rollback_id=None, mail=new_mail(
        settings, recipients=("ops@example.com",), subject="claims", body="once"))
    return outbox, SmtpSender(settings)


def test_an_email_claim_holds_no_connection_during_the_smtp_session_and_a_second_runner_waits(
        migrated: str, smtp: SmtpServer) -> None:
    pool, other = _pool(migrated, "mail-one", size=1), _pool(migrated, "mail-two")
    outbox, sender = _queued(pool, smtp)
    inside, door = threading.Event(), threading.Event()

    def first() -> int:
        with outbox.sending(MAIL_KEY) as pending:
            assert pending is not None
            inside.set()
            assert door.wait(30)
            sender.send(pending.mail)
            outbox.mark_sent(MAIL_KEY, message_id=pending.mail.message_id,
                             claim=pending.claim)
            return pending.attempt

    def second() -> object:
        with MailOutbox(other).sending(MAIL_KEY) as pending:
            return pending

    try:
        with ThreadPoolExecutor(2) as ex:
            a = ex.submit(first)
            assert inside.wait(10)
            with pool.connection(timeout=2) as conn:  # the pool's only connection is free
                assert conn.execute("SELECT attempts, claimed_by IS NOT NULL FROM outbox"
                                    " WHERE key = %s", (MAIL_KEY,)).fetchone() == (1, True)
            b = ex.submit(second)
            door.set()
            assert a.result(10) == 1
            # None: the row was 'sending' under A's live claim when B came, so B can only
            # have returned after A marked it sent (a B that took the claim gets a Pending).
            assert b.result(10) is None
        assert len(smtp.messages()) == 1
        assert outbox.status(MAIL_KEY) == ("sent", 1, None)
    finally:
        door.set()
        pool.close()
        other.close()


def test_an_email_claim_of_a_dead_runner_is_taken_over_for_the_next_attempt(
        migrated: str, smtp: SmtpServer) -> None:
    pool_a, pool_b = _pool(migrated, "mail-dying"), _pool(migrated, "mail-next")
    outbox, sender = _queued(pool_a, smtp)
    try:
        with outbox.sending(MAIL_KEY) as pending:
            assert pending is not None and pending.attempt == 1
            claims.owner_for(pool_a).close()  # the runner's process is gone
            with MailOutbox(pool_b).sending(MAIL_KEY) as taken:
                assert taken is not None and taken.attempt == 2
                sender.send(taken.mail)
                MailOutbox(pool_b).mark_sent(MAIL_KEY, message_id=taken.mail.message_id,
                                             claim=taken.claim)
            # The dead runner's late mark is fenced off.
            outbox.mark_failed(MAIL_KEY, error="too late", claim=pending.claim)
        assert outbox.status(MAIL_KEY) == ("sent", 2, None)
        assert len(smtp.messages()) == 1
    finally:
        pool_a.close()
        pool_b.close()


# ------------------------------------------------------------------ try-claims
def test_the_status_page_claim_is_one_holder_at_a_time_and_holds_no_connection(
        migrated: str) -> None:
    rollback_id = seed_active(migrated, "hotel-voice-bot")
    pool_a, pool_b = _pool(migrated, "page-a", size=1), _pool(migrated, "page-b")
    a, b = StatuspageStore(pool_a), StatuspageStore(pool_b)
    try:
        with a.holding(rollback_id) as held:
            assert held
            a.sending(rollback_id, 41)  # renews the claim; the call would go out now
            with pool_a.connection(timeout=2) as conn:  # the only connection is free
                assert conn.execute("SELECT sending_event FROM statuspage_incidents"
                                    " WHERE rollback_id = %s", (rollback_id,)
                                    ).fetchone() == (41,)
            with b.holding(rollback_id) as other:
                assert not other  # a try-claim: False at once, as the try-lock was
            a.applied(rollback_id, 41, incident_id="inc-1")
        with b.holding(rollback_id) as other:  # released on exit
            assert other
            claims.owner_for(pool_b).close()  # b's process dies holding it
            with a.holding(rollback_id) as taken:
                assert taken
                with pytest.raises(ClaimLost):  # b's late call is stopped before it goes
                    b.sending(rollback_id, 42)
        assert b.progress(rollback_id).sending_event is None
    finally:
        pool_a.close()
        pool_b.close()


def test_the_release_watcher_claim_is_one_holder_at_a_time_and_holds_no_connection(
        migrated: str) -> None:
    pool_a, pool_b = _pool(migrated, "watch-a", size=1), _pool(migrated, "watch-b")
    a, b = WatchStore(pool_a), WatchStore(pool_b)
    key = "watch:hotel-voice-bot:2026-11-30T18:00:00Z"
    try:
        with a.exclusive(key) as held:
            assert held
            with pool_a.connection(timeout=2) as conn:
                conn.execute("SELECT 1")
            with b.exclusive(key) as other:
                assert not other
            with b.exclusive(f"{key}:another") as unrelated:
                assert unrelated
        with b.exclusive(key) as other:
            assert other
            claims.owner_for(pool_b).close()
            with a.exclusive(key) as taken:  # a dead holder's claim is free at once
                assert taken
    finally:
        pool_a.close()
        pool_b.close()


def test_a_watcher_claim_expires_for_a_holder_that_lives_on(migrated: str) -> None:
    pool_a, pool_b = _pool(migrated, "watch-slow"), _pool(migrated, "watch-next")
    key = "watch:voice-gateway:2026-11-30T18:00:00Z"
    try:
        with WatchStore(pool_a, claim_seconds=0.5).exclusive(key) as held:
            assert held
            store = WatchStore(pool_b)

            def taken() -> bool | None:
                with store.exclusive(key) as got:
                    return got or None

            assert wait_until(taken, timeout=10, message="the expired claim taken over")
    finally:
        pool_a.close()
        pool_b.close()


class LineGate(SlackChat):
    """The real adapter, whose thread lines wait for ``door`` once they have begun."""

    def __init__(self, client: WebClient) -> None:
        super().__init__(client)
        self.door = threading.Event()
        self.entered = threading.Event()

    def thread(self, rollback: Any, message: Any, *, mention: str | None = None,
               key: str | None = None) -> None:
        self.entered.set()
        assert self.door.wait(30), "the test never opened the door"
        super().thread(rollback, message, mention=mention, key=key)


def _thread_posts(emulator: SlackEmulator, parent: str, key: str) -> int:
    return sum(1 for m in emulator.thread(CHANNEL, parent)
               if (m.get("metadata") or {}).get("event_payload", {}).get("key") == key)


def test_a_deliverer_does_not_wait_on_a_line_another_poster_holds(
        migrated: str, emulator: SlackEmulator) -> None:
    """Replica B is posting R1's line (its claim stands: mid-call, or a release a database
    blip lost); replica A's deliverer must post R2's line at once and leave R1's for a
    later round (it used to wait on B's claim, up to its 5-minute expiry, holding every
    other rollback's lines)."""
    from bot.domain.message_codec import encode
    from bot.domain.messages import StepNote
    from bot.persistence.store import Store
    from bot.usecases.latest_state_chat import LatestStateChat
    from bot.usecases.thread_delivery import ThreadDelivery

    client = WebClient(token=DEFAULT_BOT_TOKEN, base_url=emulator.base_url)
    parent = str(client.chat_postMessage(channel=CHANNEL, text="request")["ts"])
    r1, r2 = seed_active(migrated, "svc-one"), seed_active(migrated, "svc-two")
    with psycopg.connect(migrated, autocommit=True) as conn:
        conn.execute("UPDATE rollbacks SET channel_id = %s, message_ts = %s",
                     (CHANNEL, parent))
    pool_a, pool_b = _pool(migrated, "replica-a"), _pool(migrated, "replica-b")
    try:
        store_a = Store(pool_a)
        gate = LineGate(WebClient(token=DEFAULT_BOT_TOKEN, base_url=emulator.base_url))
        outbox_b = Outbox(pool_b, gate)
        outbox_a = Outbox(pool_a, SlackChat(client))
        line = {"message": encode(StepNote("step one")), "mention": None}
        assert outbox_a.queue_line(r1, "line:r1", line)
        assert outbox_a.queue_line(r2, "line:r2", line)
        with ThreadPoolExecutor(2) as run:
            b_posts = run.submit(outbox_b.post_line, store_a.get(r1), "line:r1",
                                 send=lambda: gate.thread(store_a.get(r1), StepNote("step one"),
                                                          key="line:r1"))
            assert gate.entered.wait(10)  # B's claim stands, its call in flight
            delivery = ThreadDelivery(outbox=outbox_a, store=store_a,
                                      chat=LatestStateChat(SlackChat(client), store_a))
            a_delivers: Future[int] = run.submit(delivery.deliver)
            assert a_delivers.result(timeout=10) == 1  # R2's line, without waiting on B
            assert _thread_posts(emulator, parent, "line:r2") == 1
            assert _thread_posts(emulator, parent, "line:r1") == 0
            attempts = [q.attempts for q in outbox_a.queued_lines(r1)]
            assert attempts == [1]  # B's attempt only: A's look counted none
            gate.door.set()
            b_posts.result(timeout=10)
        assert delivery.deliver() == 0  # R1's line is B's, posted once
        assert _thread_posts(emulator, parent, "line:r1") == 1
    finally:
        pool_a.close()
        pool_b.close()


def test_two_sync_runs_in_one_process_are_each_fenced_on_their_own_claim(
        migrated: str) -> None:
    """One leader, one store, two sync jobs of one rollback: the first stalls past its
    claim and the second takes it over. The stalled one's next call must be stopped
    (ClaimLost), and its exit must not unfence the new holder (a per-process token let the
    stalled run write with the new holder's claim, then dropped the holder's own)."""
    rollback_id = seed_active(migrated, "hotel-voice-bot")
    pool = _pool(migrated, "leader", size=4)
    store = StatuspageStore(pool)
    stalled_in, took_over, stalled_out, done = (threading.Event() for _ in range(4))
    outcome: dict[str, object] = {}

    def stalled() -> None:
        with store.holding(rollback_id) as held:
            assert held
            stalled_in.set()
            assert took_over.wait(10)
            try:
                store.sending(rollback_id, 41)
                outcome["stalled"] = "sent"
            except ClaimLost:
                outcome["stalled"] = "stopped"
        stalled_out.set()

    def second() -> None:
        assert stalled_in.wait(10)
        with psycopg.connect(migrated, autocommit=True) as conn:  # the first one's claim ran out
            conn.execute("UPDATE statuspage_incidents SET claim_expires_at = now()"
                         " - interval '1 second' WHERE rollback_id = %s", (rollback_id,))
        with store.holding(rollback_id) as held:
            assert held
            took_over.set()
            assert stalled_out.wait(10)
            store.sending(rollback_id, 42)  # still fenced on its own claim: goes through
            outcome["second"] = store.progress(rollback_id).sending_event
        done.set()

    try:
        with ThreadPoolExecutor(2) as run:
            futures = [run.submit(stalled), run.submit(second)]
            for f in futures:
                f.result(timeout=20)
        assert outcome == {"stalled": "stopped", "second": 42}
    finally:
        pool.close()


def test_a_liveness_id_still_held_by_an_old_session_is_replaced_not_waited_on(
        migrated: str) -> None:
    """After a connection reset the server may keep our old session (and its liveness
    lock) until it notices; taking the lock again must not block every poster of the
    process behind it: the owner goes on under a new id."""
    owner = claims.Owner(migrated)
    old_id = owner.id
    with psycopg.connect(migrated, autocommit=True) as old_session:
        old_session.execute("SELECT pg_advisory_lock(%s, hashtext(%s))",
                            (claims.LIVENESS_NAMESPACE, old_id))
        with ThreadPoolExecutor(1) as run:
            token = run.submit(owner.claim_token).result(timeout=10)
        try:
            assert owner.id != old_id and token.startswith(owner.id + "/")
            with psycopg.connect(migrated, autocommit=True) as look:
                assert look.execute("SELECT claim_alive(%s)", (token,)).fetchone() == (True,)
        finally:
            owner.close()
