"""Runs approved rollbacks durably: claim with a lease, journal each step, resume after a crash.

Any replica may execute. A claim is ``FOR UPDATE SKIP LOCKED`` plus a heartbeated lease;
when a process dies its lease runs out and another (or the restarted one) resumes at the
first unfinished step. A destructive step found ``started`` but not finished is never
re-run: the rollback goes to ``needs_attention`` and a human decides.

A step's error decides retry vs. stop by type (``bot.execution.retry``: ``TEMPORARY`` and
``PERMANENT``, the platform's and the step's own alike); the executor's control flow
(``StepFailed``, ``CancelRequested``, ``LeaseLost``, ``HandedOverToHuman``) is in the
execution layer's tree, ``bot.execution.errors``.
"""

from __future__ import annotations

import functools
import itertools
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

from bot.domain.compensation import Compensation, Undo, manual_scale_command, plan_compensation
from bot.domain.config import ExecutorSettings
from bot.domain.lifecycle import Event, State
from bot.domain.messages import (
    CancelledBeforeStep,
    Compensated,
    DidNotStart,
    ExecutionFailed,
    ExecutionResumed,
    ExecutionStarted,
    HandedOver,
    Interrupted,
    InterruptedRestore,
    MarkedKnownBad,
    Message,
    StepDone,
    StepNote,
    StepRetrying,
)
from bot.domain.models import Rollback, Step
from bot.domain.ports import NO_CRASH_POINTS, Chat, Clock, CrashPoints, utcnow
from bot.domain.words import Mention, Words, plain
from bot.execution import retry
from bot.execution.errors import (
    CancelRequested,
    HandedOverToHuman,
    LeaseLost,
    StepFailed,
    StillWaiting,
)
from bot.execution.progress import ImmediateProgress, Progress, announce_writes
from bot.execution.steps import HANDLERS, StepContext
from bot.observability import metrics
from bot.persistence.errors import DatabaseUnavailable, StaleState
from bot.persistence.store import Store
from bot.usecases.catalog import Catalog
from platforms.base import (
    ConfigSnapshot,
    PlatformError,
    TransientPlatformError,
)

log = logging.getLogger(__name__)

Aftercare = Callable[[Rollback], None]  # verification -> monitoring, given a VERIFYING rollback

# A wait between attempts sleeps in slices this long, checking Cancel and the lease between
# them, so pressing Cancel during a long Retry-After stops the rollback within a second.
WAIT_SLICE_SECONDS = 0.5
# A parked rollout is looked at again after an eighth of the time it has waited so far
# (its end is seen at most that late), at least this soon (a quick rollout is seen
# quickly) and at most ``executor.rollout_check_seconds`` later (a thousand slow ones cost
# a hundred reads a second).
FIRST_CHECK_SECONDS = 0.25
CHECK_FRACTION = 1 / 8


class Executor:
    def __init__(
        self, *, catalog: Catalog, store: Store, chat: Chat, settings: ExecutorSettings,
        aftercare: Aftercare, clock: Clock = utcnow, owner: str | None = None,
        sleep: Callable[[float], None] = time.sleep,
        on_ended: Sequence[Callable[[Rollback], None]] = (),
        wake_event: threading.Event | None = None,
        crash_points: CrashPoints = NO_CRASH_POINTS,
        progress: Progress | None = None,
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
        self.crash_points = crash_points  # inert outside crash tests
        # Thread lines and message renders: queued and posted after the platform call in
        # production (bot.usecases.thread_delivery); at once through ``chat`` by default.
        self.progress = progress or ImmediateProgress(chat)
        # Set by an approval (the composition root hands the same event to the service).
        self._wake = wake_event or threading.Event()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._lost: dict[int, threading.Event] = {}  # per claimed rollback, set by heartbeat
        self._next_due = float("inf")  # monotonic time of the soonest check this one parked
        # Claims alternate between "new approvals first" and "due looks first" (see
        # ``Store.claim_next``): each kind gets at least half the workers' turns.
        self._turns = itertools.count()

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
                # A rollout parked here for a check sooner than the poll is looked at then.
                due = self._next_due - time.monotonic()
                self._wake.wait(max(0.0, min(self.settings.poll_seconds, due)))
                self._wake.clear()
                if due <= self.settings.poll_seconds:
                    self._next_due = float("inf")

    def run_once(self, rollback_id: int | None = None) -> bool:
        """Claim and run one rollback (``rollback_id``: that one only); False if none."""
        rb = self.store.claim_next(owner=self.owner, lease_seconds=self.settings.lease_seconds,
                                   rollback_id=rollback_id,
                                   looks_first=next(self._turns) % 2 == 1)
        if rb is None:
            return False
        stop_beat = threading.Event()
        self._lost[rb.id] = threading.Event()
        beat = threading.Thread(target=self._heartbeat, args=(rb.id, stop_beat), daemon=True)
        beat.start()
        waiting: StillWaiting | None = None
        try:
            self.execute(rb, continuing=self._parked(rb))
        except StillWaiting as exc:  # the rollout goes on without us: park, free the worker
            waiting = exc
        except LeaseLost as exc:
            log.warning("lease on RB-%s lost%s; another executor resumes it", rb.id,
                        f" ({exc})" if str(exc) else "")
        finally:
            stop_beat.set()
            beat.join(timeout=2)
            self._lost.pop(rb.id, None)
            # Parking gives the lease up: the last thing done with this rollback here.
            try:
                if waiting is None or not self._park(rb, waiting):
                    self.store.release(rb.id, owner=self.owner)
            except DatabaseUnavailable as exc:  # the lease runs out by itself
                log.warning("could not give up the lease on RB-%s (%s); it runs out by "
                            "itself and the next claim resumes from the journal", rb.id, exc)
        return True

    def _parked(self, rb: Rollback) -> bool:
        """Is this claim the next check of a parked wait (not a new or crashed run)?"""
        return rb.state == State.EXECUTING and any(
            st.status == "waiting" for st in self.store.steps(rb.id))

    def _park(self, rb: Rollback, waiting: StillWaiting) -> bool:
        """Journal the step ``waiting`` and release the rollback until its next check
        (``store.park``, fenced on our lease); False when the lease was lost meanwhile."""
        check_in = min(self.settings.rollout_check_seconds,
                       max(FIRST_CHECK_SECONDS, waiting.elapsed * CHECK_FRACTION))
        if not self.store.park(rb.id, owner=self.owner, check_in=check_in):
            log.warning("lease on RB-%s lost while parking its wait", rb.id)
            return False
        self._next_due = min(self._next_due, time.monotonic() + check_in)
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
        Renewing the lease is the check, so a stalled executor stops instead of racing. A
        renewal that cannot reach the database (its own small pool, so never queued behind
        other work) is no answer: refuse the write rather than make it unfenced."""
        lost = self._lost.get(rb.id)
        if lost is not None and lost.is_set():
            raise LeaseLost()
        try:
            mine = self.store.heartbeat(rb.id, owner=self.owner,
                                        lease_seconds=self.settings.lease_seconds)
        except DatabaseUnavailable as exc:
            raise LeaseLost(f"could not confirm the lease, nothing written: {exc}") from exc
        if not mine:
            raise LeaseLost()

    # ------------------------------------------------------------------ one rollback
    def execute(self, rb: Rollback, *, continuing: bool = False) -> None:
        """``continuing``: the next look at a parked wait, which says nothing new."""
        try:
            rb = self._execute(rb, continuing=continuing)
        except (StillWaiting, LeaseLost):
            # A parked look, or a rollback that is no longer ours: the worker moves on at
            # once and the deliverer posts what is queued (flushing here would hold the
            # worker for Slack's round trips, or its Retry-After).
            raise
        except BaseException:
            self.progress.flush(rb.id)
            raise
        # The lines still queued go out now. Aftercare queues its notices behind them
        # (``Progress.notice``), so a Slack refusal never holds verifying -> monitoring;
        # they go out here too (a process that only executes may exit next), and a refused
        # one is left to the deliverer.
        self.progress.flush(rb.id)
        if rb.state == State.VERIFYING:
            self.aftercare(rb)
            self.progress.flush(rb.id)

    def _execute(self, rb: Rollback, *, continuing: bool) -> Rollback:
        """Start (or resume) and run the steps; the rollback as it stands afterwards. Slack
        is told through ``progress``, which posts after the platform call: between the
        claim and the first write there are only the database and the platform."""
        progress = self.progress
        if rb.state == State.APPROVED:
            try:
                rb = self.store.transition(rb.id, Event.START, actor=self.owner,
                                           expected=State.APPROVED)
            except StaleState:
                return rb
            progress.refresh(rb)
            progress.say(rb, ExecutionStarted(rb.ref, len(self.store.steps(rb.id))),
                         key=f"line:{rb.id}:started")
        elif rb.state == State.EXECUTING and not continuing:
            self._say_last_step_again(rb)
            progress.say(rb, ExecutionResumed(rb.ref, self.owner))
        if rb.state == State.EXECUTING:
            steps = self.store.steps(rb.id)
            if all(st.status == "pending" for st in steps):
                try:
                    if not self._still_as_planned(rb, steps):
                        return rb
                except CancelRequested:  # pressed while the pre-check waited to retry
                    self._cancelled(rb, steps[0])
                    return rb
            if not continuing:  # marked when execution began; a look marks nothing
                self._mark_known_bad(rb, steps)
            if not self._run_steps(rb):
                return rb
            self._fence(rb)
            rb = self.store.transition(rb.id, Event.STEPS_DONE, actor=self.owner,
                                       expected=State.EXECUTING)
            progress.refresh(rb)
        return rb

    def _say_last_step_again(self, rb: Rollback) -> None:
        """Resuming: the previous executor may have died between journaling its last step
        done and queueing that step's line. The line's key makes saying it again a no-op
        when it was queued (or posted) before."""
        steps = self.store.steps(rb.id)
        done = [st for st in steps if st.status in ("done", "skipped")]
        if done:
            last = done[-1]
            note = last.result.get("message") or last.result.get("skipped") or ""
            self.progress.say_again(rb, StepDone(last.seq, len(steps), last.description,
                                                 str(note)), key=_done_key(rb, last))

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
                  last_error=f"precheck: {why}", say=DidNotStart(rb.ref, why))
        return False

    def _mark_known_bad(self, rb: Rollback, steps: list[Step]) -> None:
        """Execution moves the application away from the running revision: from now on it
        is known-bad, so no later default rollback (or a resumed one) can pick it again. A
        config- or webhook-only plan does not touch the version and marks nothing."""
        if not any(st.kind == "app_rollback" for st in steps):
            return
        self._fence(rb)
        if self.store.mark_known_bad(rb, actor=self.owner) and rb.current_revision:
            self.progress.say(rb, MarkedKnownBad(rb.current_revision.label(), rb.service),
                              key=f"line:{rb.id}:known-bad")

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
        progress = self.progress
        # Slack hears about the rollback once the platform was written to (or the step
        # returned): the approval path then never waits on Slack before the platform.
        written = functools.partial(progress.written, rb.id)
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
                rollback=rb, step=current, service=svc,
                platform=announce_writes(platform, written), all_steps=fresh,
                journal=functools.partial(self.store.step_progress, rb.id, step.seq),
                progress=lambda line: progress.say(rb, StepNote(line)),
                known_good_config=ConfigSnapshot.from_dict(known_good[0]) if known_good else None,
                known_good_recorded_at=known_good[1] if known_good else None,
                now=self.clock(),
                record_data_loss=lambda since, until: self.store.record_data_loss(
                    rb.id, since=since, until=until),
                http=self.catalog.http,
                release_while_waiting=self.settings.release_while_waiting,
            )
            started = time.perf_counter()
            outcome = "error"
            try:
                self.crash_points.step(step.kind, "before")
                result = handler(ctx)
                written()
                self.crash_points.step(step.kind, "after")
                outcome = "ok"
            except retry.TEMPORARY as exc:  # a platform's transient error or a step's own
                outcome = "transient"
                # The step row's count survives a re-claim, so the budget cannot restart.
                decision = retry.decide(attempt=attempt, durable_attempts=current.attempts,
                                        retry_after=exc.retry_after, settings=self.settings)
                if isinstance(decision, retry.GiveUp):
                    raise StepFailed(f"{exc} ({decision.reason})") from exc
                self.store.step_finished(rb.id, step.seq, status="pending", error=str(exc))
                progress.say(rb, StepRetrying(step.seq, total, step.description, str(exc),
                                              decision.delay, decision.capped,
                                              decision.attempts))
                self._wait(rb, decision.delay)
                continue
            except retry.PERMANENT as exc:
                raise StepFailed(str(exc)) from exc
            except StillWaiting:  # not over and not failed: run_once parks the rollback
                outcome = "waiting"
                raise
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
            progress.say(rb, StepDone(step.seq, total, step.description, str(note)),
                         key=_done_key(rb, step))
            progress.refresh(rb)
            return

    def _failed(self, rb: Rollback, step: Step, error: str) -> None:
        self._fence(rb)
        self.store.step_finished(rb.id, step.seq, status="failed", error=error)
        comp = plan_compensation(self.store.steps(rb.id))
        if comp.undo == Undo.HUMAN:
            self._hand_over(rb, (f"{rb.ref} failed at step {step.seq} ({step.description}): "
                                 f"{error}",), comp, step=step.kind)
            return
        try:
            undone = self._compensate(rb, comp, why=f"step {step.seq} failed")
        except HandedOverToHuman:
            return
        self._end(rb, Event.STEP_FAILED,
                  detail={"step": step.kind, "error": error, "compensation": comp.undo.value},
                  last_error=f"{step.kind}: {error}",
                  say=ExecutionFailed(rb.ref, step.seq, step.description, error, undone))

    def _cancelled(self, rb: Rollback, next_step: Step) -> None:
        self._fence(rb)
        if next_step.status == "waiting":
            # A parked wait the Cancel cut short ends here: left ``waiting``, the message of
            # a cancelled rollback would show it still waiting. Nothing confirmed the rollout.
            self.store.step_finished(rb.id, next_step.seq, status="skipped", result={
                "skipped": "cancelled while waiting; the rollout was not confirmed"})
        requested_by = self.store.get(rb.id).cancel_requested_by
        by = requested_by or "someone"
        who: Words = (Mention(requested_by),) if requested_by else ("someone",)
        comp = plan_compensation(self.store.steps(rb.id))
        if comp.undo == Undo.HUMAN:
            self._hand_over(rb, (*who, f" cancelled {rb.ref} before step {next_step.seq} "
                                       f"({next_step.description})"), comp, step=next_step.kind)
            return
        try:
            undone = self._compensate(rb, comp, why="the rollback was cancelled")
        except HandedOverToHuman:
            return
        self._end(rb, Event.CANCEL, actor=by, mention=False,
                  detail={"before_step": next_step.kind, "compensation": comp.undo.value},
                  say=CancelledBeforeStep(rb.ref, who, next_step.seq, next_step.description,
                                          undone))

    def _compensate(self, rb: Rollback, comp: Compensation, *, why: str) -> Compensated | None:
        """Run the inverse (journaled, idempotent); what was undone (None: nothing to undo).
        Raises ``HandedOverToHuman`` once the rollback went to a human because the inverse
        failed too."""
        if comp.undo != Undo.RESTORE_REPLICAS:
            return None
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
                # Compensation is what a Cancel asks for: only a lost lease stops this wait.
                self._wait(rb, self._bounded(exc, attempt), cancellable=False)
            except PlatformError as exc:
                self._compensation_failed(rb, comp, str(exc))
            except Exception as exc:  # any failure here goes to a human
                self._compensation_failed(rb, comp, f"{type(exc).__name__}: {exc}")
        self._fence(rb)
        self.store.step_progress(rb.id, comp.scale_down_seq, {"restored_to": comp.replicas,
                                                              "restored_by": self.owner})
        self.store.audit(rb.id, actor=self.owner, event="compensated",
                         detail={"undo": comp.undo.value, "replicas": comp.replicas,
                                 "why": why})
        done = Compensated(why, rb.target.describe(), comp.replicas)
        self.progress.say(rb, done, key=f"line:{rb.id}:compensated")
        return done

    def _compensation_failed(self, rb: Rollback, comp: Compensation, error: str) -> NoReturn:
        self._hand_over(rb, (f"{rb.ref} stopped and could not scale the service back up "
                             f"({error})",), comp, step="compensation")
        raise HandedOverToHuman()

    def _hand_over(self, rb: Rollback, what: Words, comp: Compensation, *, step: str,
                   event: Event = Event.HAND_OVER,
                   restore: InterruptedRestore | None = None) -> None:
        """Stop loudly: needs_attention with where things stand and exactly what to run.
        ``restore`` (an interrupted restore) replaces the generic database advice."""
        self._fence(rb)
        spec = self.catalog.spec(rb.platform)  # the platform's own scale command
        manual = (manual_scale_command(rb.target, int(comp.replicas), spec)
                  if comp.replicas is not None else None)
        error = f"{plain(what)}; the service was left scaled down for a human decision"
        self._end(rb, event,
                  detail={"step": step, "error": plain(what), "replicas": comp.replicas},
                  last_error=error[:1000],
                  say=HandedOver(rb.ref, what, comp.replicas, manual,
                                 check_database=comp.undo == Undo.HUMAN, reason=comp.reason,
                                 restore=restore))

    def _interrupted(self, rb: Rollback, step: Step) -> None:
        self._fence(rb)
        error = (f"the process executing {rb.ref} died inside destructive step "
                 f"{step.seq} ({step.description}); it was not re-run")
        restore = None
        if step.kind == "restore_db":
            begun = bool(step.result.get("begun"))
            error += ("; the database restore may be partial" if begun
                      else "; pg_restore had not been launched")
            backup = step.params.get("backup_path")
            restore = InterruptedRestore(str(backup) if backup else None, begun)
        comp = plan_compensation(self.store.steps(rb.id))
        if comp.replicas is not None:
            self._hand_over(rb, (error,), comp, step=step.kind, event=Event.INTERRUPTED,
                            restore=restore)
            return
        self._end(rb, Event.INTERRUPTED, detail={"step": step.kind}, last_error=error,
                  say=Interrupted(rb.ref, (error,), restore))

    def _end(self, rb: Rollback, event: Event, *, detail: dict[str, Any], say: Message,
             last_error: str | None = None, actor: str | None = None,
             mention: bool = True) -> None:
        """Leave ``executing`` for good: the transition (CAS + audit), the message re-rendered,
        the end-of-execution hooks (review reminder), then one line in the thread."""
        rb = self.store.transition(rb.id, event, actor=actor or self.owner,
                                   expected=State.EXECUTING, detail=detail,
                                   updates={"last_error": last_error} if last_error else None)
        self.progress.refresh(rb)
        self._ended(rb)
        self.progress.say(rb, say, key=f"line:{rb.id}:end",
                          mention=(rb.incident_commander or rb.requester) if mention else None)

    def _ended(self, rb: Rollback) -> None:
        for hook in self.on_ended:
            try:
                hook(rb)
            except Exception:  # a reminder problem must not hide the failure message
                log.exception("end-of-execution hook failed for RB-%s", rb.id)



def _done_key(rb: Rollback, step: Step) -> str:
    """The outbox key of a step's "done" line: the same for a resumed executor."""
    return f"line:{rb.id}:step:{step.seq}:done"
