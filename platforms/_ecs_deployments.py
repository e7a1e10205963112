"""ECS adapter helper: which task definitions ran on a service, from ECS's service deployments
(ListServiceDeployments, DescribeServiceDeployments, DescribeServiceRevisions), so history can
tell "registered but never deployed" from "deployed and replaced".
"""

# What ECS keeps (botocore data/ecs/2014-11-13/service-2.json; developer guide
# view-service-deployment.html): every CreateService/UpdateService that deploys makes a service
# revision (its ``taskDefinition``) and a service deployment (``targetServiceRevisionArn``;
# ``sourceServiceRevisions``, the revisions running when it started). ListServiceDeployments
# shows "the most recent 90-day history" of a service, ``maxResults`` up to 100 per page, no
# botocore paginator (paginators-1.json has none), order undocumented; the describe calls take
# at most 20 ARNs. So:
#   * a task definition is ``ran=True`` when a listed deployment targeting it completed
#     (status SUCCESSFUL), or it was a source of the oldest listed one (running when the
#     window opens). A deployment that failed (the circuit breaker stopped or rolled it back,
#     ROLLBACK_*), was replaced before it completed (STOPPED) or is still under way proves
#     nothing good about its revision: "previous" must not return to a version whose only
#     rollout failed, so such a revision counts as never having run (``failed`` names it);
#   * ``ran=False`` only for one registered after ``since``, the moment from which the listing
#     is complete (90 days back; when the listing was cut at ``MAX_PAGES``, the oldest listed
#     deployment, provided the pages came newest first); anything registered earlier may have
#     run in a deployment that aged out, so it stays None;
#   * the record is not used for False at all (``since`` None) when a service revision could
#     not be described: the task definition of that deployment is unknown;
#   * an account or endpoint without the API (AccessDeniedException without the IAM actions
#     ecs:ListServiceDeployments / ecs:DescribeServiceDeployments / ecs:DescribeServiceRevisions,
#     UnknownOperationException or InvalidAction from an endpoint that predates it,
#     UnsupportedFeatureException in a Region without it), any other error on these reads, or a
#     botocore without the operations: no record, every revision ``ran=None``, and history
#     works as before. This is a decoration: it never makes history fail.
# Calls: ListServiceDeployments pages (usually one), one DescribeServiceDeployments, and
# DescribeServiceRevisions in batches of 20.

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

log = logging.getLogger(__name__)

WINDOW = timedelta(days=90)
PAGE = 100  # ListServiceDeploymentsRequest.maxResults: "between 1 and 100"
MAX_PAGES = 5
DESCRIBE_BATCH = 20  # "You can specify a maximum of 20 ARNs."


@dataclass(frozen=True)
class DeploymentRecord:
    """Task definitions deployed to the service as far as ``since`` reaches (None: the record
    cannot prove a revision never ran)."""

    ran: frozenset[str]
    since: datetime | None
    failed: frozenset[str] = frozenset()  # deployed in the window, never completed

    def ran_on_service(self, arn: str, registered: datetime | None) -> bool | None:
        if arn in self.ran:
            return True
        if self.never_completed(arn):  # its deployment in the window failed: whatever its age
            return False
        if self.since is not None and registered is not None and registered >= self.since:
            return False
        return None

    def never_completed(self, arn: str) -> bool:
        """Deployed within the window, but no deployment of it completed."""
        return arn in self.failed and arn not in self.ran


def deployment_record(ecs: Any, cluster: str, service: str, *, now: datetime,
                      page: int = PAGE, max_pages: int = MAX_PAGES) -> DeploymentRecord | None:
    """What ECS's service deployments say ran on ``cluster/service`` (reading at most
    ``max_pages`` pages of ``page``); None when the API is unavailable (module comment)."""
    if not hasattr(ecs, "list_service_deployments"):  # a botocore older than the API
        return None
    try:
        return _read(ecs, cluster, service, now=now, page=page, max_pages=max_pages)
    except (ClientError, BotoCoreError) as exc:
        code = (exc.response.get("Error", {}).get("Code") if isinstance(exc, ClientError)
                else type(exc).__name__)
        log.info("ECS service deployments unavailable for %s/%s (%s): revisions that never "
                 "ran cannot be told apart", cluster, service, code)
        return None


def _read(ecs: Any, cluster: str, service: str, *, now: datetime, page: int,
          max_pages: int) -> DeploymentRecord:
    briefs: list[Mapping[str, Any]] = []
    token: str | None = None
    for _ in range(max_pages):
        answer = ecs.list_service_deployments(cluster=cluster, service=service, maxResults=page,
                                              **({"nextToken": token} if token else {}))
        briefs += answer.get("serviceDeployments") or []
        token = answer.get("nextToken")
        if not token:
            break
    since: datetime | None = _aware(now) - WINDOW
    created = [_aware(b["createdAt"]) for b in briefs if isinstance(b.get("createdAt"), datetime)]
    if token:  # cut short: complete only back to the oldest listed, if they came newest first
        newest_first = len(created) == len(briefs) and all(
            a >= b for a, b in zip(created, created[1:], strict=False))
        since = min(created) if newest_first and created else None
    completed = {str(b["targetServiceRevisionArn"]) for b in briefs
                 if b.get("targetServiceRevisionArn") and b.get("status") == "SUCCESSFUL"}
    attempted = {str(b["targetServiceRevisionArn"]) for b in briefs
                 if b.get("targetServiceRevisionArn")} - completed
    if any(not b.get("targetServiceRevisionArn") for b in briefs):
        since = None  # a deployment without a target: its task definition is unknown
    oldest = _oldest(briefs)
    if oldest is not None:
        described = ecs.describe_service_deployments(serviceDeploymentArns=[oldest])
        for dep in described.get("serviceDeployments") or []:
            completed |= {str(s["arn"]) for s in dep.get("sourceServiceRevisions") or []
                          if s.get("arn")}
    task_definition: dict[str, str] = {}
    ordered = sorted(completed | attempted)
    for batch in (ordered[i:i + DESCRIBE_BATCH] for i in range(0, len(ordered), DESCRIBE_BATCH)):
        answer = ecs.describe_service_revisions(serviceRevisionArns=batch)
        task_definition |= {str(r["serviceRevisionArn"]): str(r["taskDefinition"])
                            for r in answer.get("serviceRevisions") or []
                            if r.get("taskDefinition") and r.get("serviceRevisionArn")}
        if answer.get("failures"):
            since = None  # a deployment whose task definition we cannot know
    ran = {task_definition[a] for a in completed if a in task_definition}
    failed = {task_definition[a] for a in attempted if a in task_definition} - ran
    return DeploymentRecord(frozenset(ran), since, frozenset(failed))


def _oldest(briefs: Sequence[Mapping[str, Any]]) -> str | None:
    dated = [b for b in briefs if isinstance(b.get("createdAt"), datetime)
             and b.get("serviceDeploymentArn")]
    if not dated:
        return None
    return str(min(dated, key=lambda b: _aware(b["createdAt"]))["serviceDeploymentArn"])


def _aware(at: datetime) -> datetime:
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)
