"""Fly's GraphQL API (``POST {api.fly.io}/graphql``) for what the Machines API does not keep:
the app's releases (`fly releases`), creating and finishing a release for a redeploy, and the
names and digests of its secrets.
"""

# The queries follow superfly/fly-go: resource_releases.go GetAppReleasesMachines
# (``releasesUnprocessed(first:)``; of its fields only those we read: version, status,
# description, imageRef, user, createdAt; we add ``configDefinition``, the release's fly.toml
# as JSON, from the same schema type ReleaseUnprocessed), and the CreateRelease/UpdateRelease
# mutations (genqlient.go) with the CreateReleaseInput/UpdateReleaseInput fields of schema.graphql.
# GraphQL answers HTTP 200 with an ``errors`` list for most failures: NOT_FOUND
# (``extensions.code``) becomes TargetNotFound, the rest PermanentPlatformError, since a
# query that failed validation or a refused mutation does not get better by retrying. HTTP
# errors map as the Machines API's do (401 permanent, 429/5xx transient).

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx

from platforms._fly_client import send
from platforms.base import PermanentPlatformError, TargetNotFound, TransientPlatformError

RELEASES_QUERY = """
query ($appName: String!, $limit: Int!) {
  app(name: $appName) {
    id
    releases: releasesUnprocessed(first: $limit) {
      nodes {
        id version description status imageRef
        user { id email name }
        createdAt configDefinition
      }
    }
  }
}
"""

SECRETS_QUERY = """
query ($appName: String!) {
  app(name: $appName) { secrets { name digest createdAt } }
}
"""

CREATE_RELEASE = """
mutation CreateRelease ($input: CreateReleaseInput!) {
  createRelease(input: $input) { release { id version } }
}
"""

UPDATE_RELEASE = """
mutation UpdateRelease ($input: UpdateReleaseInput!) {
  updateRelease(input: $input) { release { id } }
}
"""


@dataclass(frozen=True)
class FlyRelease:
    """One release as `fly releases` shows it."""

    id: str
    version: int
    status: str
    description: str
    image: str
    user: str
    created: datetime | None
    definition: dict[str, Any] | None

    @property
    def succeeded(self) -> bool:
        """Only a ``complete`` release ran to the end of its deploy (flyctl
        machines_deploymachinesapp.go sets complete, failed or interrupted)."""
        return self.status == "complete"


@dataclass(frozen=True)
class FlySecret:
    name: str
    digest: str
    created: datetime | None


def _time(value: Any) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None


class FlyGraphQL:
    """Thin client for one GraphQL endpoint; every failure is a PlatformError."""

    def __init__(self, client: httpx.Client) -> None:
        self.client = client

    def run(self, query: str, variables: dict[str, Any], *, what: str) -> dict[str, Any]:
        response = send(self.client, "POST", "/graphql", what=what, service="Fly GraphQL API",
                        json={"query": query, "variables": variables})
        try:
            document = response.json()
        except ValueError as exc:
            raise TransientPlatformError(f"{what}: malformed JSON from the Fly API") from exc
        errors = document.get("errors") if isinstance(document, dict) else None
        if errors:
            messages = "; ".join(str(e.get("message")) for e in errors if isinstance(e, dict))
            codes = {str((e.get("extensions") or {}).get("code")) for e in errors
                     if isinstance(e, dict)}
            if "NOT_FOUND" in codes:
                raise TargetNotFound(f"{what}: {messages}")
            raise PermanentPlatformError(f"{what}: {messages}")
        data = document.get("data") if isinstance(document, dict) else None
        if not isinstance(data, dict):
            raise TransientPlatformError(f"{what}: no data in the Fly GraphQL answer")
        return data

    def releases(self, app: str, *, limit: int = 50) -> tuple[str, list[FlyRelease]]:
        """(app id, releases newest first by version)."""
        data = self.run(RELEASES_QUERY, {"appName": app, "limit": limit},
                        what=f"list releases of app {app}")
        node = data.get("app")
        if not isinstance(node, dict):
            raise TargetNotFound(f"list releases of app {app}: app not found")
        releases = []
        for item in (node.get("releases") or {}).get("nodes") or []:
            if not isinstance(item, dict) or item.get("version") is None:
                continue
            definition = item.get("configDefinition")
            releases.append(FlyRelease(
                id=str(item.get("id") or ""), version=int(item["version"]),
                status=str(item.get("status") or ""),
                description=str(item.get("description") or ""),
                image=str(item.get("imageRef") or ""),
                user=str((item.get("user") or {}).get("email") or ""),
                created=_time(item.get("createdAt")),
                definition=definition if isinstance(definition, dict) else None))
        releases.sort(key=lambda r: r.version, reverse=True)
        return str(node.get("id") or ""), releases

    def secrets(self, app: str) -> list[FlySecret]:
        data = self.run(SECRETS_QUERY, {"appName": app}, what=f"list secrets of app {app}")
        node = data.get("app") or {}
        return [FlySecret(str(s.get("name")), str(s.get("digest")), _time(s.get("createdAt")))
                for s in node.get("secrets") or [] if isinstance(s, dict)]

    def create_release(self, *, app_id: str, image: str, definition: dict[str, Any],
                       what: str) -> tuple[str, int]:
        """A new release record (status pending); returns (id, version)."""
        data = self.run(CREATE_RELEASE, {"input": {
            "appId": app_id, "image": image, "definition": definition,
            "platformVersion": "machines", "strategy": "ROLLING"}}, what=what)
        release = (data.get("createRelease") or {}).get("release") or {}
        if not release.get("id") or release.get("version") is None:
            raise TransientPlatformError(f"{what}: createRelease returned no release")
        return str(release["id"]), int(release["version"])

    def update_release(self, release_id: str, status: str, *, error: str | None = None,
                       what: str) -> None:
        metadata: dict[str, Any] = {"post_deployment_info": {"flyctl_version": "rollback-bot"}}
        if error:
            metadata["post_deployment_info"]["error"] = error
        self.run(UPDATE_RELEASE, {"input": {"releaseId": release_id, "status": status,
                                            "metadata": metadata}}, what=what)
