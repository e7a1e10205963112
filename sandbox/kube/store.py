"""The emulator's etcd: versioned objects, generation bumps and an event log for watches;
watchers wait on one condition variable, so a watch wakes the moment a write lands.
"""

from __future__ import annotations

import bisect
import builtins
import copy
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from .discovery import Resource, by_key
from .objects import (
    apply_defaults,
    field_matches,
    now_rfc3339,
    prepare_for_create,
    selector_matches,
)

Obj = dict[str, Any]


class ApiError(Exception):
    """An API error rendered as a ``Status`` object."""

    def __init__(self, code: int, reason: str, message: str, *,
                 details: dict[str, Any] | None = None,
                 retry_after: float | str | None = None) -> None:
        super().__init__(message)
        self.code, self.reason, self.message = code, reason, message
        self.details = details  # None: no "details" key; {} is sent as an empty object
        # Seconds, or a raw Retry-After header value (an HTTP-date, a nonsense number).
        self.retry_after = retry_after

    def status(self) -> Obj:
        body: Obj = {"kind": "Status", "apiVersion": "v1", "metadata": {},
                     "status": "Failure", "message": self.message, "reason": self.reason,
                     "code": self.code}
        if self.details is not None:
            body["details"] = self.details
        return body

    @classmethod
    def conflict(cls, res: Resource, name: str) -> ApiError:
        """The optimistic-concurrency failure: apierrors.NewConflict with
        OptimisticLockErrorMsg (staging/src/k8s.io/apiserver/pkg/registry/generic/registry/
        store.go Update, when the object's resourceVersion is not the stored one)."""
        return cls(409, "Conflict",
                   f'Operation cannot be fulfilled on {res.qualified} "{name}": the object has '
                   "been modified; please apply your changes to the latest version and try again",
                   details=details(res, name))

    @classmethod
    def not_found(cls, res: Resource, name: str) -> ApiError:
        kind = res.qualified if res.group != "metrics.k8s.io" else "pods.metrics.k8s.io"
        return cls(404, "NotFound", f'{kind} "{name}" not found', details=details(res, name))


def details(res: Resource, name: str) -> Obj:
    """metav1.StatusDetails for one object; every field is omitempty, so the core group's
    empty name is left out, as the API server does."""
    out: Obj = {"name": name, "group": res.group, "kind": res.plural}
    return {k: v for k, v in out.items() if v}


@dataclass(frozen=True)
class WatchEvent:
    rv: int
    key: str
    namespace: str
    type: str
    obj: Obj


Listener = Callable[[WatchEvent, str], None]


def _parse_time(stamp: str) -> datetime:
    return datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)


def _format_time(when: datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def _without_rv(obj: Obj) -> Obj:
    return {**obj, "metadata": {k: v for k, v in obj["metadata"].items()
                                if k != "resourceVersion"}}


class Store:
    """Objects keyed by (resource key, namespace, name); thread-safe."""

    def __init__(self, *, seed: str = "emulator", max_events: int = 20000) -> None:
        self.lock = threading.RLock()
        self.changed = threading.Condition(self.lock)
        self._objects: dict[tuple[str, str, str], Obj] = {}
        self._events: list[WatchEvent] = []
        self._max_events = max_events
        self._rv = 1000
        self._seed = seed
        self._uids = 0
        self._listeners: list[Listener] = []
        # resource key -> check(new, old or None) run after defaulting; raises ApiError 422.
        # It may complete what the registry sets on write (a Service's clusterIP).
        self.validators: dict[str, Callable[[Obj, Obj | None], None]] = {}
        self.closed = False

    # ----------------------------------------------------------------- identities
    def new_uid(self) -> str:
        self._uids += 1
        return str(uuid.uuid5(uuid.NAMESPACE_URL, f"kube-emulator/{self._seed}/{self._uids}"))

    def next_counter(self) -> int:
        """Deterministic per-emulator counter (pod name suffixes)."""
        self._uids += 1
        return self._uids

    @property
    def resource_version(self) -> int:
        return self._rv

    def add_listener(self, listener: Listener) -> None:
        self._listeners.append(listener)

    # ---------------------------------------------------------------------- reads
    def try_get(self, key: str, namespace: str, name: str) -> Obj | None:
        with self.lock:
            obj = self._objects.get((key, namespace, name))
            return copy.deepcopy(obj) if obj is not None else None

    def get(self, key: str, namespace: str, name: str) -> Obj:
        obj = self.try_get(key, namespace, name)
        if obj is None:
            raise ApiError.not_found(by_key(key), name)
        return obj

    def list(self, key: str, namespace: str | None, *, label_selector: str | None = None,
             field_selector: str | None = None) -> tuple[list[Obj], int]:
        with self.lock:
            items = [copy.deepcopy(obj) for (k, ns, _), obj in sorted(self._objects.items())
                     if k == key and (namespace is None or ns == namespace)
                     and self.matches(obj, label_selector, field_selector)]
            return items, self._rv

    @staticmethod
    def matches(obj: Obj, label_selector: str | None, field_selector: str | None) -> bool:
        labels = (obj.get("metadata") or {}).get("labels")
        try:
            return selector_matches(label_selector, labels) and field_matches(field_selector, obj)
        except ValueError as exc:
            raise ApiError(400, "BadRequest", str(exc)) from exc

    def namespace_exists(self, namespace: str) -> bool:
        with self.lock:
            return ("namespaces", "", namespace) in self._objects

    # --------------------------------------------------------------------- writes
    def create(self, key: str, obj: Obj, *, actor: str = "client", dry_run: bool = False) -> Obj:
        res = by_key(key)
        obj = copy.deepcopy(obj)
        meta = obj.setdefault("metadata", {})
        namespace = meta.get("namespace", "") if res.namespaced else ""
        name = meta.get("name")
        if not name:
            raise ApiError(422, "Invalid", f"{res.kind} is invalid: metadata.name: Required value")
        with self.lock:
            if res.namespaced and not self.namespace_exists(namespace):
                raise ApiError(404, "NotFound", f'namespaces "{namespace}" not found',
                               details={"name": namespace, "kind": "namespaces"})
            if (key, namespace, name) in self._objects:
                raise ApiError(409, "AlreadyExists", f'{res.qualified} "{name}" already exists',
                               details=details(res, name))
            obj["apiVersion"], obj["kind"] = res.api_version, res.kind
            if res.namespaced:
                meta["namespace"] = namespace
            meta["uid"] = self.new_uid()
            meta["creationTimestamp"] = now_rfc3339()
            meta.pop("resourceVersion", None)
            if res.has_generation:
                meta["generation"] = 1
            prepare_for_create(key, obj)
            apply_defaults(key, obj)
            if key in self.validators:
                self.validators[key](obj, None)
            if dry_run:
                meta["resourceVersion"] = str(self._rv)
                return obj
            return self._commit(key, namespace, name, obj, "ADDED", actor)

    def replace(self, key: str, obj: Obj, *, actor: str = "client", dry_run: bool = False,
                keep_status: bool = True, check_rv: bool = True) -> Obj:
        """PUT semantics: optimistic concurrency, immutable identity, generation on spec change."""
        res = by_key(key)
        obj = copy.deepcopy(obj)
        meta = obj.setdefault("metadata", {})
        namespace, name = meta.get("namespace", "") if res.namespaced else "", meta.get("name", "")
        with self.lock:
            old = self._objects.get((key, namespace, name))
            if old is None:
                raise ApiError.not_found(res, name)
            sent_rv = meta.get("resourceVersion")
            if check_rv and sent_rv and sent_rv != old["metadata"]["resourceVersion"]:
                raise ApiError.conflict(res, name)
            for field in ("uid", "creationTimestamp", "generation"):
                if field in old["metadata"]:
                    meta[field] = old["metadata"][field]
            # Only DELETE starts or shortens a graceful deletion; an update keeps what is
            # stored (staging/src/k8s.io/apiserver/pkg/registry/rest/update.go BeforeUpdate).
            for field in ("deletionTimestamp", "deletionGracePeriodSeconds"):
                if field in old["metadata"]:
                    meta[field] = old["metadata"][field]
                else:
                    meta.pop(field, None)
            meta["namespace"] = old["metadata"].get("namespace")
            if not res.namespaced:
                meta.pop("namespace", None)
            obj["apiVersion"], obj["kind"] = res.api_version, res.kind
            if keep_status and "status" in old:
                obj["status"] = copy.deepcopy(old["status"])
            apply_defaults(key, obj)
            if key in self.validators:
                self.validators[key](obj, old)
            if res.has_generation and obj.get("spec") != old.get("spec"):
                meta["generation"] = int(old["metadata"].get("generation", 1)) + 1
            if dry_run:
                meta["resourceVersion"] = old["metadata"]["resourceVersion"]
                return obj
            if _without_rv(obj) == _without_rv(old):
                return copy.deepcopy(old)  # a no-op write does not bump resourceVersion
            return self._commit(key, namespace, name, obj, "MODIFIED", actor)

    def mutate(self, key: str, namespace: str, name: str, fn: Callable[[Obj], None], *,
               actor: str = "controller") -> Obj | None:
        """Read-modify-write on the latest version (controller status writes never clobber
        a client's concurrent spec change)."""
        with self.lock:
            cur = self._objects.get((key, namespace, name))
            if cur is None:
                return None
            new = copy.deepcopy(cur)
            fn(new)
            if _without_rv(new) == _without_rv(cur):
                return copy.deepcopy(cur)
            return self._commit(key, namespace, name, new, "MODIFIED", actor)

    def delete(self, key: str, namespace: str, name: str, *, actor: str = "client",
               dry_run: bool = False) -> Obj:
        res = by_key(key)
        with self.lock:
            old = self._objects.get((key, namespace, name))
            if old is None:
                raise ApiError.not_found(res, name)
            return self._remove(key, namespace, name, actor, dry_run)

    def delete_gracefully(self, key: str, namespace: str, name: str, *, requested: int | None,
                          period_for: Callable[[Obj, int | None], int],
                          uid: str | None = None, actor: str = "client",
                          dry_run: bool = False) -> tuple[Obj, bool]:
        """DELETE of a kind with a graceful-delete strategy (pods); returns the object and
        whether it is gone from storage.

        The generic registry's two phases (staging/src/k8s.io/apiserver/pkg/registry/generic/
        registry/store.go Delete + updateForGracefulDeletionAndFinalizers, rest/delete.go
        BeforeDelete): first an UPDATE that sets deletionTimestamp = now + grace and
        deletionGracePeriodSeconds (watchers see MODIFIED); the object stays until someone
        deletes it again with grace 0 (the kubelet, once the containers stopped), which
        removes it (DELETED). A grace of 0 runs both phases at once. A second delete of a
        terminating object may only shorten the grace period; otherwise it changes nothing.
        ``period_for(obj, requested)`` is the kind's CheckGracefulDelete."""
        res = by_key(key)
        with self.lock:
            old = self._objects.get((key, namespace, name))
            if old is None:
                raise ApiError.not_found(res, name)
            meta = old["metadata"]
            if uid is not None and uid != meta.get("uid"):
                kind = f"{res.kind}.{res.group}" if res.group else res.kind
                raise ApiError(409, "Conflict", f'Operation cannot be fulfilled on {kind} '
                               f'"{name}": the UID in the precondition ({uid}) does not match '
                               f"the UID in record ({meta.get('uid')}). The object might have "
                               "been deleted and then recreated",
                               details=details(res, name))
            if requested is not None and requested < 0:
                requested = 1  # BeforeDelete: negative values mean 1 s
            new = copy.deepcopy(old)
            new_meta = new["metadata"]
            if meta.get("deletionTimestamp"):
                current = int(meta.get("deletionGracePeriodSeconds") or 0)
                if current == 0:
                    return self._remove(key, namespace, name, actor, dry_run), True
                if requested is None or requested >= current:
                    return copy.deepcopy(old), False  # graceful deletion already pending
                started = _parse_time(meta["deletionTimestamp"]) - timedelta(seconds=current)
                new_meta["deletionTimestamp"] = _format_time(started + timedelta(
                    seconds=requested))
                period = requested
            else:
                period = period_for(old, requested)
                new_meta["deletionTimestamp"] = _format_time(
                    datetime.now(UTC) + timedelta(seconds=period))
                if int(new_meta.get("generation") or 0) > 0:
                    new_meta["generation"] = int(new_meta["generation"]) + 1
            new_meta["deletionGracePeriodSeconds"] = period
            if dry_run:
                return new, period == 0
            marked = self._commit(key, namespace, name, new, "MODIFIED", actor)
            if period > 0:
                return marked, False
            return self._remove(key, namespace, name, actor, dry_run=False), True

    def _remove(self, key: str, namespace: str, name: str, actor: str, dry_run: bool) -> Obj:
        old = self._objects[(key, namespace, name)]
        if dry_run:
            return copy.deepcopy(old)
        del self._objects[(key, namespace, name)]
        self._rv += 1
        gone = copy.deepcopy(old)
        gone["metadata"]["resourceVersion"] = str(self._rv)
        self._emit(WatchEvent(self._rv, key, namespace, "DELETED", gone), actor)
        return copy.deepcopy(gone)

    def _commit(self, key: str, namespace: str, name: str, obj: Obj, kind: str,
                actor: str) -> Obj:
        self._rv += 1
        obj["metadata"]["resourceVersion"] = str(self._rv)
        self._objects[(key, namespace, name)] = obj
        self._emit(WatchEvent(self._rv, key, namespace, kind, copy.deepcopy(obj)), actor)
        return copy.deepcopy(obj)

    def _emit(self, event: WatchEvent, actor: str) -> None:
        self._events.append(event)
        if len(self._events) > self._max_events:
            del self._events[: len(self._events) - self._max_events]
        self.changed.notify_all()
        for listener in self._listeners:
            listener(event, actor)

    # ---------------------------------------------------------------------- watch
    def events_after(self, rv: int, key: str,
                     namespace: str | None) -> tuple[builtins.list[WatchEvent], int]:
        """Events newer than ``rv`` plus the rv they run up to; 410 Gone when ``rv`` fell
        out of the log."""
        with self.lock:
            if self._events and rv < self._events[0].rv - 1 and rv < self._rv:
                raise ApiError(410, "Expired", f"too old resource version: {rv} "
                               f"({self._events[0].rv - 1})")
            start = bisect.bisect_right(self._events, rv, key=lambda e: e.rv)
            events = [e for e in self._events[start:] if e.key == key
                      and (namespace is None or e.namespace == namespace)]
            return events, self._rv

    def wait_for_change(self, rv: int, timeout: float) -> None:
        with self.changed:
            if self._rv <= rv and not self.closed:
                self.changed.wait(timeout)

    def close(self) -> None:
        with self.changed:
            self.closed = True
            self.changed.notify_all()

    def iter_objects(self, key: str) -> Iterator[Obj]:
        with self.lock:
            for (k, _, _), obj in sorted(self._objects.items()):
                if k == key:
                    yield copy.deepcopy(obj)
