"""`/rollback` text parsing: every form, and errors that name the bad token."""

from __future__ import annotations

import pytest

from bot.domain import command_parsing
from bot.domain.command_parsing import Parsed
from bot.domain.config import Severity
from bot.domain.errors import ParseError
from platforms.registry import PRODUCTION


def parse(text: str) -> Parsed:
    """The command text as production reads it (``--platform`` from its registry)."""
    return command_parsing.parse(text, platforms=PRODUCTION)


def test_full_request() -> None:
    p = parse('hotel-voice-bot --to 3 --severity p0 --scope app,db --platform ecs '
              '--reason "5xx after deploy"')
    assert (p.verb, p.service, p.to, p.severity, p.scope, p.platform, p.reason) == (
        "request", "hotel-voice-bot", 3, Severity.P0, ["app", "db"], "ecs", "5xx after deploy")


def test_equals_form_and_rev_prefix() -> None:
    p = parse("svc --to=rev7 --severity=P2")
    assert (p.to, p.severity) == (7, Severity.P2)


@pytest.mark.parametrize("text,verb,arg", [
    ("", "help", None), ("help", "help", None), ("services", "services", None),
    ("status", "status", None), ("status RB-4", "status", "RB-4"),
    ("history svc", "history", "svc"), ("cancel RB-9", "cancel", "RB-9"),
    ("svc", "modal", None),
])
def test_subcommands(text: str, verb: str, arg: str | None) -> None:
    p = parse(text)
    assert p.verb == verb
    assert p.argument == arg


@pytest.mark.parametrize("text,token", [
    ("svc --to abc", "--to abc"), ("svc --to 0", "--to 0"), ("svc --severity P9", "P9"),
    ("svc --scope app,disk", "app,disk"), ("svc --platform nomad", "nomad"),
    ("svc --frobnicate 1", "--frobnicate"), ("svc extra", "extra"), ("svc --to", "--to"),
    ("history", "history"), ("--to 3", "--to"), ('svc --reason "unterminated', "read"),
])
def test_errors_name_the_bad_token(text: str, token: str) -> None:
    with pytest.raises(ParseError) as err:
        parse(text)
    assert token in str(err.value)


def test_known_bad_lists_and_clears() -> None:
    listing = parse("known-bad svc --platform ecs")
    assert (listing.verb, listing.service, listing.platform) == ("known-bad", "svc", "ecs")
    clear = parse('known-bad svc clear rev4 --reason "fixed the config"')
    assert (clear.verb, clear.service, clear.to, clear.reason) == (
        "clear-known-bad", "svc", 4, "fixed the config")


@pytest.mark.parametrize("text,token", [
    ("known-bad", "needs a service"), ("known-bad svc clear", "revision number"),
    ("known-bad svc clear x", "`x`"), ("known-bad svc --frob 1", "--frob"),
    ("known-bad svc --platform nomad", "nomad"),
])
def test_known_bad_errors_name_the_bad_token(text: str, token: str) -> None:
    with pytest.raises(ParseError) as err:
        parse(text)
    assert token in str(err.value)


@pytest.mark.parametrize("text", [
    "svc --to ²", "svc --to=³", "svc --to ١٢", f"svc --to {'9' * 4400}", "svc --to 1000000000",
    "known-bad svc clear ²", f"known-bad svc clear {'7' * 5000}", "cancel RB-²",
    "status RB-99999999999999999999",
])
def test_revisions_and_ids_are_bounded_ascii_numbers(text: str) -> None:
    with pytest.raises(ParseError) as err:
        parse(text)
    assert len(str(err.value)) < 200


@pytest.mark.parametrize("text", [
    "svc --to -1", "svc --to=-1", "history svc --revision -5", "history svc --revision=-5",
    "known-bad svc clear -2",
])
def test_a_negative_revision_is_refused_not_read_as_positive(text: str) -> None:
    with pytest.raises(ParseError) as err:
        parse(text)
    assert "-" in str(err.value) and "not a negative one" in str(err.value)


def test_rev_prefix_forms_stay_accepted() -> None:
    assert [parse(t).to for t in ("svc --to rev7", "svc --to rev-7", "svc --to 7",
                                  "history svc --revision rev-4")] == [7, 7, 7, 4]
    with pytest.raises(ParseError):
        parse("svc --to 7rev")


def test_nul_and_lone_surrogates_are_stripped() -> None:
    p = parse('svc --reason "a\x00b\ud800c"')
    assert p.reason == "abc"


def test_diagnose_names_one_service() -> None:
    p = parse("diagnose hotel-voice-bot")
    assert (p.verb, p.service) == ("diagnose", "hotel-voice-bot")
    with pytest.raises(ParseError, match="`diagnose` needs a service"):
        parse("diagnose")
    with pytest.raises(ParseError, match="`--scope`"):
        parse("diagnose svc --scope app")
