"""The stakeholder notice as a template a team can edit: the fields it may use, the
runbook's wording as the default, the check ``check-config`` runs, and the rendering.

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


def _environment(escape: Callable[[str], str]) -> SandboxedEnvironment:
    def finalize(value: Any) -> str:
        return escape(str(value))

    return SandboxedEnvironment(undefined=StrictUndefined, finalize=finalize,
                                trim_blocks=True, autoescape=False)


def check(source: str) -> str:
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
    unknown = sorted(meta.find_undeclared_variables(parsed) - set(NOTICE_FIELDS))
    if unknown:
        raise ValueError(f"unknown field{'s' if len(unknown) > 1 else ''} "
                         f"{', '.join(unknown)}; the fields are {', '.join(NOTICE_FIELDS)}")
    # A template can name only known fields and still fail when filled in (an attribute the
    # sandbox refuses, a filter given the wrong type): fill it with sample values now, so
    # such a template stops the catalog from loading instead of a notice at 3 a.m.
    sample: dict[str, Any] = {name: name for name in NOTICE_FIELDS}
    sample["next_steps"] = ["a step", "another step"]
    try:
        env.from_string(source).render(**sample)
    except Exception as exc:  # SecurityError, TypeError, UndefinedError…: all the author's
        raise ValueError(f"the template fails when filled in: {type(exc).__name__}: "
                         f"{exc}") from None
    return source


def render(source: str, values: Mapping[str, Any], *, escape: Callable[[str], str]) -> str:
    """The notice text: ``values`` must name every field (a missing one raises)."""
    missing = set(NOTICE_FIELDS) - set(values)
    assert not missing, f"notice fields not filled: {sorted(missing)}"
    return _environment(escape).from_string(source).render(**values).rstrip("\n")
