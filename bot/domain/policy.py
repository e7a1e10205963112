"""Enforces the authority table (``bot.domain.authority``) for one rollback, user and channel.

The table says who may do what, in which state and where; this module reads the people
(approvers, technical leads) from Slack at the moment of each decision and applies the
rows, plus the approval rules that need the configuration (four-eyes, break glass,
checklist gates, expiry). Every refusal is a ``NotAllowed`` whose message tells the person
exactly why, so the Slack layer only has to show it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from bot.domain import authority
from bot.domain.authority import Action, Role, Where
from bot.domain.config import CHECKLIST_ITEMS, Approvers, PolicyMode, RollbackConfig, Severity
from bot.domain.errors import NotAllowed
from bot.domain.models import Rollback
from bot.domain.ports import Directory
from bot.domain.words import Mention, Words, as_words


@dataclass(frozen=True)
class ApprovalDecision:
    break_glass: bool
    override: bool
    known_bad_override: bool = False


class Policy:
    def __init__(self, config: RollbackConfig, directory: Directory) -> None:
        self.config = config
        self.directory = directory

    def _members(self, spec: Approvers) -> set[str]:
        users = set(spec.users)
        if spec.usergroup:
            users |= self.directory.usergroup_members(spec.usergroup)
        return users

    def approvers(self, service: str) -> set[str]:
        return self._members(self.config.approvers_for(service))

    def is_approver(self, service: str, user: str) -> bool:
        return user in self.approvers(service)

    def check_channel(self, service: str, channel_name: str) -> None:
        policy = self.config.policy_for(service)
        svc = self.config.service(service)
        patterns = list(policy.allowed_channels)
        if svc and svc.incident_channel_pattern:
            patterns.append(svc.incident_channel_pattern)
        if not policy.channel_allowed(channel_name) and not (
            svc and svc.incident_channel_pattern
            and _match(channel_name, svc.incident_channel_pattern)
        ):
            # Channel names never contain spaces; the directory describes conversations
            # without a name ("direct message", "group DM") in words.
            where = channel_name if " " in channel_name else f"#{channel_name}"
            raise NotAllowed(
                f"Rollbacks can only be requested and approved in incident channels "
                f"({', '.join(patterns)}); {where} is not one of them."
            )

    def check_request(self, service: str, *, user: str, channel_name: str) -> None:
        if authority.rule(Action.REQUEST).where == Where.INCIDENT_CHANNEL:
            self.check_channel(service, channel_name)
        self.check_who(Action.REQUEST, None, user=user, service=service)

    # ------------------------------------------------------------------ the table
    def has_role(self, role: Role, *, user: str, service: str, rb: Rollback | None) -> bool:
        """Whether ``user`` holds ``role`` now. Group membership is read from Slack at each
        call (no cache): someone removed from the approvers cannot approve a second later."""
        if role == Role.ANYONE:
            return True
        if role == Role.BOT:
            return False  # no person: the bot acts through its own code, never a click
        if role == Role.APPROVER:
            return self.is_approver(service, user)
        if role == Role.TECH_LEAD:
            return user in self.tech_leads(service)
        if rb is None:
            return False
        # The requester who took incident command is still the requester: the IC's grants
        # (hotfix window, resolve, retry, resume) need a second person.
        commander = rb.incident_commander if rb.incident_commander != rb.requester else None
        return user == {Role.REQUESTER: rb.requester,
                        Role.INCIDENT_COMMANDER: commander,
                        Role.ITS_APPROVER: rb.approver}[role]

    def check_who(self, action: Action, rb: Rollback | None, *, user: str,
                  service: str | None = None) -> None:
        """The "who" column only (for callers that check state themselves)."""
        rule = authority.rule(action)
        svc = rb.service if rb is not None else service or ""
        # Cheap relations first: a requester's own click costs no Slack call.
        roles = sorted(rule.who, key=lambda r: r in (Role.APPROVER, Role.TECH_LEAD))
        if any(self.has_role(r, user=user, service=svc, rb=rb) for r in roles):
            return
        if rule.who == (Role.TECH_LEAD,) and rb is not None:
            raise NotAllowed(f"Only a technical lead for `{svc}` (",
                             *self._tech_leads_words(svc), f") can {authority.does(rule, rb)}.")
        raise NotAllowed(authority.who_refusal(rule, service=svc, rb=rb))

    def authorize(self, action: Action, rb: Rollback, *, user: str,
                  channel_id: str | None) -> None:
        """One row of the table against one click: state, channel, who, then the row's pure
        conditions. ``channel_id`` None is a dialog submission, whose channel was checked
        when the click that opened the dialog arrived (only the bot opens its dialogs)."""
        rule = authority.rule(action)
        refusal = authority.state_refusal(rule, rb)
        if refusal is None and channel_id is not None:
            refusal = authority.channel_refusal(rule, rb, channel_id)
        if refusal:
            raise NotAllowed(refusal)
        self.check_who(action, rb, user=user)
        guarded = authority.guard_refusal(rule, rb, user)
        if guarded:
            raise NotAllowed(*as_words(guarded))

    # ------------------------------------------------------------------ approvals
    def check_approve(
        self, rb: Rollback, *, user: str, channel_id: str, channel_name: str, now: datetime,
        override: bool, known_bad_override: bool = False,
        typed_confirmation: str | None = None,
    ) -> ApprovalDecision:
        action = authority.approve_action(override=override,
                                          known_bad_override=known_bad_override)
        rule = authority.rule(action)
        if rb.state not in rule.states:
            who: Words = (" by ", Mention(rb.approver)) if rb.approver else ()
            raise NotAllowed(f"{rb.ref} is already {rb.state.value.replace('_', ' ')}", *who, ".")
        if rb.expires_at is not None and now >= rb.expires_at:
            raise NotAllowed(
                f"The approval request for {rb.ref} expired at "
                f"{rb.expires_at:%H:%M} UTC; request the rollback again."
            )
        self.check_channel(rb.service, channel_name)  # a DM is told the incident-channel rule
        refusal = authority.channel_refusal(rule, rb, channel_id)
        if refusal:
            raise NotAllowed(refusal)
        self.check_who(action, rb, user=user)
        sev = self.config.policy_for(rb.service).for_severity(Severity(rb.severity))
        destructive = [d["description"] for d in rb.destructive_steps]
        break_glass = False
        if destructive and rb.requester in (authority.BOT_REQUESTER,
                                            self.config.automation.identity):
            raise NotAllowed(
                f"{rb.ref} was filed by the bot and has destructive steps "
                f"({'; '.join(destructive)}): two people are needed, and one approval would "
                "be one person. Request it yourself and have someone else approve it.")
        if user == rb.requester:
            if destructive:
                raise NotAllowed(
                    f"{rb.ref} has destructive steps ({'; '.join(destructive)}): two people "
                    "are needed, so someone else must approve it. Break glass never covers "
                    "a destructive step.")
            if not sev.allow_self_approval:
                raise NotAllowed(
                    f"Four-eyes rule: you requested {rb.ref}, so someone else must approve it."
                )
            break_glass = True
        # Each approve button fits one kind of plan (plain, P3, known-bad target): a forged
        # click of a button the message does not show is refused, never reinterpreted.
        guarded = authority.guard_refusal(rule, rb, user)
        if guarded:
            raise NotAllowed(*as_words(guarded))
        # An explicit known-bad override is the approver's own identification of the
        # version to run: the bot's "previous stable version" tick cannot apply to it.
        waived = {"previous_version"} if known_bad_override and rb.known_bad_target else set()
        missing = [k for k in sev.checklist_required
                   if k not in waived and not (rb.checklist.get(k) or {}).get("done")]
        if missing:
            names = "; ".join(CHECKLIST_ITEMS.get(k, k) for k in missing)
            raise NotAllowed(f"Checklist items required before approval: {names}.")
        if destructive and (typed_confirmation or "").strip() != rb.service:
            raise NotAllowed(
                f"{rb.ref} has destructive steps ({'; '.join(destructive)}): approve it in "
                f"the confirmation dialog by typing the service name `{rb.service}`.")
        return ApprovalDecision(break_glass=break_glass, override=bool(
                                    override or (known_bad_override and rb.policy_mode
                                                 == PolicyMode.NEXT_DEPLOYMENT)),
                                known_bad_override=bool(known_bad_override
                                                        and rb.known_bad_target))

    def check_automation_approve(self, rb: Rollback, *, identity: str, now: datetime) -> None:
        """The automation (``rollback-bot auto``) approving its own request. Allowed only for
        the severities in ``automation.self_approve``, never for a destructive step (two
        people, always), with every checklist gate met, while the request is still open;
        otherwise the request waits for a person, who approves it in Slack as usual."""
        auto = self.config.automation
        if rb.state not in authority.rule(Action.APPROVE).states:
            raise NotAllowed(f"{rb.ref} is already {rb.state.value.replace('_', ' ')}.")
        if rb.expires_at is not None and now >= rb.expires_at:
            raise NotAllowed(f"The approval request for {rb.ref} expired.")
        if rb.requester != identity or identity != auto.identity:
            raise NotAllowed(f"The automation approves only its own requests; {rb.ref} was "
                             "requested by someone else.")
        if Severity(rb.severity) not in auto.self_approve:
            allowed = ", ".join(s.value for s in auto.self_approve) or "none"
            raise NotAllowed(f"{rb.severity} requests need a person's approval "
                             f"(automation.self_approve: {allowed}).")
        if rb.destructive_steps:
            raise NotAllowed(f"{rb.ref} has destructive steps: two people are needed.")
        guarded = authority.guard_refusal(authority.rule(Action.APPROVE), rb, identity)
        if guarded:  # a P3 plan or a known-bad target: a person decides
            raise NotAllowed(*as_words(guarded))
        sev = self.config.policy_for(rb.service).for_severity(Severity(rb.severity))
        missing = [k for k in sev.checklist_required
                   if not (rb.checklist.get(k) or {}).get("done")]
        if missing:
            names = "; ".join(CHECKLIST_ITEMS.get(k, k) for k in missing)
            raise NotAllowed(f"Checklist items required before approval: {names}.")

    def tech_leads(self, service: str) -> set[str]:
        return self._members(self.config.tech_leads_for(service))

    def _tech_leads_words(self, service: str) -> Words:
        spec = self.config.tech_leads_for(service)
        if spec.usergroup:
            return (f"the `{spec.usergroup}` group",)
        if not spec.users:
            return ("nobody (configure tech_leads)",)
        named: list[str | Mention] = []
        for user in spec.users:
            named += [", ", Mention(user)] if named else [Mention(user)]
        return tuple(named)

    def check_tick(self, rb: Rollback, *, item: str, user: str, channel_id: str) -> None:
        """Each checklist item is its own row: the bot's items are never ticked by a click,
        "previous version" only confirmed by an approver when the bot could not, "decision
        approved" only by a technical lead other than the requester."""
        if item not in authority.CHECKLIST_ACTIONS:
            raise NotAllowed(f"Nobody ticks \u201c{CHECKLIST_ITEMS.get(item, item)}\u201d by "
                             "hand.")
        action = authority.tick_action(item)
        try:
            self.authorize(action, rb, user=user, channel_id=channel_id)
        except NotAllowed as exc:
            if action == Action.TICK_DECISION_APPROVED and str(exc).startswith("You requested"):
                raise NotAllowed(*exc.parts, " Ask a technical lead (",
                                 *self._tech_leads_words(rb.service), ").") from None
            raise

    # The names the rest of the core already calls; each is one row of the table.
    def check_cancel(self, rb: Rollback, *, user: str, channel_id: str | None = None) -> None:
        self.authorize(Action.CANCEL, rb, user=user, channel_id=channel_id)

    def check_reject(self, rb: Rollback, *, user: str, channel_id: str | None = None) -> None:
        self.authorize(Action.REJECT, rb, user=user, channel_id=channel_id)

    def check_scale_back_up(self, rb: Rollback, *, user: str, channel_id: str | None = None
                            ) -> None:
        self.authorize(Action.SCALE_BACK_UP, rb, user=user, channel_id=channel_id)


def _match(name: str, pattern: str) -> bool:
    import fnmatch

    return fnmatch.fnmatchcase(name, pattern)
