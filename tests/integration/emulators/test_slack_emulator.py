"""The Slack emulator, driven by the real slack_sdk WebClient over HTTP."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.webhook import WebhookClient

from sandbox.slack import DEFAULT_BOT_TOKEN, DEFAULT_CHANNEL, Event, SlackEmulator
from sandbox.slack.render import render_channel

CHANNEL = DEFAULT_CHANNEL


def _error(excinfo: pytest.ExceptionInfo[SlackApiError]) -> str:
    return str(excinfo.value.response["error"])


def _button(text: str, action_id: str, value: str = "v") -> dict[str, Any]:
    return {
        "type": "button",
        "text": {"type": "plain_text", "text": text},
        "action_id": action_id,
        "value": value,
    }


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}}


def _modal(title: str = "Roll back", **extra: Any) -> dict[str, Any]:
    view = {
        "type": "modal",
        "callback_id": "rollback_modal",
        "title": {"type": "plain_text", "text": title},
        "submit": {"type": "plain_text", "text": "Start"},
        "blocks": [
            {
                "type": "input",
                "block_id": "reason",
                "label": {"type": "plain_text", "text": "Reason"},
                "element": {"type": "plain_text_input", "action_id": "reason_input"},
            }
        ],
    }
    return {**view, **extra}


# --------------------------------------------------------------------------- auth


def test_auth_test_answers_for_the_bot(client: WebClient, emulator: SlackEmulator) -> None:
    answer = client.auth_test()
    assert answer["ok"] is True
    assert answer["user_id"] == emulator.bot.id
    assert answer["team_id"] == emulator.ws.team_id
    assert answer["bot_id"] == "B0ROLLBOT"


def test_wrong_token_is_invalid_auth(emulator: SlackEmulator) -> None:
    bad = WebClient(token="xoxb-not-the-token", base_url=emulator.base_url)
    with pytest.raises(SlackApiError) as excinfo:
        bad.auth_test()
    assert _error(excinfo) == "invalid_auth"
    assert excinfo.value.response.status_code == 200  # Slack answers errors with HTTP 200


def test_missing_token_is_not_authed(emulator: SlackEmulator) -> None:
    anonymous = WebClient(base_url=emulator.base_url)
    with pytest.raises(SlackApiError) as excinfo:
        anonymous.chat_postMessage(channel=CHANNEL, text="hi")
    assert _error(excinfo) == "not_authed"
    assert emulator.messages(CHANNEL) == []


def test_unknown_method(client: WebClient) -> None:
    with pytest.raises(SlackApiError) as excinfo:
        client.api_call("chat.teleport")
    assert _error(excinfo) == "unknown_method"


# ------------------------------------------------------------------------ messages


def test_post_update_and_thread_replies(client: WebClient, emulator: SlackEmulator) -> None:
    posted = client.chat_postMessage(
        channel=CHANNEL, text="Rollback proposed", blocks=[_section("*Plan*")]
    )
    channel_id, ts = posted["channel"], posted["ts"]
    assert channel_id == emulator.channel_id(CHANNEL)
    assert re.fullmatch(r"\d{10}\.\d{6}", ts)
    assert posted["message"]["blocks"][0]["block_id"]  # Slack assigns missing block_ids

    updated = client.chat_update(channel=channel_id, ts=ts, text="Rollback approved")
    assert updated["text"] == "Rollback approved"
    stored = emulator.message(channel_id, ts)
    assert stored is not None and stored["edited"]["user"] == emulator.bot.id
    assert stored["blocks"][0]["text"]["text"] == "*Plan*"  # omitted blocks are kept

    first = client.chat_postMessage(channel=channel_id, thread_ts=ts, text="step 1 done")
    second = client.chat_postMessage(
        channel=channel_id, thread_ts=ts, text="done", reply_broadcast=True
    )
    assert ts < first["ts"] < second["ts"]
    assert [m["text"] for m in emulator.thread(channel_id, ts)] == [
        "Rollback approved",
        "step 1 done",
        "done",
    ]
    parent = emulator.message(channel_id, ts)
    assert parent is not None
    assert parent["reply_count"] == 2 and parent["latest_reply"] == second["ts"]
    # Plain replies stay in the thread; the broadcast one also shows in the channel.
    assert [m["ts"] for m in emulator.messages(CHANNEL)] == [ts, second["ts"]]

    replies = client.conversations_replies(channel=channel_id, ts=ts)
    assert len(replies["messages"]) == 3


def test_reply_to_unknown_thread_and_update_unknown_message(client: WebClient) -> None:
    with pytest.raises(SlackApiError) as excinfo:
        client.chat_postMessage(channel=CHANNEL, thread_ts="1.000001", text="x")
    assert _error(excinfo) == "thread_not_found"
    with pytest.raises(SlackApiError) as excinfo:
        client.chat_update(channel=CHANNEL, ts="1.000001", text="x")
    assert _error(excinfo) == "message_not_found"


def test_form_encoded_calls_work_like_json_ones(emulator: SlackEmulator) -> None:
    # slack_sdk sends chat.postMessage as JSON; other clients (curl) send forms.
    answer = httpx.post(
        emulator.base_url + "chat.postMessage",
        data={
            "token": DEFAULT_BOT_TOKEN,
            "channel": CHANNEL,
            "text": "from a form",
            "blocks": '[{"type": "divider"}]',
        },
    ).json()
    assert answer["ok"] is True
    assert answer["message"]["blocks"][0]["type"] == "divider"
    # A token inside a JSON body does not count, exactly as on slack.com.
    answer = httpx.post(emulator.base_url + "auth.test", json={"token": DEFAULT_BOT_TOKEN}).json()
    assert answer == {"ok": False, "error": "not_authed"}


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"blocks": [{"type": "header", "text": {"type": "plain_text", "text": "h" * 151}}]},
         "invalid_blocks"),
        ({"blocks": [{"type": "header", "text": {"type": "mrkdwn", "text": "h"}}]},
         "invalid_blocks"),
        ({"blocks": [_section("s" * 3001)]}, "invalid_blocks"),
        ({"blocks": [_section("x")] * 51}, "invalid_blocks"),
        ({"blocks": [{"type": "actions", "elements": [_button("b" * 76, "a")]}]},
         "invalid_blocks"),
        ({"blocks": [{"type": "actions", "elements": [_button("b", "a" * 256)]}]},
         "invalid_blocks"),
        ({"blocks": [{"type": "actions", "elements": [_button("b", "a", "v" * 2001)]}]},
         "invalid_blocks"),
        ({"blocks": [{"type": "actions",
                      "elements": [_button("b", f"a{i}") for i in range(26)]}]},
         "invalid_blocks"),
        ({"blocks": [{"type": "section",
                      "fields": [{"type": "mrkdwn", "text": "f"}] * 11}]},
         "invalid_blocks"),
        ({"blocks": [{"type": "carousel_of_doom"}]}, "invalid_blocks"),
        ({"blocks": [{"type": "section", "txet": {"type": "mrkdwn", "text": "typo"}}]},
         "invalid_blocks"),
        ({"blocks": [{"type": "actions",
                      "elements": [_button("a", "same"), _button("b", "same")]}]},
         "invalid_blocks"),
        ({"blocks": [{**_section("1"), "block_id": "x"}, {**_section("2"), "block_id": "x"}]},
         "invalid_blocks"),
        ({"text": "t" * 40_001}, "msg_too_long"),
        pytest.param({}, "no_text", marks=pytest.mark.filterwarnings("ignore::UserWarning")),
    ],
)  # fmt: skip
def test_rejects_what_slack_rejects(
    client: WebClient, emulator: SlackEmulator, kwargs: dict[str, Any], error: str
) -> None:
    args = {"text": "fallback", **kwargs} if "blocks" in kwargs else kwargs
    with pytest.raises(SlackApiError) as excinfo:
        client.chat_postMessage(channel=CHANNEL, **args)
    assert _error(excinfo) == error
    if error == "invalid_blocks":
        assert excinfo.value.response["errors"]  # details name the offending json-pointer
    assert emulator.messages(CHANNEL) == []


def test_missing_or_unknown_channel(client: WebClient) -> None:
    for channel in ("", "no-such-channel", "C0NOPE"):
        with pytest.raises(SlackApiError) as excinfo:
            client.chat_postMessage(channel=channel, text="hi")
        assert _error(excinfo) == "channel_not_found"


def test_private_channel_without_the_bot_is_invisible(
    client: WebClient, emulator: SlackEmulator
) -> None:
    emulator.add_channel("secret", is_private=True, members=["alice"])
    with pytest.raises(SlackApiError) as excinfo:
        client.chat_postMessage(channel="secret", text="hi")
    assert _error(excinfo) == "channel_not_found"


def test_ephemeral_pins_and_directory(client: WebClient, emulator: SlackEmulator) -> None:
    alice = emulator.user_id("alice")
    answer = client.chat_postEphemeral(channel=CHANNEL, user=alice, text="only you")
    [ephemeral] = emulator.ephemerals(user="alice")
    assert ephemeral["ts"] == answer["message_ts"] and ephemeral["text"] == "only you"
    assert emulator.messages(CHANNEL) == []

    outsider = emulator.add_user("eve", join_channels=False)
    with pytest.raises(SlackApiError) as excinfo:
        client.chat_postEphemeral(channel=CHANNEL, user=outsider.id, text="x")
    assert _error(excinfo) == "user_not_in_channel"

    ts = client.chat_postMessage(channel=CHANNEL, text="plan")["ts"]
    client.pins_add(channel=emulator.channel_id(CHANNEL), timestamp=ts)
    assert emulator.pins(CHANNEL) == [ts]
    with pytest.raises(SlackApiError) as excinfo:
        client.pins_add(channel=emulator.channel_id(CHANNEL), timestamp=ts)
    assert _error(excinfo) == "already_pinned"

    info = client.conversations_info(channel=emulator.channel_id(CHANNEL))["channel"]
    assert info["name"] == CHANNEL and info["is_private"] is False
    user = client.users_info(user=emulator.user_id("carol"))["user"]
    assert user["real_name"] == "Carol Chen" and user["is_bot"] is False
    with pytest.raises(SlackApiError) as excinfo:
        client.users_info(user="U0NOBODY")
    assert _error(excinfo) == "user_not_found"


def test_conversations_shaped_like_slacks_ims_mpims_and_archived_channels(
    client: WebClient, emulator: SlackEmulator
) -> None:
    """conversations.info as Slack documents it: an IM has no name, an MPIM is a private
    ``mpdm-…`` conversation, an archived channel is readable but refuses posts."""
    bob = emulator.user_id("bob")
    dm = client.conversations_open(users=bob)["channel"]["id"]
    assert dm.startswith("D") and dm == emulator.open_dm("bob")
    im = client.conversations_info(channel=dm)["channel"]
    assert im["is_im"] is True and im["user"] == bob and im["is_user_deleted"] is False
    assert not {"name", "is_channel", "is_mpim", "topic", "is_member"} & set(im)
    client.chat_postMessage(channel=dm, text="hi")  # the bot can write in its IMs

    users = ",".join(emulator.user_id(u) for u in ("bob", "carol"))
    group = client.conversations_open(users=users)["channel"]["id"]
    assert group == emulator.add_mpim(["carol", "bob"])  # one MPIM per set of members
    mpim = client.conversations_info(channel=group)["channel"]
    assert mpim["is_mpim"] is True and mpim["is_private"] is True
    assert mpim["is_im"] is False and mpim["is_channel"] is False and mpim["is_group"] is False
    assert mpim["name"] == "mpdm-bob--carol-1" and mpim["is_member"] is True
    with pytest.raises(SlackApiError) as excinfo:
        client.conversations_open(users="")
    assert _error(excinfo) == "users_list_not_supplied"

    emulator.add_channel("inc-old")
    emulator.archive_channel("inc-old")
    old = client.conversations_info(channel=emulator.channel_id("inc-old"))["channel"]
    assert old["name"] == "inc-old" and old["is_archived"] is True
    with pytest.raises(SlackApiError) as excinfo:
        client.chat_postMessage(channel=emulator.channel_id("inc-old"), text="x")
    assert _error(excinfo) == "is_archived"


def test_usergroup_members(client: WebClient, emulator: SlackEmulator) -> None:
    group = emulator.usergroup_id("sre-approvers")
    users = client.usergroups_users_list(usergroup=group)["users"]
    assert users == [emulator.user_id("bob"), emulator.user_id("carol")]
    with pytest.raises(SlackApiError) as excinfo:
        client.usergroups_users_list(usergroup="S0NOPE")
    assert _error(excinfo) == "no_such_subteam"


# --------------------------------------------------------------------------- views


def test_views_open_needs_a_valid_trigger(client: WebClient, emulator: SlackEmulator) -> None:
    with pytest.raises(SlackApiError) as excinfo:
        client.views_open(trigger_id="123.456.abc", view=_modal())
    assert _error(excinfo) == "invalid_trigger_id"

    trigger = emulator.issue_trigger_id("alice")
    opened = client.views_open(trigger_id=trigger, view=_modal())["view"]
    assert opened["id"].startswith("V") and opened["callback_id"] == "rollback_modal"
    assert [v["id"] for v in emulator.open_views("alice")] == [opened["id"]]

    with pytest.raises(SlackApiError) as excinfo:
        client.views_open(trigger_id=trigger, view=_modal())
    assert _error(excinfo) == "exchanged_trigger_id"


def test_trigger_ids_expire() -> None:
    now = [1_700_000_000.0]
    with SlackEmulator(clock=lambda: now[0]) as emulator:
        client = WebClient(token=DEFAULT_BOT_TOKEN, base_url=emulator.base_url)
        trigger = emulator.issue_trigger_id("alice")
        now[0] += 3.5  # Slack's trigger_ids live three seconds
        with pytest.raises(SlackApiError) as excinfo:
            client.views_open(trigger_id=trigger, view=_modal())
        assert _error(excinfo) == "expired_trigger_id"


def test_invalid_modal_is_rejected(client: WebClient, emulator: SlackEmulator) -> None:
    trigger = emulator.issue_trigger_id("alice")
    with pytest.raises(SlackApiError) as excinfo:
        client.views_open(trigger_id=trigger, view=_modal(title="A title far too long for it"))
    assert _error(excinfo) == "invalid_arguments"
    assert "/view/title" in str(excinfo.value.response["response_metadata"])
    too_many = _modal(blocks=[{"type": "divider"}] * 101)
    with pytest.raises(SlackApiError) as excinfo:
        client.views_open(trigger_id=trigger, view=too_many)
    assert _error(excinfo) == "invalid_arguments"


def test_views_update_and_push(client: WebClient, emulator: SlackEmulator) -> None:
    view = client.views_open(trigger_id=emulator.issue_trigger_id("bob"), view=_modal())["view"]
    updated = client.views_update(view_id=view["id"], hash=view["hash"], view=_modal("Step 2"))
    assert updated["view"]["id"] == view["id"]
    assert updated["view"]["title"]["text"] == "Step 2"
    with pytest.raises(SlackApiError) as excinfo:  # the old hash is stale now
        client.views_update(view_id=view["id"], hash=view["hash"], view=_modal())
    assert _error(excinfo) == "hash_conflict"

    pushed = client.views_push(trigger_id=emulator.issue_trigger_id("bob"), view=_modal("Confirm"))
    assert pushed["view"]["previous_view_id"] == view["id"]
    assert [v["title"]["text"] for v in emulator.open_views("bob")] == ["Step 2", "Confirm"]

    by_external = client.views_open(
        trigger_id=emulator.issue_trigger_id("carol"), view=_modal(external_id="rb-42")
    )["view"]
    client.views_update(external_id="rb-42", view=_modal("Updated", external_id="rb-42"))
    assert emulator.view(by_external["id"])["title"]["text"] == "Updated"


# --------------------------------------------------------------------------- files


def test_files_upload_v2_end_to_end(client: WebClient, emulator: SlackEmulator) -> None:
    parent = client.chat_postMessage(channel=CHANNEL, text="post-mortem")["ts"]
    answer = client.files_upload_v2(
        channel=emulator.channel_id(CHANNEL),
        thread_ts=parent,
        content="# Post-mortem\n",
        filename="2024-01-01-hotel-voice-bot.md",
        title="Post-mortem skeleton",
        initial_comment="Draft attached",
    )
    file_id = answer["file"]["id"]
    assert emulator.file_content(file_id) == b"# Post-mortem\n"
    [upload] = emulator.calls("upload")
    assert upload.ok
    reply = emulator.thread(CHANNEL, parent)[-1]
    assert reply["text"] == "Draft attached"
    assert reply["files"][0]["title"] == "Post-mortem skeleton"
    assert client.files_info(file=file_id)["file"]["name"] == "2024-01-01-hotel-voice-bot.md"


def test_complete_before_upload_is_refused(client: WebClient) -> None:
    pending = client.files_getUploadURLExternal(filename="x.txt", length=3)
    with pytest.raises(SlackApiError) as excinfo:
        client.files_completeUploadExternal(files=[{"id": pending["file_id"], "title": "x"}])
    assert _error(excinfo) == "file_not_found"


# -------------------------------------------------------------------- response_url


def test_response_url_posts_are_recorded(client: WebClient, emulator: SlackEmulator) -> None:
    url = emulator.issue_response_url(channel=CHANNEL, user="alice")
    hook = WebhookClient(url)
    assert hook.send(text="Working on it").status_code == 200  # ephemeral by default
    assert hook.send(text="Rollback started", response_type="in_channel").status_code == 200
    assert [r["action"] for r in emulator.responses()] == ["ephemeral", "in_channel"]
    assert emulator.ephemerals(user="alice")[0]["text"] == "Working on it"
    assert emulator.messages(CHANNEL)[0]["text"] == "Rollback started"
    assert [c.method for c in emulator.calls("response_url")] == ["response_url"] * 2


def test_response_url_replaces_and_deletes_the_original(
    client: WebClient, emulator: SlackEmulator
) -> None:
    ts = client.chat_postMessage(channel=CHANNEL, text="Approve?")["ts"]
    url = emulator.issue_response_url(channel=CHANNEL, user="bob", message_ts=ts)
    # From a message interaction, a bare text replaces the original (Slack's default).
    WebhookClient(url).send(text="Approved by bob")
    assert [m["text"] for m in emulator.messages(CHANNEL)] == ["Approved by bob"]
    WebhookClient(url).send(text="noted", replace_original=False)
    assert emulator.ephemerals(user="bob")[0]["text"] == "noted"
    WebhookClient(url).send(delete_original=True)
    assert emulator.messages(CHANNEL) == []


def test_response_url_limits(emulator: SlackEmulator) -> None:
    url = emulator.issue_response_url(channel=CHANNEL, user="alice")
    hook = WebhookClient(url)
    for _ in range(5):
        assert hook.send(text="again").status_code == 200
    assert hook.send(text="sixth").status_code == 404  # used_url
    assert WebhookClient(url + "x").send(text="?").status_code == 404
    bad_blocks = WebhookClient(emulator.issue_response_url(channel=CHANNEL, user="alice"))
    answer = bad_blocks.send(blocks=[{"type": "nope"}])
    assert answer.status_code == 400 and "invalid_blocks" in answer.body


# ---------------------------------------------------------- recording and waiting


def test_every_call_is_recorded_without_the_token(
    client: WebClient, emulator: SlackEmulator
) -> None:
    client.chat_postMessage(channel=CHANNEL, text="one")
    with pytest.raises(SlackApiError):
        client.chat_postMessage(channel="nowhere", text="two")
    calls = emulator.calls("chat.postMessage")
    assert [(c.params["text"], c.ok, c.error) for c in calls] == [
        ("one", True, None),
        ("two", False, "channel_not_found"),
    ]
    assert all("token" not in c.params for c in emulator.calls())
    assert calls[0].timestamp <= calls[1].timestamp


def test_injected_rate_limit(client: WebClient, emulator: SlackEmulator) -> None:
    emulator.fail_next("chat.postMessage", "ratelimited", retry_after=2)
    with pytest.raises(SlackApiError) as excinfo:
        client.chat_postMessage(channel=CHANNEL, text="hi")
    assert excinfo.value.response.status_code == 429
    assert excinfo.value.response.headers["Retry-After"] == "2"
    assert client.chat_postMessage(channel=CHANNEL, text="hi")["ok"]


def test_wait_for_and_subscribers(client: WebClient, emulator: SlackEmulator) -> None:
    seen: list[Event] = []
    unsubscribe = emulator.subscribe(seen.append)
    client.chat_postMessage(channel=CHANNEL, text="hello")
    posted = emulator.wait_for(lambda: emulator.messages(CHANNEL), timeout=2)
    assert posted[0]["text"] == "hello"
    assert "message.posted" in [e.kind for e in seen]
    assert [e.seq for e in seen] == sorted(e.seq for e in seen)
    unsubscribe()
    count = len(seen)
    client.chat_postMessage(channel=CHANNEL, text="again")
    assert len(seen) == count
    with pytest.raises(TimeoutError):
        emulator.wait_for(lambda: emulator.pins(CHANNEL), timeout=0.05)


def test_forget_logs_drops_the_logs_keeps_slacks_state_and_numbers_events_on(
    client: WebClient, emulator: SlackEmulator
) -> None:
    """The logs a long benchmark drops (``forget_logs``): what Slack holds stays, the next
    event is numbered after the last forgotten one, a ``since`` mark taken before still
    means what it meant, and a reader that marks its place among the calls by position
    (the secret scan) reads the calls that came after the forget, and only those."""
    from tests.secret_scan import SCANNER

    ts = client.chat_postMessage(channel=CHANNEL, text="kept")["ts"]
    client.pins_add(channel=CHANNEL, timestamp=ts)
    WebhookClient(emulator.issue_response_url(channel=CHANNEL, user="alice")).send(text="hm")
    SCANNER.scan_new()  # the calls so far are read before they are dropped
    mark = emulator.events()[-1].seq
    assert emulator.calls() and emulator.responses()

    emulator.forget_logs()
    assert emulator.calls() == [] and emulator.events() == [] and emulator.responses() == []
    assert emulator.forgotten_calls == 3  # chat.postMessage, pins.add, response_url
    assert [m["text"] for m in emulator.messages(CHANNEL)] == ["kept"]  # Slack's state
    assert emulator.pins(CHANNEL) == [ts]

    client.chat_postMessage(channel=CHANNEL, text="after")
    after = emulator.events(mark)
    assert [e.seq for e in after] == list(range(mark + 1, mark + 1 + len(after)))
    assert "message.posted" in [e.kind for e in after]
    assert emulator.events(after[-1].seq) == []
    assert emulator.wait_idle(0.05, 5) == after[-1].seq
    assert [c.params["text"] for c in emulator.calls("chat.postMessage")] == ["after"]
    read = SCANNER.total_calls
    SCANNER.scan_new()
    assert SCANNER.total_calls == read + 1  # the one call since: not skipped, none twice


def test_render_channel(client: WebClient, emulator: SlackEmulator) -> None:
    alice = emulator.user_id("alice")
    blocks = [
        {"type": "header", "text": {"type": "plain_text", "text": "Rollback plan"}},
        {"type": "section", "fields": [{"type": "mrkdwn", "text": "*Service*\nhotel-voice-bot"}]},
        {"type": "context", "elements": [{"type": "mrkdwn", "text": f"by <@{alice}>"}]},
        {"type": "actions", "elements": [_button("Approve", "a"), _button("Reject", "r")]},
    ]
    ts = client.chat_postMessage(channel=CHANNEL, text="plan", blocks=blocks)["ts"]
    client.chat_postMessage(channel=CHANNEL, thread_ts=ts, text="scaling down")
    text = render_channel(emulator, CHANNEL)
    assert "## Rollback plan" in text
    assert "[Approve] [Reject]" in text
    assert "by @alice" in text
    assert "↳" in text and "scaling down" in text
