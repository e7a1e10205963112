"""The ``Chat`` and ``Directory`` ports without Slack, for ``rollback-bot auto`` in a cron job
or a CI pipeline where no Slack credentials are set.

Everything the core would have said in Slack is written, worded the same way, as one line
per message to a text stream (the job's stderr, so its stdout stays machine-readable). The
audit trail in the database is the record either way. The directory knows no Slack groups:
approvers are the configured ``users`` only, and a channel is called by the name the
configuration gives it (``automation.channel``), which the incident-channel rule checks.
"""

from __future__ import annotations

import itertools
import threading
from typing import TextIO

from bot.domain.messages import Message
from bot.domain.models import Rollback, Step
from bot.domain.ports import Notice
from handlers import views, views_aftercare, wording


class ConsoleChat:
    """Writes each message as ``[channel] text`` lines; message ids are local counters."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._keys: dict[tuple[str, str], str] = {}

    def _write(self, where: str, text: str) -> str:
        with self._lock:
            ts = f"console.{next(self._ids)}"
            for n, row in enumerate(text.splitlines() or [""]):
                self.stream.write(f"[{where}] {row}\n" if n == 0 else f"    {row}\n")
            self.stream.flush()
            return ts

    def post_request(self, rollback: Rollback, steps: list[Step]) -> tuple[str, str, str]:
        text, _blocks = views.rollback_message(rollback, steps)
        ts = self._write(rollback.channel_id, text)
        return rollback.channel_id, ts, ts

    def refresh(self, rollback: Rollback, steps: list[Step] | None = None) -> None:
        # The state changes are said by their own thread lines; re-printing the whole
        # request message at each refresh would bury them.
        return None

    def thread(self, rollback: Rollback, message: Message, *, mention: str | None = None,
               key: str | None = None) -> None:
        self._write(f"{rollback.channel_id} {rollback.ref}", wording.line(message))

    def ephemeral(self, *, channel_id: str, user_id: str, text: str) -> None:
        self._write(f"{channel_id} to {user_id}", text)

    def post_channel(self, channel: str, message: Message) -> str:
        return self._write(channel, wording.line(message))

    def upload(self, rollback: Rollback, *, filename: str, content: bytes, title: str) -> None:
        self._write(f"{rollback.channel_id} {rollback.ref}",
                    f"(file not attached without Slack: {filename}, {len(content)} bytes)")

    def notice(self, rollback: Rollback, notice: Notice, *, channel: str | None = None) -> str:
        where = channel or f"{rollback.channel_id} {rollback.ref}"
        return self._keyed(where, notice)

    def find_notice(self, rollback: Rollback, key: str, *, channel: str | None = None
                    ) -> str | None:
        with self._lock:
            return self._keys.get((channel or f"{rollback.channel_id} {rollback.ref}", key))

    def edit_notice(self, rollback: Rollback, ts: str, notice: Notice, *,
                    channel: str | None = None) -> None:
        self._write(channel or f"{rollback.channel_id} {rollback.ref}",
                    views_aftercare.fallback_text(wording.card(notice.message)))

    def post_notice(self, channel: str, notice: Notice) -> tuple[str, str]:
        return channel, self._keyed(channel, notice)

    def find_channel_notice(self, channel: str, key: str) -> str | None:
        with self._lock:
            return self._keys.get((channel, key))

    def upload_to(self, channel: str, thread_ts: str, *, filename: str, content: bytes,
                  title: str) -> None:
        self._write(channel, f"(file not attached without Slack: {filename}, "
                             f"{len(content)} bytes)")

    def _keyed(self, where: str, notice: Notice) -> str:
        ts = self._write(where, views_aftercare.fallback_text(wording.card(notice.message)))
        with self._lock:
            self._keys[(where, notice.key)] = ts
        return ts


class ConfiguredDirectory:
    """People and channels as the configuration names them (no Slack to ask)."""

    def usergroup_members(self, usergroup: str) -> set[str]:
        return set()  # no group can be read without Slack: only configured users count

    def usergroup_id(self, usergroup: str) -> str | None:
        return None  # unresolved: the text names the handle and says nobody was notified

    def channel_name(self, channel_id: str) -> str:
        return channel_id.lstrip("#")
