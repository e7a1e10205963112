"""In-memory Slack workspace behind the emulator: directory, messages, views, files.

One lock guards everything; every change is appended to an event log, wakes `wait_for`
waiters and is handed to subscribers (the web console streams these later).
"""

from __future__ import annotations

import itertools
import logging
import re
import secrets
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from sandbox.slack.models import Call, Channel, Event, ResponseUrl, Trigger, User, Usergroup

log = logging.getLogger(__name__)

T = TypeVar("T")
Message = dict[str, Any]
Subscriber = Callable[["Event"], None]


def _slug(name: str) -> str:
    return re.sub(r"[^A-Z0-9]", "", name.upper())[:8] or "X"


class Workspace:
    """All emulator state. Public helpers lock; methods named `_x` expect the lock held."""

    def __init__(
        self,
        *,
        team_id: str = "T0ROLLBACK",
        team_domain: str = "rollback-sandbox",
        team_name: str = "Rollback Sandbox",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.team_id = team_id
        self.team_domain = team_domain
        self.team_name = team_name
        self.clock = clock
        # Reentrant so that wait_for predicates may call the locking helpers.
        self.lock = threading.RLock()
        self.cond = threading.Condition(self.lock)
        self.users: dict[str, User] = {}
        self.channels: dict[str, Channel] = {}
        self.usergroups: dict[str, Usergroup] = {}
        self.messages: dict[str, dict[str, Message]] = {}
        self.ephemerals: list[dict[str, Any]] = []
        self.views: dict[str, dict[str, Any]] = {}
        self.view_stacks: dict[str, list[str]] = {}
        self.view_errors: dict[str, dict[str, str]] = {}
        self.triggers: dict[str, Trigger] = {}
        self.files: dict[str, dict[str, Any]] = {}
        self.file_contents: dict[str, bytes] = {}
        self.upload_tokens: dict[str, str] = {}
        self.pins: dict[str, list[str]] = {}
        self.response_urls: dict[str, ResponseUrl] = {}
        self.responses: list[dict[str, Any]] = []
        self.call_log: list[Call] = []
        self.events: list[Event] = []
        # Dropped by ``forget_logs``: events keep their numbers, and position marks into
        # ``call_log`` stay meaningful, when the older entries are gone.
        self.forgotten_events = 0
        self.forgotten_calls = 0
        self._subscribers: list[Subscriber] = []
        self._last_ts = 0
        self._ids = itertools.count(1)

    # ----------------------------------------------------------- ids and time
    def new_id(self, prefix: str) -> str:
        """Slack-looking ids: a type letter and 10 upper-case alphanumerics."""
        with self.lock:
            return f"{prefix}0{next(self._ids):04d}{secrets.token_hex(3).upper()}"

    def next_ts(self) -> str:
        """A message ts from the clock, strictly increasing even within one microsecond."""
        with self.lock:
            micros = max(int(self.clock() * 1_000_000), self._last_ts + 1)
            self._last_ts = micros
            return f"{micros // 1_000_000}.{micros % 1_000_000:06d}"

    # ---------------------------------------------------------------- directory
    def add_user(
        self,
        name: str,
        *,
        real_name: str | None = None,
        user_id: str | None = None,
        is_bot: bool = False,
        bot_id: str | None = None,
        email: str | None = None,
        join_channels: bool = True,
    ) -> User:
        with self.lock:
            uid = user_id or f"U0{_slug(name)}"
            if uid in self.users:
                uid = self.new_id("U")
            user = User(uid, name, real_name or name.title(), is_bot, bot_id, email)
            self.users[uid] = user
            if join_channels:
                for channel in self.channels.values():
                    if not channel.is_private and not channel.is_im:
                        channel.members.add(uid)
            self._emit("user.added", user=user.to_api(self.team_id))
            return user

    def add_channel(
        self,
        name: str,
        *,
        channel_id: str | None = None,
        is_private: bool = False,
        members: list[str] | None = None,
    ) -> Channel:
        """Create a channel; members default to every user (including the bot)."""
        with self.lock:
            cid = channel_id or self.new_id("G" if is_private else "C")
            ids = (
                {self.resolve_user(m).id for m in members}
                if members is not None
                else set(self.users)
            )
            channel = Channel(cid, name, is_private, ids, int(self.clock()))
            self.channels[cid] = channel
            self.messages[cid] = {}
            self._emit("channel.added", channel=channel.to_api(team_id=self.team_id))
            return channel

    def add_mpim(self, users: list[str]) -> Channel:
        """The group DM of ``users`` (and the bot): one per set of members, as in Slack."""
        with self.lock:
            people = [self.resolve_user(u) for u in users]
            ids = {u.id for u in people} | {u.id for u in self.users.values() if u.is_bot}
            for channel in self.channels.values():
                if channel.is_mpim and channel.members == ids:
                    return channel
            # Slack names an MPIM after its members: mpdm-<a>--<b>--<c>-1.
            name = "mpdm-" + "--".join(sorted(u.name for u in people)) + "-1"
            cid = self.new_id("G")
            channel = Channel(cid, name, True, ids, int(self.clock()), is_mpim=True,
                              creator=people[0].id if people else "")
            self.channels[cid] = channel
            self.messages[cid] = {}
            self._emit("channel.added", channel=channel.to_api(team_id=self.team_id))
            return channel

    def dm(self, user: str) -> Channel:
        """The IM between ``user`` and the bot (opened if needed)."""
        with self.lock:
            uid = self.resolve_user(user).id
            channel = self._dm_with(uid)
            channel.members |= {u.id for u in self.users.values() if u.is_bot}
            return channel

    def archive(self, channel: str) -> Channel:
        """Archive a channel: it stays readable, posting to it fails with ``is_archived``."""
        with self.lock:
            ch = self.resolve_channel(channel)
            ch.is_archived = True
            self._emit("channel.archived", channel=ch.id)
            return ch

    def add_usergroup(
        self, handle: str, users: list[str], *, name: str | None = None, group_id: str | None = None
    ) -> Usergroup:
        with self.lock:
            gid = group_id or f"S0{_slug(handle)}"
            ids = [self.resolve_user(u).id for u in users]
            group = Usergroup(gid, handle, name or handle, ids)
            self.usergroups[gid] = group
            self._emit("usergroup.added", usergroup=group.to_api(self.team_id))
            return group

    def resolve_user(self, ref: str) -> User:
        """A user by id or name (`alice`, `@alice`); KeyError when unknown."""
        with self.lock:
            if ref in self.users:
                return self.users[ref]
            name = ref.lstrip("@")
            for user in self.users.values():
                if user.name == name:
                    return user
            raise KeyError(f"unknown user {ref!r}")

    def find_channel(self, ref: str) -> Channel | None:
        """A channel by id, name or `#name`; a user id means the DM with that user."""
        with self.lock:
            if ref in self.channels:
                return self.channels[ref]
            name = ref.lstrip("#")
            for channel in self.channels.values():
                if channel.name == name and not channel.is_im:
                    return channel
            if ref in self.users:
                return self._dm_with(ref)
            return None

    def resolve_channel(self, ref: str) -> Channel:
        channel = self.find_channel(ref)
        if channel is None:
            raise KeyError(f"unknown channel {ref!r}")
        return channel

    def _dm_with(self, user_id: str) -> Channel:
        for channel in self.channels.values():
            if channel.is_im and user_id in channel.members:
                return channel
        cid = self.new_id("D")
        channel = Channel(cid, user_id, True, {user_id}, int(self.clock()), is_im=True)
        self.channels[cid] = channel
        self.messages[cid] = {}
        return channel

    # ---------------------------------------------------------------- messages
    def _store_message(self, channel: Channel, message: Message, thread_ts: str | None) -> Message:
        """Append a message (top level or thread reply) and keep thread counters like Slack."""
        ts = message["ts"]
        messages = self.messages[channel.id]
        if thread_ts:
            parent = messages[thread_ts]
            # Replying to a reply lands in the same thread, as in Slack.
            root_ts = parent.get("thread_ts", thread_ts)
            root = messages[root_ts]
            message["thread_ts"] = root_ts
            message["parent_user_id"] = root.get("user")
            root["thread_ts"] = root_ts
            root["reply_count"] = root.get("reply_count", 0) + 1
            reply_users = root.setdefault("reply_users", [])
            if message.get("user") not in reply_users:
                reply_users.append(message.get("user"))
            root["reply_users_count"] = len(reply_users)
            root["latest_reply"] = ts
        messages[ts] = message
        self._emit("message.posted", channel=channel.id, ts=ts, thread_ts=message.get("thread_ts"))
        return message

    def message(self, channel: str, ts: str) -> Message | None:
        with self.lock:
            ch = self.find_channel(channel)
            return None if ch is None else self.messages[ch.id].get(ts)

    def channel_messages(self, channel: str) -> list[Message]:
        """Top-level messages (and thread broadcasts) in posting order."""
        with self.lock:
            ch = self.resolve_channel(channel)
            return [
                m
                for m in self.messages[ch.id].values()
                if m.get("thread_ts", m["ts"]) == m["ts"] or m.get("subtype") == "thread_broadcast"
            ]

    def thread(self, channel: str, ts: str) -> list[Message]:
        """The parent followed by its replies, oldest first."""
        with self.lock:
            ch = self.resolve_channel(channel)
            msgs = self.messages[ch.id]
            return [m for m in msgs.values() if m["ts"] == ts or m.get("thread_ts") == ts]

    # ------------------------------------------------------------- observation
    def subscribe(self, callback: Subscriber) -> Callable[[], None]:
        """Call `callback(event)` on every change (under the lock: it must not block).

        Returns a function that unsubscribes.
        """
        with self.lock:
            self._subscribers.append(callback)

        def unsubscribe() -> None:
            with self.lock:
                if callback in self._subscribers:
                    self._subscribers.remove(callback)

        return unsubscribe

    def _emit(self, kind: str, **data: Any) -> Event:
        event = Event(self.last_seq() + 1, kind, data, self.clock())
        self.events.append(event)
        self.cond.notify_all()
        for callback in list(self._subscribers):
            try:
                callback(event)
            except Exception:  # a broken console must never break the emulator
                log.exception("slack emulator subscriber failed on %s", kind)
        return event

    def last_seq(self) -> int:
        """The number of the last event emitted (0 before the first), forgotten or not."""
        return self.forgotten_events + len(self.events)

    def events_since(self, seq: int) -> list[Event]:
        """The events numbered above ``seq`` that are still kept."""
        return self.events[max(0, seq - self.forgotten_events):]

    def forget_logs(self) -> None:
        """Drop the request, event and response_url logs (messages, files and pins stay)."""
        with self.lock:
            self.forgotten_events += len(self.events)
            self.forgotten_calls += len(self.call_log)
            self.events.clear()
            self.call_log.clear()
            self.responses.clear()

    def emit(self, kind: str, **data: Any) -> Event:
        with self.lock:
            return self._emit(kind, **data)

    def record_call(self, call: Call) -> None:
        with self.lock:
            self.call_log.append(call)
            self._emit("api.call", method=call.method, ok=call.ok, error=call.error)

    def wait_for(
        self, predicate: Callable[[], T], timeout: float = 5.0, *, description: str = ""
    ) -> T:
        """Block until `predicate()` is truthy (re-checked on every change); return its value."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                result = predicate()
                if result:
                    return result
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    what = description or getattr(predicate, "__name__", "condition")
                    raise TimeoutError(f"slack emulator: {what} not met within {timeout}s")
                self.cond.wait(remaining)

    def wait_idle(self, quiet: float = 0.3, timeout: float = 10.0) -> int:
        """Block until no change happened for `quiet` seconds; returns the last event seq.

        For the CLI, which cannot know how many replies a command will cause.
        """
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                seen = self.last_seq()
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"slack emulator: still busy after {timeout}s")
                self.cond.wait(min(quiet, remaining))
                if self.last_seq() == seen and remaining >= quiet:
                    return seen
