"""The sandbox web console in headless Chromium: a four-eyes drill, clicked like a person would.

alice types `/rollback hotel-voice-bot` and submits the modal, carol takes incident
command, bob approves through Slack's confirm dialog, and the page updates live (server-
sent events) to `Completed` with only the read-only *Timeline* button left (clicked: its
answer shows, its file joins the thread) and the progress lines in the thread.
Every click reaches the bot as a signed Slack request via the console and the driver.
The API tests below need no browser.
"""

from __future__ import annotations

import json
import struct
import threading
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from slack_sdk import WebClient

from sandbox.console import Console
from sandbox.slack import DEFAULT_BOT_TOKEN
from tests.e2e.browser_support import chromium_page, screenshot
from tests.e2e.conftest import CHANNEL, Harness
from tests.support.waiting import wait_until

pytestmark = pytest.mark.slow


@pytest.fixture
def console(harness: Harness) -> Iterator[Console]:
    served = Console(emulator=harness.emulator, driver=harness.driver).start()
    yield served
    served.stop()


def _act_as(page: Any, user: str) -> None:
    from playwright.sync_api import expect

    page.click(f".person[data-user={user}]")
    expect(page.locator("#acting")).to_contain_text(f"@{user}")


def test_four_eyes_drill_in_the_browser(harness: Harness, console: Console,
                                        tmp_path: Path) -> None:
    h = harness
    with chromium_page(tmp_path) as page:
        from playwright.sync_api import expect

        page.goto(f"{console.url}/?as=alice")
        expect(page.locator("#live")).to_have_class("live on")  # the event stream is up
        expect(page.locator("#channel-name")).to_have_text(f"# {CHANNEL}")
        expect(page.locator("#welcome")).to_be_visible()

        # alice: the slash command opens the request modal; she picks P1 and submits it.
        page.locator("#composer-input").press_sequentially("/roll")
        page.locator(".suggestion", has_text="open the request form").click()
        expect(page.locator("#composer-input")).to_have_value("/rollback hotel-voice-bot")
        page.press("#composer-input", "Enter")
        modal = page.locator("#modal")
        expect(modal).to_be_visible()
        expect(page.locator("#modal-title")).to_have_text("Request rollback")
        page.select_option("#modal select[name=severity]", "P1")
        page.fill("#modal textarea[name=reason]", "5xx after v1.3.0 (browser drill)")
        page.click("#modal-submit")
        expect(modal).to_be_hidden()

        request = page.locator("#messages .msg").filter(
            has=page.locator(".bk-header", has_text="Rollback RB-"))
        expect(request).to_have_count(1)
        expect(request).to_contain_text("Assessment", timeout=20_000)
        expect(request.locator("b", has_text="Pending approval")).to_be_visible()
        expect(request).to_contain_text("P1")
        expect(request).to_contain_text("5xx after v1.3.0 (browser drill)")
        expect(request).to_contain_text("Pinned")
        approve = request.get_by_role("button", name="Approve", exact=True)
        expect(approve).to_have_class("bk-button primary")
        expect(request.get_by_role("button", name="Reject")).to_have_class("bk-button danger")

        # alice is not an approver: Slack's confirm dialog, then a refusal only she sees.
        approve.click()
        expect(page.locator("#confirm")).to_be_visible()
        expect(page.locator("#confirm-title")).to_have_text("Approve rollback?")
        page.click("#confirm-yes")
        refusal = page.locator("#messages .msg.ephemeral", has_text="Only approvers")
        expect(refusal).to_be_visible()
        expect(refusal).to_contain_text("Only visible to you")

        # carol takes incident command; the button disappears for everyone.
        _act_as(page, "carol")
        expect(refusal).to_have_count(0)  # alice's ephemeral is hers alone
        ic = request.get_by_role("button", name="I'm incident commander")
        ic.click()
        expect(ic).to_have_count(0)
        expect(request).to_contain_text("Incident commander: @carol")

        # bob approves (confirm first); the page follows the rollback live to Completed.
        _act_as(page, "bob")
        page.wait_for_timeout(300)  # let the dialog-free page settle after the switch
        approve.click()
        expect(page.locator("#confirm-text")).to_contain_text("Roll hotel-voice-bot back to")
        page.click("#confirm-yes")
        expect(request.locator("b", has_text="Completed")).to_be_visible(timeout=30_000)
        # No stale buttons: only the read-only Timeline is left. It answers the clicker
        # (an ephemeral) and files the whole record in the rollback's thread.
        timeline = request.get_by_role("button")
        expect(timeline).to_have_count(1)
        expect(timeline).to_have_text("Timeline")
        timeline.click()
        expect(page.locator(".msg.ephemeral", has_text="Timeline of RB-")).to_be_visible(
            timeout=15_000)
        expect(request.locator("b", has_text="Pending approval")).to_have_count(0)
        expect(request).to_contain_text("Approved by @bob")

        # The thread carries the progress lines and the recent-logs file.
        request.locator(".thread-link").click()
        thread = page.locator("#thread")
        expect(thread).to_be_visible()
        expect(thread).to_contain_text("Step 1/2")
        expect(thread).to_contain_text("Step 2/2")
        expect(thread).to_contain_text("completed: hotel-voice-bot is on rev")
        expect(thread.locator(".file-card", has_text="Timeline of RB-")).to_have_count(1)
        page.locator("#thread-messages").evaluate("pane => { pane.scrollTop = 1e9; }")
        shot = screenshot(page, tmp_path)
        logs = thread.locator(".file-card").first
        expect(logs).to_contain_text("log")
        logs.locator("summary").click()
        expect(logs.locator("pre")).to_contain_text("log line")

    assert shot.stat().st_size > 10_000
    rid = int(h.rollback_message()["text"].split()[0].removeprefix("RB-"))
    done = h.wait_state(rid, "completed")
    assert done.approver == h.emulator.user_id("bob")
    assert done.incident_commander == h.emulator.user_id("carol")
    assert h.platform.mutations()["rollback_to"] == 1


def _png(width: int = 48, height: int = 24) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    rows = b"".join(b"\x00" + bytes([224, 30, 90]) * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows))
            + chunk(b"IEND", b""))


def test_block_kit_gallery(harness: Harness, console: Console, tmp_path: Path,
                           monkeypatch: pytest.MonkeyPatch) -> None:
    """Formatting, images, files, a message select and a danger confirm, as Slack shows them."""
    h = harness
    slack = WebClient(token=DEFAULT_BOT_TOKEN, base_url=h.emulator.base_url)
    channel = h.emulator.channel_id(CHANNEL)
    graph = slack.files_upload_v2(channel=channel, content=_png(), filename="graph.png",
                                  title="Error rate graph")["files"][0]
    slack.files_upload_v2(channel=channel, content=b"# Post-mortem\nroot cause: v1.3.0\n",
                          filename="postmortem.md", title="Post-mortem draft")
    image_url = f"{console.url}/api/files/{graph['id']}"
    confirm = {"title": {"type": "plain_text", "text": "Really?"},
               "text": {"type": "mrkdwn", "text": "This is *dangerous*."},
               "confirm": {"type": "plain_text", "text": "Do it"},
               "deny": {"type": "plain_text", "text": "No"}, "style": "danger"}
    options = [{"text": {"type": "plain_text", "text": p}, "value": p} for p in ("P1", "P2")]
    slack.chat_postMessage(channel=channel, text="gallery", blocks=[
        {"type": "header", "text": {"type": "plain_text", "text": "Gallery"}},
        {"type": "section", "text": {"type": "mrkdwn", "text": (
            "*bold* _italic_ ~gone~ `code` <https://example.com|a link> <@U0ALICE> "
            f"<#{channel}> <!here> :rotating_light: &lt;not a tag&gt;")},
         "fields": [{"type": "mrkdwn", "text": "*Left*\none"},
                    {"type": "mrkdwn", "text": "*Right*\ntwo"}]},
        {"type": "divider"},
        {"type": "context", "elements": [
            {"type": "image", "image_url": image_url, "alt_text": "tiny graph"},
            {"type": "mrkdwn", "text": "context line"}]},
        {"type": "image", "image_url": image_url, "alt_text": "error rate graph",
         "title": {"type": "plain_text", "text": "Error rate"}},
        {"type": "actions", "block_id": "gallery", "elements": [
            {"type": "static_select", "action_id": "severity", "options": options,
             "placeholder": {"type": "plain_text", "text": "Severity"}},
            {"type": "button", "action_id": "reason", "value": "boom", "style": "danger",
             "text": {"type": "plain_text", "text": "Danger"}, "confirm": confirm}]},
    ])
    sent: list[dict[str, object]] = []
    original = h.driver.send

    def spy(body: str, **kwargs: object) -> object:
        if body.startswith("payload="):
            from urllib.parse import parse_qs

            sent.append(json.loads(parse_qs(body)["payload"][0]))
        return original(body, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(h.driver, "send", spy)
    with chromium_page(tmp_path) as page:
        from playwright.sync_api import expect

        page.goto(f"{console.url}/?as=dave")
        msg = page.locator("#messages .msg").filter(has=page.locator(".bk-header",
                                                                    has_text="Gallery"))
        expect(msg).to_have_count(1)
        for selector, text in (("b", "bold"), ("i", "italic"), ("s", "gone"), ("code", "code"),
                               ("a[href='https://example.com']", "a link")):
            expect(msg.locator(selector, has_text=text)).to_be_visible()
        for mention in ("@alice", f"#{CHANNEL}", "@here"):
            expect(msg.locator(".mention", has_text=mention)).to_be_visible()
        expect(msg).to_contain_text("🚨 <not a tag>")
        expect(msg.locator(".bk-field")).to_have_count(2)
        expect(msg.locator(".bk-divider")).to_have_count(1)
        picture = msg.locator("img.bk-image-img")
        expect(picture).to_be_visible()
        assert picture.evaluate("img => img.naturalWidth") == 48
        expect(msg.locator("figcaption")).to_have_text("Error rate")
        expect(msg.locator("img.bk-context-img")).to_be_visible()

        page.select_option("#messages select[data-action-id=severity]", "P2")
        wait_until(lambda: len(sent) == 1, message="the bot to get the click")
        action = sent[-1]
        assert action["type"] == "block_actions"
        assert action["actions"][0]["selected_option"]["value"] == "P2"  # type: ignore[index]
        page.wait_for_timeout(300)  # re-rendered after the click: the choice stays
        expect(page.locator("#messages select[data-action-id=severity]")).to_have_value("P2")

        danger = msg.get_by_role("button", name="Danger")
        expect(danger).to_have_class("bk-button danger")
        danger.click()
        expect(page.locator("#confirm-yes")).to_have_class("bk-button danger")
        expect(page.locator("#confirm-text")).to_contain_text("This is dangerous.")
        page.click("#confirm-no")
        assert len(sent) == 1  # "No" sends nothing
        danger.click()
        page.click("#confirm-yes")
        wait_until(lambda: len(sent) == 2, message="the bot to get the click")
        pressed = sent[-1]
        assert pressed["actions"][0]["value"] == "boom"  # type: ignore[index]
        assert pressed["state"]["values"]["gallery"]["severity"]["selected_option"][  # type: ignore[index]
            "value"] == "P2"

        uploads = page.locator("#messages .file-image img")
        expect(uploads).to_have_count(1)
        card = page.locator("#messages .file-card", has_text="Post-mortem draft")
        card.locator("summary").click()
        expect(card.locator("pre")).to_contain_text("root cause: v1.3.0")
        expect(page.locator("#files")).to_contain_text("Error rate graph")
        screenshot(page, tmp_path, "gallery.png", copy_to="/tmp/console-gallery.png")


def _post(console: Console, path: str, body: dict[str, object]) -> dict[str, object]:
    reply = httpx.post(f"{console.url}{path}", json=body, timeout=30)
    assert reply.status_code == 200, reply.text
    data = reply.json()
    assert isinstance(data, dict)
    return data


def test_say_endpoint_keeps_the_cli_contract(console: Console) -> None:
    data = _post(console, "/api/say", {"line": "/rollback help", "user": "alice"})
    assert data["ok"] is True and "/rollback status [ID|service]" in str(data["text"])


def test_state_streams_and_refusals(harness: Harness, console: Console) -> None:
    seen: list[dict[str, object]] = []
    ready = threading.Event()

    def listen() -> None:
        with httpx.stream("GET", f"{console.url}/api/events", timeout=30) as stream:
            event = ""
            for line in stream.iter_lines():
                if line.startswith("event: "):
                    event = line.removeprefix("event: ")
                    ready.set()
                elif line.startswith("data: ") and event == "change":
                    seen.append(json.loads(line.removeprefix("data: ")))
                    return

    listener = threading.Thread(target=listen, daemon=True)
    listener.start()
    assert ready.wait(10), "no hello on /api/events"
    assert _post(console, "/api/say", {"line": "/rollback hotel-voice-bot --severity P2",
                                       "user": "alice", "wait": False})["ok"]
    listener.join(10)
    assert seen and "kinds" in seen[0]

    harness.rollback_message()
    state = httpx.get(f"{console.url}/api/state", params={"user": "dave"}).json()
    assert state["channel"] == harness.emulator.channel_id(CHANNEL)
    roles = {u["name"]: u["roles"] for u in state["users"]}
    assert "approver" in roles["bob"] and "incident commander" in roles["carol"]
    assert "approver" not in roles["dave"]
    gone = _post(console, "/api/action", {"user": "dave", "channel": CHANNEL, "ts": "1.000001",
                                          "action_id": "rollback_approve"})
    assert gone["ok"] is False and "no longer available" in str(gone["error"])
    closed = _post(console, "/api/view/close", {"user": "dave"})
    assert closed["ok"] is False and "no open modal" in str(closed["error"])
    assert httpx.get(f"{console.url}/api/files/F0NOPE").status_code == 404
