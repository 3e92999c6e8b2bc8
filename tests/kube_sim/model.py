"""The simulated API server's store: namespaced objects, resource versions, watch history.

Like etcd behind a real API server, every write gets the next resourceVersion and is
recorded as a watch event (ADDED, MODIFIED, DELETED). Watchers subscribe from a
resourceVersion: they get the events after it, or, when it is older than the retained
history, the API server's 410 Expired error. All of it runs on the simulation's own event
loop, so no locks are needed.
"""

from __future__ import annotations

import asyncio
import copy
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

KINDS = {
    # plural: (kind, list kind)
    "pods": ("Pod", "PodList"),
    "persistentvolumeclaims": ("PersistentVolumeClaim", "PersistentVolumeClaimList"),
    "events": ("Event", "EventList"),
}
HISTORY_LIMIT = 1000
"""Watch events kept by default; a watch from an older resourceVersion gets 410 Expired."""


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def status_body(code: int, reason: str, message: str, details: dict | None = None) -> dict:
    """The API server's ``Status`` object for a failure."""
    body = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }
    if details is not None:
        body["details"] = details
    return body


class ApiError(Exception):
    """An API failure: its HTTP status and its Status body."""

    def __init__(self, code: int, reason: str, message: str, details: dict | None = None):
        super().__init__(message)
        self.code = code
        self.body = status_body(code, reason, message, details)


def not_found(plural: str, name: str) -> ApiError:
    return ApiError(404, "NotFound", f'{plural} "{name}" not found',
                    {"name": name, "kind": plural})


@dataclass
class WatchEvent:
    resource_version: int
    plural: str
    type: str
    object: dict


@dataclass
class Watcher:
    plural: str
    namespace: str | None
    matches: Callable[[dict], bool]
    queue: asyncio.Queue = field(default_factory=asyncio.Queue)


class ClusterModel:
    """Every object of the simulated cluster, by kind, namespace and name."""

    def __init__(self, history_limit: int = HISTORY_LIMIT) -> None:
        self.history_limit = history_limit
        self.objects: dict[str, dict[tuple[str, str], dict]] = {plural: {} for plural in KINDS}
        self.namespaces: set[str] = {"default", "kube-system"}
        self.resource_version = 100
        self.history: list[WatchEvent] = []
        self.watchers: list[Watcher] = []
        self.on_created: list[Callable[[str, dict], None]] = []
        self.on_deleted: list[Callable[[str, dict], None]] = []

    # ---- reads -----------------------------------------------------------------------

    def get(self, plural: str, namespace: str, name: str) -> dict:
        found = self.objects[plural].get((namespace, name))
        if found is None:
            raise not_found(plural, name)
        return found

    def find(self, plural: str, namespace: str, name: str) -> dict | None:
        return self.objects[plural].get((namespace, name))

    def list(self, plural: str, namespace: str | None, matches) -> list[dict]:
        return [
            obj
            for (ns, _), obj in sorted(self.objects[plural].items())
            if (namespace is None or ns == namespace) and matches(obj)
        ]

    # ---- writes ----------------------------------------------------------------------

    def _next_version(self) -> str:
        self.resource_version += 1
        return str(self.resource_version)

    def create(self, plural: str, namespace: str, body: dict) -> dict:
        kind, _ = KINDS[plural]
        obj = copy.deepcopy(body)
        metadata = obj.setdefault("metadata", {})
        name = metadata.get("name")
        if not name and metadata.get("generateName"):
            name = metadata["generateName"] + uuid.uuid4().hex[:5]
            metadata["name"] = name
        if not name:
            raise ApiError(422, "Invalid", f"{kind} \"\" is invalid: metadata.name: Required "
                           "value: name or generateName is required",
                           {"kind": plural, "causes": [{"reason": "FieldValueRequired",
                                                        "message": "Required value",
                                                        "field": "metadata.name"}]})
        if metadata.get("namespace", namespace) != namespace:
            raise ApiError(400, "BadRequest", "the namespace of the provided object does not "
                           "match the namespace sent on the request")
        if namespace not in self.namespaces:
            raise ApiError(404, "NotFound", f'namespaces "{namespace}" not found',
                           {"name": namespace, "kind": "namespaces"})
        if (namespace, name) in self.objects[plural]:
            raise ApiError(409, "AlreadyExists", f'{plural} "{name}" already exists',
                           {"name": name, "kind": plural})
        obj["kind"], obj["apiVersion"] = kind, "v1"
        metadata.update(
            namespace=namespace,
            uid=str(uuid.uuid4()),
            creationTimestamp=now(),
            resourceVersion=self._next_version(),
        )
        self.objects[plural][(namespace, name)] = obj
        self._record(plural, "ADDED", obj)
        for hook in self.on_created:
            hook(plural, obj)
        return obj

    def update(self, plural: str, obj: dict) -> dict:
        """Store a changed object under a new resourceVersion (a MODIFIED event)."""
        obj["metadata"]["resourceVersion"] = self._next_version()
        key = (obj["metadata"]["namespace"], obj["metadata"]["name"])
        self.objects[plural][key] = obj
        self._record(plural, "MODIFIED", obj)
        return obj

    def remove(self, plural: str, obj: dict) -> None:
        """Delete the object for good (a DELETED event)."""
        key = (obj["metadata"]["namespace"], obj["metadata"]["name"])
        if self.objects[plural].pop(key, None) is None:
            return
        obj["metadata"]["resourceVersion"] = self._next_version()
        self._record(plural, "DELETED", obj)
        for hook in self.on_deleted:
            hook(plural, obj)

    # ---- watch -----------------------------------------------------------------------

    def _record(self, plural: str, kind: str, obj: dict) -> None:
        event = WatchEvent(int(obj["metadata"]["resourceVersion"]), plural, kind,
                           copy.deepcopy(obj))
        self.history.append(event)
        del self.history[:-self.history_limit]
        for watcher in self.watchers:
            if self._for(watcher, event):
                watcher.queue.put_nowait(event)

    @staticmethod
    def _for(watcher: Watcher, event: WatchEvent) -> bool:
        namespace = event.object["metadata"]["namespace"]
        return (
            watcher.plural == event.plural
            and (watcher.namespace is None or watcher.namespace == namespace)
            and watcher.matches(event.object)
        )

    def subscribe(self, plural: str, namespace: str | None, matches, since: str | None) -> Watcher:
        """A watcher that first receives the events after ``since`` (or the current objects)."""
        watcher = Watcher(plural, namespace, matches)
        if since in (None, "", "0"):
            for obj in self.list(plural, namespace, matches):
                watcher.queue.put_nowait(
                    WatchEvent(int(obj["metadata"]["resourceVersion"]), plural, "ADDED",
                               copy.deepcopy(obj))
                )
        else:
            version = int(since)
            oldest = self.history[0].resource_version if self.history else self.resource_version
            if version < oldest - 1:
                raise ApiError(410, "Expired",
                               f"too old resource version: {version} ({oldest})")
            for event in self.history:
                if event.resource_version > version and self._for(watcher, event):
                    watcher.queue.put_nowait(event)
        self.watchers.append(watcher)
        return watcher

    def unsubscribe(self, watcher: Watcher) -> None:
        if watcher in self.watchers:
            self.watchers.remove(watcher)
