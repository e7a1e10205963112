"""Who may do what to a rollback: four-eyes, approver roles, channels, checklist gates.

Pure decisions over a rollback, a user and the config; every refusal is a ``NotAllowed``
whose message tells the person exactly why, so the Slack layer only has to show it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from bot.config import CHECKLIST_ITEMS, Approvers, PolicyMode, RollbackConfig, Severity
from bot.errors import NotAllowed
from bot.lifecycle import State
from bot.models import Rollback
from bot.ports import Directory


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

    def check_approve(
        self, rb: Rollback, *, user: str, channel_name: str, now: datetime, override: bool,
        known_bad_override: bool = False, typed_confirmation: str | None = None,
    ) -> ApprovalDecision:
        if rb.state != State.PENDING_APPROVAL:
            who = f" by <@{rb.approver}>" if rb.approver else ""
            raise NotAllowed(f"{rb.ref} is already {rb.state.value.replace('_', ' ')}{who}.")
        if rb.expires_at is not None and now >= rb.expires_at:
            raise NotAllowed(
                f"The approval request for {rb.ref} expired at "
                f"{rb.expires_at:%H:%M} UTC; request the rollback again."
            )
        self.check_channel(rb.service, channel_name)
        if not self.is_approver(rb.service, user):
            raise NotAllowed(
                f"Only approvers for `{rb.service}` can approve {rb.ref}; you are not one."
            )
        sev = self.config.policy_for(rb.service).for_severity(Severity(rb.severity))
        destructive = [d["description"] for d in rb.destructive_steps]
        break_glass = False
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
        if rb.known_bad_target and not known_bad_override:
            raise NotAllowed(
                f"The pinned target {rb.target_revision.label()} of {rb.ref} is KNOWN-BAD. "
                "Only an approver can execute it, with *Roll back to known-bad anyway*.")
        # The known-bad button is the only approve button on such a plan: it is the
        # approver's explicit override of the P3 policy too.
        if rb.policy_mode == PolicyMode.NEXT_DEPLOYMENT and not (override or known_bad_override):
            raise NotAllowed(
                f"{rb.ref} is {rb.severity}: the policy is to plan the rollback for the next "
                "deployment. An approver can use *Override and approve* to execute it now."
            )
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

    def tech_leads(self, service: str) -> set[str]:
        return self._members(self.config.tech_leads_for(service))

    def check_tick(self, rb: Rollback, *, item: str, user: str) -> None:
        """Only a technical lead (the approvers unless ``tech_leads`` is configured) other
        than the requester may tick or untick "decision approved by technical lead"."""
        if item == "backup_verified":
            raise NotAllowed("Only the bot ticks \"Database backup verified\": it pins and checks "
                             "the backup when the plan is made.")
        if item == "previous_version":
            if rb.known_bad_target:
                raise NotAllowed(f"The target of {rb.ref} is KNOWN-BAD: it is not a previous "
                                 "stable version. An approver can override at approval.")
            if not self.is_approver(rb.service, user):
                raise NotAllowed(f"Only approvers for `{rb.service}` can confirm the previous "
                                 "stable version when the bot could not.")
            return
        if item != "decision_approved":
            return
        spec = self.config.tech_leads_for(rb.service)
        who = (f"the `{spec.usergroup}` group" if spec.usergroup else
               ", ".join(f"<@{u}>" for u in spec.users) or "nobody (configure tech_leads)")
        if user == rb.requester:
            raise NotAllowed(
                f"You requested {rb.ref}, so you cannot record the technical lead's approval "
                f"of it. Ask a technical lead ({who}).")
        if user not in self.tech_leads(rb.service):
            raise NotAllowed(
                f"Only a technical lead for `{rb.service}` ({who}) can record "
                "\"Rollback decision approved by technical lead\".")

    def check_cancel(self, rb: Rollback, *, user: str) -> None:
        if user in (rb.requester, rb.incident_commander) or self.is_approver(rb.service, user):
            return
        raise NotAllowed(
            f"Only the requester, the incident commander or an approver can cancel {rb.ref}."
        )

    def check_reject(self, rb: Rollback, *, user: str) -> None:
        if not self.is_approver(rb.service, user):
            raise NotAllowed(f"Only approvers for `{rb.service}` can reject {rb.ref}.")

    def check_scale_back_up(self, rb: Rollback, *, user: str) -> None:
        if rb.state != State.NEEDS_ATTENTION:
            raise NotAllowed(f"{rb.ref} is {rb.state.value.replace('_', ' ')}; scaling back "
                             "up is offered only when a rollback stopped for a human.")
        if not self.is_approver(rb.service, user):
            raise NotAllowed(f"Only approvers for `{rb.service}` can scale the service back "
                             "up.")

    def check_resolve(self, rb: Rollback, *, user: str) -> None:
        if not (self.is_approver(rb.service, user) or user == rb.incident_commander):
            raise NotAllowed(
                f"Only an approver or the incident commander can close {rb.ref}."
            )


def _match(name: str, pattern: str) -> bool:
    import fnmatch

    return fnmatch.fnmatchcase(name, pattern)
