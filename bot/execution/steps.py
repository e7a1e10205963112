"""What each plan step does. Every handler is idempotent given its row's params and result.

A handler reads only what the plan pinned (revision, backup file) or what an earlier
step journaled (replica count before scale-down), never re-derives it from the live
platform, so a resumed rollback repeats no mutation and cannot pick a different target.

How a step fails is typed (``bot.execution.errors``): what a handler decides itself (no
database section, a DSN env unset, the pinned backup unreadable, writers back, a webhook's
answer, a service that did not stop, a rollout that did not settle on the pinned revision)
is a ``TemporaryStepError`` or a ``PermanentStepError``; a platform error is the adapter's
own and passes through unchanged (``WriteConflict`` and ``TargetChanged`` included).
``Unsupported`` is the exception: a config step (``snapshot_config``, ``restore_config``) on
a platform without config snapshots, whether its spec says so up front or the adapter
raises it, ends ``skipped`` with the reason in its result instead of failing the rollback.
"""

from __future__ import annotations

import logging
import shlex
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import httpx

from bot.domain.config import ServiceConfig, probe_headers, secret
from bot.domain.errors import MissingSecret
from bot.domain.models import Rollback, Step
from bot.execution.errors import PermanentStepError, StillWaiting, TemporaryStepError
from bot.integrations.errors import LoadBalancerError
from bot.integrations.http_client import shared_client
from bot.observability.scrub import scrub
from bot.persistence import sealing
from platforms.base import (
    Capability,
    ConfigSnapshot,
    Platform,
    Revision,
    RolloutStatus,
    TransientPlatformError,
    Unsupported,
)

log = logging.getLogger(__name__)

PRE_RESTORE_DIR = "pre-restore"  # dumps taken by backup_db; never offered as backups
WRITER_RECHECK_SECONDS = 10.0


@dataclass
class StepContext:
    rollback: Rollback
    step: Step
    service: ServiceConfig
    platform: Platform
    all_steps: list[Step]
    journal: Callable[[dict[str, Any]], None]  # merge facts into this step's result now
    progress: Callable[[str], None]  # a line for the thread
    known_good_config: ConfigSnapshot | None  # loaded only for restore_config
    known_good_recorded_at: datetime | None
    now: Any
    # Records a restore's data-loss window (backup timestamp, restore) on the rollback.
    record_data_loss: Callable[[datetime, datetime], None] = lambda _since, _until: None
    # The process's HTTP client (bot.integrations.http_client) for the webhooks; None (tests
    # that build a context by hand): a client for this step only.
    http: httpx.Client | None = None
    # ``wait_rollout`` looks once and raises ``StillWaiting`` instead of blocking until the
    # rollout ends (the executor parks the rollback and frees its worker); False: the
    # blocking wait (``executor.release_while_waiting: false``, and direct callers).
    release_while_waiting: bool = False


StepHandler = Callable[[StepContext], dict[str, Any]]


def _dsn(ctx: StepContext) -> str:
    db = ctx.service.database
    if db is None:
        raise PermanentStepError("no database section configured for this service")
    dsn = secret(db.dsn_env)
    if not dsn:
        raise PermanentStepError(f"database DSN env {db.dsn_env} is not set")
    return dsn


def snapshot_config(ctx: StepContext) -> dict[str, Any]:
    """Record what the configuration was before any change, as digests: Secret contents
    never land in the step journal (the platform keeps its own history)."""
    try:
        _require(ctx, Capability.CONFIG_SNAPSHOTS)
        snap = ctx.platform.snapshot_config(ctx.rollback.target)
    except Unsupported as exc:
        return {"skipped": _not_supported(exc)}
    digests = {name: sealing.digest(obj) for name, obj in snap.items.items()}
    return {"objects": sorted(snap.items), "digests": digests}


def restore_config(ctx: StepContext) -> dict[str, Any]:
    try:
        _require(ctx, Capability.CONFIG_SNAPSHOTS)
    except Unsupported as exc:
        return {"skipped": _not_supported(exc)}
    pinned = ctx.step.params.get("known_good_recorded_at")
    if pinned is None:
        return {"skipped": "no known-good configuration was recorded when the plan was made"}
    if (ctx.known_good_config is None or ctx.known_good_recorded_at is None
            or ctx.known_good_recorded_at != datetime.fromisoformat(pinned)):
        # Never restore something other than what the approvers saw in the plan.
        raise PermanentStepError(
            "the known-good configuration changed since the plan was made "
            f"(pinned {pinned}); request a new rollback to review it")
    snapshot, withheld = _opened(ctx, ctx.known_good_config)
    try:
        changed = ctx.platform.restore_config(ctx.rollback.target, snapshot)
    except Unsupported as exc:
        return {"skipped": _not_supported(exc)}
    result: dict[str, Any] = {"changed": changed,
                              "objects": sorted(n for n in snapshot.items if n not in withheld)}
    if withheld:
        result["secrets_not_restored"] = withheld
        result["message"] = "; ".join(
            f"Secret {name.removeprefix(sealing.SECRET_PREFIX)} was NOT restored and is left "
            f"as it is now: {why}" for name, why in sorted(withheld.items())
        ) + ". Everything else was restored; put that Secret back by hand if it must change."
    return result


def _opened(ctx: StepContext, known: ConfigSnapshot) -> tuple[ConfigSnapshot, dict[str, str]]:
    """The known-good snapshot, Secrets opened (``bot.persistence.sealing``), and the Secrets
    that cannot be restored with why. Such a Secret is passed back as it runs now (so no
    adapter deletes or overwrites it); one whose live digest still matches the recorded one
    is simply unchanged and not reported."""
    keys = sealing.load_keys()
    items: dict[str, Any] = {}
    withheld: dict[str, str] = {}
    live: ConfigSnapshot | None = None
    for name, item in known.items.items():
        if not sealing.is_secret(name):
            items[name] = item
            continue
        opened, why = sealing.open_item(item, keys)
        if opened is not None:
            items[name] = opened
            continue
        live = live or ctx.platform.snapshot_config(ctx.rollback.target)
        current = live.items.get(name)
        if current is not None:
            items[name] = current
            if sealing.digest(current) == sealing.recorded_digest(item):
                continue  # the Secret still is what was recorded: nothing to restore
        withheld[name] = why or "it could not be opened"
    return ConfigSnapshot(items=items), withheld


def scale_down(ctx: StepContext) -> dict[str, Any]:
    """Scale to zero and wait until nothing runs: pods keep writing for their termination
    grace period after the scale request is accepted, and the backup and restore that
    follow must not race a writer."""
    before = ctx.step.result.get("before")
    if before is None:
        _check_pinned_backup(ctx)  # never stop the service for a restore that cannot run
        before = ctx.platform.get_replicas(ctx.rollback.target)
        if before == 0:
            raise PermanentStepError(
                "the service already runs 0 replicas: a scale-down would record 0 and "
                "never bring it back; scale it to its normal size first")
        ctx.journal({"before": before})  # recorded before the mutation; scale_up restores it
    ctx.platform.scale(ctx.rollback.target, 0)
    timeout = _platform_timeout(ctx, "stop")
    status = ctx.platform.wait_for_stopped(ctx.rollback.target, timeout=timeout,
                                           on_progress=_throttled(ctx.progress))
    if not status.done:
        raise PermanentStepError(f"still running {timeout:.0f}s after scaling to 0: "
                                 f"{status.message}")
    return {"before": before, "after": 0, "stopped": status.message}


def scale_up(ctx: StepContext) -> dict[str, Any]:
    down = next((s for s in ctx.all_steps if s.kind == "scale_down"), None)
    if down is None or down.result.get("before") is None:
        raise PermanentStepError("scale_down recorded no replica count; refusing to guess")
    replicas = int(down.result["before"])
    ctx.platform.scale(ctx.rollback.target, replicas)
    return {"replicas": replicas}


def backup_db(ctx: StepContext) -> dict[str, Any]:
    """Dump the current (bad) state before the restore overwrites it. The dump goes to a
    ``pre-restore`` folder that ``latest_backup`` never looks in: a later rollback must not
    pin this copy of the bad data as "the latest backup"."""
    from bot.integrations import target_database as database

    assert ctx.service.database is not None
    _writers_stopped(ctx)
    info = database.backup(_dsn(ctx), location=Path(ctx.service.database.backup_location)
                           / PRE_RESTORE_DIR, service=ctx.rollback.service, now=ctx.now)
    return {"file": info.path.name, "size": info.size}


def restore_db(ctx: StepContext) -> dict[str, Any]:
    from bot.integrations import target_database as database

    path = ctx.step.params.get("backup_path")
    if not path:
        raise PermanentStepError("no backup was pinned in the plan; nothing to restore")
    _check_pinned_backup(ctx)
    _writers_stopped(ctx)
    taken = (ctx.rollback.plan_facts.get("backup") or {}).get("taken_at")
    if taken:  # recorded before pg_restore: an interrupted restore has lost it as well
        ctx.record_data_loss(datetime.fromisoformat(str(taken)), ctx.now)
    ctx.journal({"begun": True})  # from here on the database may change: a human decides
    database.restore(_dsn(ctx), path=path)
    return {"restored_from": Path(path).name}


def _writers_stopped(ctx: StepContext) -> None:
    """Autoscalers, GitOps self-heal or a proxy's autostart can bring writers back after
    the scale-down: check again right before touching the database."""
    status = ctx.platform.wait_for_stopped(ctx.rollback.target, timeout=WRITER_RECHECK_SECONDS)
    if not status.done:
        raise PermanentStepError(f"writers are running again: {status.message}; "
                                 "something scaled the service back up")


def _check_pinned_backup(ctx: StepContext) -> None:
    """The pinned file must be on this executor, the size the plan recorded, before the
    service is stopped and again before the restore (another replica may execute)."""
    restore = next((s for s in ctx.all_steps if s.kind == "restore_db"), None)
    if restore is None:
        return
    path = Path(str(restore.params.get("backup_path") or ""))
    expected = restore.params.get("backup_size")
    try:
        size = path.stat().st_size
    except OSError:
        raise PermanentStepError(f"the pinned backup {path.name} is not readable on this "
                                 "executor (shared backup storage missing?)") from None
    if expected is not None and size != int(expected):
        raise PermanentStepError(f"the pinned backup {path.name} changed since the plan "
                                 f"was made ({size} bytes, planned {expected})")


def verify_db(ctx: StepContext) -> dict[str, Any]:
    from bot.integrations import target_database as database

    assert ctx.service.database is not None
    results = database.verify(_dsn(ctx), queries=ctx.service.database.verify_queries,
                              timeout=30)
    failed = [r for r in results if r.error]
    if failed:
        raise PermanentStepError(f"database verification failed: {failed[0].query}: "
                                 f"{failed[0].error}")
    return {"queries": [{"query": r.query, "value": str(r.value)} for r in results]}


def app_rollback(ctx: StepContext) -> dict[str, Any]:
    revision = Revision.from_dict(ctx.step.params["revision"])
    # Fenced on what the plan moves away from: a hotfix deployed meanwhile is never undone.
    result = ctx.platform.rollback_to(ctx.rollback.target, revision,
                                      expected=ctx.rollback.current_revision)
    return {"changed": result.changed, "message": result.message}


def wait_rollout(ctx: StepContext) -> dict[str, Any]:
    """Wait for the rollout, then check that what runs is what the plan pinned: a platform
    can settle on something else (ECS's circuit breaker reverting to the bad deployment,
    another actor editing the Deployment, a Fly machine left on another image).

    With ``release_while_waiting`` the wait is one status read per call (``_look``): still
    going raises ``StillWaiting`` and the executor calls again later, on any replica."""
    timeout = _platform_timeout(ctx, "rollout")
    if ctx.release_while_waiting:
        status = _look(ctx, timeout)
    else:
        status = ctx.platform.wait_for_rollout(ctx.rollback.target, timeout=timeout,
                                               on_progress=_throttled(ctx.progress))
    if status.failed:
        raise PermanentStepError(status.message)
    if not status.done:
        raise TemporaryStepError(f"rollout not finished after {timeout:.0f}s: "
                                 f"{status.message}")
    pinned = ctx.rollback.target_revision
    check = ctx.platform.confirm_running(ctx.rollback.target, pinned)
    if not check.matches:
        raise PermanentStepError(f"the rollout settled, but the pinned {pinned.label()} is not "
                                 f"what runs: {check.running}"
                                 + (f" ({check.detail})" if check.detail else ""))
    return {"message": status.message, "running": check.running}


def _look(ctx: StepContext, timeout: float) -> RolloutStatus:
    """One non-blocking look at the rollout. The wait's start is journaled at the first
    look, so the deadline counts from it whichever executor looks next (a crash or a
    re-claim does not restart it); a new line goes to the thread only when the status
    reads differently from the last look's. A transient error while looking is a look that
    saw nothing (as the adapters' own waits treat it): the deadline still bounds it."""
    since_text = ctx.step.result.get("waiting_since")
    since = datetime.fromisoformat(str(since_text)) if since_text else ctx.now
    if not since_text:
        ctx.journal({"waiting_since": since.isoformat()})
    try:
        status = ctx.platform.rollout_status(ctx.rollback.target)
    except TransientPlatformError as exc:
        status = RolloutStatus(done=False, message=f"transient error: {exc}")
    # The journal stores what it is given scrubbed (``Store.step_progress``): compare the
    # scrubbed reading, or a status quoting anything credential-shaped (a registry URL
    # with a token, say) reads as new on every look and posts a line each time.
    said = scrub(status.message)
    if said != ctx.step.result.get("last_status"):
        ctx.journal({"last_status": said})
        ctx.progress(said)
    if status.done or status.failed:
        return status
    elapsed = max(0.0, (ctx.now - since).total_seconds())
    if elapsed >= timeout:
        # The next attempt (the retry policy's) waits a whole window again.
        ctx.journal({"waiting_since": None})
        return status
    raise StillWaiting(status.message, elapsed=elapsed)


def repoint_webhooks(ctx: StepContext) -> dict[str, Any]:
    done = []
    with nullcontext(ctx.http) if ctx.http is not None else shared_client() as client:
        for hook in ctx.service.webhooks:
            try:
                headers, _ = probe_headers(hook)
            except MissingSecret as exc:
                raise PermanentStepError(f"webhook {hook.name}: {exc}") from None
            try:
                resp = client.request(hook.method, hook.url, headers=headers,
                                      json=hook.json_body, timeout=hook.timeout_seconds)
            except httpx.HTTPError as exc:
                raise TemporaryStepError(f"webhook {hook.name}: {type(exc).__name__}") from None
            if resp.status_code >= 500:
                raise TemporaryStepError(f"webhook {hook.name}: HTTP {resp.status_code}")
            if resp.status_code not in hook.expect_status:
                raise PermanentStepError(f"webhook {hook.name}: HTTP {resp.status_code}")
            done.append(hook.name)
    return {"webhooks": done}


def set_health_check_path(ctx: StepContext) -> dict[str, Any]:
    """Runbook Step 5.2: point the target group's health check at the restored version's
    path (pinned in the plan). The path found first is journaled before the write as the
    step's inverse, and a retry keeps that first reading (by then the path may already be
    the new one). Already that path: nothing is written. It runs after ``wait_rollout``
    and writes only while the pinned revision runs (``_still_pinned``, checked first so the
    read the write is decided on comes right before the write)."""
    from bot.integrations.load_balancer import PATH_PROTOCOLS, TargetGroups

    params = ctx.step.params
    arn, path = str(params["target_group_arn"]), str(params["health_check_path"])
    lb = ctx.service.load_balancer  # connection details only; the plan pinned the rest
    region = str(params["region"])  # the planner pins it (``region_name``)
    groups = TargetGroups(region=region, endpoint_url=lb.endpoint_url if lb else None,
                          timeout=lb.timeout_seconds if lb else 10.0)
    _still_pinned(ctx)  # a platform read that may take a while: before, not between
    try:
        before = groups.health_check(arn)
        if before.protocol not in PATH_PROTOCOLS:
            raise PermanentStepError(
                f"target group {before.target_group} checks health over "
                f"{before.protocol or 'no protocol'}: only an HTTP/HTTPS health check has a "
                "path; nothing was changed")
        if "previous_path" not in ctx.step.result:
            ctx.journal({"previous_path": before.path,
                         "inverse": _health_check_inverse(arn, region, before.path)})
        previous = ctx.step.result.get("previous_path", before.path)
        if before.path == path:
            return {"changed": False, "path": path, "previous_path": previous,
                    "target_group": before.target_group,
                    "message": f"health check of {before.target_group} already {path}"}
        after = groups.set_health_check_path(arn, path)
    except LoadBalancerError as exc:
        error = TemporaryStepError if exc.transient else PermanentStepError
        raise error(f"load balancer: {exc}") from None
    if after.path != path:
        raise PermanentStepError(f"target group {after.target_group} reports health-check "
                                 f"path {after.path!r} after setting {path!r}")
    return {"changed": True, "path": path, "previous_path": previous,
            "target_group": after.target_group,
            "message": f"health check of {after.target_group}: {previous} → {path}"}


def _still_pinned(ctx: StepContext) -> None:
    """Right before the target group is written: the pinned revision still runs. The step
    follows ``wait_rollout``'s confirmation, but a resumed rollback may reach it long
    after, and a health check pointed at a version that is not running takes the running
    one out of the load balancer."""
    pinned = ctx.rollback.target_revision
    check = ctx.platform.confirm_running(ctx.rollback.target, pinned)
    if not check.matches:
        raise PermanentStepError(f"the pinned {pinned.label()} is not what runs: "
                                 f"{check.running}" + (f" ({check.detail})" if check.detail
                                                       else "")
                                 + "; the load balancer was not changed")


def _health_check_inverse(arn: str, region: str, path: str | None) -> dict[str, Any]:
    """What puts the health check back, for the journal and for a human: the rollback
    never undoes it by itself (like the application rollback it belongs to, see
    ``bot.domain.compensation``). Each value is shell-quoted: a path such as
    ``/health?a=1&b=2`` pasted unquoted would background the command at ``&``."""
    command = shlex.join(["aws", "elbv2", "modify-target-group", "--target-group-arn", arn,
                          "--health-check-path", path, "--region", region]) if path else None
    return {"action": "ModifyTargetGroup", "target_group_arn": arn, "health_check_path": path,
            "command": command}


def _platform_timeout(ctx: StepContext, wait: Literal["rollout", "stop"]) -> float:
    """The ``rollout`` or ``stop`` wait for this rollback's platform, as its spec derives it
    from the service's block; the defaults when the block is gone from the configuration
    since the plan was made (the plan still runs, on the pinned target)."""
    spec = ctx.service.platform_specs.get(ctx.rollback.platform)
    block = ctx.service.platform_config(ctx.rollback.platform)
    if spec is None or block is None:
        return 600.0 if wait == "rollout" else 300.0
    return float(spec.rollout_timeout(block) if wait == "rollout" else spec.stop_timeout(block))


def _require(ctx: StepContext, capability: Capability) -> None:
    """Refuse up front what the platform's spec says it cannot do (no round trip)."""
    spec = ctx.service.platform_specs.get(ctx.rollback.platform)
    if spec is not None:
        spec.require(capability)


def _not_supported(exc: Unsupported) -> str:
    return f"not supported on {exc.platform}: {exc}"


def _throttled(progress: Callable[[str], None]) -> Callable[[str], None]:
    """Thread updates only when the message changes (a watch can fire many times)."""
    last: list[str] = []

    def emit(message: str) -> None:
        if not last or last[-1] != message:
            last.append(message)
            progress(message)

    return emit


HANDLERS: dict[str, StepHandler] = {
    "snapshot_config": snapshot_config,
    "restore_config": restore_config,
    "scale_down": scale_down,
    "scale_up": scale_up,
    "backup_db": backup_db,
    "restore_db": restore_db,
    "verify_db": verify_db,
    "app_rollback": app_rollback,
    "wait_rollout": wait_rollout,
    "repoint_webhooks": repoint_webhooks,
    "set_health_check_path": set_health_check_path,
}
