"""Claims: "this process is calling Slack (SMTP, a status page) for that key right now",
recorded without keeping a pooled connection checked out for the call.

A claim is a token ``<owner>/<nonce>`` written to a row's ``claimed_by`` with an expiry
(``claim_expires_at``) in one committed statement before the call, and cleared after it
by a statement fenced on the token (migration 020). Between the two no connection is held,
so a slow Slack round trip costs a worker thread, not one of the database pool's few
connections: the session advisory locks this replaces did, and sizing the after-ack pool
up starved the database pool (handlers/work_pool.py).

Another caller may take a claim over when it has expired, or when its owner is gone. Every
process holds one session advisory lock, on a dedicated connection outside the pool, for as
long as it lives (``Owner``); the server frees it when the process dies, so the claims of a
killed process are free at once, as the advisory locks held over the call used to be, and
the next poster goes through the look-up path before posting again. The expiry covers an
owner that lives on but whose call never came back: it outlasts the HTTP client's timeout,
so a call still in flight is not sent a second time by someone else.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable
from typing import TypeVar

import psycopg
from psycopg.conninfo import make_conninfo
from psycopg_pool import ConnectionPool

log = logging.getLogger(__name__)
T = TypeVar("T")

LIVENESS_NAMESPACE = 0x6C697665  # "live": must match claim_alive() in migration 020
# How stale the owner's own check of its liveness connection may be: a dropped connection
# (a database restart) makes this process's claims look free to others until it is back.
LIVENESS_CHECK_SECONDS = 5.0
# slack_sdk's WebClient times each call out after 30 s (its default ``timeout``), and one
# post may be several calls (files_upload_v2 makes three) plus one rate-limit retry
# (bot/runtime/app.py): five minutes outlasts them, so a slow call is never taken over.
SLACK_CLAIM_SECONDS = 300.0
# A claim wait longer than this is logged (once), naming the key waited on.
SLOW_WAIT_SECONDS = 5.0


class ClaimHeld(Exception):
    """Another live claimant holds this key right now (a caller that would not wait): try
    again later. The scheduler postpones a job that raises it (``JobStore.postpone``)."""


def claimable(table: str) -> str:
    """SQL: ``table``'s row may be claimed (never claimed, released, expired, or its owner
    gone). OR evaluates left to right, so pg_locks is read only for a row claimed now."""
    return (f"({table}.claimed_by IS NULL OR {table}.claim_expires_at <= now()"
            f" OR NOT claim_alive({table}.claimed_by))")


# libpq parameters of the liveness connection (PostgreSQL docs, "Parameter Key Words").
LIVENESS_CONNECT = {"connect_timeout": 5, "keepalives": 1, "keepalives_idle": 10,
                    "keepalives_interval": 5, "keepalives_count": 3,
                    "tcp_user_timeout": 30_000}


def _new_owner_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


class Owner:
    """This process as a claim owner: an id and the advisory lock that says it is alive."""

    def __init__(self, conninfo: str) -> None:
        self.conninfo = conninfo
        self.id = _new_owner_id()
        self._lock = threading.Lock()
        self._conn: psycopg.Connection[tuple[object, ...]] | None = None
        self._checked = 0.0

    def claim_token(self) -> str:
        """A new claim's token, once this process's liveness lock is known to be held."""
        self._alive()
        return f"{self.id}/{secrets.token_hex(6)}"

    def _alive(self) -> None:
        with self._lock:
            now = time.monotonic()
            conn = self._conn
            if conn is not None and not conn.closed:
                if now - self._checked < LIVENESS_CHECK_SECONDS:
                    return
                try:
                    conn.execute("SELECT 1")
                    self._checked = now
                    return
                except psycopg.Error:
                    log.warning("claims: the liveness connection dropped; opening another")
                    conn.close()
            # Bounded: a connect or a half-open socket must not hang every poster of the
            # process behind this lock (TCP keepalives and a user timeout end a dead peer).
            conn = psycopg.connect(make_conninfo(self.conninfo, **LIVENESS_CONNECT),
                                   autocommit=True)
            # Try, never wait: after a reset our old session may still hold the lock on
            # the server until it notices; then this process goes on under a new id (its
            # earlier claims stay covered by that session or by their expiry).
            while not conn.execute("SELECT pg_try_advisory_lock(%s, hashtext(%s))",
                                   (LIVENESS_NAMESPACE, self.id)).fetchone() == (True,):
                log.warning("claims: liveness id %s is still held; taking a new one", self.id)
                self.id = _new_owner_id()
            self._conn, self._checked = conn, now

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None


_owners: dict[str, Owner] = {}
_users: dict[str, int] = {}  # open stores per conninfo (retain_owner / release_owner)
_owners_lock = threading.Lock()
# Wakes this process's waiters when one of its claims is released, so a second poster of
# the same key in this process does not sleep a whole poll interval.
_released = threading.Condition()


def _conninfo(pool: ConnectionPool) -> str:
    return pool.conninfo if isinstance(pool.conninfo, str) else pool.conninfo()


def owner_for(pool: ConnectionPool) -> Owner:
    """One owner per process and database (every store on one database shares it)."""
    conninfo = _conninfo(pool)
    with _owners_lock:
        owner = _owners.get(conninfo)
        if owner is None:
            owner = _owners[conninfo] = Owner(conninfo)
        return owner


def retain_owner(pool: ConnectionPool) -> None:
    """A store on ``pool``'s database opened (``Store``): the owner there lives until the
    last such store closes (``release_owner``)."""
    conninfo = _conninfo(pool)
    with _owners_lock:
        _users[conninfo] = _users.get(conninfo, 0) + 1


def release_owner(pool: ConnectionPool) -> None:
    """A store on ``pool``'s database closed (``Store.close``, after the workers that claim
    have stopped). The last one closes and forgets this process's owner there: its
    liveness connection goes, so the claims it made are seen as not alive at once. Without
    this a stopped app kept the connection open for good, and a process that builds many
    (the tests) one per database; two apps on one database in one process (a test's
    restart) share the owner, so the first to stop does not free the other's claims. A
    later ``owner_for`` opens a new owner under a new id."""
    conninfo = _conninfo(pool)
    with _owners_lock:
        left = _users.pop(conninfo, 0) - 1
        if left > 0:
            _users[conninfo] = left
            return
        owner = _owners.pop(conninfo, None)
    if owner is not None:
        owner.close()


def purge_dead(pool: ConnectionPool) -> int:
    """Delete the rows of ``claims`` that no longer count (expired, or their owner is gone);
    returns how many. The claimant deletes its row when done, but a killed process never
    does, so without this the table keeps every episode key a crash left. A live claim is
    never deleted: the statement re-checks a row a concurrent claimant has just taken
    over (READ COMMITTED re-evaluates the WHERE on the newer version) and skips it."""
    with pool.connection() as conn:
        return conn.execute(f"DELETE FROM claims WHERE {claimable('claims')}").rowcount


def released() -> None:
    """Called after a claim is cleared: waiters in this process look again now."""
    with _released:
        _released.notify_all()


def wait_for(check: Callable[[], T | None], *, timeout: float, what: str) -> T:
    """Call ``check`` until it returns something other than None: at once when a claim of
    this process is released, otherwise polling (10 ms, doubling to 250 ms: a claim held by
    another replica is seen within a quarter second of its release). TimeoutError after
    ``timeout`` seconds."""
    began = time.monotonic()
    deadline = began + timeout
    interval = 0.01
    said = False
    while True:
        found = check()
        if found is not None:
            return found
        if not said and time.monotonic() - began >= SLOW_WAIT_SECONDS:
            # A wait this long is someone's call hanging or a claim a release never
            # cleared: say which, or the caller looks stuck with nothing in the log.
            log.warning("claims: still waiting for %s after %.0f s (up to %.0f s)", what,
                        SLOW_WAIT_SECONDS, timeout)
            said = True
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"{what}: still claimed after {timeout:g} s")
        with _released:
            _released.wait(min(interval, left))
        interval = min(interval * 2, 0.25)
