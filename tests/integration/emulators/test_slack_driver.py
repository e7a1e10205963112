"""The Slack driver against a real Bolt app served over HTTP, with the emulator behind it."""

from __future__ import annotations

from typing import Any

import pytest
from slack_bolt import Ack, App, BoltRequest, Respond, Say
from slack_sdk import WebClient

from sandbox.slack import (
    DEFAULT_CHANNEL,
    DriverError,
    ElementNotFound,
    Signing,
    SlackDriver,
    SlackEmulator,
)
from sandbox.slack.render import render_ephemeral, render_events, render_response, render_view

CHANNEL = DEFAULT_CHANNEL
Body = dict[str, Any]


def _text(text: str) -> dict[str, str]:
    return {"type": "plain_text", "text": text}


def _approval_blocks(rollback_id: str) -> list[dict[str, Any]]:
    return [
        {"type": "section", "text": {"type": "mrkdwn", "text": "*Roll back hotel-voice-bot?*"}},
        {
            "type": "actions",
            "block_id": "decision",
            "elements": [
                {"type": "button", "text": _text("Approve"), "action_id": "approve",
                 "value": rollback_id, "style": "primary"},
                {"type": "button", "text": _text("Reject"), "action_id": "reject",
                 "value": rollback_id, "style": "danger"},
                {"type": "static_select", "action_id": "severity", "placeholder": _text("Severity"),
                 "options": [{"text": _text(p), "value": p} for p in ("P0", "P1", "P2")]},
            ],
        },
    ]  # fmt: skip


def _modal(callback_id: str, title: str = "Roll back") -> dict[str, Any]:
    return {
        "type": "modal",
        "callback_id": callback_id,
        "private_metadata": "rb-7",
        "title": _text(title),
        "submit": _text("Start"),
        "blocks": [
            {
                "type": "input",
                "block_id": "reason",
                "label": _text("Reason"),
                "element": {"type": "plain_text_input", "action_id": "reason_input"},
            },
            {
                "type": "input",
                "block_id": "severity",
                "label": _text("Severity"),
                "element": {
                    "type": "static_select",
                    "action_id": "severity_select",
                    "options": [{"text": _text(p), "value": p} for p in ("P0", "P1")],
                },
            },
            {
                "type": "input",
                "block_id": "notes",
                "optional": True,
                "label": _text("Notes"),
                "element": {"type": "plain_text_input", "action_id": "notes_input"},
            },
        ],
    }


# -------------------------------------------------------------------- slash commands


def test_signed_slash_command_runs_the_handler(
    app: App, driver: SlackDriver, emulator: SlackEmulator
) -> None:
    seen: list[Body] = []

    @app.command("/rollback")
    def rollback(ack: Ack, command: Body, say: Say, respond: Respond) -> None:
        ack()
        seen.append(command)
        say(f"Rollback of {command['text']} requested by <@{command['user_id']}>")
        respond("Only you can see this")

    response = driver.slash_command("/rollback", "hotel-voice-bot", user="alice")
    assert response.status == 200

    emulator.wait_for(lambda: emulator.messages(CHANNEL) and emulator.ephemerals(user="alice"))
    [message] = emulator.messages(CHANNEL)
    assert (
        message["text"]
        == f"Rollback of hotel-voice-bot requested by <@{emulator.user_id('alice')}>"
    )
    [command] = seen
    assert command["command"] == "/rollback"
    assert command["user_name"] == "alice" and command["channel_name"] == CHANNEL
    assert command["team_id"] == emulator.ws.team_id
    assert command["response_url"] == response.response_url
    assert command["trigger_id"] == response.trigger_id
    assert command["api_app_id"] == emulator.app_id
    assert emulator.responses()[0]["action"] == "ephemeral"


def test_ack_text_is_shown_as_an_ephemeral_reply(
    app: App, driver: SlackDriver, emulator: SlackEmulator
) -> None:
    @app.command("/rollback")
    def rollback(ack: Ack) -> None:
        ack("Usage: /rollback <service>")

    response = driver.say("/rollback help", user="dave")
    assert response.status == 200
    assert response.message() == {"text": "Usage: /rollback <service>"}
    assert "Usage: /rollback <service>" in render_response(response)
    [shown] = emulator.ephemerals(user="dave")  # applied synchronously, nothing to wait for
    assert shown["text"] == "Usage: /rollback <service>" and shown["source"] == "ack"


def test_forged_signature_is_rejected(
    app: App, driver: SlackDriver, emulator: SlackEmulator
) -> None:
    ran: list[Body] = []
    app.command("/rollback")(lambda ack, command: (ack(), ran.append(command)))

    response = driver.slash_command("/rollback", "hotel-voice-bot", signing=Signing(forge=True))
    assert response.status == 401
    assert ran == []
    assert emulator.calls("chat.postMessage") == []


def test_stale_timestamp_is_rejected(app: App, driver: SlackDriver) -> None:
    ran: list[Body] = []
    app.command("/rollback")(lambda ack, command: (ack(), ran.append(command)))

    assert driver.slash_command("/rollback", "x", signing=Signing.stale()).status == 401
    assert ran == []
    # Sanity: the same command, freshly signed, is accepted.
    assert driver.slash_command("/rollback", "x").status == 200


def test_retry_resends_the_same_body_with_retry_headers(
    app: App, driver: SlackDriver, emulator: SlackEmulator
) -> None:
    seen: list[tuple[list[str] | None, str]] = []

    @app.command("/rollback")
    def rollback(ack: Ack, request: BoltRequest) -> None:
        ack()
        seen.append((request.headers.get("x-slack-retry-num"), request.raw_body))

    first = driver.slash_command("/rollback", "hotel-voice-bot")
    again = driver.resend(first, retry_num=1)
    assert again.status == 200 and again.request_body == first.request_body
    emulator.wait_for(lambda: len(seen) == 2)
    assert seen[0] == (None, first.request_body)
    assert seen[1] == (["1"], first.request_body)


# ---------------------------------------------------------------------- block_actions


def test_click_reaches_the_action_handler_with_slacks_payload(
    app: App, driver: SlackDriver, emulator: SlackEmulator
) -> None:
    clicks: list[Body] = []

    @app.command("/rollback")
    def rollback(ack: Ack, say: Say) -> None:
        ack()
        say(text="Approve the rollback?", blocks=_approval_blocks("rb-1"))

    @app.action("approve")
    def approve(ack: Ack, body: Body, client: WebClient) -> None:
        ack()
        clicks.append(body)
        client.chat_update(
            channel=body["channel"]["id"],
            ts=body["message"]["ts"],
            text="Approved",
            blocks=[{"type": "section", "text": {"type": "mrkdwn", "text": "Approved"}}],
        )

    driver.slash_command("/rollback", "hotel-voice-bot", user="alice")
    [message] = emulator.wait_for(lambda: emulator.messages(CHANNEL))

    response = driver.click(CHANNEL, message["ts"], "approve", user="bob")
    assert response.status == 200
    emulator.wait_for(lambda: emulator.message(CHANNEL, message["ts"])["text"] == "Approved")

    [body] = clicks
    bob = emulator.user_id("bob")
    assert body["type"] == "block_actions"
    assert body["user"] == {"id": bob, "username": "bob", "name": "bob", "team_id": "T0ROLLBACK"}
    assert body["container"] == {
        "type": "message",
        "message_ts": message["ts"],
        "channel_id": emulator.channel_id(CHANNEL),
        "is_ephemeral": False,
    }
    assert body["channel"] == {"id": emulator.channel_id(CHANNEL), "name": CHANNEL}
    assert body["message"]["ts"] == message["ts"]
    assert body["message"]["blocks"] == message["blocks"]
    assert body["trigger_id"] and body["response_url"] and body["api_app_id"] == emulator.app_id
    assert body["state"] == {"values": {}}
    [action] = body["actions"]
    assert action["action_id"] == "approve" and action["block_id"] == "decision"
    assert action["value"] == "rb-1" and action["type"] == "button"
    assert action["text"]["text"] == "Approve" and float(action["action_ts"]) > 0

    # The buttons are gone after the update: a second click is impossible.
    with pytest.raises(ElementNotFound):
        driver.click(CHANNEL, message["ts"], "approve", user="carol")


def test_click_in_a_direct_message_carries_slacks_dm_channel(
    app: App, driver: SlackDriver, emulator: SlackEmulator, client: WebClient
) -> None:
    clicks: list[Body] = []

    @app.action("approve")
    def approve(ack: Ack, body: Body) -> None:
        ack()
        clicks.append(body)

    dm = emulator.open_dm("bob")
    ts = client.chat_postMessage(channel=dm, text="Approve?", blocks=_approval_blocks("rb-1"))["ts"]
    assert driver.click(dm, ts, "approve", user="bob").status == 200
    [body] = clicks
    assert body["channel"] == {"id": dm, "name": "directmessage"}
    assert body["container"]["channel_id"] == dm


def test_static_select_sends_selected_option(
    app: App, driver: SlackDriver, emulator: SlackEmulator, client: WebClient
) -> None:
    picks: list[Body] = []

    @app.action("severity")
    def severity(ack: Ack, body: Body) -> None:
        ack()
        picks.append(body)

    ts = client.chat_postMessage(channel=CHANNEL, text="x", blocks=_approval_blocks("rb-2"))["ts"]
    driver.click(CHANNEL, ts, "severity", user="carol", value="P1")
    emulator.wait_for(lambda: picks)
    [action] = picks[0]["actions"]
    assert action["type"] == "static_select"
    assert action["selected_option"] == {"text": _text("P1"), "value": "P1"}
    # The client remembers the choice and echoes it in the message state.
    assert picks[0]["state"]["values"]["decision"]["severity"]["selected_option"]["value"] == "P1"
    with pytest.raises(DriverError):
        driver.click(CHANNEL, ts, "severity", user="carol", value="P9")


def test_click_on_an_ephemeral_message(
    app: App, driver: SlackDriver, emulator: SlackEmulator
) -> None:
    clicks: list[Body] = []

    @app.command("/rollback")
    def rollback(ack: Ack, respond: Respond) -> None:
        ack()
        respond(text="Confirm?", blocks=_approval_blocks("rb-3"))

    @app.action("approve")
    def approve(ack: Ack, body: Body, respond: Respond) -> None:
        ack()
        clicks.append(body)
        respond(text="Confirmed", replace_original=True)

    driver.slash_command("/rollback", "hotel-voice-bot", user="alice")
    [ephemeral] = emulator.wait_for(lambda: emulator.ephemerals(user="alice"))
    assert "[Approve] [Reject]" in render_ephemeral(ephemeral)
    with pytest.raises(ElementNotFound):  # nobody else sees alice's ephemeral message
        driver.click(CHANNEL, ephemeral["ts"], "approve", user="bob")

    driver.click(CHANNEL, ephemeral["ts"], "approve", user="alice")
    emulator.wait_for(lambda: emulator.ephemerals(user="alice")[0]["text"] == "Confirmed")
    assert clicks[0]["container"]["is_ephemeral"] is True
    assert "message" not in clicks[0]


# -------------------------------------------------------------------- view_submission


def test_view_submission_with_errors_then_success(
    app: App, driver: SlackDriver, emulator: SlackEmulator
) -> None:
    submitted: list[Body] = []

    @app.command("/rollback")
    def rollback(ack: Ack, body: Body, client: WebClient) -> None:
        ack()
        client.views_open(trigger_id=body["trigger_id"], view=_modal("rollback_modal"))

    @app.view("rollback_modal")
    def submit(ack: Ack, body: Body, view: Body) -> None:
        reason = view["state"]["values"]["reason"]["reason_input"]["value"]
        if len(reason) < 10:
            ack(response_action="errors", errors={"reason": "Say what went wrong"})
            return
        ack()
        submitted.append(body)

    driver.slash_command("/rollback", "", user="alice")
    [view] = emulator.wait_for(lambda: emulator.open_views("alice"))
    assert "Reason: [____" in render_view(view)

    with pytest.raises(DriverError, match="required input"):
        driver.submit_view("alice", {"reason_input": "x"})  # severity left empty

    first = driver.submit_view("alice", {"reason_input": "oops", "severity_select": "P1"})
    assert first.status == 200 and first.view_result == "errors"
    assert emulator.view_errors(view["id"]) == {"reason": "Say what went wrong"}
    assert len(emulator.open_views("alice")) == 1

    second = driver.submit_view(
        "alice", {"reason_input": "Error rate at 12% since deploy", "severity_select": "P1"}
    )
    assert second.view_result == "closed"
    assert emulator.open_views("alice") == []

    body = emulator.wait_for(lambda: submitted)[0]
    assert body["type"] == "view_submission" and body["response_urls"] == []
    assert body["user"]["id"] == emulator.user_id("alice")
    assert body["view"]["id"] == view["id"] and body["view"]["private_metadata"] == "rb-7"
    assert body["view"]["state"]["values"] == {
        "reason": {"reason_input": {"type": "plain_text_input",
                                    "value": "Error rate at 12% since deploy"}},
        "severity": {"severity_select": {"type": "static_select",
                                         "selected_option": {"text": _text("P1"), "value": "P1"}}},
        "notes": {"notes_input": {"type": "plain_text_input", "value": None}},
    }  # fmt: skip


def test_response_actions_push_update_and_clear(
    app: App, driver: SlackDriver, emulator: SlackEmulator, client: WebClient
) -> None:
    app.view("step1")(lambda ack: ack(response_action="push", view=_modal("step2", "Confirm")))
    app.view("step2")(lambda ack: ack(response_action="update", view=_modal("step3", "Sure?")))
    app.view("step3")(lambda ack: ack(response_action="clear"))

    client.views_open(trigger_id=emulator.issue_trigger_id("carol"), view=_modal("step1"))
    values = {"reason_input": "Elevated 5xx on voice calls", "severity_select": "P0"}

    assert driver.submit_view("carol", values).view_result == "pushed"
    stack = emulator.open_views("carol")
    assert [v["title"]["text"] for v in stack] == ["Roll back", "Confirm"]

    assert driver.submit_view("carol", values).view_result == "updated"
    updated = emulator.open_views("carol")
    assert updated[-1]["id"] == stack[-1]["id"] and updated[-1]["title"]["text"] == "Sure?"

    assert driver.submit_view("carol", values).view_result == "cleared"
    assert emulator.open_views("carol") == []


# ---------------------------------------------------------------------------- events


def test_mention_becomes_an_app_mention_event(
    app: App, driver: SlackDriver, emulator: SlackEmulator
) -> None:
    mentions: list[Body] = []

    @app.event("app_mention")
    def mentioned(event: Body, say: Say) -> None:
        mentions.append(event)
        say("On it", thread_ts=event["ts"])

    response = driver.say(f"<@{emulator.bot.id}> status please", user="dave")
    assert response.status == 200
    emulator.wait_for(lambda: mentions and emulator.calls("chat.postMessage"))
    assert mentions[0]["user"] == emulator.user_id("dave")
    [parent] = emulator.messages(CHANNEL)
    emulator.wait_for(lambda: len(emulator.thread(CHANNEL, parent["ts"])) == 2)


# ---------------------------------------------------------------------- CLI rendering


def test_cli_style_transcript(app: App, driver: SlackDriver, emulator: SlackEmulator) -> None:
    @app.command("/rollback")
    def rollback(ack: Ack, say: Say) -> None:
        ack("Assessing hotel-voice-bot…")
        say(text="Approve the rollback?", blocks=_approval_blocks("rb-9"))

    mark = len(emulator.events())
    driver.say("/rollback hotel-voice-bot", user="alice")
    emulator.wait_for(lambda: emulator.messages(CHANNEL))
    emulator.wait_idle(quiet=0.1, timeout=5)
    transcript = render_events(emulator, emulator.events(mark))
    assert "(only visible to @alice)" in transcript and "Assessing hotel-voice-bot…" in transcript
    assert "*Roll back hotel-voice-bot?*" in transcript
    assert "[Approve] [Reject] <Severity ▾>" in transcript
