"""Benchmark: hostile requests against the bot's HTTP server, what held and what it cost.

Two parts, one fresh database:
  1. Peak RSS for one unsigned 5 MiB and 20 MiB body (a form POST whose ``payload`` is
     nested JSON, garbage signature), for (a) the bot's real server (``SandboxStack``:
     ``bot.runtime.server.HttpServer`` with the front door, plus the Slack emulator it talks to)
     and (b) the baseline: a bare ``slack_bolt.App`` behind waitress without a front door
     (``BareBolt`` from bench/ack_latency.py). Every measurement is a fresh subprocess, so
     its ``VmHWM`` (/proc/<pid>/status) is that one server's alone; the peak is reset
     after a small warm-up request (``clear_refs``), so growth is what the body caused.
  2. Tried / held / failed per class against the bot's server (in this process, so the
     emulator's call log and the log records are at hand). "Held" is the defined correct
     outcome, "failed" is anything else:
       * unsigned or forged bodies (the corpus of tests/adversarial/test_front_door.py:
         13 bodies x 28 header variants: bad, missing, other-secret signatures, timestamps
         ``now``, empty, float, 10 minutes old, future, ...): 401 (413 for the body one
         byte over the limit), and zero Slack calls recorded by the emulator for the class;
       * oversized bodies (3 MiB and 20 MiB by Content-Length, and chunked without a
         length): 413 before the client finished sending (chunked: 413 or the connection
         closed, before 8x the limit was sent);
       * signed fuzzed command texts (``command_texts`` of tests/adversarial/test_fuzz.py,
         minus texts that parse to a real rollback request, plus its known traps) and
         signed malformed interactive/view payloads (``malformed_bodies`` and
         ``unparseable_bodies`` from the same module): status < 500 and ack < 3 s;
       * an idle-connection flood: 500 idle connections (100 of them half a request line)
         held open while signed ``/rollback help`` and ``GET /healthz`` run in a steady
         stream: 200 in < 3 s. Phases with and without the flood are interleaved
         (off, on, on, off) and the help-ack percentiles are compared as a ratio.
     Every log record of the run goes to a file (INFO, like ``bot.runtime.cli.setup_logging``);
     records carrying a traceback and uncaught thread exceptions are counted per class.
Prints the tried/held/failed table and the RSS rows as Markdown, ready for bench/README.md.
Exit status 1 when a request was not held, the unsigned class caused a Slack call, a
traceback was logged, or the bot's RSS grew by more than 64 MiB for the 20 MiB body.

Run: ``.venv/bin/python bench/hostile.py`` (~50 s; ``--quick`` ~20 s; ``--help``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import secrets
import select
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast
from urllib.parse import urlencode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import fresh_database, percentile, quiet_logging, record  # noqa: E402
from tests.support.hostile import (  # noqa: E402
    held_by_server,
    http_stack,
    idle_flood,
    server_kept_open,
    wait_released,
)
from tests.support.rss import clear_peak_rss, peak_rss_kb, status_kb  # noqa: E402
from tests.support.signing import sign  # noqa: E402

MIB = 1024 * 1024
ACK_LIMIT = 3.0  # Slack's ack deadline
CHANNEL = "inc-hotel-voice-bot"
GARBAGE_SIGNATURE = "v0=" + "0" * 64
BOT_RSS_GROWTH_BOUND_MIB = 64  # tests/adversarial/test_front_door.py's bound
NOISY_LOGGERS = ("waitress.queue", "httpx", "kubernetes", "pgserver")


# --------------------------------------------------------------------------- raw HTTP
def _status_of(answer: bytes) -> int | None:
    parts = answer.split(b" ", 2)
    if len(parts) >= 2 and parts[0].startswith(b"HTTP/") and parts[1].isdigit():
        return int(parts[1])
    return None


def _read_status(sock: socket.socket, timeout: float) -> int | None:
    """The status of the server's answer, or None when it closed or reset without one."""
    sock.settimeout(timeout)
    answer = b""
    try:
        while b"\r\n" not in answer:
            data = sock.recv(4096)
            if not data:
                break
            answer += data
    except OSError:
        pass
    return _status_of(answer)


def _request_head(headers: dict[str, str], *, length: int | None) -> bytes:
    lines = ["POST /slack/events HTTP/1.1", "Host: 127.0.0.1", "Connection: close"]
    lines.append(f"Content-Length: {length}" if length is not None
                 else "Transfer-Encoding: chunked")
    lines += [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def post_body(port: int, headers: dict[str, str], body: bytes, *,
              timeout: float = 120) -> tuple[int | None, int, float]:
    """POST ``body`` as fast as the socket takes it, stopping as soon as the server
    answers. Returns (status or None, body bytes sent, seconds to the answer)."""
    started = time.perf_counter()
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(_request_head(headers, length=len(body)))
        view, sent = memoryview(body), 0
        while sent < len(body):
            readable, _, _ = select.select([sock], [], [], 0)
            if readable:
                break
            try:
                sent += sock.send(view[sent:sent + 256 * 1024])
            except OSError:
                break
        status = _read_status(sock, timeout)
    return status, sent, time.perf_counter() - started


def post_declared(port: int, headers: dict[str, str], length: int, *,
                  timeout: float = 10) -> tuple[int | None, int]:
    """Declare ``length`` bytes, then send 64 KiB every 5 ms while the server has not
    answered. Returns (status or None, body bytes sent before the answer)."""
    chunk = b"A" * 65536
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(_request_head(headers, length=length))
        sent = 0
        deadline = time.monotonic() + timeout
        while sent < length and time.monotonic() < deadline:
            readable, _, _ = select.select([sock], [], [], 0.005)
            if readable:
                break
            try:
                sent += sock.send(chunk[: length - sent])
            except OSError:
                break
        return _read_status(sock, timeout), sent


def post_chunked(port: int, headers: dict[str, str], cap: int, *,
                 timeout: float = 10) -> tuple[int | None, int]:
    """Chunked body (no length to refuse from), 64 KiB pieces until the server answers or
    closes, or ``cap`` bytes were sent. Returns (status or None, body bytes sent)."""
    piece = b"10000\r\n" + b"A" * 0x10000 + b"\r\n"
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(_request_head(headers, length=None))
        sent = 0
        while sent < cap:
            readable, _, _ = select.select([sock], [], [], 0)
            if readable:
                break
            try:
                sock.sendall(piece)
            except OSError:
                break
            sent += 0x10000
        return _read_status(sock, timeout), sent


def nested_payload_body(size: int) -> bytes:
    """A form body of about ``size`` bytes: ``payload=`` and nested JSON (arrays 32 deep,
    repeated), sent raw: a form parser takes brackets without percent-encoding."""
    chunk = b"[" * 32 + b"]" * 32
    head, tail = b'payload={"type":"block_actions","n":[', b"]}"
    count = max(1, (size - len(head) - len(tail)) // (len(chunk) + 1))
    return head + b",".join([chunk] * count) + tail


# --------------------------------------------------------------------------- part 1: RSS
def _reset_peak(pid: int) -> bool:
    try:  # Linux >= 4.0: "5" resets VmHWM to the current RSS
        clear_peak_rss(pid)
    except OSError:
        return False
    return True


def serve(kind: str) -> int:
    """Child mode: run one server, print {"port"} on stdout, serve until stdin closes."""
    quiet_logging()
    from sandbox.slack import DEFAULT_BOT_TOKEN

    def announce(port: int) -> None:
        sys.stdout.write(json.dumps({"port": port}) + "\n")
        sys.stdout.flush()
        sys.stdin.read()

    if kind == "bot":
        with tempfile.TemporaryDirectory(prefix="rbbench-pm-") as pm, http_stack(
                os.environ["HOSTILE_DATABASE_URL"], pm, source="<bench>") as stack:
            assert stack.server is not None
            announce(stack.server.port)
        return 0
    from bench.ack_latency import BareBolt

    bare = BareBolt(signing_secret=secrets.token_hex(16), token=DEFAULT_BOT_TOKEN,
                    api_url="http://127.0.0.1:9/api/").start()  # never called: no token check
    try:
        announce(int(bare.server.effective_port))
    finally:
        bare.stop()
    return 0


@dataclass
class RssRow:
    server: str
    size: int
    body_bytes: int
    status: int | None
    sent: int
    seconds: float
    before_kb: int
    peak_kb: int
    reset: bool
    log_bytes: int

    @property
    def growth_kb(self) -> int:
        return max(0, self.peak_kb - self.before_kb)


def measure_rss(kind: str, size: int, database_url: str, workdir: Path) -> RssRow:
    body = nested_payload_body(size)
    log_path = workdir / f"{kind}-{len(body)}.log"
    with open(log_path, "wb") as log_file:
        proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "--serve", kind],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log_file, text=True,
            env={**os.environ, "HOSTILE_DATABASE_URL": database_url})
        try:
            assert proc.stdin is not None and proc.stdout is not None
            line = proc.stdout.readline()
            if not line:
                raise RuntimeError(f"{kind} server did not start; see {log_path}")
            port = int(json.loads(line)["port"])
            headers = {"Content-Type": "application/x-www-form-urlencoded",
                       "X-Slack-Request-Timestamp": str(int(time.time())),
                       "X-Slack-Signature": GARBAGE_SIGNATURE}
            for _ in range(3):  # warm-up: the request path's lazy imports and buffers
                post_body(port, headers, nested_payload_body(16 * 1024), timeout=10)
            # The server is done with the warm-ups once it has closed their connections
            # (polled, up to 10 s; measured anyway after that).
            wait_released(port)
            reset = _reset_peak(proc.pid)
            before = status_kb("VmRSS", proc.pid)
            status, sent, seconds = post_body(port, headers, body)
            peak = peak_rss_kb(proc.pid)
        finally:
            if proc.stdin:
                proc.stdin.close()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    return RssRow(kind, size, len(body), status, sent, seconds, before, peak, reset,
                  log_path.stat().st_size)


# --------------------------------------------------------------------------- part 2
@dataclass
class ClassResult:
    name: str
    tried: int = 0
    held: int = 0
    statuses: Counter[str] = field(default_factory=Counter)
    examples: list[str] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    tracebacks: int = 0
    seconds: float = 0.0
    note: str = ""

    @property
    def failed(self) -> int:
        return self.tried - self.held

    def record(self, ok: bool, status: str, what: str = "") -> None:
        self.tried += 1
        self.held += ok
        self.statuses[status] += 1
        if not ok and len(self.examples) < 3:
            self.examples.append(f"{status}: {what[:100]!r}")


class LogCapture(logging.Handler):
    """Counts records with a traceback; every thread's uncaught exception counts too."""

    def __init__(self, marker: str) -> None:
        super().__init__(level=logging.DEBUG)
        self.marker = marker
        self.tracebacks = 0
        self.marker_lines = 0
        self.refusals = 0
        self.first: list[str] = []
        self._counts = threading.Lock()
        self._previous_hook = threading.excepthook

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        with self._counts:
            if record.exc_info or record.exc_text or record.stack_info:
                self.tracebacks += 1
                if len(self.first) < 3:
                    exc = record.exc_info[1] if record.exc_info else None
                    self.first.append(f"{record.name}: {message[:120]} {exc!r}")
            if self.marker in message:
                self.marker_lines += 1
            if record.name == "bot.runtime.front_door":
                self.refusals += 1

    def thread_hook(self, args: threading.ExceptHookArgs) -> None:
        with self._counts:
            self.tracebacks += 1
            if len(self.first) < 3:
                self.first.append(f"uncaught in thread: {args.exc_value!r}")
        self._previous_hook(args)


def _settle(stack: Any) -> None:
    with contextlib.suppress(TimeoutError):
        stack.emulator.wait_idle(quiet=0.5, timeout=15)


def _command_body(emulator: Any, text: str) -> str:
    from sandbox.slack import payloads

    ws = emulator.ws
    who, where = ws.resolve_user("alice"), ws.resolve_channel(CHANNEL)
    fields = payloads.slash_command(
        ws, app_id=emulator.app_id, verification_token="sandbox-verification-token",
        user=who, channel=where, command="/rollback", text=text,
        response_url=emulator.issue_response_url(channel=where.id, user=who.id),
        trigger_id=emulator.issue_trigger_id(who.id))
    return urlencode(fields)


def run_forged(stack: Any, capture: LogCapture) -> ClassResult:
    import httpx

    from bot.runtime.front_door import MAX_BODY_BYTES
    from tests.adversarial.test_front_door import MARKER, _bodies, _variants

    result = ClassResult("unsigned or forged bodies")
    url = f"{stack.server.url}/slack/events"
    calls_before = len(stack.emulator.calls())
    reflected = 0
    with httpx.Client(timeout=10) as client:
        for body_name, body in _bodies().items():
            want = 413 if len(body) > MAX_BODY_BYTES else 401
            for variant in _variants(stack.signing_secret, body):
                headers = [(k.encode(), v if isinstance(v, bytes) else v.encode())
                           for k, v in variant.headers.items()]
                try:
                    reply = client.post(url, content=body, headers=headers)
                except httpx.HTTPError as exc:
                    result.record(False, type(exc).__name__, f"{body_name} / {variant.name}")
                    continue
                leaked = MARKER in reply.text
                reflected += leaked
                result.record(reply.status_code == want and not leaked,
                              str(reply.status_code), f"{body_name} / {variant.name}")
    _settle(stack)
    outbound = stack.emulator.calls()[calls_before:]
    methods = Counter(c.method for c in outbound)
    result.note = (f"outbound Slack calls {len(outbound)}"
                   + (f" {dict(methods)}" if methods else "")
                   + f"; body marker in log lines {capture.marker_lines}, in replies {reflected}")
    result.statuses["outbound"] = len(outbound)
    return result


def run_oversized(stack: Any, reps: int) -> ClassResult:
    from bot.runtime.front_door import MAX_BODY_BYTES

    result = ClassResult("oversized bodies")
    port, secret = stack.server.port, stack.signing_secret
    cap = 8 * MAX_BODY_BYTES
    sent_declared: list[int] = []
    sent_chunked: list[int] = []

    def variants(signed_size: int) -> list[tuple[str, dict[str, str]]]:
        ts = str(int(time.time()))
        form = {"Content-Type": "application/x-www-form-urlencoded"}
        return [("garbage signature", {**form, "X-Slack-Request-Timestamp": ts,
                                       "X-Slack-Signature": GARBAGE_SIGNATURE}),
                ("no signature headers", form),
                ("timestamp now", {**form, "X-Slack-Request-Timestamp": "now",
                                   "X-Slack-Signature": GARBAGE_SIGNATURE}),
                ("validly signed", {**form, "X-Slack-Request-Timestamp": ts,
                                    "X-Slack-Signature": sign(secret, ts, filler(signed_size))})]

    def filler(total: int) -> Iterator[bytes]:
        chunk = b"A" * 65536
        for start in range(0, total, len(chunk)):
            yield chunk[: total - start]

    for _ in range(reps):
        for size in (3 * MIB, 20 * MIB):
            for label, headers in variants(size):
                status, sent = post_declared(port, headers, size)
                sent_declared.append(sent)
                result.record(status == 413 and sent < size, str(status),
                              f"{size // MIB} MiB, {label}, {sent} bytes sent")
        for label, headers in variants(cap):
            status, sent = post_chunked(port, headers, cap)
            sent_chunked.append(sent)
            result.record(status in (413, None) and sent < cap,
                          "closed" if status is None else str(status),
                          f"chunked, {label}, {sent} bytes sent")
    result.note = (f"3 and 20 MiB by Content-Length: 413 after <= {max(sent_declared)} body "
                   f"bytes sent (the client sends 64 KiB per 5 ms); chunked: 413 or closed after "
                   f"<= {max(sent_chunked) / MIB:.1f} MiB sent, socket buffers included "
                   f"(limit {MAX_BODY_BYTES / MIB:.0f} MiB)")
    return result


def _send_all(stack: Any, result: ClassResult, bodies: Sequence[tuple[str, str]],
              concurrency: int) -> None:
    import httpx

    def one(item: tuple[str, str]) -> tuple[bool, str, str, float]:
        label, body = item
        started = time.perf_counter()
        try:
            reply = stack.driver.send(body)
        except httpx.HTTPError as exc:
            return False, type(exc).__name__, label, time.perf_counter() - started
        elapsed = time.perf_counter() - started
        return reply.status < 500 and elapsed < ACK_LIMIT, str(reply.status), label, elapsed

    with ThreadPoolExecutor(concurrency) as pool:
        for ok, status, label, elapsed in pool.map(one, bodies):
            result.latencies.append(elapsed)
            result.record(ok, status if elapsed < ACK_LIMIT else f"{status} slow", label)


def run_commands(stack: Any, n: int, concurrency: int) -> ClassResult:
    from tests.adversarial.test_fuzz import SERVICE, _not_a_request, command_texts

    generated = command_texts(n + n // 10 + 50, seed=11)
    kept = [t for t in generated if _not_a_request(t)]
    skipped = len(generated) - len(kept)
    texts = kept[:n]
    texts += [f"{SERVICE} --to ²", f"{SERVICE} --to {'9' * 4400}", f"{SERVICE} --to=³",
              f"known-bad {SERVICE} clear ²", f"known-bad {SERVICE} clear {'7' * 5000}",
              "status RB-99999999999999999999", "cancel RB-²", "history \x00",
              f'{SERVICE} --to ² --reason "a\x00b"']
    result = ClassResult("signed fuzzed command texts")
    bodies = [(text, _command_body(stack.emulator, text)) for text in texts]
    _send_all(stack, result, bodies, concurrency)
    result.note = f"{skipped} generated texts skipped (parse to a real request)"
    return result


def run_payloads(stack: Any, n: int, concurrency: int) -> ClassResult:
    from tests.adversarial.test_fuzz import malformed_bodies, unparseable_bodies

    harness = cast(Any, SimpleNamespace(emulator=stack.emulator))  # all the generators use
    bodies = [(b, b) for b in malformed_bodies(harness, n)]
    bodies += [(b, b) for b in unparseable_bodies(harness, max(1, n // 10))]
    result = ClassResult("signed malformed interactive/view payloads")
    _send_all(stack, result, bodies, concurrency)
    return result


@dataclass
class FloodPhase:
    flood: bool
    helps: list[float] = field(default_factory=list)
    health: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    still_open: int = 0
    lingering: int = 0  # closed connections the server still held 10 s after the phase


def run_flood_phase(stack: Any, idle: int, seconds: float, client: Any) -> FloodPhase:
    import httpx

    phase = FloodPhase(flood=idle > 0)
    port = stack.server.port
    with idle_flood(port, idle, partial=idle // 5,
                    fd_limit=4 * idle + 1024) as sockets:  # both ends live in this process
        peers = {s.getsockname()[1] for s in sockets}
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            body = _command_body(stack.emulator, "help")
            started = time.perf_counter()
            try:
                reply = stack.driver.send(body)
                elapsed = time.perf_counter() - started
                if reply.status != 200 or "/rollback status" not in reply.body:
                    phase.failures.append(f"help HTTP {reply.status}")
                elif elapsed >= ACK_LIMIT:
                    phase.failures.append(f"help {elapsed:.2f} s")
            except httpx.HTTPError as exc:
                elapsed = time.perf_counter() - started
                phase.failures.append(f"help {type(exc).__name__}")
            phase.helps.append(elapsed)
            started = time.perf_counter()
            try:
                got = client.get(f"{stack.server.url}/healthz")
                elapsed = time.perf_counter() - started
                if got.status_code != 200:
                    phase.failures.append(f"healthz HTTP {got.status_code}")
                elif elapsed >= ACK_LIMIT:
                    phase.failures.append(f"healthz {elapsed:.2f} s")
            except httpx.HTTPError as exc:
                elapsed = time.perf_counter() - started
                phase.failures.append(f"healthz {type(exc).__name__}")
            phase.health.append(elapsed)
            time.sleep(0.02)  # a steady stream, not a burst
        phase.still_open = sum(1 for s in sockets if server_kept_open(s))
    # The next phase starts once the server has dropped the connections closed here.
    if not wait_released(port, peers):
        phase.lingering = held_by_server(port, peers)
    return phase


def run_flood(stack: Any, idle: int, seconds: float) -> tuple[ClassResult, list[FloodPhase]]:
    import httpx

    phases: list[FloodPhase] = []
    with httpx.Client(timeout=10) as client:
        for flood in (False, True, True, False):
            phases.append(run_flood_phase(stack, idle if flood else 0, seconds / 2, client))
    result = ClassResult(f"idle flood: help + /healthz under {idle} idle connections")
    for phase in phases:
        if not phase.flood:
            continue
        total = len(phase.helps) + len(phase.health)
        result.tried += total
        result.held += total - len(phase.failures)
        result.examples += phase.failures[: 3 - len(result.examples)]
        result.latencies += phase.helps
    return result, phases


# --------------------------------------------------------------------------- printing
def _ms(values: Sequence[float], q: float) -> str:
    return f"{percentile(values, q) * 1000:.1f}" if values else "-"


def _status_text(counter: Counter[str]) -> str:
    return ", ".join(f"{k}: {v}" for k, v in sorted(counter.items()) if k != "outbound")


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="smaller sizes: 5 MiB RSS body only, 500 texts, 500 payloads, "
                             "2 s of flood")
    parser.add_argument("--commands", type=int, help="fuzzed command texts (default 2000)")
    parser.add_argument("--payloads", type=int,
                        help="malformed payloads (default 2000, plus 10%% unparseable)")
    parser.add_argument("--flood-seconds", type=float,
                        help="seconds of stream under the flood (default 8; as many without)")
    parser.add_argument("--idle", type=int, default=500, help="idle connections in the flood")
    parser.add_argument("--concurrency", type=int, default=4,
                        help="client threads for the fuzz classes")
    parser.add_argument("--serve", choices=["bot", "bare"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        return serve(args.serve)
    commands = args.commands or (500 if args.quick else 2000)
    payload_count = args.payloads or (500 if args.quick else 2000)
    flood_seconds = args.flood_seconds or (2.0 if args.quick else 8.0)
    rss_sizes = [5 * MIB] if args.quick else [5 * MIB, 20 * MIB]
    reps = 1 if args.quick else 2

    from tests.adversarial.test_front_door import MARKER

    began = time.perf_counter()
    workdir = Path(tempfile.mkdtemp(prefix="rbbench-hostile-"))
    log_path = workdir / "bot.log"
    rss: list[RssRow] = []
    results: list[ClassResult] = []
    with fresh_database() as url:
        # Part 1: one fresh server process per measurement, A,B then B,A.
        for i, size in enumerate(rss_sizes):
            for kind in (("bot", "bare") if i % 2 == 0 else ("bare", "bot")):
                rss.append(measure_rss(kind, size, url, workdir))
        rss_done = time.perf_counter()

        # Part 2: the bot in this process; its log (INFO, like production) to a file.
        root = logging.getLogger()
        for handler in list(root.handlers):
            root.removeHandler(handler)
        # errors= as on sys.stderr, where bot.runtime.cli.setup_logging writes: a payload's lone
        # surrogate, which Bolt's "Unhandled request" warning repeats, must not fail a write.
        file_handler = logging.FileHandler(log_path, encoding="utf-8",
                                           errors="backslashreplace")
        file_handler.setFormatter(logging.Formatter(
            "%(asctime)s %(levelname)s %(name)s: %(message)s"))
        capture = LogCapture(MARKER)
        root.addHandler(file_handler)
        root.addHandler(capture)
        root.setLevel(logging.INFO)
        for noisy in NOISY_LOGGERS:
            logging.getLogger(noisy).setLevel(logging.WARNING)
        threading.excepthook = capture.thread_hook
        flood_phases: list[FloodPhase] = []
        with tempfile.TemporaryDirectory(prefix="rbbench-pm-") as pm, http_stack(
                url, pm, source="<bench>") as stack:
            assert stack.server is not None and stack.driver is not None
            # warm-up: one signed help, so first-request costs land in no class
            stack.driver.send(_command_body(stack.emulator, "help"))
            _settle(stack)
            runs: list[Callable[[], ClassResult]] = [
                lambda: run_forged(stack, capture),
                lambda: run_oversized(stack, reps),
                lambda: run_commands(stack, commands, args.concurrency),
                lambda: run_payloads(stack, payload_count, args.concurrency),
            ]
            for run in runs:
                before, started = capture.tracebacks, time.perf_counter()
                result = run()
                _settle(stack)
                result.tracebacks = capture.tracebacks - before
                result.seconds = time.perf_counter() - started
                results.append(result)
            before, started = capture.tracebacks, time.perf_counter()
            flood, flood_phases = run_flood(stack, args.idle, flood_seconds)
            _settle(stack)
            flood.tracebacks = capture.tracebacks - before
            flood.seconds = time.perf_counter() - started
            results.append(flood)
        threading.excepthook = capture._previous_hook
        root.removeHandler(capture)
        file_handler.close()
        root.removeHandler(file_handler)
    elapsed = time.perf_counter() - began

    failures = 0
    print(f"hostile requests against rollback-bot; {elapsed:.0f} s in all "
          f"(RSS part {rss_done - began:.0f} s); log: {log_path}")
    print()
    print("Peak RSS for one unsigned body (form POST, payload = nested JSON, garbage "
          "signature); a fresh server process per row")
    print()
    print("| server | body | status | answered after | RSS before MiB | peak MiB | growth MiB "
          "| stderr log |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for row in rss:
        name = "bot (HttpServer + front door)" if row.server == "bot" else \
            "bare Bolt + waitress (baseline)"
        print(f"| {name} | {row.body_bytes / MIB:.0f} MiB | {row.status or 'closed'} | "
              f"{row.sent / MIB:.2f} MiB sent, {row.seconds * 1000:.0f} ms | "
              f"{row.before_kb / 1024:.0f} | {row.peak_kb / 1024:.0f}"
              f"{'' if row.reset else ' (peak not reset)'} | {row.growth_kb / 1024:.1f} | "
              f"{row.log_bytes} B |")
    print()
    for size in rss_sizes:
        pair = {r.server: r for r in rss if r.size == size}
        bot, bare = pair["bot"], pair["bare"]
        print(f"  {size // MIB} MiB: growth bot/bare {bot.growth_kb / max(1, bare.growth_kb):.3f}"
              f" ({bot.growth_kb / 1024:.1f} vs {bare.growth_kb / 1024:.1f} MiB); "
              f"peak bot/bare {bot.peak_kb / max(1, bare.peak_kb):.2f}")
        if size == max(rss_sizes):
            over = bot.growth_kb > BOT_RSS_GROWTH_BOUND_MIB * 1024 or bot.status != 413
            failures += over
            print(f"  bot at {size // MIB} MiB: {'ABOVE BOUND' if over else 'OK'} "
                  f"(413 and growth <= {BOT_RSS_GROWTH_BOUND_MIB} MiB)")
    print()
    print("| class | tried | held | failed | note |")
    print("| --- | --- | --- | --- | --- |")
    for r in results:
        parts = []
        if r.statuses and not r.name.startswith("idle"):
            parts.append(_status_text(r.statuses))
        if r.latencies:
            parts.append(f"ack p50 {_ms(r.latencies, 50)} / p99 {_ms(r.latencies, 99)} / "
                         f"max {max(r.latencies) * 1000:.0f} ms")
        if r.note:
            parts.append(r.note)
        parts.append(f"tracebacks {r.tracebacks}; {r.seconds:.0f} s")
        print(f"| {r.name} | {r.tried} | {r.held} | {r.failed} | {'; '.join(parts)} |")
        failures += r.failed + r.tracebacks + r.statuses.get("outbound", 0)
    print(f"| tracebacks in the log, whole run | | | {capture.tracebacks} | "
          f"records with exc_info/stack_info + uncaught thread exceptions; "
          f"{capture.refusals} front-door refusal lines |")
    print()
    on = [p for p in flood_phases if p.flood]
    off = [p for p in flood_phases if not p.flood]
    helps_on = [x for p in on for x in p.helps]
    helps_off = [x for p in off for x in p.helps]
    health_on = [x for p in on for x in p.health]
    health_off = [x for p in off for x in p.health]
    print(f"idle flood ({args.idle} connections, {args.idle // 5} of them half a request line; "
          f"phases off,on,on,off of {flood_seconds / 2:.0f} s; server still held "
          f"{[p.still_open for p in on]} at the end of each flood phase)")
    print("| stream | flood | n | p50 ms | p90 ms | p99 ms | max ms |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for label, values, flag in (("help ack", helps_off, "off"), ("help ack", helps_on, "on"),
                                ("/healthz", health_off, "off"), ("/healthz", health_on, "on")):
        print(f"| {label} | {flag} | {len(values)} | {_ms(values, 50)} | {_ms(values, 90)} | "
              f"{_ms(values, 99)} | {max(values) * 1000 if values else 0:.1f} |")
    if helps_on and helps_off:
        print(f"  help ack ratio flood/no flood: p50 "
              f"{percentile(helps_on, 50) / percentile(helps_off, 50):.2f}  p99 "
              f"{percentile(helps_on, 99) / percentile(helps_off, 99):.2f}")
    failures += sum(len(p.failures) for p in off)
    if any(p.still_open != args.idle for p in on):
        print("  note: the server closed some idle connections during a flood phase")
    if any(p.lingering for p in on):
        print(f"  note: closed flood connections the server still held 10 s later: "
              f"{[p.lingering for p in on]}")
    for r in results:
        if r.examples:
            print(f"  not held, {r.name}: {r.examples}")
    if capture.first:
        print(f"  first tracebacks: {capture.first}")
    print(f"verdict: {'OK' if not failures else 'NOT HELD'}")
    tried = sum(r.tried for r in results)
    held = sum(r.held for r in results)
    biggest = [r for r in rss if r.server == "bot" and r.size == max(rss_sizes)]
    bare_big = [r for r in rss if r.server == "bare" and r.size == max(rss_sizes)]
    rows: list[dict[str, object]] = [{
        "what": "hostile requests (unsigned, forged, oversized, fuzzed, malformed, idle "
                "flood) against the real server",
        "result": f"{held} of {tried} held; {capture.tracebacks} tracebacks; outbound calls "
                  f"from unsigned requests: {sum(r.statuses.get('outbound', 0) for r in results)}",
        "target": "all held, no traceback, no outbound call", "ok": not failures}]
    if biggest and bare_big:
        rows.append({
            "what": f"RSS for one unsigned {max(rss_sizes) // MIB} MiB body vs bare Bolt",
            "result": f"+{biggest[0].growth_kb / 1024:.0f} MiB (status "
                      f"{biggest[0].status or 'closed'}) vs "
                      f"+{bare_big[0].growth_kb / 1024:.0f} MiB",
            "target": f"413 and growth ≤ {BOT_RSS_GROWTH_BOUND_MIB} MiB",
            "ok": biggest[0].status == 413
            and biggest[0].growth_kb <= BOT_RSS_GROWTH_BOUND_MIB * 1024})
    return 0 if record("hostile", rows) and not failures else 1


if __name__ == "__main__":
    raise SystemExit(main())
