"""The channel name a slash command's payload carries, as the ack's channel rule reads it:
Slack's placeholders are never taken for a channel's name."""

from __future__ import annotations

import pytest

from handlers.commands import payload_channel_name
from handlers.gateway import DIRECT_MESSAGE, GROUP_DM


@pytest.mark.parametrize(("sent", "read"), [
    ("inc-2024-checkout", "inc-2024-checkout"),
    ("general", "general"),
    ("directmessage", DIRECT_MESSAGE),  # a DM: refused by the rule like the directory says
    ("mpdm-alice--bob-1", GROUP_DM),
    ("privategroup", None),  # a private channel's name is unknown: checked after the ack
    ("", None),
    (None, None),
    (42, None),
])
def test_payload_channel_name(sent: object, read: str | None) -> None:
    body = {} if sent is None else {"channel_name": sent}
    assert payload_channel_name(body) == read
