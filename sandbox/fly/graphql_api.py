"""Fly's GraphQL API (``POST /graphql``, api.fly.io) as far as releases and secrets go:
``app(name){releasesUnprocessed, currentReleaseUnprocessed, secrets}`` and the
``createRelease``/``updateRelease`` mutations, executed by graphql-core against a subset of
Fly's own schema.
"""

# The types, fields and arguments below are copied by name from superfly/fly-go schema.graphql
# (App, ReleaseUnprocessed, ReleaseUnprocessedConnection, Secret, User, Organization,
# CreateReleaseInput, UpdateReleaseInput and their payloads), so a query that asks for a field
# Fly does not have fails here as it fails there: HTTP 200 with an ``errors`` list (GraphQL
# validation). Queries the clients send: fly-go resource_releases.go GetAppReleasesMachines
# (``releasesUnprocessed(first: $limit)``, what `fly releases` prints, newest first by version
# in flyctl internal/command/apps/releases.go) and the CreateRelease/UpdateRelease mutations
# flyctl's machines deploy ran (internal/command/deploy/machines.go createReleaseInBackend,
# machines_deploymachinesapp.go: status "running" before the machines are touched, then
# "complete", "failed" or "interrupted"). A new release is "pending", as flyctl's in-memory
# test server (internal/inmem/server.go) creates it. An unknown app is a NOT_FOUND error with
# ``data.app`` null, the shape flyctl reports as "Could not find App".

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from graphql import GraphQLError, build_schema, graphql_sync

from .state import App, FlyError, FlyState, Release

SDL = """
scalar JSON
scalar ISO8601DateTime

type Query {
  app(name: String, id: String): App
}

type Mutation {
  createRelease(input: CreateReleaseInput!): CreateReleasePayload
  updateRelease(input: UpdateReleaseInput!): UpdateReleasePayload
}

type Organization {
  id: ID!
  slug: String!
  name: String!
}

type User {
  id: ID!
  email: String!
  name: String
}

type Secret {
  createdAt: ISO8601DateTime!
  digest: String!
  id: ID!
  name: String!
  user: User
}

enum DeploymentStrategy {
  BLUEGREEN
  CANARY
  IMMEDIATE
  ROLLING
  ROLLING_ONE
  SIMPLE
}

type ReleaseUnprocessed {
  configDefinition: JSON
  createdAt: ISO8601DateTime!
  deploymentStrategy: DeploymentStrategy!
  description: String!
  evaluationId: String
  id: ID!
  imageRef: String
  inProgress: Boolean!
  reason: String!
  revertedTo: Int
  stable: Boolean!
  status: String!
  updatedAt: ISO8601DateTime!
  user: User
  version: Int!
}

type PageInfo {
  endCursor: String
  hasNextPage: Boolean!
  hasPreviousPage: Boolean!
  startCursor: String
}

type ReleaseUnprocessedConnection {
  nodes: [ReleaseUnprocessed]
  pageInfo: PageInfo!
  totalCount: Int!
}

type App {
  id: ID!
  name: String!
  organization: Organization!
  status: String!
  platformVersion: String
  currentReleaseUnprocessed: ReleaseUnprocessed
  releasesUnprocessed(after: String, before: String, first: Int, last: Int,
                      status: String): ReleaseUnprocessedConnection!
  secrets: [Secret!]!
}

input CreateReleaseInput {
  appId: ID!
  buildId: ID
  clientMutationId: String
  definition: JSON!
  image: String!
  platformVersion: String!
  strategy: DeploymentStrategy!
}

type CreateReleasePayload {
  app: App!
  clientMutationId: String
  release: ReleaseUnprocessed
}

input UpdateReleaseInput {
  clientMutationId: String
  metadata: JSON
  releaseId: ID!
  status: String
}

type UpdateReleasePayload {
  clientMutationId: String
  release: ReleaseUnprocessed!
}
"""

SCHEMA = build_schema(SDL)
# Release statuses flyctl sets (see the module comment); anything else is refused.
RELEASE_STATUSES = ("pending", "running", "complete", "failed", "interrupted")


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class GraphQLApi:
    """Resolves the schema above over ``FlyState`` (its lock held per request)."""

    def __init__(self, state: FlyState) -> None:
        self.state = state

    def execute(self, body: Any, user_email: str) -> dict[str, Any]:
        """One GraphQL request body -> the response document (always HTTP 200, as Fly)."""
        if not isinstance(body, dict) or not isinstance(body.get("query"), str):
            return {"errors": [{"message": "No query string was present"}]}
        variables = body.get("variables")
        root = {"app": self._app_field, "createRelease": self._create_release(user_email),
                "updateRelease": self._update_release}
        with self.state.cond:
            result = graphql_sync(SCHEMA, body["query"], root_value=root,
                                  variable_values=variables if isinstance(variables, dict)
                                  else None, operation_name=body.get("operationName"))
        document: dict[str, Any] = {"data": result.data}
        if result.errors:
            document["errors"] = [self._error(e) for e in result.errors]
        return document

    @staticmethod
    def _error(error: GraphQLError) -> dict[str, Any]:
        formatted = dict(error.formatted)
        original = error.original_error
        if isinstance(original, FlyError) and original.status == 404:
            formatted["extensions"] = {"code": "NOT_FOUND"}
        return formatted

    # -------------------------------------------------------------------- queries
    def _find(self, name: str | None = None, app_id: str | None = None) -> App:
        for app in self.state.apps.values():
            if (name is not None and app.name == name) or (app_id is not None and
                                                           app.id == app_id):
                return app
        raise FlyError(404, f"Could not find App {name or app_id!r}")

    def _app_field(self, _info: Any, name: str | None = None,
                   id: str | None = None) -> dict[str, Any]:  # noqa: A002 - GraphQL name
        return self._app(self._find(name, id))

    def _app(self, app: App) -> dict[str, Any]:
        def releases(_info: Any, first: int | None = None, last: int | None = None,
                     status: str | None = None, **_cursor: Any) -> dict[str, Any]:
            rows = sorted(app.releases, key=lambda r: r.version, reverse=True)
            if status:
                rows = [r for r in rows if r.status == status]
            total = len(rows)
            if first is not None:
                rows = rows[:max(0, first)]
            elif last is not None:
                rows = rows[-last:] if last > 0 else []
            return {"nodes": [self._release(r) for r in rows], "totalCount": total,
                    "pageInfo": {"hasNextPage": len(rows) < total, "hasPreviousPage": False,
                                 "startCursor": None, "endCursor": None}}

        def current(_info: Any) -> dict[str, Any] | None:
            done = [r for r in app.releases if r.status == "complete"]
            return self._release(max(done, key=lambda r: r.version)) if done else None

        return {"id": app.id, "name": app.name, "status": "deployed",
                "platformVersion": "machines",
                "organization": {"id": app.org, "slug": app.org, "name": app.org},
                "releasesUnprocessed": releases, "currentReleaseUnprocessed": current,
                "secrets": [{"id": s.name, "name": s.name, "digest": s.digest,
                             "createdAt": _iso(s.created_at), "user": None}
                            for s in sorted(app.secrets.values(), key=lambda s: s.name)]}

    @staticmethod
    def _release(r: Release) -> dict[str, Any]:
        return {"id": r.id, "version": r.version, "status": r.status,
                "description": r.description, "reason": r.reason, "imageRef": r.image_ref,
                "stable": r.status == "complete",
                "inProgress": r.status in ("pending", "running"),
                "deploymentStrategy": r.strategy, "evaluationId": None, "revertedTo": None,
                "createdAt": _iso(r.created_at), "updatedAt": _iso(r.updated_at),
                "configDefinition": r.definition,
                "user": {"id": r.user_email, "email": r.user_email, "name": None}}

    # ------------------------------------------------------------------ mutations
    def _create_release(self, user_email: str) -> Any:
        def create(_info: Any, input: dict[str, Any]) -> dict[str, Any]:  # noqa: A002
            app = self._find(app_id=str(input["appId"]))
            if input["platformVersion"] != "machines":
                raise GraphQLError(f"platformVersion {input['platformVersion']!r} is not "
                                   "supported for this app (machines)")
            if not isinstance(input["definition"], dict):
                raise GraphQLError("definition must be an object (the app configuration)")
            release = self.state.add_release(
                app.name, str(input["image"]), status="pending", description="Release",
                user_email=user_email, definition=input["definition"],
                strategy=str(input["strategy"]))
            return {"app": self._app(app), "release": self._release(release),
                    "clientMutationId": input.get("clientMutationId")}
        return create

    def _update_release(self, _info: Any, input: dict[str, Any]) -> dict[str, Any]:  # noqa: A002
        release = self.state.release(str(input["releaseId"]))
        status = input.get("status")
        if status is not None:
            if status not in RELEASE_STATUSES:
                raise GraphQLError(f"invalid release status {status!r}")
            release.status = status
        if input.get("metadata") is not None:
            release.metadata = dict(input["metadata"])
        release.updated_at = time.time()
        return {"release": self._release(release),
                "clientMutationId": input.get("clientMutationId")}
