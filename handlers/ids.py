"""Every Slack identifier the app registers: command, action_ids, callback_ids, routes.

The manifest test checks manifest.yml against these, so renaming one here is caught.
"""

from __future__ import annotations

COMMAND = "/rollback"

# HTTP routes served by the bot (bot.runtime.server)
EVENTS_PATH = "/slack/events"
HEALTHZ_PATH = "/healthz"
READYZ_PATH = "/readyz"
METRICS_PATH = "/metrics"

# block_actions
APPROVE = "rollback_approve"
APPROVE_OVERRIDE = "rollback_approve_override"  # P3: approver overrides "next deployment"
APPROVE_KNOWN_BAD = "rollback_approve_known_bad"  # explicit override: target is known-bad
SCALE_BACK_UP = "rollback_scale_back_up"  # needs_attention with the service left at 0
REJECT = "rollback_reject"
CANCEL = "rollback_cancel"
HOTFIX = "rollback_hotfix_in_progress"  # P1: report a hotfix, moving the deadline once
CHECKLIST = "rollback_checklist"  # action_id prefix: one button per item, ids must differ
ASSIGN_IC = "rollback_assign_ic"  # clicker becomes incident commander
RESOLVE = "rollback_resolve"  # needs_attention / unstable: a human closes it
RETRY = "rollback_retry_verification"
RESUME_MONITORING = "rollback_resume_monitoring"  # unstable: the regression was a blip
ALERT_RESOLVE = "rollback_alert_resolve"  # "Mark resolved" on an aftercare notice
REMINDER_SCHEDULED = "reminder_scheduled"
REMINDER_DONE = "reminder_done"
REMINDER_SNOOZE = "reminder_snooze"
# on a diagnosis (/rollback diagnose): open the request form with the finding's scope
DIAGNOSIS_REQUEST = "rollback_diagnosis_request"
WATCH_REQUEST = "watcher_request_rollback"  # release watcher's proposal: open the request modal
WATCH_SNOOZE = "watcher_snooze"
FORWARD_FIX_RECORD = "forward_fix_record"  # its ask: opens the link + root cause dialog
FORWARD_FIX_WAIVE = "forward_fix_waive"  # its ask: opens the waiver's reason dialog
TIMELINE = "rollback_timeline"  # a finished request: its timeline, ephemeral + a Markdown file
# inputs inside the request modal (block_actions fire for selects; we ignore them)
MODAL_INPUT_ACTIONS = ("target_revision", "severity", "scope", "platform", "reason",
                       "confirm_service")

# view callback_ids
REQUEST_MODAL = "rollback_request_modal"
REJECT_MODAL = "rollback_reject_modal"
APPROVE_DESTRUCTIVE_MODAL = "rollback_approve_destructive_modal"  # type the service name

ALL_ACTIONS = (
    APPROVE,
    APPROVE_OVERRIDE,
    APPROVE_KNOWN_BAD,
    SCALE_BACK_UP,
    REJECT,
    CANCEL,
    HOTFIX,
    CHECKLIST,
    ASSIGN_IC,
    RESOLVE,
    RETRY,
    RESUME_MONITORING,
    ALERT_RESOLVE,
    REMINDER_SCHEDULED,
    REMINDER_DONE,
    REMINDER_SNOOZE,
    DIAGNOSIS_REQUEST,
    WATCH_REQUEST,
    WATCH_SNOOZE,
    TIMELINE,
    FORWARD_FIX_RECORD,
    FORWARD_FIX_WAIVE,
)
# Buttons that change nothing: open to anyone, like ``/rollback status``, so they have no row
# in the authority table (bot.domain.authority holds decisions only).
READ_ONLY_ACTIONS = (TIMELINE,)
FORWARD_FIX_MODAL = "forward_fix_modal"  # private_metadata: "<rollback id>:record|waive"
ALL_VIEWS = (REQUEST_MODAL, REJECT_MODAL, APPROVE_DESTRUCTIVE_MODAL, FORWARD_FIX_MODAL)
