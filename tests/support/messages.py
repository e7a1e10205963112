"""The bot's messages in the Slack emulator, found the same way by every test.

* ``request_message(emulator)`` is the pinned request message once the request flow has
  finished: the bot posts it first and fills in the assessment last, so a message whose
  blocks carry ``*Assessment*`` has its final buttons. ``find_request_message`` is the
  same lookup without waiting, for callers that poll with their own diagnostics.
* ``thread_texts(emulator, msg)`` are the texts of its thread, the root included.

``tests.e2e.conftest.Harness`` wraps these for one harness; tests that run their own
``SandboxStack`` or bot processes call them directly.
"""

from __future__ import annotations

from typing import Any

from sandbox.slack import SlackEmulator

__all__ = ["CHANNEL", "find_request_message", "request_message", "request_ref",
           "thread_texts"]

CHANNEL = "inc-hotel-voice-bot"  # the sandbox's incident channel


def find_request_message(emulator: SlackEmulator, ref_id: int | None = None, *,
                         channel: str = CHANNEL) -> dict[str, Any] | None:
    """The first request message in ``channel`` (of RB-``ref_id`` if given), once its
    assessment is rendered; None before."""
    for m in emulator.messages(channel):
        if any(b.get("type") == "header" for b in m.get("blocks") or []):
            if ref_id is None or f"RB-{ref_id}" in m.get("text", ""):
                return m if "*Assessment*" in str(m.get("blocks")) else None
    return None


def request_message(emulator: SlackEmulator, ref_id: int | None = None, *,
                    channel: str = CHANNEL, timeout: float = 15) -> dict[str, Any]:
    """``find_request_message``, waited for (re-checked on every change in Slack)."""
    msg = emulator.wait_for(lambda: find_request_message(emulator, ref_id, channel=channel),
                            timeout=timeout, description="the request message")
    assert msg is not None
    return dict(msg)


def request_ref(msg: dict[str, Any]) -> int:
    """The rollback id a request message is about (its text starts with ``RB-<id>``)."""
    return int(str(msg["text"]).split()[0].removeprefix("RB-"))


def thread_texts(emulator: SlackEmulator, msg: dict[str, Any], *,
                 channel: str = CHANNEL) -> list[str]:
    """The texts of ``msg``'s thread, oldest first (the root message included)."""
    return [str(m.get("text", "")) for m in emulator.thread(channel, msg["ts"])]
