"""Synthetic guest traffic: N requests per second against the demo service's API routes.

Without users the error-rate metric never moves; this keeps a steady, bounded load so a
broken release or a drill shows up in Prometheus within seconds.
"""

from __future__ import annotations

import itertools
import logging
import queue
import threading
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

import httpx

log = logging.getLogger(__name__)

MAX_RPS = 200.0

# What a guest session looks like, cycled in order; health checks are left out because
# users do not call them and a bad release makes them hang.
REQUEST_MIX: tuple[tuple[str, str, dict[str, Any] | None], ...] = (
    ("GET", "/api/faqs", None),
    ("POST", "/api/conversations", {"guest": "synthetic", "channel": "voice"}),
    ("GET", "/api/faqs", None),
    ("POST", "/webhook/whatsapp", {"event": "message", "payload": {"body": "hi"}}),
)


@dataclass(frozen=True)
class TrafficStats:
    sent: int
    by_status: dict[int, int]
    transport_errors: int
    dropped: int

    @property
    def server_errors(self) -> int:
        return sum(n for status, n in self.by_status.items() if status >= 500)


class TrafficGenerator:
    """Issue ``rps`` requests/second from a few worker threads until ``stop()``.

    Ticks that find every worker busy (a slow drill) are dropped rather than queued, so
    load never piles up beyond ``workers`` requests in flight.
    """

    def __init__(
        self, base_url: str, *, rps: float = 10.0, workers: int = 4, timeout: float = 5.0
    ) -> None:
        if not 0 < rps <= MAX_RPS:
            raise ValueError(f"rps must be within (0, {MAX_RPS}], got {rps}")
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        self.base_url = base_url.rstrip("/")
        self.rps = rps
        self.workers = workers
        self.timeout = timeout
        self._stop = threading.Event()
        self._jobs: queue.Queue[tuple[str, str, dict[str, Any] | None]] = queue.Queue(
            maxsize=workers
        )
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._by_status: Counter[int] = Counter()
        self._transport_errors = 0
        self._dropped = 0

    @property
    def running(self) -> bool:
        return bool(self._threads) and not self._stop.is_set()

    def start(self) -> TrafficGenerator:
        if self._threads:
            raise RuntimeError("traffic generator already started")
        self._threads = [threading.Thread(target=self._pace, name="demo-traffic", daemon=True)]
        self._threads += [
            threading.Thread(target=self._work, name=f"demo-traffic-{i}", daemon=True)
            for i in range(self.workers)
        ]
        for thread in self._threads:
            thread.start()
        log.info("traffic: %.1f rps against %s", self.rps, self.base_url)
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))

    def stats(self) -> TrafficStats:
        with self._lock:
            return TrafficStats(
                sent=sum(self._by_status.values()) + self._transport_errors,
                by_status=dict(self._by_status),
                transport_errors=self._transport_errors,
                dropped=self._dropped,
            )

    def _pace(self) -> None:
        interval = 1.0 / self.rps
        next_tick = time.monotonic()
        for job in itertools.cycle(REQUEST_MIX):
            if self._stop.wait(max(0.0, next_tick - time.monotonic())):
                return
            try:
                self._jobs.put_nowait(job)
            except queue.Full:
                with self._lock:
                    self._dropped += 1
            next_tick += interval
            # After a stall (suspended process, slow CI) resume the rate instead of
            # firing the missed ticks in one burst.
            next_tick = max(next_tick, time.monotonic() - interval)

    def _work(self) -> None:
        with httpx.Client(base_url=self.base_url, timeout=self.timeout) as client:
            while not self._stop.is_set():
                try:
                    method, path, body = self._jobs.get(timeout=0.2)
                except queue.Empty:
                    continue
                try:
                    status = client.request(method, path, json=body).status_code
                except httpx.HTTPError as exc:
                    log.debug("traffic: %s %s failed: %s", method, path, exc)
                    with self._lock:
                        self._transport_errors += 1
                    continue
                with self._lock:
                    self._by_status[status] += 1
