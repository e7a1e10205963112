"""Runs approved rollbacks durably: claim with a lease, journal each step, resume after a crash.

Any replica may execute. A claim is ``FOR UPDATE SKIP LOCKED`` plus a heartbeated lease;
when a process dies its lease runs out and another (or the restarted one) resumes at the
first unfinished step. A destructive step found ``started`` but not finished is never
re-run: the rollback goes to ``needs_attention`` and a human decides.
"""

from __future__ import annotations

import functools
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from bot.domain.compensation import Compensation, Undo, manual_scale_command, plan_compensation
from bot.domain.config import ExecutorSettings
from bot.domain.lifecycle import Event, State
from bot.domain.models import Rollback, Step
from bot.domain.ports import Chat, Clock, utcnow
from bot.execution import retry
from bot.execution.steps import HANDLERS, StepContext
from bot.observability import metrics
from bot.persistence.store import StaleState, Store
from bot.usecases.catalog import Catalog
from platforms.base import (
    ConfigSnapshot,
    PermanentPlatformError,
    PlatformError,
    TransientPlatformError,
)

log = logging.getLogger(__name__)

Aftercare = Callable[[Rollback], None]  # verification -> monitoring, given a VERIFYING rollback

# A wait between attempts sleeps in slices this long, checking Cancel and the lease between
# them, so pressing Cancel during a long Retry-After stops the rollback within a second.
WAIT_SLICE_SECONDS = 0.5


class StepFailed(Exception):
    pass


class CancelRequested(Exception):
    """Someone pressed Cancel while this rollback was executing: stop before acting."""


class LeaseLost(Exception):
    """Another executor owns this rollback now; touch nothing, it resumes from the journal."""


class FaultPoint:
    """Crash-test hook: ``ROLLBACK_FAULT_HOLD=<step kind>:<before|after>`` makes the process
    announce itself in ``ROLLBACK_FAULT_FILE`` and block inside that step until killed.
    Inert unless both variables are set (the sandbox and production never set them)."""

    def __init__(self) -> None:
        spec = os.environ.get("ROLLBACK_FAULT_HOLD", "")
        self.kind, _, self.when = spec.partition(":")
        self.file = os.environ.get("ROLLBACK_FAULT_FILE")

    def hold(self, kind: str, when: str) -> None:
        if not self.file or kind != self.kind or when != (self.when or "after"):
            return
        Path(self.file).write_text(f"{os.getpid()} {kind} {when}\n")
        threading.Event().wait()  # until SIGKILL


class Executor:
    def __init__(
        self, *, catalog: Catalog, store: Store, chat: Chat, settings: ExecutorSettings,
        aftercare: Aftercare, clock: Clock = utcnow, owner: str | None = None,
        sleep: Callable[[float], None] = time.sleep,
        on_ended: Sequence[Callable[[Rollback], None]] = (),
        wake_event: threading.Event | None = None,
    ) -> None:
        # Called when execution ends badly (failed, needs_attention): every rollback still
        # gets its post-incident review reminder.
        self.on_ended = tuple(on_ended)
        self.catalog = catalog
        self.store = store
        self.chat = chat
        self.clock = clock
        self.settings = settings
        self.aftercare = aftercare
        self.owner = owner or f"{os.uname().nodename}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.sleep = sleep
        self.fault = FaultPoint()
        # Set by an approval (the composition root hands the same event to the service).
        self._wake = wake_event or threading.Event()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._lost: dict[int, threading.Event] = {}  # per claimed rollback, set by heartbeat

    # ------------------------------------------------------------------ loop
    def start(self) -> None:
        for i in range(self.settings.workers):
            t = threading.Thread(target=self._loop, name=f"executor-{i}", daemon=True)
            t.start()
            self._threads.append(t)

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        for t in self._threads:
            t.join(timeout=5)

    def wake(self, _rollback_id: int | None = None) -> None:
        self._wake.set()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                worked = self.run_once()
            except Exception:
                log.exception("executor loop error")
                worked = False
            if not worked:
                self._wake.wait(self.settings.poll_seconds)
                self._wake.clear()

    def run_once(self) -> bool:
        rb = self.store.claim_next(owner=self.owner, lease_seconds=self.settings.lease_seconds)
        if rb is None:
            return False
        stop_beat = threading.Event()
        self._lost[rb.id] = threading.Event()
        beat = threading.Thread(target=self._heartbeat, args=(rb.id, stop_beat), daemon=True)
        beat.start()
        try:
            self.execute(rb)
        except LeaseLost:
            log.warning("lease on RB-%s lost; another executor resumes it", rb.id)
        finally:
            stop_beat.set()
            beat.join(timeout=2)
            self._lost.pop(rb.id, None)
            self.store.release(rb.id, owner=self.owner)
        return True

    def _heartbeat(self, rollback_id: int, stop: threading.Event) -> None:
        while not stop.wait(self.settings.heartbeat_seconds):
            try:
                mine = self.store.heartbeat(rollback_id, owner=self.owner,
                                            lease_seconds=self.settings.lease_seconds)
            except Exception as exc:  # a database blip: keep trying until the lease says no
                log.warning("heartbeat for RB-%s failed: %s", rollback_id, exc)
                continue
            if not mine:
                self._lost[rollback_id].set()
                return

    def _fence(self, rb: Rollback) -> None:
        """Before every platform call and every journal write: is this rollback still ours?
        Renewing the lease is the check, so a stalled executor stops instead of racing."""
        lost = self._lost.get(rb.id)
        if (lost is not None and lost.is_set()) or not self.store.heartbeat(
                rb.id, owner=self.owner, lease_seconds=self.settings.lease_seconds):
            raise LeaseLost()

    # ------------------------------------------------------------------ one rollback
    def execute(self, rb: Rollback) -> None:
        chat = self.chat
        if rb.state == State.APPROVED:
            try:
                rb = self.store.transition(rb.id, Event.START, actor=self.owner,
                                           expected=State.APPROVED)
            except StaleState:
                return
            chat.refresh(rb)
            chat.thread(rb, f":arrow_forward: Executing {rb.ref}: "
                            f"{len(self.store.steps(rb.id))} steps.")
        elif rb.state == State.EXECUTING:
            chat.thread(rb, f":recycle: Resuming {rb.ref} after an interruption "
                            f"(executor {self.owner}).")
        if rb.state == State.EXECUTING:
            steps = self.store.steps(rb.id)
            if all(st.status == "pending" for st in steps):
                try:
                    if not self._still_as_planned(rb, steps):
                        return
                except CancelRequested:  # pressed while the pre-check waited to retry
                    self._cancelled(rb, steps[0])
                    return
            self._mark_known_bad(rb, steps)
            if not self._run_steps(rb):
                return
            self._fence(rb)
            rb = self.store.transition(rb.id, Event.STEPS_DONE, actor=self.owner,
                                       expected=State.EXECUTING)
            chat.refresh(rb)
        if rb.state == State.VERIFYING:
            self.aftercare(rb)

    def _still_as_planned(self, rb: Rollback, steps: list[Step]) -> bool:
        """Before the first mutation: does the platform still run the revision the plan moves
        away from? A hotfix deployed while the request waited would otherwise be rolled back
        unseen, and the wrong revision marked known-bad."""
        if rb.current_revision is None or not any(st.kind == "app_rollback" for st in steps):
            return True
        platform = self.catalog.platform(rb.platform)
        for attempt in range(1, 4):
            self._fence(rb)
            try:
                live = platform.current_revision(rb.target)
                break
            except TransientPlatformError as exc:
                if attempt == 3:
                    return self._refuse_to_start(rb, f"could not read the running revision "
                                                     f"({exc})")
                self._wait(rb, self._bounded(exc, attempt))
            except PlatformError as exc:
                return self._refuse_to_start(rb, f"could not read the running revision ({exc})")
        if live.id == rb.current_revision.id:
            return True
        return self._refuse_to_start(
            rb, f"the running revision changed since the plan was made: it was to move away "
                f"from {rb.current_revision.label()}, but {live.label()} runs now")

    def _refuse_to_start(self, rb: Rollback, why: str) -> bool:
        self._fence(rb)
        self._end(rb, Event.STEP_FAILED, detail={"step": "precheck", "error": why},
                  last_error=f"precheck: {why}",
                  say=f":no_entry: {rb.ref} did not start: {why}. Nothing was changed. "
                      "Request a new rollback to review a plan for what runs now.")
        return False

    def _mark_known_bad(self, rb: Rollback, steps: list[Step]) -> None:
        """Execution moves the application away from the running revision: from now on it
        is known-bad, so no later default rollback (or a resumed one) can pick it again. A
        config- or webhook-only plan does not touch the version and marks nothing."""
        if not any(st.kind == "app_rollback" for st in steps):
            return
        self._fence(rb)
        if self.store.mark_known_bad(rb, actor=self.owner) and rb.current_revision:
            self.chat.thread(
                rb, f":no_entry: {rb.current_revision.label()} is now marked known-bad for "
                    f"`{rb.service}`: no later rollback picks it unless an approver overrides.")

    def _run_steps(self, rb: Rollback) -> bool:
        steps = self.store.steps(rb.id)
        for step in steps:
            if step.status in ("done", "skipped"):
                continue
            if step.status == "failed":  # died between journaling a failure and ending
                self._failed(rb, step, step.error or "failed")
                return False
            if step.status == "started" and step.destructive:
                self._interrupted(rb, step)
                return False
            try:
                self._check_cancel(rb)
                self._run_step(rb, step, total=len(steps))
            except CancelRequested:
                self._cancelled(rb, step)
                return False
            except StepFailed as exc:
                self._failed(rb, step, str(exc))
                return False
        return True

    def _check_cancel(self, rb: Rollback) -> None:
        if self.store.get(rb.id).cancel_requested_by:
            raise CancelRequested()

    def _wait(self, rb: Rollback, seconds: float, *, cancellable: bool = True) -> None:
        """Sleep ``seconds`` before the next attempt, in short slices of the injected sleep;
        a lost lease (and, when ``cancellable``, a Cancel) ends the wait at once."""
        remaining = seconds
        while True:
            lost = self._lost.get(rb.id)
            if lost is not None and lost.is_set():
                raise LeaseLost()
            if cancellable:
                self._check_cancel(rb)
            if remaining <= 0:
                return
            chunk = min(remaining, WAIT_SLICE_SECONDS)
            self.sleep(chunk)
            remaining -= chunk

    def _bounded(self, exc: TransientPlatformError, attempt: int) -> float:
        """The wait before retry ``attempt + 1`` of a call outside the step budget."""
        delay, _capped = retry.bounded_delay(
            exc.retry_after, attempts=attempt, backoff_base=self.settings.backoff_base_seconds,
            cap=retry.max_retry_after(self.settings))
        return delay

    def _run_step(self, rb: Rollback, step: Step, *, total: int) -> None:
        svc = self.catalog.service_config(rb.service)
        platform = self.catalog.platform(rb.platform)
        handler = HANDLERS[step.kind]
        chat = self.chat
        attempt = 0
        while True:
            attempt += 1
            self._fence(rb)
            if attempt > 1:
                self._check_cancel(rb)  # a retry loop is where a stuck rollback waits
            self.store.step_started(rb.id, step.seq)
            fresh = [s for s in self.store.steps(rb.id)]
            current = next(s for s in fresh if s.seq == step.seq)
            known_good = (self.store.known_good_config(rb.service, rb.platform)
                          if step.kind == "restore_config" else None)
            ctx = StepContext(
                rollback=rb, step=current, service=svc, platform=platform, all_steps=fresh,
                journal=functools.partial(self.store.step_progress, rb.id, step.seq),
                progress=lambda line: chat.thread(rb, f"_{line}_"),
                known_good_config=ConfigSnapshot.from_dict(known_good[0]) if known_good else None,
                known_good_recorded_at=known_good[1] if known_good else None,
                now=self.clock(),
            )
            started = time.perf_counter()
            outcome = "error"
            try:
                self.fault.hold(step.kind, "before")
                result = handler(ctx)
                self.fault.hold(step.kind, "after")
                outcome = "ok"
            except TransientPlatformError as exc:
                outcome = "transient"
                # The step row's count survives a re-claim, so the budget cannot restart.
                decision = retry.decide(attempt=attempt, durable_attempts=current.attempts,
                                        retry_after=exc.retry_after, settings=self.settings)
                if isinstance(decision, retry.GiveUp):
                    raise StepFailed(f"{exc} ({decision.reason})") from exc
                self.store.step_finished(rb.id, step.seq, status="pending", error=str(exc))
                capped = (" (the platform asked for longer; waits are capped)"
                          if decision.capped else "")
                chat.thread(rb, f":hourglass: Step {step.seq}/{total} {step.description}: "
                                f"{exc}; retrying in {decision.delay:.0f}s{capped} "
                                f"(attempt {decision.attempts}).")
                self._wait(rb, decision.delay)
                continue
            except PermanentPlatformError as exc:
                raise StepFailed(str(exc)) from exc
            except Exception as exc:  # unknown errors stop the rollback, never loop
                log.exception("step %s of RB-%s crashed", step.kind, rb.id)
                raise StepFailed(f"{type(exc).__name__}: {exc}") from exc
            finally:
                metrics.STEP_SECONDS.labels(step.kind, outcome).observe(
                    time.perf_counter() - started)
            status = "skipped" if "skipped" in result else "done"
            self._fence(rb)
            self.store.step_finished(rb.id, step.seq, status=status, result=result)
            note = result.get("message") or result.get("skipped") or ""
            chat.thread(rb, f":white_check_mark: Step {step.seq}/{total} {step.description}"
                            + (f": {note}" if note else ""))
            chat.refresh(rb)
            return

    def _failed(self, rb: Rollback, step: Step, error: str) -> None:
        self._fence(rb)
        self.store.step_finished(rb.id, step.seq, status="failed", error=error)
        comp = plan_compensation(self.store.steps(rb.id))
        if comp.undo == Undo.HUMAN:
            self._hand_over(rb, f"{rb.ref} failed at step {step.seq} ({step.description}): "
                                f"{error}", comp, step=step.kind)
            return
        undone = self._compensate(rb, comp, why=f"step {step.seq} failed")
        if undone is None:
            return  # compensation itself failed: handed over to a human
        self._end(rb, Event.STEP_FAILED,
                  detail={"step": step.kind, "error": error, "compensation": comp.undo.value},
                  last_error=f"{step.kind}: {error}",
                  say=f":x: {rb.ref} failed at step {step.seq} ({step.description}): {error}\n"
                      + undone + "Next: check the platform state, then request a new "
                      "rollback or fix forward. Completed steps are listed above.")

    def _cancelled(self, rb: Rollback, next_step: Step) -> None:
        self._fence(rb)
        by = self.store.get(rb.id).cancel_requested_by or "someone"
        comp = plan_compensation(self.store.steps(rb.id))
        if comp.undo == Undo.HUMAN:
            self._hand_over(rb, f"<@{by}> cancelled {rb.ref} before step {next_step.seq} "
                                f"({next_step.description})", comp, step=next_step.kind)
            return
        undone = self._compensate(rb, comp, why="the rollback was cancelled")
        if undone is None:
            return
        self._end(rb, Event.CANCEL, actor=by, mention=False,
                  detail={"before_step": next_step.kind, "compensation": comp.undo.value},
                  say=f":heavy_multiplication_x: {rb.ref} cancelled by <@{by}> before step "
                      f"{next_step.seq} ({next_step.description}). " + undone
                      + "Steps already done stay done; the revision it moved away from stays "
                      "marked known-bad.")

    def _compensate(self, rb: Rollback, comp: Compensation, *, why: str) -> str | None:
        """Run the inverse (journaled, idempotent); the sentence saying what was undone, or
        None after handing the rollback to a human because the inverse failed too."""
        if comp.undo != Undo.RESTORE_REPLICAS:
            return ""
        assert comp.replicas is not None and comp.scale_down_seq is not None
        platform = self.catalog.platform(rb.platform)
        attempts = max(1, self.settings.max_transient_retries)
        for attempt in range(1, attempts + 1):
            self._fence(rb)
            try:
                platform.scale(rb.target, comp.replicas)
                break
            except TransientPlatformError as exc:
                if attempt == attempts:
                    self._compensation_failed(rb, comp, str(exc))
                    return None
                # Compensation is what a Cancel asks for: only a lost lease stops this wait.
                self._wait(rb, self._bounded(exc, attempt), cancellable=False)
            except PlatformError as exc:
                self._compensation_failed(rb, comp, str(exc))
                return None
            except Exception as exc:  # any failure here goes to a human
                self._compensation_failed(rb, comp, f"{type(exc).__name__}: {exc}")
                return None
        self._fence(rb)
        self.store.step_progress(rb.id, comp.scale_down_seq, {"restored_to": comp.replicas,
                                                              "restored_by": self.owner})
        self.store.audit(rb.id, actor=self.owner, event="compensated",
                         detail={"undo": comp.undo.value, "replicas": comp.replicas,
                                 "why": why})
        line = (f":leftwards_arrow_with_hook: Compensation ({why}): scaled "
                f"{rb.target.describe()} back to {comp.replicas} replicas, the count recorded "
                "before the scale-down.")
        self.chat.thread(rb, line)
        return line.removeprefix(":leftwards_arrow_with_hook: ") + "\n"

    def _compensation_failed(self, rb: Rollback, comp: Compensation, error: str) -> None:
        self._hand_over(rb, f"{rb.ref} stopped and could not scale the service back up "
                            f"({error})", comp, step="compensation")

    def _hand_over(self, rb: Rollback, what: str, comp: Compensation, *, step: str,
                   event: Event = Event.HAND_OVER, database: list[str] | None = None,
                   checks: list[str] | None = None) -> None:
        """Stop loudly: needs_attention with where things stand and exactly what to run.
        ``database`` and ``checks`` replace the generic database advice (an interrupted
        restore)."""
        self._fence(rb)
        replicas = comp.replicas if comp.replicas is not None else "the recorded number of"
        state = [
            f"• Service: left at 0 replicas (it had {replicas} replicas before the "
            "scale-down); nothing starts it again until a person decides."
            if comp.replicas is not None else "",
            *(database or []),
        ]
        steps = [
            *(checks if checks else
              ["Check the database: run the service's verify queries and look at the restore "
               "output in the step list above."] if comp.undo == Undo.HUMAN else []),
            f"When it is safe, an approver clicks *Scale back up*, or run "
            f"`{manual_scale_command(rb.target, int(comp.replicas))}`."
            if comp.replicas is not None else "",
            "Close the rollback with *Mark resolved*.",
        ]
        numbered = [f"{n}. {line}" for n, line in enumerate((s for s in steps if s), start=1)]
        lines = [
            "*Where things stand:*" if any(state) else "",
            *state,
            f"Why I did not scale it back: {comp.reason}." if comp.reason else "",
            *numbered,
        ]
        error = f"{what}; the service was left scaled down for a human decision"
        self._end(rb, event, detail={"step": step, "error": what, "replicas": comp.replicas},
                  last_error=error[:1000],
                  say=f":warning: {rb.ref} needs attention: {what}.\n"
                      + "\n".join(line for line in lines if line))

    def _interrupted(self, rb: Rollback, step: Step) -> None:
        self._fence(rb)
        error = (f"the process executing {rb.ref} died inside destructive step "
                 f"{step.seq} ({step.description}); it was not re-run")
        restore = step.kind == "restore_db"
        if restore:
            error += ("; the database restore may be partial" if step.result.get("begun")
                      else "; pg_restore had not been launched")
        database = _interrupted_restore(step) if restore else None
        checks = _database_checks(step) if restore else None
        comp = plan_compensation(self.store.steps(rb.id))
        if comp.replicas is not None:
            self._hand_over(rb, error, comp, step=step.kind, event=Event.INTERRUPTED,
                            database=database, checks=checks)
            return
        numbered = [f"{n}. {line}" for n, line in enumerate(
            [*(checks or ["Check the database and the platform by hand."]),
             "Close the rollback with *Mark resolved*."], start=1)]
        self._end(rb, Event.INTERRUPTED, detail={"step": step.kind}, last_error=error,
                  say=f":warning: {rb.ref} needs attention: {error}.\n"
                      + "\n".join([*(["*Where things stand:*", *database] if database else []),
                                   *numbered]))

    def _end(self, rb: Rollback, event: Event, *, detail: dict[str, Any], say: str,
             last_error: str | None = None, actor: str | None = None,
             mention: bool = True) -> None:
        """Leave ``executing`` for good: the transition (CAS + audit), the message re-rendered,
        the end-of-execution hooks (review reminder), then one line in the thread."""
        rb = self.store.transition(rb.id, event, actor=actor or self.owner,
                                   expected=State.EXECUTING, detail=detail,
                                   updates={"last_error": last_error} if last_error else None)
        chat = self.chat
        chat.refresh(rb)
        self._ended(rb)
        chat.thread(rb, say, mention=(rb.incident_commander or rb.requester) if mention
                    else None)

    def _ended(self, rb: Rollback) -> None:
        for hook in self.on_ended:
            try:
                hook(rb)
            except Exception:  # a reminder problem must not hide the failure message
                log.exception("end-of-execution hook failed for RB-%s", rb.id)


def _database_checks(step: Step) -> list[str]:
    """What a person checks after a restore was cut off (pg_restore names itself to the
    server, so a restore still running is visible in pg_stat_activity)."""
    backup = str(step.params.get("backup_path") or "BACKUP_FILE")
    return [
        "Make sure no restore is still running: on the service's database run `SELECT pid, "
        "state, query_start FROM pg_stat_activity WHERE application_name = 'pg_restore';` "
        "and wait for it to finish (or stop it with `SELECT pg_terminate_backend(pid)`).",
        "Check the database: run the service's verify queries and compare with the backup. "
        "If the restore did not land, run it by hand (`pg_restore --clean --if-exists "
        f"--single-transaction --no-owner -d \"$DSN\" {backup}`) or decide to keep the data "
        "as it is.",
    ]


def _interrupted_restore(step: Step) -> list[str]:
    """Where the database may stand when the executor died inside ``restore_db``."""
    backup = Path(str(step.params.get("backup_path") or "the pinned backup")).name
    if not step.result.get("begun"):
        return [f"• Database: probably untouched — the executor died during the checks "
                f"before pg_restore of `{backup}` was launched, but nothing journaled that it "
                "was not; check it."]
    return [
        f"• Database: the restore of `{backup}` may be partial. pg_restore may have run to "
        "completion or stopped part-way. It runs as one transaction and is killed with the "
        "process that ran it, so a restore stopped part-way is rolled back: the database is "
        "then either as it was before the restore or fully restored. If that executor lost "
        "its lease without dying (a network partition rather than a crash), its pg_restore "
        "may still be running and can still change the database.",
    ]
