"""The emulator refuses an upload POST the way files.slack.com does (``fail_upload``)."""

from __future__ import annotations

import urllib.error

import pytest
from slack_sdk import WebClient

from sandbox.slack import DEFAULT_CHANNEL, SlackEmulator


def test_a_refused_upload_post_fails_files_upload_v2_and_shares_nothing(
        client: WebClient, emulator: SlackEmulator) -> None:
    parent = client.chat_postMessage(channel=DEFAULT_CHANNEL, text="report")["ts"]
    emulator.fail_upload(times=1, status=500)
    with pytest.raises(urllib.error.HTTPError) as refused:
        client.files_upload_v2(channel=emulator.channel_id(DEFAULT_CHANNEL), thread_ts=parent,
                               content=b"\x89PNG chart", filename="chart.png", title="Chart")
    assert refused.value.code == 500
    [announced] = emulator.calls("files.getUploadURLExternal")
    assert announced.ok  # Slack issued the URL; the POST itself was refused
    assert [c.ok for c in emulator.calls("upload")] == [False]
    assert not emulator.calls("files.completeUploadExternal")
    assert all(not f["channels"] for f in emulator.files())  # nothing shared
    assert len(emulator.thread(DEFAULT_CHANNEL, parent)) == 1

    answer = client.files_upload_v2(  # the fault was for one POST only
        channel=emulator.channel_id(DEFAULT_CHANNEL), thread_ts=parent,
        content=b"\x89PNG chart", filename="chart.png", title="Chart")
    assert emulator.file_content(answer["file"]["id"]) == b"\x89PNG chart"
