"""Records the emulated workspace holds: users, channels, usergroups, calls, events.

Plain dataclasses with `to_api()` giving the JSON shape Slack's Web API returns.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class User:
    id: str
    name: str
    real_name: str
    is_bot: bool = False
    bot_id: str | None = None
    email: str | None = None
    tz: str = "Europe/Berlin"

    def to_api(self, team_id: str) -> dict[str, Any]:
        """The `user` object as users.info returns it."""
        profile: dict[str, Any] = {
            "real_name": self.real_name,
            "display_name": self.name,
            "real_name_normalized": self.real_name,
            "display_name_normalized": self.name,
            "team": team_id,
        }
        if self.email:
            profile["email"] = self.email
        if self.bot_id:
            profile["bot_id"] = self.bot_id
        return {
            "id": self.id,
            "team_id": team_id,
            "name": self.name,
            "real_name": self.real_name,
            "deleted": False,
            "is_bot": self.is_bot,
            "is_app_user": False,
            "is_admin": False,
            "tz": self.tz,
            "profile": profile,
        }


@dataclass
class Channel:
    """Any conversation: public or private channel, IM (direct message) or MPIM (group DM).

    ``to_api`` follows Slack's conversation object
    (https://docs.slack.dev/reference/objects/conversation-object, and its legacy IM and
    MPIM pages https://docs.slack.dev/reference/objects/im-object and .../mpim-object):
    an IM has ``is_im`` and the other person's ``user`` but no ``name``; an MPIM is
    private, ``is_mpim``, and named ``mpdm-<a>--<b>--<c>-1``.
    """

    id: str
    name: str
    is_private: bool = False
    members: set[str] = field(default_factory=set)
    created: int = 0
    is_im: bool = False
    topic: str = ""
    is_mpim: bool = False
    is_archived: bool = False
    creator: str = ""

    def to_api(self, *, team_id: str = "", viewer: str | None = None) -> dict[str, Any]:
        """The `channel` object as conversations.info returns it to ``viewer`` (a user id)."""
        if self.is_im:
            # Slack's IM shape: no name, no is_channel/is_group/is_mpim, no topic or purpose.
            others = sorted(self.members - {viewer}) if viewer else sorted(self.members)
            info: dict[str, Any] = {
                "id": self.id,
                "created": self.created,
                "is_archived": self.is_archived,
                "is_im": True,
                "is_org_shared": False,
                "context_team_id": team_id,
                "user": others[0] if others else viewer,
                "is_user_deleted": False,
                "priority": 0,
            }
            return info
        info = {
            "id": self.id,
            "name": self.name,
            "name_normalized": self.name,
            "created": self.created,
            "creator": self.creator,
            "is_channel": not self.is_private,
            "is_group": self.is_private and not self.is_mpim,
            "is_im": False,
            "is_mpim": self.is_mpim,
            "is_private": self.is_private,
            "is_archived": self.is_archived,
            "is_general": False,
            "is_shared": False,
            "is_ext_shared": False,
            "is_org_shared": False,
            "context_team_id": team_id,
            "is_member": True,
            "num_members": len(self.members),
            "topic": {"value": self.topic, "creator": "", "last_set": 0},
            "purpose": {"value": "", "creator": "", "last_set": 0},
        }
        return info


@dataclass
class Usergroup:
    id: str
    handle: str
    name: str
    users: list[str] = field(default_factory=list)

    def to_api(self, team_id: str) -> dict[str, Any]:
        return {
            "id": self.id,
            "team_id": team_id,
            "handle": self.handle,
            "name": self.name,
            "is_usergroup": True,
            "user_count": len(self.users),
            "users": list(self.users),
        }


@dataclass(frozen=True)
class Call:
    """One request the emulator received (Web API method, upload or response_url)."""

    method: str
    params: dict[str, Any]
    timestamp: float
    ok: bool
    error: str | None = None
    response: dict[str, Any] | None = None


@dataclass(frozen=True)
class Event:
    """A state change, numbered so that a console can resume from `seq`."""

    seq: int
    kind: str
    data: dict[str, Any]
    timestamp: float


@dataclass
class ResponseUrl:
    """What Slack remembers about one issued response_url."""

    token: str
    channel: str
    user: str
    message_ts: str | None = None
    is_ephemeral: bool = False
    thread_ts: str | None = None
    uses: int = 0
    issued_at: float = 0.0


@dataclass
class Trigger:
    id: str
    user: str
    issued_at: float
    used: bool = False
