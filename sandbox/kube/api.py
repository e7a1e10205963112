"""API-server semantics over the store: verbs, subresources (scale, status, log), dry-run,
watch streams and the metrics.k8s.io view. Transport-free; ``http.py`` feeds it requests.
"""

from __future__ import annotations

import base64
import copy
import json
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from .discovery import Resource
from .objects import selector_to_string
from .openapi import unknown_fields
from .patches import PatchError, apply_patch
from .pods import PodFleet
from .store import ApiError, Obj, Store

log = logging.getLogger(__name__)

# What the API server says for any JSON Patch it cannot apply, a failed ``test`` op included.
JSON_PATCH_REFUSED = "the server rejected our request due to an error in our request"


@dataclass(frozen=True)
class ApiRequest:
    method: str
    resource: Resource
    namespace: str
    name: str = ""
    subresource: str = ""
    query: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    content_type: str = "application/json"

    @property
    def watch(self) -> bool:
        return self.query.get("watch") in ("true", "1")

    @property
    def verb(self) -> str:
        """The RBAC verb this request needs (list and watch are distinct)."""
        if self.method == "GET":
            if self.watch:
                return "watch"
            return "get" if self.name else "list"
        return {"POST": "create", "PUT": "update", "PATCH": "patch",
                "DELETE": "delete" if self.name else "deletecollection"}.get(self.method, "")

    @property
    def dry_run(self) -> bool:
        value = self.query.get("dryRun", "")
        if value not in ("", "All"):
            raise ApiError(400, "BadRequest", f"Invalid dry run value: {value!r}")
        return value == "All"

    def json(self) -> Any:
        try:
            return json.loads(self.body or b"null")
        except ValueError as exc:
            raise ApiError(400, "BadRequest", f"invalid JSON body: {exc}") from exc


@dataclass
class ApiResponse:
    code: int = 200
    body: Any = None
    text: str | None = None
    stream: Iterator[bytes] | None = None


class ApiServer:
    def __init__(self, store: Store, pods: PodFleet) -> None:
        self.store, self.pods = store, pods

    def handle(self, req: ApiRequest) -> ApiResponse:
        res = req.resource
        if res.group == "metrics.k8s.io":
            return self._metrics(req)
        if req.subresource == "scale" and "scale" in res.subresources:
            return self._scale(req)
        if req.subresource == "log" and res.key == "pods":
            return self._log(req)
        if req.subresource not in ("", "status"):
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        verb = req.verb
        if verb == "watch":
            return ApiResponse(stream=self._watch(req))
        if verb == "get":
            return ApiResponse(body=self.store.get(res.key, req.namespace, req.name))
        if verb == "list":
            return ApiResponse(body=self._list(req))
        if verb == "create":
            obj = self._incoming(req)
            self._strict(req, obj, creating=True)
            obj.setdefault("metadata", {})["namespace"] = req.namespace
            created = self.store.create(res.key, obj, dry_run=req.dry_run)
            return ApiResponse(code=201, body=created)
        if verb == "update":
            obj = self._incoming(req)
            if obj.get("metadata", {}).get("name") != req.name:
                raise ApiError(400, "BadRequest", "the name of the object does not match the "
                               "name on the URL")
            self._strict(req, obj, creating=True)
            return ApiResponse(body=self._write(req, obj))
        if verb == "patch":
            # Read, patch and write under the store's lock: the registry's GuaranteedUpdate
            # re-applies the patch to the newest object instead of failing on a concurrent
            # write. A resourceVersion the patch itself sets, or a JSON Patch ``test`` op,
            # is a precondition on that newest object and fails (409 / 422).
            with self.store.lock:
                current = self.store.get(res.key, req.namespace, req.name)
                patched = self._patched(req, current)
                self._strict(req, patched, creating=False)
                return ApiResponse(body=self._write(req, patched))
        if verb == "delete" and res.key == "pods":
            return ApiResponse(body=self._delete_pod(req))
        if verb == "delete":
            gone = self.store.delete(res.key, req.namespace, req.name, dry_run=req.dry_run)
            return ApiResponse(body={"kind": "Status", "apiVersion": "v1", "metadata": {},
                                     "status": "Success",
                                     "details": {"name": req.name, "group": res.group,
                                                 "kind": res.plural,
                                                 "uid": gone["metadata"]["uid"]}})
        raise ApiError(405, "MethodNotAllowed", f"{req.method} is not supported")

    # ------------------------------------------------------------------- helpers
    @staticmethod
    def _patched(req: ApiRequest, current: Obj) -> Obj:
        """``current`` with the request's patch applied, or the API server's error for it.

        A JSON Patch that cannot be applied (a failed ``test`` op, a missing path) is
        answered as staging/src/k8s.io/apiserver/pkg/endpoints/handlers/patch.go
        applyJSPatch does: ``NewGenericServerResponse(422, ...)`` with the json-patch
        library's text dropped, i.e. reason Invalid, the generic message and empty details
        (apimachinery pkg/api/errors/errors.go); one that does not decode is a 400."""
        patch = req.json()
        try:
            patched = apply_patch(req.content_type, current, patch)
        except PatchError as exc:
            if not req.content_type.startswith("application/json-patch+json"):
                raise ApiError(422, "Invalid", str(exc)) from exc
            if not isinstance(patch, list):
                raise ApiError(400, "BadRequest", str(exc)) from exc
            log.debug("json patch on %s/%s refused: %s", req.namespace, req.name, exc)
            raise ApiError(422, "Invalid", JSON_PATCH_REFUSED, details={}) from exc
        if not isinstance(patched, dict):
            raise ApiError(400, "BadRequest", "the patch does not leave an object")
        return patched

    @staticmethod
    def _strict(req: ApiRequest, obj: Obj, *, creating: bool) -> None:
        """?fieldValidation=Strict (what kubectl sends by default, see openapi.py): unknown
        fields are a 400, worded as the strict decoder's error (handlers/rest.go
        transformDecodeError for bodies; the patched object for patches)."""
        if req.query.get("fieldValidation") != "Strict" or req.subresource:
            return
        unknown = unknown_fields(req.resource.kind, obj)
        if not unknown:
            return
        detail = "strict decoding error: " + ", ".join(f'unknown field "{f}"' for f in unknown)
        kind, version = req.resource.kind, req.resource.version
        if creating:
            detail = f'{kind} in version "{version}" cannot be handled as a {kind}: {detail}'
        raise ApiError(400, "BadRequest", detail)

    def _incoming(self, req: ApiRequest) -> Obj:
        obj = req.json()
        if not isinstance(obj, dict):
            raise ApiError(400, "BadRequest", "request body must be a JSON object")
        if req.resource.key == "secrets" and obj.get("stringData"):
            data = obj.setdefault("data", {})
            for k, v in obj.pop("stringData").items():
                data[k] = base64.b64encode(str(v).encode()).decode()
        return obj

    def _write(self, req: ApiRequest, obj: Obj) -> Obj:
        """Update path shared by PUT and PATCH: status only through /status, spec otherwise."""
        res = req.resource
        current = self.store.get(res.key, req.namespace, req.name)
        if req.subresource == "status":
            merged = copy.deepcopy(current)
            merged["status"] = obj.get("status", {})
            return self.store.replace(res.key, merged, dry_run=req.dry_run, keep_status=False)
        if res.key in ("configmaps", "secrets") and current.get("immutable"):
            for part in ("data", "binaryData"):
                if (obj.get(part) or {}) != (current.get(part) or {}):
                    raise ApiError(422, "Invalid", f'{res.kind} "{req.name}" is invalid: '
                                   f"{part}: Forbidden: field is immutable when `immutable` "
                                   "is set")
        obj.setdefault("metadata", {})["namespace"] = req.namespace
        obj["metadata"]["name"] = req.name
        return self.store.replace(res.key, obj, dry_run=req.dry_run)

    def _delete_pod(self, req: ApiRequest) -> Obj:
        """Graceful pod deletion; DeleteOptions come in the body (client-go, the Python
        client) or the query. The pod registry returns the object, not a Status
        (pkg/registry/core/pod/storage/storage.go: ReturnDeletedObject)."""
        options = req.json() if req.body else {}
        if not isinstance(options, dict):
            raise ApiError(400, "BadRequest", "DeleteOptions must be a JSON object")
        grace = options.get("gracePeriodSeconds", req.query.get("gracePeriodSeconds"))
        uid = (options.get("preconditions") or {}).get("uid")
        dry_run = req.dry_run or "All" in (options.get("dryRun") or [])
        pod = self.store.get("pods", req.namespace, req.name)
        try:
            grace_seconds = int(grace) if grace not in (None, "") else None
        except ValueError as exc:
            raise ApiError(400, "BadRequest", f"invalid gracePeriodSeconds {grace!r}") from exc
        return self.pods.delete(pod, grace_seconds=grace_seconds, uid=uid, actor="client",
                                dry_run=dry_run)

    def _list(self, req: ApiRequest) -> Obj:
        res = req.resource
        items, rv = self.store.list(res.key, req.namespace or None,
                                    label_selector=req.query.get("labelSelector"),
                                    field_selector=req.query.get("fieldSelector"))
        return {"kind": f"{res.kind}List", "apiVersion": res.api_version,
                "metadata": {"resourceVersion": str(rv)}, "items": items}

    def _watch(self, req: ApiRequest) -> Iterator[bytes]:
        res = req.resource
        labels, fields = req.query.get("labelSelector"), req.query.get("fieldSelector")
        timeout = float(req.query.get("timeoutSeconds") or 1800)
        deadline = time.monotonic() + timeout
        rv_param = req.query.get("resourceVersion", "")
        initial = req.query.get("sendInitialEvents") == "true"

        def line(kind: str, obj: Obj) -> bytes:
            return json.dumps({"type": kind, "object": obj}).encode() + b"\n"

        if not rv_param or rv_param == "0" or initial:
            items, last = self.store.list(res.key, req.namespace or None,
                                          label_selector=labels, field_selector=fields)
            for item in items:
                yield line("ADDED", item)
            if initial:  # WatchList protocol: a bookmark closes the initial burst
                yield line("BOOKMARK", {
                    "kind": res.kind, "apiVersion": res.api_version,
                    "metadata": {"resourceVersion": str(last),
                                 "annotations": {"k8s.io/initial-events-end": "true"}}})
        else:
            last = int(rv_param)
        while not self.store.closed and time.monotonic() < deadline:
            try:
                events, upto = self.store.events_after(last, res.key, req.namespace or None)
            except ApiError as exc:
                yield line("ERROR", exc.status())
                return
            for event in events:
                if self.store.matches(event.obj, labels, fields):
                    yield line(event.type, event.obj)
            last = upto
            if not events:
                self.store.wait_for_change(last, min(1.0, max(0.0, deadline - time.monotonic())))
                yield b""  # lets the transport notice a client that went away

    # -------------------------------------------------------------- subresources
    def _scale(self, req: ApiRequest) -> ApiResponse:
        key = req.resource.key  # deployments, replicasets, statefulsets: one Scale shape
        d = self.store.get(key, req.namespace, req.name)

        def as_scale(dep: Obj) -> Obj:
            meta = dep["metadata"]
            spec = {"replicas": dep["spec"].get("replicas", 1)}
            status: Obj = {"replicas": dep.get("status", {}).get("replicas", 0),
                           "selector": selector_to_string(dep["spec"].get("selector"))}
            return {"kind": "Scale", "apiVersion": "autoscaling/v1",
                    "metadata": {k: meta[k] for k in ("name", "namespace", "uid",
                                                      "resourceVersion", "creationTimestamp")},
                    "spec": {k: v for k, v in spec.items() if v},
                    "status": {k: v for k, v in status.items() if v or k == "replicas"}}

        if req.verb == "get":
            return ApiResponse(body=as_scale(d))
        if req.verb not in ("patch", "update"):
            raise ApiError(405, "MethodNotAllowed", f"{req.verb} is not supported on scale")
        with self.store.lock:  # one read-modify-write, as the registry's GuaranteedUpdate
            d = self.store.get(key, req.namespace, req.name)
            scale = as_scale(d)
            wanted = self._patched(req, scale) if req.verb == "patch" else req.json()
            if not isinstance(wanted, dict):
                raise ApiError(400, "BadRequest", "request body must be a JSON object")
            replicas = int((wanted.get("spec") or {}).get("replicas") or 0)
            if replicas < 0:
                raise ApiError(422, "Invalid", f'Scale.autoscaling "{req.name}" is invalid: '
                               "spec.replicas: Invalid value: must be greater than or equal to 0")
            # The Scale's resourceVersion becomes the Deployment's: a stale one is a 409
            # (pkg/registry/apps/deployment/storage/storage.go scaleUpdatedObjectInfo).
            sent_rv = (wanted.get("metadata") or {}).get("resourceVersion")
            d["spec"]["replicas"] = replicas
            if sent_rv:
                d["metadata"]["resourceVersion"] = sent_rv
            updated = self.store.replace(key, d, dry_run=req.dry_run)
        return ApiResponse(body=as_scale(updated))

    def _log(self, req: ApiRequest) -> ApiResponse:
        pod = self.store.get("pods", req.namespace, req.name)
        names = [c["name"] for c in pod["spec"].get("containers", [])]
        container = req.query.get("container")
        if container is None and len(names) > 1:
            raise ApiError(400, "BadRequest", f"a container name must be specified for pod "
                           f"{req.name}, choose one of: [{' '.join(names)}]")
        if container is not None and container not in names:
            raise ApiError(400, "BadRequest", f"container {container} is not valid for pod "
                           f"{req.name}")
        tail = req.query.get("tailLines")
        return ApiResponse(text=self.pods.read_log(req.namespace, req.name,
                                                   int(tail) if tail else None))

    def _metrics(self, req: ApiRequest) -> ApiResponse:
        if req.verb not in ("get", "list"):
            raise ApiError(405, "MethodNotAllowed", "metrics are read-only")
        items = self.pods.metrics(req.namespace or None, req.query.get("labelSelector"))
        if req.verb == "get":
            for item in items:
                if item["metadata"]["name"] == req.name:
                    return ApiResponse(body=item)
            raise ApiError.not_found(req.resource, req.name)
        return ApiResponse(body={"kind": "PodMetricsList", "apiVersion": "metrics.k8s.io/v1beta1",
                                 "metadata": {}, "items": items})
