"""Slack-backed implementations of the core's ``Chat`` and ``Directory`` ports.

Every outbound Slack call the core makes goes through here, so rendering (``views`` for the
request message, ``wording`` for every line, post and notice the core says as a message)
and delivery stay in the Slack layer and ``bot`` never imports slack_sdk.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot.domain.errors import UserFacingError
from bot.domain.messages import Message
from bot.domain.models import Rollback, Step
from bot.domain.ports import Notice
from handlers import views, views_aftercare, wording
from handlers.mrkdwn import mention as at

log = logging.getLogger(__name__)


class SlackChat:
    def __init__(self, client: WebClient) -> None:
        self.client = client

    def post_request(self, rollback: Rollback, steps: list[Step]) -> tuple[str, str, str]:
        text, blocks = views.rollback_message(rollback, steps)
        resp = self.client.chat_postMessage(channel=rollback.channel_id.lstrip("#"), text=text,
                                            blocks=blocks)
        ts, channel = str(resp["ts"]), str(resp.get("channel") or rollback.channel_id)
        try:
            self.client.pins_add(channel=channel, timestamp=ts)
        except SlackApiError as exc:  # pinning is a courtesy; never fail a rollback on it
            log.info("could not pin %s: %s", rollback.ref, exc.response.get("error"))
        return channel, ts, ts

    def refresh(self, rollback: Rollback, steps: list[Step] | None = None) -> None:
        if steps is None:  # the core's LatestStateChat always supplies the current steps
            raise ValueError("SlackChat.refresh needs the rollback's steps")
        if not rollback.message_ts:
            return
        text, blocks = views.rollback_message(rollback, steps)
        self.client.chat_update(channel=rollback.channel_id, ts=rollback.message_ts, text=text,
                                blocks=blocks)

    def thread(self, rollback: Rollback, message: Message, *, mention: str | None = None,
               key: str | None = None) -> None:
        # Worded here from the core's facts; what people typed (a rejection reason, a
        # note) is escaped piece by piece, so only the bot's own mentions render.
        text = wording.line(message)
        if mention:
            text = f"{at(mention)} {text}"
        # A line from the outbox carries its key, so find_notice finds it after a crash.
        self.client.chat_postMessage(channel=rollback.channel_id,
                                     thread_ts=rollback.thread_ts or rollback.message_ts,
                                     text=text,
                                     metadata=views_aftercare.notice_metadata(key) if key
                                     else None)

    def ephemeral(self, *, channel_id: str, user_id: str, text: str) -> None:
        self.client.chat_postEphemeral(channel=channel_id, user=user_id, text=text,
                                       blocks=views.error_blocks(text))

    def post_channel(self, channel: str, message: Message) -> str:
        return str(self.client.chat_postMessage(channel=channel.lstrip("#"),
                                                text=wording.line(message))["ts"])

    def upload(self, rollback: Rollback, *, filename: str, content: bytes, title: str) -> None:
        self.client.files_upload_v2(channel=rollback.channel_id, content=content,
                                    filename=filename, title=title,
                                    thread_ts=rollback.thread_ts or rollback.message_ts)

    # ------------------------------------------------------------------ aftercare notices
    def _where(self, rollback: Rollback, channel: str | None) -> dict[str, Any]:
        if channel:
            return {"channel": channel.lstrip("#")}
        return {"channel": rollback.channel_id,
                "thread_ts": rollback.thread_ts or rollback.message_ts}

    def notice(self, rollback: Rollback, notice: Notice, *, channel: str | None = None) -> str:
        card = wording.card(notice.message)
        resp = self.client.chat_postMessage(
            **self._where(rollback, channel), text=views_aftercare.fallback_text(card),
            blocks=views_aftercare.notice_blocks(card, key=notice.key),
            metadata=views_aftercare.notice_metadata(notice.key))
        return str(resp["ts"])

    def find_notice(self, rollback: Rollback, key: str, *, channel: str | None = None
                    ) -> str | None:
        where = self._where(rollback, channel)
        if "thread_ts" in where:
            resp = self.client.conversations_replies(channel=where["channel"],
                                                     ts=where["thread_ts"], limit=1000,
                                                     include_all_metadata=True)
        else:  # a channel post: it is recent, the newest page is enough
            resp = self.client.conversations_history(channel=where["channel"], limit=200,
                                                     include_all_metadata=True)
        for message in resp.get("messages") or []:
            if views_aftercare.carries_key(message, key):
                return str(message["ts"])
        return None

    def edit_notice(self, rollback: Rollback, ts: str, notice: Notice, *,
                    channel: str | None = None) -> None:
        card = wording.card(notice.message)
        self.client.chat_update(channel=self._where(rollback, channel)["channel"], ts=ts,
                                text=views_aftercare.fallback_text(card),
                                blocks=views_aftercare.notice_blocks(card, key=notice.key))


    # ------------------------------------------------------------------ channel notices
    def post_notice(self, channel: str, notice: Notice) -> tuple[str, str]:
        card = wording.card(notice.message)
        resp = self.client.chat_postMessage(
            channel=channel.lstrip("#"), text=views_aftercare.fallback_text(card),
            blocks=views_aftercare.notice_blocks(card, key=notice.key),
            metadata=views_aftercare.notice_metadata(notice.key))
        return str(resp.get("channel") or channel.lstrip("#")), str(resp["ts"])

    def find_channel_notice(self, channel: str, key: str) -> str | None:
        resp = self.client.conversations_history(channel=channel.lstrip("#"), limit=200,
                                                 include_all_metadata=True)
        for message in resp.get("messages") or []:
            if views_aftercare.carries_key(message, key):
                return str(message["ts"])
        return None

    def upload_to(self, channel: str, thread_ts: str, *, filename: str, content: bytes,
                  title: str) -> None:
        self.client.files_upload_v2(channel=channel.lstrip("#"), content=content,
                                    filename=filename, title=title, thread_ts=thread_ts)


class SlackDirectory:
    """Usergroup members and channel names.

    Members are read from Slack at every call, never cached: each read is an authority
    decision (approve, cancel, resolve…), and someone removed from the approvers group must
    not approve a second later. What grants nothing is cached: channel names, and for
    ``group_id_ttl`` seconds which group id a configured handle names (configure the id,
    ``S…``, to skip that lookup). An expired group id is still used while it is looked up
    again in the background, and ``warm`` looks a request's group up as it is made: an
    approval waits on one Slack call, the membership read, never on usergroups.list."""

    def __init__(self, client: WebClient, *, group_id_ttl: float = 300.0) -> None:
        self.client = client
        self.group_id_ttl = group_id_ttl
        self._lock = threading.Lock()
        self._group_ids: dict[str, tuple[float, str]] = {}
        self._channels: dict[str, str] = {}
        self._refreshing: set[str] = set()

    def warm(self, usergroups: set[str]) -> None:
        """Look these groups' ids up in the background (a request was just made)."""
        if not usergroups:
            return

        def run() -> None:
            for ref in sorted(usergroups):
                try:
                    self._usergroup_id(ref)
                except Exception as exc:  # the approval looks it up again, and says why
                    log.info("looking usergroup %s up failed: %s", ref, exc)

        threading.Thread(target=run, name="usergroup-ids", daemon=True).start()

    def usergroup_members(self, usergroup: str) -> set[str]:
        try:
            resp = self.client.usergroups_users_list(usergroup=self._usergroup_id(usergroup))
        except SlackApiError as exc:
            error = exc.response.get("error")
            log.warning("reading usergroup %s failed: %s", usergroup, error)
            with self._lock:
                self._group_ids.pop(usergroup, None)
            # Fail closed, and say so: nobody is taken for an approver on a failed read.
            raise UserFacingError(
                f"I could not read the members of the `{usergroup}` group from Slack "
                f"({error}), so I did nothing. Try again in a moment.") from None
        return set(resp.get("users") or [])

    def usergroup_id(self, usergroup: str) -> str | None:
        """The group's id, to mention it (``<!subteam^S…>``); None for a handle Slack does
        not know (a mention built from it would be broken markup)."""
        found = self._usergroup_id(usergroup)
        return found if _is_usergroup_id(found) else None

    def _usergroup_id(self, ref: str) -> str:
        """Config may name a group by handle (``sre-approvers``) or id (``S0123ABC``)."""
        if _is_usergroup_id(ref):
            return ref
        with self._lock:
            hit = self._group_ids.get(ref)
            stale = hit is not None and time.monotonic() - hit[0] >= self.group_id_ttl
            refresh = stale and ref not in self._refreshing
            if refresh:
                self._refreshing.add(ref)
        if hit and refresh:
            threading.Thread(target=self._look_up_again, args=(ref,), daemon=True,
                             name="usergroup-id").start()
        if hit:
            return hit[1]
        return self._look_up(ref)

    def _look_up_again(self, ref: str) -> None:
        try:
            self._look_up(ref)
        except Exception as exc:  # keep the id we have; the next use tries again
            log.info("looking usergroup %s up again failed: %s", ref, exc)
        finally:
            with self._lock:
                self._refreshing.discard(ref)

    def _look_up(self, ref: str) -> str:
        groups = self.client.usergroups_list().get("usergroups") or []
        for group in groups:
            if group.get("handle") == ref.lstrip("@") and group.get("id"):
                with self._lock:
                    self._group_ids[ref] = (time.monotonic(), str(group["id"]))
                return str(group["id"])
        return ref  # let usergroups.users.list report no_such_subteam

    def channel_name(self, channel_id: str) -> str:
        """What the channel rule matches: the channel's name, or for a conversation without
        one a readable description that never matches a channel pattern."""
        with self._lock:
            if channel_id in self._channels:
                return self._channels[channel_id]
        try:
            resp = self.client.conversations_info(channel=channel_id)
        except SlackApiError as exc:
            log.info("conversations.info %s failed: %s", channel_id, exc.response.get("error"))
            return channel_id
        name = conversation_name(resp.get("channel") or {}) or channel_id
        with self._lock:
            self._channels[channel_id] = name
        return name


def _is_usergroup_id(ref: str) -> bool:
    """Shaped like a usergroup id (``S0123ABC``) rather than a handle (``sre-approvers``)."""
    return ref[:1] == "S" and ref.isupper() and ref.isalnum()


DIRECT_MESSAGE = "direct message"
GROUP_DM = "group DM"


def conversation_name(info: dict[str, Any]) -> str | None:
    """The name of a conversation object, read the way Slack documents it: every field but
    ``id`` is optional (https://docs.slack.dev/reference/objects/conversation-object). An IM
    has no ``name``; an MPIM's ``mpdm-a--b-1`` is no channel name a person would recognise,
    and both descriptions contain a space, so no channel pattern can match them."""
    if info.get("is_im"):
        return DIRECT_MESSAGE
    name = info.get("name")
    if info.get("is_mpim") or (isinstance(name, str) and name.startswith("mpdm-")):
        return GROUP_DM
    return name if isinstance(name, str) and name else None
