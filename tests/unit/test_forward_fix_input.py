"""What a forward-fix record may hold (``bot.domain.forward_fix``) and how the command reads."""

from __future__ import annotations

import pytest

from bot.domain import forward_fix
from bot.domain.command_parsing import parse
from bot.domain.errors import ParseError
from platforms.registry import PRODUCTION


@pytest.mark.parametrize("url", [
    "https://github.com/acme/hotel-voice-bot/pull/812",
    "http://jira.internal:8080/browse/HVB-12?focus=comments#c3",
    "  https://linear.app/acme/issue/HVB-9  ",
])
def test_plain_http_addresses_are_accepted(url: str) -> None:
    assert forward_fix.check_link(url) == url.strip()


@pytest.mark.parametrize("url, says", [
    ("", "empty"),
    ("ftp://example.com/fix", "not an http(s) URL"),
    ("javascript:alert(1)", "not an http(s) URL"),
    ("github.com/acme/r/pull/1", "not an http(s) URL"),
    ("https:///pull/1", "no host"),
    ("https://alice:hunter2hunter2@github.com/acme/r/pull/1", "credentials"),
    ("https://alice@github.com/acme/r/pull/1", "credentials"),
    ("https://example.com/fix?token=abcdef123456", "credential"),
    ("https://example.com/ghp_" + "a" * 36, "credential"),
    ("https://example.com/a b", "spaces"),
    ("https://example.com/a|<!channel>", "spaces"),
    ("https://example.com:99999999/x", "not a valid URL"),
    ("https://example.com/" + "x" * forward_fix.MAX_URL, "at most"),
])
def test_bad_links_are_refused_with_the_reason(url: str, says: str) -> None:
    with pytest.raises(ParseError) as exc:
        forward_fix.check_link(url)
    assert says in str(exc.value)
    assert "hunter2" not in str(exc.value)  # a refusal never repeats the secret


def test_free_text_is_bounded_trimmed_and_scrubbed() -> None:
    text = forward_fix.check_text("  cache key; password=hunter2hunter2 \x00 ", what="root cause",
                                  limit=100)
    assert text.startswith("cache key;") and "hunter2" not in text
    with pytest.raises(ParseError, match="at most 5"):
        forward_fix.check_text("123456", what="root cause", limit=5)
    with pytest.raises(ParseError, match="required"):
        forward_fix.check_text("  ", what="waiver's reason", limit=50, minimum=3)


def test_the_command_reads_a_link_with_its_root_cause_or_a_waiver() -> None:
    p = parse('forward-fix RB-7 https://github.com/a/b/pull/3 stale "cache key"',
              platforms=PRODUCTION)
    assert p.verb == "forward-fix" and p.argument == "RB-7"
    assert p.forward_fix == forward_fix.ForwardFixInput(
        link="https://github.com/a/b/pull/3", root_cause="stale cache key")
    w = parse("forward-fix 7 --waive config-only change, nothing to fix", platforms=PRODUCTION)
    assert w.forward_fix == forward_fix.ForwardFixInput(
        waive_reason="config-only change, nothing to fix")


@pytest.mark.parametrize("text, says", [
    ("forward-fix", "needs an ID"),
    ("forward-fix RB-7", "needs the issue or pull-request URL"),
    ("forward-fix RB-x https://a.example/1", "not a rollback ID"),
    ("forward-fix RB-7 --waive", "required"),
    ("forward-fix RB-7 --later", "Unexpected `--later`"),
    ("forward-fix RB-7 not-a-url", "not an http(s) URL"),
])
def test_the_command_refuses_what_it_cannot_record(text: str, says: str) -> None:
    with pytest.raises(ParseError, match=None) as exc:
        parse(text, platforms=PRODUCTION)
    assert says in str(exc.value)
