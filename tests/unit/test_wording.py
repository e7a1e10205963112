"""The Slack wording of the core's messages: every kind renders, what people and platforms
wrote is escaped, the bot's own mentions render, the decision matrix follows the config,
and the facts are scrubbed before any of it is worded."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from enum import Enum
from typing import Any

import pytest
from slack_sdk.models.blocks import Block

from bot.domain import messages as m
from bot.domain.compensation import Undo
from bot.domain.config import Policy, Severity
from bot.domain.errors import NotAllowed
from bot.domain.models import Rollback, Step
from bot.domain.ports import Notice, ScrubbedChat
from bot.domain.words import GroupMention, Mention, RollbackLink
from bot.observability.scrub import REDACTED
from handlers import ids, views, views_aftercare, wording
from handlers.errors import render
from platforms.registry import PRODUCTION

AT = datetime(2026, 11, 29, 3, 4, 5, tzinfo=UTC)
GROUP = GroupMention("sre-approvers", "S0GROUP")  # a handle Slack resolved to its id
REST = m.InterruptedRestore("/backups/pre/hvb.dump", begun=True)
COMP = m.Compensated("step 3 failed", "kubernetes prod/hvb", 3)
COMPLETION = m.Completion(
    target="rev 4", current="rev 5", completed_at=AT, restored_at=AT + timedelta(minutes=2),
    downtime="11 min 30 s", since="rollback request", started_at=AT - timedelta(minutes=9),
    checks_passed=4, monitoring_seconds=7200, monitoring_interval_seconds=300,
    review_hours=24, review_due=AT + timedelta(hours=24), postmortem_hours=48,
    postmortem_due=AT + timedelta(hours=48))

# One message of every kind, with facts as the core sends them.
SAMPLES: list[m.Message] = [
    m.ImmediatePolicy("P0", "immediate", destructive=True, self_approval=True),
    m.KnownBadTargetRequested("RB-3", "U1", "hvb", "rev 4", 2),
    m.RollbackRequested("hvb", "RB-3", "rev 4", "P1"),
    m.StakeholdersNotNotified(("#status", "#ops")),
    m.KnownBadOverride("U2", "RB-3", "hvb", "rev 4"),
    m.BreakGlass("U2", "P0"),
    m.PolicyOverridden("U2", "P3", "next_deployment"),
    m.Rejected("U2", "RB-3", "not now"),
    m.Cancelled("U2", "RB-3"),
    m.CancelAsked("U2", "RB-3", Undo.RESTORE_REPLICAS),
    m.ScaledBackUp("U2", "kubernetes prod/hvb", 3),
    m.Resolved("U2", "RB-3", "failed"),
    m.HotfixReported("U2", "RB-3", AT, AT + timedelta(minutes=15), 15,
                     AT + timedelta(minutes=30)),
    m.Expired("RB-3", AT),
    m.DecisionDue("RB-3", "P1", "hotfix_window", AT, GROUP, ("U3",), "U1", "rev 4", None,
                  AT + timedelta(minutes=15)),
    m.DecisionDue("RB-3", "P2", "evaluate", AT, None, (), "U1", "rev 4", None, None),
    m.ExecutionStarted("RB-3", 4),
    m.ExecutionResumed("RB-3", "host:1:abc"),
    m.DidNotStart("RB-3", "the running revision changed"),
    m.MarkedKnownBad("rev 5", "hvb"),
    m.StepNote("waiting for 2 pods"),
    m.StepRetrying(2, 4, "Roll back", "429 throttled", 3.2, True, 2),
    m.StepDone(2, 4, "Roll back", "now on rev 4"),
    COMP,
    m.ExecutionFailed("RB-3", 3, "Wait for the rollout", "timed out", COMP),
    m.CancelledBeforeStep("RB-3", (Mention("U2"),), 3, "Wait", None),
    m.HandedOver("RB-3", ("RB-3 failed at step 4 (Restore): boom",), 3,
                 "kubectl -n prod scale deployment/hvb --replicas=3", True, None, None),
    m.Interrupted("RB-3", ("the process executing RB-3 died",), REST),
    m.VerificationRetried("U2"),
    m.MonitoringResumed("U2"),
    m.ClosedBy("U2", "RB-3", "completed"),
    m.ReminderClosed("done", "U2", AT),
    m.ReminderSnoozed("U2", AT),
    m.Verification(3, "RB-3", "hvb", 2, "failed", "1 passed, 1 failed",
                   "✅ health: HTTP 200 (12 ms)\n❌ db: down (3 ms)", "db (down)", "U1", None),
    m.MonitoringStarted("hvb", AT, 300, 0.05, 3),
    m.MonitoringCheck(3, 24, 0.012, False, "HTTP 503 in 12 ms", ""),
    m.RegressionAlert(3, "RB-3", "hvb", 4, 24, AT, "error rate 20.0% is over", "U1", None),
    m.StabilityReport("RB-3", (("Window", "03:04–05:04 UTC"), ("Health", "24/24 passed"))),
    m.Completed("RB-3", "hvb", "rev 4"),
    m.DecorationFailed("the stability chart", "RB-3", 3, "Slack said internal_error"),
    m.StakeholderUpdate("restored", "Hvb Rollback Completed", "RB-3", "", "U1", "U2",
                        COMPLETION),
    m.StakeholdersNotUpdated("regression", ("#status",)),
    m.StatuspageNotUpdated("stable", "status page answered HTTP 500"),
    m.StakeholdersNotEmailed("restored", ("ops@example.com",), "550 5.1.1 no such user"),
    m.Reminder("7:2", "postmortem", "RB-3", "P1", "hvb", "rev 4", AT, 48, True,
               "2026-11-29-x-hvb-rb-3.md", 4, "U1", None),
    m.SkeletonNotUploaded("RB-3", "SlackApiError", "2026-11-29-x-hvb-rb-3.md"),
    m.PostmortemPullRequest("RB-3", "acme/hvb", "docs/post-mortems/2026-11-29-hvb-rb-3.md",
                            "https://github.com/acme/hvb/pull/4"),
    m.PostmortemPullRequestFailed("RB-3", "acme/hvb", "could not read branch 'main': HTTP 401 "
                                  "Bad credentials (the token is missing, expired or revoked)"),
    m.Diagnosis("hvb", AT, (
        m.Finding("app", ("app",), ("12.0% is above the threshold of 5.00%",)),
        m.Finding("db", ("db",), ("`SELECT 1 FROM t` failed: no <t>",), "hvb-x.dump",
                  AT - timedelta(hours=1), "/backups"),
        m.Finding("external", ("config", "external"), ("WAHA: HTTP 500, expected 200",))),
        (m.Checked("error rate", "problem", "12.0%"),
         m.Checked("database", "unchecked", "could not check within 10 s"))),
    m.ReleaseProposal("hvb", since=AT, duration_seconds=600, threshold=0.05, lowest=0.058,
                      latest=0.061, current="rev 7 (hvb:1.3.0)", previous="rev 6 (hvb:1.2.0)",
                      deployed_at=AT, revisions_note="", health="passing: HTTP 200 in 12 ms",
                      severity="P1", snooze_seconds=3600, request_value='{"service":"hvb"}'),
    m.ProposalSnoozed("hvb", "U0CAROL", AT),
    m.DecisionDue("RB-3", "P2", "evaluate", AT, GroupMention("sre", None), (), "U1", "rev 4",
                  None, None),  # a group Slack did not resolve
    m.WatchReading(0.0613, 0.05, 12 * 60 + 30, AT),
    m.AutomationApproved("rollback-bot-auto", "P0"),
    m.Escalated("RB-3", "needs_attention", (
        m.EscalatedContact("DBA", "Dave", "U0DAVE", None, "+1 415 555 0102", None),
        m.EscalatedContact("Incident commander", "", None, GroupMention("@ics", None), None,
                           "ic@example.com")), ("Technical lead",), True, "step 4 Restore"),
    m.PageFailed("RB-3", "trigger", "PagerDuty refused the trigger (429): slow down", True),
    m.ForwardFixAsk("3", "RB-3", "hvb", "rev 5", True, True, AT, "U1",
                    m.ForwardFixRecorded("waived", "RB-3", "U2", AT, reason="config only")),
    m.ForwardFixRecorded("given", "RB-3", "U2", AT, link="https://github.com/o/r/pull/7",
                         root_cause="a bad cache key"),
]


def test_an_escalation_mentions_people_names_unresolved_groups_and_unconfigured_roles() -> None:
    text = wording.line(next(s for s in SAMPLES if isinstance(s, m.Escalated)))
    assert text.startswith(":sos: *Escalation for RB-3: the rollback stopped and needs a "
                           "human* (step 4 Restore).")
    assert "• *DBA* Dave · <@U0DAVE> · :telephone_receiver: +1 415 555 0102" in text
    assert "@ics (a Slack group I could not resolve: nobody in it was notified)" in text
    assert "No contact configured for: Technical lead" in text
    assert text.endswith(":pager: Paging through PagerDuty.")


def _kinds(cls: type[m.Message] = m.Message) -> set[type[m.Message]]:
    out: set[type[m.Message]] = set()
    for sub in cls.__subclasses__():
        out |= {sub, *_kinds(sub)}
    return out


def test_every_kind_of_message_has_a_sample_and_renders() -> None:
    assert {type(s) for s in SAMPLES} == _kinds()
    for sample in SAMPLES:
        card = wording.card(sample)  # TypeError "no Slack wording for <kind>" without one
        assert card.text and "None" not in card.text, (sample, card)
        for block in views_aftercare.notice_blocks(card, key="k"):
            Block.parse(block).validate_json()


def test_texts_are_the_ones_people_know() -> None:
    """The exact texts the core used to write itself (tests and people rely on them)."""
    line = wording.line
    assert line(SAMPLES[0]) == (
        ":rotating_light: *P0*: immediate rollback. An approver may approve their own request "
        "(break glass, audited), except the destructive steps: those need a second person.")
    assert line(m.PolicyOverridden("U2", "P3", "next_deployment")) == (
        ":warning: <@U2> overrode the P3 policy (plan for next deployment) and approved "
        "execution now.")
    assert line(m.CancelAsked("U2", "RB-3", Undo.HUMAN)) == (
        "<@U2> asked to cancel RB-3: it stops after the current step; the database restore "
        "has started, so the service stays scaled down until a human decides (you will get "
        "instructions).")
    assert line(m.ExecutionFailed("RB-3", 3, "Wait", "timed out", COMP)) == (
        ":x: RB-3 failed at step 3 (Wait): timed out\nCompensation (step 3 failed): scaled "
        "kubernetes prod/hvb back to 3 replicas, the count recorded before the scale-down.\n"
        "Next: check the platform state, then request a new rollback or fix forward. "
        "Completed steps are listed above.")
    assert line(m.CancelledBeforeStep("RB-3", (Mention("U2"),), 3, "Wait", None)) == (
        ":heavy_multiplication_x: RB-3 cancelled by <@U2> before step 3 (Wait). Steps already "
        "done stay done; the revision it moved away from stays marked known-bad.")
    assert line(SAMPLES[26]) == (
        ":warning: RB-3 needs attention: RB-3 failed at step 4 (Restore): boom.\n"
        "*Where things stand:*\n"
        "• Service: left at 0 replicas (it had 3 replicas before the scale-down); nothing "
        "starts it again until a person decides.\n"
        "1. Check the database: run the service's verify queries and look at the restore "
        "output in the step list above.\n"
        "2. When it is safe, an approver clicks *Scale back up*, or run "
        "`kubectl -n prod scale deployment/hvb --replicas=3`.\n"
        "3. Close the rollback with *Mark resolved*.")
    interrupted = line(m.Interrupted("RB-3", ("it died",), replace(REST, begun=False)))
    assert interrupted.startswith(
        ":warning: RB-3 needs attention: it died.\n*Where things stand:*\n• Database: probably "
        "untouched — the executor died during the checks before pg_restore of `hvb.dump` was "
        "launched")
    assert interrupted.endswith("--no-owner -d \"$DSN\" /backups/pre/hvb.dump`) or decide to "
                                "keep the data as it is.\n3. Close the rollback with "
                                "*Mark resolved*.")
    assert line(m.ReminderClosed("scheduled", "U2", AT)) == \
        ":calendar: Scheduled — <@U2> at 03:04 UTC"
    alert = wording.card(SAMPLES[36])
    assert alert.title == ":rotating_light: RB-3: hvb is unstable after the rollback"
    assert alert.text.endswith("(`/rollback hvb --to &lt;rev&gt;`).")
    assert [b.action_id for b in alert.buttons] == [ids.RESUME_MONITORING, ids.ALERT_RESOLVE]
    assert wording.card(replace(SAMPLES[36], closed=m.ClosedBy("U2", "RB-3", "completed"))
                        ).buttons == ()


def test_what_people_and_platforms_wrote_is_escaped() -> None:
    typed = "<!channel> & <@U9> <https://evil.example|rev 5>"
    rejected = wording.line(m.Rejected("U1", "RB-3", typed))
    assert rejected == ("<@U1> rejected RB-3: &lt;!channel&gt; &amp; &lt;@U9&gt; "
                        "&lt;https://evil.example|rev 5&gt;")
    for sample in SAMPLES:  # every string fact of every kind
        poisoned = _poison(sample, typed)
        card = wording.card(poisoned)
        shown = " ".join(t or "" for t in (card.title, card.text, card.footer))
        assert "<!channel>" not in shown and "<https://evil" not in shown, type(sample)
        assert "<@U9>" not in shown, type(sample)


def _poison(value: Any, typed: str) -> Any:
    """``value`` with every free-text fact replaced by ``typed`` (ids and enums kept)."""
    if isinstance(value, Mention | RollbackLink | Enum):
        return value
    if isinstance(value, str):
        return value if value in ("U1", "U2") else typed
    if isinstance(value, tuple):
        return tuple(_poison(v, typed) for v in value)
    if hasattr(value, "__dataclass_fields__"):
        keep = {"outcome", "kind", "status", "phase", "mode", "value", "mention", "user",
                "requester", "approver", "requested_by"}
        return replace(value, **{k: _poison(getattr(value, k), typed)
                                 for k in value.__dataclass_fields__ if k not in keep})
    return value


def test_mentions_and_links_render_from_facts() -> None:
    assert wording.line(m.BreakGlass("U0ABC", "P0")).startswith(
        ":rotating_light: BREAK GLASS: <@U0ABC> approved")
    update = wording.card(SAMPLES[40])
    assert update.footer == "Rollback RB-3 · requested by <@U1> · approved by <@U2>"
    assert update.title == ":white_check_mark: Hvb Rollback Completed"
    refusal = NotAllowed("RB-2 is already pending for `hvb` (requested by ", Mention("U1"),
                         "): ", RollbackLink("RB-2", "C1", "1700.0001"), " .")
    assert str(refusal) == "RB-2 is already pending for `hvb` (requested by @U1): RB-2 ."
    assert render(refusal) == ("RB-2 is already pending for `hvb` (requested by <@U1>): "
                               "<https://slack.com/archives/C1/p17000001|RB-2> .")


def test_the_p0_line_offers_break_glass_only_when_the_policy_allows_it() -> None:
    allowed = wording.line(m.ImmediatePolicy("P0", "immediate", destructive=False,
                                             self_approval=True))
    assert allowed == (":rotating_light: *P0*: immediate rollback. An approver may approve "
                       "their own request (break glass, audited).")
    for destructive in (False, True):
        refused = wording.line(m.ImmediatePolicy("P0", "immediate", destructive=destructive,
                                                 self_approval=False))
        assert refused == (":rotating_light: *P0*: immediate rollback. Four-eyes rule: "
                           "someone other than the requester must approve it.")
        assert "their own" not in refused and "break glass" not in refused


# Values a configuration or a forged payload may carry where an id belongs.
HOSTILE = ["alice", "U1>|x", "<!channel>", "<@U1>", "U1 <!here>", "u1abc", "U1\n", "",
           "W1|<https://evil.example>", "RB-1>", "C1/p1|x", "1700.1|<!here>"]


def _no_control_sequence(text: str) -> None:
    """Slack parses mentions, links and ``<!channel>`` only between ``<`` and ``>``."""
    assert "<" not in text and ">" not in text, text


def test_mentions_render_only_slack_user_ids() -> None:
    from handlers.mrkdwn import mention

    assert mention("U0ALICE") == "<@U0ALICE>"
    assert mention("W0GRID1") == "<@W0GRID1>"
    assert mention("alice") == "alice"  # tech_leads.users: [alice] stays plain text
    assert mention("<!channel>") == "&lt;!channel&gt;"
    assert mention("U1>|x") == "U1&gt;|x"
    for value in HOSTILE:
        _no_control_sequence(mention(value))
    assert wording.line(m.BreakGlass("<!channel>", "P0")).startswith(
        ":rotating_light: BREAK GLASS: &lt;!channel&gt; approved")


def test_permalinks_render_only_well_formed_refs_channels_and_timestamps() -> None:
    from handlers.mrkdwn import permalink, words

    good = RollbackLink("RB-2", "C1", "1700.0001")
    assert permalink(good) == "<https://slack.com/archives/C1/p17000001|RB-2>"
    assert permalink(replace(good, message_ts=None)) == "RB-2"  # not posted yet: no link
    for value in HOSTILE:
        _no_control_sequence(permalink(replace(good, ref=value)))
        assert permalink(replace(good, channel_id=value)) == "RB-2"
        assert permalink(replace(good, message_ts=value)) == "RB-2"
    assert permalink(replace(good, ref="<!channel>")) == "&lt;!channel&gt;"
    assert words((Mention("U1>|x"), " and ", replace(good, channel_id="C1/p1|<!here>"))) == \
        "U1&gt;|x and RB-2"


def test_the_decision_matrix_follows_the_config() -> None:
    default = Policy()
    assert wording.severity_policy(default) == (
        "Severity policy: P0 immediate rollback · P1 roll back unless a hotfix lands in "
        "15 min · P2 evaluate within 1 h · P3 plan for next deployment (decide within 4 h).")
    rows = dict(default.severities)
    rows[Severity.P1] = rows[Severity.P1].model_copy(update={"window_minutes": 30})
    rows[Severity.P2] = rows[Severity.P2].model_copy(update={"window_minutes": 90})
    changed = default.model_copy(update={"severities": rows})
    text = wording.severity_policy(changed)
    assert "P1 roll back unless a hotfix lands in 30 min" in text
    assert "P2 evaluate within 1 h 30 min" in text
    help_text = str(views.help_blocks("/rollback", PRODUCTION, policy=changed))
    assert "lands in 30 min" in help_text and "15 min" not in help_text


def test_the_decision_deadline_is_worded_per_severity() -> None:
    """At the deadline the approvers (group, users) and the incident commander are asked in
    the words of the severity, with when the request expires; P1 asks plainly."""
    due, expires = AT, AT + timedelta(minutes=15)

    def said(severity: str, mode: str, hotfix_by: str | None = None) -> str:
        return wording.line(m.DecisionDue("RB-3", severity, mode, due, GROUP, ("U3",),
                                          "U1", "rev 4 <img>", hotfix_by, expires))

    p1 = said("P1", "hotfix_window")
    assert "*RB-3 (P1): no hotfix reported: roll back now?*" in p1
    assert "<!subteam^S0GROUP>, <@U3>, <@U1>" in p1
    assert "Unapproved, RB-3 expires at 03:19 UTC." in p1
    assert "rev 4 &lt;img&gt;" in p1
    extended = said("P1", "hotfix_window", hotfix_by="U2")
    assert "the hotfix <@U2> reported is not confirmed by its extended deadline (03:04 UTC): "\
        "roll back now?" in extended
    assert "Evaluation window for RB-3 (P2) has ended" in said("P2", "evaluate")
    p3 = said("P3", "next_deployment")
    assert "plan for the next deployment" in p3 and "pinned revision rev 4 &lt;img&gt;" in p3
    assert "*Override and approve*" in p3
    assert "immediate rollback, still not approved" in said("P0", "immediate")
    # The commander who is also a listed approver is asked once.
    once = wording.line(m.DecisionDue("RB-3", "P2", "evaluate", due, None, ("U1",), "U1",
                                      "rev 4", None, None))
    assert once.count("<@U1>") == 1


@pytest.mark.parametrize("group", [
    GroupMention("sre-approvers", None),  # a handle Slack does not know
    GroupMention("@sre-approvers", None),  # configured with the at sign
    GroupMention("SRE", None),  # shaped like an id, but Slack resolved nothing
    GroupMention("sre-approvers", "sre-approvers"),  # an "id" that is not one
])
def test_an_unresolved_approver_group_is_named_and_said_not_notified(group: GroupMention) -> None:
    """A group Slack could not resolve cannot be mentioned: never a (broken) ``<!subteam^…>``,
    and never a bare ``@handle`` a reader would take for a working mention."""
    line = wording.line(m.DecisionDue("RB-3", "P2", "evaluate", AT, group, ("U3",), "U1",
                                      "rev 4", None, None))
    name = group.configured.lstrip("@")
    assert (f"@{name} (a Slack group I could not resolve: nobody in it was notified), "
            "<@U3>, <@U1>: decide now") in line
    assert "subteam" not in line and "@@" not in line


def test_an_unresolved_group_handle_is_text_never_markup() -> None:
    line = wording.line(m.DecisionDue("RB-3", "P2", "evaluate", AT,
                                      GroupMention("sre-<!here>", None), (), "U1", "rev 4",
                                      None, None))
    assert "@sre-&lt;!here&gt; (a Slack group I could not resolve" in line
    assert "<!here>" not in line and "subteam" not in line
    assert str(GroupMention("@sre", None)) == "@sre"  # plain words: logs, the audit trail


def test_a_hotfix_report_says_exactly_what_it_moves() -> None:
    text = wording.line(m.HotfixReported("U2", "RB-3", AT, AT + timedelta(minutes=15), 15,
                                         AT + timedelta(minutes=30)))
    assert text == (
        "<@U2> reports a hotfix in progress on RB-3: its decision deadline moves from 03:04 "
        "UTC to 03:19 UTC (15 min more for the hotfix; the deadline moves once per rollback). "
        "If no hotfix has landed by 03:19 UTC, I will ask the approvers to roll back. "
        "Unapproved, RB-3 expires at 03:34 UTC.")
    assert wording.line(m.Expired("RB-3", AT)) == (
        "RB-3 expired without approval (its decision was due 03:04 UTC). Request it again if "
        "needed.")


class _Recorder:
    def __init__(self) -> None:
        self.said: list[Any] = []

    def thread(self, rollback: Rollback, message: m.Message, *, mention: str | None = None
               ) -> None:
        self.said.append(message)

    def post_channel(self, channel: str, message: m.Message) -> str:
        self.said.append(message)
        return "1.1"

    def notice(self, rollback: Rollback, notice: Notice, *, channel: str | None = None) -> str:
        self.said.append(notice)
        return "1.1"

    def refresh(self, rollback: Rollback, steps: list[Step] | None = None) -> None: ...


def test_the_facts_are_scrubbed_before_any_wording(monkeypatch: pytest.MonkeyPatch) -> None:
    token = "Bearer planted0token4wording"
    inner = _Recorder()
    chat = ScrubbedChat(inner)  # type: ignore[arg-type]
    rb: Any = None
    chat.thread(rb, m.StepRetrying(1, 2, "Roll back", f"401 for {token}", 1, False, 1))
    chat.thread(rb, m.HandedOver("RB-1", (Mention("U1"), f" saw {token}"), None, None,
                                 False, None, None))
    chat.thread(rb, m.CancelAsked("U1", "RB-1", Undo.HUMAN))
    chat.notice(rb, Notice("k", m.StatuspageNotUpdated("stable", f"HTTP 401 {token}")))
    retrying, handed, asked, notice = inner.said
    assert retrying.error == f"401 for Bearer {REDACTED}"
    assert handed.cause == (Mention("U1"), f" saw Bearer {REDACTED}")
    assert asked.undo is Undo.HUMAN  # enums stay enums
    assert notice.key == "k" and notice.message.error == f"HTTP 401 Bearer {REDACTED}"
    assert "planted0token" not in wording.line(handed)


def test_the_automation_approval_names_the_identity_escaped_and_the_setting() -> None:
    text = wording.line(m.AutomationApproved("<!channel>", "P0"))
    assert "<!channel>" not in text and "&lt;!channel&gt;" in text
    assert "automation.self_approve" in text and "P0" in text


PROPOSAL = next(s for s in SAMPLES if isinstance(s, m.ReleaseProposal))


def _buttons(card: wording.Card) -> list[str]:
    return [b.action_id for b in card.buttons]


def test_an_answered_proposal_names_the_request_and_who_asked_without_buttons() -> None:
    link = RollbackLink("RB-7", "C0INC", "1700000000.000100")
    assert _buttons(wording.card(PROPOSAL)) == [ids.WATCH_REQUEST, ids.WATCH_SNOOZE]
    by_alice = wording.card(replace(PROPOSAL, request=link, requested_by="U0ALICE"))
    assert _buttons(by_alice) == []
    assert ("Rollback requested: <https://slack.com/archives/C0INC/p1700000000000100|RB-7> "
            "by <@U0ALICE>") in by_alice.text
    assert "Request rollback* opens" not in by_alice.text
    by_bot = wording.card(replace(PROPOSAL, request=link, requested_by="rollback-bot"))
    assert _buttons(by_bot) == []
    assert "I requested the rollback myself (`auto_request`)" in by_bot.text
    assert "still needs an approver" in by_bot.text


def test_a_refused_automatic_request_keeps_the_buttons_and_says_why() -> None:
    card = wording.card(replace(PROPOSAL, auto_refused="Nothing to roll back to <here>."))
    assert _buttons(card) == [ids.WATCH_REQUEST, ids.WATCH_SNOOZE]
    assert ("I did not request the rollback myself (`auto_request`): Nothing to roll back "
            "to &lt;here&gt;.") in card.text


def test_the_watch_reading_line_rounds_its_figures() -> None:
    line = wording.line
    assert line(m.WatchReading(0.0613, 0.05, 12 * 60 + 30, AT)) == (
        ":chart_with_upwards_trend: Release watcher: error rate 6.1 % (over 5 % for 12 min), "
        "updated 03:04 UTC")
    assert "(over 5 % for under a minute)" in line(m.WatchReading(0.07, 0.05, 59, AT))
    assert "error rate 3.2 % (at or under 2.5 %)" in line(m.WatchReading(0.0321, 0.025, None,
                                                                          AT))
    # The figures a new reading is compared by are the ones shown.
    assert m.WatchReading(0.0613, 0.05, 750, AT).figures() == ("6.1", 12)
    assert (m.WatchReading(0.0612, 0.05, 779, AT).figures()
            == m.WatchReading(0.0614, 0.05, 721, AT + timedelta(minutes=1)).figures())
    assert m.WatchReading(0.0616, 0.05, 750, AT).figures() != ("6.1", 12)


def test_a_forward_fix_link_is_clickable_only_when_it_is_a_plain_web_address() -> None:
    given = m.ForwardFixRecorded("given", "RB-3", "U2", AT, link="https://x.example/i/7?a=1&b=2")
    assert "<https://x.example/i/7?a=1&amp;b=2>" in wording.line(given)
    forged = replace(given, link="https://x.example|click <!channel>")
    shown = wording.line(forged)
    assert "<https://" not in shown and "<!channel>" not in shown


def test_a_forward_fix_ask_names_the_known_bad_revision_only_when_the_version_moved() -> None:
    ask = m.ForwardFixAsk("3", "RB-3", "hvb", "rev 5", False, False, AT, "U1", None)
    assert "rolled back from rev 5 (now known-bad)" in wording.card(ask).text
    config_only = wording.card(replace(ask, bad_revision=None))
    assert "known-bad" not in config_only.text and "was rolled back." in config_only.text
    assert [b.action_id for b in config_only.buttons] == [ids.FORWARD_FIX_RECORD,
                                                         ids.FORWARD_FIX_WAIVE]
