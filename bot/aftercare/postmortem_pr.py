"""The post-mortem as a pull request in the service's repository (``postmortem.github``).

For a rollback that gets a post-mortem (P0/P1), ``create`` schedules one ``postmortem_pr``
job. The job renders the skeleton (``bot.aftercare.postmortem``), files it at
``docs/post-mortems/YYYY-MM-DD-<service>-rb-<n>.md`` on the branch
``rollback-bot/postmortem-<installation>-<service>-rb-<n>``, opens a pull request into the
base branch (``bot.integrations.github``) and posts the link in the rollback's thread.
Exactly once: the job is keyed, the branch is fixed per rollback, every GitHub call
recognises what an earlier, crashed attempt left (branch, file, pull request), and the
thread line is an outbox post with its own key. A transient failure is retried with the
scheduler's backoff; a permanent one (401 bad token, 403, 404, a missing token variable) or
the last retry is audited and said in the thread once. Like every decoration, it never
holds a transition.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import httpx

from bot.aftercare import postmortem
from bot.domain.config import RollbackConfig, secret
from bot.domain.messages import PostmortemPullRequest, PostmortemPullRequestFailed
from bot.domain.models import Rollback
from bot.domain.ports import NO_CRASH_POINTS, Clock, CrashPoints, Notice
from bot.domain.postmortem_config import GithubTarget
from bot.integrations.errors import GithubError
from bot.integrations.github import Document, GithubClient
from bot.persistence.aftercare_store import AftercareStore
from bot.persistence.jobs import Job, JobStore
from bot.persistence.outbox import Outbox
from bot.persistence.store import Store

log = logging.getLogger(__name__)

PR_JOB = "postmortem_pr"
FOLDER = "docs/post-mortems"  # the runbook's place for post-mortems
# Runs of the job before a transient failure counts as final (the scheduler backs off
# 2 s, 4 s, ... between runs and parks a job after 8): the last run gives up itself and
# says so in the thread instead of going quiet.
PR_ATTEMPTS = 8


def path(rb: Rollback) -> str:
    """``docs/post-mortems/2026-11-30-hotel-voice-bot-rb-12.md``: the runbook's name; the
    slug keeps only ``a-z0-9-``, so nothing in a service name can bend the path."""
    return f"{FOLDER}/{postmortem.filename(rb)}"


def branch(rb: Rollback, *, installation: str) -> str:
    """One branch per rollback: a retry finds the one an earlier attempt made. The database's
    installation id is in it because rollback numbers restart in every database: a staging
    bot's RB-3 filing into the same repository must not take production's pull request."""
    return f"rollback-bot/postmortem-{installation}-{postmortem.slug(rb)}"


class PostmortemPullRequests:
    def __init__(self, *, config: RollbackConfig, store: Store, aftercare_store: AftercareStore,
                 jobs: JobStore, outbox: Outbox, clock: Clock,
                 crash_points: CrashPoints = NO_CRASH_POINTS,
                 http: httpx.Client | None = None,
                 transport: httpx.BaseTransport | None = None) -> None:
        self.config = config
        self.store = store
        self.aftercare_store = aftercare_store
        self.jobs = jobs
        self.outbox = outbox
        self.clock = clock
        self.crash_points = crash_points
        self.http = http  # the process's (bot.integrations.http_client); else one per PR
        self.transport = transport  # tests only: how httpx reaches GitHub

    def job_handlers(self) -> dict[str, Callable[[Job], None]]:
        return {PR_JOB: self.run_job}

    def target(self, rb: Rollback) -> GithubTarget | None:
        svc = self.config.service(rb.service)
        return svc.postmortem.github if svc is not None and svc.postmortem else None

    def create(self, rb: Rollback) -> None:
        """Idempotent: the rollback's pull request job exists when its service files there."""
        if self.target(rb) is None:
            return
        self.jobs.schedule(kind=PR_JOB, rollback_id=rb.id, due_at=self.clock(),
                           payload={}, dedupe_key=f"{PR_JOB}:{rb.id}")

    def run_job(self, job: Job) -> None:
        assert job.rollback_id is not None
        rb = self.store.get(job.rollback_id)
        github = self.target(rb)
        if github is None:  # the block was removed from the config since
            return
        token = secret(github.token_env)
        if not token:
            self._give_up(rb, github, f"the environment variable {github.token_env} that "
                          "should hold the token is not set")
            return
        doc = self._document(rb)
        key = f"{PR_JOB}:{rb.id}"
        try:
            with GithubClient(api_url=github.api_url, repository=github.repository,
                              token=token, http=self.http,
                              transport=self.transport) as client:
                pull = client.publish(doc, base=github.base_branch, crash_point=lambda stage:
                                      self.crash_points.publishing(key, stage))
        except GithubError as exc:
            if exc.transient and job.attempts + 1 < PR_ATTEMPTS:
                log.warning("post-mortem pull request for %s: attempt %d failed, retrying: %s",
                            rb.ref, job.attempts + 1, exc)
                raise  # the scheduler runs the job again with its backoff
            self._give_up(rb, github, str(exc) if not exc.transient else
                          f"gave up after {job.attempts + 1} attempts: {exc}", status=exc.status)
            return
        # Audited first: whoever sees the thread line finds the record of it.
        self.store.audit(rb.id, actor="bot", event="postmortem_pr_opened", detail={
            "repository": github.repository, "path": doc.path, "branch": doc.branch,
            "number": pull.number, "url": pull.url, "reused": pull.reused})
        self.outbox.notice(rb, Notice(key, PostmortemPullRequest(
            rb.ref, github.repository, doc.path, pull.url)))

    def _document(self, rb: Rollback) -> Document:
        text = postmortem.render(rb, events=self.store.audit_events(rb.id),
                                 steps=self.store.steps(rb.id),
                                 facts=self.aftercare_store.facts(rb.id),
                                 monitors=self.aftercare_store.monitors(rb.id))
        installation = self.aftercare_store.installation_id()
        identity = postmortem.identity(rb, installation=installation)
        title = f"Post-mortem: {rb.service} rollback {rb.ref} ({rb.severity})"
        body = (f"The post-mortem skeleton of {rb.ref}, generated by rollback-bot from the "
                "rollback's record (facts, timeline, impact, data loss). Fill in the TODO "
                "sections, then merge.")
        return Document(path=path(rb), content=f"{identity}\n{text}".encode(),
                        branch=branch(rb, installation=installation), title=title, body=body)

    def _give_up(self, rb: Rollback, github: GithubTarget, error: str, *,
                 status: int | None = None) -> None:
        log.warning("post-mortem pull request for %s not opened: %s", rb.ref, error)
        self.store.audit(rb.id, actor="bot", event="postmortem_pr_failed", detail={
            "repository": github.repository, "error": error,
            **({"status": status} if status is not None else {})})
        try:  # a decoration about a decoration: never fails the job
            self.outbox.notice(rb, Notice(f"warn:{PR_JOB}:{rb.id}", PostmortemPullRequestFailed(
                rb.ref, github.repository, error)))
        except Exception:
            log.exception("could not post the pull request warning for %s", rb.ref)
