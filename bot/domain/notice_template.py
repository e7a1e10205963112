"""Stakeholder texts as templates a team can edit (the completion notice, and each status
page update): the fields each may use, the runbook's wording as the default, the check
``check-config`` runs, and the rendering.

Templates are Jinja2 in its sandbox (``jinja2.sandbox.SandboxedEnvironment``): a template
from the catalog can format the fields below and loop over ``next_steps``, and nothing
else: no attribute of a Python object that is not a field, no import, no file. An
unknown field is an error when the catalog is loaded (with the key path), never a blank
line in front of stakeholders; at render time ``StrictUndefined`` keeps it that way.
Every field's value goes through the caller's ``escape`` (Slack's mrkdwn rules) before it
reaches the text, so a revision label or a source text cannot inject markup or mentions;
the template's own text is the catalog owner's and is kept as written.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from jinja2 import StrictUndefined, TemplateError, meta
from jinja2.sandbox import SandboxedEnvironment

# field -> what it holds (docs/configuration.md lists these)
NOTICE_FIELDS: dict[str, str] = {
    "service": "the service's name",
    "rollback": "the rollback's id, e.g. RB-12",
    "version": "the version rolled back to",
    "previous_version": "the version it replaced ('unknown' when the platform could not tell)",
    "completed_at": "when the rollback's steps completed (UTC)",
    "restored_at": "the first passing verification (UTC)",
    "incident_started_at": "when the incident started (UTC)",
    "counted_from": "what downtime counts from: 'incident start' or 'rollback request'",
    "start_source": "where the start came from, in words ('' when counted from the request)",
    "total_downtime": "restored_at minus incident_started_at, in words",
    "data_loss": "a database restore's data-loss window in words ('' when none ran)",
    "current_status": "the service's status, e.g. 'Service restored and verified (8 checks "
                      "passed); monitoring stability'",
    "next_steps": "a list: root cause analysis, stability monitoring, review and post-mortem "
                  "deadlines",
}

# The runbook's "Rollback Completion" stakeholder template, field for field.
DEFAULT_NOTICE = """\
*Rollback details*
• Version rolled back to: {{ version }} (from {{ previous_version }})
• Rollback completed at: {{ completed_at }}
• Service restored at: {{ restored_at }}
• Total downtime: {{ total_downtime }} (since the {{ counted_from }} at \
{{ incident_started_at }}{% if start_source %}, {{ start_source }}{% endif %})
{% if data_loss %}• Data loss: {{ data_loss }}
{% endif %}\
*Current status:* {{ current_status }}.
*Next steps:*
{% for step in next_steps %}• {{ step }}
{% endfor %}"""

MAX_TEMPLATE_CHARS = 4000  # a notice is one Slack section (3,000 characters rendered)

# The status page's updates, one template per kind of update (``statuspage.templates``).
# Plain text: a status page is public, so no Slack markup, and the same record must always
# give the same text (a lost answer is recognised by it: bot.aftercare.status_lifecycle).
STATUS_FIELDS: dict[str, str] = {
    "service": "the service's display name, e.g. Hotel Voice Bot",
    "failure": "what failed as the audit recorded it, ' (…)' or '' (failed and unstable "
               "updates)",
    "how": "declined, cancelled or not approved in time (not_carried_out)",
    "monitored_for": "the stability window in words, '' when none ran (stable)",
}
STATUS_DEFAULTS: dict[str, str] = {
    "requested": "We are investigating a problem with {{ service }} after a recent release.",
    "approved": "The problem has been traced to a recent release of {{ service }}. We are "
                "rolling back to the previous version.",
    "not_carried_out": "The rollback of {{ service }} was not carried out ({{ how }}). The "
                       "team continues to work on the incident; we will post further "
                       "updates.",
    "rollback_failed": "The rollback of {{ service }} did not complete{{ failure }}. Engineers "
                       "are working on it; we will post further updates.",
    "verification_failed": "The previous version of {{ service }} is deployed but its checks "
                           "still fail{{ failure }}. Engineers are working on it.",
    "verified": "The previous version of {{ service }} is back and verified. We are "
                "monitoring the service.",
    "regression": "{{ service }} became unstable again after the rollback{{ failure }}. "
                  "Engineers are working on it.",
    "stable": "{% if monitored_for %}{{ service }} has run normally for {{ monitored_for }} "
              "since the rollback. This incident is resolved.{% else %}The previous version "
              "of {{ service }} is back and verified. This incident is resolved.{% endif %}",
    "resolved": "The team has closed this incident on {{ service }}.",
}


def _environment(escape: Callable[[str], str]) -> SandboxedEnvironment:
    def finalize(value: Any) -> str:
        return escape(str(value))

    return SandboxedEnvironment(undefined=StrictUndefined, finalize=finalize,
                                trim_blocks=True, autoescape=False)


def check(source: str, fields: Mapping[str, str] = NOTICE_FIELDS) -> str:
    """The template, or ValueError naming what is wrong: a syntax error with its line, an
    unknown field with the known ones, a template too long to post."""
    if len(source) > MAX_TEMPLATE_CHARS:
        raise ValueError(f"the template has {len(source)} characters; at most "
                         f"{MAX_TEMPLATE_CHARS}")
    env = _environment(str)
    try:
        parsed = env.parse(source)
    except TemplateError as exc:
        line = getattr(exc, "lineno", None)
        raise ValueError(f"template syntax error{f' on line {line}' if line else ''}: "
                         f"{exc}") from None
    unknown = sorted(meta.find_undeclared_variables(parsed) - set(fields))
    if unknown:
        raise ValueError(f"unknown field{'s' if len(unknown) > 1 else ''} "
                         f"{', '.join(unknown)}; the fields are {', '.join(fields)}")
    # A template can name only known fields and still fail when filled in (an attribute the
    # sandbox refuses, a filter given the wrong type): fill it with sample values now, so
    # such a template stops the catalog from loading instead of a notice at 3 a.m.
    sample: dict[str, Any] = {name: name for name in fields}
    if "next_steps" in fields:
        sample["next_steps"] = ["a step", "another step"]
    try:
        env.from_string(source).render(**sample)
    except Exception as exc:  # SecurityError, TypeError, UndefinedError…: all the author's
        raise ValueError(f"the template fails when filled in: {type(exc).__name__}: "
                         f"{exc}") from None
    return source


def check_status_templates(templates: Mapping[str, str]) -> dict[str, str]:
    """``statuspage.templates``: only the known kinds, each a good template."""
    unknown = sorted(set(templates) - set(STATUS_DEFAULTS))
    if unknown:
        raise ValueError(f"unknown update kind{'s' if len(unknown) > 1 else ''} "
                         f"{', '.join(unknown)}; the kinds are {', '.join(STATUS_DEFAULTS)}")
    problems = []
    for kind, source in templates.items():
        try:
            check(source, STATUS_FIELDS)
        except ValueError as exc:
            problems.append(f"{kind}: {exc}")
    if problems:
        raise ValueError("; ".join(problems))
    return dict(templates)


def render_status(kind: str, templates: Mapping[str, str], values: Mapping[str, Any]) -> str:
    """One status page update's text: the service's template for ``kind``, else the
    default. Values are printed as they are (plain text, no Slack escaping)."""
    source = templates.get(kind, STATUS_DEFAULTS[kind])
    return render(source, {name: values.get(name, "") for name in STATUS_FIELDS},
                  escape=str, fields=STATUS_FIELDS)


def render(source: str, values: Mapping[str, Any], *, escape: Callable[[str], str],
           fields: Mapping[str, str] = NOTICE_FIELDS) -> str:
    """The text: ``values`` must name every field (a missing one raises)."""
    missing = set(fields) - set(values)
    assert not missing, f"notice fields not filled: {sorted(missing)}"
    return _environment(escape).from_string(source).render(**values).rstrip("\n")
