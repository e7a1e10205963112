"""core/v1 Events the emulated controllers and kubelet record, aggregated like client-go's
event recorder, so ``kubectl get events`` and ``kubectl describe`` show them.
"""

# client-go tools/record/events_cache.go (EventCorrelator): an event repeating the same
# source, object, type, reason and message bumps ``count`` and ``lastTimestamp`` of the one
# already stored instead of creating another. Names are "<object>.<hex>" as in
# tools/record/event.go makeEvent (fmt.Sprintf("%v.%x", ref.Name, t.UnixNano())).

from __future__ import annotations

import threading
import time

from .objects import now_rfc3339
from .store import ApiError, Obj, Store


class EventRecorder:
    def __init__(self, store: Store) -> None:
        self.store = store
        self._lock = threading.Lock()
        self._seen: dict[tuple[str, str, str, str, str], str] = {}  # key -> event name

    def emit(self, obj: Obj, reason: str, message: str, *, component: str,
             type_: str = "Normal", host: str = "") -> None:
        meta = obj["metadata"]
        namespace = meta.get("namespace") or "default"
        key = (str(meta.get("uid")), component, type_, reason, message)
        now = now_rfc3339()
        # The lookup, the name and the create happen under one lock: client-go correlates
        # and writes events one at a time (tools/record/event.go StartEventWatcher runs one
        # goroutine over the broadcaster's channel, recordToSink correlates then writes), so
        # two concurrent emits of one event make one Event with count 2, never two Events.
        with self._lock:
            name = self._seen.get(key)
            if name is not None:
                def bump(event: Obj) -> None:
                    event["count"] = int(event.get("count") or 1) + 1
                    event["lastTimestamp"] = now

                if self.store.mutate("events", namespace, name, bump,
                                     actor=component) is not None:
                    return
            name = f"{meta['name']}.{time.time_ns():x}"
            self._seen[key] = name
            source: Obj = {"component": component}
            if host:
                source["host"] = host
            event: Obj = {
                "metadata": {"name": name, "namespace": namespace},
                "involvedObject": {"kind": obj.get("kind"), "namespace": namespace,
                                   "name": meta["name"], "uid": meta.get("uid"),
                                   "apiVersion": obj.get("apiVersion"),
                                   "resourceVersion": meta.get("resourceVersion")},
                "reason": reason, "message": message, "source": source,
                "firstTimestamp": now, "lastTimestamp": now, "count": 1, "type": type_,
                "eventTime": None, "reportingComponent": component,
                "reportingInstance": host,
            }
            try:
                self.store.create("events", event, actor=component)
            except ApiError:
                pass  # the namespace is gone: the event has nowhere to live, as on a cluster
