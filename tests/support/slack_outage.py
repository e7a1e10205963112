"""The opening of a Slack-outage test: a rollback requested and shown, then Slack refusing
every ``chat.postMessage`` before anyone approves it.

The request is posted while Slack still answers (its message is the one the approver
clicks); only what comes after the approval meets the outage. ``internal_error`` is the
refusal a retry can cure (Slack's 5xx family), unlike ``channel_not_found``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tests.support.waiting import wait_until

if TYPE_CHECKING:
    from tests.e2e.conftest import Harness


def requested_then_slack_refuses(h: Harness, request: str, *, refusals: int
                                 ) -> tuple[int, dict[str, Any]]:
    """``/rollback request`` by alice, stored and posted; then the next ``refusals`` thread
    and channel posts fail. Returns the rollback's id and request message."""
    store = h.bot.store
    h.request(request, user="alice")
    rid: int = wait_until(lambda: store.history("hotel-voice-bot")
                          and store.history("hotel-voice-bot")[0].id,
                          message="the request stored")
    msg = h.rollback_message(rid)
    h.emulator.wait_idle()
    h.emulator.fail_next("chat.postMessage", "internal_error", times=refusals)
    return rid, msg
