"""Unsigned, forged, stale and oversized requests against the real server: 401 or 413,
never a 5xx, never an outbound call, never their content in a log line, bounded memory.
"""

from __future__ import annotations

import logging
import os
import select
import socket
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode

import httpx
import pytest

from bot.runtime.front_door import MAX_BODY_BYTES
from sandbox.slack.driver import STALE_SECONDS
from sandbox.stack import SandboxStack
from tests.secret_scan import register_secret
from tests.support.hostile import http_stack
from tests.support.rss import peak_rss_kb, reset_peak_rss
from tests.support.signing import sign

MARKER = f"HOSTILE{uuid.uuid4().hex[:10]}"  # in every body and header value we send
FIVE_MB = 5 * 1024 * 1024
RSS_GROWTH_BOUND_KB = 64 * 1024  # peak RSS of the whole process (bot + emulator + test)


@pytest.fixture
def stack(db: str, tmp_path: Path) -> Iterator[SandboxStack]:
    with http_stack(db, tmp_path / "pm") as running:
        register_secret(running.signing_secret, "a sandbox stack's signing secret")
        yield running


def _bodies() -> dict[str, bytes]:
    nested = "[" * 50_000 + "]" * 50_000
    command = urlencode({"command": "/rollback", "text": f"help {MARKER}", "user_id": "U0ALICE",
                         "channel_id": "C1", "response_url": f"http://127.0.0.1:9/{MARKER}"})
    return {
        "empty": b"",
        "command": command.encode(),
        "payload": urlencode({"payload": f'{{"type":"block_actions","m":"{MARKER}"}}'}).encode(),
        "nested": urlencode({"payload": nested + MARKER}).encode(),
        "json": f'{{"type":"url_verification","challenge":"{MARKER}"}}'.encode(),
        "null_payload": f"payload=null&x={MARKER}".encode(),
        "binary": os.urandom(4096) + MARKER.encode(),
        "bad_utf8": b"\xff\xfe\xfd" + MARKER.encode() + b"\xc3\x28",
        "nul": f"command=/rollback&text=\x00{MARKER}".encode(),
        "big_form": (f"payload={MARKER}" + "A" * (MAX_BODY_BYTES - 200)).encode(),
        "one_byte_over": (f"payload={MARKER}").encode().ljust(MAX_BODY_BYTES + 1, b"B"),
        "deep_json": ('{"a":' * 30_000 + f'"{MARKER}"' + "}" * 30_000).encode(),
        "truncated_payload": urlencode({"payload": f'{{"type":"view_submission","v":"{MARKER}'
                                        }).encode(),
    }


@dataclass(frozen=True)
class Variant:
    name: str
    headers: dict[str, str | bytes]


def _variants(secret: str, body: bytes) -> list[Variant]:
    now = int(time.time())
    good_ts = str(now)
    right = sign(secret, good_ts, body)
    other = sign("not-the-secret", good_ts, body)
    stale = str(now - STALE_SECONDS)
    future = str(now + STALE_SECONDS)
    form, json_ct = "application/x-www-form-urlencoded", "application/json"
    out = [
        Variant("no headers", {}),
        Variant("no signature", {"X-Slack-Request-Timestamp": good_ts}),
        Variant("no timestamp", {"X-Slack-Signature": right}),
        Variant("empty signature", {"X-Slack-Request-Timestamp": good_ts, "X-Slack-Signature": ""}),
        Variant("garbage signature", {"X-Slack-Request-Timestamp": good_ts,
                                      "X-Slack-Signature": f"v0={MARKER}"}),
        Variant("v0= only", {"X-Slack-Request-Timestamp": good_ts, "X-Slack-Signature": "v0="}),
        Variant("non-hex digest", {"X-Slack-Request-Timestamp": good_ts,
                                   "X-Slack-Signature": "v0=" + "zz" * 32}),
        Variant("v1 scheme", {"X-Slack-Request-Timestamp": good_ts,
                              "X-Slack-Signature": "v1=" + right[3:]}),
        Variant("upper-case digest", {"X-Slack-Request-Timestamp": good_ts,
                                      "X-Slack-Signature": right.upper()}),
        Variant("wrong secret", {"X-Slack-Request-Timestamp": good_ts, "X-Slack-Signature": other}),
        Variant("signature of another body", {"X-Slack-Request-Timestamp": good_ts,
                                              "X-Slack-Signature": sign(secret, good_ts, b"x")}),
        Variant("stale", {"X-Slack-Request-Timestamp": stale,
                          "X-Slack-Signature": sign(secret, stale, body)}),
        Variant("future", {"X-Slack-Request-Timestamp": future,
                           "X-Slack-Signature": sign(secret, future, body)}),
    ]
    for label, ts in [("now", "now"), ("empty", ""), ("float", f"{now}.5"),
                      ("huge", "9" * 40), ("negative", f"-{now}"), ("plus sign", f"+{now}"),
                      ("exponent", "1.7e9"), ("fullwidth digits", "１２３４５"),
                      ("marker", MARKER), ("zero", "0")]:
        raw_ts = ts if ts.isascii() else ts.encode()  # the HTTP client wants bytes for these
        out.append(Variant(f"timestamp {label}", {"X-Slack-Request-Timestamp": raw_ts,
                                                  "X-Slack-Signature": sign(secret, ts, body)}))
    for ct in ["", json_ct, "text/plain", "multipart/form-data; boundary=x", f"x/{MARKER}"]:
        out.append(Variant(f"content type {ct!r}", {"Content-Type": ct,
                                                    "X-Slack-Request-Timestamp": good_ts,
                                                    "X-Slack-Signature": other}))
    return [Variant(v.name, {"Content-Type": form, **v.headers}) if "Content-Type" not in v.headers
            else v for v in out]


def _raw_post(port: int, headers: dict[str, str], body_length: int, *,
              chunk: bytes = b"A" * 65536, timeout: float = 5) -> tuple[int, int]:
    """POST with a declared `body_length`, sending body bytes only while the server has
    not answered. Returns (status, body bytes sent before the answer)."""
    lines = ["POST /slack/events HTTP/1.1", "Host: 127.0.0.1",
             f"Content-Length: {body_length}", "Connection: close"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        sent = 0
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            readable, _, _ = select.select([sock], [], [], 0.05)
            if readable:
                break
            if sent < body_length:
                try:
                    sent += sock.send(chunk[: body_length - sent])
                except OSError:
                    break
        answer = b""
        while b"\r\n" not in answer:
            data = sock.recv(4096)
            if not data:
                break
            answer += data
    return int(answer.split(b" ", 2)[1]), sent


def test_five_megabytes_are_refused_from_the_header_without_being_read(
        stack: SandboxStack) -> None:
    assert stack.server is not None
    reset_peak_rss()
    before = peak_rss_kb()
    started = time.monotonic()
    headers = {"Content-Type": "application/x-www-form-urlencoded",
               "X-Slack-Request-Timestamp": str(int(time.time())),
               "X-Slack-Signature": "v0=" + "0" * 64}
    status, sent = _raw_post(stack.server.port, headers, FIVE_MB)
    elapsed = time.monotonic() - started
    growth = peak_rss_kb() - before
    print(f"5 MB body: {status} after {elapsed * 1000:.0f} ms, {sent} body bytes sent, "
          f"peak RSS +{growth} KiB")
    assert status == 413
    assert sent < FIVE_MB // 4  # answered long before the body could have been read whole
    assert elapsed < 2
    assert growth < 16 * 1024


def test_chunked_body_over_the_limit_is_cut_off(stack: SandboxStack) -> None:
    """No Content-Length to refuse from: the server stops at the limit, not at the end."""
    assert stack.server is not None
    with socket.create_connection(("127.0.0.1", stack.server.port), timeout=5) as sock:
        sock.sendall(b"POST /slack/events HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                     b"Content-Type: application/x-www-form-urlencoded\r\n\r\n")
        piece = b"10000\r\n" + b"A" * 0x10000 + b"\r\n"
        sent, answer = 0, b""
        while sent < 8 * MAX_BODY_BYTES:
            readable, _, _ = select.select([sock], [], [], 0)
            if readable:
                answer = sock.recv(4096)
                break
            try:
                sock.sendall(piece)
            except OSError:
                break
            sent += 0x10000
        if not answer:
            answer = sock.recv(4096)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:40]
    # answered before the end: what was sent past the limit sits in socket buffers unread
    assert sent < 8 * MAX_BODY_BYTES


def test_hostile_bodies_get_401_or_413_and_nothing_else(
        stack: SandboxStack, caplog: pytest.LogCaptureFixture) -> None:
    assert stack.server is not None and stack.bot is not None
    url = f"{stack.server.url}/slack/events"
    caplog.set_level(logging.DEBUG)
    calls_before = len(stack.emulator.calls())
    statuses: dict[int, int] = {}
    tried = 0
    reset_peak_rss()
    rss_before = peak_rss_kb()
    started = time.monotonic()
    with httpx.Client(timeout=10) as client:
        for body_name, body in _bodies().items():
            for variant in _variants(stack.signing_secret, body):
                headers = [(k.encode(), v if isinstance(v, bytes) else v.encode())
                           for k, v in variant.headers.items()]
                reply = client.post(url, content=body, headers=headers)
                statuses[reply.status_code] = statuses.get(reply.status_code, 0) + 1
                tried += 1
                assert reply.status_code in (401, 413), (body_name, variant.name, reply.text)
                assert MARKER not in reply.text
    for label, ts in [("stale", str(int(time.time()) - STALE_SECONDS)), ("now", "now")]:
        status, _ = _raw_post(stack.server.port, {"X-Slack-Request-Timestamp": ts,
                                                  "X-Slack-Signature": f"v0={MARKER}"}, FIVE_MB)
        statuses[status] = statuses.get(status, 0) + 1
        tried += 1
        assert status == 413, label
    elapsed = time.monotonic() - started
    rss_growth = peak_rss_kb() - rss_before
    print(f"{tried} hostile requests in {elapsed:.1f} s: {statuses}; "
          f"peak RSS {rss_before // 1024} -> {(rss_before + rss_growth) // 1024} MiB")
    assert tried >= 300
    assert not [s for s in statuses if s >= 500]
    stack.emulator.wait_idle(quiet=0.5)  # any (wrongly) started background work shows up
    assert stack.emulator.calls()[calls_before:] == []
    assert stack.bot.store.history("hotel-voice-bot") == []
    assert any(r.name == "bot.runtime.front_door" for r in caplog.records)  # the capture works
    logged = "\n".join(r.getMessage() + str(r.exc_info or "") for r in caplog.records)
    assert MARKER not in logged
    assert "Traceback" not in logged and not [r for r in caplog.records if r.exc_info]
    assert rss_growth < RSS_GROWTH_BOUND_KB, f"peak RSS grew {rss_growth} KiB"
    # and the door still opens for Slack
    assert stack.driver is not None
    signed = stack.driver.slash_command("/rollback", "help")
    assert signed.status == 200 and "/rollback status" in signed.body
