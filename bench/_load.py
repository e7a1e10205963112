"""Load generator for ack_latency, run as a separate process so the client's threads do not
compete with the servers for the GIL. Protocol: one JSON command per stdin line, one JSON
result per stdout line.

Command: {"url", "secret", "fields", "n", "concurrency", "expect_body"} and optionally
  "forbid_body" (a reply containing it is an error: the bot's "busy" answer),
  "subs" (at least n dicts: request i replaces "{key}" in every field value with
  subs[i][key]: the trigger_id and response_url Slack issued for it), and
  "await" (a key of subs: after its ack a worker waits, up to "await_timeout" seconds, until
  the bench process reports that value landed in the Slack emulator: a person waits for
  the answer before sending the next command).
Result:  {"latencies": [seconds...], "errors": int, "first_error": str|null, "wall": seconds,
          "sent": {index: wall-clock send time}, "unanswered": int}

Landings arrive on the file descriptor named by ``LOAD_LANDING_FD``, one value a line.

Each request is signed like Slack signs it (v0 HMAC-SHA256 of ``v0:<ts>:<body>``,
``tests.support.signing``); without ``subs`` it gets a unique ``trigger_id`` (the bot dedupes
deliveries on it). The clock starts right before the POST and stops when the response body
has been read.
"""

from __future__ import annotations

import json
import os
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


class Landings:
    """Values the bench process saw land in the Slack emulator (response_url tokens,
    trigger_ids of views.open), read from a pipe by one thread."""

    def __init__(self) -> None:
        self._seen: set[str] = set()
        self._cond = threading.Condition()
        fd = os.environ.get("LOAD_LANDING_FD")
        if fd:
            threading.Thread(target=self._read, args=(int(fd),), daemon=True).start()

    def _read(self, fd: int) -> None:
        with os.fdopen(fd, "r") as pipe:
            for line in pipe:
                with self._cond:
                    self._seen.add(line.strip())
                    self._cond.notify_all()

    def wait(self, value: str, timeout: float) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: value in self._seen, timeout)


LANDINGS = Landings()


def _client(url: str, concurrency: int) -> httpx.Client:
    key = (url, concurrency)
    if key not in _clients:
        limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        _clients[key] = httpx.Client(timeout=30.0, limits=limits)
    return _clients[key]


def _signed(secret: str, fields: dict[str, str],
            sub: dict[str, str] | None = None) -> tuple[bytes, dict[str, str]]:
    if sub is None:
        body = urlencode({**fields, "trigger_id": f"bench.{uuid.uuid4().hex}"}).encode()
    else:
        filled = {}
        for key, value in fields.items():
            for name, got in sub.items():
                value = value.replace("{" + name + "}", got)
            filled[key] = value
        body = urlencode(filled).encode()
    return body, {**signed_headers(secret, body),
                  "User-Agent": "Slackbot 1.0 (+https://api.slack.com/robots)"}


def run(cmd: dict[str, Any]) -> dict[str, Any]:
    url, secret, fields = cmd["url"], cmd["secret"], cmd["fields"]
    n, concurrency = int(cmd["n"]), int(cmd["concurrency"])
    expect, forbid = cmd.get("expect_body"), cmd.get("forbid_body")
    subs: list[dict[str, str]] | None = cmd.get("subs")
    awaited, await_timeout = cmd.get("await"), float(cmd.get("await_timeout", 3.0))
    if subs is not None and len(subs) < n:
        raise ValueError(f"{n} requests need {n} subs, got {len(subs)}")
    client = _client(url, concurrency)
    latencies: list[float] = []
    errors: list[str] = []
    sent: dict[int, float] = {}
    unanswered = [0]
    lock = threading.Lock()
    remaining = [n]

    def worker() -> None:
        while True:
            with lock:
                if remaining[0] <= 0:
                    return
                remaining[0] -= 1
                index = n - 1 - remaining[0]
            sub = subs[index] if subs is not None else None
            body, headers = _signed(secret, fields, sub)
            sent[index] = time.time()
            start = time.perf_counter()
            try:
                reply = client.post(url, content=body, headers=headers)
                text = reply.text
                elapsed = time.perf_counter() - start
            except httpx.HTTPError as exc:
                with lock:
                    errors.append(f"{type(exc).__name__}: {exc}")
                continue
            ok = reply.status_code == 200 and (expect is None or expect in text) and (
                forbid is None or forbid not in text)
            with lock:
                latencies.append(elapsed)
                if not ok:
                    errors.append(f"HTTP {reply.status_code}: {text[:200]!r}")
            if ok and awaited and sub is not None and not LANDINGS.wait(
                    sub[awaited], await_timeout):
                with lock:
                    unanswered[0] += 1

    began = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return {"latencies": latencies, "errors": len(errors),
            "first_error": errors[0] if errors else None, "wall": time.perf_counter() - began,
            "sent": sent, "unanswered": unanswered[0]}


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
