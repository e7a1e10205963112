"""The stakeholder e-mail's text: the Slack notice's words with the Slack markup taken out."""

from __future__ import annotations

from datetime import UTC, datetime

from bot.domain import messages as m
from handlers import wording
from handlers.email_text import plain, stakeholder_email

AT = datetime(2026, 11, 29, 3, 0, tzinfo=UTC)


def _completion() -> m.Completion:
    return m.Completion(
        target="rev 2 <good> & tested", current="rev 3", completed_at=AT, restored_at=AT,
        downtime="12 min", since="incident start", started_at=AT, checks_passed=5,
        monitoring_seconds=0, monitoring_interval_seconds=300, review_hours=24,
        review_due=AT, postmortem_hours=48, postmortem_due=AT)


def test_markup_comes_out_and_what_people_typed_stays_literal() -> None:
    assert plain("*Rollback details*") == "Rollback details"
    assert plain("requested by <@U123ABC> for <!subteam^S42>") == "requested by @U123ABC for @S42"
    assert plain("<https://slack.com/archives/C1/p1|RB-7>") == "RB-7 (https://slack.com/archives/C1/p1)"
    assert plain("a &lt;b&gt; tag &amp;amp; more") == "a <b> tag &amp; more"
    assert plain("2*3*4 stays") == "2*3*4 stays"


def test_the_completion_email_is_the_slack_notice_in_plain_text() -> None:
    update = m.StakeholderUpdate("restored", "Hotel Voice Bot Rollback Completed", "RB-7", "",
                                 "U1", "U2", _completion())
    subject, body = stakeholder_email("hotel-voice-bot", update)
    assert subject == "[Resolved] hotel-voice-bot rolled back to rev 2 <good> & tested (RB-7)"
    assert body.startswith("Hotel Voice Bot Rollback Completed\n\nRollback details\n")
    card = wording.card(update)
    for line in card.text.splitlines():  # every line of the Slack card, markup taken out
        assert plain(line) in body
    assert "• Version rolled back to: rev 2 <good> & tested (from rev 3)" in body
    assert body.rstrip().endswith("requested by @U1 · approved by @U2")
    assert "*" not in body and "&lt;" not in body and ":white_check_mark:" not in body


def test_other_phases_say_the_phase_in_the_subject() -> None:
    update = m.StakeholderUpdate("verification_failed", "Hotel Voice Bot rollback did not "
                                 "restore service", "RB-8", "health: HTTP 503", "U1", None, None)
    subject, body = stakeholder_email("hotel-voice-bot", update)
    assert subject == "[Investigating] Hotel Voice Bot rollback did not restore service (RB-8)"
    assert "Verification after RB-8 failed: health: HTTP 503." in body
