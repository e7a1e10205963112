"""Signed but hostile input: fuzzed command texts, malformed interactive payloads, and
mention/link injection. Every request is validly signed; what it carries is not.

Asserted over the wire: no 5xx, acks under 3 s, no traceback in the log, no platform
mutation, and nothing the bot sends to Slack renders user text as markup.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import urlencode

import pytest

from bot.domain.command_parsing import parse
from bot.domain.errors import ParseError
from handlers import ids
from platforms.registry import PRODUCTION
from tests.e2e.conftest import CHANNEL, Harness, make_harness  # noqa: F401 (fixture)
from tests.support.rss import peak_rss_kb, reset_peak_rss

SERVICE = "hotel-voice-bot"
ACK_LIMIT = 3.0
WIRE_TEXTS = 10_000  # signed command texts sent over HTTP
# Peak RSS of the whole test process (bot, emulator and senders) may grow by this much. The
# in-process Slack emulator keeps every call it served (decoded payloads, stored ephemerals:
# about 10 KiB per request, 95-108 MiB for these 10,000 requests as measured); a tracemalloc
# snapshot filtered to bot/, handlers/ and platforms/ found 0.2 MiB retained by the bot
# itself. The bound leaves room for the emulator's records and catches a leak of a few KiB
# per request in the bot on top of them.
RSS_GROWTH_BOUND_KB = 128 * 1024
FLAGS = ["--to", "--severity", "--scope", "--platform", "--reason", "--frobnicate", "--"]
ODD = ["²", "³", "١٢", "٣", "①", "12", "rev-3", "rev", "0", "-1", "1e9", "9" * 30,
       "9" * 5000, "\x00", "a\x00b", "\u202e", "\u200f", "🚀", "👩‍👩‍👧", '"', "'", "“", "”",
       "\\", "=", "--to=²", "--scope=app,db", "P0", "p1", "app,db", "ecs", "fly", "<!channel>",
       "<https://evil.example|x>", "&amp;", "x" * 3000, "\t", "\n", " ", "known-bad", "clear",
       "help", "status", "history", "cancel", "services", SERVICE, "RB-1", "RB-99999999999"]


def command_texts(n: int, seed: int = 10) -> list[str]:
    """``n`` command texts from a grammar of real verbs and flags plus odd tokens."""
    rng = random.Random(seed)
    heads = [SERVICE, "known-bad", "status", "history", "cancel", "help", "services", "",
             "unknown-svc", "--to", "²"]
    out = []
    for _ in range(n):
        parts = [rng.choice(heads)]
        if parts[0] == "known-bad":
            parts += [SERVICE, "clear", rng.choice(ODD)]
        for _ in range(rng.randint(0, 6)):
            if rng.random() < 0.6:
                flag = rng.choice(FLAGS)
                parts.append(flag + "=" + rng.choice(ODD) if rng.random() < 0.2 else flag)
            parts.append(rng.choice(ODD))
        text = " ".join(parts)
        if rng.random() < 0.1:  # a raw cut in the middle, unbalanced quotes included
            text = text[: rng.randint(0, len(text))]
        out.append(text)
    return out


def test_parse_raises_only_parse_errors() -> None:
    texts = command_texts(12_000)
    started = time.monotonic()
    for text in texts:
        try:
            parsed = parse(text, platforms=PRODUCTION)
        except ParseError:
            continue
        assert parsed.to is None or 0 < parsed.to < 10**9
        assert "\x00" not in parsed.reason and "\x00" not in (parsed.service or "")
    assert time.monotonic() - started < 30


class Tracebacks(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info or record.exc_text or record.stack_info:
            self.records.append(record)


@pytest.fixture
def tracebacks() -> Iterator[Tracebacks]:
    handler = Tracebacks()
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield handler
    finally:
        root.removeHandler(handler)


def _describe(records: list[logging.LogRecord]) -> str:
    return "\n".join(f"{r.name}: {r.getMessage()[:200]} {r.exc_info and r.exc_info[1]!r}"
                     for r in records[:5])


def test_fuzzed_commands_over_the_wire(make_harness: Callable[..., Harness],  # noqa: F811
                                       tracebacks: Tracebacks) -> None:
    h = make_harness()
    # Requests that would start a real rollback are not the point here (they are valid);
    # keep the ones that parse to errors or read-only answers, plus every known trap.
    texts = [t for t in command_texts(30_000, seed=11) if _not_a_request(t)][:WIRE_TEXTS]
    texts += [f"{SERVICE} --to ²", f"{SERVICE} --to {'9' * 4400}", f"{SERVICE} --to=³",
              f"known-bad {SERVICE} clear ²", f"known-bad {SERVICE} clear {'7' * 5000}",
              "status RB-99999999999999999999", "cancel RB-²", "history \x00",
              f'{SERVICE} --to ² --reason "a\x00b"']
    assert len(texts) >= WIRE_TEXTS

    def send(text: str) -> tuple[str, int, float]:
        started = time.monotonic()
        reply = h.request(text)
        return text, reply.status, time.monotonic() - started

    reset_peak_rss()
    rss_before = peak_rss_kb()
    started = time.monotonic()
    # A few senders at once, like a busy channel; the server's threads are shared with them.
    with ThreadPoolExecutor(max_workers=6) as pool:
        results = list(pool.map(send, texts))
    elapsed = time.monotonic() - started
    failed = [(t[:80], status) for t, status, _ in results if status >= 500]
    slow = [(t[:80], round(took, 2)) for t, _, took in results if took > ACK_LIMIT]
    assert not failed, failed[:5]
    assert not slow, slow[:5]
    h.emulator.wait_idle(quiet=0.5)  # answers sent after the ack (respond) have finished
    assert not tracebacks.records, _describe(tracebacks.records)
    assert not h.platform.mutations()
    growth = peak_rss_kb() - rss_before
    assert growth < RSS_GROWTH_BOUND_KB, f"peak RSS grew by {growth} KiB"
    assert elapsed < 240, elapsed


def _not_a_request(text: str) -> bool:
    try:
        return parse(text, platforms=PRODUCTION).verb != "request"
    except ParseError:
        return True


def _base_block_actions(h: Harness, rng: random.Random) -> dict[str, Any]:
    ws = h.emulator.ws
    user = ws.resolve_user("alice")
    channel = ws.resolve_channel(CHANNEL)
    return {"type": "block_actions", "user": {"id": user.id, "name": "alice"},
            "api_app_id": h.emulator.app_id, "token": "sandbox-verification-token",
            "team": {"id": ws.team_id}, "trigger_id": h.emulator.issue_trigger_id(user.id),
            "channel": {"id": channel.id}, "container": {"type": "message",
                                                         "channel_id": channel.id},
            "actions": [{"action_id": rng.choice(ACTION_IDS), "block_id": "rb:1",
                         "value": "1", "type": "button"}]}


def _base_view(h: Harness, rng: random.Random) -> dict[str, Any]:
    ws = h.emulator.ws
    user = ws.resolve_user("alice")
    channel = ws.resolve_channel(CHANNEL)
    callback = rng.choice(VIEW_IDS)
    return {"type": "view_submission", "user": {"id": user.id},
            "api_app_id": h.emulator.app_id, "token": "sandbox-verification-token",
            "team": {"id": ws.team_id}, "trigger_id": h.emulator.issue_trigger_id(user.id),
            "view": {"id": "V1", "type": "modal", "callback_id": callback,
                     "private_metadata": f"1|{channel.id}|{SERVICE}|",
                     "state": {"values": {
                         "reason": {"reason": {"type": "plain_text_input", "value": "x"}},
                         "scope": {"scope": {"type": "checkboxes", "selected_options": [
                             {"value": "app"}]}},
                         "severity": {"severity": {"type": "static_select",
                                                   "selected_option": {"value": "P2"}}},
                         "target_revision": {"target_revision": {
                             "type": "static_select", "selected_option": {"value": "2"}}},
                         "confirm_service": {"confirm_service": {
                             "type": "plain_text_input", "value": "nope"}}}}}}


ACTION_IDS = [ids.APPROVE, ids.APPROVE_OVERRIDE, ids.REJECT, ids.CANCEL, ids.ASSIGN_IC,
              ids.HOTFIX, f"{ids.CHECKLIST}:team_assembled", ids.RESOLVE, ids.RETRY,
              ids.REMINDER_DONE, ids.REMINDER_SNOOZE, ids.SCALE_BACK_UP]
VIEW_IDS = [ids.REQUEST_MODAL, ids.REJECT_MODAL, ids.APPROVE_DESTRUCTIVE_MODAL]
JUNK: list[Any] = [None, 5, -1, 1.5, True, "", "\x00", "²", "9" * 5000, [], {}, [None],
                   {"id": None}, "\ud800", "RB-1", "1:\x00", "1:nope", "<!channel>", "x" * 4000]


def _mutate(payload: dict[str, Any], rng: random.Random) -> Any:
    """One structural injury: a dropped or retyped field somewhere in the payload."""
    paths = list(_paths(payload))
    for _ in range(rng.randint(1, 3)):
        path = rng.choice(paths)
        parent: Any = payload
        try:
            for key in path[:-1]:
                parent = parent[key]
            if not isinstance(parent, dict | list):
                continue
            if rng.random() < 0.35 and isinstance(parent, dict):
                parent.pop(path[-1], None)
            else:
                parent[path[-1]] = rng.choice(JUNK)
        except (IndexError, KeyError, TypeError):
            continue
    return payload


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    items = node.items() if isinstance(node, dict) else enumerate(node) \
        if isinstance(node, list) else ()
    for key, child in items:
        yield (*prefix, key)
        yield from _paths(child, (*prefix, key))


def malformed_bodies(h: Harness, n: int, seed: int = 12) -> Iterator[str]:
    """Payloads that are JSON objects with missing, retyped or junk fields."""
    rng = random.Random(seed)
    for i in range(n):
        base = (_base_block_actions if rng.random() < 0.6 else _base_view)(h, rng)
        roll = i % 20
        payload: Any
        if roll == 0:
            payload = {}
        elif roll == 1:
            payload = {**base, "actions": []}
        elif roll == 2:
            payload = {**base, "view": {**base.get("view", {}), "private_metadata": 5}}
        else:
            payload = _mutate(base, rng)
        yield urlencode({"payload": json.dumps(payload)})


def unparseable_bodies(h: Harness, n: int, seed: int = 13) -> Iterator[str]:
    """Signed bodies Bolt cannot even parse: ``payload`` not a JSON object, or cut short."""
    rng = random.Random(seed)
    for _ in range(n):
        raw = json.dumps(_base_block_actions(h, rng))
        yield urlencode({"payload": rng.choice(
            ["null", "[]", "5", '"x"', "[{}]", raw[: rng.randint(0, len(raw) - 1)]])})


def test_unparseable_signed_payloads(make_harness: Callable[..., Harness],  # noqa: F811
                                     tracebacks: Tracebacks) -> None:
    h = make_harness()
    statuses = [h.driver.send(body).status for body in unparseable_bodies(h, 200)]
    assert max(statuses) < 500, sum(s >= 500 for s in statuses)
    assert not tracebacks.records


def test_malformed_interactive_payloads(make_harness: Callable[..., Harness],  # noqa: F811
                                        tracebacks: Tracebacks) -> None:
    h = make_harness()
    started = time.monotonic()
    failed, slow, sent = [], [], 0
    for body in malformed_bodies(h, 2_000):
        t0 = time.monotonic()
        reply = h.driver.send(body)
        sent += 1
        if time.monotonic() - t0 > ACK_LIMIT:
            slow.append(body[:120])
        if reply.status >= 500:
            failed.append((reply.status, body[:200]))
    elapsed = time.monotonic() - started
    h.emulator.wait_idle(quiet=0.5)  # refusals posted after the acks have finished
    assert sent >= 2_000
    assert not failed, f"{len(failed)} of {sent} got 5xx: {failed[:3]}"
    assert not slow, slow[:3]
    assert not tracebacks.records, (len(tracebacks.records), _describe(tracebacks.records))
    assert not h.platform.mutations()
    assert elapsed < 75


def test_mention_and_link_injection_is_escaped(make_harness: Callable[..., Harness]  # noqa: F811
                                               ) -> None:
    h = make_harness()
    evil = "<!channel> urgent: <https://evil.example|approve here>"
    reply = h.request(f'{SERVICE} --severity P2 --reason "{evil}"')
    assert reply.status == 200
    msg = h.rollback_message()
    blocks = json.dumps(msg["blocks"], ensure_ascii=False)
    assert "&lt;!channel&gt; urgent: &lt;https://evil.example|approve here&gt;" in blocks
    sent = json.dumps([c.params for c in h.emulator.calls()], ensure_ascii=False)
    assert "<!channel>" not in sent
    assert "<https://evil.example|" not in sent
    assert "<@" in blocks  # the bot's own mentions still render
