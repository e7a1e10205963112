"""Posts the executor's progress after the platform call: thread lines from the outbox, in
order per rollback, and coalesced re-renders of the request message.

The executor's ``Progress`` (``bot.execution.progress``) in production. ``say`` queues the
line as an outbox row (``Outbox.queue_line``: committed before anything else happens, so
a crash cannot lose it) and wakes the deliverer thread; ``refresh`` marks the rollback's
message dirty (several refreshes before the deliverer gets to it are one render of the
latest state). The deliverer posts each rollback's lines oldest first and stops at the
first one Slack refuses, so a thread never shows them out of order; the key makes each
line exactly-once (``Outbox.post_line``), also when another replica's deliverer or the
executor's own ``flush`` delivers the same rollback at the same moment. ``notice`` queues
an aftercare card (verification, monitoring, completion) the same way, under the notice's
own key: the transition it decorates commits whatever Slack answers, and the card goes out
once Slack does (``Outbox.post_queued_notice`` posts it, so its ts is kept for a later
edit). An edit of a card still queued (``Outbox.edit``: a button closed it meanwhile)
rewrites the queued card, so it goes out as edited, once.

Holding: from an approval (``hold``) until the executor's first platform write
(``written``), nothing about that rollback goes to Slack, neither its lines nor its
message (``LatestStateChat.defer``), so the approval path makes no Slack call but the
approver-group read before the platform moves. A hold lapses after ``hold_seconds`` (no
executor free, a plan whose first step writes nothing to the platform), so Slack is told
late, never not at all. The hold is a row (``Outbox.hold``, migration 022) as well as this
process's note: the executor that writes first may run in another replica, whose
deliverer must hold the lines too, and whose ``written`` ends the hold for every replica
(this process's note goes at its deliverer's next round). The note alone answers the
handler path's ``defer`` questions, so they cost no database round trip.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable

from bot.domain.message_codec import decode_message, encode
from bot.domain.messages import Message
from bot.domain.models import Rollback
from bot.domain.ports import Notice, scrubbed_facts
from bot.persistence.claims import ClaimHeld
from bot.persistence.outbox import LINE_MAX_ATTEMPTS, Outbox, QueuedLine
from bot.persistence.store import Store
from bot.usecases.latest_state_chat import LatestStateChat

log = logging.getLogger(__name__)

HOLD_SECONDS = 2.0  # the longest an approved rollback's Slack updates wait for its first write
POLL_SECONDS = 1.0  # how often lines left by a crashed process or a Slack error are retried


# Slack answers no retry can change (docs.slack.dev/reference/methods/chat.postMessage,
# "Errors"): the line is given up at once and the lines behind it go on. Any other Slack
# answer (ratelimited, internal_error, service_unavailable, ...) and any transport error is
# passing: the line is retried on every round however long it takes, because a lost line
# may be the one with the manual scale-up command. Anything else (a line that cannot be
# rendered) is given up after ``LINE_MAX_ATTEMPTS``.
PERMANENT_SLACK_ERRORS = frozenset({
    "channel_not_found", "is_archived", "not_in_channel", "msg_too_long", "no_text",
    "invalid_blocks", "too_many_attachments", "restricted_action", "duplicate_message_not_found",
})


def _slack_error(exc: Exception) -> str | None:
    """The ``error`` of a Slack Web API answer (slack_sdk's SlackApiError carries the parsed
    response); None for anything else. Duck-typed: the core does not import the Slack SDK."""
    response = getattr(exc, "response", None)
    getter = getattr(response, "get", None)
    if getter is None:
        return None
    try:
        code = getter("error")
    except Exception:
        return None
    return code if isinstance(code, str) else None


class ThreadDelivery:
    def __init__(self, *, outbox: Outbox, store: Store, chat: LatestStateChat,
                 hold_seconds: float = HOLD_SECONDS, poll_seconds: float = POLL_SECONDS,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.outbox = outbox
        self.store = store
        self.chat = chat
        self.hold_seconds = hold_seconds
        self.poll_seconds = poll_seconds
        self.monotonic = monotonic
        self._lock = threading.Lock()
        self._held: dict[int, float] = {}  # rollback id -> when the hold lapses
        self._dirty: set[int] = set()  # rollbacks whose message needs a render
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ the Progress port
    def say(self, rb: Rollback, message: Message, *, key: str | None = None,
            mention: str | None = None) -> None:
        key = key or f"line:{rb.id}:{uuid.uuid4().hex}"
        # Scrubbed before it is stored (a step's error may quote a platform's output); the
        # post is scrubbed again on its way out (``ScrubbedChat``), which changes nothing.
        self.outbox.queue_line(rb.id, key, {"message": encode(scrubbed_facts(message)),
                                            "mention": mention})
        self.start()  # a process that only executes (``rollback-bot auto``) starts it here
        self._wake.set()

    def say_again(self, rb: Rollback, message: Message, *, key: str) -> None:
        self.say(rb, message, key=key)  # the outbox keeps the first row under a key

    def notice(self, rb: Rollback, notice: Notice) -> None:
        # Scrubbed before it is stored, like a line (a check's summary may quote a body).
        self.outbox.queue_line(rb.id, notice.key,
                               {"notice": encode(scrubbed_facts(notice.message))})
        self.start()
        self._wake.set()

    def refresh(self, rb: Rollback) -> None:
        with self._lock:
            self._dirty.add(rb.id)
        self._wake.set()

    def written(self, rollback_id: int) -> None:
        with self._lock:
            held = self._held.pop(rollback_id, None) is not None
        try:  # the hold as every replica sees it (the approval may have been elsewhere)
            held = self.outbox.release_hold(rollback_id) or held
        except Exception:  # called after a platform write: never mask its outcome
            log.exception("releasing RB-%s's Slack hold failed (it lapses)", rollback_id)
        if held:
            self._wake.set()

    def flush(self, rollback_id: int) -> None:
        """Deliver the rollback's queued lines and pending render now, in this thread."""
        self.written(rollback_id)
        try:
            self.deliver(rollback_id)
        except Exception:  # Slack or the database down: the deliverer retries later
            log.exception("delivering RB-%s's thread lines failed", rollback_id)

    # ------------------------------------------------------------------ holding
    def hold(self, rollback_id: int) -> None:
        """An approval: keep this rollback off Slack until its first platform write."""
        # The row first: a deliverer round that finds no row drops this process's note.
        try:  # every replica's deliverer respects it (``Outbox.queued_lines``)
            self.outbox.hold(rollback_id, self.hold_seconds)
        except Exception:  # the approval stands; the note holds this process's handler
            # path, and its deliverer until its next round (no row: the hold is shorter)
            log.exception("recording RB-%s's Slack hold failed", rollback_id)
        with self._lock:
            self._held[rollback_id] = self.monotonic() + self.hold_seconds

    def defer_refresh(self, rollback_id: int) -> bool:
        """``LatestStateChat.defer``: take a held rollback's refresh to render later."""
        with self._lock:
            if not self._is_held(rollback_id):
                return False
            self._dirty.add(rollback_id)
        return True

    def defer_line(self, rb: Rollback, message: Message, mention: str | None) -> bool:
        """``LatestStateChat.defer_line``: a held rollback's thread line (the approval's
        break glass or override line) is queued with the executor's, in order."""
        if not self._held_now(rb.id):
            return False
        self.say(rb, message, mention=mention)
        return True

    def _is_held(self, rollback_id: int) -> bool:  # with self._lock
        until = self._held.get(rollback_id)
        if until is None:
            return False
        if self.monotonic() < until:
            return True
        del self._held[rollback_id]
        return False

    def _held_now(self, rollback_id: int) -> bool:
        with self._lock:
            return self._is_held(rollback_id)

    # ------------------------------------------------------------------ delivering
    def deliver(self, rollback_id: int | None = None) -> int:
        """Post queued lines (one rollback's, or all) and pending renders; how many posted."""
        posted = 0
        stopped: set[int] = set()  # rollbacks with a line that failed: the rest waits
        rollbacks: dict[int, Rollback] = {}
        looked = self.monotonic()
        held = self.outbox.held()  # by any replica; their lines are not even listed
        with self._lock:
            # A hold of ours released elsewhere (another replica's executor wrote first)
            # or lapsed by the database's clock: this process stops holding it too. Not
            # a note made since the look (its row came after it): that one stands.
            for rid in [rid for rid, until in self._held.items()
                        if rid not in held and until <= looked + self.hold_seconds]:
                del self._held[rid]
        for queued in self.outbox.queued_lines(rollback_id):
            rid = queued.rollback_id
            if rid in stopped or self._held_now(rid):
                stopped.add(rid)
                continue
            if rid not in rollbacks:
                rollbacks[rid] = self.store.get(rid)
            rb = rollbacks[rid]
            if self._post(rb, queued):
                posted += 1
            else:
                stopped.add(rid)
        with self._lock:
            due = [rid for rid in self._dirty if (rollback_id is None or rid == rollback_id)
                   and not self._is_held(rid) and rid not in held]
            self._dirty.difference_update(due)
        for rid in due:
            try:
                self.chat.refresh_now(rollbacks.get(rid) or self.store.get(rid))
            except Exception:
                log.exception("re-rendering RB-%s's message failed", rid)
                with self._lock:
                    self._dirty.add(rid)
        return posted

    def _post(self, rb: Rollback, queued: QueuedLine) -> bool:
        try:
            if "notice" in queued.line:  # a card: posted and looked up as a notice
                # As it reads under the claim, not as listed: an edit may have come since.
                self.outbox.post_queued_notice(rb, queued.key, wait=False)
                return True
            message = decode_message(queued.line["message"])
            mention = queued.line.get("mention")
            self.outbox.post_line(rb, queued.key, send=lambda: self.chat.thread(
                rb, message, mention=mention, key=queued.key), wait=False)
            return True
        except ClaimHeld:  # another poster has it now: this rollback's lines wait a round
            log.debug("thread line %s is being posted elsewhere", queued.key)
            return False
        except Exception as exc:
            code = _slack_error(exc)
            lasting = code in PERMANENT_SLACK_ERRORS
            passing = not lasting and (code is not None or isinstance(exc, OSError))
            if lasting or (not passing and queued.attempts + 1 >= LINE_MAX_ATTEMPTS):
                log.error("giving up on thread line %s after %d attempts: %s", queued.key,
                          queued.attempts + 1, exc)
                self.outbox.give_up_line(queued.key, f"{type(exc).__name__}: {exc}")
                return True  # the lines behind it go on
            log.warning("posting thread line %s failed (retried): %s", queued.key, exc)
            return False

    # ------------------------------------------------------------------ the thread
    def start(self) -> None:
        """Start the deliverer thread (idempotent): ``serve`` at start-up, so lines a crashed
        process left queued go out at once; any process at its first line."""
        with self._lock:
            if self._thread is not None or self._stop.is_set():
                return
            self._thread = threading.Thread(target=self._loop, name="thread-delivery",
                                            daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        with self._lock:
            thread = self._thread
        if thread is not None:
            thread.join(timeout=5)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.deliver()
            except Exception:
                log.exception("thread delivery failed")
            self._wake.wait(self._next_wait())
            self._wake.clear()

    def _next_wait(self) -> float:
        """Until the next poll, or the moment the earliest hold lapses if sooner."""
        with self._lock:
            lapses = [until - self.monotonic() for until in self._held.values()]
        return max(0.0, min([self.poll_seconds, *lapses]))
