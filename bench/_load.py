"""Load generator for ack_latency, run as a separate process so the client's threads do not
compete with the servers for the GIL. Protocol: one JSON command per stdin line, one JSON
result per stdout line.

Command: {"url", "secret", "fields", "n", "concurrency", "expect_body"}
Result:  {"latencies": [seconds...], "errors": int, "first_error": str|null, "wall": seconds}

Each request is a Slack slash command signed like Slack signs it (v0 HMAC-SHA256 of
``v0:<ts>:<body>``, ``tests.support.signing``) with a unique ``trigger_id`` (the bot dedupes
deliveries on it). The clock starts right before the POST and stops when the response body
has been read.
"""

from __future__ import annotations

import json
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx

# Run as ``python bench/_load.py``: the repository root is not on sys.path by itself.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support.signing import signed_headers  # noqa: E402

_clients: dict[tuple[str, int], httpx.Client] = {}


def _client(url: str, concurrency: int) -> httpx.Client:
    key = (url, concurrency)
    if key not in _clients:
        limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        _clients[key] = httpx.Client(timeout=30.0, limits=limits)
    return _clients[key]


def _signed(secret: str, fields: dict[str, str]) -> tuple[bytes, dict[str, str]]:
    body = urlencode({**fields, "trigger_id": f"bench.{uuid.uuid4().hex}"}).encode()
    return body, {**signed_headers(secret, body),
                  "User-Agent": "Slackbot 1.0 (+https://api.slack.com/robots)"}


def run(cmd: dict[str, Any]) -> dict[str, Any]:
    url, secret, fields = cmd["url"], cmd["secret"], cmd["fields"]
    n, concurrency = int(cmd["n"]), int(cmd["concurrency"])
    expect = cmd.get("expect_body")
    client = _client(url, concurrency)
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    remaining = [n]

    def worker() -> None:
        while True:
            with lock:
                if remaining[0] <= 0:
                    return
                remaining[0] -= 1
            body, headers = _signed(secret, fields)
            start = time.perf_counter()
            try:
                reply = client.post(url, content=body, headers=headers)
                text = reply.text
                elapsed = time.perf_counter() - start
            except httpx.HTTPError as exc:
                with lock:
                    errors.append(f"{type(exc).__name__}: {exc}")
                continue
            ok = reply.status_code == 200 and (expect is None or expect in text)
            with lock:
                latencies.append(elapsed)
                if not ok:
                    errors.append(f"HTTP {reply.status_code}: {text[:200]!r}")

    began = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return {"latencies": latencies, "errors": len(errors),
            "first_error": errors[0] if errors else None, "wall": time.perf_counter() - began}


def main() -> None:
    for line in sys.stdin:
        if not line.strip():
            continue
        result = run(json.loads(line))
        sys.stdout.write(json.dumps(result) + "\n")
        sys.stdout.flush()
    for client in _clients.values():
        client.close()


if __name__ == "__main__":
    main()
