"""The v2 upload flow: files.getUploadURLExternal, the upload POST, files.completeUploadExternal.

The upload URL points back at the emulator, so slack_sdk's `files_upload_v2` runs unchanged.
"""

from __future__ import annotations

import mimetypes
import secrets
from typing import Any

from sandbox.slack.api import ApiContext, ApiError, Handler, Params, public
from sandbox.slack.chat import post, writable_channel


def get_upload_url(ctx: ApiContext, p: Params) -> dict[str, Any]:
    filename = p.require("filename")
    length = p.string("length")
    if length is None or not length.isdigit() or int(length) <= 0:
        raise ApiError("invalid_arguments", messages=["length must be a positive integer"])
    file_id = ctx.ws.new_id("F")
    token = secrets.token_urlsafe(16)
    mimetype = mimetypes.guess_type(filename)[0] or "application/octet-stream"
    now = int(ctx.ws.clock())
    ctx.ws.files[file_id] = {
        "id": file_id,
        "created": now,
        "timestamp": now,
        "name": filename,
        "title": filename,
        "mimetype": mimetype,
        "filetype": filename.rsplit(".", 1)[-1] if "." in filename else "binary",
        "user": ctx.bot.id,
        "size": int(length),
        "alt_txt": p.string("alt_txt"),
        "url_private": f"{ctx.base_url}files/{file_id}/{filename}",
        "permalink": f"https://{ctx.ws.team_domain}.slack.com/files/{ctx.bot.id}/{file_id}/{filename}",
        "is_external": False,
        "channels": [],
        "shares": {},
        "upload_state": "pending",  # emulator-only: pending -> uploaded -> complete
    }
    ctx.ws.upload_tokens[token] = file_id
    return {"ok": True, "upload_url": f"{ctx.base_url}upload/v1/{token}", "file_id": file_id}


def receive_upload(ctx: ApiContext, token: str, data: bytes) -> tuple[int, str]:
    """The POST to an upload_url: store the bytes; answer like files.slack.com does."""
    file_id = ctx.ws.upload_tokens.pop(token, None)
    if file_id is None:
        return 404, "invalid upload url"
    record = ctx.ws.files[file_id]
    ctx.ws.file_contents[file_id] = data
    record["size"] = len(data)
    record["upload_state"] = "uploaded"
    ctx.ws._emit("file.uploaded", file_id=file_id, size=len(data))
    return 200, f"OK - {len(data)}"


def complete_upload(ctx: ApiContext, p: Params) -> dict[str, Any]:
    items = p.json("files")
    if not isinstance(items, list) or not items:
        raise ApiError("invalid_arguments", messages=["files must be a non-empty array"])
    records = []
    for item in items:
        record = ctx.ws.files.get(item.get("id", "")) if isinstance(item, dict) else None
        if record is None or record["upload_state"] == "pending":
            raise ApiError("file_not_found")
        if item.get("title"):
            record["title"] = item["title"]
        records.append(record)
    channel_ids = [c for c in (p.string("channels") or "").split(",") if c]
    if p.string("channel_id"):
        channel_ids.insert(0, p.string("channel_id") or "")
    channels = [writable_channel(ctx, ref) for ref in channel_ids]
    thread_ts = p.string("thread_ts")
    for channel in channels:
        shared = [_share_view(r) for r in records]
        content = {"text": p.string("initial_comment") or "", "files": shared, "upload": True}
        message = post(ctx, channel, content, thread_ts=thread_ts)
        for record in records:
            share = {"ts": message["ts"], "channel_name": channel.name, "team_id": ctx.ws.team_id}
            if thread_ts:
                share["thread_ts"] = message["thread_ts"]
            kind = "private" if channel.is_private else "public"
            record["shares"].setdefault(kind, {}).setdefault(channel.id, []).append(share)
            record["channels"].append(channel.id)
    for record in records:
        record["upload_state"] = "complete"
        ctx.ws._emit("file.shared", file_id=record["id"], channels=[c.id for c in channels])
    return {"ok": True, "files": [_share_view(r) for r in records]}


def _share_view(record: dict[str, Any]) -> dict[str, Any]:
    view: dict[str, Any] = public(record)
    view.pop("upload_state", None)
    return view


def files_info(ctx: ApiContext, p: Params) -> dict[str, Any]:
    record = ctx.ws.files.get(p.require("file", "file_not_found"))
    if record is None or record["upload_state"] != "complete":
        raise ApiError("file_not_found")
    return {"ok": True, "file": _share_view(record)}


METHODS: dict[str, Handler] = {
    "files.getUploadURLExternal": get_upload_url,
    "files.completeUploadExternal": complete_upload,
    "files.info": files_info,
}
