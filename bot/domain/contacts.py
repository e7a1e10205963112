"""Emergency contacts and the escalation rules: who is called, for what, as pure data.

The runbook's "Emergency Contacts" (incident commander, technical lead, DevOps, DBA,
security) are configuration (``bot.domain.config.Contacts``); this module says which of them
each escalation calls (``RULE_ROLES``), how a request's reason asks for the security team
(``mentions_security``), and the contacts as facts a message or record keeps
(``contact_facts``: pinned on the request when it is made).
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Any

from bot.domain.config import CONTACT_TITLES, ContactRole, Contacts

DATABASE_STEPS = frozenset({"backup_db", "restore_db", "verify_db"})
_SECURITY = re.compile(r"\bsecurity\b", re.IGNORECASE)


class Rule(StrEnum):
    """Why an escalation happened; each is escalated once per rollback."""

    DECISION_DUE = "decision_due"  # the decision deadline passed with no decision
    NEEDS_ATTENTION = "needs_attention"  # execution stopped for a human
    DESTRUCTIVE_FAILED = "destructive_failed"  # a destructive step failed
    SECURITY = "security"  # the reason mentions security


R = ContactRole
RULE_ROLES: dict[Rule, tuple[ContactRole, ...]] = {
    Rule.DECISION_DUE: (R.INCIDENT_COMMANDER, R.TECHNICAL_LEAD),
    # The DBA is added when a database step is involved (``roles_for``).
    Rule.NEEDS_ATTENTION: (R.INCIDENT_COMMANDER,),
    Rule.DESTRUCTIVE_FAILED: (R.INCIDENT_COMMANDER,),
    Rule.SECURITY: (R.SECURITY,),
}


def roles_for(rule: Rule, *, database_step: bool = False) -> tuple[ContactRole, ...]:
    roles = RULE_ROLES[rule]
    if database_step and rule in (Rule.NEEDS_ATTENTION, Rule.DESTRUCTIVE_FAILED):
        return (R.DBA, *roles)
    return roles


def mentions_security(reason: str) -> bool:
    """Whether a request's reason names security as a word (``Security incident``,
    ``security:``), case-insensitive; ``insecurity`` or ``securityd`` do not."""
    return bool(_SECURITY.search(reason or ""))


def contact_facts(contacts: Contacts) -> list[dict[str, Any]]:
    """The configured contacts as stored facts, in the runbook's order."""
    return [{"role": role.value, "title": CONTACT_TITLES[role], "name": c.name,
             "slack": c.slack, "phone": c.phone, "email": c.email}
            for role, c in contacts.configured()]
