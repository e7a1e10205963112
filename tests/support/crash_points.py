"""Crash points for bot processes the crash tests kill: park the process, announce it, wait.

The test starts ``python -m tests.support.bot_main serve`` with ``ROLLBACK_FAULT_FILE`` set
and either ``ROLLBACK_FAULT_HOLD=<step kind>:<before|after>`` (inside that step, "after" when
the part is left out) or ``ROLLBACK_FAULT_POST=<outbox key>`` (after Slack accepted that
post, before it is marked sent) or ``ROLLBACK_FAULT_SEND=<outbox key>`` (an e-mail
rendered, or a thread line queued, and its attempt committed, before the SMTP session or
the Slack post; a shell pattern, as the key holds the rollback's id) or
``ROLLBACK_FAULT_PUBLISH=<key>:<stage>`` (a post-mortem pull request part-way: ``branch``
created, or ``file`` written, no pull request yet) or ``ROLLBACK_FAULT_VERIFIED=1`` (a
rollback moved into monitoring, its completion not made) or ``ROLLBACK_FAULT_COMPLETED=1``
(moved to completed, nothing said about it yet). The process writes ``<pid> ...`` to the
file and blocks until SIGKILL. Only this test entry point reads these
variables; the product takes the points as a ``create_app`` argument and never looks at the
environment for them.
"""

from __future__ import annotations

import fnmatch
import os
import threading
from collections.abc import Mapping
from pathlib import Path

from bot.domain.ports import NO_CRASH_POINTS, CrashPoints


def _park(announce: Path, line: str) -> None:
    announce.write_text(f"{os.getpid()} {line}\n")
    threading.Event().wait()  # until SIGKILL


def from_environment(env: Mapping[str, str] = os.environ) -> CrashPoints:
    announce = env.get("ROLLBACK_FAULT_FILE")
    if not announce:
        return NO_CRASH_POINTS
    hold_kind, _, hold_when = env.get("ROLLBACK_FAULT_HOLD", "").partition(":")
    hold_when = hold_when or "after"
    post_key = env.get("ROLLBACK_FAULT_POST")
    send_key = env.get("ROLLBACK_FAULT_SEND")
    publish = env.get("ROLLBACK_FAULT_PUBLISH")  # "<key pattern>:<stage>", e.g. "*:branch"
    hold_verified = bool(env.get("ROLLBACK_FAULT_VERIFIED"))
    hold_completed = bool(env.get("ROLLBACK_FAULT_COMPLETED"))

    def step(kind: str, when: str) -> None:
        if hold_kind and kind == hold_kind and when == hold_when:
            _park(Path(announce), f"{kind} {when}")

    def posted(key: str) -> None:
        if post_key and fnmatch.fnmatchcase(key, post_key):
            _park(Path(announce), key)

    def sending(key: str) -> None:
        if send_key and fnmatch.fnmatchcase(key, send_key):
            _park(Path(announce), f"sending {key}")

    def publishing(key: str, stage: str) -> None:
        if publish and fnmatch.fnmatchcase(f"{key}:{stage}", publish):
            _park(Path(announce), f"publishing {key} {stage}")

    def verified(ref: str) -> None:
        if hold_verified:
            _park(Path(announce), f"verified {ref}")

    def completed(ref: str) -> None:
        if hold_completed:
            _park(Path(announce), f"completed {ref}")

    return CrashPoints(step=step, posted=posted, sending=sending, publishing=publishing,
                       verified=verified, completed=completed)
