"""The service catalog and policy (``rollback.yml``) as validated pydantic models.

Secrets never live in the file: a field ending in ``_env`` names an environment variable
that is read when the value is needed (see ``secret()``), so the file can be committed and
nothing secret is ever echoed by ``check-config``, Slack messages or logs.

A service's platform blocks (``kubernetes:``, ``ecs:``, ``fly:``) are not spelled out here:
each comes from the ``PlatformSpec`` of a registered platform, and ``config_schema(platforms)``
builds the models for a registry (a ``PlatformSpecs``). The caller always says which: the
entry points (``bot/runtime``) parse with production's (``platforms.registry.PRODUCTION``),
the sandbox and the tests with their own (with ``fake``); this layer never imports an
adapter. The parsed configuration knows its registry (``RollbackConfig.platform_specs``).
"""

from __future__ import annotations

import difflib
import fnmatch
import functools
import os
import re
from datetime import datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any, ClassVar, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    create_model,
    field_validator,
    model_validator,
)

from bot.domain import notice_template
from bot.domain.errors import ConfigError, MissingSecret
from bot.domain.mail_config import SmtpSettings, check_addresses
from bot.domain.postmortem_config import PostmortemConfig
from bot.observability import scrub
from platforms.base import PlatformSpec, PlatformSpecs

SCOPES = ("app", "db", "config", "external")


class Severity(StrEnum):
    P0 = "P0"
    P1 = "P1"
    P2 = "P2"
    P3 = "P3"


class PolicyMode(StrEnum):
    """The runbook's decision matrix, one mode per severity."""

    IMMEDIATE = "immediate"  # P0: roll back now, full scope
    HOTFIX_WINDOW = "hotfix_window"  # P1: roll back unless a hotfix lands within the window
    EVALUATE = "evaluate"  # P2: decide within the window, reminder when it ends
    NEXT_DEPLOYMENT = "next_deployment"  # P3: record only; executing needs an override


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def secret(env_name: str | None) -> str | None:
    """Resolve a ``*_env`` indirection at the moment of use; never cache or log the value."""
    if not env_name:
        return None
    scrub.remember_env(env_name)  # whatever its name, its value is scrubbed from errors
    return os.environ.get(env_name)


# ----------------------------------------------------------------------- checks
class EnvHeader(Strict):
    """A header value from the environment: ``{env: OPENAI_API_KEY, prefix: "Bearer "}``."""

    env: str
    prefix: str = ""


class HttpProbe(Strict):
    """A declarative HTTP check: external services, functional smoke tests, webhooks."""

    name: str
    url: str
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"] = "GET"
    headers: dict[str, str] = Field(default_factory=dict)
    headers_env: dict[str, EnvHeader | str] = Field(
        default_factory=dict, description="header name -> env var (optionally with a prefix)"
    )
    json_body: Any = Field(default=None, alias="json")
    expect_status: list[int] = Field(default_factory=lambda: [200])
    max_latency_ms: float | None = None
    timeout_seconds: float = 10

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @field_validator("expect_status", mode="before")
    @classmethod
    def _one_or_many(cls, v: Any) -> Any:
        return [v] if isinstance(v, int) else v


def probe_headers(probe: HttpProbe) -> tuple[dict[str, str], list[str]]:
    """The probe's headers with ``headers_env`` resolved now, and the secret values sent
    (so callers can scrub them from anything they report)."""
    headers = dict(probe.headers)
    sent: list[str] = []
    for header, spec in probe.headers_env.items():
        env, prefix = (spec, "") if isinstance(spec, str) else (spec.env, spec.prefix)
        value = secret(env)
        if not value:
            raise MissingSecret(env, header, "not set" if value is None else "empty")
        sent.append(value)
        headers[header] = prefix + value
    return headers, sent


class HealthCheck(Strict):
    url: str
    expect_status: int = 200
    timeout_seconds: float = 5
    samples: int = 10


class PrometheusConfig(Strict):
    url: str
    error_rate_query: str
    error_rate_threshold: float = 0.05
    latency_query: str | None = None


class DatabaseConfig(Strict):
    dsn_env: str
    backup_location: str
    verify_queries: list[str] = Field(default_factory=list)
    backup_max_age_hours: float = 24
    slow_query_ms: float = 100
    # ``/rollback diagnose``: a read-only query returning one row per failed or partial
    # migration (first column: its name or version); no rows means none.
    migration_check_query: str | None = None


class LoadBalancerConfig(Strict):
    """Runbook Step 5.2: the ELBv2 target group whose health check the rollback points at the
    restored version's path. ``region`` defaults to the ARN's; ``endpoint_url`` is for a
    stand-in (moto) only. Credentials come from boto3's default chain, never the file."""

    target_group_arn: str
    health_check_path: str
    region: str | None = None
    endpoint_url: str | None = None
    timeout_seconds: float = Field(default=10, gt=0)

    @field_validator("target_group_arn")
    @classmethod
    def _an_elbv2_target_group(cls, v: str) -> str:
        parts = v.split(":")
        if len(parts) < 6 or parts[0] != "arn" or parts[2] != "elasticloadbalancing" \
                or not parts[5].startswith("targetgroup/"):
            raise ValueError("expected an ELBv2 target group ARN (arn:aws:elasticloadbalancing:"
                             "<region>:<account>:targetgroup/<name>/<id>)")
        return v

    @field_validator("health_check_path")
    @classmethod
    def _a_path(cls, v: str) -> str:
        # botocore's elbv2 model: Path is 1..1024 characters; an HTTP path starts with "/".
        if not v.startswith("/") or len(v) > 1024:
            raise ValueError("a health-check path starts with / and is at most 1024 characters")
        return v

    def region_name(self) -> str:
        """The configured region, else the ARN's."""
        return self.region or self.target_group_arn.split(":")[3] or "us-east-1"


class StatuspageConfig(Strict):
    api_url: str = "https://api.statuspage.io/v1"
    page_id: str
    api_key_env: str
    component_id: str | None = None
    # The severities whose request opens a status page incident ("investigating") that then
    # follows the rollback to "resolved" (bot.aftercare.status_lifecycle); other severities
    # never touch the page.
    open_at: list[Severity] = Field(default_factory=lambda: [Severity.P0, Severity.P1])
    # Each update's text as a sandboxed Jinja2 template, by kind (requested, approved, …;
    # bot.domain.notice_template.STATUS_DEFAULTS); a kind left out keeps the default.
    templates: dict[str, str] = Field(default_factory=dict)

    @field_validator("templates")
    @classmethod
    def _templates(cls, v: dict[str, str]) -> dict[str, str]:
        return notice_template.check_status_templates(v)

    @field_validator("open_at")
    @classmethod
    def _distinct(cls, v: list[Severity]) -> list[Severity]:
        if len(set(v)) != len(v):
            raise ValueError("a severity is listed twice")
        return v


class Stakeholders(Strict):
    channels: list[str] = Field(default_factory=list)
    statuspage: StatuspageConfig | None = None
    # The same notice by e-mail through the top-level ``smtp:`` relay (bot.domain.mail_config).
    email: list[str] = Field(default_factory=list)
    # The completion notice's text as a sandboxed Jinja2 template (bot.domain.notice_template);
    # None: the runbook's wording.
    notice_template: str | None = None

    @field_validator("email")
    @classmethod
    def _addresses(cls, v: list[str]) -> list[str]:
        return check_addresses(v)

    @field_validator("notice_template")
    @classmethod
    def _template(cls, v: str | None) -> str | None:
        return None if v is None else notice_template.check(v)


# ----------------------------------------------------------------------- contacts
class ContactRole(StrEnum):
    """The runbook's "Emergency Contacts", in its order."""

    INCIDENT_COMMANDER = "incident_commander"
    TECHNICAL_LEAD = "technical_lead"
    DEVOPS = "devops"
    DBA = "dba"
    SECURITY = "security"


CONTACT_TITLES: dict[ContactRole, str] = {
    ContactRole.INCIDENT_COMMANDER: "Incident commander",
    ContactRole.TECHNICAL_LEAD: "Technical lead",
    ContactRole.DEVOPS: "DevOps",
    ContactRole.DBA: "DBA",
    ContactRole.SECURITY: "Security team",
}

# A Slack user id (U…/W…), a user group id (S…) or a user group handle (@handle).
_SLACK_CONTACT = re.compile(r"(?:[UWS][A-Z0-9]{2,}|@[a-z0-9][a-z0-9._-]{0,79})")
# E.164 written the way people do: a leading +, digits, spaces, dots, dashes, parentheses,
# 7 to 15 digits in all (ITU-T E.164 allows at most 15).
_PHONE = re.compile(r"\+[0-9][0-9 ().-]{5,24}")
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")


class Contact(Strict):
    """One emergency contact: who (``name``), where in Slack, and how to reach them off it.
    ``pagerduty_routing_key_env`` pages this role on its own PagerDuty service (else the
    service's ``pagerduty.routing_key_env``)."""

    name: str = ""
    slack: str | None = None
    phone: str | None = None
    email: str | None = None
    pagerduty_routing_key_env: str | None = None

    @field_validator("slack")
    @classmethod
    def _slack(cls, v: str | None) -> str | None:
        if v is not None and not _SLACK_CONTACT.fullmatch(v):
            raise ValueError(f"{v!r} is neither a Slack user id (U…), a user group id (S…) "
                             "nor a user group handle (@handle)")
        return v

    @field_validator("phone")
    @classmethod
    def _phone(cls, v: str | None) -> str | None:
        if v is not None and (not _PHONE.fullmatch(v)
                              or not 7 <= sum(c.isdigit() for c in v) <= 15):
            raise ValueError(f"{v!r} is not an international phone number (+ country code, "
                             "7 to 15 digits, e.g. +1 415 555 0100)")
        return v

    @field_validator("email")
    @classmethod
    def _email(cls, v: str | None) -> str | None:
        if v is not None and not _EMAIL.fullmatch(v):
            raise ValueError(f"{v!r} is not an e-mail address")
        return v

    @model_validator(mode="after")
    def _reachable(self) -> Contact:
        if not (self.slack or self.phone or self.email or self.pagerduty_routing_key_env):
            raise ValueError("a contact needs at least one of slack, phone, email, "
                             "pagerduty_routing_key_env")
        return self

    @property
    def slack_group(self) -> bool:
        """Whether ``slack`` names a user group (mentioned as a group), not a person."""
        return bool(self.slack) and (self.slack or "").startswith(("S", "@"))


class Contacts(Strict):
    """The runbook's emergency contacts, one optional entry per role; an unknown role is an
    unknown key."""

    incident_commander: Contact | None = None
    technical_lead: Contact | None = None
    devops: Contact | None = None
    dba: Contact | None = None
    security: Contact | None = None

    def get(self, role: ContactRole) -> Contact | None:
        contact: Contact | None = getattr(self, role.value)
        return contact

    def merged_over(self, defaults: Contacts) -> Contacts:
        """These contacts, each missing role taken from ``defaults``."""
        return Contacts(**{r.value: self.get(r) or defaults.get(r) for r in ContactRole})

    def configured(self) -> list[tuple[ContactRole, Contact]]:
        return [(r, c) for r in ContactRole if (c := self.get(r)) is not None]


class PagerDutyConfig(Strict):
    """PagerDuty's Events API v2 (https://developer.pagerduty.com, "Send an Alert Event"):
    escalations page through it. The routing key (an integration key, 32 characters) comes
    from the environment variable ``routing_key_env``; ``events_url`` is for a stand-in."""

    routing_key_env: str
    events_url: str = "https://events.pagerduty.com/v2/enqueue"
    # PD-CEF severity of the alert: critical, error, warning or info.
    severity: Literal["critical", "error", "warning", "info"] = "critical"
    timeout_seconds: float = Field(default=10, gt=0)
    # Attempts of one event within one run, on 429/5xx/network errors (1 s apart); the
    # scheduler then retries the run itself with backoff (2 s .. 5 min), so a PagerDuty
    # outage never holds the scheduler's thread for long.
    max_attempts: int = Field(default=2, ge=1, le=10)


class Approvers(Strict):
    usergroup: str | None = None
    users: list[str] = Field(default_factory=list)


class WatcherConfig(Strict):
    """The release watcher (``bot.aftercare.watcher``): proposes a rollback in ``channel``
    when the error-rate rule (the ratio of ``prometheus.error_rate_query`` over
    ``error_rate_threshold`` at every point of the last ``duration_seconds``) holds."""

    enabled: bool = False
    channel: str | None = None  # the incident channel the proposal is posted in
    error_rate_threshold: float | None = Field(default=None, gt=0, lt=1)  # else prometheus'
    duration_seconds: float = Field(default=600, gt=0)  # "sustained for 10 minutes"
    interval_seconds: float = Field(default=60, gt=0)  # one check, and one point, per interval
    severity: Severity = Severity.P1  # suggested in the request the proposal opens
    snooze_seconds: float = Field(default=3600, gt=0)
    chart_minutes: float = Field(default=30, gt=0)
    # File the request itself (requester ``rollback-bot``, in ``channel``) instead of only
    # proposing it; it still needs an approver per policy.
    auto_request: bool = False

    @model_validator(mode="after")
    def _sane(self) -> WatcherConfig:
        if self.enabled and not self.channel:
            raise ValueError("channel: an enabled watcher needs the incident channel to post in")
        if self.interval_seconds > self.duration_seconds:
            raise ValueError("interval_seconds must not exceed duration_seconds")
        return self


class MonitoringConfig(Strict):
    duration_seconds: float = 2 * 3600
    interval_seconds: float = Field(default=300, gt=0)
    consecutive_health_failures: int = Field(default=3, ge=1)
    latency_threshold_ms: float = 2000
    post_each_check: bool = True  # one thread line per interval; alerts and report always post


# ----------------------------------------------------------------------- policy
# The runbook's response time per mode: the decision on a request is due this long after it
# was made (P0 immediate, P1 15 min, P2 1 h, P3 4 h), unless ``decision_minutes`` says else.
DEFAULT_DECISION_MINUTES: dict[PolicyMode, float] = {
    PolicyMode.IMMEDIATE: 0,
    PolicyMode.HOTFIX_WINDOW: 15,
    PolicyMode.EVALUATE: 60,
    PolicyMode.NEXT_DEPLOYMENT: 240,
}


class SeverityPolicy(Strict):
    mode: PolicyMode
    scope: list[str] = Field(default_factory=lambda: ["app"])
    allow_self_approval: bool = False  # P0 break glass: an approver may approve their own
    # The older name of ``decision_minutes`` (the P1 hotfix window / P2 evaluation window):
    # still read; both given must agree.
    window_minutes: float | None = Field(default=None, ge=0)
    # The decision deadline, counted from the request; unset: the mode's runbook default
    # (DEFAULT_DECISION_MINUTES). At the deadline the bot escalates to the approvers.
    decision_minutes: float | None = Field(default=None, ge=0)
    checklist_required: list[str] = Field(default_factory=list)

    @field_validator("decision_minutes")
    @classmethod
    def _one_deadline(cls, value: float | None, info: ValidationInfo) -> float | None:
        window = info.data.get("window_minutes")
        if value is not None and window is not None and value != window:
            raise ValueError(
                f"{value:g} contradicts window_minutes: {window:g} (window_minutes is the older "
                "name of decision_minutes, the decision deadline); keep one of the two")
        return value

    @property
    def deadline_minutes(self) -> float:
        """Minutes from the request to the decision deadline (the runbook's response time)."""
        if self.decision_minutes is not None:
            return self.decision_minutes
        if self.window_minutes is not None:
            return self.window_minutes
        return DEFAULT_DECISION_MINUTES[self.mode]


CHECKLIST_ITEMS = {
    "incident_commander": "Incident commander assigned",
    "decision_approved": "Rollback decision approved by technical lead",
    "stakeholders_notified": "Stakeholders notified",
    "backup_verified": "Database backup verified",
    "previous_version": "Previous stable version identified",
    "team_assembled": "Team assembled",
}
# Items the bot can tick itself; the rest are ticked by people in the message.
AUTOMATIC_CHECKLIST_ITEMS = ("previous_version", "backup_verified", "stakeholders_notified")


def _default_policies() -> dict[Severity, SeverityPolicy]:
    return {
        # The runbook rolls the database back only when data corruption is confirmed and
        # a recent backup exists: a P0 is an immediate *application* rollback by default.
        Severity.P0: SeverityPolicy(
            mode=PolicyMode.IMMEDIATE,
            scope=["app"],
            allow_self_approval=True,
            checklist_required=["previous_version"],
        ),
        # Decision deadlines: each mode's runbook response time (DEFAULT_DECISION_MINUTES).
        Severity.P1: SeverityPolicy(
            mode=PolicyMode.HOTFIX_WINDOW,
            checklist_required=["incident_commander", "previous_version"],
        ),
        Severity.P2: SeverityPolicy(
            mode=PolicyMode.EVALUATE,
            checklist_required=["incident_commander", "previous_version", "decision_approved"],
        ),
        Severity.P3: SeverityPolicy(mode=PolicyMode.NEXT_DEPLOYMENT),
    }


class Policy(Strict):
    severities: dict[Severity, SeverityPolicy] = Field(default_factory=_default_policies)
    default_severity: Severity = Severity.P1
    approval_expiry_minutes: float = 30
    # A pending request expires at approval_expiry_minutes after it was made, but never
    # sooner than this long after its decision deadline: the escalation is never cut off.
    expiry_grace_minutes: float = Field(default=15, ge=0)
    allowed_channels: list[str] = Field(default_factory=lambda: ["inc-*", "incident-*"])
    review_within_hours: float = 24
    postmortem_within_hours: float = 48

    @model_validator(mode="after")
    def _all_severities(self) -> Policy:
        missing = [s.value for s in Severity if s not in self.severities]
        if missing:
            defaults = _default_policies()
            merged = {**{s: defaults[s] for s in Severity}, **self.severities}
            object.__setattr__(self, "severities", merged)
        return self

    def for_severity(self, severity: Severity) -> SeverityPolicy:
        return self.severities[severity]

    def decision_due(self, severity: Severity, requested_at: datetime) -> datetime:
        """When the decision on a request of ``severity`` made at ``requested_at`` is due."""
        minutes = self.for_severity(severity).deadline_minutes
        return requested_at + timedelta(minutes=minutes)

    def expires_at(self, requested_at: datetime, decision_due: datetime) -> datetime:
        """When a pending request expires: ``approval_expiry_minutes`` after the request,
        never before ``expiry_grace_minutes`` after its decision deadline."""
        return max(requested_at + timedelta(minutes=self.approval_expiry_minutes),
                   decision_due + timedelta(minutes=self.expiry_grace_minutes))

    def channel_allowed(self, channel_name: str) -> bool:
        return any(fnmatch.fnmatchcase(channel_name, p) for p in self.allowed_channels)


# ---------------------------------------------------------------------- service
class ServiceConfig(Strict):
    """One service of the catalog. Its platform blocks are fields that ``config_schema``
    adds from a registry (one per ``PlatformSpec``, named like the platform, holding its
    ``config_model``); this base class has none, so parse through ``parse_config``."""

    # The registry this model was built from; set on each class config_schema builds.
    platform_specs: ClassVar[PlatformSpecs] = PlatformSpecs()

    description: str = ""
    default_platform: str | None = None
    health: HealthCheck | None = None
    prometheus: PrometheusConfig | None = None
    database: DatabaseConfig | None = None
    external_checks: list[HttpProbe] = Field(default_factory=list)
    functional_checks: list[HttpProbe] = Field(default_factory=list)
    webhooks: list[HttpProbe] = Field(default_factory=list)
    load_balancer: LoadBalancerConfig | None = None
    stakeholders: Stakeholders = Field(default_factory=Stakeholders)
    approvers: Approvers | None = None
    tech_leads: Approvers | None = None
    contacts: Contacts = Field(default_factory=Contacts)  # the runbook's emergency contacts
    pagerduty: PagerDutyConfig | None = None  # escalations page through it when set
    incident_channel_pattern: str | None = None
    monitoring: MonitoringConfig = Field(default_factory=MonitoringConfig)
    watcher: WatcherConfig = Field(default_factory=WatcherConfig)
    policy: Policy | None = None
    postmortem: PostmortemConfig | None = None  # where post-mortems are filed (GitHub)

    @field_validator("default_platform")
    @classmethod
    def _known_platform(cls, value: str | None) -> str | None:
        if value is not None and value not in cls.platform_specs:
            raise ValueError(f"{value!r} is not a platform (known platforms: "
                             f"{', '.join(cls.platform_specs.names())})")
        return value

    @model_validator(mode="after")
    def _has_target(self) -> ServiceConfig:
        configured = self.platforms()
        if not configured:
            raise ValueError(f"at least one of {', '.join(self.platform_specs.names())} "
                             "must be configured")
        if self.default_platform and self.default_platform not in configured:
            raise ValueError(f"default_platform {self.default_platform!r} has no target section")
        if self.watcher.enabled and self.prometheus is None:
            raise ValueError("watcher.enabled needs a prometheus section (the error-rate rule)")
        return self

    def watch_threshold(self) -> float:
        """The watcher's error-rate threshold: its own, else the service's."""
        if self.watcher.error_rate_threshold is not None:
            return self.watcher.error_rate_threshold
        return self.prometheus.error_rate_threshold if self.prometheus is not None else 0.05

    def platforms(self) -> list[str]:
        """The platforms this service has a block for, in the registry's order."""
        return [p for p in self.platform_specs.names() if self.platform_config(p) is not None]

    def platform_config(self, platform: str) -> BaseModel | None:
        """The service's ``<platform>:`` block (its spec's ``config_model``), if any."""
        if platform not in self.platform_specs:
            return None
        block: BaseModel | None = getattr(self, platform, None)
        return block

    def platform_spec(self, platform: str) -> PlatformSpec[Any]:
        """The spec of a registered platform (KeyError for one the registry lacks)."""
        return self.platform_specs[platform]

    def platform_or_default(self, requested: str | None) -> str:
        if requested:
            return requested
        return self.default_platform or self.platforms()[0]


class SlackSettings(Strict):
    approvers: Approvers = Field(default_factory=Approvers)
    # Who may tick "Rollback decision approved by technical lead"; unset = the approvers.
    tech_leads: Approvers | None = None


class ExecutorSettings(Strict):
    lease_seconds: float = 30
    heartbeat_seconds: float = 5
    poll_seconds: float = 1
    max_transient_retries: int = 5
    backoff_base_seconds: float = 1
    # A platform's Retry-After is obeyed up to this; absurd hints (an hour, year 9999) wait
    # this long instead, and the retry budget still ends in a clear failure.
    max_retry_after_seconds: float = Field(default=60, gt=0)
    # Measured (bench/mass_rollback.py, 100 services, 20 s rollouts): with waits parked, a
    # worker only does a rollback's short parts, mostly waiting on PostgreSQL and Slack:
    # 2 workers 84 s / 41 in flight, 4 workers 59 s / 65, 8 workers 55 s / 72. Four fit
    # the process's 10-connection pool with room for the Slack handlers.
    workers: int = 4
    # Waiting on a rollout holds no worker: the step looks once, the rollback is parked
    # and looked at again later (an eighth of the time waited so far, at most this long
    # apart). False: the step blocks its worker until the rollout ends (the old way).
    release_while_waiting: bool = True
    rollout_check_seconds: float = Field(default=10, gt=0, le=300)


class SchedulerSettings(Strict):
    """The leader's job pool (``bot.execution.scheduler``): due jobs (monitor checks,
    notifications, reminders) run on this many threads at once. Jobs are I/O bound
    (Prometheus, health probes, Slack); 16 kept 1,000 monitors checked every 5 s on time
    (``bench/monitors.py``). Each thread borrows a database connection per statement."""

    workers: int = Field(default=16, ge=1, le=256)


class AftercareSettings(Strict):
    """After the steps: verification budget, post-mortem files, reminder cadence."""

    verification_timeout_seconds: float = Field(default=180, gt=0)
    # Unset: <data dir>/post-mortems (the container's writable path); a relative path is
    # under the data dir too, never the working directory (read-only in the image).
    postmortem_dir: str | None = None
    reminder_snooze_hours: float = Field(default=4, gt=0)
    reminder_repeat_hours: float = Field(default=24, gt=0)
    # The runbook's "Plan forward fix" (bot.aftercare.forward_fix): asked at completion, then
    # daily (a working day's rhythm, never hourly nagging: at least 1 h); after two weeks a
    # final note stops the chase (the link can still be recorded afterwards).
    forward_fix_repeat_hours: float = Field(default=24, ge=1)
    forward_fix_stop_after_days: float = Field(default=14, gt=0, le=365)


class DiagnoseSettings(Strict):
    """``/rollback diagnose``: the bound on each of its read-only checks."""

    # Each Prometheus and database check (an external check keeps its own
    # ``timeout_seconds``): a hanging dependency is "could not check within N s", and the
    # whole diagnosis answers within about the slowest bound, all checks running at once.
    check_timeout_seconds: float = Field(default=10, gt=0)


class RequestSettings(Strict):
    """Making a request's plan: the bound on its decorations."""

    # The plan's configuration view (``Platform.config_differences``): a platform that
    # hangs makes it "Configuration view unavailable: timed out after N s" instead of
    # holding the request (like the assessment's probes, 5 s each).
    config_view_timeout_seconds: float = Field(default=5, gt=0)


class RetentionSettings(Strict):
    """Housekeeping: how long bookkeeping rows are kept. The audit trail is never purged."""

    interval_minutes: float = Field(default=60, gt=0)
    # Slack retries a delivery within minutes and signed requests older than 5 minutes are
    # refused, so a day is ample; under an hour would risk a late retry acting twice.
    processed_requests_hours: float = Field(default=24, ge=1)
    # Finished jobs and sent outbox rows of rollbacks that ended this long ago.
    finished_jobs_days: float = Field(default=14, ge=1)
    # Monitor samples (one per check) of rollbacks that ended this long ago: the report was
    # posted at the end of the window and its figures stay on the monitor row.
    monitor_samples_days: float = Field(default=30, ge=1)


class AutomationSettings(Strict):
    """``rollback-bot auto``: who the automation is and what it may do without a person.

    Its requests go through the same lifecycle as a person's (audited, announced, policy
    applied); ``self_approve`` lists the severities it may approve on its own. A request
    with a destructive step (a database restore) always needs two people, so ``db`` is
    never in its scope."""

    identity: str = Field(default="rollback-bot-auto", min_length=1, max_length=64)
    # The incident channel its requests are posted in (an id with Slack; without Slack the
    # name the channel rule is checked against). Else the service's watcher channel.
    channel: str | None = None
    severity: Severity = Severity.P1
    scope: list[str] = Field(default_factory=lambda: ["app"])
    self_approve: list[Severity] = Field(default_factory=list)
    timeout_seconds: float = Field(default=300, gt=0)  # the runbook script's rollout wait
    settle_seconds: float = Field(default=30, ge=0)  # before health is read again

    @field_validator("identity")
    @classmethod
    def _not_a_person(cls, v: str) -> str:
        # Neither the bot's own actor nor a Slack user id: the audit trail must tell the
        # automation from a person and from the release watcher, and a person's id here
        # would let the automation pass for them.
        if v in ("bot", "rollback-bot") or re.fullmatch(r"[UW][A-Z0-9]{6,}", v):
            raise ValueError(f"{v!r} is the bot's own name or a Slack user id; name the "
                             "automation (e.g. rollback-bot-auto)")
        return v

    @field_validator("scope")
    @classmethod
    def _no_restore(cls, v: list[str]) -> list[str]:
        unknown = [s for s in v if s not in SCOPES]
        if unknown:
            raise ValueError(f"unknown scope {', '.join(unknown)} ({', '.join(SCOPES)})")
        if "db" in v:
            raise ValueError("db: a database restore needs two people; the automation "
                             "never plans one")
        if not v:
            raise ValueError("at least one of app, config, external")
        return v

    def channel_for(self, service: ServiceConfig) -> str | None:
        return self.channel or service.watcher.channel


class RollbackConfig(Strict):
    """The whole file. Like ``ServiceConfig``, parse it through ``parse_config``: the class
    that validates is built by ``config_schema`` for a registry of platforms."""

    # The registry this model was built from; set on each class config_schema builds.
    platform_specs: ClassVar[PlatformSpecs] = PlatformSpecs()

    slack: SlackSettings = Field(default_factory=SlackSettings)
    policy: Policy = Field(default_factory=Policy)
    executor: ExecutorSettings = Field(default_factory=ExecutorSettings)
    scheduler: SchedulerSettings = Field(default_factory=SchedulerSettings)
    aftercare: AftercareSettings = Field(default_factory=AftercareSettings)
    diagnose: DiagnoseSettings = Field(default_factory=DiagnoseSettings)
    request: RequestSettings = Field(default_factory=RequestSettings)
    retention: RetentionSettings = Field(default_factory=RetentionSettings)
    automation: AutomationSettings = Field(default_factory=AutomationSettings)
    smtp: SmtpSettings | None = None  # before ``services``: their e-mail lists need it
    # Emergency contacts every service inherits, role by role (a service's own entry wins).
    contacts: Contacts = Field(default_factory=Contacts)
    services: dict[str, ServiceConfig]

    @field_validator("services")
    @classmethod
    def _non_empty(cls, v: dict[str, ServiceConfig]) -> dict[str, ServiceConfig]:
        if not v:
            raise ValueError("at least one service is required")
        return v

    @field_validator("services")
    @classmethod
    def _mail_needs_a_relay(cls, v: dict[str, ServiceConfig], info: ValidationInfo
                            ) -> dict[str, ServiceConfig]:
        if "smtp" not in info.data:
            return v  # the smtp block itself is invalid: its own error says why
        if info.data["smtp"] is None:
            for name, svc in v.items():
                if svc.stakeholders.email:
                    raise ValueError(f"{name}.stakeholders.email needs the top-level smtp "
                                     "block (the relay that sends it)")
        return v

    def service(self, name: str) -> ServiceConfig | None:
        return self.services.get(name)

    def policy_for(self, service: str) -> Policy:
        svc = self.services.get(service)
        return svc.policy if svc and svc.policy else self.policy

    def approvers_for(self, service: str) -> Approvers:
        svc = self.services.get(service)
        return svc.approvers if svc and svc.approvers else self.slack.approvers

    def contacts_for(self, service: str) -> Contacts:
        """A service's emergency contacts: its own, each missing role from the defaults."""
        svc = self.services.get(service)
        own = svc.contacts if svc else Contacts()
        return own.merged_over(self.contacts)

    def tech_leads_for(self, service: str) -> Approvers:
        """Technical leads of a service: its own list, the global one, else its approvers."""
        svc = self.services.get(service)
        if svc and svc.tech_leads:
            return svc.tech_leads
        return self.slack.tech_leads or self.approvers_for(service)


# ---------------------------------------------------------------------- loading
@functools.cache  # one pair of classes per registry (registries are immutable, hashable)
def config_schema(platforms: PlatformSpecs) -> type[RollbackConfig]:
    """The ``RollbackConfig`` model for a registry: ``ServiceConfig`` plus one optional
    block per platform, so pydantic itself reports each error at its key path."""
    clash = [name for name in platforms.names() if name in ServiceConfig.model_fields]
    if clash:
        raise ValueError(f"a platform cannot be named like a service key: {', '.join(clash)}")
    blocks: dict[str, Any] = {spec.name: (spec.config_model | None, None) for spec in platforms}
    service = create_model("ServiceConfig", __base__=ServiceConfig, __module__=__name__,
                           **blocks)
    service.platform_specs = platforms
    config = create_model("RollbackConfig", __base__=RollbackConfig, __module__=__name__,
                          services=(dict[str, service], ...))  # type: ignore[valid-type]
    config.platform_specs = platforms
    return config


def _looks_like_platform_block(key: str, value: Any) -> bool:
    """An unknown key of a service that may be a platform block the registry lacks
    (``nomad:``, the sandbox-only ``fake:``): a mapping (or empty), and no near miss of a
    service setting (``helth:`` is ``health:`` misspelt, not a platform)."""
    return isinstance(value, dict | None) and not difflib.get_close_matches(
        key, ServiceConfig.model_fields, n=1, cutoff=0.75)


def _format_errors(err: ValidationError, platforms: PlatformSpecs) -> list[str]:
    lines = []
    for e in err.errors():
        path = ".".join(str(p) for p in e["loc"]) or "<root>"
        msg = e["msg"]
        if e["type"] == "missing":
            msg = "field required"
        elif e["type"] == "extra_forbidden":
            msg = "unknown key"
            if (len(e["loc"]) == 3 and e["loc"][0] == "services"
                    and _looks_like_platform_block(str(e["loc"][2]), e["input"])):
                msg += f" (known platforms: {', '.join(platforms.names())})"
        lines.append(f"{path}: {msg}")
    return lines


def parse_config(data: Any, *, source: str = "<config>",
                 platforms: PlatformSpecs) -> RollbackConfig:
    """Validate a loaded ``rollback.yml`` against the schema of ``platforms`` (production's
    registry from the entry points, the sandbox's or a test's own); ``ConfigError`` lists
    every problem with its key path."""
    if not isinstance(data, dict):
        raise ConfigError(source, ["<root>: expected a mapping"])
    try:
        config = config_schema(platforms).model_validate(data)
    except ValidationError as err:
        raise ConfigError(source, _format_errors(err, platforms)) from None
    for name in secret_env_names(data):
        scrub.remember_env(name)  # known before first use: an early error is scrubbed too
    return config


def secret_env_names(data: Any) -> set[str]:
    """Every environment variable the configuration names as holding a secret: values of
    ``*_env`` keys and of ``headers_env`` entries (``NAME`` or ``{env: NAME}``)."""
    found: set[str] = set()
    if isinstance(data, dict):
        for key, value in data.items():
            if key == "headers_env" and isinstance(value, dict):
                for entry in value.values():
                    env = entry.get("env") if isinstance(entry, dict) else entry
                    if isinstance(env, str):
                        found.add(env)
            elif isinstance(key, str) and key.endswith("_env") and isinstance(value, str):
                found.add(value)
            else:
                found |= secret_env_names(value)
    elif isinstance(data, list):
        for item in data:
            found |= secret_env_names(item)
    return found


def load_config(path: str | Path, *, platforms: PlatformSpecs) -> RollbackConfig:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(str(p), [f"<file>: cannot read: {exc.strerror}"]) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(str(p), [f"<file>: invalid YAML: {exc}"]) from None
    return parse_config(data, source=str(p), platforms=platforms)


def default_config_path() -> Path:
    """``ROLLBACK_CONFIG``, else ``rollback.yml``, else the bundled example."""
    env = os.environ.get("ROLLBACK_CONFIG")
    if env:
        return Path(env)
    local = Path("rollback.yml")
    if local.exists():
        return local
    return Path(__file__).resolve().parents[2] / "rollback.example.yml"
